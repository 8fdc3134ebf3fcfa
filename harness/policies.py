"""Early-stopping policies: which candidates to train at which data-sample ratio, and whom to keep.

A policy is two pure decisions, so a search strategy can drive it and a replay can re-drive it
from recorded scores and get the same survivors:

* ``plan(n_candidates, top_k)`` fixes the rungs up front: at rung i, ``n_in`` candidates are
  trained on a fraction ``ratio`` of the alignment data, scored, and ``n_keep`` of them go on.
  A plan turns ``n_candidates`` into at most ``top_k`` survivors. When ``n_candidates <= top_k``
  there is nothing to decide and the plan is empty: every candidate survives untrained.
* ``keep(scores, n_keep)`` returns at most ``n_keep`` names, best (highest score) first. Ties are
  broken by name and NaN scores (failed trials) rank last, so the order is a function of the
  scores alone.

:func:`drive` runs a plan against an ``evaluate(candidate, ratio) -> score`` callback.

Successive halving (Jamieson & Talwalkar 2016) is what Mordal uses for inter-cluster evaluation
(arXiv 2502.00241, section 3.2): "In each round, SHA allocates a budget r to each candidate,
evaluates all of them, and keeps the top 1/eta candidates. In the next round, SHA increases the
budget to eta * r per candidate. This repeats until ... Top-K candidates are determined."
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable


class Rung(NamedTuple):
    """One round: train ``n_in`` candidates at sample ratio ``ratio``, keep ``n_keep``."""

    index: int
    ratio: float
    n_in: int
    n_keep: int


@runtime_checkable
class StoppingPolicy(Protocol):
    def plan(self, n_candidates: int, top_k: int) -> list[Rung]:
        """The rungs that take ``n_candidates`` down to at most ``top_k``; empty if n <= top_k."""
        ...

    def keep(self, scores: Mapping[str, float], n_keep: int) -> list[str]:
        """At most ``n_keep`` names from ``scores``, best first."""
        ...


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


def _check_plan_args(n_candidates: int, top_k: int) -> None:
    if n_candidates < 0:
        raise ValueError(f"n_candidates must be >= 0, got {n_candidates}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")


@dataclass(frozen=True)
class SuccessiveHalving:
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

    eta: int = 2
    min_ratio: float | None = None
    max_ratio: float = 1.0

    def __post_init__(self):
        if isinstance(self.eta, bool) or not isinstance(self.eta, numbers.Integral) or self.eta < 2:
            raise ValueError(f"eta must be an integer >= 2, got {self.eta!r}")
        if not 0 < self.max_ratio <= 1:
            raise ValueError(f"max_ratio must be in (0, 1], got {self.max_ratio}")
        if self.min_ratio is not None and not 0 < self.min_ratio <= self.max_ratio:
            raise ValueError(f"min_ratio must be in (0, max_ratio={self.max_ratio}], got {self.min_ratio}")

    def plan(self, n_candidates: int, top_k: int) -> list[Rung]:
        _check_plan_args(n_candidates, top_k)
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

    def keep(self, scores: Mapping[str, float], n_keep: int) -> list[str]:
        return top(scores, n_keep)


@dataclass(frozen=True)
class NoStopping:
    """No early stopping: every candidate is trained at ``max_ratio``; then the best ``top_k`` go on.

    The top-k cut is the stage's selection (as in the last SHA rung), not an early stop: no
    candidate is dropped before it has been trained on the full budget. The ablation "Mordal
    without early stopping" in the paper. ``eta`` and ``min_ratio`` are accepted and ignored so
    a stage's options construct either policy.
    """

    max_ratio: float = 1.0
    eta: int | None = None
    min_ratio: float | None = None

    def __post_init__(self):
        if not 0 < self.max_ratio <= 1:
            raise ValueError(f"max_ratio must be in (0, 1], got {self.max_ratio}")

    def plan(self, n_candidates: int, top_k: int) -> list[Rung]:
        _check_plan_args(n_candidates, top_k)
        if n_candidates <= top_k:
            return []
        return [Rung(0, self.max_ratio, n_candidates, top_k)]

    def keep(self, scores: Mapping[str, float], n_keep: int) -> list[str]:
        return top(scores, n_keep)


@dataclass(frozen=True)
class RungResult:
    rung: Rung
    candidates: tuple  # trained at this rung, in the order they were evaluated
    scores: Mapping
    kept: tuple  # best first


@dataclass(frozen=True)
class StageResult:
    rungs: tuple[RungResult, ...]
    survivors: tuple  # best first when any rung ran; the input order otherwise


def drive(
    policy: StoppingPolicy,
    candidates: Sequence,
    top_k: int,
    evaluate: Callable[[object, float], float],
) -> StageResult:
    """Run ``policy``'s plan: score each rung's candidates with ``evaluate(candidate, ratio)``.

    Rung 0 evaluates ``candidates`` in the given order, later rungs the previous survivors best
    first (a policy that keeps fewer than ``n_keep``, e.g. by a score threshold, leaves later
    rungs with fewer than their planned ``n_in``). Deterministic whenever ``evaluate`` is, so
    a replay that looks scores up in a store reproduces the search. Candidates must be
    distinct and hashable.
    """
    current = tuple(candidates)
    if len(set(current)) != len(current):
        raise ValueError("candidates must be distinct")
    results = []
    for rung in policy.plan(len(current), top_k):
        scores = {c: float(evaluate(c, rung.ratio)) for c in current}
        kept = tuple(policy.keep(scores, rung.n_keep))
        if len(kept) > rung.n_keep or not set(kept) <= set(current):
            raise RuntimeError(
                f"policy {policy!r} kept {kept!r}; expected at most {rung.n_keep} of the rung's candidates"
            )
        results.append(RungResult(rung, current, scores, kept))
        current = kept
    return StageResult(tuple(results), current)
