"""Running a search's trials: each (candidate, ratio) through the executor once, its outcome
kept, its score read as the objective.

Owned by :class:`harness.strategy.SearchStrategy` (``strategy.trials``): a strategy decides
which (candidate, ratio) to evaluate; this runs them (in parallel where the executor can), keeps
the outcomes and counts, and says what happened through the search's progress.
"""

from __future__ import annotations

import dataclasses
import math

from harness.suite import Candidate
from harness.threads import set_fair_threads


class Trials:
    """The trials of one search: outcomes by (candidate, ratio), and how many were trained,
    reused or failed.

    :param plan: the run's :class:`harness.plan.Plan` (what a trial is).
    :param executor: a :class:`harness.executors.Executor`.
    :param progress: a :class:`harness.progress.SearchProgress`.
    """

    def __init__(self, plan, executor, progress):
        self.plan = plan
        self.executor = executor
        self.progress = progress
        self.outcomes: dict = {}
        self.specs: dict = {}  # (candidate, ratio) -> the TrialSpec its outcome answers
        self.submitted: set = set()  # (candidate, ratio) started on a streaming executor
        self.trained = 0
        self.reused = 0
        self.failed = 0

    def spec(self, candidate: Candidate, ratio: float):
        """The trial of ``candidate`` at ``ratio``. With ``search.continuation`` it continues
        the candidate's finished trial at its largest smaller ratio in this run, if any (the
        run's decisions fix which trials those are, so the same suite gives the same chain)."""
        from harness.trial import TrialSpec

        plan = self.plan
        spec = TrialSpec(encoder=candidate.vision_encoder, llm=candidate.language_model,
                         alignment=plan.alignment, samples=plan.samples,
                         ratio=ratio, train=plan.train, seed=plan.seed,
                         targets=plan.targets, device=plan.device)
        if plan.search.continuation:
            lower = [r for (c, r), o in self.outcomes.items()
                     if c == candidate and r < ratio and o.status == "done"]
            if lower:
                parent = self.specs[(candidate, max(lower))]
                spec = dataclasses.replace(spec, after=(*parent.after, parent.ratio))
        return spec

    def evaluate(self, candidate: Candidate, ratio: float, task: str | None = None) -> float:
        """The objective of ``candidate`` trained at ``ratio``: mean over targets (``task``: that
        target's score alone), NaN if failed."""
        outcome = self.trial(candidate, ratio)
        if outcome.status != "done":
            return math.nan
        scores = _of(outcome, task)
        return sum(s.value for s in scores) / len(scores) if scores or task is None else math.nan

    def score_error(self, candidate: Candidate, ratio: float, task: str | None = None) -> float:
        """Standard error of :meth:`evaluate`'s score: binomial over each target's test items
        (sqrt(p (1 - p) / n)), combined over targets as the error of their mean; 0 when unknown."""
        outcome = self.outcomes.get((candidate, ratio))
        scores = _of(outcome, task) if outcome is not None else []
        if outcome is None or outcome.status != "done" or not scores:
            return 0.0
        return binomial_error([(s.value, s.n_items) for s in scores])

    def trial(self, candidate: Candidate, ratio: float):
        key = (candidate, ratio)
        if key not in self.outcomes:
            self.progress.say(f"{candidate} r={ratio:g}")
            spec = self.spec(candidate, ratio)
            set_fair_threads()  # other harness processes may have started or ended since
            self._record(candidate, ratio, self.executor.run(spec), spec)
        return self.outcomes[key]

    def prefetch(self, pairs) -> None:
        """Hand the trials of independent ``(candidate, ratio)`` pairs (one rung, the grid, the
        prediction points) to the executor together when it takes batches (``run_many``:
        ``processes``, ``ray``), so they run in parallel; :meth:`trial` then finds them. The
        decisions do not change: they are made from the scores afterwards, in the same order."""
        run_many = self.executor.run_many
        todo = [p for p in dict.fromkeys(pairs) if p not in self.outcomes]
        continuation = self.plan.search.continuation
        if self.executor.streams and not continuation:
            # started now, taken one by one by trial(): each waits for its own result only; a
            # pair already started is not started again (a window handed over twice, or a trial
            # that failed in flight, before trial() took it)
            todo = [p for p in todo if p not in self.submitted]
            self.submitted.update(todo)
            if todo:
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
        self.progress.say(f"{len(todo)} trials in parallel")
        specs = [self.spec(c, r) for c, r in todo]
        for (candidate, ratio), spec, outcome in zip(todo, specs, run_many(specs)):
            self._record(candidate, ratio, outcome, spec)

    def _record(self, candidate: Candidate, ratio: float, outcome, spec=None) -> None:
        self.outcomes[(candidate, ratio)] = outcome
        self.specs[(candidate, ratio)] = spec
        if outcome.status != "done":
            self.failed += 1
            self.progress.say(f"[red]failed[/red] {candidate} r={ratio:g}: {outcome.error}", always=True)
        elif outcome.reused:
            self.reused += 1
        else:
            self.trained += 1
        self.progress.advance()
        if outcome.status == "done" and not getattr(self.executor, "replay", False):
            # one line per finished trial, on stderr and flushed, terminal or not (a replay
            # answers hundreds from a table: its rungs and answer say what it did)
            n = self.trained + self.reused + self.failed
            how = "reused" if outcome.reused else f"trained in {outcome.wall_seconds:.1f}s"
            self.progress.say(f"trial {n} done: {candidate} r={ratio:g}: score "
                              f"{self.evaluate(candidate, ratio):.4f} ({how})", always=True)

    def measured_scores(self, candidate: Candidate | None = None, task: str | None = None) -> dict:
        """candidate -> {ratio: (score, trial key)} of every done trial of this run (only
        ``candidate``'s when given; ``task``: that target's scores): what
        :func:`harness.evidence.order_by_evidence` and the scaling fits read, so no score the run
        has is left out."""
        out: dict = {}
        for (c, r), outcome in list(self.outcomes.items()):
            if outcome.status == "done" and (candidate is None or c == candidate):
                out.setdefault(c, {})[r] = (self.evaluate(c, r, task), outcome.key)
        return out


def _of(outcome, task: str | None) -> list:
    """An outcome's scores: every target's, or ``task``'s alone."""
    return list(outcome.scores) if task is None else [s for s in outcome.scores if s.task == task]


def binomial_error(scores) -> float:
    """Standard error of the mean of accuracies ``scores`` ((value, n_items) pairs): binomial
    over each one's items (sqrt(p (1 - p) / n)), combined as the error of their mean; a score
    without items adds nothing."""
    var = 0.0
    for value, n in scores:
        p = min(max(float(value), 0.0), 1.0)
        var += p * (1 - p) / n if n else 0.0
    return math.sqrt(var) / len(scores)
