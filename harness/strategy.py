"""The search-strategy contract (:class:`SearchStrategy`) and what every strategy shares: the
objective, the ranked candidate, the constant-answer baseline. Built-in strategies live in
:mod:`harness.plugins.strategies`."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

from harness.evidence import order_by_evidence
from harness.scoring import DEFAULT_TEST_ITEMS
from harness.threads import registered
from harness.trials import binomial_error  # noqa: F401 - (its home before harness.trials)
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
    """The contract of a search strategy: subclasses implement ``search() -> list[RankedCandidate]``
    (best first), deciding which (candidate, ratio) to evaluate.

    The rest is done by three collaborators a strategy reaches through the methods below, so a
    decision is kept apart from running trials, progress display and store writes:
    ``self.trials`` (:class:`harness.trials.Trials`: runs trials through the executor, keeps
    outcomes), ``self.progress`` (:class:`harness.progress.SearchProgress`: bars and status
    lines) and ``self.records`` (:class:`harness.records.SearchRecords`: rows, ranking, phase
    costs, features).
    """

    name = "base"
    exhaustive = False  # True: it measures every candidate at r = 1 (its runs are ground truths)
    use_phase: str | None = None  # the phase stored uses are recorded under (run_uses.phase)

    def __init__(self, suite, store, run_id: str, console=None, executor=None):
        """``suite``: a validated :class:`harness.suite.Suite`, read once into :attr:`plan`
        (:class:`harness.plan.Plan`), which is all a strategy reads of it."""
        from harness.executors import Executor
        from harness.plan import Plan
        from harness.plugin_manager import get_components
        from harness.progress import SearchProgress
        from harness.records import SearchRecords
        from harness.trials import Trials

        self.plan = Plan.of(suite)
        self.store = store
        self.run_id = run_id
        self.components = get_components()
        self.train_config = self.plan.train
        self.targets = self.plan.targets
        if executor is None:  # a replay passes its own
            executor = self.components["executor"].get(self.plan.executor).load()(
                store, run_id, **self.plan.executor_options)
        self.executor = executor if isinstance(executor, Executor) else Executor(executor)
        self.console = console
        self.progress = SearchProgress(console, lambda: self.objective)
        self.trials = Trials(self.plan, self.executor, self.progress)
        self.records = SearchRecords(store, run_id, self._plugin, self.executor, self.progress,
                                     use_phase=lambda: self.use_phase)

    # -- the objective ------------------------------------------------------------------------

    @property
    def objective(self) -> str:
        """The task name rankings are stored under: the target, or the mean over targets."""
        return objective_name([t.task for t in self.targets])

    @classmethod
    def check_suite(cls, suite) -> None:
        """Called when a suite naming this strategy is validated, before any run starts: raise
        ``ValueError`` for what this strategy cannot do with that suite (the message is reported
        at ``search.options`` with the file and line). Nothing by default."""

    @functools.cached_property
    def options(self):
        """The suite's ``search.options`` read by this strategy's ``Options`` model (its defaults
        filled); None for a strategy that declares none."""
        model = getattr(type(self), "Options", None)
        return None if model is None else model.model_validate(self.plan.search.options)

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

    # -- trials (self.trials) -----------------------------------------------------------------

    def spec(self, candidate: Candidate, ratio: float):
        return self.trials.spec(candidate, ratio)

    def evaluate(self, candidate: Candidate, ratio: float, task: str | None = None) -> float:
        """The objective of ``candidate`` trained at ``ratio``: mean over targets (``task``: that
        target's score alone), NaN if failed."""
        return self.trials.evaluate(candidate, ratio, task)

    def score_error(self, candidate: Candidate, ratio: float, task: str | None = None) -> float:
        """Standard error of :meth:`evaluate`'s score (:meth:`harness.trials.Trials.score_error`)."""
        return self.trials.score_error(candidate, ratio, task)

    def trial(self, candidate: Candidate, ratio: float):
        return self.trials.trial(candidate, ratio)

    def prefetch(self, pairs) -> None:
        """Hand independent ``(candidate, ratio)`` pairs to the executor together
        (:meth:`harness.trials.Trials.prefetch`); the decisions do not change."""
        self.trials.prefetch(pairs)

    def measured_scores(self, candidate: Candidate | None = None, task: str | None = None) -> dict:
        """candidate -> {ratio: (score, trial key)} of every done trial of this run (``task``:
        that target's scores)."""
        return self.trials.measured_scores(candidate, task)

    @property
    def _outcomes(self) -> dict:
        """(candidate, ratio) -> TrialOutcome of this run's trials."""
        return self.trials.outcomes

    trained = property(lambda self: self.trials.trained, doc="trials this run trained")
    reused = property(lambda self: self.trials.reused, doc="trials this run found stored")
    failed = property(lambda self: self.trials.failed, doc="trials that failed")

    # -- progress (self.progress) -------------------------------------------------------------

    def say(self, message: str, always: bool = False) -> None:
        """A status line (:meth:`harness.progress.SearchProgress.say`)."""
        self.progress.say(message, always)

    def phase(self, name: str, total: int | None):
        """Start a progress phase with ``total`` planned trials (rich shows the ETA)."""
        self.progress.phase(name, total)

    @property
    def show_progress(self) -> bool:
        return self.progress.show

    @show_progress.setter
    def show_progress(self, value: bool) -> None:
        self.progress.show = value

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> list[RankedCandidate]:
        start = time.perf_counter()
        with registered(), self.progress.running():
            try:
                ranking = order_by_evidence(self.search(), self.measured_scores())
            finally:
                self.executor.close()  # trials submitted and never asked for are cancelled
        self.record_ranking(ranking)
        self.wall_seconds = time.perf_counter() - start
        return ranking

    def search(self) -> list[RankedCandidate]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- store writes (self.records) ----------------------------------------------------------

    def record_ranking(self, ranking: list[RankedCandidate]) -> None:
        self.records.ranking(ranking, self.objective, len(self.targets), self._ranked_error)

    def _ranked_error(self, r: RankedCandidate, task: str | None = None) -> float | None:
        """The SE of a ranked score measured by a trial of this run (``task``: of that target's
        score); None otherwise."""
        if r.sample_ratio is None or r.measured_or_predicted != "measured" or r.score is None \
                or math.isnan(r.score) or (r.candidate, r.sample_ratio) not in self._outcomes:
            return None
        return self.score_error(r.candidate, r.sample_ratio, task)

    def _plugin(self) -> tuple[str, str]:
        entry = self.components["search_strategy"].get(self.name)
        return entry.plugin, entry.version

    def feature_data(self, task: str, n: int):
        """(dataset, items): what clustering features of ``task`` are computed on, ``n`` items:
        what its dataset family gives (:meth:`harness.datasets.DatasetFamily.features`: a train
        split, or a scored task's own validation images, never test items); when it has none,
        the alignment data (said once in the run's log)."""
        from harness.plugin_manager import family_of
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
        """(key, features, reused) (:meth:`harness.records.SearchRecords.features`)."""
        return self.records.features(component_fp, dataset, layer, compute, n, producer)

    def _lazy_features(self, component_fp: str, dataset, layer: str, compute, n: int, producer=None):
        """(key, load) (:meth:`harness.records.SearchRecords.lazy_features`)."""
        return self.records.lazy_features(component_fp, dataset, layer, compute, n, producer)

    def feature_cost(self, keys) -> dict:
        return self.records.feature_cost(keys)

    def record_phase_cost(self, phase: str, seconds: float, samples: int, reused: bool, keys=()) -> None:
        self.records.record_phase_cost(phase, seconds, samples, reused, keys)

    def insert(self, table: str, rows: list[dict], producer=None) -> None:
        """Rows with this run's id and the plugin that made them (``producer``, else the strategy)."""
        self.records.insert(table, rows, producer)


def objective_name(tasks: list[str]) -> str:
    """The task name a search's rankings are stored under: the one target, or ``mean(a,b,...)``."""
    return tasks[0] if len(tasks) == 1 else "mean(" + ",".join(tasks) + ")"


def objective_tasks(name: str) -> list[str]:
    """The targets behind an :func:`objective_name`."""
    if name.startswith("mean(") and name.endswith(")"):
        return name[5:-1].split(",")
    return [name]


def objective_first(tasks) -> list[str]:
    """A run's ranked ``tasks`` with its objective first: with several targets the mean, which a
    search may follow with each target's own ranking (strategy learned, ``per_target``); the
    rest in the order given."""
    return sorted(tasks, key=lambda t: len(objective_tasks(t)) == 1)


def task_baseline(task: str, limit: int | None) -> tuple[str | None, float, int] | None:
    """(answer, value, n_items): the constant-answer score of one target's test split, the share
    of its items whose answer is the most frequent one (always giving that answer scores it);
    None when its dataset family does not know them here (:meth:`~harness.datasets.DatasetFamily.answers`)."""
    from collections import Counter

    from harness.plugin_manager import family_of

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
