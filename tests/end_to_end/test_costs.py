"""One cost model: a search costs the same whatever the store already held (reused trials,
features and warm-ups at their original price); new compute is reported apart."""

import json

import pytest
from helpers import fetch, harness, invoke, last_run, search_suite

COST = "select samples, trial_samples, phase_samples, seconds, flops, eval_items, forward_passes," \
       " new_samples, new_seconds, trials, trials_trained from run_costs where run_id = ?"


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    """A Mordal search run twice in one store, and a grid of the same zoo: (store, first, second,
    grid). Both searches run in their own process, as a user's runs do: a run's seconds include
    loading its components and libraries, which a process that already did it would skip (the
    session's shared search runs in-process, so it cannot be one of the two)."""
    from conftest import SHARED_SEARCH

    folder = tmp_path_factory.mktemp("costs")
    store = folder / "s.duckdb"
    suite = search_suite(folder, **SHARED_SEARCH)
    runs = []
    for _ in range(2):
        out = harness("run", suite, "--store", store)
        assert out.returncode == 0, out.stderr
        runs.append(last_run(store)[0])
    assert "cost had nothing been stored" in out.stdout and "new compute this run: 0 samples" in out.stdout
    grid = search_suite(folder, "grid.yaml", **SHARED_SEARCH, **{"search.strategy": "grid"})
    assert invoke("run", grid, "--store", store).returncode == 0
    return store, runs[0], runs[1], last_run(store)[0]


def test_a_search_costs_the_same_the_second_time_and_computes_nothing_new(twice):
    store, first, second, _ = twice
    a = dict(zip(COST.split("select ")[1].split(" from")[0].replace(" ", "").split(","),
                 fetch(store, COST, [first], one=True)))
    b = dict(zip(a, fetch(store, COST, [second], one=True)))
    assert a["phase_samples"] > 0  # the warm-ups are charged
    for key in ("samples", "trial_samples", "phase_samples", "flops", "eval_items", "forward_passes",
                "trials"):
        assert a[key] == b[key], key
    assert b["seconds"] == pytest.approx(a["seconds"], rel=0.25)  # original prices, plus tiny lookups
    assert a["new_samples"] == a["samples"] and a["trials_trained"] == a["trials"]
    assert b["new_samples"] == 0 and b["trials_trained"] == 0
    assert b["new_seconds"] < a["new_seconds"]


def test_compare_charges_the_warm_ups(twice):
    store, first, second, grid = twice
    for run in (first, second):
        out = invoke("compare", run, grid, "--store", store, "--json")
        assert out.returncode == 0, out.stderr
        row = json.loads(out.stdout.splitlines()[0])
        trials = fetch(store, "select trial_samples, phase_samples from run_costs where run_id = ?",
                       [run], one=True)
        assert row["search_warmup_samples"] == trials[1] > 0
        assert row["search_samples"] == trials[0] + trials[1]  # fails if warm-ups are dropped
        assert row["speedup_samples"] == round(row["grid_samples"] / row["search_samples"], 3)
        assert row["speedup_flops"] is not None and row["speedup_flops"] > 0
        assert any(p.startswith("cluster-llms") for p in row["search_phases"])
    text = invoke("compare", second, grid, "--store", store).stdout
    assert "cost had nothing been stored" in text and "new compute this run" in text


def test_failed_trials_are_charged(tmp_path):
    store = tmp_path / "s.duckdb"
    # lr so large the loss goes NaN: every trial fails, and every one is still paid for
    grid = search_suite(tmp_path, "grid.yaml", **{"search.strategy": "grid", "vlm.optim.lr": 1e30,
                                                 "zoo.vision_encoders": ["tiny:vit-p4"]})
    invoke("run", grid, "--store", store)
    run_id = last_run(store)[0]
    failed, charged = fetch(store, "select trials_failed, seconds from run_costs where run_id = ?",
                            [run_id], one=True)
    n = fetch(store, "select count(*) from trials where status = 'failed'", one=True)[0]
    assert n > 0 and failed == n and charged > 0


def test_a_grid_over_a_larger_zoo_is_judged_and_charged_over_the_searchs_candidates(twice, tmp_path):
    """A shipped table's grid covers the whole zoo; a suite searching part of it is compared
    with the grid of its own candidates: cost and top-1 over those only."""
    store, _, _, grid = twice
    sub = search_suite(tmp_path, "sub.yaml", **{"zoo.vision_encoders": ["tiny:vit-p4", "tiny:resnet"],
                                              "search.clustering.warmup_steps": 2})
    assert invoke("run", sub, "--store", store).returncode == 0
    run = last_run(store)[0]
    row = json.loads(invoke("compare", run, grid, "--store", store, "--json").stdout.splitlines()[0])
    own = fetch(store, """
        select count(*), sum(t.samples_seen) from run_uses u join trials t on t.trial_key = u.key
        where u.run_id = ? and u.kind = 'trial' and t.encoder in ('tiny:vit-p4', 'tiny:resnet')""",
                [grid], one=True)
    everything = fetch(store, "select trials, samples from run_costs where run_id = ?", [grid], one=True)
    assert row["grid_candidates"] == own[0] == 4 and everything[0] == 6
    assert row["grid_trials"] == 4 and row["grid_samples"] == own[1] < everything[1]
    best = fetch(store, """
        select encoder, llm from rankings where run_id = ? and encoder in ('tiny:vit-p4', 'tiny:resnet')
        order by score desc, encoder, llm limit 1""", [grid], one=True)
    assert row["grid_best"] == list(best)
