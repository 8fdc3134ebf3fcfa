"""``executor: ray``: trials as Ray tasks, on one machine or a cluster; only the driver writes the store.

Each trial that the store lacks becomes a Ray task. The task trains and scores the candidate in
a private scratch store of its own (a fresh DuckDB file in a temporary folder on the worker),
then returns that file and the trial's checkpoint files to the driver through Ray's object
store. The driver writes the checkpoints beside its store and merges the scratch store into it
(content-addressed, so a trial merged twice adds nothing): the embedded DuckDB file stays the
single source of truth and is never opened by a worker. Checkpoints of the mini zoo are a few
hundred KB; ``checkpoints`` names a folder every node can reach when they are not (the task
writes there and returns the path instead of the bytes).

Faults: a worker process that dies (SIGKILL, OOM killer) or a node that leaves raises in the
driver's ``ray.get``; the driver resubmits the trial up to ``retries`` times, then records it as
failed (with the reason) and the search goes on. An exception inside the candidate (NaN loss, a
plugin's error) is already a failed trial in the task's scratch store: it is not retried. The
driver killed mid-search loses only trials in flight: every finished trial was merged when it
arrived, and ``harness run`` again reuses them. Ctrl-C cancels the outstanding tasks.

Decisions are made by the strategy from the scores alone, so a Ray run ranks exactly like a
local run with the same seeds; the trials of one rung (or the grid, or the prediction points)
are submitted together through :meth:`RayExecutor.run_many`. :meth:`RayExecutor.submit` starts
trials without waiting (ASHA with ``workers`` > 1 submits each promotion the moment it decides
it): a later ``run`` of the same trial waits for it alone while the others go on.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harness.contracts import TrialExecutor
from harness.errors import BadInput, interrupted

# environment the tasks need to find the same plugins and stores as the driver
_PASSED_ENV = ("HARNESS_LOAD_PLUGINS", "HARNESS_WORKERS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
               "HF_DATASETS_OFFLINE", "TQDM_DISABLE")


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


INSTALL_HINT = "pip install -e \".[ray]\" (or pip install \"ray>=2.9\")"


def _connect(address: str, num_cpus: int | None):
    """ray.init for ``address``: ``local`` starts a Ray instance on this machine, ``auto``
    joins the cluster this machine is part of (``ray start``), anything else is a cluster
    address. An already connected driver (a test's ``ray.init``) is used as it is."""
    import ray

    if ray.is_initialized():
        return ray
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"})
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                  runtime_env={"env_vars": env})
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    term = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        raise BadInput(f"executor.address {address!r}: no Ray cluster to connect to ({exc}); start one "
                       "with `ray start --head`, or use address: local") from None
    finally:
        if main and term is not None:  # ray.init installs its own (it aborts): keep harness's
            signal.signal(signal.SIGTERM, term)
    return ray


def _trial_task(spec, run_id: str, threads: int, shared: str | None, parent: dict | None = None):
    """On a worker: train and score ``spec`` into a scratch store; return the store file, the
    checkpoint files (or their shared location) and where it ran. ``parent``: for a continued
    trial, the row and checkpoint files of the trial it resumes
    (:func:`harness.trial.parent_state`), put into the scratch store first."""
    import ray
    import torch

    from harness.store import Store
    from harness.trial import install_parent_state, run_trial

    torch.set_num_threads(max(1, threads))
    node = ray.get_runtime_context().get_node_id()
    host = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix="harness-ray-") as tmp:
        shard = Path(tmp) / "shard.duckdb"
        with Store.open(shard) as store:
            install_parent_state(store, parent)
            start = time.perf_counter()
            outcome = run_trial(spec, store, run_id)
            store.con.execute("UPDATE trials SET node = ? WHERE trial_key = ?",
                              [f"{host} ({node[:12]})", outcome.key])
            store.con.execute("CHECKPOINT")
        files = {}
        root = Path(tmp)
        for path in sorted((root / "checkpoints").rglob("*")) if (root / "checkpoints").exists() else []:
            rel = path.relative_to(root).as_posix()
            if path.is_file() and rel not in (parent or {}).get("files", {}):
                if shared:  # a folder every node reaches: write there, send the path only
                    target = Path(shared) / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(path.read_bytes())
                    files[rel] = None
                else:
                    files[rel] = path.read_bytes()
        return {"key": outcome.key, "status": outcome.status, "shard": shard.read_bytes(),
                "files": files, "node": node, "host": host, "seconds": time.perf_counter() - start,
                "pid": os.getpid()}


class RayOptions(BaseModel):
    """The ``executor`` mapping of ``name: ray`` (its keys may also sit under ``options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    # local: start a Ray instance on this machine | auto: the cluster of `ray start` | an address
    address: str = Field("local", min_length=1)
    cpus_per_trial: float = Field(1, gt=0, le=1024)
    gpus_per_trial: float = Field(0, ge=0, le=64)
    max_concurrent: int | None = Field(None, ge=1, le=100_000)  # tasks in flight; None: as many as fit
    retries: int = Field(2, ge=0, le=100)  # resubmissions after a worker dies
    checkpoints: str | None = None  # a folder every node reaches; None: back through the object store
    num_cpus: int | None = Field(None, ge=1, le=100_000)  # address local: CPUs of the instance (None: all)


class RayExecutor(TrialExecutor):
    """Trials as Ray tasks (see the module docstring). Options (the suite's ``executor``
    mapping, :class:`RayOptions`): ``address`` (``local`` | ``auto`` | a cluster address),
    ``cpus_per_trial``, ``gpus_per_trial``, ``max_concurrent`` (tasks in flight; default: as many
    as fit), ``retries`` (resubmissions after a worker dies), ``checkpoints`` (a folder every node
    can reach; default: checkpoints travel back through the object store), ``num_cpus`` (for
    ``address: local``: CPUs of the local instance; default all)."""

    Options = RayOptions
    batches = streams = True

    @staticmethod
    def unavailable() -> str | None:
        """Why this executor cannot run here (checked when a suite naming it is validated)."""
        return None if ray_available() else f"executor ray needs Ray, which is not installed: {INSTALL_HINT}"

    def __init__(self, store, run_id: str, quiet: bool = False, **options):
        if not ray_available():
            raise BadInput(f"executor ray needs Ray installed: {INSTALL_HINT}")
        self.options = RayOptions.model_validate(options)
        self.store = store
        self.run_id = run_id
        self.address = self.options.address
        self.cpus_per_trial = self.options.cpus_per_trial
        self.gpus_per_trial = self.options.gpus_per_trial
        self.max_concurrent = self.options.max_concurrent
        self.retries = self.options.retries
        self.checkpoints = self.options.checkpoints
        self.num_cpus = self.options.num_cpus
        self.quiet = quiet
        self.nodes: dict[str, dict[str, int]] = {}  # host -> {"done": n, "running": n}
        # trials submitted and not yet taken, by _spec_id: the spec, the parent state it is sent
        # with, attempts so far; the queue (ids, submission order) and the tasks running
        self._pending: dict = {}
        self._parents: dict = {}
        self._attempts: dict = {}
        self._queue: list = []
        self._running: dict = {}  # ray ObjectRef -> spec id
        self._done = 0
        self._task = None
        self._merged: set = set()  # trial keys this executor trained and merged

    # -- the executor contract ----------------------------------------------------------------

    def run(self, spec, progress=None):
        return self.run_many([spec])[0]

    def run_many(self, specs: list) -> list:
        """Every spec's outcome, in order: stored ones looked up, the rest trained as Ray tasks
        submitted together (at most ``max_concurrent`` in flight), merged as they finish."""
        from harness.trial import run_batch, run_trial

        def train(missing):
            self._train(missing)

        def finished(spec):  # stored done, or recorded as failed (by the task or by _train)
            return run_trial(spec, self.store, self.run_id, stored_only=True) or self._failed_outcome(spec)

        outcomes = run_batch(specs, self.store, self.run_id, train, finished)
        # a submitted trial merged while the driver waited for another one is in the store by
        # the time it is asked for: it was trained by this executor, not reused
        return [dataclasses.replace(o, reused=False, trained=True) if o.reused and o.key in self._merged else o
                for o in outcomes]

    def submit(self, specs: list) -> None:
        """Start the trials of ``specs`` that the store does not hold done, without waiting: at
        most ``max_concurrent`` run, the rest queue. A later :meth:`run` / :meth:`run_many` of
        the same spec waits for it (merged as it arrives, like every result)."""
        from harness.trial import identify

        for spec in specs:
            row = self.store.get_trial(identify(spec)[0])
            if row is None or row["status"] != "done":
                self._enqueue(spec)
        self._fill()

    def close(self) -> None:
        """Cancel what is still queued or running (a search that ended without waiting for a
        trial it submitted); nothing of it reaches the store."""
        if self._running:
            import ray

            for ref in self._running:
                ray.cancel(ref, force=True)
        self._running.clear()
        self._queue.clear()
        self._pending.clear()
        self._parents.clear()
        self._attempts.clear()  # a trial submitted again later starts its retries afresh

    # -- internals ----------------------------------------------------------------------------

    def _train(self, specs: list) -> None:
        """Train ``specs`` (already submitted ones are not submitted again) and wait for them."""
        for spec in specs:
            self._enqueue(spec)
        self._fill()
        wanted = [_spec_id(s) for s in specs]
        try:
            while any(sid in self._pending for sid in wanted):
                if not self._running:
                    self._fill()
                    if not self._running:  # nothing can run: give up on what is left
                        break
                self._pump()
        except KeyboardInterrupt:
            self.close()
            raise
        except Exception as exc:
            if interrupted(exc):  # Ctrl-C while a result was being merged (DuckDB's form of it)
                self.close()
                raise KeyboardInterrupt from exc
            raise

    def _enqueue(self, spec) -> None:
        from harness.trial import parent_state

        sid = _spec_id(spec)
        if sid in self._pending:  # the same trial twice trains once
            return
        self._pending[sid] = spec
        self._parents[sid] = parent_state(spec, self.store)
        self._attempts.setdefault(sid, 0)
        self._queue.append(sid)

    def _fill(self) -> None:
        """Submit queued trials while fewer than ``max_concurrent`` run."""
        if not self._queue:
            return
        ray = _connect(self.address, self.num_cpus)
        if self._task is None:
            self._task = ray.remote(_trial_task).options(num_cpus=self.cpus_per_trial,
                                                         num_gpus=self.gpus_per_trial, max_retries=0)
        threads = max(1, int(self.cpus_per_trial))
        limit = self.max_concurrent or float("inf")
        while self._queue and len(self._running) < limit:
            sid = self._queue.pop(0)
            self._attempts[sid] += 1
            ref = self._task.remote(self._pending[sid], self.run_id, threads, self.checkpoints, self._parents[sid])
            self._running[ref] = sid

    def _pump(self) -> None:
        """Wait for the next task to finish and take it: merged, resubmitted or recorded failed."""
        import ray

        ready, _ = ray.wait(list(self._running), num_returns=1)
        ref = ready[0]
        sid = self._running.pop(ref)
        spec = self._pending[sid]
        try:
            result = ray.get(ref)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.RayActorError, ray.exceptions.LocalRayletDiedError,
                ray.exceptions.ObjectLostError, ray.exceptions.RayTaskError) as exc:
            reason = _reason(exc)
            if self._attempts[sid] <= self.retries and not isinstance(exc, ray.exceptions.RayTaskError):
                self._say(f"{_name(spec)}: {reason}; retrying "
                          f"(attempt {self._attempts[sid] + 1} of {self.retries + 1})")
                self._queue.insert(0, sid)
            else:
                self._say(f"{_name(spec)}: {reason}; recorded as failed after "
                          f"{self._attempts[sid]} attempt(s)")
                self._record_failure(spec, f"{reason} (after {self._attempts[sid]} attempt(s) on Ray)")
                self._forget(sid)
            self._fill()
            return
        self._merge(result)
        self._merged.add(result["key"])
        self._forget(sid)
        self._done += 1
        node = self.nodes.setdefault(f"{result['host']} ({result['node'][:12]})", {"done": 0})
        node["done"] += 1
        per_node = ", ".join(f"{h}: {n['done']}" for h, n in sorted(self.nodes.items()))
        self._say(f"{_name(spec)}: {result['status']} on {result['host']} in "
                  f"{result['seconds']:.1f}s; {self._done} done, {len(self._running)} running, "
                  f"{len(self._queue)} queued (done per node: {per_node})")
        self._fill()

    def _forget(self, sid) -> None:
        self._pending.pop(sid, None)
        self._parents.pop(sid, None)
        self._attempts.pop(sid, None)

    def _merge(self, result: dict) -> None:
        base = self.store.path.parent
        for rel, data in result["files"].items():
            target = base / rel
            if data is None:  # in the shared folder: the store's path points there
                source = Path(self.checkpoints) / rel
                if source.resolve() != target.resolve() and not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(source.read_bytes())
                continue
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        shard = base / f".ray-shard-{self.run_id}-{result['key'][:16]}-{os.getpid()}.duckdb"
        try:
            shard.write_bytes(result["shard"])
            self.store.merge_from(shard)
        finally:
            for p in (shard, Path(str(shard) + ".wal")):
                p.unlink(missing_ok=True)

    def _record_failure(self, spec, reason: str) -> None:
        """A trial no worker could finish: a failed row, so the search ranks it last and goes on."""
        from harness import __version__
        from harness.trial import PLUGIN, identify

        key, (_, encoder), (_, llm), (_, dataset) = identify(spec)
        config = spec.train.as_dict() if spec.train is not None else None
        if self.store.get_trial(key) is None:
            self.store.start_trial(key, run_id=self.run_id, encoder=spec.encoder, llm=spec.llm,
                                   dataset_fingerprint=dataset.fingerprint, sample_ratio=spec.ratio,
                                   plugin=PLUGIN, plugin_version=__version__, train_config=config,
                                   seed=spec.seed, encoder_fingerprint=encoder.fingerprint,
                                   llm_fingerprint=llm.fingerprint, device="ray")
        self.store.record_use(self.run_id, "trial", key, reused=False)
        self.store.finish_trial(key, status="failed", wall_seconds=0.0, error=reason)

    def _failed_outcome(self, spec):
        from harness.trial import TrialOutcome, identify

        key = identify(spec)[0]
        row = self.store.get_trial(key) or {}
        return TrialOutcome(key, "failed", reused=False, trained=True,
                            wall_seconds=row.get("wall_seconds") or 0.0, error=row.get("error"))

    def _say(self, line: str) -> None:
        if not self.quiet:
            print(f"ray: {line}", file=sys.stderr, flush=True)


def _spec_id(spec) -> tuple:
    return (spec.encoder, spec.llm, spec.ratio, spec.seed, spec.alignment, spec.samples)


def _name(spec) -> str:
    return f"{spec.encoder} + {spec.llm} r={spec.ratio:g}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    head = type(exc).__name__
    return f"{head}: {text[0][:200]}" if text else head

