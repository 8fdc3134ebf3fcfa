"""The built-in full-data score predictors: ``loglinear``, ``powerlaw`` and ``rectified``.

Each is a :class:`harness.contracts.Predictor` (the contract a third-party predictor meets too),
registered below through the same hook a plugin uses. See :mod:`harness.predictors` for the
scaling law they serve and the engine that fits them.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from harness.contracts import Predictor, ScalingFit
from harness.hookspecs import hookimpl


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


class ClipOptions(BaseModel):
    """What a suite sets under ``predictor.options`` for the built-in laws: ``clip``, the bounds
    of a prediction (and of a law's asymptote), ``[0, 1]`` for accuracies by default; ``null``
    for an unbounded metric (a loss, a perplexity)."""

    model_config = ConfigDict(extra="forbid")
    clip: tuple[Annotated[float, Field(strict=True, allow_inf_nan=False)],
                Annotated[float, Field(strict=True, allow_inf_nan=False)]] | None = (0.0, 1.0)


@dataclass(frozen=True)
class LogLinear(Predictor):
    """score = a + b * log(r), fitted by least squares on (log r, score).

    :param clip: bounds for predictions, (0, 1) by default because the scores harness ranks by
        are accuracies, where a straight line in log r would otherwise extrapolate past 100 %.
        Use None for unbounded metrics (losses, perplexities). The fit itself is never clipped.
    """

    clip: tuple[float, float] | None = (0.0, 1.0)
    Options = ClipOptions

    def for_interval(self) -> LogLinear:
        """The straight line's interval is the unclipped line's, clipped afterwards (its fit does
        not depend on the clip; a saturating law's does, so it keeps its own)."""
        return self if self.clip is None else dataclasses.replace(self, clip=None)

    def fit(self, ratios: Sequence[float], scores: Sequence[float], *, errors=None, baseline=None) -> ScalingFit:
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



# -- saturating laws: PowerLaw and Rectified ------------------------------------------------------
#
# Both are the same family, y = B / (D_l + r^beta) + E with B >= 0, written for a quantity y that
# falls as data grows: Rectified fits y = error = 1 - score, PowerLaw fits y = -score with D_l = 0
# (then B = a, beta = alpha, E = -c). For fixed (D_l, beta) the law is linear in (B, E), so a fixed
# grid over (beta, D_l) with the bounded linear solve gives a deterministic start, and curve_fit
# refines it; a refinement that fails or fits worse keeps the grid point (fit.params["fit"] says).

BETA_BOUNDS = (1e-3, 5.0)
# exponents on the start grid: from almost flat to steeper than any data-scaling exponent reported
_BETA_GRID = np.geomspace(0.05, BETA_BOUNDS[1], 40)
# PowerLaw's exponent when 2 points cannot identify 3 parameters: Hestness et al. 2017 ("Deep
# Learning Scaling is Predictable, Empirically") measured ImageNet top-1 error ~ D^-0.31, speech
# ~ D^-0.30; image accuracy is what harness ranks.
DEFAULT_ALPHA = 0.3
# a segment whose log-log slope is below this fraction of the power phase's slope is pre-power;
# 1/2 matches the rectified law, whose slope is exactly beta/2 where r^beta = D_l
PRE_POWER_SLOPE_FRACTION = 0.5
_ERROR_FLOOR = 1e-9  # log of a zero error in the slope test


def _bounded_affine(g: np.ndarray, y: np.ndarray, e_lo: float, e_hi: float):
    """Least squares y ~ B g + E per row of g, subject to B >= 0 and e_lo <= E <= e_hi.

    The problem is a convex quadratic on a box, so its minimum is the unconstrained one when
    feasible or else lies on an edge (B = 0, E = e_lo or E = e_hi), each solved in closed form.
    Returns B, E and the residual sum of squares, one per row.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gm = g.mean(axis=1)
        gc = g - gm[:, None]
        var = (gc**2).sum(axis=1)
        ym = float(y.mean())
        b_free = np.where(var > 0, gc @ (y - ym) / np.where(var > 0, var, 1.0), 0.0)
        candidates = [(b_free, ym - b_free * gm),
                      (np.zeros_like(gm), np.full_like(gm, min(max(ym, e_lo), e_hi)))]
        gg = (g**2).sum(axis=1)
        for e in dict.fromkeys((e_lo, e_hi)):
            if math.isfinite(e):
                candidates.append((np.maximum(g @ (y - e) / gg, 0.0), np.full_like(gm, e)))
        best_b, best_e, best_sse = None, None, None
        for b, e in candidates:
            sse = (((b[:, None] * g + e[:, None]) - y) ** 2).sum(axis=1)
            ok = (b >= 0) & (e >= e_lo) & (e <= e_hi) & np.isfinite(sse)
            sse = np.where(ok, sse, np.inf)
            if best_sse is None:
                best_b, best_e, best_sse = b.copy(), e.copy(), sse
            else:
                better = sse < best_sse
                best_b = np.where(better, b, best_b)
                best_e = np.where(better, e, best_e)
                best_sse = np.where(better, sse, best_sse)
    return best_b, best_e, best_sse


def _law(r, B, D_l, beta, E):
    return B / (D_l + np.power(r, beta)) + E


def _fit_law(r: np.ndarray, y: np.ndarray, *, betas: np.ndarray, taus: np.ndarray,
             e_bounds: tuple[float, float]) -> tuple[dict[str, float], str]:
    """Fit y = B / (D_l + r^beta) + E: grid over (beta, tau) with D_l = tau^beta, then curve_fit.

    tau is the transition ratio (r^beta = D_l there), so the grid spans D_l on the scale of the
    data whatever beta is. A single beta or a single tau (0) fixes that parameter.
    """
    bb, tt = np.meshgrid(betas, taus, indexing="ij")
    bb, dd = bb.ravel(), (tt**bb).ravel()
    # extreme ratios overflow some grid rows; those score inf and are never chosen
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        g = 1.0 / (dd[:, None] + r[None, :] ** bb[:, None])
        B, E, sse = _bounded_affine(g, y, *e_bounds)
    k = int(np.argmin(sse))  # first minimum: ties resolve the same way every time
    start = {"B": float(B[k]), "D_l": float(dd[k]), "beta": float(bb[k]), "E": float(E[k])}
    bounds = {"B": (0.0, np.inf), "D_l": (0.0, np.inf), "beta": BETA_BOUNDS, "E": e_bounds}
    free = ["B"] + (["D_l"] if taus.size > 1 else []) + (["beta"] if betas.size > 1 else [])
    free += ["E"] if e_bounds[0] < e_bounds[1] else []
    if free == ["B"] or free == ["B", "E"]:
        return start, "linear"  # (B, E) given beta and D_l: the bounded solve is already exact

    # imported here: scipy.optimize costs about a second, and the strategies import this module
    from scipy.optimize import OptimizeWarning, curve_fit

    def model(x, *p):
        return _law(x, **{**start, **dict(zip(free, p))})

    try:
        with warnings.catch_warnings():
            # exactly determined fits have no covariance; only the optimum is used
            warnings.simplefilter("ignore", OptimizeWarning)
            p, _ = curve_fit(model, r, y, p0=[start[n] for n in free], method="trf",
                             bounds=([bounds[n][0] for n in free], [bounds[n][1] for n in free]),
                             x_scale="jac", maxfev=200)
    except (RuntimeError, ValueError, FloatingPointError):
        return start, "grid"
    refined = {**start, **{n: float(v) for n, v in zip(free, p)}}
    refined_sse = float(((_law(r, **refined) - y) ** 2).sum())
    if not (math.isfinite(refined_sse) and refined_sse <= float(sse[k])):
        return start, "grid"
    return refined, "curve_fit"


def _clipped(value: float, clip: tuple[float, float] | None) -> float:
    if clip is not None:
        value = min(max(value, clip[0]), clip[1])
    return float(value)


def _check_ratio(ratio: float) -> None:
    if not ratio > 0:
        raise ValueError(f"ratio must be > 0, got {ratio}")


@dataclass(frozen=True)
class PowerLaw(Predictor):
    """score = c - a * r^(-alpha), a >= 0, 0 < alpha <= 5: error decays as a power of the data
    fraction towards an irreducible floor 1 - c.

    Fitted by bounded least squares on the score scale (accuracy noise is additive): a grid over
    alpha with (c, a) solved exactly gives the start, scipy's curve_fit refines it. With only 2
    distinct ratios the three parameters are under-determined, so alpha is fixed at
    :data:`DEFAULT_ALPHA` and ``params["fallback"]`` says so.

    :param clip: bounds for predictions and for c (the score at infinite data), (0, 1) for
        accuracies; None for unbounded metrics.
    """

    clip: tuple[float, float] | None = (0.0, 1.0)
    Options = ClipOptions

    def fit(self, ratios: Sequence[float], scores: Sequence[float], *, errors=None, baseline=None) -> ScalingFit:
        r, s = _points(ratios, scores)
        lo, hi = self.clip if self.clip is not None else (-math.inf, math.inf)
        enough = np.unique(r).size >= 3
        betas = _BETA_GRID if enough else np.array([DEFAULT_ALPHA])
        # -score = a r^-alpha - c: the shared law with D_l = 0, B = a, E = -c
        law, how = _fit_law(r, -s, betas=betas, taus=np.zeros(1), e_bounds=(-hi, -lo))
        params = {"c": 0.0 - law["E"], "a": law["B"], "alpha": law["beta"], "fit": how,
                  "fallback": "none" if enough else f"alpha fixed at {DEFAULT_ALPHA}"}
        return ScalingFit(params, r_squared(s, -_law(r, **law)))

    def predict(self, fit: ScalingFit, ratio: float = 1.0) -> float:
        _check_ratio(ratio)
        p = fit.params
        return _clipped(p["c"] - p["a"] * ratio ** (-p["alpha"]), self.clip)


def _accept_then_stop(r: np.ndarray, error: np.ndarray) -> float:
    """The transition ratio below which the points are pre-power, 0.0 if none are.

    After Lin et al.'s Accept then Stop: walking from the largest ratio down, each next segment is
    accepted while its log-log slope of error keeps at least PRE_POWER_SLOPE_FRACTION of the slope
    of a line through the points accepted so far (the power phase, where log error is linear in
    log r); at the first flatter segment it stops, and everything smaller is pre-power. The
    transition is put at the geometric mean of the two ratios around the stop.
    """
    u = np.unique(r)[::-1]
    if u.size < 3:
        return 0.0
    x = np.log(u)
    z = np.log(np.maximum([error[r == v].mean() for v in u], _ERROR_FLOOR))
    for i in range(2, u.size):
        power_slope = -np.polyfit(x[:i], z[:i], 1)[0]
        segment_slope = -(z[i - 1] - z[i]) / (x[i - 1] - x[i])
        # a flat or rising power phase has no slope to compare with (1e-6: rounding of a flat fit)
        if power_slope > 1e-6 and segment_slope < PRE_POWER_SLOPE_FRACTION * power_slope:
            return float(math.sqrt(u[i - 1] * u[i]))
    return 0.0


@dataclass(frozen=True)
class Rectified(Predictor):
    """The rectified scaling law of Lin et al. 2024 ("Selecting Large Language Model to Fine-tune
    via Rectified Scaling Law", ICML 2024): error(D) = B / (D_l + D^beta) + E, with error =
    1 - score and D the data ratio. D_l, the "pre-learned data size", flattens the curve at small D
    (the pre-power phase) before it becomes a power law (the power phase).

    Fitted by bounded least squares on the error scale, B, D_l >= 0, 0 < beta <= 5, 0 <= E <= 1
    (error, not log error: accuracy noise is additive and r2 is judged on the score scale).

    - 4 or more distinct ratios: all four parameters, on all points. The transition ratio is
      D_l^(1/beta), where the law's log-log slope is half its power-phase slope beta; points below
      it are pre-power (``params["n_pre_power"]``).
    - 3 distinct ratios: too few for four parameters. Accept then Stop (:func:`_accept_then_stop`)
      detects pre-power points and drops them, because a law with D_l = 0 cannot bend through
      them; the rest are fitted with D_l = 0 (``fallback = "D_l=0"``).
    - 2 points left: also E = 0, a straight line in log-log through both (``"D_l=0,E=0"``),
      which is what Accept then Stop extrapolates with.

    params: B, D_l, beta, E, transition_ratio (0.0: no pre-power phase), n_pre_power, n_fitted,
    fallback, fit ("curve_fit"; "grid" when refining did not improve on the start grid). r2 is on
    the fitted points.

    :param clip: bounds for predictions, (0, 1) for accuracies.
    """

    clip: tuple[float, float] | None = (0.0, 1.0)
    Options = ClipOptions

    def fit(self, ratios: Sequence[float], scores: Sequence[float], *, errors=None, baseline=None) -> ScalingFit:
        r, s = _points(ratios, scores)
        error = 1.0 - s
        if np.unique(r).size >= 4:
            taus = np.concatenate([[0.0], np.geomspace(r.min() / 4, r.max(), 24)])
            law, how = _fit_law(r, error, betas=_BETA_GRID, taus=taus, e_bounds=(0.0, 1.0))
            transition = law["D_l"] ** (1 / law["beta"]) if law["D_l"] > 0 else 0.0
            keep, fallback = np.ones(r.size, dtype=bool), "none"
        else:
            transition = _accept_then_stop(r, error)
            keep = r >= transition
            three = np.unique(r[keep]).size >= 3
            fallback = "D_l=0" if three else "D_l=0,E=0"
            law, how = _fit_law(r[keep], error[keep], betas=_BETA_GRID, taus=np.zeros(1),
                                e_bounds=(0.0, 1.0) if three else (0.0, 0.0))
        params = {**law, "transition_ratio": float(transition),
                  "n_pre_power": int((r < transition).sum()), "n_fitted": int(keep.sum()),
                  "fallback": fallback, "fit": how}
        return ScalingFit(params, r_squared(s[keep], 1.0 - _law(r[keep], **law)))

    def predict(self, fit: ScalingFit, ratio: float = 1.0) -> float:
        _check_ratio(ratio)
        law = {k: fit.params[k] for k in ("B", "D_l", "beta", "E")}
        return _clipped(1.0 - _law(ratio, **law), self.clip)


@hookimpl
def register_predictors(register):
    register("loglinear", "harness.plugins.predictors:LogLinear", doc="Mordal's observational scaling law: score = a + b log(r)")
    register("rectified", "harness.plugins.predictors:Rectified", doc="rectified scaling law (Lin et al. 2024): error = B / (D_l + D^beta) + E, fitted on the points past the phase transition")
    register("powerlaw", "harness.plugins.predictors:PowerLaw", doc="saturating power law: score = c - a * r^(-alpha)")
