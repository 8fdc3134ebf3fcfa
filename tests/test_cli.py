"""The command line, run as a user runs it: a subprocess per command, a real store file."""

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).parents[1]


def harness(*args, cwd=None, env=None, timeout=120):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def fresh_store(path):
    from harness.store import Store

    Store.open(path).close()
    return path


def test_sql_on_a_fresh_store_in_every_format(tmp_path):
    store = fresh_store(tmp_path / "s.duckdb")
    out = harness("sql", "select * from leaderboard", "--store", store)
    assert out.returncode == 0, out.stderr
    assert "(0 rows)" in out.stdout and "vision_encoder" in out.stdout
    as_csv = harness("sql", "select * from leaderboard", "--store", store, "--format", "csv")
    assert next(csv.reader(io.StringIO(as_csv.stdout))) == [
        "task", "vision_encoder", "language_model", "score", "metric", "run_id", "measured_or_predicted"]
    as_json = harness("sql", "select 1 as one, 'x' as two", "--store", store, "--format", "json")
    assert json.loads(as_json.stdout) == [{"one": 1, "two": "x"}]


def test_sql_errors_are_one_line_and_read_only(tmp_path):
    store = fresh_store(tmp_path / "s.duckdb")
    bad = harness("sql", "select * from no_such_table", "--store", store)
    assert bad.returncode != 0 and "no_such_table" in bad.stderr and "Traceback" not in bad.stderr
    write = harness("sql", "delete from runs", "--store", store)
    assert write.returncode != 0 and "only reads the store" in write.stderr


def test_sql_cannot_write_anything_anywhere(tmp_path):
    """Each of these wrote a file, another store or a setting before `harness sql` was locked
    down (issue 19): now each is refused with one line, and no file changes."""
    import hashlib

    store = fresh_store(tmp_path / "s.duckdb")
    other = fresh_store(tmp_path / "other.duckdb")
    with duckdb.connect(str(other)) as con:
        con.execute("create table precious as select 42 as answer")
    (tmp_path / "join.csv").write_text("task,weight\nshapes:color,2\n")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    attempts = [
        f"ATTACH '{other}' AS o (READ_WRITE); DELETE FROM o.precious",
        f"ATTACH '{other}' AS o (READ_WRITE)",
        f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
        f"COPY runs TO '{tmp_path / 's.duckdb'}'",
        f"EXPORT DATABASE '{tmp_path / 'dump'}'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "PRAGMA enable_external_access = true",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO runs (run_id) VALUES ('x')",
        "CHECKPOINT",
        f"SELECT * FROM read_csv('{tmp_path / 'join.csv'}')",  # not given with --file
        "SELECT * FROM read_text('/etc/hostname')",
        f"SELECT * FROM glob('{tmp_path}/*')",
    ]
    for sql in attempts:
        out = harness("sql", sql, "--store", store)
        assert out.returncode != 0, sql
        assert "Traceback" not in out.stderr and out.stderr.strip().splitlines()[-1].startswith("Error: "), \
            (sql, out.stderr)
        for script in (harness("sql", sql, "--script", "--store", store),):
            assert script.returncode != 0, sql
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == before
    assert duckdb.connect(str(other), read_only=True).execute("select * from precious").fetchall() == [(42,)]

    # what it may do: read a file given with --file (a join), several statements with --script
    joined = harness("sql", f"SELECT weight FROM read_csv('{tmp_path / 'join.csv'}')", "--file",
                     tmp_path / "join.csv", "--store", store, "--format", "json")
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout) == [{"weight": 2}]
    two = harness("sql", "select 1 as a; select 2 as b", "--store", store)
    assert two.returncode == 2 and "--script" in two.stderr
    both = harness("sql", "select 1 as a; select 2 as b", "--script", "--store", store, "--format", "csv")
    assert both.returncode == 0 and both.stdout.split() == ["a", "1", "b", "2"]
    for empty in ("", "   ", ";"):
        out = harness("sql", empty, "--store", store)
        assert out.returncode == 2 and "Traceback" not in out.stderr, empty
    # a mistyped store path is an error, and creates nothing
    typo = tmp_path / "no" / "such" / "store.duckdb"
    out = harness("sql", "select 1", "--store", typo)
    assert out.returncode != 0 and "no store at" in out.stderr and not (tmp_path / "no").exists()


def test_store_path_env_and_flag(tmp_path):
    env_path = tmp_path / "env.duckdb"
    assert harness("store", "path", env={"HARNESS_STORE": str(env_path)}).stdout.strip() == str(env_path)
    flag = tmp_path / "flag.duckdb"
    out = harness("store", "path", "--store", flag, env={"HARNESS_STORE": str(env_path)})
    assert out.stdout.strip() == str(flag)
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_STORE"}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "store", "path"], capture_output=True,
                          text=True, cwd=tmp_path, env=env)
    assert proc.stdout.strip() == str(tmp_path / ".harness" / "store.duckdb")


def test_store_info_and_backup(tmp_path):
    store = fresh_store(tmp_path / "s.duckdb")
    info = json.loads(harness("store", "info", "--json", "--store", store).stdout)
    assert info["pending_migrations"] == [] and "runs" in info["rows"]
    dest = tmp_path / "copy.duckdb"
    out = harness("store", "backup", dest, "--store", store)
    assert out.returncode == 0, out.stderr
    con = duckdb.connect(str(dest), read_only=True)
    assert con.execute("select count(*) from _migrations").fetchone()[0] == len(info["migrations"])
    again = harness("store", "backup", dest, "--store", store)
    assert again.returncode != 0 and "exists" in again.stderr


def test_validate_exit_codes(tmp_path):
    assert harness("validate", ROOT / "suites" / "quickstart.yaml").returncode == 0
    bad = harness("validate", ROOT / "tests" / "bad_suites" / "multiple_errors.yaml")
    assert bad.returncode == 2 and bad.stderr.count("multiple_errors.yaml:") >= 2


def test_malformed_suite_never_creates_a_store(tmp_path):
    store = tmp_path / "s.duckdb"
    out = harness("run", ROOT / "tests" / "bad_suites" / "multiple_errors.yaml", "--store", store,
                  cwd=tmp_path)
    assert out.returncode == 2
    assert not store.exists() and not (tmp_path / ".harness").exists()


def test_second_writer_waits_then_names_the_holder(tmp_path):
    store = tmp_path / "s.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from harness.store import Store\n"
         f"s = Store.open({str(store)!r}); print('ready', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        start = time.monotonic()
        out = harness("run", ROOT / "suites" / "quickstart.yaml", "--store", store, "--wait", "1")
        waited = time.monotonic() - start
        assert out.returncode == 3, out.stderr
        assert str(holder.pid) in out.stderr and "--wait" in out.stderr
        assert "Traceback" not in out.stderr
        assert waited >= 1.0
        assert f"waiting up to 1 s for store {store}" in out.stderr  # it says that it waits
        # every command that opens the store takes --wait, which the busy message suggests
        for args in (["sql", "select 1"], ["store", "info"], ["store", "backup", tmp_path / "b.duckdb"],
                     ["report"], ["compare", "a", "b"]):
            out = harness(*args, "--store", store, "--wait", "0.5")
            assert out.returncode == 3 and "waiting up to" in out.stderr, (args, out.stderr)
            assert "no such option" not in out.stderr.lower()
    finally:
        holder.kill()
        holder.wait()


def test_run_records_a_failed_run_when_the_strategy_cannot_load(tmp_path):
    """A strategy plugin whose code cannot be imported: the run is recorded and says so."""
    plugin = tmp_path / "broken_strategy.py"
    plugin.write_text(
        "from harness.hookspecs import hookimpl\n"
        "@hookimpl\n"
        "def register_search_strategies(register):\n"
        "    register('later', 'harness_not_written_yet:Later')\n")
    dist = tmp_path / "site" / "broken_strategy-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-strategy\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[harness]\nlater = broken_strategy\n")
    (tmp_path / "site" / "broken_strategy.py").write_text(plugin.read_text())
    suite = tmp_path / "suite.yaml"
    suite.write_text((ROOT / "suites" / "quickstart.yaml").read_text().replace(
        "strategy: mordal", "strategy: later"))
    store = tmp_path / "s.duckdb"
    env = {"PYTHONPATH": str(tmp_path / "site"), "HARNESS_LOAD_PLUGINS": "later"}
    out = harness("run", suite, "--store", store, env=env)
    assert out.returncode == 4, out.stderr
    assert "not available yet" in out.stderr and "harness_not_written_yet" in out.stderr
    con = duckdb.connect(str(store), read_only=True)
    (row,) = con.execute("select suite_name, strategy, status, error, plugin from runs").fetchall()
    assert row[:3] == ("quickstart", "later", "failed") and "not available yet" in row[3]
    assert row[4] == "later"


def test_harness_warnings_print_as_one_line(monkeypatch):
    import warnings

    from harness.cli import _one_line_warnings
    from harness.store import StoreWarning

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    _one_line_warnings()
    text = warnings.formatwarning(StoreWarning("store x is older\n  than the code"), StoreWarning,
                                  "/some/file.py", 12, "warnings.warn(...)")
    assert text == "warning: store x is older than the code\n"
    other = warnings.formatwarning(UserWarning("a library's"), UserWarning, "/lib.py", 3, "x")
    assert "/lib.py:3" in other  # the libraries' warnings keep Python's format


def test_a_trial_whose_data_cannot_load_ends_its_run_failed(tmp_path):
    """`harness trial` with alignment data that fails inside the trial: one line, exit 2, and the
    run is recorded failed, not left running (issue 18 item 7)."""
    store = tmp_path / "s.duckdb"
    out = harness("trial", "--encoder", "tiny:vit-p4", "--llm", "tiny:gpt2", "--task", "shapes:color",
                  "--alignment", f"llava:{tmp_path / 'missing.json'}", "--store", store)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "missing.json" in out.stderr, out.stderr
    con = duckdb.connect(str(store), read_only=True)
    assert con.execute("select status from runs").fetchall() == [("failed",)]
    con.close()
