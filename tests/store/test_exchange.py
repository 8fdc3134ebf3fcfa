"""Store export / import: Parquet folders that reproduce every row, merge idempotently, refuse
damaged or newer input and leave the store as it was; a replay from an exported table decides
exactly as the live run it came from."""

import json
import shutil

import pytest
from helpers import decisions, fetch, invoke, last_run, trials_of

TABLES = ("runs", "components", "datasets", "trials", "scores", "run_uses", "clusters",
          "similarities", "embeddings", "rungs", "rankings", "scaling_points", "predictions")


def counts(store):
    return {t: fetch(store, f'select count(*) from "{t}"', one=True)[0] for t in TABLES}


@pytest.fixture(scope="module")
def live(searched_once, tmp_path_factory):
    """A real Mordal run on tiny models, alone in its own store: (folder, store, suite, run id);
    this module's copy of the session's search (tests/conftest.py) taken before its grid ran."""
    store = searched_once.copy(tmp_path_factory.mktemp("live") / "searched", mordal_only=True)
    assert fetch(store, "select count(*) from runs", one=True) == (1,)
    return store.parent, store, store.parent / "suite.yaml", searched_once.mordal_run


@pytest.fixture(scope="module")
def exported(live, tmp_path_factory):
    folder, store, _, run_id = live
    out = tmp_path_factory.mktemp("export") / "table"
    done = invoke("store", "export", "--store", store, "--run", run_id, "--out", out)
    assert done.returncode == 0, done.stderr
    return out


def test_export_then_import_reproduces_every_row_and_twice_adds_nothing(live, exported, tmp_path):
    _, store, _, run_id = live
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["runs"] == [run_id] and manifest["migrations"]
    assert manifest["source_store"]
    assert set(TABLES) <= set(manifest["tables"])
    fresh = tmp_path / "fresh.duckdb"
    first = invoke("store", "import", exported, "--store", fresh)
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
    again = invoke("store", "import", exported, "--store", fresh)
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
    out = invoke("store", "import", bad, "--store", target)
    assert out.returncode != 0 and says in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert counts(target) == before
    fresh = tmp_path / "never.duckdb"
    out = invoke("store", "import", bad, "--store", fresh)
    assert out.returncode != 0 and not fresh.exists()  # checked before a store is created


def test_merge_goes_through_the_import_path_and_records_where_rows_came_from(live, tmp_path):
    _, store, _, _ = live
    fresh = tmp_path / "m.duckdb"
    out = invoke("store", "merge", store, "--store", fresh)
    assert out.returncode == 0, out.stderr
    assert counts(fresh) == counts(store)
    assert fetch(fresh, "select kind, source_path from imports") == [("store", str(store))]
    assert invoke("store", "merge", store, "--store", fresh).stdout.strip() == "nothing new"


def test_replay_from_an_exported_table_decides_as_the_live_run(live, exported, tmp_path):
    _, store, suite, run_id = live
    mine = tmp_path / "mine.duckdb"
    out = invoke("replay", "--table", exported, "--suite", suite, "--store", mine)
    assert out.returncode == 0, out.stderr
    replay_run = last_run(mine)[0]
    trained, _ = trials_of(store, run_id)
    assert trials_of(mine, replay_run) == (0, trained)  # nothing trained
    assert decisions(store, run_id) == decisions(mine, replay_run)
    before = sorted(p.name for p in exported.iterdir())
    mem = invoke("replay", "--table", exported, "--suite", suite, "--store", ":memory:")
    assert mem.returncode == 0, mem.stderr
    assert "best VLM:" in mem.stdout and not (tmp_path / ":memory:").exists()
    assert sorted(p.name for p in exported.iterdir()) == before  # the table is only read


def test_export_needs_runs_or_all_and_names_an_unknown_run(live, tmp_path):
    _, store, _, _ = live
    neither = invoke("store", "export", "--store", store, "--out", tmp_path / "e")
    assert neither.returncode == 2 and "--all" in neither.stderr
    unknown = invoke("store", "export", "--store", store, "--run", "nope", "--out", tmp_path / "e")
    assert unknown.returncode != 0 and "'nope'" in unknown.stderr and not (tmp_path / "e").exists()
    everything = invoke("store", "export", "--store", store, "--all", "--out", tmp_path / "e")
    assert everything.returncode == 0, everything.stderr
    exists = invoke("store", "export", "--store", store, "--all", "--out", tmp_path / "e")
    assert exists.returncode != 0 and "--force" in exists.stderr


def test_a_table_without_raw_features_still_replays_the_clustering(live, tmp_path):
    _, store, suite, run_id = live
    out = tmp_path / "lean"
    done = invoke("store", "export", "--store", store, "--all", "--no-embeddings", "--out", out)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tables"]["embeddings"]["rows"] == 0
    assert manifest["tables"]["similarities"]["rows"] == counts(store)["similarities"] > 0
    mine = tmp_path / "mine.duckdb"
    replayed = invoke("replay", "--table", out, "--suite", suite, "--store", mine)
    assert replayed.returncode == 0, replayed.stderr
    assert decisions(store, run_id) == decisions(mine, last_run(mine)[0])


def test_a_default_suite_clusters_with_the_papers_minibatch_cka(live):
    _, store, _, _ = live
    configs = [json.loads(c) for (c,) in fetch(store, "select distinct config from similarities"
                                                        " where metric = 'cka'")]
    assert configs == [{"minibatch": 64, "seed": 0}]


# -- nothing lost: --force replaces only a harness export (issue 31) ------------------------------

def _one_line_refusal(out, *says):
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.output
    assert lines[0].startswith("error: ") and all(s in lines[0] for s in says), lines[0]


def test_force_never_replaces_a_folder_holding_the_store_or_other_files(tmp_path):
    from helpers import make_store, snapshot

    folder = tmp_path / "work"
    folder.mkdir()
    make_store(folder / "s.duckdb")
    (folder / "manifest.json").write_text("{}")
    (folder / "notes.txt").write_text("my notes")
    before = snapshot(folder)
    out = invoke("store", "export", "--all", "--out", folder, "--force", "--store", folder / "s.duckdb")
    _one_line_refusal(out, "--force", "not a harness export folder")
    assert snapshot(folder) == before and len(before) >= 4


def test_force_never_replaces_a_project_with_a_manifest_of_its_own(tmp_path):
    from helpers import make_store, snapshot

    make_store(tmp_path / "s.duckdb")
    project = tmp_path / "web"
    project.mkdir()
    (project / "manifest.json").write_text(json.dumps({"name": "web", "version": "1.0"}))
    (project / "index.js").write_text("console.log('hi')\n")
    before = snapshot(project)
    out = invoke("store", "export", "--all", "--out", project, "--force", "--store", tmp_path / "s.duckdb")
    _one_line_refusal(out, "harness-store-export manifest")
    assert snapshot(project) == before


def test_force_replaces_an_export_only_when_it_holds_just_what_its_manifest_lists(tmp_path):
    from helpers import make_store, rewrite_manifest, snapshot

    store = tmp_path / "s.duckdb"
    make_store(store)
    out = tmp_path / "exp"
    assert invoke("store", "export", "--all", "--out", out, "--store", store).returncode == 0
    (out / "extra.txt").write_text("mine")  # something the export did not write
    before = snapshot(out)
    _one_line_refusal(invoke("store", "export", "--all", "--out", out, "--force", "--store", store),
                      "'extra.txt'")
    assert snapshot(out) == before
    (out / "extra.txt").unlink()
    # a forged manifest that lists a file no export writes (here: a file named like the store)
    rewrite_manifest(out, lambda m: m["tables"].update(x={"file": "s.duckdb", "rows": 0, "sha256": ""}))
    (out / "s.duckdb").write_bytes(b"precious")
    _one_line_refusal(invoke("store", "export", "--all", "--out", out, "--force", "--store", store),
                      "not a harness-store-export manifest")
    assert (out / "s.duckdb").read_bytes() == b"precious"
    (out / "s.duckdb").unlink()
    rewrite_manifest(out, lambda m: m["tables"].pop("x"))
    for version in ("9", 9, None):
        rewrite_manifest(out, lambda m, v=version: m.update(format_version=v))
        _one_line_refusal(invoke("store", "export", "--all", "--out", out, "--force", "--store", store),
                          "manifest")
    rewrite_manifest(out, lambda m: m.update(format_version=1))
    replaced = invoke("store", "export", "--all", "--out", out, "--force", "--store", store)
    assert replaced.returncode == 0, replaced.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", *(e["file"] for e in json.loads((out / "manifest.json").read_text())["tables"].values())])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exp.")]  # no leftovers


def test_force_never_replaces_the_folder_of_the_store_in_use(tmp_path):
    from helpers import make_store, snapshot

    store = tmp_path / "exp" / "s.duckdb"
    (tmp_path / "exp").mkdir()
    make_store(store)
    (tmp_path / "exp" / "manifest.json").write_text(json.dumps(
        {"format": "harness-store-export", "format_version": 1, "tables": {}}))
    before = snapshot(tmp_path / "exp")
    _one_line_refusal(invoke("store", "export", "--all", "--out", tmp_path / "exp", "--force", "--store", store),
                      "store in use")
    assert snapshot(tmp_path / "exp") == before


@pytest.mark.parametrize("change, says", [
    (lambda m: m.update(tables=[]), "field tables must be a mapping"),
    (lambda m: m["tables"]["runs"].pop("sha256"), "field tables.runs.sha256"),
    (lambda m: m.update(format_version="9"), "field format_version must be a whole number"),
    (lambda m: m["tables"]["runs"].update(file="../s.duckdb"), "field tables.runs.file"),
    (lambda m: m["tables"]["runs"].update(rows="many"), "field tables.runs.rows"),
    (lambda m: m.update(migrations="m001"), "field migrations"),
    (lambda m: m["tables"].update({"Bad Name": {}}), "keyed by table names"),
])
def test_a_malformed_manifest_is_one_line_and_changes_nothing(tmp_path, change, says):
    from helpers import make_store, rewrite_manifest, snapshot

    source = tmp_path / "src" / "s.duckdb"
    source.parent.mkdir()
    make_store(source)
    exp = tmp_path / "exp"
    assert invoke("store", "export", "--all", "--out", exp, "--store", source).returncode == 0
    rewrite_manifest(exp, change)
    target = tmp_path / "t" / "t.duckdb"
    target.parent.mkdir()
    make_store(target, trials=1)
    before = snapshot(tmp_path)
    out = invoke("store", "import", exp, "--store", target)
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1 and says in lines[0], out.output
    assert "Traceback" not in out.stderr, out.stderr  # no exception got out of the command
    assert snapshot(tmp_path) == before
