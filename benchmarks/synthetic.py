"""Synthetic tables: exported tables whose learning curves follow a known generative model.

    python -m benchmarks.synthetic --out DIR [--seed N] [--prelearn MEAN] [--encoders 8] [--llms 6]
        [--tasks 6] [--seeds 3] [--suite PATH] [--force]

Writes ``DIR`` as an ordinary ``harness store export`` (manifest.json + one Parquet file per
table, read by ``harness.store.exchange.read_export``, imported by ``harness store import``,
replayed by ``harness replay --table``) and, beside it, the suite that replays it (``DIR.yaml``
unless ``--suite``); prints one line: the world and the Kendall tau of each ratio's ranking with
r = 1 (mean over tasks and seeds). The shipped table's low ratios carry little information (tau
0.08 at r = 1/16); the paper's curves are log-linear from small ratios on. A synthetic table
makes that a knob: ``--prelearn 0`` is the paper's world, a long one is the shipped table's.

The generative model (every draw from ``--seed``; one random stream per part, so worlds that
differ only in ``prelearn`` have the same components, full-data scores and noise):

- **Components in clusters.** Encoders fall into ``encoder_clusters`` clusters, LLMs into
  ``llm_clusters``; each component's latent effect (3 dimensions) is its cluster's (N(0, I))
  plus a small own part (``within`` x N(0, I)): members of a cluster share most of their effect.
- **Full-data score** of (task t, encoder i, LLM j), on the logit scale: task base + encoder
  effect (w_t . e_i) + ``llm_weight`` x LLM effect (v_t . l_j) + ``interaction`` x N(0, 1); the
  task weights w_t, v_t are a common direction plus ``task_spread`` x N(0, I), so tasks are
  correlated, not identical. Mapped into (floor_t, 0.95) by a logistic: F = floor + (0.95 -
  floor) x sigmoid(q). The floor is the task's constant-answer score (the real one for a
  ``shapes:`` task: ``harness.strategy.task_baseline``).
- **Learning curve** of each (task, candidate): at the floor for a pre-learning phase of ``o``
  doublings above the smallest ratio (o = ``prelearn`` x a mean-one lognormal factor with task,
  encoder, LLM and own parts, ``prelearn_spread`` its log-sd; capped so that r = 1 always
  learns), then log-linear in the ratio up to F at r = 1: s(r) = F - b log2(1/r), whose line
  would have met the floor ``headstart`` doublings (about; varies by task and candidate) before
  the onset. ``prelearn 0``: log-linear over every ratio, the paper's assumption.
- **Seed noise** on every score: a training-seed deviation (``train_noise`` sd, shared in part by
  the trial's tasks) and a binomial draw over ``n_items`` test items (1000).
- **Similarities** consistent with the clusters: CKA within an encoder cluster 0.82-0.92 and
  between clusters at most 0.70 (the suite's floor is 0.75); LLMs within 0.86-0.95, between at
  most 0.74 (floor 0.8), the same through every encoder; so Mordal's clustering recovers the
  clusters exactly.

Replay: with at most 10 encoders, 7 LLMs and the six ``shapes:`` tasks (``names="auto"``), the
components and tasks are the mini zoo's (names only: the scores are the model's), so
``harness replay --table DIR --suite DIR.yaml --store :memory:`` runs Mordal (or any strategy) on
the table: a replay loads each component for its fingerprint, as on the shipped table, and finds
every trial and clustering similarity under the key it derives. Those keys cannot meet a real
trial's or similarity's: the synthetic suite's recipe carries ``weight_decay`` 1e-9 and its
clustering ``samples`` 255 (neither changes anything here; they only make the keys this world's
own). Import a synthetic table into a scratch store only (``--store :memory:``, or
``benchmarks.common.imported_table``): two synthetic worlds share keys, so the first imported
wins. Larger worlds get ``syn:`` names; they load with ``benchmarks.anytime.load_world`` and read
as any table does, but ``harness replay`` cannot run on them (it loads each component by its
ref to key its trials, and ``syn:`` is no component family).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RATIOS, SUITES, TABLE, TASKS, arg_parser, table_views, tau

PLUGIN, PLUGIN_VERSION = "benchmarks.synthetic", "1"
CEILING = 0.95  # the best a full-data score can be
SALT_WEIGHT_DECAY = 1e-9  # in the synthetic suite's recipe: its trial keys are no real trial's
SALT_FEATURES = 255  # its clustering samples: its similarity keys are no real similarity's
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)  # every row's timestamp: same seed, same bytes
CKA_CONFIGS = (None, 64)  # cka_batch values whose similarities are written (the shipped table's)
LLM_LAYER = "llm-last-hidden"  # MordalSearch.cluster_llms's layer name
# the generator's random streams: one per part, so a change to one part leaves the others' draws
STREAMS = {"structure": 1, "curves": 2, "noise": 3, "similarities": 4, "costs": 5}


@dataclass(frozen=True)
class Params:
    """What a synthetic world is drawn from (see the module docstring)."""

    seed: int = 0
    n_encoders: int = 8
    n_llms: int = 6
    tasks: int = 6
    seeds: int = 3
    ratios: tuple[float, ...] = RATIOS
    prelearn: float = 0.0  # mean pre-learning phase, in doublings above the smallest ratio
    prelearn_spread: float = 0.5  # log-sd of its task/candidate factor
    headstart: float = 2.0  # doublings before the onset where the log-linear line meets the floor
    encoder_clusters: int = 3
    llm_clusters: int = 3
    within: float = 0.35  # a component's own effect beside its cluster's (both N(0, I) scaled)
    task_spread: float = 1.0  # how far each task's weights stray from the common direction
    llm_weight: float = 0.6  # the LLM effect's scale against the encoder effect's
    interaction: float = 0.15  # sd of the (task, encoder, LLM) interaction on the logit scale
    train_noise: float = 0.02  # sd of a training seed's deviation of a score
    n_items: int = 1000  # test items per score (binomial noise)
    names: str = "auto"  # auto | zoo (the mini zoo's, replayable) | synthetic (syn:*)


@dataclass
class World:
    """A drawn world: names, clusters, floors, the noiseless curves and the observed scores."""

    params: Params
    mode: str  # zoo | synthetic
    encoders: list[str]
    llms: list[str]
    tasks: list[str]
    encoder_cluster: list[int]
    llm_cluster: list[int]
    floor: dict[str, float]  # task -> constant-answer score
    answer: dict[str, str | None]  # task -> the constant answer (None: synthetic)
    full: np.ndarray  # [task, encoder, llm]: noiseless full-data score F
    onset: np.ndarray  # [task, encoder, llm]: doublings above the smallest ratio spent at the floor
    head: np.ndarray  # [task, encoder, llm]: the head start, in doublings
    scores: np.ndarray  # [seed, task, encoder, llm, ratio]: observed scores
    encoder_similarity: np.ndarray  # [encoder, encoder]
    llm_similarity: np.ndarray  # [llm, llm]
    cost: np.ndarray  # [encoder, llm]: seconds per training sample

    def curve(self, t: int, i: int, j: int, r: float) -> float:
        """The noiseless score of (task t, encoder i, LLM j) trained at ratio r."""
        return float(_curve(self.full[t, i, j], self.floor[self.tasks[t]], self.onset[t, i, j],
                            self.head[t, i, j], min(self.params.ratios), np.array(r)))

    def clusters(self) -> dict[str, list[list[str]]]:
        """The generative clusters, by name: {"encoder": [[...], ...], "llm": [...]}."""
        def groups(names, labels):
            return [[n for n, k in zip(names, labels) if k == c] for c in sorted(set(labels))]

        return {"encoder": groups(self.encoders, self.encoder_cluster),
                "llm": groups(self.llms, self.llm_cluster)}


def _curve(full, floor, onset, head, r_min, r):
    """s(r): the floor below the onset ratio r_min 2^onset (at most 2^-1/2: r = 1 always
    learns), then the log-linear line F - b log2(1/r) that reaches F at r = 1 and would have met
    the floor ``head`` doublings before the onset."""
    x = np.log2(1.0 / r)  # doublings below r = 1
    x_on = np.maximum(np.log2(1.0 / r_min) - onset, 0.5)  # the onset, in doublings below r = 1
    line = full - (full - floor) * x / (x_on + head)
    return np.where(x > x_on + 1e-9, floor, line)


# -- the components and tasks -------------------------------------------------------------------


def zoo_names() -> tuple[list[str], list[str]]:
    """The mini zoo's encoders and LLMs in the order a synthetic world takes them:
    suites/minizoo.yaml's (the 48-candidate suite) first, then suites/minizoo-full.yaml's others."""
    import yaml

    core = yaml.safe_load((SUITES / "minizoo.yaml").read_text())["zoo"]
    full = yaml.safe_load((SUITES / "minizoo-full.yaml").read_text())["zoo"]
    out = []
    for kind in ("vision_encoders", "language_models"):
        out.append(core[kind] + [c for c in full[kind] if c not in core[kind]])
    return out[0], out[1]


def _mode(p: Params) -> str:
    encoders, llms = zoo_names()
    fits = p.n_encoders <= len(encoders) and p.n_llms <= len(llms) and p.tasks <= len(TASKS)
    if p.names == "zoo" and not fits:
        raise ValueError(f"names='zoo' holds at most {len(encoders)} encoders, {len(llms)} LLMs and "
                         f"{len(TASKS)} tasks; use names='synthetic' (or 'auto')")
    if p.names not in ("auto", "zoo", "synthetic"):
        raise ValueError(f"names must be auto, zoo or synthetic, not {p.names!r}")
    return "zoo" if p.names == "zoo" or (p.names == "auto" and fits) else "synthetic"


def _check(p: Params) -> None:
    if min(p.n_encoders, p.n_llms, p.tasks, p.seeds, p.encoder_clusters, p.llm_clusters) < 1:
        raise ValueError("encoders, LLMs, tasks, seeds and clusters must each be at least 1")
    if p.encoder_clusters > p.n_encoders or p.llm_clusters > p.n_llms:
        raise ValueError(f"more clusters than components: {p.encoder_clusters} encoder clusters for "
                         f"{p.n_encoders} encoders, {p.llm_clusters} LLM clusters for {p.n_llms} LLMs; lower "
                         "--encoder-clusters / --llm-clusters or raise --encoders / --llms")
    ratios = sorted(p.ratios)
    if not ratios or ratios[-1] != 1.0 or ratios[0] <= 0 or len(set(ratios)) != len(ratios):
        raise ValueError(f"ratios must be distinct, in (0, 1], and include 1: {p.ratios}")
    if p.prelearn < 0 or p.headstart <= 0 or p.n_items < 1:
        raise ValueError("prelearn must be >= 0, headstart > 0, n_items >= 1")


def _assign(rng, n: int, k: int) -> list[int]:
    """Cluster labels for n components in k non-empty clusters, numbered by first member."""
    labels = rng.permutation([i % k for i in range(n)])
    order = {c: i for i, c in enumerate(dict.fromkeys(labels.tolist()))}
    return [order[c] for c in labels.tolist()]


def _floors(mode: str, tasks: list[str], p: Params, rng) -> tuple[dict, dict]:
    """The constant-answer score of each task: a ``shapes:`` task's real one (on ``n_items``
    test items), else drawn from U(0.1, 0.3)."""
    floor, answer = {}, {}
    for t in tasks:
        if mode == "zoo":
            from harness.strategy import task_baseline

            answer[t], floor[t], _ = task_baseline(t, p.n_items)
        else:
            answer[t], floor[t] = None, float(rng.uniform(0.1, 0.3))
    return floor, answer


def generate(p: Params) -> World:
    """Draw the world of ``p`` (no store, no files)."""
    _check(p)
    mode = _mode(p)
    E, L, T = p.n_encoders, p.n_llms, p.tasks
    ratios = np.array(sorted(p.ratios), dtype=float)
    if mode == "zoo":
        zoo_enc, zoo_llm = zoo_names()
        encoders, llms, tasks = zoo_enc[:E], zoo_llm[:L], TASKS[:T]
    else:
        encoders = [f"syn:enc-{i:02d}" for i in range(E)]
        llms = [f"syn:llm-{j:02d}" for j in range(L)]
        tasks = [f"syn:task-{t:02d}" for t in range(T)]

    def rng(part):
        return np.random.default_rng([p.seed, STREAMS[part]])

    # full-data scores: clustered components, task-weighted effects, a small interaction
    g = rng("structure")
    D = 3
    ke, kl = _assign(g, E, p.encoder_clusters), _assign(g, L, p.llm_clusters)
    e = g.normal(size=(p.encoder_clusters, D))[ke] + p.within * g.normal(size=(E, D))
    m = g.normal(size=(p.llm_clusters, D))[kl] + p.within * g.normal(size=(L, D))
    W = g.normal(size=D) + p.task_spread * g.normal(size=(T, D))
    V = g.normal(size=D) + p.task_spread * g.normal(size=(T, D))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    base = 0.5 * g.normal(size=T)
    q = (base[:, None, None] + (W @ e.T)[:, :, None] + p.llm_weight * (V @ m.T)[:, None, :]
         + p.interaction * g.normal(size=(T, E, L)))
    floor, answer = _floors(mode, tasks, p, g)
    lo = np.array([floor[t] for t in tasks])[:, None, None]
    full = lo + (CEILING - lo) * (1.0 / (1.0 + np.exp(-q)))

    # learning curves: the pre-learning phase (task, encoder, LLM and own parts) and head start
    c = rng("curves")
    z = (c.normal(size=(T, 1, 1)) + c.normal(size=(1, E, 1)) + c.normal(size=(1, 1, L))
         + c.normal(size=(T, E, L))) / 2.0
    s = p.prelearn_spread
    onset = p.prelearn * np.exp(s * z - s * s / 2.0)
    head = p.headstart * np.exp(0.25 * c.normal(size=(T, E, L)) - 0.25 ** 2 / 2.0)
    clean = _curve(full[None, :, :, :, None], lo[None, :, :, :, None], onset[None, :, :, :, None],
                   head[None, :, :, :, None], ratios[0], ratios[None, None, None, None, :])

    # seed noise: a training deviation (shared in part by the trial's tasks), then binomial
    n = rng("noise")
    shape = (p.seeds, T, E, L, len(ratios))
    trial = n.normal(size=(p.seeds, 1, E, L, len(ratios)))
    dev = p.train_noise * (0.6 * trial + 0.8 * n.normal(size=shape))
    prob = np.clip(clean + dev, 0.0, 1.0)
    # binomial by inversion of one uniform per score: the same draws whatever the probabilities
    # (numpy's sampler consumes a varying number), so worlds differing in prelearn share noise
    from scipy.stats import binom

    scores = np.clip(binom.ppf(n.uniform(size=shape), p.n_items, prob), 0, p.n_items) / p.n_items

    # similarities that the suite's clustering floors (0.75 encoders, 0.8 LLMs) cut into the clusters
    r = rng("similarities")
    enc_sim = _similarity(r, ke, within=(0.82, 0.92), between=(0.40, 0.62))
    llm_sim = _similarity(r, kl, within=(0.86, 0.95), between=(0.45, 0.66))
    cost = 0.007 * np.exp(0.3 * rng("costs").normal(size=(E, L)))
    return World(p, mode, encoders, llms, tasks, ke, kl, floor, answer, full, onset, head, scores,
                 enc_sim, llm_sim, cost)


def _similarity(rng, labels: list[int], within: tuple, between: tuple) -> np.ndarray:
    """A similarity matrix: U(within) inside a cluster; between two clusters a level drawn from
    U(between) plus a pair's own +-0.04."""
    k = max(labels) + 1
    level = rng.uniform(*between, size=(k, k))
    n = len(labels)
    sim = np.eye(n)
    for a in range(n):
        for b in range(a + 1, n):
            ca, cb = labels[a], labels[b]
            if ca == cb:
                v = rng.uniform(*within)
            else:
                v = level[min(ca, cb), max(ca, cb)] + rng.uniform(-0.04, 0.04)
            sim[a, b] = sim[b, a] = v
    return sim


def _jitter(key: str) -> float:
    """A stored similarity's own deviation, +-0.015, from its key (task, seed, context, options)."""
    return (int(key[:8], 16) / 0xFFFFFFFF - 0.5) * 0.03


# -- the suite ------------------------------------------------------------------------------------


def suite_data(world: World) -> dict:
    """The suite that replays a zoo-named world: suites/minizoo.yaml's recipe and search with
    this world's zoo and targets, and the two salts that make its keys this world's own."""
    import yaml

    data = yaml.safe_load((SUITES / "minizoo.yaml").read_text())
    data["name"] = "synthetic"
    data["seed"] = 0
    data["zoo"] = {"vision_encoders": list(world.encoders), "language_models": list(world.llms)}
    data["targets"] = [{"task": t, "limit": world.params.n_items} for t in world.tasks]
    data["vlm"]["optim"]["weight_decay"] = SALT_WEIGHT_DECAY
    data["search"]["clustering"]["samples"] = SALT_FEATURES
    return data


SUITE_HEADER = "# A synthetic world (benchmarks/synthetic.py"  # how a suite this module wrote begins


def suite_yaml(world: World, table: Path | None = None) -> str:
    import yaml

    p = world.params
    where = f"--table {table} " if table is not None else "--table DIR "
    head = (f"{SUITE_HEADER}, seed {p.seed}, prelearn {p.prelearn:g}):\n"
            f"# {len(world.encoders)} encoders x {len(world.llms)} LLMs, {len(world.tasks)} tasks. The names are\n"
            "# the mini zoo's and the recipe and search suites/minizoo.yaml's, but every score comes\n"
            "# from the generative model. weight_decay 1e-9 and clustering samples 255 are salts: they\n"
            "# change nothing here and keep this world's keys apart from any real trial's or similarity's.\n"
            f"#   harness replay {where}--suite THIS.yaml --store :memory: [--seed 0|1|2]\n")
    return head + yaml.safe_dump(suite_data(world), sort_keys=False, width=100)


# -- the table ------------------------------------------------------------------------------------


def _zoo_identity() -> tuple[dict, dict]:
    """(ref -> component row, alignment dataset row) of the mini zoo as the shipped table
    records it: the fingerprints a replay derives when it loads the components (the replay test
    fails if they drift)."""
    con, _ = table_views(TABLE)
    try:
        cols = ["fingerprint", "kind", "ref", "config", "n_params"]
        comps = {r[2]: dict(zip(cols, r)) for r in con.execute(
            f"select {', '.join(cols)} from components").fetchall()}
        data = con.execute("select fingerprint, ref, split, n_items, config from datasets "
                           "where ref = 'shapes:align' and n_items = 4000").fetchone()
    finally:
        con.close()
    return comps, dict(zip(["fingerprint", "ref", "split", "n_items", "config"], data))


def _short_hash(obj) -> str:
    from harness.store import content_key

    return content_key(obj)[:16]


class _Keys:
    """Every key of a world's rows: components, trials, clustering embeddings, similarities."""

    def __init__(self, world: World):
        from harness.store import content_key, embedding_key, similarity_key, trial_key

        self.world = world
        p = world.params
        self.ratios = sorted(p.ratios)
        self.content_key, self.embedding_key = content_key, embedding_key
        self.similarity_key, self.trial_key = similarity_key, trial_key
        if world.mode == "zoo":
            self._zoo()
        else:
            self._synthetic()

    def _zoo(self) -> None:
        from benchmarks.common import trial_specs
        from harness.plugin_manager import family_of, get_components
        from harness.suite import Suite
        from harness.trial import key_of

        w = self.world
        comps, data = _zoo_identity()
        missing = [c for c in w.encoders + w.llms if c not in comps]
        if missing:
            raise RuntimeError(f"the shipped table {TABLE} records no fingerprint for {missing}")
        self.components = [comps[c] for c in w.encoders + w.llms]
        self.fp = {c: comps[c]["fingerprint"] for c in w.encoders + w.llms}
        self.dataset = data
        self.suite = Suite.model_validate(suite_data(w))
        clustering = self.suite.search.clustering
        self.samples, self.warmup = clustering.samples, clustering.warmup_steps
        entry = get_components()["similarity_metric"].get(self.suite.search.similarity)
        self.metric, self.producer, self.takes = self.suite.search.similarity, entry.producer, entry.takes
        from harness.plugins.strategies.gw_prescreen import ENCODER_LAYER

        self.encoder_layer = ENCODER_LAYER
        self.trials = {}  # (seed, encoder, llm, ratio) -> key
        for s in range(w.params.seeds):
            for r in self.ratios:
                for spec in trial_specs(self.suite, s, r):
                    self.trials[(s, spec.encoder, spec.llm, r)] = key_of(
                        spec, self.fp[spec.encoder], self.fp[spec.llm], data["fingerprint"])
        self.train_config = json.dumps(trial_specs(self.suite, 0)[0].train.as_dict(), sort_keys=True, default=str)
        self.lr, self.projector = self.suite.vlm.optim.lr, self.suite.vlm.projector
        self.feature_data = {}  # (task, seed) -> fingerprint of what clustering features are computed on
        for t in w.tasks:
            family, name = family_of(t)
            for s in range(w.params.seeds):
                ds, _ = family.features(name, n=self.samples, seed=s, target=None)
                self.feature_data[(t, s)] = ds.fingerprint

    def _synthetic(self) -> None:
        w = self.world
        self.fp = {c: _short_hash({"synthetic-component": c}) for c in w.encoders + w.llms}
        self.components = [{"fingerprint": self.fp[c], "ref": c, "config": None, "n_params": None,
                            "kind": "vision_encoder" if c in w.encoders else "language_model"}
                           for c in w.encoders + w.llms]
        self.dataset = {"fingerprint": _short_hash({"synthetic-alignment": 4000}), "ref": "syn:align",
                        "split": "train", "n_items": 4000, "config": None}
        self.samples, self.warmup, self.lr, self.projector = SALT_FEATURES, 10, 1e-3, "mlp2x_gelu"
        self.metric, self.producer, self.takes = "cka", None, ("minibatch", "seed")
        self.encoder_layer = "encoder-tokens"
        self.train_config = json.dumps({"synthetic": True}, sort_keys=True)
        self.trials = {}
        for s in range(w.params.seeds):
            for r in self.ratios:
                for e in w.encoders:
                    for m in w.llms:
                        self.trials[(s, e, m, r)] = self.trial_key(
                            encoder=self.fp[e], llm=self.fp[m], dataset=self.dataset["fingerprint"],
                            sample_ratio=r, train_config={"synthetic": True}, seed=s)
        self.feature_data = {(t, s): _short_hash({"synthetic-features": t, "seed": s, "n": self.samples})
                             for t in w.tasks for s in range(w.params.seeds)}

    def encoder_embedding(self, task: str, seed: int, encoder: str) -> str:
        return self.embedding_key(component=self.fp[encoder], dataset=self.feature_data[(task, seed)],
                                  layer=self.encoder_layer, sample_set={"first": self.samples})

    def llm_embedding(self, task: str, seed: int, encoder: str, llm: str) -> str:
        # MordalSearch.cluster_llms: the LLM through this encoder's warmed-up projector
        fp = self.content_key({"encoder": self.fp[encoder], "llm": self.fp[llm], "warmup_steps": self.warmup,
                               "projector": self.projector, "lr": self.lr, "seed": seed})
        return self.embedding_key(component=fp, dataset=self.feature_data[(task, seed)], layer=LLM_LAYER,
                                  sample_set={"first": self.samples})

    def options(self, cka_batch):
        from harness.contracts import metric_options

        return metric_options(self.takes, cka_batch) or None

    def similarity(self, a_embedding: str, b_embedding: str, cka_batch) -> str:
        return self.similarity_key(metric=self.metric, a=a_embedding, b=b_embedding,
                                   config=self.options(cka_batch), producer=self.producer)


def _run_id(i: int, tag: str) -> str:
    """A time-sortable run id, the same for the same world: EPOCH + i seconds and the world's tag."""
    return (EPOCH + timedelta(seconds=i)).strftime("%Y%m%d-%H%M%S-") + tag


def _rows(world: World, keys: _Keys) -> dict[str, list[dict]]:
    """Every table's rows, as a table a build of the world would have left (benchmarks/build_table.py):
    a ``table-seed{s}`` run per seed holding its trials and similarities, a ``table-grid-seed{s}``
    run per seed ranking every task by the mean over seeds at r = 1 with that seed's r = 1 trials."""
    p = world.params
    tag = _short_hash({"synthetic": asdict(p)})[:6]
    prov = {"plugin": PLUGIN, "plugin_version": PLUGIN_VERSION}
    at = EPOCH
    rows: dict[str, list[dict]] = {k: [] for k in (
        "runs", "components", "datasets", "trials", "scores", "run_uses", "similarities",
        "feature_costs", "rankings", "task_baselines")}
    seed_run = {s: _run_id(2 * s, tag) for s in range(p.seeds)}
    grid_run = {s: _run_id(2 * s + 1, tag) for s in range(p.seeds)}
    for s in range(p.seeds):
        # as build_table's: the seed's run names the suite (a zoo-named world's), the grid run none
        suite = keys.suite.model_copy(update={"seed": s}) if world.mode == "zoo" else None
        for run_id, name, own in ((seed_run[s], f"table-seed{s}", suite), (grid_run[s], f"table-grid-seed{s}", None)):
            rows["runs"].append({
                "run_id": run_id, "suite_name": name, "suite_hash": own.fingerprint() if own else None,
                "strategy": "grid", "seed": s,
                "config": json.dumps(own.model_dump(mode="json"), sort_keys=True) if own else None,
                "status": "done", "error": None, "started_at": at, "finished_at": at,
                "harness_version": _version(), "hostname": "synthetic", "pid": None, **prov,
                "ground_truth": True})
    for comp in keys.components:
        rows["components"].append({**comp, "run_id": seed_run[0], **prov, "created_at": at})
    rows["datasets"].append({**keys.dataset, "run_id": seed_run[0], **prov, "created_at": at})
    for t, floor in world.floor.items():
        rows["task_baselines"].append({"task": t, "split": "test", "n_items": p.n_items,
                                       "answer": world.answer[t], "value": floor,
                                       "run_id": seed_run[0], **prov, "created_at": at})

    ratios = keys.ratios
    full_samples = 15648  # a full-data trial of the shipped table (4000 items, 3 epochs)
    for s in range(p.seeds):
        for i, e in enumerate(world.encoders):
            for j, m in enumerate(world.llms):
                for k, r in enumerate(ratios):
                    key = keys.trials[(s, e, m, r)]
                    samples = round(r * full_samples / 32) * 32
                    rows["trials"].append({
                        "trial_key": key, "encoder": e, "llm": m, "encoder_fingerprint": keys.fp[e],
                        "llm_fingerprint": keys.fp[m], "dataset_fingerprint": keys.dataset["fingerprint"],
                        "sample_ratio": r, "train_config": keys.train_config, "seed": s, "status": "done",
                        "error": None, "wall_seconds": round(15.0 + samples * float(world.cost[i, j]), 3),
                        "samples_seen": samples, "device": "cpu", "checkpoint_path": None,
                        "run_id": seed_run[s], **prov, "created_at": at, "finished_at": at, "node": None,
                        "continued_from": None})
                    rows["run_uses"].append({"run_id": seed_run[s], "kind": "trial", "key": key,
                                             "reused": False, "used_at": at, "phase": None})
                    if r == 1.0:
                        rows["run_uses"].append({"run_id": grid_run[s], "kind": "trial", "key": key,
                                                 "reused": True, "used_at": at, "phase": None})
                    for t, task in enumerate(world.tasks):
                        rows["scores"].append({
                            "trial_key": key, "task": task, "metric": "exact_match",
                            "value": float(world.scores[s, t, i, j, k]), "n_items": p.n_items,
                            "run_id": seed_run[s], **prov, "created_at": at})

    # the ground truth: every task ranked by the mean over seeds at r = 1, in each seed's grid run
    top = ratios.index(1.0)
    for s in range(p.seeds):
        for t, task in enumerate(world.tasks):
            mean = world.scores[:, t, :, :, top].mean(axis=0)
            order = sorted(((float(mean[i, j]), e, m) for i, e in enumerate(world.encoders)
                            for j, m in enumerate(world.llms)), key=lambda x: (-x[0], x[1], x[2]))
            for rank, (v, e, m) in enumerate(order, 1):
                rows["rankings"].append({
                    "run_id": grid_run[s], "task": task, "metric": "mean over seeds", "rank": rank,
                    "encoder": e, "llm": m, "score": v, "measured_or_predicted": "measured",
                    "trial_key": None, **prov, "created_at": at, "sample_ratio": 1.0, "stage": "grid"})

    # clustering similarities, for every task and seed (each replay clusters on its target's
    # features with its seed), LLMs through every encoder's warmed projector, both CKA variants
    warm_samples = keys.warmup * 32  # the projector warm-up's batches of 32
    n_params = {c["ref"]: c.get("n_params") for c in keys.components}
    seen = set()

    def feature(run_id, key, kind, e=None, m=None):
        if key in seen:
            return
        seen.add(key)
        flops = None
        if kind == "llm" and n_params.get(e) and n_params.get(m):
            flops = float(warm_samples * (2.0 * n_params[e] + 6.0 * n_params[m]))
        rows["feature_costs"].append({
            "embedding_key": key, "wall_seconds": 3.6 if kind == "llm" else 0.8,
            "train_samples": warm_samples if kind == "llm" else 0, "train_flops": flops,
            "forward_passes": keys.samples, "run_id": run_id, **prov, "created_at": at})

    def similarity(run_id, a_key, b_key, a, b, value, batch):
        key = keys.similarity(a_key, b_key, batch)
        rows["similarities"].append({
            "similarity_key": key, "metric": keys.metric, "a": keys.fp[a], "b": keys.fp[b],
            "a_embedding": a_key, "b_embedding": b_key,
            "value": float(min(max(value + _jitter(key), 0.0), 1.0)),
            "config": json.dumps(keys.options(batch), sort_keys=True) if keys.options(batch) else None,
            "run_id": run_id, **prov, "created_at": at})
        rows["run_uses"].append({"run_id": run_id, "kind": "similarity", "key": key,
                                 "reused": False, "used_at": at, "phase": None})

    for s in range(p.seeds):
        run = seed_run[s]
        for task in world.tasks:
            enc_keys = {e: keys.encoder_embedding(task, s, e) for e in world.encoders}
            for e in world.encoders:
                feature(run, enc_keys[e], "encoder")
            for batch in CKA_CONFIGS:
                for a in range(len(world.encoders)):
                    for b in range(a + 1, len(world.encoders)):
                        ea, eb = world.encoders[a], world.encoders[b]
                        similarity(run, enc_keys[ea], enc_keys[eb], ea, eb, world.encoder_similarity[a, b], batch)
            for e in world.encoders:
                llm_keys = {m: keys.llm_embedding(task, s, e, m) for m in world.llms}
                for m in world.llms:
                    feature(run, llm_keys[m], "llm", e, m)
                for batch in CKA_CONFIGS:
                    for a in range(len(world.llms)):
                        for b in range(a + 1, len(world.llms)):
                            ma, mb = world.llms[a], world.llms[b]
                            similarity(run, llm_keys[ma], llm_keys[mb], ma, mb, world.llm_similarity[a, b],
                                       batch)
    return rows


def _version() -> str:
    from harness import __version__

    return __version__


def _insert(con, table: str, rows: list[dict]) -> None:
    """Rows into a store table in one statement (through Arrow): thousands of rows in milliseconds."""
    if not rows:
        return
    import pyarrow as pa

    names = list(rows[0])
    data = pa.table({n: [r[n] for r in rows] for n in names})
    con.register("_synthetic_rows", data)
    try:
        cols = ", ".join(f'"{n}"' for n in names)
        con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM _synthetic_rows')
    finally:
        con.unregister("_synthetic_rows")


def write_synthetic_table(folder, *, seed: int = 0, n_encoders: int = 8, n_llms: int = 6, tasks: int = 6,
                          seeds: int = 3, ratios=RATIOS, prelearn: float = 0.0, force: bool = False,
                          suite_path=None, **knobs) -> dict:
    """Draw a world (:class:`Params`; ``knobs`` are its other fields) and write it to ``folder``
    as an exported table (``harness.store.exchange.export_store`` of a store holding its rows);
    with ``suite_path`` (a zoo-named world only) also the suite that replays it. Returns the
    manifest, with a ``synthetic`` entry (the parameters, names, clusters and floors) added;
    ``manifest["world"]`` is the :class:`World` (not written)."""
    from harness.store import Store
    from harness.store.exchange import MANIFEST, export_store

    params = Params(seed=seed, n_encoders=n_encoders, n_llms=n_llms, tasks=tasks, seeds=seeds,
                    ratios=tuple(float(r) for r in sorted(ratios)), prelearn=float(prelearn), **knobs)
    if suite_path is not None and Path(suite_path).exists():
        # overwritten only when this generator wrote it, and only with force: never a user's suite
        ours = Path(suite_path).read_text(errors="replace").startswith(SUITE_HEADER)
        if not (ours and force):
            raise ValueError(f"{suite_path}: " + ("a suite written before; pass --force to replace it" if ours
                             else "exists and was not written by benchmarks/synthetic.py; choose another "
                                  "--suite (or --out)"))
    world = generate(params)
    keys = _Keys(world)
    rows = _rows(world, keys)
    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="harness-synthetic-") as tmp, \
            Store.open(Path(tmp) / "synthetic.duckdb") as store:
        with store.transaction():
            for table, table_rows in rows.items():
                _insert(store.con, table, table_rows)
        store.con.execute("SET threads = 1")  # Parquet files written the same way every time
        manifest = export_store(store, folder, force=force, embeddings=False)
    manifest["synthetic"] = {
        "generator": f"{PLUGIN} {PLUGIN_VERSION}", "params": {**asdict(params), "ratios": list(params.ratios)},
        "names": world.mode, "clusters": world.clusters(), "floors": world.floor,
        "replay": ("harness replay --table DIR --suite SUITE --store :memory:" if world.mode == "zoo"
                   else "none: syn: components cannot be loaded; read it with benchmarks.anytime.load_world"),
        "keys": f"recipe weight_decay {SALT_WEIGHT_DECAY:g}, clustering samples {SALT_FEATURES}: no real trial's "
                "or similarity's; import into a scratch store only"}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if suite_path is not None:
        if world.mode != "zoo":
            raise ValueError("a suite replays a zoo-named world only (names='zoo' or 'auto' within the zoo)")
        Path(suite_path).write_text(suite_yaml(world, folder))
    manifest["world"] = world
    return manifest


# -- what a reader checks first -------------------------------------------------------------------


def ratio_taus(world: World) -> dict[float, float]:
    """Kendall tau of each ratio's ranking with r = 1 (same seed, every candidate), mean over
    tasks and seeds: how much a low ratio says about the full-data ranking."""
    ratios = sorted(world.params.ratios)
    top = ratios.index(1.0)
    out = {}
    for k, r in enumerate(ratios[:-1]):
        vals = []
        for s in range(world.params.seeds):
            for t in range(len(world.tasks)):
                x = world.scores[s, t, :, :, k].ravel()
                y = world.scores[s, t, :, :, top].ravel()
                v = tau(x, y)
                vals.append(0.0 if math.isnan(v) else v)  # every score tied at the floor: no order
        out[r] = float(np.mean(vals))
    return out


def seed_and_task_taus(world: World) -> tuple[float, float]:
    """(seed-to-seed tau at r = 1, per task; between-task tau of the mean over seeds at r = 1)."""
    import itertools

    top = sorted(world.params.ratios).index(1.0)
    s_taus = [tau(world.scores[a, t, :, :, top].ravel(), world.scores[b, t, :, :, top].ravel())
              for t in range(len(world.tasks)) for a, b in itertools.combinations(range(world.params.seeds), 2)]
    mean = world.scores[:, :, :, :, top].mean(axis=0)
    t_taus = [tau(mean[a].ravel(), mean[b].ravel()) for a, b in itertools.combinations(range(len(world.tasks)), 2)]
    return (float(np.mean(s_taus)) if s_taus else math.nan, float(np.mean(t_taus)) if t_taus else math.nan)


def summary(world: World, folder=None) -> str:
    p = world.params
    taus = ratio_taus(world)
    seed_tau, task_tau = seed_and_task_taus(world)
    n = len(world.encoders) * len(world.llms)
    where = f"{folder}: " if folder is not None else ""
    return (f"{where}synthetic seed {p.seed}, prelearn {p.prelearn:g}: {n} candidates "
            f"({len(world.encoders)}x{len(world.llms)}, clusters {p.encoder_clusters}x{p.llm_clusters}), "
            f"{len(world.tasks)} tasks, {p.seeds} seeds, {n * p.seeds * len(p.ratios)} trials; "
            "Kendall tau with r=1 (mean over tasks and seeds): "
            + ", ".join(f"r={_frac(r)} {v:.2f}" for r, v in taus.items())
            + f"; seed-to-seed {seed_tau:.2f}, between tasks {task_tau:.2f}")


def _frac(r: float) -> str:
    return f"1/{round(1 / r)}" if r < 1 and abs(1 / r - round(1 / r)) < 1e-9 else f"{r:g}"


def main(argv=None) -> int:
    parser = arg_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the table's folder (an export)")
    parser.add_argument("--seed", type=int, default=0, help="the world's generator seed")
    parser.add_argument("--prelearn", type=float, default=0.0,
                        help="mean pre-learning phase, in doublings above the smallest ratio (0: log-linear "
                             "from the smallest ratio on, the paper's assumption)")
    parser.add_argument("--encoders", type=int, default=8)
    parser.add_argument("--llms", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds (worlds of seed noise)")
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--encoder-clusters", type=int, default=3)
    parser.add_argument("--llm-clusters", type=int, default=3)
    parser.add_argument("--interaction", type=float, default=Params.interaction)
    parser.add_argument("--train-noise", type=float, default=Params.train_noise)
    parser.add_argument("--names", choices=["auto", "zoo", "synthetic"], default="auto")
    parser.add_argument("--suite", type=Path, default=None,
                        help="where the suite that replays the table goes (default: OUT.yaml beside OUT)")
    parser.add_argument("--force", action="store_true",
                        help="replace OUT (and its suite) when this command wrote them before")
    args = parser.parse_args(argv)
    from harness.errors import HarnessError

    params = Params(seed=args.seed, n_encoders=args.encoders, n_llms=args.llms, tasks=args.tasks,
                    seeds=args.seeds, ratios=tuple(sorted(args.ratios)), prelearn=args.prelearn,
                    encoder_clusters=args.encoder_clusters, llm_clusters=args.llm_clusters,
                    interaction=args.interaction, train_noise=args.train_noise, names=args.names)
    try:
        mode = _mode(params)
        suite = (args.suite or args.out.parent / f"{args.out.name}.yaml") if mode == "zoo" else None
        knobs = {k: v for k, v in asdict(params).items()
                 if k not in ("seed", "n_encoders", "n_llms", "tasks", "seeds", "ratios", "prelearn")}
        manifest = write_synthetic_table(args.out, seed=params.seed, n_encoders=params.n_encoders,
                                         n_llms=params.n_llms, tasks=params.tasks, seeds=params.seeds,
                                         ratios=params.ratios, prelearn=params.prelearn, force=args.force,
                                         suite_path=suite, **knobs)
    except (ValueError, HarnessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    line = summary(manifest["world"], args.out)
    line += (f"; replay: harness replay --table {args.out} --suite {suite} --store :memory:" if suite
             else "; not replayable (syn: names), read with benchmarks.anytime.load_world")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
