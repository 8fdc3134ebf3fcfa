"""The rule that a ranking follows the evidence, for every search strategy.

A strategy decides which candidates to train and how far; the final order is not its stage
order but each candidate's best estimate of its full-data score, whatever stage produced it:

- a candidate's estimate rests on its largest-ratio measurement in this run (a measurement at a
  higher ratio is never overridden by one at a lower ratio, nor by an extrapolation from lower
  ones; :meth:`harness.plugins.strategies.mordal.MordalSearch.predict` fits on every score the run has
  and does not trust a law that falls with more data beyond the measured range);
- a prediction counts as the estimate of a predicted survivor;
- with ``search.rank_below: estimate`` an eliminated candidate's estimated full-data score counts
  when it is above its measurement;
- a candidate with no score (never trained, or failed) keeps its place after the scored
  candidate that preceded it in the strategy's order (an eliminated cluster's untrained
  members follow their medoid); ties keep the strategy's order.

So the pick is never below another candidate's measured score: every estimate is at least the
candidate's own largest-ratio measurement, and the ranking is sorted by estimate.
"""

from __future__ import annotations

import dataclasses
import math


def _scored(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def estimate_of(row) -> float | None:
    """The sort key of a ranked row: its estimate of the full-data score (None: unscored)."""
    if not _scored(row.score):
        return None
    value = float(row.score)
    if row.measured_or_predicted != "predicted" and _scored(row.estimate):
        value = max(value, float(row.estimate))
    return value


def latest_measurement(row, measured: dict):
    """``row`` with the score of its candidate's largest-ratio measurement in this run when that
    ratio is above the one it is ranked at (``measured``: candidate -> {ratio: (score, trial
    key)} of done trials); a prediction or an r = 1 score is left as it is."""
    if row.measured_or_predicted == "predicted" or row.sample_ratio is None:
        return row
    by_ratio = measured.get(row.candidate) or {}
    higher = [r for r in by_ratio if r > row.sample_ratio and _scored(by_ratio[r][0])]
    if not higher:
        return row
    r = max(higher)
    score, key = by_ratio[r]
    return dataclasses.replace(row, score=score, sample_ratio=r, trial_key=key)


def order_by_evidence(ranking: list, measured: dict | None = None) -> list:
    """``ranking`` (RankedCandidate rows, the strategy's order) re-ordered by each candidate's
    best estimate, best first (see the module's docstring)."""
    rows = [latest_measurement(r, measured or {}) for r in ranking]
    groups: list[list] = []
    orphans: list = []  # unscored rows before any scored one: after everything
    for r in rows:
        if estimate_of(r) is not None:
            groups.append([r])
        elif groups:
            groups[-1].append(r)
        else:
            orphans.append(r)
    groups.sort(key=lambda g: -estimate_of(g[0]))  # stable: ties keep the strategy's order
    return [r for g in groups for r in g] + orphans
