import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.policies import (
    AsynchronousSuccessiveHalving,
    Hyperband,
    NoStopping,
    Rung,
    RungResult,
    StageResult,
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
    # a harness error (one line at the CLI) that names the policy: its class, or the name and
    # plugin the search registered it under
    from harness.errors import HarnessError
    from harness.policies import PolicyFault

    with pytest.raises(PolicyFault, match=r"stopping policy .*Greedy kept 3") as err:
        drive(Greedy(), ["a", "b", "c"], 1, lambda c, r: 0.0)
    assert isinstance(err.value, HarnessError)
    with pytest.raises(PolicyFault, match=r"'greedy' \(plugin harness-rogue 0.1\) kept 3"):
        drive(Greedy(), ["a", "b", "c"], 1, lambda c, r: 0.0, name="'greedy' (plugin harness-rogue 0.1)")


# -- ASHA and Hyperband: policies that drive themselves ------------------------------------------

SELF_DRIVEN = [AsynchronousSuccessiveHalving, Hyperband]


def budget(result: StageResult) -> float:
    """Data consumed: the sum of the ratios of every recorded trial."""
    return sum(r.rung.ratio * len(r.candidates) for r in result.rungs)


def logged(scores):
    """An evaluate callback over ``scores(candidate, ratio)`` that logs every call."""
    calls = []

    def evaluate(candidate, ratio):
        calls.append((candidate, ratio))
        return scores(candidate, ratio)

    return evaluate, calls


def recorded(result: StageResult) -> list:
    return [(c, r.rung.ratio) for r in result.rungs for c in r.candidates]


def last_scores(result: StageResult) -> dict:
    """Each candidate's score at the highest ratio it was recorded at."""
    out = {}
    for r in sorted(result.rungs, key=lambda r: r.rung.ratio):
        out.update(r.scores)
    return out


# distinct integers: scores stay distinct after float arithmetic, so ties cannot blur "the best"
quality_lists = st.lists(st.integers(0, 1000), min_size=1, max_size=40, unique=True)
policy_options = st.tuples(
    st.sampled_from(SELF_DRIVEN), st.integers(2, 4), st.sampled_from([None, 1 / 27, 0.1, 0.125, 0.5, 1.0])
)


def test_self_driven_policies_satisfy_the_protocol_and_validate_like_sha():
    for cls in SELF_DRIVEN:
        assert isinstance(cls(), StoppingPolicy)
        assert isinstance(cls(eta=3, min_ratio=0.125), StoppingPolicy)  # what a stage passes
        for bad in ({"eta": 1}, {"eta": 2.5}, {"eta": True}, {"min_ratio": 0.0}, {"min_ratio": 2.0},
                    {"max_ratio": 0.0}):
            with pytest.raises(ValueError, match=next(iter(bad))):
                cls(**bad)
        with pytest.raises(ValueError, match="top_k"):
            cls().plan(5, 0)
        with pytest.raises(ValueError, match="top_k"):
            drive(cls(), ["a", "b"], 0, lambda c, r: 0.0)


@pytest.mark.parametrize("cls", SELF_DRIVEN)
def test_with_no_decision_to_make_nobody_trains(cls):
    assert cls().plan(3, 3) == []
    result = drive(cls(), ["b", "a"], 2, lambda c, r: pytest.fail("trained"))
    assert result == StageResult((), ("b", "a"))


@settings(max_examples=60, deadline=None)
@given(policy_options, quality_lists, st.integers(1, 5), st.sets(st.integers(0, 39)), st.data())
def test_every_evaluation_is_recorded_once_and_a_replay_reproduces_the_stage(
    options, quality, top_k, failing, data
):
    cls, eta, min_ratio = options
    policy = cls(eta=eta, min_ratio=min_ratio)
    names = [f"c{i}" for i in range(len(quality))]
    order = data.draw(st.permutations(names))
    noise = iter(data.draw(st.lists(st.floats(-0.05, 0.05), min_size=200, max_size=200)))

    def noisy(candidate, ratio):  # fresh noise on every call: only a replay of records repeats it
        i = int(candidate[1:])
        return math.nan if i in failing else quality[i] * ratio + next(noise)

    evaluate, calls = logged(noisy)
    result = drive(policy, order, top_k, evaluate)

    assert len(calls) == len(set(calls)) == len(recorded(result))  # nobody trains a pair twice
    assert set(calls) == set(recorded(result))
    for r in result.rungs:
        assert list(r.candidates) == [c for c, ratio in calls if ratio == r.rung.ratio and c in r.candidates]
        assert set(r.kept) <= set(r.candidates) and list(r.kept) == rank({c: r.scores[c] for c in r.kept})
    assert len({r.rung.index for r in result.rungs}) == len(result.rungs)
    tried = {c for c, _ in calls}
    if len(order) <= top_k:
        assert result == StageResult((), tuple(order))
        return
    assert set(result.untried) == set(order) - tried  # only Hyperband's brackets leave any
    if cls is AsynchronousSuccessiveHalving:
        assert tried == set(order)
    assert len(result.survivors) == min(top_k, len(tried))
    # every tried candidate that does not survive is dropped somewhere, so a strategy ranks it
    dropped = {c for r in result.rungs for c in r.candidates if c not in r.kept}
    assert tried - set(result.survivors) <= dropped

    scores = {pair: s for r in result.rungs for pair, s in zip(((c, r.rung.ratio) for c in r.candidates),
                                                                (r.scores[c] for c in r.candidates))}
    assert drive(policy, order, top_k, lambda c, ratio: scores[(c, ratio)]) == result


@settings(max_examples=60, deadline=None)
@given(policy_options, quality_lists, st.integers(1, 5), st.sets(st.integers(0, 39), min_size=1), st.data())
def test_failed_candidates_never_survive_over_finite_ones(options, quality, top_k, failing, data):
    cls, eta, min_ratio = options
    names = [f"c{i}" for i in range(len(quality))]
    order = data.draw(st.permutations(names))
    # failures at every ratio, and some candidates that fail only on more data
    fragile = data.draw(st.sets(st.sampled_from(names)))

    def score(candidate, ratio):
        i = int(candidate[1:])
        if i in failing or (candidate in fragile and ratio >= 0.5):
            return math.nan
        return quality[i] + ratio

    result = drive(cls(eta=eta, min_ratio=min_ratio), order, top_k, score)
    if len(order) <= top_k:
        return
    if cls is AsynchronousSuccessiveHalving:  # a failed trial earns no more data
        for lower, upper in itertools.pairwise(result.rungs):
            assert not any(math.isnan(lower.scores[c]) for c in upper.candidates)
    final = last_scores(result)
    n_finite = sum(not math.isnan(s) for s in final.values())
    assert sum(not math.isnan(final[c]) for c in result.survivors) == min(top_k, n_finite)
    if n_finite >= top_k:
        assert not set(result.survivors) & {f"c{i}" for i in failing}


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 4), st.sampled_from([None, 0.125, 0.5]), quality_lists, st.integers(1, 5), st.data())
def test_asha_finds_the_true_best_when_ratios_do_not_reorder(eta, min_ratio, quality, top_k, data):
    order = data.draw(st.permutations(range(len(quality))))
    # more data helps everyone, by a candidate-specific amount that never changes the order
    result = drive(AsynchronousSuccessiveHalving(eta=eta, min_ratio=min_ratio), order, top_k,
                   lambda c, r: quality[c] * (1 + r) + r)
    truth = sorted(range(len(quality)), key=lambda c: -quality[c])[:top_k]
    if len(quality) > top_k:
        assert list(result.survivors) == truth
    else:
        assert set(result.survivors) == set(truth)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.integers(2, 4), st.sampled_from([None, 0.125]), quality_lists, st.integers(1, 5),
       st.data())
def test_asha_with_w_workers_finds_the_true_best_when_ratios_do_not_reorder(workers, eta, min_ratio, quality,
                                                                           top_k, data):
    order = data.draw(st.permutations(range(len(quality))))
    result = drive(AsynchronousSuccessiveHalving(eta=eta, min_ratio=min_ratio, workers=workers), order, top_k,
                   lambda c, r: quality[c] * (1 + r) + r)
    truth = sorted(range(len(quality)), key=lambda c: -quality[c])[:top_k]
    assert set(result.survivors) == set(truth)


def test_asha_with_two_workers_decides_with_one_trial_in_flight():
    """Worked by hand: a, b, c, d at rung 0.5 score 1, 4, 3, 2; eta 2, top-1. One worker: a, b,
    then b is promoted (b@1), then c, d, and c is promoted. Two workers: a and b start before
    any result; job 2 sees only a's result (nothing to promote: start c); job 3 sees a and b
    (promote b); job 4 sees a, b, c (b already promoted: start d); job 5 sees b@1 too, finds
    nothing, and waits for d's result, after which c is in the top half: c@1."""
    first = {"a": 1.0, "b": 4.0, "c": 3.0, "d": 2.0}

    def jobs(workers):
        evaluate, calls = logged(lambda c, r: first[c] if r < 1 else 10 + first[c])
        drive(AsynchronousSuccessiveHalving(eta=2, min_ratio=0.5, workers=workers), "abcd", 1, evaluate)
        return calls

    assert jobs(1) == [("a", 0.5), ("b", 0.5), ("b", 1.0), ("c", 0.5), ("d", 0.5), ("c", 1.0)]
    assert jobs(2) == [("a", 0.5), ("b", 0.5), ("c", 0.5), ("b", 1.0), ("d", 0.5), ("c", 1.0)]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(2, 3), quality_lists, st.integers(1, 3), st.data())
def test_asha_decides_the_same_with_a_batching_executor_and_hands_it_windows_of_w(workers, eta, quality, top_k,
                                                                                data):
    order = data.draw(st.permutations(range(len(quality))))
    policy = AsynchronousSuccessiveHalving(eta=eta, min_ratio=0.125, workers=workers)
    scores = {}

    def evaluate(c, r):
        return scores.setdefault((c, r), quality[c] * (1 + r) + data.draw(st.integers(0, 300)))

    alone = drive(policy, order, top_k, evaluate)
    windows = []
    batched = drive(policy, order, top_k, lambda c, r: scores[(c, r)], prefetch=windows.append)
    assert batched == alone
    if not windows:  # top_k >= candidates: nothing to decide
        return
    first, *later = windows
    assert first == [(c, alone.rungs[0].rung.ratio) for c in order]  # every start, together
    assert all(len(w) <= workers for w in later)  # one job as it is decided, or the window in flight
    if workers == 1:
        assert not later  # sequential: nothing to hand over after the first rung
    trained = {(c, r.rung.ratio) for r in alone.rungs for c in r.candidates}
    assert {p for w in windows for p in w} <= trained  # a job left alone in flight trains alone


def test_asha_workers_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="workers"):
        AsynchronousSuccessiveHalving(workers=0)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 4), st.sampled_from([None, 0.125, 0.5]), quality_lists, st.integers(1, 5))
def test_asha_spends_what_sha_spends_when_candidates_arrive_best_first(eta, min_ratio, quality, top_k):
    order = sorted(range(len(quality)), key=lambda c: -quality[c])  # no partial rung misleads

    def score(c, r):
        return quality[c] + r

    asha = drive(AsynchronousSuccessiveHalving(eta=eta, min_ratio=min_ratio), order, top_k, score)
    sha = drive(SuccessiveHalving(eta=eta, min_ratio=min_ratio), order, top_k, score)
    assert budget(asha) == pytest.approx(budget(sha))
    assert [len(r.candidates) for r in asha.rungs] == [len(r.candidates) for r in sha.rungs]
    assert asha.survivors == sha.survivors


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 4), st.sampled_from([None, 0.125]), quality_lists, st.integers(1, 5), st.data())
def test_asha_stop_early_is_a_prefix_of_the_full_run(eta, min_ratio, quality, top_k, data):
    order = data.draw(st.permutations(range(len(quality))))
    full_eval, full_calls = logged(lambda c, r: quality[c] + r)
    early_eval, early_calls = logged(lambda c, r: quality[c] + r)
    full = drive(AsynchronousSuccessiveHalving(eta, min_ratio), order, top_k, full_eval)
    early = drive(AsynchronousSuccessiveHalving(eta, min_ratio, stop_early=True), order, top_k, early_eval)
    assert early_calls == full_calls[: len(early_calls)]
    assert budget(early) <= budget(full) + 1e-12
    assert len(early.survivors) == min(top_k, len(order))


def test_asha_promotes_from_partial_rungs_and_stop_early_pays_for_it():
    # worst first, eta 2, top-1 of 4: SHA's rungs are 0.5 (4 in) and 1.0 (2 in). ASHA promotes
    # c1 when rung 0 holds {c0, c1}, c2 at 3, c3 at 4: one mispromotion (c1) more than SHA.
    quality = {"c0": 0.0, "c1": 1.0, "c2": 2.0, "c3": 3.0}
    order = list(quality)
    asha = drive(AsynchronousSuccessiveHalving(), order, 1, lambda c, r: quality[c] + r)
    assert [(r.rung.ratio, r.candidates, r.kept) for r in asha.rungs] == [
        (0.5, ("c0", "c1", "c2", "c3"), ("c3", "c2", "c1")),
        (1.0, ("c1", "c2", "c3"), ("c3",)),
    ]
    assert asha.survivors == ("c3",)
    assert budget(asha) == 4 * 0.5 + 3 * 1.0
    # stopping once someone holds the top rung and all have started skips c3's promotion
    early = drive(AsynchronousSuccessiveHalving(stop_early=True), order, 1, lambda c, r: quality[c] + r)
    assert early.survivors == ("c2",) and budget(early) == 4 * 0.5 + 2 * 1.0
    assert budget(drive(SuccessiveHalving(), order, 1, lambda c, r: quality[c] + r)) == 4 * 0.5 + 2 * 1.0


def test_asha_plan_is_sha_plan():
    for n, top_k, eta, min_ratio in [(16, 1, 2, None), (49, 3, 3, None), (12, 1, 2, 0.125), (3, 3, 2, None)]:
        assert (AsynchronousSuccessiveHalving(eta, min_ratio).plan(n, top_k)
                == SuccessiveHalving(eta, min_ratio).plan(n, top_k))


def hyperband_sizes(eta, s_max, pool):
    """Li et al. 2018, Algorithm 1: bracket s starts ceil((s_max+1)/(s+1) eta^s) at R eta^-s."""
    out = []
    for s in range(s_max, -1, -1):
        n = min(pool, math.ceil((s_max + 1) * eta**s / (s + 1)))
        out.append([(eta ** (i - s), max(1, math.floor(n * eta ** (-i)))) for i in range(s + 1)])
    return out


@pytest.mark.parametrize(
    "eta, min_ratio, s_max",
    [(2, None, 2), (3, None, 2), (2, 0.125, 3), (2, 0.1, 3), (3, 1 / 27, 3), (3, 0.5, 0), (4, 1 / 16, 2)],
)
@pytest.mark.parametrize("pool", [200, 5])
def test_hyperband_brackets_have_the_documented_sizes(eta, min_ratio, s_max, pool):
    policy = Hyperband(eta=eta, min_ratio=min_ratio)
    assert policy.s_max == s_max
    expected = hyperband_sizes(eta, s_max, pool)
    planned = [[(r.ratio, r.n_in) for r in b] for b in policy.brackets(pool, 1)]
    assert planned == [[(pytest.approx(ratio), n) for ratio, n in b] for b in expected]
    plan = policy.plan(pool, 1)
    assert [r.index for r in plan] == list(range(len(plan)))

    names = [f"c{i:03d}" for i in range(pool)]
    evaluate, calls = logged(lambda c, r: int(c[1:]) + r)
    result = drive(policy, names, 1, evaluate)
    assert [r.rung for r in result.rungs] == plan
    # each bracket's first rung draws n_s candidates; the least used first, so brackets cover
    # the pool before any candidate is drawn twice
    draws = sum(b[0][1] for b in expected)
    assert len({c for c, _ in calls}) == min(pool, draws)
    assert len(result.untried) == pool - min(pool, draws)


def test_hyperband_draws_the_least_used_first_and_records_a_repeat_once():
    # eta 2, s_max 2: brackets of 4 (0.25, 0.5, 1), 3 (0.5, 1) and 3 (1) over a pool of 5
    quality = {"a": 5, "b": 1, "c": 2, "d": 3, "e": 4}
    evaluate, calls = logged(lambda c, r: quality[c] + r)
    result = drive(Hyperband(), list(quality), 2, evaluate)
    by_index = {r.rung.index: r for r in result.rungs}
    assert by_index[0].candidates == ("a", "b", "c", "d")  # bracket 2 takes input order
    assert by_index[0].kept == ("a", "d") and by_index[1].kept == ("a",)
    # bracket 1 draws e (unused), then a, b (used once; input order). (a, 0.5) is known from
    # bracket 2, so it is neither trained nor recorded again, yet a still wins the rung
    assert by_index[3].candidates == ("e", "b") and by_index[3].rung.n_in == 3
    assert by_index[3].kept == () and by_index[4].candidates == ()
    # bracket 0 draws c, d, e (used once) at r = 1; e survives there, a where it was first scored
    assert by_index[5].candidates == ("c", "d", "e") and by_index[5].kept == ("e",)
    assert by_index[2].candidates == ("a",) and by_index[2].kept == ("a",)
    assert len(calls) == len(set(calls))
    assert result.survivors == ("a", "e")  # the best two scored at r = 1
    assert result.untried == ()


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 3), st.sampled_from([None, 0.125]), quality_lists, st.data())
def test_hyperband_finds_the_best_when_its_largest_bracket_holds_the_pool(eta, min_ratio, quality, data):
    policy = Hyperband(eta=eta, min_ratio=min_ratio)
    first = policy.brackets(10**6, 1)[0][0].n_in
    quality = quality[:first]
    order = data.draw(st.permutations(range(len(quality))))
    result = drive(policy, order, 1, lambda c, r: quality[c] * (1 + r) + r)
    assert result.survivors == (max(range(len(quality)), key=quality.__getitem__),)


def test_drive_rejects_a_self_driven_policy_that_does_not_record_its_trials():
    class Forgetful(AsynchronousSuccessiveHalving):
        def drive(self, candidates, top_k, evaluate):
            result = super().drive(candidates, top_k, evaluate)
            return StageResult(result.rungs[:-1], result.survivors)

    class Repeating(AsynchronousSuccessiveHalving):
        def drive(self, candidates, top_k, evaluate):
            result = super().drive(candidates, top_k, evaluate)
            first = result.rungs[0]
            again = RungResult(first.rung._replace(index=99), first.candidates, first.scores, first.kept)
            return StageResult(result.rungs + (again,), result.survivors)

    quality = {c: i for i, c in enumerate("abcdef")}
    with pytest.raises(RuntimeError, match="recorded"):
        drive(Forgetful(), list(quality), 1, lambda c, r: quality[c] + r)
    with pytest.raises(RuntimeError, match="twice"):
        drive(Repeating(), list(quality), 1, lambda c, r: quality[c] + r)


# -- noise-aware cuts -------------------------------------------------------------------------------

noisy_scores = st.dictionaries(st.sampled_from([f"c{i:02d}" for i in range(24)]),
                               st.floats(0, 1, allow_nan=False), min_size=2, max_size=24)


@settings(max_examples=200, deadline=None)
@given(noisy_scores, st.integers(1, 23), st.floats(0, 3), st.floats(0.01, 1))
def test_with_no_noise_the_noise_aware_cut_is_the_plain_one(scores, n_keep, tie_z, frac):
    sha = SuccessiveHalving(eta=2, tie_z=tie_z, uninformative=frac)
    zero = {c: 0.0 for c in scores}
    n_keep = min(n_keep, len(scores))
    assert sha.keep(scores, n_keep, errors=zero, baseline=None) == SuccessiveHalving().keep(scores, n_keep)
    assert sha.keep(scores, n_keep) == SuccessiveHalving().keep(scores, n_keep)  # no errors given


@settings(max_examples=200, deadline=None)
@given(noisy_scores, st.integers(1, 23), st.floats(0.5, 3), st.floats(0.001, 0.05))
def test_a_tie_at_the_cut_keeps_every_tied_candidate(scores, n_keep, tie_z, se):
    n_keep = min(n_keep, len(scores))
    errors = {c: se for c in scores}
    kept = SuccessiveHalving(tie_z=tie_z).keep(scores, n_keep, errors=errors, baseline=None)
    plain = rank(scores)[:n_keep]
    assert kept[:n_keep] == plain  # the plain cut, best first, then the tied ones
    last = scores[plain[-1]]
    band = tie_z * math.hypot(se, se)
    assert set(kept) == set(plain) | {c for c in scores if last - scores[c] <= band}
    # the stage's last cut never widens: it must return n_keep
    assert SuccessiveHalving(tie_z=tie_z).keep(scores, n_keep, errors=errors, final=True) == plain


def test_an_uninformative_rung_promotes_everyone_and_says_why():
    # 8 of 10 candidates at the constant-answer score 0.111 (within 2 SE), two above it
    scores = {f"c{i}": 0.111 for i in range(8)} | {"good": 0.30, "ok": 0.20}
    errors = {c: 0.01 for c in scores}
    sha = SuccessiveHalving(uninformative=0.5)
    assert sha.keep(scores, 3, errors=errors, baseline=0.111) == ["good", "ok"] + [f"c{i}" for i in range(8)]
    assert "uninformative: 8 of 10" in sha.why(scores, 3, errors=errors, baseline=0.111)
    # most above baseline: an ordinary cut
    lively = {c: (0.4 + i / 100 if c.startswith("c") else s) for i, (c, s) in enumerate(scores.items())}
    assert len(sha.keep(lively, 3, errors=errors, baseline=0.111)) == 3


def test_drive_lets_a_noise_aware_policy_keep_more_but_never_past_top_k():
    quality = {f"c{i}": 0.5 + (i // 2) * 0.001 for i in range(16)}  # pairs tied within noise
    sha = SuccessiveHalving(eta=2, min_ratio=0.125, tie_z=2)
    plain = drive(SuccessiveHalving(eta=2, min_ratio=0.125), list(quality), 2, lambda c, r: quality[c])
    noisy = drive(sha, list(quality), 2, lambda c, r: quality[c], errors=lambda c, r: 0.01, baseline=0.1)
    assert len(noisy.rungs[0].kept) > plain.rungs[0].rung.n_keep and noisy.rungs[0].why
    assert len(noisy.survivors) == 2 and noisy.rungs[-1].why == ""
    assert [len(r.kept) for r in plain.rungs] == [r.rung.n_keep for r in plain.rungs]


@pytest.mark.parametrize("policy", [SuccessiveHalving(eta=2, min_ratio=0.125),
                                    AsynchronousSuccessiveHalving(eta=2, min_ratio=0.125),
                                    AsynchronousSuccessiveHalving(eta=2, min_ratio=0.125, stop_early=True)])
def test_prefetched_batches_change_nothing_and_are_all_evaluated(policy):
    """drive hands an executor batches (each SHA rung; ASHA's first rung) that the policy then
    evaluates in full, and decides exactly as without them."""
    candidates = [f"c{i}" for i in range(9)]

    def evaluate(c, ratio):
        return (int(c[1:]) * 7 % 9) / 10 + ratio

    asked, evaluated = [], []

    def tracking(c, ratio):
        evaluated.append((c, ratio))
        return evaluate(c, ratio)

    plain = drive(policy, candidates, 2, evaluate)
    batched = drive(policy, candidates, 2, tracking, prefetch=asked.append)
    assert batched == plain and asked
    for batch in asked:  # nothing prefetched that the policy would not have evaluated
        assert len(batch) > 1 and set(batch) <= set(evaluated)
    if isinstance(policy, SuccessiveHalving):
        assert [len(b) for b in asked] == [r.n_in for r in policy.plan(9, 2)]
