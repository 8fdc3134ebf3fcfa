"""Store export / import: Parquet folders that reproduce every row, merge idempotently, refuse
damaged or newer input and leave the store as it was; a replay from an exported table decides
exactly as the live run it came from."""

import json
import shutil

import pytest
from suitefiles import fetch
from test_replay import decisions
from test_search import harness, last_run, trials_of, write_suite

TABLES = ("runs", "components", "datasets", "trials", "scores", "run_uses", "clusters",
          "similarities", "embeddings", "rungs", "rankings", "scaling_points", "predictions")


def counts(store):
    return {t: fetch(store, f'select count(*) from "{t}"', one=True)[0] for t in TABLES}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A real Mordal run on tiny models, in its own store: (folder, store, suite, run id)."""
    folder = tmp_path_factory.mktemp("live")
    store = folder / "s.duckdb"
    suite = write_suite(folder)
    out = harness("run", suite, "--store", store)
    assert out.returncode == 0, out.stderr
    return folder, store, suite, last_run(store)[0]


@pytest.fixture(scope="module")
def exported(live, tmp_path_factory):
    folder, store, _, run_id = live
    out = tmp_path_factory.mktemp("export") / "table"
    done = harness("store", "export", "--store", store, "--run", run_id, "--out", out)
    assert done.returncode == 0, done.stderr
    return out


def test_export_then_import_reproduces_every_row_and_twice_adds_nothing(live, exported, tmp_path):
    _, store, _, run_id = live
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["runs"] == [run_id] and manifest["migrations"]
    assert manifest["source_store"]
    assert set(TABLES) <= set(manifest["tables"])
    fresh = tmp_path / "fresh.duckdb"
    first = harness("store", "import", exported, "--store", fresh)
    assert first.returncode == 0, first.stderr
    assert counts(fresh) == counts(store)  # the store held one run: every row travels
    for sql in ("select trial_key, status, wall_seconds, samples_seen, seed from trials order by 1",
                "select trial_key, task, metric, value, n_items from scores order by 1, 2, 3",
                "select embedding_key, shape, encoding, md5(data) from embeddings order by 1",
                "select similarity_key, value from similarities order by 1",
                "select run_id, level, context, member, is_medoid from clusters order by all",
                "select run_id, suite_name, strategy, status, config from runs order by 1"):
        assert fetch(fresh, sql) == fetch(store, sql), sql
    assert fetch(fresh, "select count(*) from trials where checkpoint_path is not null", one=True)[0] == 0
    provenance = fetch(fresh, "select kind, source_store, manifest_sha256 from imports")
    assert provenance == [("export", manifest["source_store"], provenance[0][2])]
    n_trials = counts(store)["trials"]
    assert fetch(fresh, "select count(*) from imported_rows where table_name = 'trials'",
                 one=True)[0] == n_trials
    before = counts(fresh)
    again = harness("store", "import", exported, "--store", fresh)
    assert again.returncode == 0 and "nothing new" in again.stdout
    assert counts(fresh) == before


def _damaged(exported, tmp_path, how):
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    how(bad)
    return bad


def _truncate(bad):
    p = bad / "scores.parquet"
    p.write_bytes(p.read_bytes()[:200])


def _rehash(bad, table, new_sha):
    m = json.loads((bad / "manifest.json").read_text())
    m["tables"][table]["sha256"] = new_sha
    (bad / "manifest.json").write_text(json.dumps(m))


def _truncate_and_rehash(bad):
    from harness.store.exchange import sha256_file

    _truncate(bad)
    _rehash(bad, "scores", sha256_file(bad / "scores.parquet"))


def _newer(bad):
    m = json.loads((bad / "manifest.json").read_text())
    m["migrations"].append("m999_from_the_future")
    (bad / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("how, says", [
    (_truncate, "sha256"),
    (lambda bad: _rehash(bad, "trials", "0" * 64), "sha256"),
    (_truncate_and_rehash, "not a readable Parquet"),
    (_newer, "newer harness"),
    (lambda bad: (bad / "trials.parquet").unlink(), "missing from the export"),
    (lambda bad: (bad / "manifest.json").unlink(), "not a store export"),
])
def test_a_damaged_or_newer_export_is_refused_and_the_store_is_unchanged(live, exported, tmp_path, how, says):
    _, store, suite, _ = live
    target = tmp_path / "target.duckdb"
    shutil.copy(store, target)  # a store with rows of its own
    before = counts(target)
    bad = _damaged(exported, tmp_path, how)
    out = harness("store", "import", bad, "--store", target)
    assert out.returncode != 0 and says in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert counts(target) == before
    fresh = tmp_path / "never.duckdb"
    out = harness("store", "import", bad, "--store", fresh)
    assert out.returncode != 0 and not fresh.exists()  # checked before a store is created


def test_merge_goes_through_the_import_path_and_records_where_rows_came_from(live, tmp_path):
    _, store, _, _ = live
    fresh = tmp_path / "m.duckdb"
    out = harness("store", "merge", store, "--store", fresh)
    assert out.returncode == 0, out.stderr
    assert counts(fresh) == counts(store)
    assert fetch(fresh, "select kind, source_path from imports") == [("store", str(store))]
    assert harness("store", "merge", store, "--store", fresh).stdout.strip() == "nothing new"


def test_replay_from_an_exported_table_decides_as_the_live_run(live, exported, tmp_path):
    _, store, suite, run_id = live
    mine = tmp_path / "mine.duckdb"
    out = harness("replay", "--table", exported, "--suite", suite, "--store", mine)
    assert out.returncode == 0, out.stderr
    replay_run = last_run(mine)[0]
    trained, _ = trials_of(store, run_id)
    assert trials_of(mine, replay_run) == (0, trained)  # nothing trained
    assert decisions(store, run_id) == decisions(mine, replay_run)
    before = sorted(p.name for p in exported.iterdir())
    mem = harness("replay", "--table", exported, "--suite", suite, "--store", ":memory:")
    assert mem.returncode == 0, mem.stderr
    assert "best VLM:" in mem.stdout and not (tmp_path / ":memory:").exists()
    assert sorted(p.name for p in exported.iterdir()) == before  # the table is only read


def test_export_needs_runs_or_all_and_names_an_unknown_run(live, tmp_path):
    _, store, _, _ = live
    neither = harness("store", "export", "--store", store, "--out", tmp_path / "e")
    assert neither.returncode == 2 and "--all" in neither.stderr
    unknown = harness("store", "export", "--store", store, "--run", "nope", "--out", tmp_path / "e")
    assert unknown.returncode != 0 and "'nope'" in unknown.stderr and not (tmp_path / "e").exists()
    everything = harness("store", "export", "--store", store, "--all", "--out", tmp_path / "e")
    assert everything.returncode == 0, everything.stderr
    exists = harness("store", "export", "--store", store, "--all", "--out", tmp_path / "e")
    assert exists.returncode != 0 and "--force" in exists.stderr


def test_a_table_without_raw_features_still_replays_the_clustering(live, tmp_path):
    _, store, suite, run_id = live
    out = tmp_path / "lean"
    done = harness("store", "export", "--store", store, "--all", "--no-embeddings", "--out", out)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tables"]["embeddings"]["rows"] == 0
    assert manifest["tables"]["similarities"]["rows"] == counts(store)["similarities"] > 0
    mine = tmp_path / "mine.duckdb"
    replayed = harness("replay", "--table", out, "--suite", suite, "--store", mine)
    assert replayed.returncode == 0, replayed.stderr
    assert decisions(store, run_id) == decisions(mine, last_run(mine)[0])


def test_a_default_suite_clusters_with_the_papers_minibatch_cka(live):
    _, store, _, _ = live
    configs = [json.loads(c) for (c,) in fetch(store, "select distinct config from similarities"
                                                        " where metric = 'cka'")]
    assert configs == [{"minibatch": 64, "seed": 0}]
