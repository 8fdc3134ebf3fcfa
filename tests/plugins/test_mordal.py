"""The pieces issue 13 adds to a Mordal ranking, on synthetic inputs with known answers:
cluster representatives, the estimated full-data score below the survivors, the ranking basis."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.clustering import farthest_members
from harness.strategies.base import RankedCandidate, task_baseline
from harness.strategies.mordal import estimate_full_scores
from harness.suite import Candidate


def test_representatives_start_at_the_medoid_and_take_the_farthest_member():
    points = {"m": 0.0, "a": 1.0, "b": 5.0, "c": -2.0}
    distance = lambda x, y: abs(points[x] - points[y])
    assert farthest_members(list(points), "m", distance, 1) == ["m"]
    assert farthest_members(list(points), "m", distance, 2) == ["m", "b"]
    # then the member farthest from both chosen ones (c: 2 from m, 7 from b)
    assert farthest_members(list(points), "m", distance, 3) == ["m", "b", "c"]
    assert farthest_members(list(points), "m", distance, 10) == ["m", "b", "c", "a"]


@given(st.lists(st.floats(-10, 10), min_size=1, max_size=8, unique=True), st.integers(1, 9))
@settings(max_examples=50, deadline=None)
def test_representatives_are_distinct_members(xs, k):
    names = [f"n{i}" for i in range(len(xs))]
    pos = dict(zip(names, xs))
    reps = farthest_members(names, names[0], lambda a, b: abs(pos[a] - pos[b]), k)
    assert reps[0] == names[0] and len(reps) == min(k, len(names)) and len(set(reps)) == len(reps)


def test_estimate_adds_the_median_gain_from_the_last_ratio():
    # every curve gains 0.3 from r = 1/4 to r = 1 and 0.1 from 1/16 to 1/4
    final = {"s1": 0.9, "s2": 0.8, "s3": 0.7}
    scores = {"s1": {0.25: 0.6, 0.0625: 0.5}, "s2": {0.25: 0.5, 0.0625: 0.4},
              "s3": {0.25: 0.4, 0.0625: 0.3},
              "late": {0.25: 0.45, 0.0625: 0.35}, "early": {0.0625: 0.52}}
    est = estimate_full_scores(scores, final)
    assert est["s1"] == 0.9  # a full-data score is kept
    assert est["late"] == pytest.approx(0.75)
    assert est["early"] == pytest.approx(0.92)  # ranks above "late" and s1: its curve is higher
    assert set(est) == set(scores)


def test_estimate_chains_through_larger_ratios_when_one_survivor_reaches_r1():
    # one survivor reaches r = 1 (gain 0.2 from 1/4); many candidates link 1/16 to 1/4 (+0.1)
    final = {"s": 0.8}
    scores = {"s": {0.25: 0.6, 0.0625: 0.1},  # its own 1/16 -> 1 gain (0.7) is an outlier
              "a": {0.25: 0.5, 0.0625: 0.4}, "b": {0.25: 0.3, 0.0625: 0.2},
              "c": {0.0625: 0.45}}
    est = estimate_full_scores(scores, final)
    assert est["a"] == pytest.approx(0.7)
    assert est["c"] == pytest.approx(0.45 + 0.1 + 0.2)  # chained, not 0.45 + 0.7
    # nothing links a ratio to r = 1: no gain
    assert estimate_full_scores({"x": {0.5: 0.3}}, {}) == {"x": 0.3}


def test_estimate_ignores_failed_scores():
    est = estimate_full_scores({"s": {0.5: 0.4}, "f": {0.5: math.nan}}, {"s": 0.6})
    assert "f" not in est and est["s"] == 0.6


def test_ranking_basis_says_what_a_place_rests_on():
    c = Candidate("e", "l")
    assert RankedCandidate(c, 0.5, "measured", "k").basis == "measured"
    assert RankedCandidate(c, 0.5, "predicted", stage="survivor").basis == "predicted"
    assert RankedCandidate(c, 0.5, "measured", "k", 0.25, "eliminated-intra").basis == "eliminated"
    assert RankedCandidate(c, math.nan, "measured", None, None, "eliminated-inter").basis == "cluster"
    assert RankedCandidate(c, None, "predicted", None, None, "gw-rank").basis == "similarity"


def test_constant_answer_baseline_is_the_most_frequent_test_answer():
    from collections import Counter

    from harness.plugins.shapes import load_dataset

    answer, value, n = task_baseline("shapes:count", 200)
    answers = Counter(load_dataset("count", split="test", n=200, seed=0).answers())
    assert n == 200 and answers[answer] == max(answers.values())
    assert value == pytest.approx(max(answers.values()) / 200)
    assert task_baseline("lmms:mme", None) is None


def test_a_non_finite_prediction_is_refused_at_the_boundary():
    from harness.predictors import LogLinear, ScalingFit
    from harness.strategies.mordal import usable_prediction

    fit = LogLinear().fit([0.125, 0.25], [0.3, 0.4])
    assert usable_prediction(LogLinear().predict(fit), fit)
    assert not usable_prediction(math.nan, fit)
    assert not usable_prediction(math.inf, fit)
    assert not usable_prediction("0.5", fit)
    nan_params = ScalingFit(params={"a": math.nan, "b": 0.1}, r2=1.0)
    assert not usable_prediction(0.5, nan_params)
