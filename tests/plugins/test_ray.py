"""``executor: ray`` on a real local Ray instance: same rankings as ``local``, a killed worker's
trial retried, a killed driver resumed from the store with nothing finished trained again."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import helpers
from helpers import fetch, invoke

pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e \".[ray]\"")

SUITE = {**helpers.TINY_MORDAL, "name": "ray-test",
         "zoo": {"vision_encoders": ["tiny:vit-p8", "tiny:resnet"],
                 "language_models": ["tiny:gpt2", "tiny:mistral"]}}
RAY = {"name": "ray", "address": "local", "num_cpus": 2, "retries": 2}


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the in-process tests (the executor uses a connected driver as
    it is), so its workers stay warm between runs."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}})
    yield ray
    ray.shutdown()


def run_in_process(suite_path, store):
    """`harness run SUITE --store STORE` in this process: exit code."""
    from harness.runner import run_suite
    from harness.suite import load_suite

    return run_suite(load_suite(suite_path), suite_path, store)


def ranking(store, strategy):
    return fetch(store, "select k.rank, k.encoder, k.llm, k.score, k.measured_or_predicted from rankings k"
                 " join runs r using (run_id) where r.strategy = ? order by r.started_at desc, k.rank",
                 (strategy,))


# Mordal with ASHA at two workers: promotions decided with a trial in flight, trained in pairs on Ray
ASHA_2 = {"search.intra.policy": "asha", "search.intra.options": {"workers": 2}}


# the learned search with two trials in flight: each next one chosen while the other trains
LEARNED_2 = {"search.options": {"workers": 2, "confidence": 0.95, "budget": 0.75, "ratios": [0.5, 1.0]}}


@pytest.mark.long
@pytest.mark.parametrize("strategy, changes", [("grid", {}), ("mordal", {}), ("mordal", ASHA_2),
                                               ("learned", LEARNED_2)],
                         ids=["grid", "mordal", "mordal-asha-2-workers", "learned-2-workers"])
def test_ray_ranks_exactly_like_local_for_grid_and_mordal(tmp_path, ray_cluster, strategy, changes):
    stores = {}
    for executor in ("local", RAY):
        name = "local" if executor == "local" else "ray"
        suite = helpers.write_suite(tmp_path, SUITE, f"{strategy}-{name}.yaml",
                                       **{"search.strategy": strategy, "executor": executor, **changes})
        stores[name] = tmp_path / f"{strategy}-{name}.duckdb"
        assert run_in_process(suite, stores[name]) == 0
    assert ranking(stores["ray"], strategy) == ranking(stores["local"], strategy)
    steps = "select step, encoder, llm, sample_ratio, score, pick_encoder, pick_llm from search_steps order by step"
    assert fetch(stores["ray"], steps) == fetch(stores["local"], steps)  # learned's decisions (else none)
    assert strategy != "learned" or len(fetch(stores["local"], steps)) >= 3  # more than one window
    # the driver wrote every row: trials record the node that ran them, no shard is left
    nodes = fetch(stores["ray"], "select count(*), count(node) from trials where status = 'done'", one=True)
    assert nodes[0] > 0 and nodes[0] == nodes[1]
    assert fetch(stores["local"], "select count(node) from trials", one=True) == (0,)
    assert not list(tmp_path.glob(".ray-shard-*"))
    # the same trials (content keys) and scores
    keys = [fetch(s, "select t.trial_key, s.value from trials t join scores s using (trial_key)"
                     " order by all") for s in (stores["local"], stores["ray"])]
    assert keys[0] == keys[1]


def _trial_workers():
    """PIDs of Ray worker processes running a trial (Ray titles them ray::_trial_task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::_trial_task"):
                pids.append(int(entry.name))
    return pids


@pytest.mark.long
def test_a_killed_worker_is_retried_and_the_search_finishes(tmp_path, ray_cluster, capfd):
    suite = helpers.write_suite(tmp_path, SUITE, "grid.yaml",
                                   **{"search.strategy": "grid", "executor": RAY})
    store = tmp_path / "s.duckdb"
    killed = []

    def killer():
        deadline = time.time() + 300
        while not killed and time.time() < deadline:
            for pid in _trial_workers():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    code = run_in_process(suite, store)
    thread.join(timeout=1)
    assert killed, "no trial worker was seen to kill"
    assert code == 0
    assert "retrying (attempt 2 of 3)" in capfd.readouterr().err
    assert fetch(store, "select count(*) filter (where status = 'done'), count(*) from trials", one=True) == (4, 4)


@pytest.mark.long
def test_a_rerun_after_the_driver_is_killed_trains_nothing_already_finished(tmp_path, ray_cluster):
    # the driver is a process of its own that joins the running instance by its address
    address = ray_cluster.get_runtime_context().gcs_address
    suite = helpers.write_suite(tmp_path, SUITE, "grid.yaml", **{
        "search.strategy": "grid", "executor": {**RAY, "address": address, "max_concurrent": 1}})
    store = tmp_path / "s.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--store", str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    finished = 0
    try:
        for line in proc.stderr:
            if line.startswith("ray: ") and " done, " in line:
                finished += 1
                if finished == 2:
                    break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, mid-search
        proc.wait(timeout=60)
    assert finished == 2
    before = fetch(store, "select count(*) from trials where status = 'done'", one=True)[0]
    assert 2 <= before < 4
    assert run_in_process(suite, store) == 0
    run_id = fetch(store, "select run_id from runs order by started_at desc limit 1", one=True)[0]
    trained, reused = fetch(store, "select count(*) filter (where not reused), count(*) filter (where reused)"
                                   " from run_uses where run_id = ? and kind = 'trial'", (run_id,), one=True)
    assert (trained, reused) == (4 - before, before)
    statuses = fetch(store, "select status, count(*) from runs group by 1 order by 1")
    assert statuses == [("done", 1), ("interrupted", 1)]


def test_suite_with_ray_fields_validates_and_bad_fields_are_named(tmp_path):
    good = helpers.write_suite(tmp_path, SUITE, "good.yaml",
                                  **{"executor": {"name": "ray", "address": "auto", "gpus_per_trial": 1,
                                                  "cpus_per_trial": 2, "max_concurrent": 4, "retries": 1}})
    assert invoke("validate", good).returncode == 0
    bad = helpers.write_suite(tmp_path, SUITE, "bad.yaml",
                                 **{"executor": {"name": "ray", "retries": -1, "gpus": 1}})
    out = invoke("validate", bad)  # the misspelt key first, with what it may have meant
    assert out.returncode == 2 and "executor.gpus" in out.stderr and "gpus_per_trial" in out.stderr
    bad = helpers.write_suite(tmp_path, SUITE, "bad.yaml",
                                 executor={"name": "ray", "options": {"retries": -1}})
    out = invoke("validate", bad)  # the Ray options are RayExecutor's Options, wherever written
    assert out.returncode == 2 and "executor.options.retries" in out.stderr
    assert "bad.yaml:" in out.stderr and "greater than or equal to 0" in out.stderr


# was slow-marked: once, in a full default run, the driver exited 0 after the SIGINT. The cause
# was DuckDB turning a Ctrl-C during a statement into RuntimeError('Query interrupted'), which the
# per-candidate handlers took for a candidate's failure (fixed: harness.errors.interrupted);
# 8 of 8 runs passed after the fix, under load
@pytest.mark.long
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_driver_cancels_tasks_and_leaves_the_store_consistent(tmp_path, ray_cluster, sig):
    address = ray_cluster.get_runtime_context().gcs_address
    suite = helpers.write_suite(tmp_path, SUITE, "grid.yaml", **{
        "search.strategy": "grid", "executor": {**RAY, "address": address, "max_concurrent": 1}})
    store = tmp_path / "s.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--store", str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("ray: ") and " done, " in line:
            proc.send_signal(sig)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, rest[-2000:]
    assert "interrupted" in rest and "Traceback" not in rest
    assert fetch(store, "select status from runs", one=True) == ("interrupted",)
    assert fetch(store, "select count(*) from trials where status = 'running'", one=True) == (0,)
    assert 1 <= fetch(store, "select count(*) from trials where status = 'done'", one=True)[0] < 4
    assert not list(tmp_path.glob(".ray-shard-*"))


@pytest.mark.long
def test_a_continued_trial_on_a_worker_resumes_the_parent_it_is_sent(tmp_path, ray_cluster):
    """The worker's scratch store starts empty: the driver sends the parent's row and checkpoint
    files, so the worker trains only the extra samples and sends back only its own files."""
    from harness.store import Store

    from harness.ray_executor import _trial_task
    from harness.scoring import Target
    from harness.training import TrainConfig
    from harness.trial import TrialSpec, parent_state, run_trial

    spec = TrialSpec(encoder="tiny:vit-p4", llm="tiny:gpt2", alignment="shapes:align", samples=64, seed=1, device="cpu", ratio=0.5,
                     train=TrainConfig(llm="lora", batch_size=16, epochs=1, schedule="constant", warmup=0.0),
                     targets=(Target("shapes:count", limit=8),))
    with Store.open(tmp_path / "driver.duckdb") as store:
        run_id = store.start_run(suite_name="ray-continue")
        half = run_trial(spec, store, run_id)
        child = TrialSpec(**{**spec.__dict__, "ratio": 1.0, "after": (0.5,)})
        state = parent_state(child, store)
        assert state is not None and state["row"]["trial_key"] == half.key
        result = _trial_task(child, run_id, 1, None, state)
    assert result["status"] == "done"
    assert all(rel.startswith(f"checkpoints/{result['key']}/") for rel in result["files"])
    shard = tmp_path / "shard.duckdb"
    shard.write_bytes(result["shard"])
    rows = fetch(shard, "select trial_key, continued_from, samples_seen, wall_seconds from trials"
                 " order by sample_ratio")
    assert [r[0] for r in rows] == [half.key, result["key"]]
    assert rows[0][2:] == (half.samples_seen, pytest.approx(half.wall_seconds))  # not trained again
    assert rows[1][1] == half.key and 0 < rows[1][2] < 2 * half.samples_seen


@pytest.mark.long
def test_submitted_trials_run_while_the_driver_waits_for_one_and_close_cancels_the_rest(tmp_path, ray_cluster):
    """``submit`` returns at once (nothing is in the store yet); ``run`` of one submitted trial
    waits for that one and merges it; ``close`` cancels what was submitted and never asked for,
    so none of it reaches the store, and a later ``run`` trains it."""
    from harness.store import Store

    from harness.ray_executor import RayExecutor
    from harness.scoring import Target
    from harness.training import TrainConfig
    from harness.trial import TrialSpec, identify

    def spec(llm, ratio):
        return TrialSpec(encoder="tiny:vit-p4", llm=llm, alignment="shapes:align", samples=64, seed=3, device="cpu", ratio=ratio,
                         train=TrainConfig(llm="full", batch_size=16, epochs=1),
                         targets=(Target("shapes:count", limit=8),))

    first, second, third = spec("tiny:gpt2", 0.5), spec("tiny:mistral", 0.5), spec("tiny:gpt2", 1.0)
    with Store.open(tmp_path / "driver.duckdb") as store:
        run_id = store.start_run(suite_name="ray-submit")
        ex = RayExecutor(store, run_id, address="local", max_concurrent=2, quiet=True)
        ex.submit([first, second, first])  # the same trial twice is submitted once
        assert len(ex._running) == 2 and not ex._queue
        assert store.get_trial(identify(first)[0]) is None  # not waited for
        outcome = ex.run(second)
        assert outcome.status == "done" and outcome.trained
        assert store.get_trial(identify(second)[0])["status"] == "done"
        again = ex.run(first)  # merged while the driver waited for the second, or waited for now
        assert again.status == "done" and again.trained and not again.reused and not ex._pending
        ex.submit([third, first])  # a stored trial is not submitted again
        assert list(ex._pending) != [] and len(ex._pending) == 1
        ex.close()
        assert not ex._pending and not ex._running
        assert store.get_trial(identify(third)[0]) is None  # cancelled: nothing merged
        assert ex.run(third).status == "done"
