"""Strategy ``dcd``: rank candidates for a new target task from their stored results on the
most similar past tasks, similarity being the Directional Conductance Divergence per encoder
(harness/conductance.py; Yang et al., "Model Specific Task Similarity for Vision Language Model
Selection via Layer Conductance").

For target T and each past task S, per encoder e of the zoo: e's block-importance profile on
``transfer.examples`` train items of each task (cached in the store as embeddings, layer
"conductance"), then DCD_e(S -> T) (stored in ``similarities``, metric "dcd"). Candidate (e, l)
is predicted to score on T

    sum_S w_S * score(e, l, S)   over the ``transfer.neighbours`` past tasks S with the smallest
                                 DCD_e(S -> T) among those (e, l) has a stored score on,
    w = softmax(-DCD / tau),     tau = the mean DCD of those neighbours

``tau`` makes the weights scale-free (DCD has no natural unit): neighbours as far apart as the
average get weights e:1 apart, equal divergences give equal weights, and a zero divergence
cannot blow up as 1/DCD would. With several targets the objective is the mean prediction.

Past scores are read, never trained: the candidate's trial at r = 1 (``self.spec(c, 1.0)``) is
looked up with ``stored_only=True`` and every task scored on its checkpoint is a possible
source. Candidates without a stored trial, or with no score on any past task, rank last with no
score. Then the top ``transfer.train_top`` (default 0: none) are trained at r = 1 and move to
the head of the ranking, ordered by their measured scores.

``holdout_evaluation`` measures how well this transfers on a store with a full grid: each task
in turn is the target, the others the history.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from harness.errors import BadInput
from harness.strategy import RankedCandidate, SearchStrategy, best_first
from harness.suite import Candidate, Transfer

LAYER = "conductance"
METRIC = "dcd"


# ---------------------------------------------------------------- pure parts


def neighbour_weights(divergences: Sequence[float]) -> np.ndarray:
    """softmax(-d / tau) with tau = mean(d): scale-free; uniform when all are equal or zero."""
    d = np.asarray(divergences, dtype=np.float64)
    tau = d.mean() if d.size else 0.0
    if not d.size or tau <= 0:
        return np.full(d.size, 1.0 / max(d.size, 1))
    logits = -(d - d.min()) / tau
    w = np.exp(logits)
    return w / w.sum()


def transfer_prediction(divergences: Mapping[str, float], scores: Mapping[str, float],
                        neighbours: int) -> float | None:
    """A candidate's predicted score on the target from its ``scores`` on past tasks and each
    task's ``divergences`` (DCD source -> target): the weighted mean over the ``neighbours``
    closest tasks it has a score on (ties broken by task name). None when it has none."""
    usable = sorted((divergences[s], s) for s in scores if s in divergences)[:neighbours]
    if not usable:
        return None
    w = neighbour_weights([d for d, _ in usable])
    return float(sum(wi * scores[s] for wi, (_, s) in zip(w, usable)))


def uniform_prediction(scores: Mapping[str, float], sources: Sequence[str]) -> float | None:
    """The no-similarity baseline: the plain mean of a candidate's scores on every past task."""
    values = [scores[s] for s in sources if s in scores]
    return float(np.mean(values)) if values else None


def rank_by_prediction(predicted: Mapping) -> list:
    """Keys best first; None (no prediction) last; ties and Nones by name."""
    return sorted(predicted, key=lambda c: (predicted[c] is None,
                                            -predicted[c] if predicted[c] is not None else 0.0,
                                            str(c)))


# ---------------------------------------------------------------- the strategy


class DCDSearch(SearchStrategy):
    name = "dcd"
    Options = Transfer  # search.options: history, examples, neighbours, train_top

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.profiles_computed = 0  # conductance profiles computed (not read from the store)
        self._encoders: dict = {}
        self._datasets: dict = {}

    def search(self) -> list[RankedCandidate]:
        start = time.perf_counter()
        candidates = list(self.plan.candidates)
        targets = [t.task for t in self.targets]
        stored = self.stored_scores(candidates)
        history = self.history(stored, exclude=set(targets))
        encoders = list(self.plan.encoders)
        self.phase("conductance profiles", total=len(encoders) * (len(history) + len(targets)))
        keys, all_reused = self.profiles(encoders, history + targets)
        per_target = {}
        for target in targets:
            divergences = self.divergences(encoders, history, target, keys)
            per_target[target] = {
                c: transfer_prediction(divergences[c.vision_encoder], stored.get(c, {}),
                                       self.options.neighbours)
                for c in candidates}
        self.record_phase_cost("conductance", time.perf_counter() - start, 0, all_reused,
                               [k for k, _ in keys.values()])
        predicted = {c: (None if any(p[c] is None for p in per_target.values())
                         else float(np.mean([p[c] for p in per_target.values()])))
                     for c in candidates}
        ranked = [RankedCandidate(c, math.nan if predicted[c] is None else predicted[c],
                                  "predicted", sample_ratio=None, stage="dcd")
                  for c in rank_by_prediction(predicted)]
        return self.confirm(ranked)

    def confirm(self, ranked: list[RankedCandidate]) -> list[RankedCandidate]:
        """Train the top ``train_top`` at r = 1; they lead the ranking by measured score."""
        top = [r for r in ranked[:self.options.train_top] if not math.isnan(r.score)]
        if not top:
            return ranked
        self.phase("confirm top candidates", total=len(top))
        measured = [RankedCandidate(r.candidate, self.evaluate(r.candidate, 1.0), "measured",
                                    self._outcomes[(r.candidate, 1.0)].key, stage="dcd-trained")
                    for r in top]
        measured.sort(key=lambda r: best_first(r.score, r.candidate))
        done = {r.candidate for r in measured}
        return measured + [r for r in ranked if r.candidate not in done]

    # -- stored results ------------------------------------------------------------------------

    def stored_scores(self, candidates: Sequence[Candidate]) -> dict[Candidate, dict[str, float]]:
        """{candidate: {task: score}} from each candidate's stored trial at r = 1 (never trained).
        Where a task was scored with several metrics, the suite target's metric wins, else the
        first by name."""
        from harness.trial import run_trial

        wanted = {t.task: t.metric for t in self.targets}
        out = {}
        for c in candidates:
            spec = dataclasses.replace(self.spec(c, 1.0), targets=())
            outcome = run_trial(spec, self.store, self.run_id, stored_only=True)
            if outcome is None or outcome.status != "done":
                continue
            by_task: dict[str, float] = {}
            for row in self.store.get_scores(outcome.key):  # ordered by task, metric
                if row["task"] not in by_task or row["metric"] == wanted.get(row["task"]):
                    by_task[row["task"]] = float(row["value"])
            out[c] = by_task
        return out

    def history(self, stored: Mapping[Candidate, Mapping[str, float]], exclude: set) -> list[str]:
        """The past tasks: ``transfer.history``, else every task with a stored score for one of
        the candidates; targets left out. Auto-found tasks without images and answers to probe
        (their dataset family has no train split) are skipped."""
        named = self.options.history
        seen = sorted({t for scores in stored.values() for t in scores})
        if named is not None:
            tasks = [t for t in named if t not in exclude]
        else:
            tasks = [t for t in seen if t not in exclude and _probeable(t)]
        tasks = [t for t in tasks if t in seen]
        if not tasks:
            wanted = ", ".join(named) if named else "any task other than the targets"
            raise BadInput(
                f"strategy dcd: no stored results at r = 1 on {wanted} for this suite's candidates"
                f" (alignment {self.plan.alignment}, seed {self.plan.seed}); run a grid"
                f" (search.strategy: grid) with those past tasks as targets first")
        return tasks

    # -- conductance ---------------------------------------------------------------------------

    def task_examples(self, task: str):
        """(dataset, items): ``transfer.examples`` train items of ``task`` with images and answers."""
        if task not in self._datasets:
            from harness.plugin_manager import families_that, family_of

            n = self.options.examples
            family, name = family_of(task)
            if "train" not in family.splits:
                raise BadInput(f"strategy dcd: task {task!r} has no images with answers to probe "
                               f"the encoders on (its dataset family {family.family!r} has no train "
                               f"split); use tasks of: {', '.join(families_that('train'))}")
            dataset = family.split(name, "train", n=n, seed=self.plan.seed)
            items = [it for it in dataset if it.has_image and it.answer is not None][:n]
            if len(items) < 2:
                raise BadInput(f"strategy dcd: task {task!r} has {len(items)} items with an image"
                               " and an answer; the probe needs at least 2")
            self._datasets[task] = (dataset, items)
        return self._datasets[task]

    def encoder(self, ref: str):
        if ref not in self._encoders:
            from harness.trial import load_encoder

            self._encoders[ref] = load_encoder(ref)[1]
        return self._encoders[ref]

    def profiles(self, encoders: Sequence[str], tasks: Sequence[str]):
        """{(encoder, task): (embedding key, profile)}, each read from the store or computed and
        stored; and whether all were read back."""
        from harness.plugins.strategies.conductance import task_profile

        out, all_reused = {}, True
        n = self.options.examples
        for ref in encoders:
            encoder = self.encoder(ref)
            for task in tasks:
                dataset, items = self.task_examples(task)
                self.say(f"conductance: {ref} on {task}")

                def compute(encoder=encoder, items=items):
                    self.profiles_computed += 1
                    return task_profile(encoder, items, seed=self.plan.seed)

                key, profile, reused = self._features(encoder.fingerprint, dataset, LAYER,
                                                      compute, n)
                all_reused &= reused
                out[(ref, task)] = (key, profile)
                self.progress.advance()
        return out, all_reused

    def divergences(self, encoders: Sequence[str], sources: Sequence[str], target: str,
                    profiles: Mapping) -> dict[str, dict[str, float]]:
        """{encoder: {source: DCD(source -> target)}}, read from or written to ``similarities``."""
        from harness.plugins.strategies.conductance import DEFAULT_EPSILON, DEFAULT_FLOOR, dcd
        from harness.store import similarity_key

        plugin, version = self._plugin()
        config = {"epsilon": DEFAULT_EPSILON, "floor": DEFAULT_FLOOR}
        out: dict[str, dict[str, float]] = {}
        for ref in encoders:
            out[ref] = {}
            t_key, t_profile = profiles[(ref, target)]
            for source in sources:
                s_key, s_profile = profiles[(ref, source)]
                key = similarity_key(metric=METRIC, a=s_key, b=t_key, config=config,
                                     symmetric=False)
                value = self.store.get_similarity(key)
                reused = value is not None
                if not reused:
                    value = dcd(s_profile, t_profile, epsilon=DEFAULT_EPSILON, floor=DEFAULT_FLOOR)
                    self.store.put_similarity(
                        key, value, metric=METRIC, a=self.task_examples(source)[0].fingerprint,
                        b=self.task_examples(target)[0].fingerprint, a_embedding=s_key,
                        b_embedding=t_key, run_id=self.run_id, plugin=plugin,
                        plugin_version=version,
                        config={**config, "encoder": ref,
                                "encoder_fingerprint": self.encoder(ref).fingerprint,
                                "source": source, "target": target})
                self.store.record_use(self.run_id, "similarity", key, reused=reused, phase="conductance")
                out[ref][source] = float(value)
        return out


def _probeable(task: str) -> bool:
    """Whether ``task``'s dataset family has a train split to probe the encoders on."""
    from harness.plugin_manager import family_of
    from harness.registry import RegistryError

    try:
        return "train" in family_of(task)[0].splits
    except RegistryError:  # a task stored by a plugin that is not installed here
        return False



# ---------------------------------------------------------------- leave-one-task-out


def holdout_evaluation(store, suite, tasks: Sequence[str] | None = None, *, run_id: str | None = None,
                       k: int = 5) -> list[dict]:
    """Leave one task out: each task T in ``tasks`` (default: every probeable task with stored
    r = 1 scores for ``suite``'s candidates) is predicted from the others' stored results and
    compared with T's measured scores: NDCG@k and Kendall tau-b over every candidate measured on
    T, for DCD transfer and for the uniform mean over all past tasks. Profiles and divergences
    go to the store (a rerun computes nothing). Without ``run_id`` a run is recorded for it."""
    from harness.measures import kendall_tau, ndcg_at

    own_run = run_id is None
    if own_run:
        entry = _strategy_entry()
        run_id = store.start_run(suite_name=suite.name, suite_hash=suite.fingerprint(),
                                 strategy="dcd-holdout", seed=suite.seed,
                                 config=suite.model_dump(mode="json"), plugin=entry.plugin,
                                 plugin_version=entry.version)
    try:
        strategy = DCDSearch(suite=suite, store=store, run_id=run_id)
        candidates = list(strategy.plan.candidates)
        stored = strategy.stored_scores(candidates)
        seen = sorted({t for scores in stored.values() for t in scores})
        tasks = [t for t in (tasks or seen) if _probeable(t)]
        missing = [t for t in tasks if t not in seen]
        if missing or len(tasks) < 2:
            raise BadInput(f"holdout needs stored r = 1 scores on at least two tasks; missing: "
                           f"{', '.join(missing) or '-'}; have: {', '.join(seen) or 'none'}")
        encoders = list(strategy.plan.encoders)
        profiles, _ = strategy.profiles(encoders, tasks)
        rows = []
        for target in tasks:
            sources = [t for t in tasks if t != target]
            divergences = strategy.divergences(encoders, sources, target, profiles)
            past = {c: {s: v for s, v in stored.get(c, {}).items() if s in sources}
                    for c in candidates}
            truth = {c: stored[c][target] for c in candidates if target in stored.get(c, {})}
            dcd_pred = {c: transfer_prediction(divergences[c.vision_encoder], past[c],
                                               strategy.options.neighbours)
                        for c in truth}
            base_pred = {c: uniform_prediction(past[c], sources) for c in truth}
            row = {"task": target, "candidates": len(truth), "history": sources}
            for label, pred in (("dcd", dcd_pred), ("uniform", base_pred)):
                ranking = rank_by_prediction(pred)
                row[f"{label}_ndcg_at_{k}"] = ndcg_at(truth, ranking, k)
                row[f"{label}_kendall_tau"] = kendall_tau(truth, ranking, top=None)
            rows.append(row)
    except BaseException as exc:
        if own_run:
            store.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if own_run:
        store.finish_run(run_id, "done")
    return rows


def _strategy_entry():
    from harness.plugin_manager import get_components

    return get_components()["search_strategy"].get("dcd")
