"""Trials in parallel worker processes, each writing its own shard of the store.

DuckDB allows one writer per file, and the search's process holds the store. So each worker
starts from a consistent copy of the store (it reuses every finished trial), writes its own
shard next to it (same folder, so checkpoint paths resolve), and the shards are merged back
when all workers end. Workers run one torch thread each: tiny models train faster as separate
processes than as one process with more threads.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

from harness.contracts import TrialExecutor
from harness.errors import EnvironmentFault, HarnessError, environment_fault


class ProcessExecutor(TrialExecutor):
    """Runs trials in ``workers`` processes (``HARNESS_WORKERS``, default: all cores)."""

    batches = True

    def __init__(self, store, run_id: str, workers: int | None = None, **options):
        self.store = store
        self.run_id = run_id
        self.workers = workers or int(os.environ.get("HARNESS_WORKERS", os.cpu_count() or 1))

    def run(self, spec, progress=None):
        from harness.executors import run_guarded
        from harness.trial import run_trial

        return run_guarded(run_trial, spec, self.store, self.run_id, progress=progress)

    def run_many(self, specs: list) -> list:
        """Train every spec (spreading them over the workers), then return their outcomes."""
        from harness.trial import run_batch

        # after the workers, a store lookup each (a trial a worker failed is retried in here)
        return run_batch(specs, self.store, self.run_id,
                         lambda todo: run_many(todo, self.store, self.run_id, self.workers), self.run)


def run_many(specs: list, store, run_id: str, workers: int) -> None:
    if not specs:
        return
    workers = max(1, min(workers, len(specs)))
    base = store.path.parent
    tag = f".shard-{run_id}-{os.getpid()}"
    jobs = []
    for i in range(workers):
        shard = base / f"{tag}-{i}.duckdb"
        for p in (shard, Path(str(shard) + ".wal")):
            p.unlink(missing_ok=True)
        store.backup(shard)
        job = base / f"{tag}-{i}.pkl"
        job.write_bytes(pickle.dumps(specs[i::workers]))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "harness.plugins.executors.processes", str(job), str(shard),
                                 run_id], env=env, stdout=subprocess.DEVNULL)
        jobs.append((proc, shard, job))
    failures = []
    faults = []
    for proc, shard, job in jobs:
        if proc.wait() != 0:
            fault = _fault_file(job)
            if proc.returncode == EXIT_FAULT:
                try:
                    faults.append(fault.read_text().strip())
                except OSError:  # (the disk it would have been written to may be full)
                    faults.append(f"worker for {job.name} stopped on a fault of the machine (a full "
                                  "disk, a read-only folder: its message is above); fix it and run "
                                  "again: the run resumes")
            else:
                failures.append(f"worker for {job.name} exited with {proc.returncode}")
    try:
        for _, shard, _ in jobs:
            if shard.exists():
                try:
                    store.merge_from(shard)
                except Exception as exc:  # merging needs room in the store too
                    fault = environment_fault(exc, f"merging worker shard {shard.name} into the store")
                    if fault is None:
                        raise
                    faults.append(str(fault))
    finally:
        for _, shard, job in jobs:
            for p in (shard, Path(str(shard) + ".wal"), job, _fault_file(job)):
                p.unlink(missing_ok=True)
    if faults:  # the machine's fault, not a candidate's: the run stops, naming it
        raise EnvironmentFault(faults[0])
    if failures:
        raise HarnessError("; ".join(failures) + " (finished trials were kept)")


EXIT_FAULT = 75  # a worker stopped by an EnvironmentFault (its message in <job>.fault)


def _fault_file(job: Path) -> Path:
    return job.with_suffix(".fault")


def _worker(job: Path, shard: Path, run_id: str) -> int:
    import torch

    from harness.store import Store
    from harness.trial import run_trial

    torch.set_num_threads(1)
    specs = pickle.loads(job.read_bytes())
    try:
        with Store.open(shard) as store:
            _work(specs, store, run_id, run_trial)
    except Exception as exc:
        fault = environment_fault(exc, "a worker's trial")
        if fault is None:
            raise
        try:
            _fault_file(job).write_text(str(fault) + "\n")
        except OSError:
            pass
        print(f"error: {fault}", file=sys.stderr, flush=True)
        return EXIT_FAULT
    return 0


def _work(specs, store, run_id, run_trial) -> None:
    from harness.executors import run_guarded

    for spec in specs:
        start = time.perf_counter()
        out = run_guarded(run_trial, spec, store, run_id)
        print(f"{spec.encoder} + {spec.llm} r={spec.ratio} seed={spec.seed}: {out.status} "
              f"{'reused' if out.reused else f'{time.perf_counter() - start:.1f}s'}",
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(_worker(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
