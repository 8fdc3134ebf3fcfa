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

:func:`drive` runs a plan against an ``evaluate(candidate, ratio) -> score`` callback. A policy
whose control flow is not a fixed list of rungs (ASHA promotes one candidate at a time,
Hyperband runs several brackets) defines its own ``drive(candidates, top_k, evaluate)``, and
:func:`drive` delegates to it and checks its result against the same contract.

Successive halving (Jamieson & Talwalkar 2016) is what Mordal uses for inter-cluster evaluation
(arXiv 2502.00241, section 3.2): "In each round, SHA allocates a budget r to each candidate,
evaluates all of them, and keeps the top 1/eta candidates. In the next round, SHA increases the
budget to eta * r per candidate. This repeats until ... Top-K candidates are determined."

The built-in policies (``sha``, ``asha``, ``hyperband``, ``none``) live in
:mod:`harness.plugins.policies`; the contract is :class:`harness.contracts.StoppingPolicy`. This
module is the engine's side: :func:`drive`, the results it returns, and the checks it makes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness._moved import names_moved_from
from harness.contracts import Evaluate, Rung, RungResult, StageResult, StoppingPolicy, check_plan_args
from harness.errors import HarnessError, stop_if_interrupted

__all__ = ["Rung", "StoppingPolicy", "RungResult", "StageResult", "PolicyFault", "drive", "check_plan_args",
           "describe"]


def drive(
    policy: StoppingPolicy,
    candidates: Sequence,
    top_k: int,
    evaluate: Callable[[object, float], float],
    errors: Callable[[object, float], float] | None = None,
    baseline: float | None = None,
    prefetch: Callable[[list], None] | None = None,
    name: str | None = None,
) -> StageResult:
    """Run ``policy``'s plan: score each rung's candidates with ``evaluate(candidate, ratio)``.

    Rung 0 evaluates ``candidates`` in the given order, later rungs the previous survivors best
    first (a policy that keeps fewer than ``n_keep``, e.g. by a score threshold, leaves later
    rungs with fewer than their planned ``n_in``). Deterministic whenever ``evaluate`` is, so
    a replay that looks scores up in a store reproduces the search. Candidates must be
    distinct and hashable.

    A policy with a ``drive(candidates, top_k, evaluate)`` method runs itself instead; its
    result must still record every ``(candidate, ratio)`` it evaluated in exactly one
    RungResult, keep only candidates of the rung, and return at most ``top_k`` survivors.

    Noise: ``errors(candidate, ratio)`` is the standard error of a score and ``baseline`` the
    task's constant-answer score. A policy that declares ``noise_aware`` (the contract's flag)
    gets them as keywords of ``keep`` / ``cut`` / ``why``, with ``final`` (``errors`` as a
    mapping over the rung's candidates), and may keep more than ``n_keep`` at a cut that is not
    the stage's last (ties, uninformative rungs).

    ``prefetch(pairs)``, when given, is handed each rung's ``(candidate, ratio)`` pairs before
    they are evaluated, so an executor can train them in parallel; a policy that drives itself
    (ASHA) is handed its ``first_batch(candidates, top_k)`` when it has one, and its ``evaluate``
    is an :class:`harness.contracts.Evaluate` whose ``prefetch`` it may call (ASHA with
    ``workers`` > 1 hands it each window of trials in flight). ``name`` is the policy as the
    user knows it (registered name and plugin), for the errors that name it.
    """
    current = tuple(candidates)
    if len(set(current)) != len(current):
        raise ValueError("candidates must be distinct")
    own = getattr(policy, "drive", None)
    if callable(own):
        check_plan_args(len(current), top_k)
        if len(current) <= top_k:
            return StageResult((), current)
        evaluated: set = set()
        if prefetch is not None and hasattr(policy, "first_batch"):
            prefetch(list(policy.first_batch(current, top_k)))  # what it evaluates whatever the scores

        def tracked(candidate, ratio):
            evaluated.add((candidate, ratio))
            return evaluate(candidate, ratio)

        result = own(current, top_k, Evaluate(tracked, prefetch))
        _check_stage(policy, result, current, top_k, evaluated, name)
        return result
    # the capability flag of the contract (harness.contracts.StoppingPolicy), never a signature
    noisy = errors is not None and bool(getattr(policy, "noise_aware", False))
    results = []
    plan = _calling(policy, "plan", len(current), top_k, name=name)
    for i, rung in enumerate(plan):
        if prefetch is not None:
            prefetch([(c, rung.ratio) for c in current])
        scores = {c: float(evaluate(c, rung.ratio)) for c in current}
        final = i == len(plan) - 1  # the stage's last cut returns at most top_k
        why = ""
        if noisy:
            errs = {c: float(errors(c, rung.ratio)) for c in current}
            if hasattr(policy, "cut"):  # kept and why from one evaluation of the cut
                kept, why = _calling(policy, "cut", scores, rung.n_keep, errors=errs, baseline=baseline,
                                     final=final, name=name)
                kept = tuple(kept)
            else:
                kept = tuple(_calling(policy, "keep", scores, rung.n_keep, errors=errs, baseline=baseline,
                                      final=final, name=name))
                why = _calling(policy, "why", scores, rung.n_keep, errors=errs, baseline=baseline,
                               final=final, name=name) if hasattr(policy, "why") else ""
        else:
            kept = tuple(_calling(policy, "keep", scores, rung.n_keep, name=name))
        limit = len(current) if noisy and not final else rung.n_keep
        if len(kept) > limit or not set(kept) <= set(current):
            raise PolicyFault(
                f"stopping policy {describe(policy, name)} kept {len(kept)} candidate(s) "
                f"({', '.join(map(str, kept[:3]))}{', ...' if len(kept) > 3 else ''}) at rung "
                f"{rung.index}; expected at most {limit} of the rung's candidates"
            )
        results.append(RungResult(rung, current, scores, kept, why))
        current = kept
    return StageResult(tuple(results), current)


def _calling(policy, method: str, *args, name: str | None = None, **kwargs):
    """``policy.method(*args, **kwargs)``; an exception of the policy's own is a PolicyFault
    naming it (``name``: as the user knows it; harness's errors pass through)."""
    try:
        return getattr(policy, method)(*args, **kwargs)
    except (HarnessError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # the plugin's failure, named
        stop_if_interrupted(exc)  # Ctrl-C during a DuckDB statement is no failure
        raise PolicyFault(f"stopping policy {describe(policy, name)}: its {method}() raised "
                          f"{type(exc).__name__}: {str(exc)[:300]}") from exc


class PolicyFault(HarnessError, RuntimeError):
    """A stopping policy returned something the search cannot use (names the plugin)."""


def describe(policy, name: str | None = None) -> str:
    """The policy as a user finds it: ``name`` (its registered name and plugin, which the search
    passes to :func:`drive`), else its class."""
    return name or f"{type(policy).__module__}.{type(policy).__qualname__}"


def _check_stage(policy, result: StageResult, candidates: tuple, top_k: int, evaluated: set,
                 name: str | None = None) -> None:
    """A self-driven policy's result must be recordable: each evaluation in one rung, once."""
    recorded = [(c, r.rung.ratio) for r in result.rungs for c in r.candidates]
    problems = []
    if len(set(recorded)) != len(recorded):
        problems.append("recorded a (candidate, ratio) twice")
    if set(recorded) != evaluated:
        problems.append(f"recorded {len(set(recorded))} evaluations but made {len(evaluated)}")
    if len({r.rung.index for r in result.rungs}) != len(result.rungs):
        problems.append("repeated a rung index")  # rungs rows are told apart by it
    for r in result.rungs:
        if set(r.scores) != set(r.candidates) or not set(r.kept) <= set(r.candidates):
            problems.append(f"rung {r.rung.index} scores or keeps candidates it did not train")
    if len(result.survivors) > top_k or len(set(result.survivors)) != len(result.survivors):
        problems.append(f"returned {len(result.survivors)} survivors for top_k={top_k}")
    if not set(result.survivors) | set(result.untried) <= set(candidates):
        problems.append("returned names that are not candidates")
    if problems:
        raise PolicyFault(f"stopping policy {describe(policy, name)}: " + "; ".join(problems))



_check_plan_args = check_plan_args  # its name before the built-ins moved out


__getattr__ = names_moved_from(__name__)  # the built-ins, by their names before they moved
