"""Synthetic tables (benchmarks/synthetic.py): ordinary exports of a known generative model,
log-linear from the smallest ratio when the pre-learning phase is 0, replayable by Mordal."""

import hashlib
import math

import duckdb
import numpy as np
import pytest
import yaml
from harness.store import Store
from harness.store.exchange import import_export, read_export
from helpers import ROOT, invoke

from benchmarks.synthetic import (
    SALT_FEATURES,
    Params,
    generate,
    main,
    ratio_taus,
    write_synthetic_table,
)

SHIPPED = ROOT / "benchmarks" / "tables" / "minizoo"


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """The default world (48 candidates, six tasks, three seeds) with no pre-learning phase."""
    folder = tmp_path_factory.mktemp("synthetic") / "paper"
    manifest = write_synthetic_table(folder, seed=1, suite_path=folder.parent / "paper.yaml")
    return folder, manifest


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small world (3 x 3 candidates, two tasks, two seeds) with a long pre-learning phase."""
    folder = tmp_path_factory.mktemp("synthetic") / "small"
    manifest = write_synthetic_table(folder, seed=2, n_encoders=3, n_llms=3, tasks=2, seeds=2, prelearn=3.0,
                                     encoder_clusters=2, llm_clusters=2, suite_path=folder.parent / "small.yaml")
    return folder, manifest


def _views(folder, manifest):
    con = duckdb.connect()
    for name, entry in manifest["tables"].items():
        con.execute(f"create view {name} as select * from read_parquet('{folder / entry['file']}')")
    return con


def test_a_synthetic_table_is_an_ordinary_export_that_imports_into_a_store(paper, tmp_path):
    folder, written = paper
    manifest = read_export(folder)  # format, files, hashes, row counts
    assert manifest["tables"] == written["tables"]
    assert manifest["synthetic"]["params"]["seed"] == 1 and manifest["synthetic"]["names"] == "zoo"
    con = _views(folder, manifest)
    with Store.open(tmp_path / "s.duckdb") as store:
        # the same tables, with the same columns, as the store an export is read into
        here = {r[0] for r in store.con.execute("select table_name from duckdb_tables() where schema_name = 'main'").fetchall()}
        assert set(manifest["tables"]) <= here
        for name in manifest["tables"]:
            theirs = [r[0] for r in con.execute(f"describe {name}").fetchall()]
            ours = [r[0] for r in store.con.execute(f'describe "{name}"').fetchall()]
            assert theirs == ours, name
        added = import_export(store, folder)
        assert added["trials"] == 48 * 5 * 3 and added["scores"] == 48 * 5 * 3 * 6
        assert added["similarities"] == manifest["tables"]["similarities"]["rows"] > 0
        assert import_export(store, folder)["trials"] == 0  # by content key: twice adds nothing
        # what anytime's load_world reads: done trials from scratch joined with their scores
        n = store.query("""select count(*) as n from trials t join scores s using (trial_key)
                           where t.status = 'done' and t.continued_from is null""")[0]["n"]
        assert n == 48 * 5 * 3 * 6
        # a ground truth per seed, ranking every task by the mean over seeds at r = 1
        grids = store.query("""select r.seed, count(distinct k.task) as tasks, count(*) as rows from runs r
                               join rankings k using (run_id) where r.ground_truth group by 1 order by 1""")
        assert [(g["seed"], g["tasks"], g["rows"]) for g in grids] == [(s, 6, 6 * 48) for s in range(3)]


def test_anytime_load_world_reads_every_case(paper):
    from benchmarks.anytime import load_world

    folder, manifest = paper
    world = load_world(folder)
    w = manifest["world"]
    assert set(world) == {(t, s) for t in w.tasks for s in range(3)}
    for (task, seed), scores in world.items():
        assert len(scores) == 48 * 5
        t = w.tasks.index(task)
        assert scores[(w.encoders[0], w.llms[0], 1.0)] == w.scores[seed, t, 0, 0, -1]


def test_prelearn_0_is_log_linear_so_low_ratios_rank_like_full_data(paper):
    from benchmarks.anytime import load_world
    from benchmarks.common import tau

    folder, manifest = paper
    world, w = load_world(folder), manifest["world"]
    cands = [(e, m) for e in w.encoders for m in w.llms]
    taus = {r: np.mean([tau([world[c][(*k, r)] for k in cands], [world[c][(*k, 1.0)] for k in cands])
                        for c in world]) for r in (0.0625, 0.125, 0.25, 0.5)}
    assert taus[0.0625] > 0.45 and taus[0.5] > 0.7, taus
    # the noiseless curves are exactly log-linear over every ratio, and the noisy ones nearly so
    x = np.log2([0.0625, 0.125, 0.25, 0.5, 1.0])
    r2 = []
    for c in world:
        for k in cands:
            y = np.array([world[c][(*k, r)] for r in (0.0625, 0.125, 0.25, 0.5, 1.0)])
            if np.ptp(y) > 0.05:
                fit = np.polyval(np.polyfit(x, y, 1), x)
                r2.append(1 - np.sum((y - fit) ** 2) / np.sum((y - y.mean()) ** 2))
    assert len(r2) > 0.8 * len(world) * len(cands) and np.median(r2) > 0.9
    clean = [w.curve(0, 0, 0, r) for r in (0.0625, 0.125, 0.25, 0.5, 1.0)]
    assert np.allclose(np.diff(clean), np.diff(clean)[0]) and clean[0] > w.floor[w.tasks[0]]


def test_a_long_prelearning_phase_leaves_low_ratios_uninformative(small):
    _, manifest = small
    taus = ratio_taus(manifest["world"])
    assert abs(taus[0.0625]) < 0.2 and abs(taus[0.125]) < 0.3, taus
    # the same structure drawn with the default size: the low ratios say nothing, r = 1/2 some
    long = ratio_taus(generate(Params(seed=2, prelearn=3.0, names="synthetic")))
    short = ratio_taus(generate(Params(seed=2, prelearn=0.0, names="synthetic")))
    assert long[0.0625] < 0.1 and long[0.125] < 0.15 and short[0.0625] > 0.45, (long, short)
    assert long[0.5] < short[0.5]


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_scores(small, tmp_path):
    _, first = small
    again = write_synthetic_table(tmp_path / "again", seed=2, n_encoders=3, n_llms=3, tasks=2, seeds=2,
                                  prelearn=3.0, encoder_clusters=2, llm_clusters=2)
    other = write_synthetic_table(tmp_path / "other", seed=3, n_encoders=3, n_llms=3, tasks=2, seeds=2,
                                  prelearn=3.0, encoder_clusters=2, llm_clusters=2)
    for table in first["tables"]:
        assert again["tables"][table]["sha256"] == first["tables"][table]["sha256"], table
    digest = hashlib.sha256((tmp_path / "again" / "scores.parquet").read_bytes()).hexdigest()
    assert digest == first["tables"]["scores"]["sha256"]
    assert other["tables"]["scores"]["sha256"] != first["tables"]["scores"]["sha256"]
    assert not np.array_equal(other["world"].scores, first["world"].scores)


def test_worlds_that_differ_only_in_prelearn_share_components_and_full_data_scores():
    a = generate(Params(seed=5, prelearn=0.0, names="synthetic"))
    b = generate(Params(seed=5, prelearn=2.5, names="synthetic"))
    assert np.array_equal(a.full, b.full) and a.clusters() == b.clusters()
    assert np.array_equal(a.scores[..., -1], b.scores[..., -1])  # r = 1 is past every onset
    assert (b.onset > 0).all() and (a.onset == 0).all()


def test_no_key_of_a_synthetic_table_is_a_real_trial_or_similarity(paper):
    folder, manifest = paper
    con = _views(folder, manifest)
    for table, key in (("trials", "trial_key"), ("similarities", "similarity_key")):
        shared = con.execute(f"select count(*) from {table} where {key} in "
                             f"(select {key} from read_parquet('{SHIPPED / (table + '.parquet')}'))").fetchone()[0]
        assert shared == 0, table
    # yet the components are the zoo's, under the fingerprints a replay derives
    shipped = {r[0] for r in con.execute(f"select fingerprint from read_parquet('{SHIPPED / 'components.parquet'}')").fetchall()}
    assert {r[0] for r in con.execute("select fingerprint from components").fetchall()} <= shipped


def test_similarities_cut_into_the_generated_clusters(paper):
    from harness.plugins.strategies.clustering import cluster

    from harness.suite import load_suite

    folder, manifest = paper
    w = manifest["world"]
    suite = load_suite(folder.parent / "paper.yaml")
    assert suite.search.clustering.samples == SALT_FEATURES
    con = _views(folder, manifest)
    fp = dict(con.execute("select ref, fingerprint from components").fetchall())
    # one task, one seed, one CKA variant: the encoders' similarities (the config-null rows)
    for level, names, cut in (("encoder", w.encoders, suite.search.clustering.distance_cut("encoder")),
                              ("llm", w.llms, suite.search.clustering.distance_cut("llm"))):
        values = {}
        for a, b, v in con.execute("select a, b, value from similarities where config is null").fetchall():
            values.setdefault((a, b), []).append(v)
        sim = np.eye(len(names))
        for i, x in enumerate(names):
            for j, y in enumerate(names):
                if i != j:
                    vs = values.get((fp[x], fp[y])) or values[(fp[y], fp[x])]
                    sim[i, j] = vs[0]
        found = sorted(sorted(c.members) for c in cluster(names, sim, cut, suite.search.clustering.linkage))
        assert found == sorted(sorted(c) for c in w.clusters()[level]), level


def test_mordal_replays_on_a_synthetic_table_and_clusters_as_generated(small, tmp_path):
    folder, manifest = small
    w = manifest["world"]
    store = tmp_path / "replay.duckdb"
    suite = yaml.safe_load((folder.parent / "small.yaml").read_text())
    suite["targets"] = suite["targets"][1:]  # one target: one replay
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(suite))
    done = invoke("replay", "--table", folder, "--suite", tmp_path / "one.yaml", "--store", store, "--seed", "1")
    assert done.returncode == 0, done.output
    assert f"ranking on {w.tasks[1]}" in done.output and "nothing trained: 0 filled" in done.output
    with Store.open(store, read_only=True) as st:
        runs = st.query("select run_id from runs where strategy = 'mordal' and status = 'done'")
        assert len(runs) == 1
        for run in runs:
            got = st.query("select member, cluster_id from clusters where run_id = ? and level = 'encoder'",
                           [run["run_id"]])
            groups = {}
            for r in got:
                groups.setdefault(r["cluster_id"], []).append(r["member"])
            assert sorted(map(sorted, groups.values())) == sorted(map(sorted, w.clusters()["encoder"]))
        trained = st.query("select count(*) as n from trials where run_id in (select run_id from runs "
                           "where strategy = 'mordal')")[0]["n"]
        assert trained == 0  # every trial it asked for was the table's


def test_the_cli_prints_one_line_and_a_world_beyond_the_zoo_has_synthetic_names(tmp_path, capsys):
    from benchmarks.anytime import load_world

    assert main(["--out", str(tmp_path / "big"), "--encoders", "12", "--llms", "3", "--tasks", "2",
                 "--seeds", "1", "--prelearn", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "Kendall tau with r=1" in line and "r=1/16" in line and "not replayable" in line
    world = load_world(tmp_path / "big")
    assert set(world) == {("syn:task-00", 0), ("syn:task-01", 0)}
    assert len(world[("syn:task-00", 0)]) == 36 * 5 and not (tmp_path / "big.yaml").exists()
    assert main(["--out", str(tmp_path / "big"), "--encoders", "12"]) == 2  # exists: --force to replace
    assert "exists" in capsys.readouterr().err
    assert all(not math.isnan(v) for v in world[("syn:task-00", 0)].values())


def test_a_suite_file_the_generator_did_not_write_is_never_overwritten(tmp_path, capsys):
    """The suite beside the table is replaced only when this command wrote it, and only with
    --force; a user's file at that path is refused, left as it was, and no table is written."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: my-suite\n")
    small = ["--encoders", "3", "--llms", "2", "--encoder-clusters", "2", "--llm-clusters", "2", "--tasks", "1",
             "--seeds", "1"]
    assert main(["--out", str(tmp_path / "mine"), *small]) == 2
    assert "mine.yaml" in capsys.readouterr().err and mine.read_text() == "name: my-suite\n"
    assert not (tmp_path / "mine").exists()
    assert main(["--out", str(tmp_path / "w"), *small]) == 0
    written = (tmp_path / "w.yaml").read_text()
    assert main(["--out", str(tmp_path / "w"), *small, "--seed", "1"]) == 2  # written before: --force
    assert "--force" in capsys.readouterr().err and (tmp_path / "w.yaml").read_text() == written
    assert main(["--out", str(tmp_path / "w"), *small, "--seed", "1", "--force"]) == 0
    assert (tmp_path / "w.yaml").read_text() != written
