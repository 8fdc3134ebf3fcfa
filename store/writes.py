"""Writing to the store: the methods of :class:`~harness.store.connection.Store` that add or
change rows (runs, components, datasets, trials, scores, uses, embeddings, similarities, another
store's rows). Each is one transaction; a store opened read-only refuses them, naming the file.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import __version__

from . import embeddings as _emb
from .errors import StoreError
from .exchange import merge_store

__all__ = ["Writes", "new_run_id"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    """Sortable by start time, unique enough across machines sharing a store file."""
    return _now().strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()


class Writes:
    """The writing half of :class:`~harness.store.connection.Store`, which supplies ``con``,
    ``path``, ``read_only`` and ``transaction()``."""

    def _columns(self, table: str) -> dict[str, str]:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main'"
            " AND database_name = current_database() ORDER BY column_index", [table]
        ).fetchall()
        if not rows:
            raise StoreError(f"store {self.path} has no table {table!r}")
        return dict(rows)

    def _require_writable(self, what: str) -> None:
        if self.read_only:
            raise StoreError(f"cannot {what}: store {self.path} is open read-only")

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]], *, on_conflict: str = "error") -> int:
        """Insert dict rows into table; dict/list values go into JSON columns as JSON text.

        A str given for a JSON column is taken to be JSON text already.
        on_conflict: 'error' (default), 'ignore' (keep the stored row) or 'replace'.
        Returns the number of rows given.
        """
        self._require_writable(f"insert into {table}")
        rows = list(rows)
        if not rows:
            return 0
        columns = self._columns(table)
        names = list(rows[0])
        bad = [n for n in names if n not in columns]
        if bad:
            raise StoreError(f"table {table} has no column(s) {', '.join(bad)}; columns: {', '.join(columns)}")
        json_cols = {n for n in names if columns[n] == "JSON"}
        verb = {"error": "INSERT", "ignore": "INSERT OR IGNORE", "replace": "INSERT OR REPLACE"}[on_conflict]
        sql = f"{verb} INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        values = []
        for i, row in enumerate(rows):
            if list(row) != names:
                raise StoreError(f"insert into {table}: row {i} has columns {list(row)}, row 0 has {names}")
            values.append([_json(v) if n in json_cols else v for n, v in row.items()])
        with self.transaction():
            self.con.executemany(sql, values)
        return len(rows)

    # -- runs -------------------------------------------------------------------------------

    def start_run(
        self,
        *,
        suite_name: str,
        suite_hash: str | None = None,
        strategy: str | None = None,
        seed: int | None = None,
        config: Any = None,
        plugin: str | None = None,
        plugin_version: str | None = None,
        run_id: str | None = None,
        ground_truth: bool = False,
    ) -> str:
        """Record a new run as 'running'; return its run_id. ``ground_truth``: an exhaustive run
        (every candidate at r = 1) that searches are judged against."""
        run_id = run_id or new_run_id()
        self.insert("runs", [{
            "run_id": run_id, "suite_name": suite_name, "suite_hash": suite_hash, "strategy": strategy,
            "seed": seed, "config": config, "status": "running", "harness_version": __version__,
            "hostname": socket.gethostname(), "pid": os.getpid(), "plugin": plugin, "plugin_version": plugin_version,
            "ground_truth": bool(ground_truth),
        }])
        return run_id

    def finish_run(self, run_id: str, status: str = "done", error: str | None = None) -> None:
        """Set a run's final status ('done', 'failed' or 'interrupted')."""
        self._require_writable("finish a run")
        if status not in ("done", "failed", "interrupted"):
            raise ValueError(f"finish_run status must be done, failed or interrupted, not {status!r}")
        n = self.con.execute(
            "UPDATE runs SET status = ?, error = ?, finished_at = current_timestamp WHERE run_id = ?",
            [status, error, run_id],
        ).fetchone()[0]
        if not n:
            raise StoreError(f"no run {run_id!r} in store {self.path}")

    # -- components and datasets ------------------------------------------------------------

    def put_component(self, fingerprint: str, *, kind: str, ref: str, run_id: str, plugin: str,
                      plugin_version: str, config: Any = None, n_params: int | None = None) -> None:
        """Record a component once (the first run that saw it keeps the row; a row without a
        parameter count gets it)."""
        self.insert("components", [{
            "fingerprint": fingerprint, "kind": kind, "ref": ref, "config": config, "run_id": run_id,
            "plugin": plugin, "plugin_version": plugin_version, "n_params": n_params,
        }], on_conflict="ignore")
        if n_params is not None:
            self.con.execute("UPDATE components SET n_params = ? WHERE fingerprint = ? AND n_params IS NULL",
                             [int(n_params), fingerprint])

    def put_dataset(self, fingerprint: str, *, ref: str, run_id: str, plugin: str, plugin_version: str,
                    split: str | None = None, n_items: int | None = None, config: Any = None) -> None:
        self.insert("datasets", [{
            "fingerprint": fingerprint, "ref": ref, "split": split, "n_items": n_items, "config": config,
            "run_id": run_id, "plugin": plugin, "plugin_version": plugin_version,
        }], on_conflict="ignore")

    # -- trials and scores ------------------------------------------------------------------

    def start_trial(
        self,
        trial_key: str,
        *,
        run_id: str,
        encoder: str,
        llm: str,
        dataset_fingerprint: str,
        sample_ratio: float,
        plugin: str,
        plugin_version: str,
        train_config: Any = None,
        seed: int | None = None,
        encoder_fingerprint: str | None = None,
        llm_fingerprint: str | None = None,
        device: str | None = None,
        replace_done: bool = False,
        continued_from: str | None = None,
    ) -> None:
        """Mark a trial 'running'. A failed (or interrupted) earlier attempt is replaced; a done
        one is an error, unless ``replace_done`` (its checkpoint is lost: it is trained again)."""
        with self.transaction():
            prior = self.con.execute("SELECT status FROM trials WHERE trial_key = ?", [trial_key]).fetchone()
            if prior and prior[0] == "done" and not replace_done:
                raise StoreError(f"trial {trial_key} is already done in store {self.path}; reuse it instead")
            if prior:
                self.con.execute("DELETE FROM scores WHERE trial_key = ?", [trial_key])
                self.con.execute("DELETE FROM trials WHERE trial_key = ?", [trial_key])
            self.insert("trials", [{
                "trial_key": trial_key, "encoder": encoder, "llm": llm, "encoder_fingerprint": encoder_fingerprint,
                "llm_fingerprint": llm_fingerprint, "dataset_fingerprint": dataset_fingerprint,
                "sample_ratio": sample_ratio, "train_config": train_config, "seed": seed, "status": "running",
                "device": device, "run_id": run_id, "plugin": plugin, "plugin_version": plugin_version,
                **({"continued_from": continued_from} if continued_from is not None else {}),
            }])

    def finish_trial(
        self,
        trial_key: str,
        *,
        status: str = "done",
        wall_seconds: float | None = None,
        samples_seen: int | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        device: str | None = None,
        error: str | None = None,
    ) -> None:
        """Set a trial's outcome. checkpoint_path is stored relative to the store's folder when inside it."""
        self._require_writable("finish a trial")
        if status not in ("done", "failed"):
            raise ValueError(f"finish_trial status must be done or failed, not {status!r}")
        ckpt = None
        if checkpoint_path is not None:
            p = Path(checkpoint_path)
            try:
                ckpt = p.absolute().relative_to(self.path.parent).as_posix()
            except ValueError:
                ckpt = str(p)
        n = self.con.execute(
            "UPDATE trials SET status = ?, wall_seconds = ?, samples_seen = ?, checkpoint_path = ?,"
            " device = coalesce(?, device), error = ?, finished_at = current_timestamp WHERE trial_key = ?",
            [status, wall_seconds, samples_seen, ckpt, device, error, trial_key],
        ).fetchone()[0]
        if not n:
            raise StoreError(f"no trial {trial_key} in store {self.path}; call start_trial first")

    def put_scores(self, trial_key: str, scores: Iterable[Mapping[str, Any]], *, run_id: str, plugin: str,
                   plugin_version: str) -> int:
        """scores: dicts with task, metric, value and optionally n_items."""
        rows = [{
            "trial_key": trial_key, "task": s["task"], "metric": s["metric"], "value": float(s["value"]),
            "n_items": s.get("n_items"), "run_id": run_id, "plugin": plugin, "plugin_version": plugin_version,
        } for s in scores]
        return self.insert("scores", rows, on_conflict="replace")

    def record_use(self, run_id: str, kind: str, key: str, *, reused: bool, phase: str | None = None) -> None:
        """Note that run_id used a trial/embedding/similarity; reused=True if it came from the
        store; ``phase``: the run's phase that used it (the first use is the one kept)."""
        self.insert("run_uses", [{"run_id": run_id, "kind": kind, "key": key, "reused": reused,
                                  "phase": phase}], on_conflict="ignore")

    # -- embeddings and similarities --------------------------------------------------------

    def put_embedding(self, key: str, array: Any, *, component_fingerprint: str, dataset_fingerprint: str,
                      layer: str | int, run_id: str, plugin: str, plugin_version: str,
                      sample_set: Any = None) -> bool:
        """Store an array (as float16 BLOB) unless the key exists; True if written."""
        self._require_writable("store an embedding")
        with self.transaction():
            return _emb.put_embedding(
                self.con, key, array, component_fingerprint=component_fingerprint,
                dataset_fingerprint=dataset_fingerprint, layer=layer, sample_set=sample_set,
                run_id=run_id, plugin=plugin, plugin_version=plugin_version)

    def put_similarity(self, key: str, value: float, *, metric: str, a: str, b: str, run_id: str, plugin: str,
                       plugin_version: str, a_embedding: str | None = None, b_embedding: str | None = None,
                       config: Any = None) -> None:
        self.insert("similarities", [{
            "similarity_key": key, "metric": metric, "a": a, "b": b, "a_embedding": a_embedding,
            "b_embedding": b_embedding, "value": float(value), "config": config, "run_id": run_id,
            "plugin": plugin, "plugin_version": plugin_version,
        }], on_conflict="ignore")

    def merge_from(self, other: str | os.PathLike, *, record: bool = False) -> dict[str, int]:
        """Copy every row of another store (same or older schema) into this one, in one
        transaction; rows whose primary key is already here are kept as they are. Returns rows
        added per table. For combining shards trained in parallel or on other machines;
        checkpoint paths are relative to each store's folder, so merge stores that share one.
        ``record`` logs the merge in ``imports`` (the import path: :mod:`harness.store.exchange`).
        """
        self._require_writable("merge another store")
        return merge_store(self, other, record=record)


def _json(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True, default=str)
