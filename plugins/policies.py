"""The built-in early-stopping policies: ``sha``, ``asha``, ``hyperband`` and ``none``.

Each is a :class:`harness.contracts.StoppingPolicy` (the contract a third-party policy meets
too), registered below through the same hook a plugin uses; :func:`harness.policies.drive`
runs them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from harness.contracts import Rung, RungResult, StageResult, StoppingPolicy, check_plan_args
from harness.hookspecs import hookimpl


def rank(scores: Mapping[Hashable, float]) -> list:
    """Names by score, highest first; ties by ``str(name)``; NaN (a failed trial) last."""

    def key(name):
        s = float(scores[name])
        return (math.isnan(s), -s if not math.isnan(s) else 0.0, str(name))

    return sorted(scores, key=key)


def top(scores: Mapping[Hashable, float], n_keep: int) -> list:
    """The best ``n_keep`` names of :func:`rank`."""
    if n_keep < 0:
        raise ValueError(f"n_keep must be >= 0, got {n_keep}")
    return rank(scores)[:n_keep]


def by_height(heights: Sequence[tuple[float, Mapping]]) -> list:
    """Every scored candidate, judged at the highest rung it reached: higher rungs first, then by
    score there; a candidate whose last trial failed (NaN) comes after every finite one."""
    last: dict = {}
    for height, scores in heights:
        for c, s in scores.items():
            if c not in last or height > last[c][0]:
                last[c] = (height, s)

    def key(c):
        height, s = last[c]
        return (math.isnan(s), -height, -s if not math.isnan(s) else 0.0, str(c))

    return sorted(last, key=key)


def _check_options(eta, min_ratio, max_ratio) -> None:
    if isinstance(eta, bool) or not isinstance(eta, numbers.Integral) or eta < 2:
        raise ValueError(f"eta must be an integer >= 2, got {eta!r}")
    if not 0 < max_ratio <= 1:
        raise ValueError(f"max_ratio must be in (0, 1], got {max_ratio}")
    if min_ratio is not None and not 0 < min_ratio <= max_ratio:
        raise ValueError(f"min_ratio must be in (0, max_ratio={max_ratio}], got {min_ratio}")



def noisy_keep(scores: Mapping, n_keep: int, *, errors: Mapping | None = None,
               baseline: float | None = None, tie_z: float | None = None,
               uninformative: float | None = None, final: bool = False) -> tuple[list, str]:
    """The noise-aware cut: (kept, why). Starts from :func:`top` ``n_keep``; then

    * ``uninformative`` (a fraction): when at least that fraction of the rung's candidates is
      within 2 standard errors of the task's constant-answer ``baseline`` (the score of always
      giving its most frequent answer), the rung cannot tell them apart: everyone is kept;
    * ``tie_z``: every candidate whose score is within ``tie_z`` standard errors of the last
      kept one (errors of the two added in quadrature) is kept too, instead of a tie-break by
      name. ``final`` (the stage's last cut, which must return ``n_keep``) applies neither.

    ``errors`` maps candidates to the standard error of their score; without it (or with no
    noise, all errors 0) this is exactly :func:`top`. ``why`` says what widened the cut."""
    kept = top(scores, n_keep)
    if final or errors is None:
        return kept, ""
    finite = [c for c in scores if not math.isnan(float(scores[c]))]
    if uninformative is not None and baseline is not None and finite:
        at_base = [c for c in finite if float(scores[c]) <= baseline + 2 * float(errors.get(c, 0.0))]
        if len(at_base) >= uninformative * len(scores) and len(at_base) > 0 and len(kept) < len(finite):
            return rank({c: scores[c] for c in finite}), (
                f"uninformative: {len(at_base)} of {len(scores)} within 2 SE of the constant-answer "
                f"baseline {baseline:.3f}; everyone promoted")
    if tie_z is not None and kept:
        last = kept[-1]
        s_last, e_last = float(scores[last]), float(errors.get(last, 0.0))
        if not math.isnan(s_last):
            def band(c):  # no noise, no band: an exact tie is then broken by name as in top()
                return tie_z * math.hypot(e_last, float(errors.get(c, 0.0)))

            tied = [c for c in rank(scores) if c not in kept and not math.isnan(float(scores[c]))
                    and band(c) > 0 and s_last - float(scores[c]) <= band(c)]
            if tied:
                return kept + tied, f"{len(tied)} tied with the last kept within {tie_z:g} SE"
    return kept, ""



@dataclass(frozen=True)
class SuccessiveHalving(StoppingPolicy):
    """Successive halving over data-sample ratios.

    Each rung keeps ``max(top_k, n_in // eta)`` candidates and multiplies the ratio by ``eta``,
    until ``top_k`` remain. A rung that reaches ``max_ratio`` keeps ``top_k`` at once: scores at
    the full budget would not change by training again.

    :param eta: reduction factor (>= 2): keep the top 1/eta, give survivors eta times the data.
    :param min_ratio: the first rung's ratio. None derives it as ``max_ratio / eta**(rungs - 1)``
        so that the last rung is at ``max_ratio``, classic SHA. Given explicitly (the suite's
        ``min_ratio``, 0.125 by default), the rungs are ``min_ratio * eta**i`` capped at
        ``max_ratio``, and a short plan can decide before reaching ``max_ratio``.
    :param max_ratio: the largest ratio a rung uses (the paper's R; 1 = the whole alignment set).
    """

    settings = ("eta", "min_ratio", "tie_z", "uninformative")
    noise_aware = True

    eta: int = 2
    min_ratio: float | None = None
    max_ratio: float = 1.0
    # noise-aware cuts (:func:`noisy_keep`); None: plain SHA
    tie_z: float | None = None
    uninformative: float | None = None

    def __post_init__(self):
        _check_options(self.eta, self.min_ratio, self.max_ratio)

    def plan(self, n_candidates: int, top_k: int) -> list[Rung]:
        check_plan_args(n_candidates, top_k)
        sizes: list[tuple[int, int]] = []
        n_in = n_candidates
        while n_in > top_k:
            n_keep = max(top_k, n_in // self.eta)
            sizes.append((n_in, n_keep))
            n_in = n_keep
        rungs = []
        for i, (n_in, n_keep) in enumerate(sizes):
            if self.min_ratio is None:
                ratio = self.max_ratio / self.eta ** (len(sizes) - 1 - i)
            else:
                ratio = self.min_ratio * self.eta**i
            if ratio >= self.max_ratio * (1 - 1e-12):
                rungs.append(Rung(i, self.max_ratio, n_in, top_k))
                break
            rungs.append(Rung(i, ratio, n_in, n_keep))
        return rungs

    def keep(self, scores: Mapping[str, float], n_keep: int, *, errors: Mapping | None = None,
             baseline: float | None = None, final: bool = False) -> list[str]:
        return self.cut(scores, n_keep, errors=errors, baseline=baseline, final=final)[0]

    def why(self, scores: Mapping, n_keep: int, *, errors=None, baseline=None, final=False) -> str:
        return self.cut(scores, n_keep, errors=errors, baseline=baseline, final=final)[1]

    def cut(self, scores: Mapping, n_keep: int, *, errors=None, baseline=None,
            final=False) -> tuple[list, str]:
        """(kept, why) in one pass: what :func:`drive` calls when a policy has it."""
        return noisy_keep(scores, n_keep, errors=errors, baseline=baseline, tie_z=self.tie_z,
                          uninformative=self.uninformative, final=final)


@dataclass(frozen=True)
class NoStopping(StoppingPolicy):
    """No early stopping: every candidate is trained at ``max_ratio``; then the best ``top_k`` go on.

    The top-k cut is the stage's selection (as in the last SHA rung), not an early stop: no
    candidate is dropped before it has been trained on the full budget. The ablation "Mordal
    without early stopping" in the paper. ``eta`` and ``min_ratio`` are accepted and ignored so
    a stage's options construct either policy.
    """

    settings = ("eta", "min_ratio")

    max_ratio: float = 1.0
    eta: int | None = None
    min_ratio: float | None = None

    def __post_init__(self):
        if not 0 < self.max_ratio <= 1:
            raise ValueError(f"max_ratio must be in (0, 1], got {self.max_ratio}")

    def plan(self, n_candidates: int, top_k: int) -> list[Rung]:
        check_plan_args(n_candidates, top_k)
        if n_candidates <= top_k:
            return []
        return [Rung(0, self.max_ratio, n_candidates, top_k)]

    def keep(self, scores: Mapping[str, float], n_keep: int) -> list[str]:
        return top(scores, n_keep)



@dataclass(frozen=True)
class AsynchronousSuccessiveHalving(StoppingPolicy):
    """Asynchronous successive halving (ASHA; Li et al. 2020, "A System for Massively Parallel
    Hyperparameter Tuning", MLSys, Algorithm 2), simulated with one worker over a finite list.

    The budget is the data-sample ratio: the rungs are SuccessiveHalving's (same ``eta``,
    ``min_ratio``, ``max_ratio``; the bottom rung holds every candidate), so the two differ
    only in when they decide. Each step either promotes or starts: a candidate at rung k that
    is among the top ``floor(n_k / eta)`` of the ``n_k`` candidates scored at rung k *so far*,
    not yet promoted and not failed (NaN), is promoted (the best such, highest rung first) and
    trained at rung k+1; otherwise the next untried candidate starts at rung 0 in input order.

    With one worker the difference from SHA is that promotion does not wait for a rung to be
    complete. Alone, that does not save budget: a promotion made from a partial rung can be one
    SHA would not make (the paper's "mispromotion"), and whoever later enters a rung's top
    1/eta is promoted too, so ASHA trains what SHA trains plus its mispromotions: the same
    budget when candidates arrive best first, about 20% more with random arrival orders (our
    simulations, rank-consistent scores). ASHA's saving comes from promoting early and then
    stopping: ``stop_early=True`` stops once every candidate has started and ``top_k``
    candidates hold finite scores at the top rung. That run is a prefix of the default one,
    so it never spends more, but the promotions it skips are late arrivals', and it missed the
    true top_k in ~7% of those simulations (about 3% budget saved). The default runs until
    nothing is left to promote and then finds the true top_k whenever scores rank the same
    at every ratio, so it is the default for a finite grid.

    Choices where the paper is open (its stream of configurations is infinite, ours is not):

    * Every candidate starts before the search stops: the list is all there is, and a
      candidate never trained could be neither kept nor ranked.
    * If nothing is promotable and no candidate is left but fewer than ``top_k`` candidates
      hold finite scores at the top rung (floors, failures), the best unpromoted finite
      candidate of the highest rung below the top is promoted (SHA keeps ``max(top_k, n //
      eta)`` for the same reason), until ``top_k`` do or none is left. Survivors are the best
      ``top_k`` by the highest rung reached and the score there, NaN last, so ``min(top_k, n)``
      always survive.

    ``workers`` (W, default 1) is ASHA as the paper runs it, with W workers: a decision (the
    next promotion or start) is made while up to W - 1 trials decided before it are still in
    flight, so job j sees the results of jobs 0 .. j - W, however the trials are timed; when
    nothing can be decided from those, the idle worker waits for the next result in job order
    and asks again (as if every trial took the same time). Results are taken in job order, never in arrival order, so the decisions are a
    pure function of the scores and W: a run on ``ray`` or ``processes`` (each window of
    in-flight jobs handed to ``prefetch`` and trained together) decides exactly as a ``local``
    run with the same W. W = 1 is the sequential algorithm above; a larger W promotes from
    rungs that are less complete (more mispromotions) in exchange for W trials at a time.
    In-flight trials at the top rung count towards ``top_k`` when deciding whether to promote
    below the cutoff; one that fails is replaced once its result is in.

    ``plan`` returns SuccessiveHalving's plan: the same rungs, and the counts of a run without
    mispromotions. :meth:`drive` (called by :func:`drive`) decides; its RungResults group the
    evaluations by rung, in evaluation order, each with the counts that happened; ``kept`` is
    who was promoted from the rung (at the top rung the survivors, and a survivor is kept at
    the highest rung it reached).
    """

    settings = ("eta", "min_ratio")

    eta: int = 2
    min_ratio: float | None = None
    max_ratio: float = 1.0
    stop_early: bool = False
    workers: int = 1

    class Options(BaseModel):
        """What a suite sets under ``inter.options`` / ``intra.options`` for ``asha``."""

        model_config = ConfigDict(extra="forbid")
        workers: Annotated[int, Field(strict=True, ge=1, le=100_000)] = 1  # decisions made with W - 1 in flight
        stop_early: Annotated[bool, Field(strict=True)] = False  # stop once top_k reach the top rung

    def __post_init__(self):
        _check_options(self.eta, self.min_ratio, self.max_ratio)
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")

    def plan(self, n_candidates: int, top_k: int) -> list[Rung]:
        return SuccessiveHalving(self.eta, self.min_ratio, self.max_ratio).plan(n_candidates, top_k)

    def first_batch(self, candidates: Sequence, top_k: int) -> list[tuple]:
        """The (candidate, ratio) pairs :meth:`drive` evaluates whatever the scores: every
        candidate starts at the lowest rung, with or without ``stop_early``. An executor that
        runs batches trains them together; promotions are then decided in the sequential
        order, so the result is the same as one trial at a time."""
        ratios = [rung.ratio for rung in self.plan(len(candidates), top_k)]
        return [(c, ratios[0]) for c in candidates] if ratios else []

    def keep(self, scores: Mapping[str, float], n_keep: int) -> list[str]:
        return top(scores, n_keep)

    def drive(self, candidates: Sequence, top_k: int, evaluate: Callable[[object, float], float],
              prefetch: Callable[[list], None] | None = None) -> StageResult:
        if prefetch is None:  # what drive() hands over: an Evaluate, which carries the executor's
            prefetch = getattr(evaluate, "prefetch", None)
        candidates = tuple(candidates)
        ratios = [rung.ratio for rung in self.plan(len(candidates), top_k)]
        if not ratios:
            return StageResult((), candidates)
        summit = len(ratios) - 1
        scores: list[dict] = [{} for _ in ratios]  # insertion order is job order
        promoted: list[set] = [set() for _ in ratios]
        waiting = list(reversed(candidates))
        flight: list[tuple] = []  # (candidate, rung) decided, oldest first, results not yet taken

        def train(candidate, k):
            flight.append((candidate, k))
            if prefetch is not None and self.workers > 1:  # an executor that streams starts it now
                prefetch([(candidate, ratios[k])])

        def settle(in_flight: int):
            """Take results in job order until at most ``in_flight`` jobs are left in flight;
            the whole window is handed to ``prefetch`` first, so it trains together."""
            if len(flight) <= in_flight:
                return
            if prefetch is not None and len(flight) > 1:
                prefetch([(c, ratios[k]) for c, k in flight])
            while len(flight) > in_flight:
                c, k = flight.pop(0)
                scores[k][c] = float(evaluate(c, ratios[k]))

        def promotion(cutoff: bool):
            for k in range(summit - 1, -1, -1):
                ranked = rank(scores[k])
                if cutoff:
                    ranked = ranked[: len(ranked) // self.eta]
                for c in ranked:
                    if c not in promoted[k] and not math.isnan(scores[k][c]):
                        return c, k
            return None

        while True:
            settle(self.workers - 1)  # the next job sees the results of all but the last W - 1
            at_top = sum(not math.isnan(s) for s in scores[summit].values())
            short = at_top + sum(k == summit for _, k in flight) < top_k
            if self.stop_early and not waiting and not short:
                break
            step = promotion(cutoff=True)
            if step is None and waiting:
                train(waiting.pop(), 0)
                continue
            if step is None and short:
                step = promotion(cutoff=False)
            if step is None:
                if flight:  # nothing to decide from what is known: an idle worker waits for the
                    settle(len(flight) - 1)  # next result (the oldest in flight), then asks again
                    continue
                break
            candidate, k = step
            promoted[k].add(candidate)
            train(candidate, k + 1)
        settle(0)

        survivors = tuple(by_height(list(enumerate(scores)))[:top_k])
        highest = {c: k for k, level in enumerate(scores) for c in level}
        rungs = []
        for k, level in enumerate(scores):
            if not level:
                continue
            kept = tuple(c for c in rank(level)
                         if c in promoted[k] or (c in survivors and highest[c] == k))
            rungs.append(RungResult(Rung(k, ratios[k], len(level), len(kept)), tuple(level), level, kept))
        return StageResult(tuple(rungs), survivors)


@dataclass(frozen=True)
class Hyperband(StoppingPolicy):
    """Hyperband (Li et al. 2018, "Hyperband: A Novel Bandit-Based Approach to Hyperparameter
    Optimization", JMLR, Algorithm 1) over data-sample ratios.

    The paper's resource R is ``max_ratio`` (1 = the whole alignment set) and the smallest
    resource is ``min_ratio``: ``s_max = floor(log_eta(max_ratio / min_ratio))`` (``min_ratio``
    None: ``s_max = 2``, three brackets). Bracket ``s = s_max, ..., 0`` draws
    ``n_s = ceil((s_max + 1) / (s + 1) * eta**s)`` candidates, capped at the pool, and runs
    successive halving on them: rung i trains ``n_s // eta**i`` (at least 1) of them at
    ``max_ratio * eta**(i - s)`` and keeps the top ``n_s // eta**(i + 1)``, until the
    bracket's last rung at ``max_ratio``. Bracket s_max explores many candidates cheaply,
    bracket 0 trains a few at full data: a hedge against small ratios ranking badly.

    Choices where the paper is open (it samples fresh configurations, we have a finite pool):

    * Each bracket draws the candidates used by the fewest earlier brackets, ties in input
      order, so the brackets cover the pool before reusing anyone. A pool larger than all
      brackets together leaves some candidates untried (``StageResult.untried``).
    * A (candidate, ratio) scored in an earlier bracket is not trained or recorded again:
      its first score is reused, so every decision is a function of the recorded scores
      and a replay from the store reproduces it.
    * Survivors: the best ``top_k`` by the highest ratio reached and the score there, NaN
      last; normally all scored at ``max_ratio``, topped up from lower ratios when fewer than
      ``top_k`` got there.

    ``plan`` returns every bracket's planned rungs, bracket s_max first, with running indices
    (unique across brackets, so rungs rows stay distinct). :meth:`drive` reports those rungs:
    each RungResult's candidates are the ones first scored there, ``kept`` those promoted from
    that (candidate, ratio) in any bracket, and the survivors at their highest ratio.
    """

    settings = ("eta", "min_ratio")

    eta: int = 2
    min_ratio: float | None = None
    max_ratio: float = 1.0

    def __post_init__(self):
        _check_options(self.eta, self.min_ratio, self.max_ratio)

    @property
    def s_max(self) -> int:
        if self.min_ratio is None:
            return 2
        # the tolerance keeps an exact power (0.125 with eta 2) from flooring one bracket short
        return math.floor(math.log(self.max_ratio / self.min_ratio, self.eta) + 1e-9)

    def brackets(self, n_candidates: int, top_k: int) -> list[list[Rung]]:
        """The planned rungs of each bracket, s = s_max first."""
        s_max, index, out = self.s_max, 0, []
        for s in range(s_max, -1, -1):
            n_s = min(n_candidates, ((s_max + 1) * self.eta**s + s) // (s + 1))
            bracket = []
            for i in range(s + 1):
                n_in = max(1, n_s // self.eta**i)
                n_keep = max(1, n_s // self.eta ** (i + 1)) if i < s else min(top_k, n_in)
                # eta**(s - i) as an integer power, so a ratio is the same float in every bracket
                bracket.append(Rung(index, self.max_ratio / self.eta ** (s - i), n_in, n_keep))
                index += 1
            out.append(bracket)
        return out

    def plan(self, n_candidates: int, top_k: int) -> list[Rung]:
        check_plan_args(n_candidates, top_k)
        if n_candidates <= top_k:
            return []
        return [rung for bracket in self.brackets(n_candidates, top_k) for rung in bracket]

    def keep(self, scores: Mapping[str, float], n_keep: int) -> list[str]:
        return top(scores, n_keep)

    def drive(self, candidates: Sequence, top_k: int, evaluate: Callable[[object, float], float]) -> StageResult:
        candidates = tuple(candidates)
        check_plan_args(len(candidates), top_k)
        if len(candidates) <= top_k:
            return StageResult((), candidates)
        position = {c: i for i, c in enumerate(candidates)}
        uses = dict.fromkeys(candidates, 0)
        scores: dict[float, dict] = {}  # ratio -> {candidate: first score}
        promoted: set = set()  # (candidate, ratio) pairs that sent a candidate on
        firsts: list[tuple[Rung, list]] = []
        for bracket in self.brackets(len(candidates), top_k):
            current = sorted(candidates, key=lambda c: (uses[c], position[c]))[: bracket[0].n_in]
            for c in current:
                uses[c] += 1
            for i, rung in enumerate(bracket):
                at = scores.setdefault(rung.ratio, {})
                first = [c for c in current if c not in at]
                for c in first:
                    at[c] = float(evaluate(c, rung.ratio))
                firsts.append((rung, first))
                if i == len(bracket) - 1:
                    break
                current = top({c: at[c] for c in current}, rung.n_keep)
                promoted.update((c, rung.ratio) for c in current)

        survivors = tuple(by_height(list(scores.items()))[:top_k])
        highest: dict = {}
        for ratio, at in scores.items():
            for c in at:
                highest[c] = max(highest.get(c, ratio), ratio)
        rungs = []
        for rung, first in firsts:
            at = {c: scores[rung.ratio][c] for c in first}
            kept = tuple(c for c in rank(at)
                         if (c, rung.ratio) in promoted or (c in survivors and highest[c] == rung.ratio))
            rungs.append(RungResult(rung, tuple(first), at, kept))
        untried = tuple(c for c in candidates if uses[c] == 0)
        return StageResult(tuple(rungs), survivors, untried)



@hookimpl
def register_stopping_policies(register):
    register("sha", SuccessiveHalving, doc="successive halving: budget x eta per rung, keep the top 1/eta")
    register("asha", AsynchronousSuccessiveHalving, doc="asynchronous successive halving (Li et al. 2020): promote a candidate as soon as it is in the top 1/eta of its rung")
    register("hyperband", Hyperband, doc="Hyperband (Li et al. 2018): successive halving brackets with different starting ratios")
    register("none", NoStopping, doc="train every candidate at full budget")
