"""The shipped benchmark of record (benchmarks/tables/minizoo): intact, and holding what it says."""

import duckdb
import pytest

from harness.store.exchange import read_export
from harness.suite import load_suite
from helpers import ROOT

TABLE = ROOT / "benchmarks" / "tables" / "minizoo"
TASKS = {f"shapes:{t}" for t in ("color", "shape", "count", "spatial", "digits", "chart")}
SEEDS = (0, 1, 2)
RATIOS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)  # the table is complete: every seed at every ratio


@pytest.fixture(scope="module")
def table():
    manifest = read_export(TABLE)  # every file present, hashes and row counts as the manifest says
    con = duckdb.connect(":memory:")
    for name, entry in manifest["tables"].items():
        con.execute(f"create view {name} as select * from read_parquet('{TABLE / entry['file']}')")
    yield manifest, con
    con.close()


def test_the_manifest_matches_the_files_and_names_its_runs(table):
    manifest, con = table
    for name, entry in manifest["tables"].items():
        assert con.execute(f"select count(*) from {name}").fetchone()[0] == entry["rows"]
    runs = {r[0] for r in con.execute("select suite_name from runs").fetchall()}
    assert {"table-seed0", "table-grid-seed0"} <= runs
    assert sorted(manifest["runs"]) == sorted(r[0] for r in con.execute("select run_id from runs").fetchall())


def test_every_candidate_of_the_whole_zoo_has_every_task_at_every_ratio_for_every_seed(table):
    _, con = table
    suite = load_suite(ROOT / "suites" / "minizoo-full.yaml")
    rows = con.execute("""select t.encoder, t.llm, t.seed, t.sample_ratio, list(s.task) from trials t
                          join scores s using (trial_key) where t.status = 'done'
                          group by all""").fetchall()
    have = {(e, m, seed, r): set(tasks) for e, m, seed, r, tasks in rows}
    assert all(tasks == TASKS for tasks in have.values())  # every trial scored on all six tasks
    assert len(suite.candidates()) == 70
    for c in suite.candidates():
        for seed in SEEDS:
            for r in RATIOS:
                assert (c.vision_encoder, c.language_model, seed, r) in have, (c, seed, r)


def test_the_grid_run_ranks_every_task_by_the_mean_over_seeds(table):
    _, con = table
    ranked = con.execute("""select k.task, count(*) from rankings k join runs r using (run_id)
                            where r.suite_name = 'table-grid-seed0' group by 1""").fetchall()
    assert {t for t, _ in ranked} == TASKS
    assert min(n for _, n in ranked) == 70


def test_the_test_bed_report_reads_the_table_in_seconds_and_trains_nothing():
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "testbed_report.py"), "--table", str(TABLE)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    verdict = json.loads(out.stdout.strip().splitlines()[-1])["verdict"]
    assert verdict["candidates"] == 70 and verdict["tasks"] == 6 and verdict["failed_trials"] == 0
    assert list(SEEDS) == verdict["seeds"][:len(SEEDS)]
    # a real test bed: tasks disagree far more than seeds do, and several candidates win a task
    assert verdict["task_tau"] < verdict["seed_tau"] - 0.2
    assert verdict["distinct_winners"] >= 3
    assert -1 <= verdict["tau_r0.0625_vs_r1"] <= verdict["tau_r0.5_vs_r1"] <= 1


def test_clustering_similarities_are_there_for_every_seed(table):
    """Every seed of SEEDS has the same, complete set of clustering similarities (CKA between
    the encoders, and between the LLMs through each encoder's warmed projector, on each task)
    and its clusters, so a search replays on any of them without computing a feature."""
    _, con = table
    rows = dict(con.execute("""select r.seed, count(distinct u.key) from run_uses u join runs r using (run_id)
                               where u.kind = 'similarity' group by 1""").fetchall())
    assert set(SEEDS) <= set(rows) and len({rows[s] for s in SEEDS}) == 1 and rows[0] > 0
    stored = {k for (k,) in con.execute("select similarity_key from similarities").fetchall()}
    used = {k for (k,) in con.execute("select key from run_uses where kind = 'similarity'").fetchall()}
    assert used <= stored
