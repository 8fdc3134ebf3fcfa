"""Searches end to end on tiny models: real training, real lmms-eval, a real store file."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import helpers
from helpers import fetch, harness, invoke, last_run, search_suite, trials_of

ENCODERS = helpers.TINY_MORDAL["zoo"]["vision_encoders"]


def test_mordal_runs_end_to_end_then_reuses_everything(searched_once, tmp_path):
    # the session's search (tests/conftest.py): `harness run` in a fresh store, what it said, and
    # a copy of its store as that run left it
    first = searched_once.first
    store = searched_once.copy(tmp_path / "searched", mordal_only=True)
    suite = store.parent / "suite.yaml"
    assert first.returncode == 0, first.stderr
    assert "best VLM:" in first.stdout and "mordal ranking" in first.stdout
    assert "Postprocessing" not in first.stderr  # lmms-eval's own bars stay quiet
    # the answer says how sure it is: the runner-up, and the spend against the grid's
    assert "runner-up: " in first.stdout and "pick vs runner-up: " in first.stdout
    assert "for the grid of 6 candidates at r = 1" in first.stdout
    # status on stderr, one line per finished trial, each naming its task (stderr is a pipe here)
    done = [line for line in first.stderr.splitlines() if " done: " in line]
    assert done and all(line.startswith("[shapes:color] trial ") for line in done)
    assert "best VLM:" not in first.stderr and "run " not in first.stdout.splitlines()[0]
    run_1, status = last_run(store)
    assert status == "done"
    trained, reused = trials_of(store, run_1)
    assert trained > 0

    con = duckdb.connect(str(store), read_only=True)
    ranking = con.execute("select encoder, llm, measured_or_predicted, stage from rankings"
                          " where run_id = ? order by rank", [run_1]).fetchall()
    assert len(ranking) == 6 and len(set((r[0], r[1]) for r in ranking)) == 6
    assert ranking[0][2] == "predicted" and ranking[0][3] == "survivor"
    assert con.execute("select count(*) from clusters where run_id = ? and level = 'encoder'",
                       [run_1]).fetchone()[0] == 3
    # one LLM clustering per encoder cluster: each LLM appears once per context
    assert con.execute("select count(distinct context), count(*) from clusters where run_id = ?"
                       " and level = 'llm'", [run_1]).fetchone() == (3, 6)
    assert con.execute("select count(*) from embeddings").fetchone()[0] >= 3 + 2
    assert con.execute("select count(*) from similarities").fetchone()[0] >= 3
    assert con.execute("select count(*) from rungs where run_id = ?", [run_1]).fetchone()[0] > 0
    assert con.execute("select count(*) from scaling_points where run_id = ?", [run_1]).fetchone()[0] == 2
    assert con.execute("select count(*) from predictions where run_id = ?", [run_1]).fetchone()[0] == 1
    board = con.execute("select * from leaderboard").fetchall()
    assert len(board) == 6
    # what each place rests on; the predicted pick carries its interval
    basis = con.execute("select basis, lower, score, upper, error from rankings where run_id = ?"
                        " order by rank", [run_1]).fetchall()
    assert basis[0][0] == "predicted" and basis[0][1] <= basis[0][2] <= basis[0][3]
    assert {b[0] for b in basis[1:]} <= {"eliminated", "cluster"}
    assert all(b[4] is not None for b in basis if b[0] == "eliminated")
    # the constant-answer baseline, computed once and stored
    from harness.strategies.base import task_baseline
    assert con.execute("select task, n_items, value from task_baselines").fetchall() == [
        ("shapes:color", 8, pytest.approx(task_baseline("shapes:color", 8)[1]))]
    con.close()

    start = time.perf_counter()
    again = invoke("run", suite, "--store", store)
    assert again.returncode == 0, again.stderr
    run_2, _ = last_run(store)
    assert trials_of(store, run_2) == (0, trained + reused)
    assert "0 trained" in again.stdout
    con = duckdb.connect(str(store), read_only=True)
    same = [con.execute("select encoder, llm from rankings where run_id = ? order by rank", [r]).fetchall()
            for r in (run_1, run_2)]
    assert same[0] == same[1]  # same suite + seed = same ranking
    con.close()


def test_representatives_confirmation_and_estimated_ranking_end_to_end(tmp_path):
    """Issue 13's options on a real run: one encoder cluster of 3 and one LLM per cluster, so
    the inter stage compares two clusters of three, each by its medoid and its farthest
    member; two survivors, confirmed at r = 1 where their intervals overlap; the rest by
    estimated full-data score."""
    store = tmp_path / "s.duckdb"
    suite = search_suite(tmp_path, **{
        "search.clustering.t_ve": 0.0, "search.clustering.t_llm": 1.0,
        "search.clustering.representatives": 2,
        "search.inter.top_k": 1, "search.intra.top_k": 2,
        "search.predictor.confirm": 2, "search.rank_below": "estimate"})
    out = invoke("run", suite, "--store", store)
    assert out.returncode == 0, out.stderr
    run_id = last_run(store)[0]
    assert fetch(store, "select count(distinct member) from clusters where run_id = ? and level = 'encoder'",
                 [run_id], one=True) == (3,)
    inter = fetch(store, "select encoder, llm, kept, score, trial_key from rungs where run_id = ?"
                  " and phase = 'inter' and rung = 0", [run_id])
    assert len(inter) == 4 and sum(k for _, _, k, _, _ in inter) == 2  # 2 clusters x 2 representatives
    assert len({(e, ll) for e, ll, *_ in inter}) == 4 and all(t for *_, t in inter)
    kept_llm = {ll for _, ll, k, _, _ in inter if k}
    assert len(kept_llm) == 1  # both representatives of the kept cluster are marked kept
    # the kept cluster's best representative beat the dropped one's best
    best = {k: max(s for _, _, kk, s, _ in inter if kk == k) for k in (True, False)}
    assert best[True] >= best[False]

    rows = fetch(store, "select rank, basis, score, lower, upper, estimate, stage from rankings"
                 " where run_id = ? order by rank", [run_id])
    assert len(rows) == 6
    top = [r for r in rows if r[6] == "survivor"]
    assert len(top) == 2 and [r[0] for r in top] == [1, 2]
    preds = fetch(store, "select lower, upper from predictions where run_id = ?", [run_id])
    overlap = len(preds) == 2 and preds[0][0] <= preds[1][1] and preds[1][0] <= preds[0][1]
    if overlap:  # both confirmed at r = 1 and ranked by the measured scores
        assert [r[1] for r in top] == ["measured", "measured"] and top[0][2] >= top[1][2]
        assert "confirming at r=1" in out.stderr
        assert fetch(store, "select count(*) from trials t join run_uses u on u.key = t.trial_key"
                     " where u.run_id = ? and t.sample_ratio = 1.0", [run_id], one=True)[0] >= 2
    below = [r for r in rows if r[6] != "survivor"]
    assert all(r[5] is not None for r in below if r[1] == "eliminated")
    estimates = [r[5] for r in below if r[5] is not None]
    assert estimates == sorted(estimates, reverse=True)  # ordered by the estimate


def test_a_component_that_cannot_load_fails_its_candidates_and_the_search_goes_on(tmp_path):
    """Issue 19 item 8: a local checkpoint with damaged weights and an unknown timm name in the
    zoo: their candidates are recorded as failed, clustering puts them alone, the rest is
    searched and ranked, exit 0 with the failures listed."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    broken = tmp_path / "broken-vit"
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2)
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(broken)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:64])  # cut short: unreadable
    # and one that loads but computes NaN (every weight NaN): its features are not finite
    import torch

    nan = tmp_path / "nan-vit"
    model = ViTModel(cfg, add_pooling_layer=False)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    model.save_pretrained(nan)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(nan)
    store = tmp_path / "s.duckdb"
    suite = search_suite(tmp_path, **{"zoo.vision_encoders": ENCODERS[:2]
                                     + [f"hf:{broken}", "timm:no_such_model_anywhere", f"hf:{nan}"],
                                     "search.clustering.t_ve": 0.0})
    assert invoke("validate", suite).returncode == 0  # nothing validation can see
    out = invoke("run", suite, "--store", store)
    assert out.returncode == 0, out.stderr
    assert "best VLM: tiny:" in out.stdout
    assert f"failed: hf:{broken} + " in out.stdout and "failed: timm:no_such_model_anywhere + " in out.stdout
    run_id = last_run(store)[0]
    failed = fetch(store, "select encoder, error from trials where status = 'failed'"
                   " and trial_key like 'unloadable-%'")
    assert {e for e, _ in failed} == {f"hf:{broken}", "timm:no_such_model_anywhere"}
    assert all("cannot be loaded" in err for _, err in failed)
    ranked = fetch(store, "select encoder, score from rankings where run_id = ? order by rank", [run_id])
    assert len(ranked) == 10 and all(not e.startswith(("hf:", "timm:")) for e, _ in ranked[:1])
    # each broken encoder is a cluster of its own; so is the NaN one (a floor of 0 merges the rest)
    alone = fetch(store, "select member, count(*) over (partition by cluster_id) from clusters"
                  " where run_id = ? and level = 'encoder'", [run_id])
    assert {m for m, n in alone if n == 1} == {f"hf:{broken}", "timm:no_such_model_anywhere", f"hf:{nan}"}
    assert "non-finite features" in out.stderr


def test_one_more_encoder_trains_only_what_it_requires(tmp_path):
    store = tmp_path / "s.duckdb"
    grid = search_suite(tmp_path, "grid.yaml", **{"search.strategy": "grid"})
    assert invoke("run", grid, "--store", store).returncode == 0
    assert trials_of(store, last_run(store)[0]) == (6, 0)
    bigger = search_suite(tmp_path, "grid2.yaml", **{
        "search.strategy": "grid",
        "zoo.vision_encoders": ENCODERS + ["tiny:convnext"]})
    out = invoke("run", bigger, "--store", store)
    assert out.returncode == 0, out.stderr
    assert trials_of(store, last_run(store)[0]) == (2, 6)  # convnext x 2 LLMs only


def test_failed_candidate_is_recorded_and_the_search_goes_on(tmp_path):
    store = tmp_path / "s.duckdb"
    # lr 1e30 with no clipping: every candidate's loss goes non-finite, every one fails, and the
    # search still ranks them all (failures last) instead of crashing
    suite = search_suite(tmp_path, **{"search.strategy": "grid", "vlm.optim.lr": 1e30,
                                     "zoo.vision_encoders": ["tiny:vit-p4"]})
    out = invoke("run", suite, "--store", store)
    # every trial failed: the run is failed, exit 5, one line why, and every failure is recorded
    assert out.returncode == 5, out.stderr
    assert "error: every trial failed (2)" in out.stderr and "Traceback" not in out.stderr
    assert out.stdout.count("failed: tiny:vit-p4 + ") == 2
    con = duckdb.connect(str(store), read_only=True)
    rows = con.execute("select status, error from trials").fetchall()
    assert rows and all(s == "failed" and "non-finite" in e for s, e in rows)
    assert con.execute("select status from runs").fetchall() == [("failed",)]
    assert con.execute("select count(*) from rankings where score is null").fetchone()[0] == 2


def test_ablation_switches_change_the_plan(tmp_path):
    store = tmp_path / "s.duckdb"
    suite = search_suite(tmp_path, **{"search.clustering.enabled": False,
                                     "search.predictor.enabled": False,
                                     "search.early_stopping": False,
                                     "zoo.vision_encoders": ["tiny:vit-p4", "tiny:resnet"]})
    out = invoke("run", suite, "--store", store)
    assert out.returncode == 0, out.stderr
    run_id = last_run(store)[0]
    con = duckdb.connect(str(store), read_only=True)
    # no clustering: no features computed, no clusters recorded
    assert con.execute("select count(*) from clusters where run_id = ?", [run_id]).fetchone()[0] == 0
    assert con.execute("select count(*) from embeddings").fetchone()[0] == 0
    assert con.execute("select count(*) from predictions").fetchone()[0] == 0
    ratios = {r[0] for r in con.execute("select distinct sample_ratio from rungs").fetchall()}
    assert ratios == {1.0}  # no early stopping: every rung at the full budget
    assert con.execute("select count(*) from rankings where run_id = ? and measured_or_predicted"
                       " = 'predicted'", [run_id]).fetchone()[0] == 0


def test_compare_against_the_grid(searched):
    store, _, mordal_run, _, grid_run = searched  # a Mordal search, then the grid of its candidates
    out = invoke("compare", mordal_run, grid_run, "--store", store, "--json")
    assert out.returncode == 0, out.stderr
    import json

    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["task"] == "shapes:color" and row["grid_trials"] == 6
    assert row["speedup"] > 0 and 0 <= row["ndcg_at_5"] <= 1
    tau = row["weighted_tau_top10"]
    assert tau != tau or -1 <= tau <= 1  # NaN when the tiny grid ties everywhere
    bad = invoke("compare", mordal_run, mordal_run, "--store", store)
    assert bad.returncode != 0 and "grid" in bad.stderr


@pytest.mark.long
def test_killed_run_resumes_without_repeating_finished_trials(tmp_path):
    store = tmp_path / "s.duckdb"
    suite = search_suite(tmp_path, **{"search.strategy": "grid"})
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--store", str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # the writer holds the store's lock; watch the checkpoints it writes beside it instead
    while time.monotonic() < deadline:
        ckpts = list((tmp_path / "checkpoints").glob("*/trainable.safetensors"))
        if len(ckpts) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    con = duckdb.connect(str(store))  # a writable open recovers the WAL
    finished = {r[0] for r in con.execute("select trial_key from trials where status = 'done'").fetchall()}
    con.close()
    assert len(finished) >= 1
    out = invoke("run", suite, "--store", store)
    assert out.returncode == 0, out.stderr
    con = duckdb.connect(str(store), read_only=True)
    run_id = con.execute("select run_id from runs order by started_at desc limit 1").fetchone()[0]
    reused = {r[0] for r in con.execute("select key from run_uses where run_id = ? and reused",
                                        [run_id]).fetchall()}
    assert finished <= reused  # nothing finished before the kill was trained again
    statuses = dict(con.execute("select status, count(*) from runs group by status").fetchall())
    assert statuses.get("interrupted") == 1 and statuses.get("done") == 1


@pytest.mark.long
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_run_exits_130_and_marks_its_trial(tmp_path, sig):
    """Ctrl-C (SIGINT) and SIGTERM stop a local run the same way: exit 130, the run
    `interrupted`, the trial it was training `failed` (never left `running`), no traceback."""
    store = tmp_path / "s.duckdb"
    suite = search_suite(tmp_path, **{"search.strategy": "grid", "alignment.samples": 128,
                                     "vlm.optim.epochs": 2})
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--store", str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    # a checkpoint is written when training ends, before scoring: at the second one, the
    # first trial is done and the second is being scored
    while len(list((tmp_path / "checkpoints").glob("*/trainable.safetensors"))) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "no trial finished"
        time.sleep(0.05)
    proc.send_signal(sig)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert fetch(store, "select status from runs", one=True) == ("interrupted",)
    statuses = dict(fetch(store, "select status, count(*) from trials group by status"))
    assert "running" not in statuses and statuses.get("done", 0) >= 1
    interrupted = fetch(store, "select error from trials where status = 'failed'")
    # (the signal almost always lands in the second trial's scoring; between trials, none failed)
    assert len(interrupted) <= 1 and all("interrupted by the user" in e for (e,) in interrupted)


@pytest.mark.long
def test_grid_in_worker_processes_matches_the_local_grid(tmp_path):
    local, parallel = tmp_path / "local" / "s.duckdb", tmp_path / "par" / "s.duckdb"
    small = {"search.strategy": "grid", "zoo.vision_encoders": ["tiny:vit-p4", "tiny:resnet"]}
    assert harness("run", search_suite(tmp_path, "a.yaml", **small), "--store", local).returncode == 0
    out = harness("run", search_suite(tmp_path, "b.yaml", executor="processes", **small),
                  "--store", parallel, env={**os.environ, "HARNESS_WORKERS": "2"})
    assert out.returncode == 0, out.stderr
    rows = []
    for store in (local, parallel):
        con = duckdb.connect(str(store), read_only=True)
        rows.append(con.execute("select t.encoder, t.llm, s.value from scores s join trials t"
                                " using (trial_key) order by all").fetchall())
        con.close()
    assert rows[0] == rows[1] and len(rows[0]) == 4
    assert not list(parallel.parent.glob(".shard-*"))


@pytest.mark.slow
def test_quickstart_twice_trains_nothing_the_second_time(tmp_path):
    """The README's quickstart, for real (minutes on 2 cores): run it, run it again."""
    store = tmp_path / "s.duckdb"
    quickstart = helpers.SUITES / "quickstart.yaml"
    start = time.perf_counter()
    first = harness("run", quickstart, "--store", store)
    first_seconds = time.perf_counter() - start
    assert first.returncode == 0, first.stderr
    trained, _ = trials_of(store, last_run(store)[0])
    assert trained > 0 and "best VLM:" in first.stdout
    start = time.perf_counter()
    second = harness("run", quickstart, "--store", store)
    assert second.returncode == 0, second.stderr
    assert trials_of(store, last_run(store)[0]) == (0, trained)
    assert time.perf_counter() - start < first_seconds / 3
    search_run = last_run(store)[0]
    assert "harness run" in first.stdout and "--strategy grid" in first.stdout  # the grid hint

    # its grid (issue 30): the search's answer agrees with it, the pick being the grid's top-1
    # or within one standard error of it on the grid's own measurements
    grid = harness("run", quickstart, "--store", store, "--strategy", "grid")
    assert grid.returncode == 0, grid.stderr
    grid_run = last_run(store)[0]
    pick = fetch(store, "select encoder, llm from rankings where run_id = ? and rank = 1", (search_run,), one=True)
    board = fetch(store, "select encoder, llm, score, error from rankings where run_id = ? order by rank", (grid_run,))
    best = board[0]
    mine = next(r for r in board if (r[0], r[1]) == tuple(pick))
    assert (mine[0], mine[1]) == (best[0], best[1]) or best[2] - mine[2] <= (mine[3] ** 2 + best[3] ** 2) ** 0.5, \
        (pick, board[:3])
    # the search's answer now names its grid instead of the hint
    again = harness("run", quickstart, "--store", store)
    assert "--strategy grid" not in again.stdout and f"(run {grid_run})" in again.stdout


def test_continuation_resumes_survivors_and_charges_each_rung_once(tmp_path):
    """search.continuation on a real run: every trial above a candidate's first ratio resumes
    its trial at the ratio below; the run costs less than the same search trained fresh; a
    rerun reuses everything and ranks the same."""
    constant = {"vlm.optim.schedule": "constant", "vlm.optim.warmup": 0.0}
    cont, fresh = tmp_path / "c.duckdb", tmp_path / "f.duckdb"
    suite = search_suite(tmp_path, "c.yaml", **constant, **{"search.continuation": True})
    assert invoke("run", search_suite(tmp_path, "f.yaml", **constant), "--store", fresh).returncode == 0
    out = invoke("run", suite, "--store", cont)
    assert out.returncode == 0, out.stderr
    run_id = last_run(cont)[0]
    rows = fetch(cont, "select t.encoder, t.llm, t.sample_ratio, t.trial_key, t.continued_from,"
                 " t.samples_seen from run_uses u join trials t on t.trial_key = u.key"
                 " where u.run_id = ? and u.kind = 'trial'", [run_id])
    by_key = {r[3]: r for r in rows}
    continued = [r for r in rows if r[4] is not None]
    assert continued, "no survivor was continued"
    for enc, llm, ratio, _, parent, _ in continued:  # the same candidate one ratio down, used too
        assert parent in by_key and by_key[parent][:2] == (enc, llm) and by_key[parent][2] < ratio
    firsts = {}
    for enc, llm, ratio, *_ in rows:
        firsts[(enc, llm)] = min(ratio, firsts.get((enc, llm), 1.0))
    assert all(r[4] is None for r in rows if r[2] == firsts[(r[0], r[1])])
    # the same decisions, fewer samples: a continued trial pays only what its ratio adds
    samples = {s: fetch(s, "select samples from run_costs", one=True)[0] for s in (cont, fresh)}
    assert samples[cont] < samples[fresh]
    again = invoke("run", suite, "--store", cont)
    assert again.returncode == 0 and "0 trained" in again.stdout
    ranked = [fetch(cont, "select encoder, llm from rankings where run_id = ? order by rank", [r])
              for r in (run_id, last_run(cont)[0])]
    assert ranked[0] == ranked[1]
    assert fetch(cont, "select samples from run_costs where run_id = ?", [last_run(cont)[0]],
                 one=True)[0] == samples[cont]


def _lmms_task(folder, splits):
    """A local lmms-eval task over shapes-world color items, with the given splits."""
    import textwrap

    from harness.datasets import LOCAL_TASK_UTILS
    from harness.plugins.shapes import load_dataset

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "harness_local_utils.py").write_text(LOCAL_TASK_UTILS)
    files = {}
    for split, (source, n) in splits.items():
        copy = load_dataset("color", split=source, n=n, seed=0).to_disk(folder / split)
        files[split] = Path(copy.parquet).resolve()
    lines = "\n".join(f"    {s}: {p}" for s, p in files.items())
    extra = "validation_split: validation\n" if "validation" in files else ""
    (folder / "mycolor.yaml").write_text(textwrap.dedent("""\
        task: mycolor
        dataset_path: parquet
        dataset_kwargs:
          data_files:
        """) + lines + "\n" + extra + textwrap.dedent("""\
        test_split: test
        output_type: generate_until
        doc_to_visual: !function harness_local_utils.doc_to_visual
        doc_to_text: !function harness_local_utils.doc_to_text
        doc_to_target: answer
        generation_kwargs: {max_new_tokens: 4, until: ["\\n", "."], do_sample: false}
        metric_list:
          - {metric: exact_match, aggregation: mean, higher_is_better: true, ignore_case: true}
        """))
    return folder / "mycolor.yaml"


def test_an_lmms_target_is_clustered_on_its_validation_images_and_scored_end_to_end(tmp_path):
    """A local lmms-eval task as the target: clustering features come from its validation
    split (not the alignment data, never its test items), trials are scored on its test split
    through lmms-eval, and a task with only a test split falls back to the alignment data and
    says so."""
    from harness.plugins.lmms import LmmsFamily

    task = _lmms_task(tmp_path / "task", {"validation": ("train", 40), "test": ("test", 16)})
    small = {"zoo.vision_encoders": ["tiny:vit-p4", "tiny:vit-p8"], "zoo.language_models": ["tiny:gpt2"],
             "targets": [{"task": f"lmms:{task}", "limit": 8}]}
    store = tmp_path / "s.duckdb"
    out = invoke("run", search_suite(tmp_path, **small), "--store", store)
    assert out.returncode == 0, out.stderr
    said = "".join((out.stdout + out.stderr).split())  # (rich wraps the long path)
    assert f"clusteringfeaturesoflmms:{task}:16imagesofitsvalidationsplit" in said
    items, _ = LmmsFamily("lmms").features(str(task), n=16, seed=0)
    assert all(":validation:" in it.id for it in items)
    used = {r[0] for r in fetch(store, "select distinct dataset_fingerprint from embeddings")}
    assert items.fingerprint in used
    scores = fetch(store, "select task, n_items from scores")
    assert scores and {s for s, _ in scores} == {f"lmms:{task}"} and {n for _, n in scores} == {8}

    only_test = _lmms_task(tmp_path / "t2", {"test": ("test", 16)})
    items, why = LmmsFamily("lmms").features(str(only_test), n=16, seed=0)
    assert items is None and "no validation or training split" in why
