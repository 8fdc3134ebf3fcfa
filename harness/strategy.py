"""What every search strategy shares: trials through the executor, the objective, progress,
and writing rankings to the store."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass

import numpy as np

from harness.errors import HarnessError, stop_if_interrupted
from harness.evidence import order_by_evidence
from harness.scoring import DEFAULT_TEST_ITEMS
from harness.threads import registered, set_fair_threads
from harness.suite import Candidate


@dataclass
class RankedCandidate:
    candidate: Candidate
    score: float
    measured_or_predicted: str  # measured | predicted
    trial_key: str | None = None
    sample_ratio: float | None = 1.0  # where the score was measured (None: never evaluated)
    stage: str = "grid"  # grid | survivor | eliminated-intra | eliminated-inter
    lower: float | None = None  # a predicted score's 95% interval
    upper: float | None = None
    estimate: float | None = None  # below the survivors: the full-data score the place is ordered by

    @property
    def basis(self) -> str:
        """What the place rests on: measured | predicted | eliminated | cluster | similarity
        (rankings.basis)."""
        if self.stage == "gw-rank":
            return "similarity"
        if self.measured_or_predicted == "predicted":
            return "predicted"
        if self.stage.startswith("eliminated"):
            return "eliminated" if self.sample_ratio is not None else "cluster"
        return "measured"


class SearchStrategy:
    """Base: subclasses implement ``search() -> list[RankedCandidate]`` (best first)."""

    name = "base"
    exhaustive = False  # True: it measures every candidate at r = 1 (its runs are ground truths)
    use_phase: str | None = None  # the phase stored uses are recorded under (run_uses.phase)

    def __init__(self, suite, store, run_id: str, console=None, executor=None):
        """``suite``: a validated :class:`harness.suite.Suite`, read once into :attr:`plan`
        (:class:`harness.plan.Plan`), which is all a strategy reads of it."""
        from harness.plan import Plan
        from harness.plugin_manager import get_components

        self.plan = Plan.of(suite)
        self.store = store
        self.run_id = run_id
        self.components = get_components()
        self.train_config = self.plan.train
        self.targets = self.plan.targets
        if executor is None:  # a replay passes its own
            executor = self.components["executor"].get(self.plan.executor).load()(
                store, run_id, **self.plan.executor_options)
        from harness.executors import Executor

        self.executor = executor if isinstance(executor, Executor) else Executor(executor)
        self.console = console
        self.trained = 0
        self.reused = 0
        self.failed = 0
        self._outcomes: dict = {}
        self._specs: dict = {}  # (candidate, ratio) -> the TrialSpec its outcome answers
        self._progress = None
        self.show_progress = True  # a progress bar on the console (a replay per task shows none)

    # -- the objective ------------------------------------------------------------------------

    @property
    def objective(self) -> str:
        """The task name rankings are stored under: the target, or the mean over targets."""
        return objective_name([t.task for t in self.targets])

    def spec(self, candidate: Candidate, ratio: float):
        """The trial of ``candidate`` at ``ratio``. With ``search.continuation`` it continues
        the candidate's finished trial at its largest smaller ratio in this run, if any (the
        run's decisions fix which trials those are, so the same suite gives the same chain)."""
        import dataclasses

        from harness.trial import TrialSpec

        plan = self.plan
        spec = TrialSpec(encoder=candidate.vision_encoder, llm=candidate.language_model,
                         alignment=plan.alignment, samples=plan.samples,
                         ratio=ratio, train=plan.train, seed=plan.seed,
                         targets=plan.targets, device=plan.device)
        if self.plan.search.continuation:
            lower = [r for (c, r), o in self._outcomes.items()
                     if c == candidate and r < ratio and o.status == "done"]
            if lower:
                parent = self._specs[(candidate, max(lower))]
                spec = dataclasses.replace(spec, after=(*parent.after, parent.ratio))
        return spec

    @functools.cached_property
    def options(self):
        """The suite's ``search.options`` read by this strategy's ``Options`` model (its defaults
        filled); None for a strategy that declares none."""
        model = getattr(type(self), "Options", None)
        return None if model is None else model.model_validate(self.plan.search.options)

    def evaluate(self, candidate: Candidate, ratio: float) -> float:
        """The objective of ``candidate`` trained at ``ratio``: mean over targets, NaN if failed."""
        outcome = self.trial(candidate, ratio)
        if outcome.status != "done":
            return math.nan
        return sum(s.value for s in outcome.scores) / len(outcome.scores)

    def score_error(self, candidate: Candidate, ratio: float) -> float:
        """Standard error of :meth:`evaluate`'s score: binomial over each target's test items
        (sqrt(p (1 - p) / n)), combined over targets as the error of their mean; 0 when unknown."""
        outcome = self._outcomes.get((candidate, ratio))
        if outcome is None or outcome.status != "done" or not outcome.scores:
            return 0.0
        return binomial_error([(s.value, s.n_items) for s in outcome.scores])

    @property
    def constant_baseline(self) -> float | None:
        """The objective's constant-answer score (:func:`constant_baseline`), read from the
        store's ``task_baselines`` or computed once and stored there."""
        if not hasattr(self, "_baseline"):
            self._baseline = constant_baseline(
                self.targets, self.store,
                record=lambda row: self.store.insert("task_baselines", [{
                    "run_id": self.run_id, **dict(zip(("plugin", "plugin_version"), self._plugin())),
                    **row}], on_conflict="ignore"))
        return self._baseline

    def trial(self, candidate: Candidate, ratio: float):
        key = (candidate, ratio)
        if key not in self._outcomes:
            self.say(f"{candidate} r={ratio:g}")
            spec = self.spec(candidate, ratio)
            set_fair_threads()  # other harness processes may have started or ended since
            self._record_outcome(candidate, ratio, self.executor.run(spec), spec)
        return self._outcomes[key]

    def prefetch(self, pairs) -> None:
        """Hand the trials of independent ``(candidate, ratio)`` pairs (one rung, the grid, the
        prediction points) to the executor together when it takes batches (``run_many``:
        ``processes``, ``ray``), so they run in parallel; :meth:`trial` then finds them. The
        decisions do not change: they are made from the scores afterwards, in the same order."""
        run_many = self.executor.run_many
        todo = [p for p in dict.fromkeys(pairs) if p not in self._outcomes]
        continuation = self.plan.search.continuation
        if self.executor.streams and todo and not continuation:
            # started now, taken one by one by trial(): each waits for its own result only
            self.executor.submit([self.spec(c, r) for c, r in todo])
            return
        if not self.executor.batches or len(todo) < 2:
            return
        if continuation:
            # a candidate's trials at several ratios continue one another: in waves, its
            # smallest ratio first, so each spec is built as the sequential run builds it
            waves: dict[int, list] = {}
            for c in dict.fromkeys(c for c, _ in todo):
                for i, r in enumerate(sorted(r for c2, r in todo if c2 == c)):
                    waves.setdefault(i, []).append((c, r))
            for i in sorted(waves):
                self._run_wave(run_many, waves[i])
            return
        self._run_wave(run_many, todo)

    def _run_wave(self, run_many, todo) -> None:
        if len(todo) < 2:
            for candidate, ratio in todo:
                self.trial(candidate, ratio)
            return
        self.say(f"{len(todo)} trials in parallel")
        specs = [self.spec(c, r) for c, r in todo]
        for (candidate, ratio), spec, outcome in zip(todo, specs, run_many(specs)):
            self._record_outcome(candidate, ratio, outcome, spec)

    def _record_outcome(self, candidate: Candidate, ratio: float, outcome, spec=None) -> None:
        self._outcomes[(candidate, ratio)] = outcome
        self._specs[(candidate, ratio)] = spec
        if outcome.status != "done":
            self.failed += 1
            self.say(f"[red]failed[/red] {candidate} r={ratio:g}: {outcome.error}", always=True)
        elif outcome.reused:
            self.reused += 1
        else:
            self.trained += 1
        if self._progress is not None and hasattr(self, "_task"):
            self._progress.advance(self._task)
        if outcome.status == "done" and not getattr(self.executor, "replay", False):
            # one line per finished trial, on stderr and flushed, terminal or not (a replay
            # answers hundreds from a table: its rungs and answer say what it did)
            n = self.trained + self.reused + self.failed
            how = "reused" if outcome.reused else f"trained in {outcome.wall_seconds:.1f}s"
            self.say(f"trial {n} done: {candidate} r={ratio:g}: score {self.evaluate(candidate, ratio):.4f} "
                     f"({how})", always=True)

    # -- progress and output ------------------------------------------------------------------

    def say(self, message: str, always: bool = False) -> None:
        """A status line: the progress bar's description, and with ``always`` a line on the
        run's console (stderr), prefixed with the task it is about and flushed at once, so a
        user whose output is not a terminal sees the run move."""
        if self._progress is not None and hasattr(self, "_task"):
            # (before the first phase there is no bar to describe)
            self._progress.update(self._task, description=message)
        if always and self.console is not None:
            from rich.markup import escape

            self.console.print(f"{escape(f'[{self.objective}]')} {message}", highlight=False,
                               soft_wrap=True)
            with contextlib.suppress(Exception):
                self.console.file.flush()

    def phase(self, name: str, total: int | None):
        """Start a progress phase with ``total`` planned trials (rich shows the ETA)."""
        if self._progress is not None:
            self._task = self._progress.add_task(name, total=total)

    def run(self) -> list[RankedCandidate]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        start = time.perf_counter()
        with registered(), Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                      transient=True, disable=self.console is None or not self.show_progress) as progress:
            self._progress = progress
            try:
                ranking = order_by_evidence(self.search(), self.measured_scores())
            finally:
                self._progress = None
                self.executor.close()  # trials submitted and never asked for are cancelled
        self.record_ranking(ranking)
        self.wall_seconds = time.perf_counter() - start
        return ranking

    def search(self) -> list[RankedCandidate]:  # pragma: no cover - abstract
        raise NotImplementedError

    def measured_scores(self, candidate: Candidate | None = None) -> dict:
        """candidate -> {ratio: (score, trial key)} of every done trial of this run (only
        ``candidate``'s when given): what :func:`harness.evidence.order_by_evidence` and the
        scaling fits read, so no score the run has is left out."""
        out: dict = {}
        for (c, r), outcome in list(self._outcomes.items()):
            if outcome.status == "done" and (candidate is None or c == candidate):
                out.setdefault(c, {})[r] = (self.evaluate(c, r), outcome.key)
        return out

    def record_ranking(self, ranking: list[RankedCandidate]) -> None:
        plugin, version = self._plugin()
        metric = "mean" if len(self.targets) > 1 else "score"
        rows = [{"run_id": self.run_id, "task": self.objective, "metric": metric, "rank": i + 1,
                 "encoder": r.candidate.vision_encoder, "llm": r.candidate.language_model,
                 "score": None if r.score is None or math.isnan(r.score) else r.score,
                 "measured_or_predicted": r.measured_or_predicted, "trial_key": r.trial_key,
                 "sample_ratio": r.sample_ratio, "stage": r.stage, "basis": r.basis,
                 "error": self._ranked_error(r), "lower": _finite(r.lower), "upper": _finite(r.upper),
                 "estimate": _finite(r.estimate), "plugin": plugin, "plugin_version": version} for i, r in enumerate(ranking)]
        self.store.insert("rankings", rows)

    def _ranked_error(self, r: RankedCandidate) -> float | None:
        """The SE of a ranked score measured by a trial of this run; None otherwise."""
        if r.sample_ratio is None or r.measured_or_predicted != "measured" or r.score is None \
                or math.isnan(r.score) or (r.candidate, r.sample_ratio) not in self._outcomes:
            return None
        return self.score_error(r.candidate, r.sample_ratio)

    def _plugin(self) -> tuple[str, str]:
        entry = self.components["search_strategy"].get(self.name)
        return entry.plugin, entry.version

    def feature_data(self, task: str, n: int):
        """(dataset, items): what clustering features of ``task`` are computed on, ``n`` items:
        what its dataset family gives (:meth:`harness.datasets.DatasetFamily.features`: a train
        split, or a scored task's own validation images, never test items); when it has none,
        the alignment data (said once in the run's log)."""
        from harness.datasets import family_of
        from harness.trial import load_alignment

        cache = self.__dict__.setdefault("_feature_data", {})
        if (task, n) in cache:
            return cache[(task, n)]
        family, name = family_of(task)
        target = next((t for t in self.targets if t.task == task), None)
        dataset, note = family.features(name, n=n, seed=self.plan.seed, target=target)
        if dataset is not None:
            if note:
                self.say(f"clustering features of {task}: {note}", always=True)
        else:
            self.say(f"clustering features of {task} come from the alignment data: {note}", always=True)
            _, dataset = load_alignment(self.plan.alignment, n, seed=0)
        cache[(task, n)] = dataset, [dataset[i] for i in range(min(n, len(dataset)))]
        return cache[(task, n)]

    def _features(self, component_fp: str, dataset, layer: str, compute, n: int, producer=None):
        """(key, features, reused): a component's features on the first ``n`` items of ``dataset``
        at ``layer``, read from the store by content key, else ``compute()``d and stored. Either
        way the features are returned as stored (float16), so a first run and a rerun compute
        the same similarities from them. The use is recorded in ``run_uses``."""
        from harness.store import embedding_key

        key = embedding_key(component=component_fp, dataset=dataset.fingerprint, layer=layer,
                            sample_set={"first": n})
        cached = self.store.get_embedding(key)
        self.store.record_use(self.run_id, "embedding", key, reused=cached is not None,
                              phase=self.use_phase)
        if cached is not None:
            return key, np.asarray(cached, dtype=np.float32), True
        self.executor.missing_embedding(f"the {layer!r} features of component {component_fp[:12]}")
        start = time.perf_counter()
        feats = compute()  # the features, or (features, {"train_samples": k, "train_flops": f})
        feats, spent = feats if isinstance(feats, tuple) else (feats, {})
        if not np.all(np.isfinite(np.asarray(feats, dtype=np.float32))):
            # a broken component (NaN weights, an overflow): nothing is stored, and its
            # similarities come out non-finite, which clustering reads as "unlike everything"
            self.say(f"[red]the {layer!r} features of component {component_fp[:12]} are not finite; "
                     "not stored[/red]", always=True)
            return key, np.asarray(feats, dtype=np.float32), False
        # the component made the features (its plugin), else the strategy that computed them
        plugin, version = (producer.plugin, producer.version) if producer is not None else self._plugin()
        with self.store.transaction():
            self.store.put_embedding(key, feats, component_fingerprint=component_fp,
                                     dataset_fingerprint=dataset.fingerprint, layer=layer,
                                     run_id=self.run_id, plugin=plugin, plugin_version=version,
                                     sample_set={"first": n})
            self.store.insert("feature_costs", [{
                "embedding_key": key, "wall_seconds": time.perf_counter() - start,
                "train_samples": int(spent.get("train_samples", 0)), "train_flops": spent.get("train_flops"),
                "forward_passes": int(np.shape(feats)[0]) if np.ndim(feats) else 0,
                "run_id": self.run_id, "plugin": plugin, "plugin_version": version}], on_conflict="ignore")
        return key, np.asarray(self.store.get_embedding(key), dtype=np.float32), False

    def _lazy_features(self, component_fp: str, dataset, layer: str, compute, n: int, producer=None):
        """(key, load): the features' content key now, the features only when ``load()`` is
        called (then as :meth:`_features`). A similarity already stored under the key needs no
        features: a replay on a table that ships similarities but not raw embeddings works."""
        from harness.store import embedding_key

        key = embedding_key(component=component_fp, dataset=dataset.fingerprint, layer=layer,
                            sample_set={"first": n})
        cache: dict = {}

        def load():
            if "feats" not in cache:
                try:
                    _, cache["feats"], cache["reused"] = self._features(component_fp, dataset, layer,
                                                                        compute, n, producer)
                except (KeyboardInterrupt, MemoryError, HarnessError):
                    raise  # (a replay's missing features, a store error, a diverged warm-up)
                except Exception as exc:  # noqa: BLE001 - a component's forward failed: that
                    # component is clustered alone and the search goes on
                    stop_if_interrupted(exc)  # Ctrl-C during a DuckDB statement is no failure
                    who = f"plugin {producer.plugin} {producer.version}" if producer is not None else "component"
                    self.say(f"[red]the {layer!r} features of {component_fp[:12]} ({who}) could not be "
                             f"computed: {type(exc).__name__}: {str(exc)[:200]}; clustered alone[/red]",
                             always=True)
                    cache["feats"], cache["reused"] = np.full((1, 1), np.nan, dtype=np.float32), False
                cache["finite"] = bool(np.all(np.isfinite(cache["feats"])))
            return cache["feats"]

        load.cache = cache
        return key, load

    def feature_cost(self, keys) -> dict:
        """What the features under ``keys`` cost when they were computed, reused or not (the
        empty-store price): seconds, training samples and FLOPs, items embedded; and the seconds
        of those computed by this run (already inside its measured phase time)."""
        keys = list(keys)
        out = {"seconds": 0.0, "samples": 0, "flops": 0.0, "forward": 0, "fresh_seconds": 0.0}
        if not keys:
            return out
        marks = ", ".join("?" for _ in keys)
        row = self.store.query(
            "select coalesce(sum(wall_seconds), 0) as s, coalesce(sum(train_samples), 0) as n,"
            " coalesce(sum(train_flops), 0) as f, coalesce(sum(forward_passes), 0) as p,"
            " coalesce(sum(wall_seconds) filter (where run_id = ?), 0) as fresh"
            f" from feature_costs where embedding_key in ({marks})", [self.run_id, *keys])[0]
        return {"seconds": float(row["s"]), "samples": int(row["n"]), "flops": float(row["f"]),
                "forward": int(row["p"]), "fresh_seconds": float(row["fresh"])}

    def record_phase_cost(self, phase: str, seconds: float, samples: int, reused: bool, keys=()) -> None:
        """One ``phase_costs`` row: what the phase computed now (``seconds``, ``samples``) and
        what it costs with an empty store (every feature it used at its original price)."""
        spent = self.feature_cost(keys)
        self.insert("phase_costs", [{
            "phase": phase, "wall_seconds": seconds, "samples_seen": samples, "reused": reused,
            "cost_seconds": spent["seconds"] + max(0.0, seconds - spent["fresh_seconds"]),
            "cost_samples": max(spent["samples"], samples), "cost_flops": spent["flops"],
            "forward_passes": spent["forward"]}])

    def insert(self, table: str, rows: list[dict], producer=None) -> None:
        """Rows with this run's id and the plugin that made them: ``producer`` (a registry
        entry: the policy of a rung, the predictor of a fit), else the strategy."""
        plugin, version = (producer.plugin, producer.version) if producer is not None else self._plugin()
        self.store.insert(table, [{"run_id": self.run_id, "plugin": plugin,
                                   "plugin_version": version, **row} for row in rows])


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def objective_name(tasks: list[str]) -> str:
    """The task name a search's rankings are stored under: the one target, or ``mean(a,b,...)``."""
    return tasks[0] if len(tasks) == 1 else "mean(" + ",".join(tasks) + ")"


def objective_tasks(name: str) -> list[str]:
    """The targets behind an :func:`objective_name`."""
    if name.startswith("mean(") and name.endswith(")"):
        return name[5:-1].split(",")
    return [name]


def binomial_error(scores) -> float:
    """Standard error of the mean of accuracies ``scores`` ((value, n_items) pairs): binomial
    over each one's items (sqrt(p (1 - p) / n)), combined as the error of their mean; a score
    without items adds nothing."""
    var = 0.0
    for value, n in scores:
        p = min(max(float(value), 0.0), 1.0)
        var += p * (1 - p) / n if n else 0.0
    return math.sqrt(var) / len(scores)


def task_baseline(task: str, limit: int | None) -> tuple[str | None, float, int] | None:
    """(answer, value, n_items): the constant-answer score of one target's test split, the share
    of its items whose answer is the most frequent one (always giving that answer scores it);
    None when its dataset family does not know them here (:meth:`~harness.datasets.DatasetFamily.answers`)."""
    from collections import Counter

    from harness.datasets import family_of

    family, name = family_of(task)
    answers = family.answers(name, limit or DEFAULT_TEST_ITEMS)
    if answers is None:
        return None
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0, len(answers)
    answer, top = counts.most_common(1)[0]
    return answer, top / sum(counts.values()), len(answers)


def constant_baseline(targets, store=None, record=None) -> float | None:
    """The constant-answer score of ``targets`` (objects with ``task`` and ``limit``),
    :func:`task_baseline` averaged over targets; None when one is not known. With a ``store``,
    each target's value is read from ``task_baselines`` and, when missing and ``record`` is given
    (``record(row)`` inserts it with the caller's provenance), computed and stored once."""
    values = []
    for t in targets:
        n = t.limit or DEFAULT_TEST_ITEMS
        row = None
        if store is not None and store.has_table("task_baselines"):  # a pre-m011 store lacks it
            rows = store.query("select value from task_baselines where task = ? and split = 'test'"
                               " and n_items = ?", [t.task, n])
            row = rows[0]["value"] if rows else None
        if row is None:
            found = task_baseline(t.task, t.limit)
            if found is None:
                return None
            answer, row, counted = found
            if record is not None and counted == n:
                record({"task": t.task, "split": "test", "n_items": n, "answer": answer, "value": row})
        values.append(float(row))
    return sum(values) / len(values) if values else None


def best_first(score, candidate) -> tuple:
    """The sort key of "best first, failed (None or NaN) last, ties by name", for scores where
    higher is better: every strategy orders its ranking with it."""
    bad = score is None or math.isnan(score)
    return (bad, 0.0 if bad else -score, str(candidate))
