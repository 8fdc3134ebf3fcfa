"""The command line as a user runs it, on real store files: through its entry point in this
process (helpers.invoke), and as a process of its own where the process is the point (raw bytes
on stdout, standard input, a second process holding the store, a plugin on PYTHONPATH, a signal)."""

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

from helpers import BAD_SUITES, ROOT, SUITES, TIMEOUT, harness, invoke


def fresh_store(path):
    from harness.store import Store

    Store.open(path).close()
    return path


def test_sql_on_a_fresh_store_in_every_format(tmp_path):
    store = fresh_store(tmp_path / "s.duckdb")
    out = invoke("sql", "select * from leaderboard", "--store", store)
    assert out.returncode == 0, out.stderr
    assert "(0 rows)" in out.stdout and "vision_encoder" in out.stdout
    as_csv = invoke("sql", "select * from leaderboard", "--store", store, "--format", "csv")
    assert next(csv.reader(io.StringIO(as_csv.stdout))) == [
        "task", "vision_encoder", "language_model", "score", "metric", "run_id", "measured_or_predicted"]
    as_json = invoke("sql", "select 1 as one, 'x' as two", "--store", store, "--format", "json")
    assert json.loads(as_json.stdout) == [{"one": 1, "two": "x"}]


def test_sql_errors_are_one_line_and_read_only(tmp_path):
    store = fresh_store(tmp_path / "s.duckdb")
    bad = invoke("sql", "select * from no_such_table", "--store", store)
    assert bad.returncode != 0 and "no_such_table" in bad.stderr and "Traceback" not in bad.stderr
    write = invoke("sql", "delete from runs", "--store", store)
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
        out = invoke("sql", sql, "--store", store)
        assert out.returncode != 0, sql
        assert "Traceback" not in out.stderr and out.stderr.strip().splitlines()[-1].startswith("error: "), \
            (sql, out.stderr)
        for script in (invoke("sql", sql, "--script", "--store", store),):
            assert script.returncode != 0, sql
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == before
    assert duckdb.connect(str(other), read_only=True).execute("select * from precious").fetchall() == [(42,)]

    # what it may do: read a file given with --file (a join), several statements with --script
    joined = invoke("sql", f"SELECT weight FROM read_csv('{tmp_path / 'join.csv'}')", "--file",
                     tmp_path / "join.csv", "--store", store, "--format", "json")
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout) == [{"weight": 2}]
    two = invoke("sql", "select 1 as a; select 2 as b", "--store", store)
    assert two.returncode == 2 and "--script" in two.stderr
    both = invoke("sql", "select 1 as a; select 2 as b", "--script", "--store", store, "--format", "csv")
    assert both.returncode == 0 and both.stdout.split() == ["a", "1", "b", "2"]
    for empty in ("", "   ", ";"):
        out = invoke("sql", empty, "--store", store)
        assert out.returncode == 2 and "Traceback" not in out.stderr, empty
    # a mistyped store path is an error, and creates nothing
    typo = tmp_path / "no" / "such" / "store.duckdb"
    out = invoke("sql", "select 1", "--store", typo)
    assert out.returncode != 0 and "no store at" in out.stderr and not (tmp_path / "no").exists()


def test_store_path_env_and_flag(tmp_path):
    env_path = tmp_path / "env.duckdb"
    assert invoke("store", "path", env={"HARNESS_STORE": str(env_path)}).stdout.strip() == str(env_path)
    flag = tmp_path / "flag.duckdb"
    out = invoke("store", "path", "--store", flag, env={"HARNESS_STORE": str(env_path)})
    assert out.stdout.strip() == str(flag)
    proc = invoke("store", "path", cwd=tmp_path, env={"HARNESS_STORE": None})
    assert proc.stdout.strip() == str(tmp_path / ".harness" / "store.duckdb")


def test_store_info_and_backup(tmp_path):
    store = fresh_store(tmp_path / "s.duckdb")
    info = json.loads(invoke("store", "info", "--json", "--store", store).stdout)
    assert info["pending_migrations"] == [] and "runs" in info["rows"]
    dest = tmp_path / "copy.duckdb"
    out = invoke("store", "backup", dest, "--store", store)
    assert out.returncode == 0, out.stderr
    con = duckdb.connect(str(dest), read_only=True)
    assert con.execute("select count(*) from _migrations").fetchone()[0] == len(info["migrations"])
    again = invoke("store", "backup", dest, "--store", store)
    assert again.returncode != 0 and "exists" in again.stderr


def test_validate_exit_codes(tmp_path):
    assert invoke("validate", SUITES / "quickstart.yaml").returncode == 0
    bad = invoke("validate", BAD_SUITES / "multiple_errors.yaml")
    assert bad.returncode == 2 and bad.stderr.count("multiple_errors.yaml:") >= 2


def test_malformed_suite_never_creates_a_store(tmp_path):
    store = tmp_path / "s.duckdb"
    out = invoke("run", BAD_SUITES / "multiple_errors.yaml", "--store", store,
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
        out = harness("run", SUITES / "quickstart.yaml", "--store", store, "--wait", "1")
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
    suite.write_text((SUITES / "quickstart.yaml").read_text().replace(
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
    out = invoke("trial", "--encoder", "tiny:vit-p4", "--llm", "tiny:gpt2", "--task", "shapes:color",
                  "--alignment", f"llava:{tmp_path / 'missing.json'}", "--store", store)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "missing.json" in out.stderr, out.stderr
    con = duckdb.connect(str(store), read_only=True)
    assert con.execute("select status from runs").fetchall() == [("failed",)]
    con.close()


# -- issue 30 item 4: the first hour, smoothed ---------------------------------------------------

PROV = {"plugin": "test", "plugin_version": "0.0"}


def ranked_store(path):
    """A store whose latest finished run ranked one place of each kind (measured, predicted,
    eliminated at a rung, never trained with its cluster, failed trial, failed prediction), a run
    from before rankings.basis existed, a multi-target run, LLM clusters in two contexts, and a
    later run that was interrupted."""
    from harness.store import Store

    with Store.open(path) as st:
        def run(run_id, task, places, metric="score", scores=(), status="done"):
            st.start_run(suite_name="s", strategy="mordal", run_id=run_id, **PROV)
            for key, scored_task in scores:
                st.put_scores(key, [{"task": scored_task, "metric": "exact_match", "value": 0.5, "n_items": 10}],
                              run_id=run_id, **PROV)
                st.record_use(run_id, "trial", key, reused=False)
            st.insert("rankings", [dict(run_id=run_id, task=task, metric=metric, rank=i + 1, encoder=e, llm=l,
                                        score=s, measured_or_predicted=mp, stage=stage, sample_ratio=ratio,
                                        basis=basis, trial_key=key, **PROV)
                                   for i, (e, l, s, mp, stage, ratio, basis, key) in enumerate(places)])
            st.finish_run(run_id, status)

        run("20260101-000001-search", "shapes:color", [
            ("e1", "l1", 0.61234567, "predicted", "survivor", 1.0, "predicted", None),
            ("e1", "l2", 0.5, "measured", "survivor", 1.0, "measured", "k-full"),
            ("e2", "l1", 0.3, "measured", "eliminated-inter", 0.25, "eliminated", "k-rung"),
            ("e2", "l2", None, "measured", "eliminated-inter", None, "cluster", None),
            ("e3", "l1", None, "measured", "grid", 1.0, "measured", None),  # its trial failed
            ("e3", "l2", None, "predicted", "survivor", None, "predicted", None),  # too few points
        ], scores=[("k-full", "shapes:color"), ("k-rung", "shapes:color")])
        run("20260101-000002-older", "shapes:count", [  # written before m011: no basis, a named metric
            ("e1", "l1", 0.7, "measured", None, None, None, None),
            ("e2", "l1", 0.4, "measured", "eliminated-intra", 0.5, None, None),
            ("e2", "l2", None, "measured", "eliminated-inter", None, None, None),
        ], metric="acc")
        run("20260101-000003-both", "mean(shapes:color,shapes:count)", [
            ("e1", "l1", 0.55, "measured", "survivor", 1.0, "measured", "k-both"),
        ], metric="mean", scores=[("k-both", "shapes:color"), ("k-both", "shapes:count")])
        st.insert("clusters", [dict(run_id="20260101-000001-search", level=level, context=context, cluster_id=0,
                                    member=m, is_medoid=m.endswith("1"), threshold=0.2, **PROV)
                               for level, context, members in (("encoder", "", ("e1", "e2", "e3")),
                                                               ("llm", "e1", ("l1", "l2")),
                                                               ("llm", "e2", ("l1", "l2")))
                               for m in members])
        run("20260101-000004-stopped", "shapes:color", [
            ("e1", "l1", 0.9, "measured", "survivor", 1.0, "measured", None)], status="interrupted")
    return path


def test_leaderboard_says_what_each_score_is(tmp_path):
    """Eliminated places say eliminated, a place without a score is never `measured`, and the
    metric is named (issue 30 item 4)."""
    store = ranked_store(tmp_path / "s.duckdb")
    out = invoke("sql", "select * from leaderboard", "--store", store, "--format", "json")
    assert out.returncode == 0, out.stderr
    board = {(r["task"], r["vision_encoder"], r["language_model"]): r for r in json.loads(out.stdout)}
    color = {(e, l): (r["measured_or_predicted"], r["score"], r["metric"], r["run_id"])
             for (t, e, l), r in board.items() if t == "shapes:color"}
    assert color == {  # the interrupted later run is not the leaderboard
        ("e1", "l1"): ("predicted", 0.61234567, "exact_match", "20260101-000001-search"),
        ("e1", "l2"): ("measured", 0.5, "exact_match", "20260101-000001-search"),
        ("e2", "l1"): ("eliminated", 0.3, "exact_match", "20260101-000001-search"),
        ("e2", "l2"): ("cluster", None, "exact_match", "20260101-000001-search"),
        ("e3", "l1"): ("failed", None, "exact_match", "20260101-000001-search"),
        ("e3", "l2"): ("failed", None, "exact_match", "20260101-000001-search"),
    }
    count = [(r["vision_encoder"], r["language_model"], r["measured_or_predicted"], r["metric"])
             for (t, _, _), r in board.items() if t == "shapes:count"]
    assert count == [("e1", "l1", "measured", "acc"), ("e2", "l1", "eliminated", "acc"),
                     ("e2", "l2", "cluster", "acc")]
    assert board[("mean(shapes:color,shapes:count)", "e1", "l1")]["metric"] == "mean of exact_match"
    assert all(r["score"] is not None for r in board.values() if r["measured_or_predicted"] == "measured")


def test_sql_table_rounds_floats_csv_and_json_keep_them(tmp_path):
    store = ranked_store(tmp_path / "s.duckdb")
    query = "select score, 1.5::double as whole, 1234.56789::double as big from leaderboard where score > 0.6"
    table = invoke("sql", query, "--store", store)
    assert table.returncode == 0, table.stderr
    assert "0.6123" in table.stdout and "0.61234567" not in table.stdout and "1234.5679" in table.stdout
    assert "0.61234567" in invoke("sql", query, "--store", store, "--format", "csv").stdout
    assert json.loads(invoke("sql", query, "--store", store, "--format", "json").stdout)[0]["score"] == 0.61234567


def test_sql_csv_ends_lines_with_newline_only(tmp_path):
    """`$(harness sql ... --format csv | tail -1)` carried a \\r (csv's default \\r\\n)."""
    store = fresh_store(tmp_path / "s.duckdb")
    out = subprocess.run([sys.executable, "-m", "harness.cli", "sql", "select 1 as a, 'x y' as b", "--store",
                          str(store), "--format", "csv"], capture_output=True, timeout=TIMEOUT)  # bytes
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"a,b\n1,x y\n"


def test_sql_script_reads_standard_input_and_runs_the_examples(tmp_path):
    """`harness sql --script - < store/examples.sql` (the README's line) runs every example; the
    clusters example lists each member once per cluster (LLMs are clustered once per context)."""
    import ast

    store = ranked_store(tmp_path / "s.duckdb")
    two = harness("sql", "--script", "-", "--store", store, "--format", "csv",
                  input="select 1 as a;\nselect 2 as b;\n")
    assert two.returncode == 0, two.stderr
    assert two.stdout.split() == ["a", "1", "b", "2"]
    examples = (ROOT / "store" / "examples.sql").read_text()
    out = harness("sql", "--script", "-", "--store", store, "--format", "csv", input=examples)
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    header = rows.index(["level", "context", "cluster_id", "members", "medoid"])
    clusters = [r for r in rows[header + 1:header + 4]]
    assert [(r[0], r[1]) for r in clusters] == [("encoder", ""), ("llm", "e1"), ("llm", "e2")]
    for row in clusters:
        members = ast.literal_eval(row[3])
        assert len(members) == len(set(members)), row
    empty = harness("sql", "-", "--store", store, input="")
    assert empty.returncode == 2 and empty.stderr.startswith("error: ") and "Traceback" not in empty.stderr


def test_report_without_run_picks_the_latest_finished_run_and_says_so(tmp_path):
    store = ranked_store(tmp_path / "s.duckdb")
    out = invoke("report", "--store", store, "--out", tmp_path / "r")
    assert out.returncode == 0, out.stderr
    # the interrupted run started later; the latest finished one that ranked is picked
    assert "report of run 20260101-000003-both (the latest finished run)" in out.stderr
    assert Path(out.stdout.strip()).name == "report.html"


def test_errors_are_one_line_with_one_prefix(tmp_path):
    """click's usage errors, harness's own and a failed query all print `error: ...` on one line."""
    store = fresh_store(tmp_path / "s.duckdb")
    for args, code, words in ((["sql", "select 1", "--bogus"], 2, "No such option"),
                              (["sql"], 2, "Missing argument"),
                              (["sql", "select 1", "--store", store, "--format", "xml"], 2, "'xml'"),
                              (["no-such-command"], 2, "No such command"),
                              (["sql", "select * from nowhere", "--store", store], 1, "query failed"),
                              (["report", "--task", "x", "--store", store], 2, "--task goes with --history")):
        out = invoke(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == code, (args, out.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, out.stderr)
    suite = invoke("validate", BAD_SUITES / "multiple_errors.yaml")  # one line per problem
    lines = suite.stderr.strip().splitlines()
    assert suite.returncode == 2 and len(lines) >= 2 and all(line.startswith("error: ") for line in lines), suite.stderr


@pytest.mark.long
def test_a_stopped_command_says_how_to_go_on(tmp_path):
    """SIGTERM (as Ctrl-C) ends a run with exit 130 and one line saying that running it again
    resumes it."""
    import signal

    from harness.cli import INTERRUPTED

    assert INTERRUPTED == "interrupted: run again to resume"
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(SUITES / "quickstart.yaml"),
                             "--store", str(tmp_path / "s.duckdb")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    try:
        said = []
        while not (said and said[-1].startswith("run ")):  # "run RUN_ID: suite ...": it has started
            said.append(proc.stdout.readline())
            assert said[-1], "".join(said)
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=120)[0]
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == 130, rest[-2000:]
    assert rest.strip().splitlines()[-1] == INTERRUPTED and "Traceback" not in rest


@pytest.mark.slow
def test_a_replayed_search_labels_its_places_and_its_clusters_list_each_member_once(tmp_path):
    """On a real Mordal search (replayed from the shipped table, one target): the leaderboard
    labels the places a rung dropped `eliminated` and those never trained `cluster`, names the
    metric, and the clusters example of store/examples.sql lists no member twice."""
    import ast
    import re

    suite = tmp_path / "one.yaml"
    suite.write_text(re.sub(r"targets:\n(  - .*\n)+", "targets:\n  - {task: shapes:color, limit: 1000}\n",
                            (SUITES / "minizoo.yaml").read_text()))
    store = tmp_path / "s.duckdb"
    out = harness("replay", "--table", ROOT / "benchmarks" / "tables" / "minizoo", "--suite", suite,
                  "--store", store, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    board = json.loads(harness("sql", "select * from leaderboard where task = 'shapes:color'", "--store", store,
                               "--format", "json").stdout)
    labels = {r["measured_or_predicted"] for r in board}
    assert {"eliminated", "cluster"} <= labels <= {"measured", "predicted", "eliminated", "cluster"}
    assert {r["metric"] for r in board} == {"exact_match"}
    assert all(r["score"] is not None for r in board if r["measured_or_predicted"] != "cluster")
    assert all(r["score"] is None for r in board if r["measured_or_predicted"] == "cluster")
    examples = harness("sql", "--script", "-", "--store", store, "--format", "csv",
                       input=(ROOT / "store" / "examples.sql").read_text())
    assert examples.returncode == 0, examples.stderr
    rows = list(csv.reader(io.StringIO(examples.stdout)))
    start = rows.index(["level", "context", "cluster_id", "members", "medoid"]) + 1
    clusters = []
    for row in rows[start:]:
        if len(row) != 5 or row[0] not in ("encoder", "llm"):
            break
        clusters.append(row)
    assert any(r[0] == "llm" for r in clusters)
    for row in clusters:
        members = ast.literal_eval(row[3])
        assert len(members) == len(set(members)) and row[4] in members, row
