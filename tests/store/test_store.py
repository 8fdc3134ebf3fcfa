"""The DuckDB store: paths, content keys, migrations, helpers, embeddings, locking and crashes.

Real files and real subprocesses (sys.executable); nothing is mocked.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from helpers import ROOT, invoke
from harness.store import (
    MIGRATIONS,
    Store,
    StoreError,
    StoreLocked,
    StoreWarning,
    canonical_json,
    content_key,
    default_store_path,
    embedding_key,
    migrate,
    schema_markdown,
    similarity_key,
    trial_key,
)
from harness.store.migrations import applied_migrations, example_queries

REPO = ROOT
ALL = [m.__name__ for m in MIGRATIONS]
PROV = {"plugin": "test", "plugin_version": "0.0"}


@pytest.fixture
def path(tmp_path):
    return tmp_path / "s" / "store.duckdb"


# -- paths -------------------------------------------------------------------------------------


def test_default_store_path_env_and_cwd(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / "elsewhere.duckdb"))
    assert default_store_path(tmp_path / "proj") == tmp_path / "elsewhere.duckdb"
    monkeypatch.delenv("HARNESS_STORE")
    assert default_store_path(tmp_path / "proj") == tmp_path / "proj" / ".harness" / "store.duckdb"
    monkeypatch.chdir(tmp_path)
    assert default_store_path() == tmp_path / ".harness" / "store.duckdb"


# -- content keys ------------------------------------------------------------------------------


def test_content_key_is_stable():
    obj = {"b": [1, 2.5, "x"], "a": {"z": None, "y": True}}
    assert canonical_json(obj) == '{"a":{"y":true,"z":null},"b":[1,2.5,"x"]}'
    assert content_key(obj) == content_key({"a": {"y": True, "z": None}, "b": (1, 2.5, "x")})
    assert content_key({"r": 1}) == content_key({"r": 1.0}) == content_key({"r": np.float32(1.0)})
    assert content_key({"r": 0.0}) == content_key({"r": -0.0})
    assert content_key({"p": Path("a/b")}) == content_key({"p": "a/b"})
    assert content_key({"s": {3, 1, 2}}) == content_key({"s": [1, 2, 3]})
    assert content_key({"lr": 1e-3}) == content_key({"lr": 0.001})
    assert canonical_json({"x": 0.1 + 0.2}) == '{"x":0.30000000000000004}'  # repr, not rounded


def test_content_key_pinned_value():
    # If this changes, every trial/embedding/similarity key in every store stops matching.
    assert content_key({"kind": "trial", "seed": 0}) == content_key({"seed": 0, "kind": "trial"})
    assert content_key([]) == "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
    assert content_key({"kind": "trial", "seed": 0, "ratio": 0.125}) == (
        "e67a4718ae9782bb97c3b6e5eb6968f9a8db079df132dba3a3d579ce07fe79cc")


def test_content_key_is_sensitive():
    base = dict(encoder="e" * 8, llm="l" * 8, dataset="d" * 8, sample_ratio=0.25, train_config={"lr": 1e-3}, seed=0)
    k = trial_key(**base)
    for field, other in [("encoder", "E"), ("llm", "L"), ("dataset", "D"), ("sample_ratio", 0.5),
                         ("train_config", {"lr": 2e-3}), ("seed", 1)]:
        assert trial_key(**{**base, field: other}) != k, field
    assert content_key({"a": True}) != content_key({"a": 1})
    assert content_key({"a": "1"}) != content_key({"a": 1})
    assert content_key([1, 2]) != content_key([2, 1])
    assert embedding_key(component="c", dataset="d", layer=-1, sample_set={"n": 512}) != embedding_key(
        component="c", dataset="d", layer=-2, sample_set={"n": 512})
    assert similarity_key(metric="cka", a="x", b="y") == similarity_key(metric="cka", a="y", b="x")
    assert similarity_key(metric="cka", a="x", b="y", symmetric=False) != similarity_key(
        metric="cka", a="y", b="x", symmetric=False)


def test_content_key_refuses_what_has_no_canonical_form():
    with pytest.raises(ValueError, match="NaN"):
        content_key({"x": math.nan})
    with pytest.raises(ValueError, match="infinity"):
        content_key([math.inf])
    with pytest.raises(TypeError, match="object"):
        content_key({"x": object()})
    with pytest.raises(ValueError, match="collide"):
        content_key({1: "a", "1": "b"})


# -- migrations --------------------------------------------------------------------------------


def test_blank_store_is_created_and_fully_migrated(path):
    with Store.open(path) as store:
        assert store.applied_migrations() == ALL
        info = store.info()
    assert set(info["rows"]) >= {"runs", "components", "datasets", "embeddings", "similarities", "clusters",
                                 "trials", "scores", "rungs", "scaling_points", "scaling_fits", "predictions",
                                 "rankings", "run_uses", "_migrations"}
    assert info["pending_migrations"] == [] and info["size_bytes"] > 0
    with Store.open(path) as store:  # idempotent
        assert migrate(store.con) == []
        assert store.applied_migrations() == ALL
        cols = [r[0] for r in store.con.execute("SELECT * FROM leaderboard LIMIT 0").description]
    assert cols == ["task", "vision_encoder", "language_model", "score", "metric", "run_id", "measured_or_predicted"]


def test_older_store_is_upgraded_and_keeps_rows(path):
    path.parent.mkdir(parents=True)
    con = duckdb.connect(str(path))
    assert migrate(con, upto=1) == ALL[:1]
    con.execute("INSERT INTO runs (run_id, suite_name, strategy, status) VALUES ('r1', 'q', 'grid', 'done')")
    con.execute("INSERT INTO rankings (run_id, task, metric, rank, encoder, llm, score, measured_or_predicted,"
                " plugin, plugin_version) VALUES ('r1', 't', 'acc', 1, 'e', 'l', 0.9, 'measured', 'grid', '1')")
    con.close()

    with pytest.warns(StoreWarning, match="older than this harness"):
        with Store.open(path, read_only=True) as old:
            assert old.pending == ALL[1:]
            assert old.query("SELECT run_id FROM runs") == [{"run_id": "r1"}]  # still readable

    with Store.open(path) as store:
        assert store.applied_migrations() == ALL
        assert store.query("SELECT suite_name FROM runs") == [{"suite_name": "q"}]
        assert store.leaderboard("t") == [{"task": "t", "vision_encoder": "e", "language_model": "l", "score": 0.9,
                                           "metric": "acc", "run_id": "r1", "measured_or_predicted": "measured"}]


def test_migrate_upto_name_and_failed_migration_rolls_back_all(tmp_path):
    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    assert migrate(con, upto=ALL[0]) == ALL[:1]

    def m900_ok(c):
        c.execute("CREATE TABLE extra (x INTEGER)")

    def m901_broken(c):
        c.execute("SELECT * FROM no_such_table")

    with pytest.raises(StoreError, match="m901_broken failed"):
        migrate(con, migrations=MIGRATIONS + [m900_ok, m901_broken])
    assert applied_migrations(con) == ALL[:1]  # m002 and m900 rolled back with m901
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'extra'").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'history'").fetchone()[0] == 0
    con.close()


def test_store_from_a_newer_harness_is_refused_for_writing(path):
    with Store.open(path) as store:
        store.execute("INSERT INTO _migrations (name) VALUES ('m999_from_the_future')")
    with pytest.raises(StoreError, match="newer harness.*m999_from_the_future"):
        Store.open(path)
    with pytest.warns(StoreWarning, match="newer harness"):
        Store.open(path, read_only=True).close()


def test_read_only_open_of_missing_store_says_how_to_create_it(tmp_path):
    missing = tmp_path / "nope" / "store.duckdb"
    with pytest.raises(StoreError) as e:
        Store.open(missing, read_only=True)
    assert str(missing) in str(e.value) and "does not exist" in str(e.value) and "Run a suite" in str(e.value)
    assert not missing.parent.exists()


def test_same_process_cannot_mix_modes(path):
    with Store.open(path) as store:
        with Store.open(path) as again:  # same mode: DuckDB shares the open database
            assert again.applied_migrations() == ALL
        with pytest.raises(StoreError, match="already has it open in the other mode"):
            Store.open(path, read_only=True)
        assert store.applied_migrations() == ALL


def test_read_only_store_refuses_writes_clearly(path):
    Store.open(path).close()
    with Store.open(path, read_only=True) as store:
        with pytest.raises(StoreError, match="read-only"):
            store.start_run(suite_name="q")


def test_schema_doc_is_up_to_date():
    doc = REPO / "docs" / "store-schema.md"
    assert doc.read_text(encoding="utf-8") == schema_markdown(), (
        "docs/store-schema.md is stale: run `python -m harness.store.migrations --docs > docs/store-schema.md`")


# -- helpers -----------------------------------------------------------------------------------


def _populate(store: Store) -> tuple[str, str]:
    """A grid run that trained one trial and a mordal run that reused it and ran another."""
    grid = store.start_run(suite_name="q", suite_hash="h", strategy="grid", ground_truth=True, seed=0, config={"name": "q"},
                           **PROV)
    store.put_component("fe", kind="vision_encoder", ref="tiny:vit-p8", run_id=grid, config={"p": 8}, **PROV)
    store.put_component("fl", kind="language_model", ref="tiny:llama", run_id=grid, **PROV)
    store.put_dataset("fd", ref="shapes:align", split="train", n_items=4000, run_id=grid, **PROV)
    k1 = trial_key(encoder="fe", llm="fl", dataset="fd", sample_ratio=1.0, train_config={"lr": 1e-3}, seed=0)
    store.start_trial(k1, run_id=grid, encoder="tiny:vit-p8", llm="tiny:llama", dataset_fingerprint="fd",
                      sample_ratio=1.0, train_config={"lr": 1e-3}, seed=0, device="cpu", **PROV)
    store.finish_trial(k1, wall_seconds=10.0, samples_seen=4000,
                       checkpoint_path=store.checkpoints_dir / k1)
    store.put_scores(k1, [{"task": "shapes:count", "metric": "acc", "value": 0.8, "n_items": 1000}],
                     run_id=grid, **PROV)
    store.record_use(grid, "trial", k1, reused=False)
    store.insert("rankings", [dict(run_id=grid, task="shapes:count", metric="acc", rank=1, encoder="tiny:vit-p8",
                                   llm="tiny:llama", score=0.8, measured_or_predicted="measured", trial_key=k1,
                                   **PROV)])
    store.finish_run(grid, "done")

    mordal = store.start_run(suite_name="q", strategy="mordal", seed=0, **PROV)
    assert store.get_trial(k1)["status"] == "done"
    store.record_use(mordal, "trial", k1, reused=True)
    k2 = trial_key(encoder="fe", llm="fl", dataset="fd", sample_ratio=0.25, train_config={"lr": 1e-3}, seed=0)
    store.start_trial(k2, run_id=mordal, encoder="tiny:vit-p8", llm="tiny:llama", dataset_fingerprint="fd",
                      sample_ratio=0.25, **PROV)
    store.finish_trial(k2, wall_seconds=2.5, samples_seen=1000)
    store.record_use(mordal, "trial", k2, reused=False)
    store.insert("clusters", [dict(run_id=mordal, level="encoder", cluster_id=0, member="tiny:vit-p8",
                                   is_medoid=True, threshold=0.7, **PROV)])
    store.insert("rungs", [dict(run_id=mordal, phase="inter", rung=0, encoder="tiny:vit-p8", llm="tiny:llama",
                                sample_ratio=0.25, score=0.6, kept=True, trial_key=k2, **PROV)])
    store.insert("scaling_points", [dict(run_id=mordal, encoder="tiny:vit-p8", llm="tiny:llama",
                                         task="shapes:count", sample_ratio=r, score=s, **PROV)
                                    for r, s in [(0.125, 0.5), (0.25, 0.6)]])
    store.insert("scaling_fits", [dict(run_id=mordal, encoder="tiny:vit-p8", llm="tiny:llama", task="shapes:count",
                                       predictor="loglinear", a=0.9, b=0.14, r2=1.0, params={"a": 0.9, "b": 0.14},
                                       n_points=2, **PROV)])
    store.insert("predictions", [dict(run_id=mordal, encoder="tiny:vit-p8", llm="tiny:llama", task="shapes:count",
                                      predicted_score=0.9, predictor="loglinear", **PROV)])
    store.insert("rankings", [dict(run_id=mordal, task="shapes:count", metric="acc", rank=1, encoder="tiny:vit-p8",
                                   llm="tiny:llama", score=0.9, measured_or_predicted="predicted", **PROV)])
    store.finish_run(mordal, "done")
    return grid, mordal


def test_run_trial_and_result_helpers(path):
    with Store.open(path) as store:
        grid, mordal = _populate(store)
        k1 = store.query("SELECT trial_key FROM trials WHERE sample_ratio = 1")[0]["trial_key"]
        t = store.get_trial(k1)
        assert t["checkpoint_path"] == f"checkpoints/{k1}"  # relative to the store's folder
        assert store.checkpoint_abspath(t["checkpoint_path"]) == path.parent / "checkpoints" / k1
        assert json.loads(t["train_config"]) == {"lr": 0.001}
        assert store.get_scores(k1) == [{"task": "shapes:count", "metric": "acc", "value": 0.8, "n_items": 1000}]
        with pytest.raises(StoreError, match="already done"):
            store.start_trial(k1, run_id=mordal, encoder="e", llm="l", dataset_fingerprint="fd", sample_ratio=1.0,
                              **PROV)

        board = store.leaderboard()
        assert [(r["run_id"], r["measured_or_predicted"]) for r in board] == [(mordal, "predicted")]
        assert store.leaderboard(run_id=grid)[0]["score"] == 0.8

        hist = {h["run_id"]: h for h in store.query("SELECT * FROM history")}
        assert (hist[grid]["trials_run"], hist[grid]["trials_reused"]) == (1, 0)
        assert (hist[mordal]["trials_run"], hist[mordal]["trials_reused"]) == (1, 1)
        assert hist[mordal]["trial_seconds"] == 2.5 and hist[mordal]["reused_seconds"] == 10.0
        assert hist[mordal]["best_per_task"] == "shapes:count: tiny:vit-p8 + tiny:llama (0.9000, predicted)"
        assert hist[grid]["status"] == "done" and hist[grid]["wall_seconds"] >= 0

        with pytest.raises(StoreError, match="no column.*colour.*columns: run_id"):
            store.insert("rungs", [{"run_id": "x", "colour": "red"}])
        with pytest.raises(duckdb.ConstraintException):  # provenance is mandatory
            store.insert("scores", [dict(trial_key=k1, task="t", metric="m", value=1.0, run_id=grid)])


def test_failed_trial_can_be_retried(path):
    with Store.open(path) as store:
        run = store.start_run(suite_name="q")
        store.start_trial("k", run_id=run, encoder="e", llm="l", dataset_fingerprint="d", sample_ratio=1, **PROV)
        store.finish_trial("k", status="failed", error="CUDA out of memory")
        store.start_trial("k", run_id=run, encoder="e", llm="l", dataset_fingerprint="d", sample_ratio=1, **PROV)
        assert store.get_trial("k")["status"] == "running" and store.get_trial("k")["error"] is None


def test_transaction_rolls_back_on_error(path):
    with Store.open(path) as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.start_run(suite_name="a", run_id="r-a")
            with store.transaction():  # nested joins the outer one
                store.start_run(suite_name="b", run_id="r-b")
            raise RuntimeError("boom")
        assert store.query("SELECT count(*) AS n FROM runs") == [{"n": 0}]
        with store.transaction():
            store.start_run(suite_name="c", run_id="r-c")
        assert store.query("SELECT run_id FROM runs") == [{"run_id": "r-c"}]


def test_example_queries_run(path):
    with Store.open(path) as store:
        _populate(store)
        queries = example_queries()
        assert len(queries) >= 3
        for title, sql in queries:
            store.query(sql)  # raises if an example is broken
        board = store.query(dict(queries)[next(t for t, _ in queries if t.startswith("Leaderboard"))])
        assert board[0]["vision_encoder"] == "tiny:vit-p8"


def test_backup_is_a_consistent_copy(path, tmp_path):
    with Store.open(path) as store:
        _populate(store)
        store.put_embedding("ek", np.ones((3, 4), np.float32), component_fingerprint="fe", dataset_fingerprint="fd",
                            layer=-1, run_id="r", **PROV)
        before = store.info()["rows"]
        dest = store.backup(tmp_path / "bk" / "copy.duckdb")
        with pytest.raises(StoreError, match="already exists"):
            store.backup(dest)
    with Store.open(dest, read_only=True) as copy:
        assert copy.info()["rows"] == before
        assert copy.info()["migrations"] == ALL
        assert copy.get_embedding("ek").tolist() == np.ones((3, 4)).tolist()
        assert len(copy.query("SELECT * FROM history")) == 2
    with Store.open(dest) as copy:  # writable: already migrated, constraints kept
        with pytest.raises(duckdb.ConstraintException):
            copy.execute("INSERT INTO runs (run_id, suite_name) SELECT run_id, suite_name FROM runs LIMIT 1")
    with Store.open(path, read_only=True) as ro:  # read-only stores can be backed up too
        with Store.open(ro.backup(tmp_path / "ro.duckdb"), read_only=True) as copy:
            assert copy.info()["rows"] == before


# -- embeddings --------------------------------------------------------------------------------


def test_embedding_round_trip(path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 48)).astype(np.float32)
    with Store.open(path) as store:
        key = embedding_key(component="fe", dataset="fd", layer=-1, sample_set={"n": 64, "seed": 0})
        kw = dict(component_fingerprint="fe", dataset_fingerprint="fd", layer=-1, run_id="r", **PROV)
        assert store.put_embedding(key, a, sample_set={"n": 64, "seed": 0}, **kw) is True
        assert store.put_embedding(key, a * 0, **kw) is False  # present: not overwritten
        b = store.get_embedding(key)
        assert b.dtype == np.float32 and b.shape == (64, 48) and b.flags.writeable
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)
        row = store.query("SELECT encoding, shape, octet_length(data) AS n FROM embeddings")[0]
        assert row == {"encoding": "float16", "shape": [64, 48], "n": 64 * 48 * 2}

        big = np.array([[1e6, -3.0]], dtype=np.float64)  # overflows float16: kept exactly as float32
        store.put_embedding("big", big, **kw)
        got = store.get_embedding("big")
        assert got.dtype == np.float64 and got.tolist() == [[1e6, -3.0]]
        with pytest.raises(ValueError, match="NaN"):
            store.put_embedding("nan", np.array([np.nan]), **kw)
        assert store.get_embedding("absent") is None


# -- concurrency and crashes -------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from harness.store import Store
    store = Store.open(sys.argv[1])
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
    store.close()
    print("released", flush=True)
    time.sleep(60)
""")


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _await(proc: subprocess.Popen, line: str) -> None:
    got = proc.stdout.readline().strip()
    if got != line:
        proc.kill()
        raise AssertionError(f"subprocess said {got!r}, expected {line!r}; stderr: {proc.stderr.read()}")


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()


def test_locked_store_names_the_holder_after_waiting(path):
    Store.open(path).close()
    holder = _spawn(HOLDER, str(path), "60")
    try:
        _await(holder, "ready")
        t0 = time.monotonic()
        with pytest.raises(StoreLocked) as e:
            Store.open(path, wait=1.0)
        elapsed = time.monotonic() - t0
        assert 0.9 <= elapsed < 5, elapsed
        msg = str(e.value)
        assert e.value.pid == holder.pid and f"process {holder.pid}" in msg
        assert str(path) in msg and "--wait SECONDS" in msg
        assert HOLDER.strip().splitlines()[0] in (e.value.command or "")  # command line from /proc
        with pytest.raises(StoreLocked):  # readers are locked out too while a writer holds it
            Store.open(path, read_only=True)
    finally:
        _stop(holder)


def test_waiting_open_succeeds_once_the_holder_releases(path):
    Store.open(path).close()
    holder = _spawn(HOLDER, str(path), "1")
    try:
        _await(holder, "ready")
        t0 = time.monotonic()
        with Store.open(path, wait=10.0) as store:
            assert store.applied_migrations() == ALL
        assert time.monotonic() - t0 < 10
        assert holder.poll() is None  # released by close(), not by exiting
    finally:
        _stop(holder)


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from harness.store import Store
    store = Store.open(sys.argv[1])
    run = store.start_run(suite_name="doomed", run_id="r-doomed")
    store.start_trial("t-doomed", run_id=run, encoder="e", llm="l", dataset_fingerprint="d", sample_ratio=1,
                      plugin="test", plugin_version="0")
    store.execute("BEGIN TRANSACTION")
    store.execute(
        "INSERT INTO scaling_points (run_id, encoder, llm, task, sample_ratio, score, plugin, plugin_version)"
        " SELECT 'r-doomed', 'e', 'l', 't', i / 300000, 0.5, 'test', '0' FROM range(300000) t(i)")
    print("ready", flush=True)
    time.sleep(60)
""")

KILLED_MIGRATION = textwrap.dedent("""
    import sys, time, duckdb
    from harness.store.migrations import MIGRATIONS, migrate

    def m999_hangs(con):
        con.execute("CREATE TABLE half_done AS SELECT range AS x FROM range(200000)")
        print("ready", flush=True)
        time.sleep(60)

    migrate(duckdb.connect(sys.argv[1]), migrations=MIGRATIONS + [m999_hangs])
""")


def test_sigkill_mid_transaction_loses_only_uncommitted_rows(path):
    with Store.open(path) as store:
        run = store.start_run(suite_name="ok", run_id="r-ok")
        store.insert("scaling_points", [dict(run_id=run, encoder="e", llm="l", task="t", sample_ratio=0.5,
                                             score=0.5, **PROV) for _ in range(100)])
    proc = _spawn(KILLED_WRITER, str(path))
    try:
        _await(proc, "ready")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        _stop(proc)
    with Store.open(path) as store:
        assert store.applied_migrations() == ALL
        counts = dict(store.con.execute("SELECT run_id, count(*) FROM scaling_points GROUP BY ALL").fetchall())
        assert counts == {"r-ok": 100}
        runs = {r["run_id"]: r for r in store.query("SELECT run_id, status, error FROM runs")}
        # the killed process's committed run is found dead and marked, its running trial failed
        assert runs["r-doomed"]["status"] == "interrupted" and str(proc.pid) in runs["r-doomed"]["error"]
        assert runs["r-ok"]["status"] == "running"  # this process is alive: left alone
        assert store.get_trial("t-doomed")["status"] == "failed"


def test_sigkill_mid_migration_leaves_the_older_store_intact(path):
    path.parent.mkdir(parents=True)
    con = duckdb.connect(str(path))
    migrate(con, upto=1)
    con.execute("INSERT INTO runs (run_id, suite_name) VALUES ('r1', 'q')")
    con.close()
    proc = _spawn(KILLED_MIGRATION, str(path))
    try:
        _await(proc, "ready")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        _stop(proc)
    con = duckdb.connect(str(path), read_only=True)
    assert applied_migrations(con) == ALL[:1]
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert "half_done" not in tables and "history" not in views
    con.close()
    with Store.open(path) as store:
        assert store.applied_migrations() == ALL
        assert store.query("SELECT run_id FROM runs") == [{"run_id": "r1"}]


def test_merge_from_copies_rows_once(tmp_path):
    from harness.store import Store

    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    with Store.open(b) as other:
        run = other.start_run(suite_name="shard")
        other.start_trial("k1", run_id=run, encoder="e", llm="l", dataset_fingerprint="d",
                          sample_ratio=1.0, plugin="p", plugin_version="1")
        other.finish_trial("k1", wall_seconds=2.0, samples_seen=10)
        other.put_scores("k1", [{"task": "t", "metric": "m", "value": 0.5}], run_id=run,
                         plugin="p", plugin_version="1")
    with Store.open(a) as main:
        added = main.merge_from(b)
        assert added["runs"] == 1 and added["trials"] == 1 and added["scores"] == 1
        assert main.merge_from(b)["trials"] == 0  # primary keys: nothing twice
        assert main.get_trial("k1")["status"] == "done"


def test_merge_takes_the_finished_copy_of_a_trial_consistently(tmp_path):
    """A trial failed in one store and done in another: merging either way ends with the done
    trial and its scores, never a failed trial carrying a merged score (issue 19)."""
    from harness.store import Store

    def make(path, status):
        with Store.open(path) as st:
            run = st.start_run(suite_name=status)
            st.start_trial("k", run_id=run, encoder="e", llm="l", dataset_fingerprint="d",
                           sample_ratio=1.0, plugin="p", plugin_version="1")
            if status == "done":
                st.finish_trial("k", wall_seconds=2.0, samples_seen=10)
                st.put_scores("k", [{"task": "t", "metric": "m", "value": 0.5}], run_id=run,
                              plugin="p", plugin_version="1")
            else:
                st.finish_trial("k", status="failed", wall_seconds=1.0, error="boom")

    for here, there in (("failed", "done"), ("done", "failed")):
        a, b = tmp_path / f"{here}-a.duckdb", tmp_path / f"{here}-b.duckdb"
        make(a, here)
        make(b, there)
        with Store.open(a) as main:
            added = main.merge_from(b)
            trial = main.get_trial("k")
            scores = main.get_scores("k")
            assert trial["status"] == "done" and [s["value"] for s in scores] == [0.5]
            assert added.get("trials replaced (unfinished here, done there)", 0) == (here == "failed")
            again = main.merge_from(b)
            assert again["trials"] == 0 and again["scores"] == 0


def test_merge_reports_scores_that_conflict_and_keeps_its_own(tmp_path):
    from harness.store import Store

    def make(path, value):
        with Store.open(path) as st:
            run = st.start_run(suite_name="x")
            st.start_trial("k", run_id=run, encoder="e", llm="l", dataset_fingerprint="d",
                           sample_ratio=1.0, plugin="p", plugin_version="1")
            st.finish_trial("k", wall_seconds=2.0, samples_seen=10)
            st.put_scores("k", [{"task": "t", "metric": "m", "value": value}], run_id=run,
                          plugin="p", plugin_version="1")

    make(tmp_path / "a.duckdb", 0.5)
    make(tmp_path / "b.duckdb", 0.7)  # the same trial key trained elsewhere, another score
    with Store.open(tmp_path / "a.duckdb") as main:
        added = main.merge_from(tmp_path / "b.duckdb")
        assert added["scores conflicting (this store's kept)"] == 1
        assert [s["value"] for s in main.get_scores("k")] == [0.5]


# -- issue 31: one line, nothing changed ------------------------------------------------------------

def _one_line(out, code, *says):
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.returncode == code and len(lines) == 1, out.output
    assert lines[0].startswith("error: ") and all(s in lines[0] for s in says), lines[0]
    assert "Traceback" not in out.stderr, out.stderr  # no exception got out of the command


def test_backup_of_a_store_whose_name_needs_quoting(tmp_path):
    from helpers import make_store

    for name in ('we"ird.duckdb', "it's.duckdb", 'a "b" \'c\'.duckdb'):
        src = tmp_path / name
        make_store(src)
        dest = tmp_path / f"copy-{len(name)}.duckdb"
        out = invoke("store", "backup", dest, "--store", src)
        assert out.returncode == 0, out.output
        with Store.open(dest, read_only=True) as st:
            assert st.query("select count(*) as n from trials")[0]["n"] == 2


@pytest.mark.parametrize("args, says", [
    (["store", "export", "--all", "--out", "/proc/x"], "pseudo-filesystem"),
    (["store", "export", "--all", "--out", "/"], "system folder"),
    (["store", "export", "--all", "--out", "/etc", "--force"], "system folder"),
    (["store", "export", "--all", "--out", "{dir}/s.duckdb/x"], "is a file, not a folder"),
    (["report", "--out", "/proc/x"], "pseudo-filesystem"),
    (["report", "--out", "/sys/x"], "pseudo-filesystem"),
    (["report", "--out", "/usr"], "system folder"),
    (["sql", "select 1", "--store", "/dev/full"], "not a regular file"),
    (["store", "info", "--store", "/dev/null"], "not a regular file"),
])
def test_out_folders_and_stores_that_are_no_place_to_write(tmp_path, args, says):
    from helpers import make_store, snapshot

    make_store(tmp_path / "s.duckdb")
    before = snapshot(tmp_path)
    args = [a.replace("{dir}", str(tmp_path)) for a in args]
    if "--store" not in args:
        args += ["--store", str(tmp_path / "s.duckdb")]
    out = invoke(*args)
    _one_line(out, 2 if args[0] != "sql" and args[1] != "info" else 1, says)
    assert snapshot(tmp_path) == before


def test_sql_runs_under_a_memory_and_a_time_limit(tmp_path):
    from helpers import make_store

    store = tmp_path / "s.duckdb"
    make_store(store)
    start = time.monotonic()
    out = invoke("sql", "SELECT length(repeat('x', 3000000000))", "--store", store)
    _one_line(out, 1, "memory limit of harness sql")
    out = invoke("sql", "SELECT count(*) FROM range(100000000000)", "--store", store, "--timeout", "1")
    _one_line(out, 1, "after 1 s", "--timeout")
    assert time.monotonic() - start < 30
    ok = invoke("sql", "select count(*) as n from trials", "--store", store, "--format", "csv")
    assert ok.returncode == 0 and ok.output.splitlines() == ["n", "2"], ok.output


def _damaged_wal(folder: Path) -> Path:
    """A store whose last committed rows are only in its .wal, and that .wal damaged."""
    from helpers import make_store

    store = folder / "w.duckdb"
    make_store(store)
    code = textwrap.dedent(f"""
        import os
        from harness.store import Store
        st = Store.open({str(store)!r})
        st.con.execute("SET wal_autocheckpoint = '1TB'")
        st.con.execute("UPDATE runs SET suite_name = 'only in the log'")
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    wal = Path(str(store) + ".wal")
    data = bytearray(wal.read_bytes())
    assert len(data) > 100
    for i in range(60, len(data) - 8):
        data[i] ^= 0xFF
    wal.write_bytes(bytes(data))
    return store


def test_a_damaged_wal_names_the_recovery_step_and_backup_copies_the_main_file(tmp_path):
    from helpers import snapshot

    store = _damaged_wal(tmp_path)
    before = snapshot(tmp_path)
    for args in (["store", "info"], ["sql", "select 1"], ["store", "check"]):
        out = invoke(*args, "--store", store)
        _one_line(out, 1, "write-ahead log", "main file is intact", "mv ")
    backup = invoke("store", "backup", tmp_path / "b.duckdb", "--store", store)
    assert backup.returncode == 0 and "without the changes since its last checkpoint" in backup.output
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "b.duckdb"} == before
    with Store.open(tmp_path / "b.duckdb", read_only=True) as st:
        assert [r["suite_name"] for r in st.query("select suite_name from runs")] == ["made"]
    # the step it names works: the store opens, as of its last checkpoint
    Path(str(store) + ".wal").rename(str(store) + ".wal.damaged")
    assert invoke("store", "check", "--store", store).returncode == 0


def test_store_check_reads_every_table_and_names_the_damaged_ones(tmp_path):
    from helpers import make_store

    store = tmp_path / "s.duckdb"
    make_store(store, trials=1)
    with Store.open(store) as st:
        for i in range(6):
            st.put_embedding(f"e{i}", np.random.default_rng(i).random((300, 300), dtype=np.float32),
                             component_fingerprint="c", dataset_fingerprint="d", layer=0, run_id="r",
                             plugin="p", plugin_version="0")
    ok = invoke("store", "check", "--store", store)
    assert ok.returncode == 0 and "ok: all" in ok.output, ok.output
    # damage one data block of the embeddings' payload: the store opens and counts its rows
    # (count(*) reads metadata), only a full read finds it
    from harness.store.check import check_store

    original = store.read_bytes()
    for block in range(3 * 4096, len(original), 256 * 1024):
        data = bytearray(original)
        for i in range(block + 16, min(block + 16 + 2048, len(data))):
            data[i] ^= 0xFF
        store.write_bytes(bytes(data))
        try:
            if check_store(store)["damaged"] == ["embeddings"]:
                break
        except StoreError:  # (a metadata block: the store does not open)
            continue
    else:
        pytest.fail("no block of the embeddings' payload found")
    assert invoke("store", "info", "--store", store).returncode == 0
    out = invoke("store", "check", "--store", store)
    assert out.returncode == 1 and out.output.startswith("damaged: table embeddings: "), out.output
    last = out.output.splitlines()[-1]
    assert last.startswith("error: ") and "tables are damaged (embeddings)" in last, out.output
