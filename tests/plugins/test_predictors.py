import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.plugin_manager import get_components
from harness.predictors import (
    DEFAULT_ALPHA,
    LogLinear,
    PowerLaw,
    Predictor,
    Rectified,
    ScalingFit,
    scaling_ratios,
)

PREDICTORS = [LogLinear, PowerLaw, Rectified]


@settings(max_examples=50, deadline=None)
@given(st.floats(-1, 1), st.floats(-0.5, 0.5), st.integers(2, 6))
def test_exact_recovery_on_log_linear_data(a, b, points):
    ratios = scaling_ratios(0.25, points)
    scores = [a + b * math.log(r) for r in ratios]
    fit = LogLinear(clip=None).fit(ratios, scores)
    assert fit.params["a"] == pytest.approx(a, abs=1e-9)
    assert fit.params["b"] == pytest.approx(b, abs=1e-9)
    assert fit.r2 == pytest.approx(1.0)


def test_extrapolates_to_full_data():
    ratios = [0.125, 0.0625, 0.03125]
    scores = [0.40 + 0.05 * math.log(r) for r in ratios]
    predictor = LogLinear()
    fit = predictor.fit(ratios, scores)
    assert predictor.predict(fit) == pytest.approx(0.40)
    assert predictor.predict(fit, ratio=0.5) == pytest.approx(0.40 + 0.05 * math.log(0.5))


def test_noisy_data_has_r2_below_one():
    rng = np.random.default_rng(0)
    ratios = np.geomspace(1 / 64, 1 / 4, 6)
    scores = 0.6 + 0.04 * np.log(ratios) + rng.normal(0, 0.01, size=6)
    fit = LogLinear().fit(ratios, scores)
    assert 0.5 < fit.r2 < 1.0
    assert fit.params["b"] == pytest.approx(0.04, abs=0.02)


def test_predictions_are_clipped_to_accuracy_bounds_unless_disabled():
    fit = ScalingFit({"a": 1.3, "b": 0.1}, 1.0)
    assert LogLinear().predict(fit) == 1.0
    assert LogLinear(clip=None).predict(fit) == pytest.approx(1.3)
    low = ScalingFit({"a": -0.2, "b": 0.0}, 1.0)
    assert LogLinear().predict(low) == 0.0


def test_constant_scores_fit_perfectly():
    fit = LogLinear().fit([0.1, 0.2, 0.4], [0.5, 0.5, 0.5])
    assert fit.params["b"] == pytest.approx(0.0) and fit.r2 == 1.0


@pytest.mark.parametrize(
    "ratios, scores, message",
    [
        ([0.5], [0.3], "at least 2"),
        ([], [], "at least 2"),
        ([0.5, 0.0], [0.3, 0.2], "> 0"),
        ([0.5, -0.25], [0.3, 0.2], "> 0"),
        ([0.5, 0.5], [0.3, 0.2], "distinct"),
        ([0.5, 0.25], [0.3], "2 ratios but 1 scores"),
        ([0.5, 0.25], [0.3, math.nan], "finite"),
    ],
)
@pytest.mark.parametrize("cls", PREDICTORS)
def test_bad_points(cls, ratios, scores, message):
    with pytest.raises(ValueError, match=message):
        cls().fit(ratios, scores)


@pytest.mark.parametrize("cls", PREDICTORS)
def test_predict_rejects_non_positive_ratio(cls):
    predictor = cls()
    fit = predictor.fit([0.25, 0.125, 0.0625], [0.6, 0.5, 0.45])
    with pytest.raises(ValueError, match="> 0"):
        predictor.predict(fit, ratio=0.0)


def test_protocol_and_ratio_schedule():
    assert isinstance(LogLinear(), Predictor)
    assert scaling_ratios(0.125, 3) == [0.125, 0.0625, 0.03125]
    assert scaling_ratios(0.5, 2, factor=4) == [0.5, 0.125]
    with pytest.raises(ValueError, match="at least 2"):
        scaling_ratios(0.125, 1)


# -- PowerLaw and Rectified ---------------------------------------------------------------------

FIVE = np.geomspace(1 / 16, 1, 5)


def power_scores(r, c, a, alpha):
    return c - a * np.asarray(r) ** (-alpha)


def rectified_scores(r, B, D_l, beta, E):
    return 1.0 - (B / (D_l + np.asarray(r) ** beta) + E)


@pytest.mark.parametrize("c, a, alpha", [(0.9, 0.1, 0.5), (0.75, 0.02, 1.2), (1.0, 0.3, 0.2)])
def test_power_law_recovers_its_parameters(c, a, alpha):
    predictor = PowerLaw()
    fit = predictor.fit(FIVE, power_scores(FIVE, c, a, alpha))
    assert [fit.params[k] for k in ("c", "a", "alpha")] == pytest.approx([c, a, alpha], rel=1e-5)
    assert fit.params["fallback"] == "none" and fit.r2 == pytest.approx(1.0)
    assert predictor.predict(fit) == pytest.approx(c - a, abs=1e-6)
    # extrapolation 4x past the largest measured ratio
    small = np.geomspace(1 / 64, 1 / 4, 5)
    assert predictor.predict(predictor.fit(small, power_scores(small, c, a, alpha))) == pytest.approx(c - a, abs=1e-5)


@pytest.mark.parametrize("B, D_l, beta, E", [(0.05, 0.05, 0.8, 0.1), (0.2, 0.3, 0.5, 0.05),
                                             (0.02, 0.01, 1.2, 0.2), (0.1, 0.0, 0.6, 0.15)])
def test_rectified_recovers_its_parameters(B, D_l, beta, E):
    predictor = Rectified()
    fit = predictor.fit(FIVE, rectified_scores(FIVE, B, D_l, beta, E))
    got = [fit.params[k] for k in ("B", "D_l", "beta", "E")]
    assert got == pytest.approx([B, D_l, beta, E], rel=1e-4, abs=1e-7)
    assert fit.params["fallback"] == "none" and fit.params["n_fitted"] == 5
    assert fit.params["transition_ratio"] == pytest.approx(D_l ** (1 / beta), rel=1e-3)
    assert predictor.predict(fit) == pytest.approx(1 - B / (D_l + 1) - E, abs=1e-6)


@pytest.mark.parametrize("seed", range(8))
def test_mild_noise_keeps_the_full_data_error_bounded(seed):
    rng = np.random.default_rng(seed)
    truth = rectified_scores(1.0, 0.05, 0.05, 0.8, 0.1)
    noisy = rectified_scores(FIVE, 0.05, 0.05, 0.8, 0.1) + rng.normal(0, 0.005, FIVE.size)
    for predictor in (Rectified(), PowerLaw()):
        fit = predictor.fit(FIVE, noisy)
        assert abs(predictor.predict(fit) - truth) < 0.02
        assert fit.r2 > 0.95


def test_rectified_finds_the_flat_pre_power_phase_and_beats_log_linear():
    # transition halfway (in log) between 1/128 and 1/64: the three smallest ratios are pre-power
    tau, beta, E = 1 / (64 * math.sqrt(2)), 1.5, 0.1
    D_l = tau**beta
    law = {"B": 0.7 * D_l, "D_l": D_l, "beta": beta, "E": E}
    ratios = np.geomspace(1 / 512, 1 / 16, 6)
    scores = rectified_scores(ratios, **law)
    # the curve really is flat first: log-log slopes of the error above its floor
    local_slopes = np.diff(np.log(1 - scores - E)) / np.diff(np.log(ratios))
    assert abs(local_slopes[0]) < 0.25 * abs(local_slopes[-1])

    fit = Rectified().fit(ratios, scores)
    assert fit.params["n_pre_power"] == int((ratios < tau).sum()) == 3
    assert fit.params["transition_ratio"] == pytest.approx(tau, rel=1e-3)
    truth = float(rectified_scores(1.0, **law))
    rectified_error = abs(Rectified().predict(fit) - truth)
    log_linear_error = abs(LogLinear().predict(LogLinear().fit(ratios, scores)) - truth)
    assert rectified_error < 1e-4
    assert rectified_error < log_linear_error


def test_two_points_fit_the_log_log_line_through_both():
    ratios, scores = [0.125, 0.0625], [0.62, 0.55]
    fit = Rectified().fit(ratios, scores)
    beta = math.log(0.45 / 0.38) / math.log(2)  # error ratio over one halving
    assert fit.params["fallback"] == "D_l=0,E=0"
    assert fit.params["beta"] == pytest.approx(beta, rel=1e-6)
    assert fit.params["D_l"] == 0.0 and fit.params["E"] == 0.0
    assert Rectified().predict(fit) == pytest.approx(1 - 0.38 * 0.125**beta, abs=1e-6)


def test_two_points_fix_the_power_law_exponent():
    ratios = [0.125, 0.0625]
    fit = PowerLaw().fit(ratios, power_scores(ratios, 0.9, 0.05, DEFAULT_ALPHA))
    assert fit.params["alpha"] == DEFAULT_ALPHA and str(DEFAULT_ALPHA) in fit.params["fallback"]
    assert [fit.params["c"], fit.params["a"]] == pytest.approx([0.9, 0.05], rel=1e-9)


def test_accept_then_stop_drops_a_flat_smallest_point():
    # the 1/32 -> 1/16 segment is 10x flatter than 1/16 -> 1/8: pre-power, left out of the fit
    ratios = [0.125, 0.0625, 0.03125]
    errors = [0.40, 0.55, 0.55 * 2**0.046]
    fit = Rectified().fit(ratios, [1 - e for e in errors])
    assert fit.params["n_pre_power"] == 1 and fit.params["n_fitted"] == 2
    assert 0.03125 < fit.params["transition_ratio"] < 0.0625
    assert fit.params["fallback"] == "D_l=0,E=0"
    beta = math.log(0.55 / 0.40) / math.log(2)
    assert Rectified().predict(fit) == pytest.approx(1 - 0.40 * 0.125**beta, abs=1e-6)

    # a power-law curve (with a floor) keeps all three points
    plain = Rectified().fit(ratios, rectified_scores(ratios, 0.02, 0.0, 0.9, 0.1))
    assert plain.params["n_pre_power"] == 0 and plain.params["fallback"] == "D_l=0"
    assert Rectified().predict(plain) == pytest.approx(float(rectified_scores(1.0, 0.02, 0.0, 0.9, 0.1)), abs=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.floats(0.02, 1.0), st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5))
def test_any_scores_give_finite_clipped_predictions(points, r0, scores):
    # 2 and 3 points run the fallbacks, 4 and 5 the full laws
    ratios = scaling_ratios(r0, points)
    for cls in PREDICTORS:
        predictor = cls()
        fit = predictor.fit(ratios, scores[:points])
        value = predictor.predict(fit, 1.0)
        assert isinstance(value, float) and 0.0 <= value <= 1.0
        # stored as JSON by the mordal strategy: finite numbers and strings only
        json.dumps(fit.params, allow_nan=False)
        assert math.isfinite(fit.r2) or fit.r2 == -math.inf


@pytest.mark.parametrize("cls", [PowerLaw, Rectified])
def test_fits_are_deterministic(cls):
    rng = np.random.default_rng(3)
    for ratios in (FIVE, FIVE[:3], FIVE[:2]):
        scores = rectified_scores(ratios, 0.05, 0.05, 0.8, 0.1) + rng.normal(0, 0.01, ratios.size)
        first, second = cls().fit(ratios, scores), cls().fit(list(ratios), list(scores))
        assert first == second


def test_every_registered_predictor_builds_without_arguments():
    registry = get_components()["predictor"]
    assert {"loglinear", "powerlaw", "rectified"} <= set(registry.names())
    for name in registry.names():
        predictor = registry.get(name).load()()
        assert isinstance(predictor, Predictor)
        fit = predictor.fit([0.125, 0.0625, 0.03125], [0.6, 0.5, 0.45])
        assert 0.0 <= predictor.predict(fit) <= 1.0


@pytest.mark.parametrize("cls", [PowerLaw, Rectified])
@pytest.mark.parametrize("ratios", [[0.4, 0.2, 0.1], [0.8, 0.4, 0.2, 0.1]])
def test_constant_scores_predict_the_constant(cls, ratios):
    fit = cls().fit(ratios, [0.5] * len(ratios))
    assert cls().predict(fit) == pytest.approx(0.5) and fit.r2 == 1.0
    if cls is Rectified:
        assert fit.params["n_pre_power"] == 0  # flat everywhere is no phase transition


def test_a_curve_that_is_not_log_linear_gets_larger_ratios_until_it_is():
    from harness.predictors import LogLinear, fit_until_loglinear

    # flat at chance below 1/8, then log-linear: the three smallest points are not log-linear
    def curve(r):
        return 0.1 if r < 0.125 else 0.1 + 0.2 * math.log2(r / 0.0625)

    asked = []

    def evaluate(r):
        asked.append(r)
        return curve(r)

    start = [(r, curve(r)) for r in (1 / 32, 1 / 16, 1 / 8)]
    fit, points, extra = fit_until_loglinear(LogLinear(clip=None), start, evaluate, min_r2=0.9)
    assert extra == asked == [0.25, 0.5]  # R^2 0.75 over 3 points, 0.89 over 4, 0.94 over 5
    assert [p[0] for p in points] == [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2] and fit.r2 >= 0.9
    # a log-linear curve, or the check off, or 2 points (always an exact fit): nothing extra
    line = [(r, 0.5 + 0.1 * math.log(r)) for r in (1 / 32, 1 / 16, 1 / 8)]
    assert fit_until_loglinear(LogLinear(clip=None), line, evaluate, min_r2=0.95)[2] == []
    assert fit_until_loglinear(LogLinear(clip=None), start, evaluate, min_r2=None)[2] == []
    assert fit_until_loglinear(LogLinear(clip=None), start[1:], evaluate, min_r2=0.99)[2] == []
    # never past the full data; a failed trial (NaN) stops the loop
    noisy = [(r, v) for r, v in zip((1 / 4, 1 / 2, 1 / 8), (0.9, 0.1, 0.5))]
    _, points, extra = fit_until_loglinear(LogLinear(clip=None), noisy, lambda r: 0.9, min_r2=1.0)
    assert extra == [1.0] and points[-1] == (1.0, 0.9)
    _, points, extra = fit_until_loglinear(LogLinear(clip=None), start, lambda r: math.nan, min_r2=0.99)
    assert extra == [0.25] and len(points) == 3


def test_prediction_interval_carries_the_points_errors_through_the_fit():
    """Two points at r = 1/8 and 1/4: log-linear extrapolation to r = 1 is 3 y2 - 2 y1, so its
    variance is 9 se2^2 + 4 se1^2; a third, exact point narrows it; clip bounds it."""
    from harness.predictors import LogLinear, prediction_interval

    points = [(0.125, 0.30), (0.25, 0.40)]
    lower, upper = prediction_interval(LogLinear(), points, [0.02, 0.03])
    half = 1.96 * math.sqrt(9 * 0.03**2 + 4 * 0.02**2)
    assert lower == pytest.approx(0.60 - half, abs=1e-6) and upper == pytest.approx(0.60 + half, abs=1e-6)
    assert prediction_interval(LogLinear(), points, [0.0, 0.0]) == pytest.approx((0.60, 0.60))
    narrower = prediction_interval(LogLinear(), [(0.0625, 0.2), *points], [0.02, 0.02, 0.03])
    assert narrower[1] - narrower[0] < upper - lower
    high = prediction_interval(LogLinear(), [(0.125, 0.7), (0.25, 0.85)], [0.05, 0.05])
    assert high[1] == 1.0 and high[0] < 1.0  # the prediction (1.15) and its interval clipped


def test_a_predictor_that_takes_errors_and_baseline_receives_them():
    from harness.predictors import LogLinear, fit_points, fit_until_loglinear, prediction_interval

    seen = []

    class Weighted(LogLinear):
        def fit(self, ratios, scores, errors=None, baseline=None):
            seen.append((list(errors) if errors is not None else None, baseline))
            return super().fit(ratios, scores)

    points = [(0.125, 0.3), (0.25, 0.4), (0.5, 0.5)]
    fit_until_loglinear(Weighted(), points, lambda r: 0.6, min_r2=None,
                        error_of=lambda r: r / 10, baseline=0.1)
    assert seen == [([0.0125, 0.025, 0.05], 0.1)]
    seen.clear()
    prediction_interval(Weighted(), points, [0.01, 0.02, 0.03], baseline=0.2)
    assert seen and all(e == [0.01, 0.02, 0.03] and b == 0.2 for e, b in seen)
    # the built-ins take neither keyword and are called as before
    assert fit_points(LogLinear(), [0.25, 0.5], [0.4, 0.5], [0.1, 0.1], 0.1).r2 == 1.0


def test_an_interval_above_the_clip_is_the_bound_not_inverted():
    from harness.predictors import LogLinear, prediction_interval

    # a steep line that predicts 1.4 at r = 1: the prediction is clipped to 1, and so is its
    # interval, at both ends (it was [1.41, 1.0], an interval with its ends swapped)
    points = [(0.125, 0.4), (0.25, 0.733)]
    lower, upper = prediction_interval(LogLinear(), points, [0.01, 0.01])
    assert lower <= upper and (lower, upper) == (1.0, 1.0)
    value = LogLinear().predict(LogLinear().fit([0.125, 0.25], [0.4, 0.733]), 1.0)
    assert lower <= value <= upper
