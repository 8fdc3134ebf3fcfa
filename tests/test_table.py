"""The shipped benchmark of record (benchmarks/tables/minizoo): intact, and holding what it says."""

from pathlib import Path

import duckdb
import pytest

from harness.store.exchange import read_export
from harness.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "benchmarks" / "tables" / "minizoo"
TASKS = {f"shapes:{t}" for t in ("color", "shape", "count", "spatial", "digits", "chart")}
# what the build has finished for seed 0 so far (benchmarks/build_table.py --plan lists the rest);
# grow these as the build completes, never shrink them
SEED0_CORE_RATIOS = (1 / 16, 1 / 8, 1 / 4, 1.0)


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


def test_every_minizoo_candidate_has_every_task_at_the_built_ratios_for_seed_0(table):
    _, con = table
    suite = load_suite(ROOT / "suites" / "minizoo.yaml")
    rows = con.execute("""select t.encoder, t.llm, t.sample_ratio, list(s.task) from trials t
                          join scores s using (trial_key) where t.seed = 0 and t.status = 'done'
                          group by all""").fetchall()
    have = {(e, m, r): set(tasks) for e, m, r, tasks in rows}
    assert all(tasks == TASKS for tasks in have.values())  # every trial scored on all six tasks
    for c in suite.candidates():
        for r in SEED0_CORE_RATIOS:
            assert (c.vision_encoder, c.language_model, r) in have, (c, r)


def test_the_grid_run_ranks_every_task_by_the_mean_over_seeds(table):
    _, con = table
    ranked = con.execute("""select k.task, count(*) from rankings k join runs r using (run_id)
                            where r.suite_name = 'table-grid-seed0' group by 1""").fetchall()
    assert {t for t, _ in ranked} == TASKS
    assert min(n for _, n in ranked) >= 48
