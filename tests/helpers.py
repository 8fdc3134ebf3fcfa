"""What the tests share: the ``harness`` command (in a process of its own, or in this one), the
suite files the searches start from, read-only store queries, and small stores built row by row.

- :func:`harness` runs ``python -m harness.cli ARGS`` as a user does, always with a timeout: for
  what only a real process shows (exit on a signal, process death, a pip-installed plugin found
  through ``PYTHONPATH``, what a fresh interpreter imports).
- :func:`invoke` runs the same entry point (``harness.cli:main``) in this process through click's
  ``CliRunner``: the same exit code, stdout and stderr, without a new interpreter importing torch
  and lmms-eval each time. Use it where the process is not the point.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "suites"
BAD_SUITES = ROOT / "tests" / "bad_suites"

# A `harness` process that has not finished in this long is a hang, not a slow machine.
TIMEOUT = 600


# -- the command line --------------------------------------------------------------------------

def harness(*args, env: dict | None = None, cwd=None, timeout: float = TIMEOUT, **kwargs) -> subprocess.CompletedProcess:
    """``harness ARGS`` in a process of its own: its exit code, stdout and stderr (text).
    ``env`` adds to (or, with a value of None, removes from) this process's environment."""
    full = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = str(value)
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=full, timeout=timeout, **kwargs)


@dataclass
class Invoked:
    """What :func:`invoke` saw, named as a :class:`subprocess.CompletedProcess` names it."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class _Main:
    """``harness.cli:main`` (the console script) as click's CliRunner calls a command."""

    name = "harness"

    def main(self, args, prog_name, **_):
        from harness.cli import main

        sys.argv = [prog_name, *args]
        return main()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def invoke(*args, env: dict | None = None, cwd=None, input: str | None = None) -> Invoked:
    """``harness ARGS`` in this process, as a process would run it: exit code, stdout, stderr.

    Warnings print on stderr with Python's default filters (pytest's own capture is set aside),
    an exception the command lets out is a traceback on stderr and exit 1, and what the command
    changes in this process (the environment, signal handlers, sys.argv, the working directory,
    the warnings' format) is put back afterwards."""
    from click.testing import CliRunner

    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    saved_format = warnings.formatwarning  # main() wraps it (harness's warnings on one line)
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.simplefilter("default")
            for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", quiet)
            warnings.showwarning = _show_warning
            result = CliRunner().invoke(_Main(), [str(a) for a in args], input=input, prog_name="harness",
                                        env={k: (None if v is None else str(v)) for k, v in (env or {}).items()})
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        warnings.formatwarning = saved_format
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(*result.exc_info)[1:])
    return Invoked(result.exit_code, result.stdout, stderr)


# -- suite files -------------------------------------------------------------------------------

# Mordal over 3 x 2 tiny models on shapes:color, everything small enough to run in seconds;
# the suite the search, report and Ray tests start from.
TINY_MORDAL = {
    "name": "tiny-mordal",
    "seed": 0,
    "zoo": {"vision_encoders": ["tiny:vit-p4", "tiny:vit-p8", "tiny:resnet"],
            "language_models": ["tiny:gpt2", "tiny:mistral"]},
    "alignment": {"dataset": "shapes:color", "samples": 32},
    "vlm": {"llm": "full", "optim": {"lr": 1e-3, "batch_size": 16, "epochs": 1}},
    "targets": [{"task": "shapes:color", "limit": 8}],
    "search": {"strategy": "mordal",
               # a similarity floor of 1: every encoder its own cluster, so LLMs are clustered
               # once per encoder; a floor of 0.2 for LLMs (a distance cut of 0.8)
               "clustering": {"samples": 16, "warmup_steps": 1, "t_ve": 1.0, "t_llm": 0.2},
               # intra from 1/4: its rungs stop at 1/2, so the survivor is predicted, not measured
               "inter": {"top_k": 2, "min_ratio": 0.5}, "intra": {"top_k": 1, "min_ratio": 0.25},
               "predictor": {"r0": 0.5, "points": 2}},
    "device": "cpu",
}


def write_suite(tmp_path, base: dict, name="suite.yaml", **changes):
    """``base`` with dotted-key changes (``"search.inter.top_k": 2``) written as a suite file."""
    suite = yaml.safe_load(yaml.safe_dump(base))
    for dotted, value in changes.items():
        node = suite
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(suite))
    return path


def search_suite(folder, name="suite.yaml", **changes):
    """The searches' suite (:data:`TINY_MORDAL`, named search-test) with dotted-key changes."""
    return write_suite(folder, {**TINY_MORDAL, "name": "search-test"}, name, **changes)


# -- stores ------------------------------------------------------------------------------------

def fetch(store, sql: str, params=(), one: bool = False):
    """Rows of ``sql`` on a store file opened read-only (the first row with ``one``)."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        cur = con.execute(sql, list(params))
        return cur.fetchone() if one else cur.fetchall()
    finally:
        con.close()


def last_run(store):
    """(run_id, status) of the store's latest run."""
    return fetch(store, "select run_id, status from runs order by started_at desc limit 1", one=True)


def trials_of(store, run_id=None):
    """(trained, reused) trial counts of one run, or of every run."""
    return fetch(store, "select count(*) filter (where not u.reused), count(*) filter (where u.reused)"
                 " from run_uses u where u.kind = 'trial' and (? is null or u.run_id = ?)",
                 (run_id, run_id), one=True)


DECISIONS = {
    "rungs": "select phase, rung, encoder, llm, sample_ratio, score, kept from rungs where run_id = ?"
             " order by all",
    "rankings": "select rank, task, encoder, llm, score, measured_or_predicted, sample_ratio, stage"
                " from rankings where run_id = ? order by rank",
    "clusters": "select level, context, cluster_id, member, is_medoid from clusters where run_id = ?"
                " order by all",
    "scaling_points": "select encoder, llm, sample_ratio, score from scaling_points where run_id = ?"
                      " order by all",
    "predictions": "select encoder, llm, predicted_score from predictions where run_id = ? order by all",
}


def decisions(store, run_id):
    """What a run decided (rungs, rankings, clusters, scaling points, predictions): equal for a
    live run and its replay."""
    return {name: fetch(store, sql, [run_id]) for name, sql in DECISIONS.items()}


def key(n: int) -> str:
    return hashlib.sha256(f"trial {n}".encode()).hexdigest()


def make_store(path: Path, trials: int = 2, checkpoint_paths: dict | None = None) -> list[str]:
    """A store at ``path`` with one finished run and ``trials`` done trials, each with a score
    and its checkpoint folder (``checkpoints/<key>/trainable.safetensors``) beside the store; no
    training (for the data-loss and fault tests). ``checkpoint_paths``: key -> a stored path
    other than the trial's own (a forged row)."""
    from harness.store import Store

    keys = [key(i) for i in range(trials)]
    with Store.open(path) as st:
        run = st.start_run(suite_name="made", strategy="grid", seed=0)
        for i, k in enumerate(keys):
            st.start_trial(k, run_id=run, encoder=f"tiny:e{i}", llm="tiny:gpt2", dataset_fingerprint="d" * 64,
                           sample_ratio=1.0, plugin="harness", plugin_version="0")
            ckpt = st.checkpoints_dir / k / "trainable.safetensors"
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            ckpt.write_bytes(b"weights of " + k.encode())
            st.finish_trial(k, status="done", wall_seconds=1.0, samples_seen=10, checkpoint_path=ckpt)
            st.put_scores(k, [{"task": "shapes:color", "metric": "acc", "value": 0.5}], run_id=run,
                          plugin="harness", plugin_version="0")
        for k, stored in (checkpoint_paths or {}).items():
            st.con.execute("UPDATE trials SET checkpoint_path = ? WHERE trial_key = ?", [stored, k])
        st.finish_run(run, "done")
    return keys


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (but DuckDB's .wal) and its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".wal"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def forge_parquet(folder: Path, table: str, sql: str) -> None:
    """Replace ``table``'s Parquet file of an export by ``sql`` over it (``t``), and make the
    manifest agree (rows, sha256): a forged export that passes every check."""
    from harness.store.exchange import sha256_file

    path = folder / f"{table}.parquet"
    tmp = folder / f"{table}.new"
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')")
    con.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT PARQUET)")
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{tmp}')").fetchone()[0]
    con.close()
    tmp.replace(path)

    def change(m):
        m["tables"][table].update(rows=rows, sha256=sha256_file(path))

    rewrite_manifest(folder, change)
