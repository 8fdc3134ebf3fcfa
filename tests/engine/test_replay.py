"""Replay: a strategy re-driven from stored trials trains nothing and decides exactly as live."""

import duckdb
from helpers import decisions, fetch, invoke, last_run, search_suite, trials_of


def test_replaying_a_live_mordal_run_makes_exactly_the_same_decisions(searched):
    store, suite, live_run, _, _ = searched  # a live Mordal run that trained every trial it used
    trained, reused = trials_of(store, live_run)
    assert trained > 0 and reused == 0

    out = invoke("replay", "--from", live_run, "--suite", suite, "--store", store)
    assert out.returncode == 0, out.stderr
    replay_run, status = last_run(store)
    assert status == "done" and replay_run != live_run
    assert trials_of(store, replay_run) == (0, trained)  # nothing trained, every trial looked up
    assert "replay cost:" in out.stdout and "0 filled" in out.stdout
    a, b = decisions(store, live_run), decisions(store, replay_run)
    assert a["rungs"] and a["rankings"] and a["clusters"] and a["predictions"]
    assert a == b
    config = fetch(store, "select config from runs where run_id = ?", [replay_run], one=True)[0]
    assert live_run in config and '"fill": false' in config


def test_replay_computes_missing_embeddings_only_when_asked_and_still_trains_nothing(searched):
    store, suite, live_run, _, _ = searched
    trained, reused = trials_of(store, live_run)
    assert trained > 0 and reused == 0
    con = duckdb.connect(str(store))  # similarities but no raw features (a shipped table's shape)
    dropped = con.execute("select count(*) from embeddings").fetchone()[0]
    con.execute("delete from embeddings")
    con.close()
    assert dropped > 0
    enough = invoke("replay", "--from", live_run, "--suite", suite, "--store", store)
    assert enough.returncode == 0, enough.stderr  # every similarity stored: no feature is needed
    assert decisions(store, live_run) == decisions(store, last_run(store)[0])
    con = duckdb.connect(str(store))  # now neither: the trials alone
    con.execute("delete from similarities")
    con.close()

    stopped = invoke("replay", "--from", live_run, "--suite", suite, "--store", store)
    assert stopped.returncode == 2
    assert "features of component" in stopped.stderr and "--fill-embeddings" in stopped.stderr
    filled = invoke("replay", "--from", live_run, "--suite", suite, "--store", store, "--fill-embeddings")
    assert filled.returncode == 0, filled.stderr
    replay_run = last_run(store)[0]
    assert trials_of(store, replay_run) == (0, trained)  # features recomputed, no trial trained
    assert fetch(store, "select count(*) from embeddings", one=True)[0] == dropped
    assert decisions(store, live_run) == decisions(store, replay_run)


def test_replay_names_a_missing_trial_and_stops_or_fills_it(tmp_path):
    store = tmp_path / "s.duckdb"
    grid = search_suite(tmp_path, "grid.yaml", **{"search.strategy": "grid",
                                                 "zoo.vision_encoders": ["tiny:vit-p4"]})
    assert invoke("run", grid, "--store", store).returncode == 0
    grid_run = last_run(store)[0]
    bigger = search_suite(tmp_path, "bigger.yaml", **{
        "search.strategy": "grid", "zoo.vision_encoders": ["tiny:vit-p4", "tiny:resnet"]})

    stopped = invoke("replay", "--from", grid_run, "--suite", bigger, "--store", store)
    assert stopped.returncode == 2
    assert "tiny:resnet + tiny:gpt2 at r=1" in stopped.stderr and "--fill" in stopped.stderr
    run_id, status = last_run(store)
    assert status == "failed" and trials_of(store, run_id)[0] == 0  # it trained nothing

    filled = invoke("replay", "--from", grid_run, "--suite", bigger, "--store", store, "--fill")
    assert filled.returncode == 0, filled.stderr
    assert trials_of(store, last_run(store)[0]) == (2, 2)  # the 2 missing trained, 2 looked up
    assert "2 filled" in filled.stdout and "vs grid" in filled.stdout


def test_replay_of_an_unknown_run_leaves_the_store_as_it_was(tmp_path):
    store = tmp_path / "s.duckdb"
    grid = search_suite(tmp_path, "grid.yaml", **{"search.strategy": "grid",
                                                 "zoo.vision_encoders": ["tiny:vit-p4"]})
    assert invoke("run", grid, "--store", store).returncode == 0
    before = fetch(store, "select count(*) from runs", one=True)[0]
    out = invoke("replay", "--from", "no-such-run", "--suite", grid, "--store", store)
    assert out.returncode == 2 and "no run 'no-such-run'" in out.stderr
    assert fetch(store, "select count(*) from runs", one=True)[0] == before
    out = invoke("replay", "--from", "x", "--suite", grid, "--store", store, "--strategy", "gridd")
    assert out.returncode == 2 and "Did you mean 'grid'" in out.stderr
