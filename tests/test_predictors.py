import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.predictors import LogLinear, Predictor, ScalingFit, scaling_ratios


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
def test_bad_points(ratios, scores, message):
    with pytest.raises(ValueError, match=message):
        LogLinear().fit(ratios, scores)


def test_predict_rejects_non_positive_ratio():
    with pytest.raises(ValueError, match="> 0"):
        LogLinear().predict(ScalingFit({"a": 0.0, "b": 0.0}, 1.0), ratio=0.0)


def test_protocol_and_ratio_schedule():
    assert isinstance(LogLinear(), Predictor)
    assert scaling_ratios(0.125, 3) == [0.125, 0.0625, 0.03125]
    assert scaling_ratios(0.5, 2, factor=4) == [0.5, 0.125]
    with pytest.raises(ValueError, match="at least 2"):
        scaling_ratios(0.125, 1)
