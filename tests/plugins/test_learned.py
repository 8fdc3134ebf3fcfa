"""strategy: learned (issue 33): the surrogate, the cost-aware loop, history without leaks, and a
live run that its replay decides exactly as."""

import math

import numpy as np
import pytest
from helpers import decisions, fetch, invoke, last_run, search_suite, trials_of

from harness.plugins.strategies.learned import LearnedCore
from harness.surrogate import Hyper, Surrogate, fit_hyperparameters, history_prior


def additive_grid(seed, n_enc=6, n_llm=5, s_enc=0.1, s_llm=0.06, s_pair=0.02):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, s_enc, n_enc), rng.normal(0, s_llm, n_llm)
    return {(f"e{i}", f"l{j}"): 0.5 + a[i] + b[j] + rng.normal(0, s_pair)
            for i in range(n_enc) for j in range(n_llm)}


def test_the_surrogate_recovers_the_best_of_an_additive_grid_with_calibrated_intervals():
    """Every candidate measured once with noise: pooling through the encoder and LLM effects
    picks better than the raw scores do, and the 95% intervals cover the true scores about 95%
    of the time (measured over 30 grids)."""
    hits, raw_hits, covered, total = 0, 0, 0, 0
    for seed in range(30):
        truth = additive_grid(seed)
        rng = np.random.default_rng(100 + seed)
        s = Surrogate(list(truth), Hyper(mean=0.5, s_mean=0.1, s_enc=0.1, s_llm=0.06, s_pair=0.02))
        measured = {c: v + rng.normal(0, 0.03) for c, v in truth.items()}
        for c, v in measured.items():
            s.observe(c, 1.0, v, 0.03)
        mean, sd = s.mean_sd()
        cands = list(truth)
        hits += cands[int(np.argmax(mean))] == max(truth, key=truth.get)
        raw_hits += max(measured, key=measured.get) == max(truth, key=truth.get)
        for k, c in enumerate(cands):
            covered += abs(truth[c] - mean[k]) <= 1.96 * sd[k]
            total += 1
    assert hits > raw_hits and hits >= 15, (hits, raw_hits)  # noise 0.03 > pair effects 0.02
    assert 0.88 <= covered / total <= 0.99, covered / total


def test_main_effects_let_one_measurement_inform_every_pair_sharing_a_component():
    cands = [(e, l) for e in ("e0", "e1") for l in ("l0", "l1", "l2")]
    s = Surrogate(cands, Hyper(s_enc=0.1, s_llm=0.1, s_pair=0.01))
    before = s.mean_sd()[1]
    s.observe(("e0", "l0"), 1.0, 0.9, 0.01)
    mean, after = s.mean_sd()
    i = {c: k for k, c in enumerate(cands)}
    assert after[i[("e0", "l1")]] < before[i[("e0", "l1")]]  # shares the encoder
    assert mean[i[("e0", "l1")]] > mean[i[("e1", "l1")]]  # the good encoder lifts its other pairs


def test_low_ratios_are_worth_what_history_says_they_tell():
    """The cost-aware choice follows rho: where small ratios track full-data scores (rho 1) the
    first trial is cheap; where they sit at a floor (rho ~ 0) it trains a full-data trial."""
    cands = [(f"e{i}", f"l{j}") for i in range(4) for j in range(3)]
    ratios = (0.0625, 0.25, 1.0)
    tracking = Hyper(rho={0.0625: 1.0, 0.25: 1.0}, d_enc={0.0625: 0.01, 0.25: 0.01},
                     d_llm={0.0625: 0.01, 0.25: 0.01}, d_pair={0.0625: 0.01, 0.25: 0.01})
    floored = Hyper(rho={0.0625: 0.02, 0.25: 0.05}, d_enc={0.0625: 0.05, 0.25: 0.05},
                    d_llm={0.0625: 0.05, 0.25: 0.05}, d_pair={0.0625: 0.05, 0.25: 0.05})
    assert LearnedCore(cands, ratios=ratios, hyper=tracking).choose()[1] == 0.0625
    assert LearnedCore(cands, ratios=ratios, hyper=floored).choose()[1] == 1.0


def test_a_task_whose_low_ratio_sits_at_the_floor_overrules_historys_rho():
    """History says 1/16 tracks full data (rho 0.6); on this task four 1/16 scores are all the
    constant-answer floor. The data make rho 0 more likely, so the search takes 1/16 for what it
    is here (nothing) and trains at r = 1 next; where 1/16 scores do vary with the truth,
    history's rho stays and 1/16 stays worth its price."""
    truth = additive_grid(5, 4, 3)
    cands = list(truth)
    hyper = Hyper(mean=0.5, s_mean=0.1, s_enc=0.1, s_llm=0.06, s_pair=0.02, rho={0.0625: 0.6},
                  d_enc={0.0625: 0.01}, d_llm={0.0625: 0.01}, d_pair={0.0625: 0.01})
    for low, rho, ratio in ((lambda c: 0.13, 0.0, 1.0), (lambda c: 0.3 + 0.6 * truth[c], 0.6, 0.0625)):
        core = LearnedCore(cands, ratios=(0.0625, 1.0), hyper=hyper, confidence=0.999, budget=12, seed=0)
        assert core.choose()[1] == 0.0625  # before any data: history's word
        for c in cands[:4]:
            core.spent += 0.0625
            core.steps.append(core._take(c, 0.0625, low(c)))
        assert core.surrogate.hyper.rho[0.0625] == rho
        assert core.choose()[1] == ratio


def _world(seed):
    truth = additive_grid(seed, 5, 4)
    rng = np.random.default_rng(seed)
    return truth, {(c, r): v * (0.5 + 0.5 * r) + rng.normal(0, 0.01) for c, v in truth.items()
                   for r in (0.0625, 0.25, 1.0)}


def test_the_loop_is_deterministic_stops_at_its_budget_and_never_retrains():
    truth, world = _world(3)
    runs = []
    for _ in range(2):
        core = LearnedCore(list(truth), ratios=(0.0625, 0.25, 1.0), confidence=0.999, budget=4.0, seed=7)
        seen = []

        def observe(c, r, seen=seen):
            seen.append((c, r))
            return world[(c, r)]

        result = core.run(observe)
        runs.append((seen, result.order, result.stopped))
        assert result.spent <= 4.0 + 1e-9 and len(set(seen)) == len(seen)
        assert result.stopped in ("budget", "confidence")
    assert runs[0] == runs[1]


@pytest.mark.parametrize("acquisition", ["info", "kg", "ei", "thompson"])
def test_every_acquisition_function_is_deterministic_and_finds_a_good_candidate(acquisition):
    truth, world = _world(4)
    picks = []
    for _ in range(2):
        core = LearnedCore(list(truth), ratios=(0.0625, 0.25, 1.0), confidence=0.999, budget=6.0, seed=2,
                           acquisition=acquisition)
        seen = []
        result = core.run(lambda c, r, seen=seen: seen.append((c, r)) or world[(c, r)])
        assert result.spent <= 6.0 + 1e-9 and len(set(seen)) == len(seen)
        picks.append((seen, result.order))
    assert picks[0] == picks[1]
    best, worst = max(truth.values()), min(truth.values())
    assert (best - truth[picks[0][1][0]]) / (best - worst) < 0.25  # 6 of 20 full-data trials' worth


def test_workers_keep_w_trials_in_flight_and_decide_from_the_scores_alone():
    """ASHA-style asynchrony: W trials in flight, the next chosen when the oldest returns,
    results taken in the order chosen; W = 1 is the sequential search."""
    truth, world = _world(6)
    cands = list(truth)

    def search(workers):
        core = LearnedCore(cands, ratios=(0.0625, 0.25, 1.0), confidence=0.999, budget=5.0, seed=1,
                           workers=workers)
        windows, seen = [], []
        result = core.run(lambda c, r: seen.append((c, r)) or world[(c, r)], dispatch=lambda w: windows.append(list(w)))
        return result, windows, seen

    _, w1, seen1 = search(1)
    assert all(len(w) == 1 for w in w1) and [w[0] for w in w1] == seen1
    plain = LearnedCore(cands, ratios=(0.0625, 0.25, 1.0), confidence=0.999, budget=5.0, seed=1)
    assert [(s.candidate, s.ratio) for s in plain.run(lambda c, r: world[(c, r)]).steps] == seen1
    three, w3, seen3 = search(3)
    assert max(len(w) for w in w3) == 3 and all(len(w) <= 3 for w in w3)
    assert [w[0] for w in w3] == seen3  # the oldest in flight is the one waited for
    assert len(set(seen3)) == len(seen3) and three.spent <= 5.0 + 1e-9
    # no trial is chosen while one of the same candidate at that ratio or above is in flight
    for w in w3:
        for i, (c, r) in enumerate(w):
            assert not any(c == c2 and r <= r2 for c2, r2 in w[:i])
    assert search(3)[2] == seen3  # the same scores, the same decisions


def test_the_loop_stops_once_confident():
    truth, world = _world(5)
    core = LearnedCore(list(truth), ratios=(1.0,), confidence=0.6, seed=0, n_items=100_000)
    result = core.run(lambda c, r: world[(c, r)])
    assert result.stopped == "confidence" and result.p_best.max() >= 0.6
    assert result.spent < len(truth)  # it did not need the grid
    best = max(truth.values())
    assert best - truth[result.order[0]] < 0.05  # confident at 0.6: the best or a near-tie


def test_history_prior_and_hyperparameters_come_from_other_tasks_only():
    a, b = additive_grid(1), additive_grid(2)
    prior = history_prior({"t1": a, "t2": b})
    assert set(prior) == set(a) and abs(np.mean(list(prior.values()))) < 1e-9
    hyper = fit_hyperparameters({"t1": a, "t2": b})
    assert hyper.s_enc > hyper.s_pair and 0 < hyper.mean < 1 and hyper.hist_weight != 0


def test_the_anytime_benchmark_history_never_holds_the_held_out_task():
    """A test that fails if history leaks: every case's history is built without its task, and
    run_case refuses a history that holds it."""
    from benchmarks.anytime import history_for, run_case

    cands = [(f"e{i}", f"l{j}") for i in range(3) for j in range(2)]
    world = {}
    for t in ("a", "b", "c"):
        for seed in (0, 1):
            world[(t, seed)] = {(e, l, r): 0.1 + 0.1 * int(e[1]) + 0.01 * seed + 0.05 * r
                                for (e, l) in cands for r in (0.0625, 0.125, 0.25, 0.5, 1.0)}
    hist = history_for(world, "a", cands, tasks=("a", "b", "c"))
    assert set(hist["full"]) == {"b", "c"} and set(hist["low"]) == {"b", "c"}
    leaky = history_for(world, "b", cands, tasks=("a", "b", "c"))  # holds "a"
    with pytest.raises(AssertionError, match="leaks"):
        run_case(world, "a", 0, cands, ["oracle"], hist=leaky)


LEARNED = {"search.strategy": "learned",
           "search.options": {"confidence": 0.95, "budget": 0.5, "ratios": [0.5, 1.0]}}


@pytest.mark.long
def test_a_live_learned_run_and_its_replay_decide_the_same(tmp_path):
    store = tmp_path / "s.duckdb"
    suite = search_suite(tmp_path, **LEARNED)
    live = invoke("run", suite, "--store", store)
    assert live.returncode == 0, live.stderr
    assert "learned: no history; the prior is flat" in live.stderr
    live_run, status = last_run(store)
    assert status == "done"
    made = fetch(store, "select count(*), sum(sample_ratio) from search_steps where run_id = ?",
                 [live_run], one=True)
    assert made[0] >= 1 and made[1] <= 0.5 * 6 + 1e-9  # within the budget: half the grid's samples
    # what it believed of each candidate before this task's data and after: one row each
    beliefs = fetch(store, "select count(*), count(distinct prior_rank), min(prior_rank), max(posterior_rank), "
                    "count(own_score), sum(p_best) from search_prior where run_id = ?", [live_run], one=True)
    assert beliefs[:4] == (6, 6, 1, 6) and 1 <= beliefs[4] <= 6 and abs(beliefs[5] - 1) < 1e-6
    top = fetch(store, "select encoder, llm from search_prior where run_id = ? and posterior_rank = 1", [live_run])
    assert top == fetch(store, "select encoder, llm from rankings where run_id = ? and rank = 1", [live_run])
    out = invoke("replay", "--from", live_run, "--suite", suite, "--store", store)
    assert out.returncode == 0, out.stderr
    replay_run = last_run(store)[0]
    assert trials_of(store, replay_run)[0] == 0
    a, b = decisions(store, live_run), decisions(store, replay_run)
    steps = "select step, encoder, llm, sample_ratio, score, spent, pick_encoder, pick_llm from search_steps" \
            " where run_id = ? order by step"
    assert a["rankings"] and a == b and fetch(store, steps, [live_run]) == fetch(store, steps, [replay_run])
    # a target named as history is refused: the search would see the task it searches
    bad = search_suite(tmp_path, name="bad.yaml", **{**LEARNED, "search.options": {
        "history": {"tasks": ["shapes:color"]}}})
    runs = fetch(store, "select count(*) from runs", one=True)
    refused = invoke("run", bad, "--store", store)
    assert refused.returncode == 2 and "history must not hold the task being searched" in refused.stderr
    assert "search.options" in refused.stderr and "bad.yaml" in refused.stderr  # where, in which file
    assert fetch(store, "select count(*) from runs", one=True) == runs  # refused before a run starts
    assert invoke("validate", bad).returncode == 2
    # the store's trials are free for a second search with the same recipe: scored first, not
    # charged to its budget
    again = invoke("run", suite, "--store", store)
    assert again.returncode == 0, again.stderr
    assert "scored first" in again.stderr
    free, charged = fetch(store, "select count(*) filter (where free), coalesce(sum(sample_ratio) filter "
                          "(where not free), 0) from search_steps where run_id = ?", [last_run(store)[0]], one=True)
    assert free >= made[0] and charged <= 0.5 * 6 + 1e-9
    assert not math.isnan(fetch(store, "select score from rankings where run_id = ? and rank = 1",
                                [last_run(store)[0]], one=True)[0])


def test_hyperparameters_do_not_depend_on_the_order_history_arrives_in():
    """Same store, same decisions: a history read in another row order (or under another hash
    seed) gives the same model, to the last bit."""
    a, b, c = additive_grid(1), additive_grid(2), additive_grid(3)
    forward = fit_hyperparameters({"t1": a, "t2": b, "t3": c})
    shuffled = {t: dict(reversed(list(v.items()))) for t, v in (("t3", c), ("t1", a), ("t2", b))}
    assert fit_hyperparameters(shuffled) == forward
    assert history_prior(shuffled) == history_prior({"t1": a, "t2": b, "t3": c})


def test_history_that_runs_against_itself_is_ignored_never_read_backwards():
    """Two history tasks whose scores are mirror images: the leave-one-out slope is negative;
    the prior's weight is 0 (a flat prior), so history's worst is never the prior's pick."""
    a = additive_grid(8)
    b = {c: 1.0 - v for c, v in a.items()}
    hyper = fit_hyperparameters({"t1": a, "t2": b})
    assert hyper.hist_weight == 0.0
    model = Surrogate(list(a), hyper, history_prior({"t1": a, "t2": b}))
    assert np.ptp(model.m0) == 0.0
    same = fit_hyperparameters({"t1": a, "t2": {c: v + 0.01 for c, v in a.items()}})
    assert same.hist_weight > 0  # history that agrees with itself does count


def test_a_tolerance_counts_candidates_tied_within_noise_as_one():
    """confidence is P(the pick is the best or within tolerance of it): with two near-twins at
    the top, P(best) stays near 1/2 however much is measured, P(within noise) does not."""
    cands = [(f"e{i}", f"l{j}") for i in range(3) for j in range(3)]
    truth = {c: 0.3 + 0.1 * (c[0] == "e0") + 0.05 * (c[1] == "l0") for c in cands}
    truth[("e0", "l1")] = truth[("e0", "l0")] - 0.002  # a twin of the best, within noise
    model = Surrogate(cands)
    for c, v in truth.items():
        model.observe(c, 1.0, v, 0.01)
    p = model.p_best(2000, seed=1)
    assert np.array_equal(model.p_within(0.0, 2000, seed=1), p)
    wide = model.p_within(0.03, 2000, seed=1)
    assert (wide >= p).all() and wide.sum() > 1.0
    i, j = model.index[("e0", "l0")], model.index[("e0", "l1")]
    assert p[i] < 0.8 and wide[i] > 0.9 and wide[j] > 0.9

    def search(tolerance):
        core = LearnedCore(cands, ratios=(1.0,), confidence=0.9, seed=0, n_items=2000, tolerance=tolerance)
        return core.run(lambda c, r: truth[c])

    literal, tied = search(0.0), search(0.03)
    assert tied.stopped == "confidence" and tied.p_within >= 0.9 and tied.tolerance == 0.03
    assert tied.spent < literal.spent  # the literal rule trains on to split the twins
    assert tied.order[0] in (("e0", "l0"), ("e0", "l1"))
    auto = search(None)  # auto: the SE of a difference of two scores at the pick's level
    assert abs(auto.tolerance - math.sqrt(2 * 0.45 * 0.55 / 2000)) < 0.005


@pytest.mark.long
def test_a_multi_target_suite_gets_the_best_of_each_target_sharing_every_trial(tmp_path):
    store = tmp_path / "s.duckdb"
    suite = search_suite(tmp_path, **{**LEARNED, "targets": [{"task": "shapes:color", "limit": 8},
                                                            {"task": "shapes:shape", "limit": 8}],
                                      "search.options": {**LEARNED["search.options"], "per_target": True}})
    out = invoke("run", suite, "--store", store)
    assert out.returncode == 0, out.stderr
    run_id = last_run(store)[0]
    tasks = fetch(store, "select task, count(*) from rankings where run_id = ? group by task order by task", [run_id])
    assert tasks == [("mean(shapes:color,shapes:shape)", 6), ("shapes:color", 6), ("shapes:shape", 6)]
    for task in ("shapes:color", "shapes:shape"):
        pick = fetch(store, "select encoder, llm, score, measured_or_predicted, trial_key from rankings "
                     "where run_id = ? and task = ? and rank = 1", [run_id, task], one=True)
        assert f"best on {task}: {pick[0]} + {pick[1]}" in out.stdout + out.stderr
        if pick[3] == "measured":  # its score is its trial's score on this target, not the mean
            assert fetch(store, "select value from scores where trial_key = ? and task = ?", [pick[4], task],
                         one=True)[0] == pick[2]
        # every trial of the mean's search was scored on the target first, free
        main = fetch(store, "select count(*) from search_steps where run_id = ? and task like 'mean(%'",
                     [run_id], one=True)[0]
        free = fetch(store, "select count(*) from search_steps where run_id = ? and task = ? and free",
                     [run_id, task], one=True)[0]
        assert free >= main > 0
        assert fetch(store, "select count(*) from search_prior where run_id = ? and task = ?", [run_id, task],
                     one=True)[0] == 6
    # a trial trains once however many searches use it
    steps = fetch(store, "select count(*), count(distinct (encoder, llm, sample_ratio)) from search_steps "
                  "where run_id = ? and not free", [run_id], one=True)
    assert steps[0] == steps[1] == trials_of(store, run_id)[0]
    # one budget for the run (half the grid's samples): the per-target searches share it
    assert fetch(store, "select sum(sample_ratio) from search_steps where run_id = ? and not free", [run_id],
                 one=True)[0] <= 0.5 * 6 + 1e-9
    replay = invoke("replay", "--from", run_id, "--suite", suite, "--store", store)
    assert replay.returncode == 0, replay.stderr
    assert decisions(store, run_id) == decisions(store, last_run(store)[0])


def _tiny_world():
    cands = [(f"e{i}", f"l{j}") for i in range(3) for j in range(2)]
    world = {}
    for k, t in enumerate(("a", "b", "c")):
        for seed in (0, 1):
            # task a's best is e0's pair, the others' e2's: history ranks a's best last
            world[(t, seed)] = {(e, l, r): 0.1 + 0.1 * (int(e[1]) if t != "a" else 2 - int(e[1])) + 0.02 * int(l[1])
                                + 0.01 * seed + 0.05 * r for (e, l) in cands for r in (0.0625, 0.125, 0.25, 0.5, 1.0)}
    return cands, world


def test_the_benchmark_names_what_limits_a_search_and_the_frontier(capsys):
    """The limits table reads the table: where history's prior ranks each task's best (near the
    bottom for a task that runs against history), how low ratios track r = 1, the variance split and the
    same-seed grid; the frontier names the best strategy at each budget."""
    from benchmarks import anytime

    cands, world = _tiny_world()
    anytime.limits(world, cands)
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["a"], ["b"], ["c"])}
    assert rows["a"][1] == "5" and rows["b"][1] == "1"  # a's best (e0, l1): history ranks e0 last, l1 first
    assert rows["b"][2] == "1.00"  # every low ratio ranks exactly as r = 1 here
    cases = [anytime.run_case(world, t, s, cands, ["oracle", "portfolio (history)"]) for t in "abc" for s in (0, 1)]
    anytime.frontier(cases, ["oracle", "portfolio (history)"], lambda c: len(c["truth"]), "tiny")
    out = capsys.readouterr().out
    assert "(portfolio (history))" in out and "oracle)" not in out


def test_searches_sharing_a_store_train_a_shared_trial_once():
    from benchmarks.anytime import shared_store_cost

    runs = [({"t1": 10, "t2": 20}, 5, 100), ({"t2": 20, "t3": 40}, 5, 100)]
    assert shared_store_cost(runs) == (10 + 20 + 40 + 5) / 100
