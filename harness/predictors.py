"""Full-data score predictors: fit scores measured at small data-sample ratios, extrapolate to r = 1.

Mordal's observational scaling law (arXiv 2502.00241, section 3.2): with model size fixed,
a VLM's alignment performance is log-linear in the number of training samples, so "by fixing
model parameters and changing training sample D, we may construct log-linear relationship for
each candidate and predict its performance". Algorithm 1 trains a candidate at a starting
ratio r0, then at decreasing ratios, until enough points are collected, "fits a linear
regression model" and predicts the score "with full data alignment (i.e., r = 1)".
:func:`scaling_ratios` gives that decreasing schedule; the paper does not say by how much the
ratio shrinks per step, halving is the default here.

Two saturating alternatives: :class:`PowerLaw` (error decays as a power of the data towards a
floor) and :class:`Rectified` (Lin et al. 2024, a power law that is flat at small data first).

A predictor is pure: ``fit(ratios, scores) -> ScalingFit`` and ``predict(fit, ratio) -> float``.
Scores are accuracies in [0, 1], higher is better; ratios stand in for data sizes.

The contract is :class:`harness.contracts.Predictor`; the built-in laws (``loglinear``,
``powerlaw``, ``rectified``) live in :mod:`harness.plugins.predictors`. This module is the
engine's side: fitting a predictor as its contract says, the interval of a prediction, and
Algorithm 1's schedule of ratios.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from harness._moved import names_moved_from
from harness.contracts import Predictor, ScalingFit, fit_with

__all__ = ["Predictor", "ScalingFit", "fit_points", "prediction_interval", "scaling_ratios",
           "fit_until_loglinear"]


def fit_points(predictor, ratios: Sequence[float], scores: Sequence[float],
               errors: Sequence[float] | None = None, baseline: float | None = None) -> ScalingFit:
    """``predictor.fit(ratios, scores)`` as its contract says (:func:`harness.contracts.fit_with`):
    a :class:`Predictor` also gets ``errors`` (each score's standard error, binomial over the
    test items for accuracy) and ``baseline`` (the task's constant-answer score; None when
    unknown), for a weighted fit or a floor at the baseline; the built-in laws use neither."""
    return fit_with(predictor, ratios, scores, errors, baseline)


def prediction_interval(predictor, points: Sequence[tuple[float, float]], errors: Sequence[float],
                        ratio: float = 1.0, z: float = 1.96, baseline: float | None = None
                        ) -> tuple[float, float]:
    """(lower, upper): the prediction at ``ratio`` plus or minus ``z`` standard errors, the
    points' own errors (``errors[i]``: the standard error of ``points[i]``'s score, e.g. binomial
    over its test items) carried through the fit to first order: the derivative of the
    prediction with respect to each point's score (central differences, so it works for any
    predictor), then var = sum((d prediction / d score_i)^2 * error_i^2). This is the
    measurement noise only; a law that does not hold adds more. A predictor's clip bounds the
    interval like the prediction (:meth:`Predictor.for_interval`: for ``loglinear``, the unclipped
    line's interval is clipped, so a prediction at the bound still has one)."""
    clip = getattr(predictor, "clip", None)
    if isinstance(predictor, Predictor):  # the law whose interval is clipped (LogLinear: unclipped)
        predictor = predictor.for_interval()
    ratios = [float(r) for r, _ in points]
    scores = np.asarray([float(s) for _, s in points], dtype=np.float64)
    value = predictor.predict(fit_points(predictor, ratios, scores, errors, baseline), ratio)
    var, h = 0.0, 1e-4
    for i, err in enumerate(errors):
        if not err:
            continue
        up, down = scores.copy(), scores.copy()
        up[i] += h
        down[i] -= h
        slope = (predictor.predict(fit_points(predictor, ratios, up, errors, baseline), ratio)
                 - predictor.predict(fit_points(predictor, ratios, down, errors, baseline), ratio)) / (2 * h)
        var += (slope * float(err)) ** 2
    half = z * math.sqrt(var)
    lower, upper = value - half, value + half
    if clip is not None:  # into the clip's range, both ends (a line above the bound: [hi, hi])
        lower = min(max(lower, clip[0]), clip[1])
        upper = max(min(upper, clip[1]), clip[0])
    return float(lower), float(upper)


def scaling_ratios(r0: float, points: int, factor: float = 2.0) -> list[float]:
    """Algorithm 1's schedule: ``points`` ratios from ``r0`` downwards, each ``factor`` times smaller."""
    if not 0 < r0 <= 1:
        raise ValueError(f"r0 must be in (0, 1], got {r0}")
    if points < 2:
        raise ValueError(f"a scaling fit needs at least 2 points, got {points}")
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    return [r0 / factor**i for i in range(points)]


def fit_until_loglinear(predictor, points: list[tuple[float, float]], evaluate, *,
                        min_r2: float | None, factor: float = 2.0, error_of=None,
                        baseline: float | None = None):
    """Algorithm 1's "until log-linearity is observed": fit ``points`` ((ratio, score), any
    order); while there are 3+ points (2 always fit exactly), the fit's R^2 is below ``min_r2``
    and the largest ratio is below 1, train the next larger ratio (``factor`` times the largest;
    ``evaluate(ratio) -> score``, NaN for a failed trial) and refit.

    Returns (fit, points, extra ratios asked for). A point at r = 1 means the candidate ends up
    measured, not predicted. ``min_r2`` None turns the check off. ``error_of(ratio)`` (a
    score's standard error) and ``baseline`` go to a predictor that takes them
    (:func:`fit_points`)."""
    points = sorted(points)

    def refit():
        ratios = [p[0] for p in points]
        errors = None if error_of is None else [error_of(r) for r in ratios]
        return fit_points(predictor, ratios, [p[1] for p in points], errors, baseline)

    fit = refit()
    extra = []
    while (min_r2 is not None and len(points) >= 3 and fit.r2 < min_r2
           and points[-1][0] < 1.0):
        ratio = min(1.0, points[-1][0] * factor)
        extra.append(ratio)
        value = evaluate(ratio)
        if math.isnan(value):
            break
        points.append((ratio, value))
        fit = refit()
    return fit, points, extra


__getattr__ = names_moved_from(__name__)  # the built-in laws, by their names before they moved
