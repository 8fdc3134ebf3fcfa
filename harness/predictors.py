"""Full-data score predictors: fit scores measured at small data-sample ratios, extrapolate to r = 1.

Mordal's observational scaling law (arXiv 2502.00241, section 3.2): with model size fixed,
a VLM's alignment performance is log-linear in the number of training samples, so "by fixing
model parameters and changing training sample D, we may construct log-linear relationship for
each candidate and predict its performance". Algorithm 1 trains a candidate at a starting
ratio r0, then at decreasing ratios, until enough points are collected, "fits a linear
regression model" and predicts the score "with full data alignment (i.e., r = 1)".
:func:`scaling_ratios` gives that decreasing schedule; the paper does not say by how much the
ratio shrinks per step, halving is the default here.

A predictor is pure: ``fit(ratios, scores) -> ScalingFit`` and ``predict(fit, ratio) -> float``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ScalingFit:
    """A fitted scaling law: named parameters and the coefficient of determination on its points."""

    params: dict[str, float]
    r2: float


@runtime_checkable
class Predictor(Protocol):
    def fit(self, ratios: Sequence[float], scores: Sequence[float]) -> ScalingFit:
        """Fit the law to scores measured at data-sample ratios."""
        ...

    def predict(self, fit: ScalingFit, ratio: float = 1.0) -> float:
        """The fitted law's score at ``ratio`` (1 = the full alignment set)."""
        ...


def _points(ratios: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(ratios, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if r.shape != s.shape:
        raise ValueError(f"got {r.size} ratios but {s.size} scores")
    if r.size < 2:
        raise ValueError(f"a scaling fit needs at least 2 (ratio, score) points, got {r.size}")
    if not (np.isfinite(r).all() and np.isfinite(s).all()):
        raise ValueError("ratios and scores must be finite")
    if (r <= 0).any():
        raise ValueError(f"data-sample ratios must be > 0 (log r is fitted), got {r.tolist()}")
    if np.unique(r).size < 2:
        raise ValueError(f"a scaling fit needs at least 2 distinct ratios, got {r.tolist()}")
    return r, s


def r_squared(observed: np.ndarray, fitted: np.ndarray) -> float:
    """1 - SS_res / SS_tot; 1 for constant observations fitted exactly, -inf if not fitted."""
    ss_res = float(((observed - fitted) ** 2).sum())
    ss_tot = float(((observed - observed.mean()) ** 2).sum())
    if ss_tot <= 1e-24 * max(1.0, float((observed**2).sum())):
        return 1.0 if ss_res <= 1e-24 * max(1.0, float((observed**2).sum())) else -math.inf
    return 1.0 - ss_res / ss_tot


@dataclass(frozen=True)
class LogLinear:
    """score = a + b * log(r), fitted by least squares on (log r, score).

    :param clip: bounds for predictions, (0, 1) by default because the scores harness ranks by
        are accuracies, where a straight line in log r would otherwise extrapolate past 100 %.
        Use None for unbounded metrics (losses, perplexities). The fit itself is never clipped.
    """

    clip: tuple[float, float] | None = (0.0, 1.0)

    def fit(self, ratios: Sequence[float], scores: Sequence[float]) -> ScalingFit:
        r, s = _points(ratios, scores)
        x = np.log(r)
        xm, sm = x.mean(), s.mean()
        b = float(((x - xm) * (s - sm)).sum() / ((x - xm) ** 2).sum())
        a = float(sm - b * xm)
        return ScalingFit({"a": a, "b": b}, r_squared(s, a + b * x))

    def predict(self, fit: ScalingFit, ratio: float = 1.0) -> float:
        if not ratio > 0:
            raise ValueError(f"ratio must be > 0, got {ratio}")
        value = fit.params["a"] + fit.params["b"] * math.log(ratio)
        if self.clip is not None:
            value = min(max(value, self.clip[0]), self.clip[1])
        return float(value)


def scaling_ratios(r0: float, points: int, factor: float = 2.0) -> list[float]:
    """Algorithm 1's schedule: ``points`` ratios from ``r0`` downwards, each ``factor`` times smaller."""
    if not 0 < r0 <= 1:
        raise ValueError(f"r0 must be in (0, 1], got {r0}")
    if points < 2:
        raise ValueError(f"a scaling fit needs at least 2 points, got {points}")
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    return [r0 / factor**i for i in range(points)]
