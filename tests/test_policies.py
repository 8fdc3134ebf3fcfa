import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.policies import (
    NoStopping,
    Rung,
    StoppingPolicy,
    SuccessiveHalving,
    drive,
    rank,
)


@pytest.mark.parametrize(
    "n, eta, top_k, min_ratio, expected",
    [
        # classic SHA: the first ratio is derived so that the last rung trains on all the data
        (16, 2, 1, None, [(0.125, 16, 8), (0.25, 8, 4), (0.5, 4, 2), (1.0, 2, 1)]),
        (49, 2, 3, None, [(0.125, 49, 24), (0.25, 24, 12), (0.5, 12, 6), (1.0, 6, 3)]),
        (49, 3, 1, None, [(1 / 9, 49, 16), (1 / 3, 16, 5), (1.0, 5, 1)]),
        (7, 2, 3, None, [(1.0, 7, 3)]),
        # the suite's explicit min_ratio: rungs grow from it and may stop short of r = 1
        (7, 2, 3, 0.125, [(0.125, 7, 3)]),
        (12, 2, 1, 0.125, [(0.125, 12, 6), (0.25, 6, 3), (0.5, 3, 1)]),
        # ... or reach r = 1 early, where the rung keeps top_k at once
        (40, 2, 1, 0.5, [(0.5, 40, 20), (1.0, 20, 1)]),
        (3, 2, 3, None, []),
        (0, 2, 1, None, []),
    ],
)
def test_rung_plans(n, eta, top_k, min_ratio, expected):
    plan = SuccessiveHalving(eta=eta, min_ratio=min_ratio).plan(n, top_k)
    assert [r.index for r in plan] == list(range(len(plan)))
    assert [(r.n_in, r.n_keep) for r in plan] == [(a, b) for _, a, b in expected]
    assert [r.ratio for r in plan] == pytest.approx([r for r, _, _ in expected])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 500),
    st.integers(2, 5),
    st.integers(1, 10),
    st.one_of(st.none(), st.sampled_from([1 / 64, 0.1, 0.125, 0.5, 1.0])),
)
def test_plans_are_well_formed(n, eta, top_k, min_ratio):
    plan = SuccessiveHalving(eta=eta, min_ratio=min_ratio).plan(n, top_k)
    if n <= top_k:
        assert plan == []
        return
    assert plan[0].n_in == n and plan[-1].n_keep == top_k
    for before, after in itertools.pairwise(plan):
        assert after.n_in == before.n_keep
        assert after.ratio == pytest.approx(min(1.0, before.ratio * eta))
    for rung in plan:
        assert 0 < rung.ratio <= 1.0
        assert top_k <= rung.n_keep < rung.n_in
        assert rung.n_keep == top_k or rung.n_keep == rung.n_in // eta
    if min_ratio is None:
        assert plan[-1].ratio == 1.0


def test_keep_is_best_first_with_ties_by_name_and_failures_last():
    scores = {"b": 0.5, "a": 0.5, "c": 0.9, "d": math.nan, "e": 0.1}
    sha = SuccessiveHalving()
    assert rank(scores) == ["c", "a", "b", "e", "d"]
    assert sha.keep(scores, 2) == ["c", "a"]
    assert sha.keep(scores, 10) == ["c", "a", "b", "e", "d"]
    assert sha.keep(dict(reversed(list(scores.items()))), 3) == ["c", "a", "b"]


def test_no_stopping_trains_everyone_at_full_data_then_takes_top_k():
    policy = NoStopping(eta=2, min_ratio=0.125)  # a stage's options are accepted
    assert policy.plan(7, 3) == [Rung(0, 1.0, 7, 3)]
    assert policy.plan(3, 3) == []
    assert policy.keep({"x": 0.2, "y": 0.3}, 1) == ["y"]
    assert policy.keep({"x": 0.2, "y": 0.3}, 2) == ["y", "x"]


def test_policies_satisfy_the_protocol():
    assert isinstance(SuccessiveHalving(), StoppingPolicy)
    assert isinstance(NoStopping(), StoppingPolicy)


def test_bad_options():
    with pytest.raises(ValueError, match="eta"):
        SuccessiveHalving(eta=1)
    with pytest.raises(ValueError, match="min_ratio"):
        SuccessiveHalving(min_ratio=0.0)
    with pytest.raises(ValueError, match="top_k"):
        SuccessiveHalving().plan(5, 0)


def test_drive_runs_the_plan_and_a_replay_reproduces_it():
    quality = {f"c{i}": i / 10 for i in range(10)}
    calls = []

    def train(candidate, ratio):
        calls.append((candidate, ratio))
        return quality[candidate] * ratio  # more data, better score; order preserved

    policy = SuccessiveHalving(eta=2)
    result = drive(policy, list(quality), 2, train)
    assert result.survivors == ("c9", "c8")
    assert [r.rung for r in result.rungs] == policy.plan(10, 2)
    assert [len(r.candidates) for r in result.rungs] == [10, 5]
    assert len(calls) == 15

    recorded = {(c, r.rung.ratio): s for r in result.rungs for c, s in r.scores.items()}
    replay = drive(policy, list(quality), 2, lambda c, ratio: recorded[(c, ratio)])
    assert replay == result


def test_drive_with_no_decision_to_make_trains_nothing():
    result = drive(SuccessiveHalving(), ["a", "b"], 3, lambda c, r: pytest.fail("trained"))
    assert result.rungs == () and result.survivors == ("a", "b")


def test_drive_rejects_a_policy_that_keeps_too_many():
    class Greedy(NoStopping):
        def keep(self, scores, n_keep):
            return list(scores)

    with pytest.raises(RuntimeError, match="at most"):
        drive(Greedy(), ["a", "b", "c"], 1, lambda c, r: 0.0)
