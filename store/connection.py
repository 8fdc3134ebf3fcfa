"""Opening the store: path resolution, the one-writer lock, migrations, and small read/write helpers.

DuckDB lets one process open a file for writing, and while it does, no other process can open it
at all (not even read-only). `Store.open` turns DuckDB's lock error into `StoreLocked`, naming
the process that holds the file, and retries for up to `wait` seconds first.

Read-only opens never create or migrate a file. A store that is *older* than this code (pending
migrations) still opens read-only: its existing tables are queried as they are, `pending` lists
what is missing, and a `StoreWarning` says how to upgrade it (open it writable once: run any suite).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from . import embeddings as _emb
from .errors import StoreError, StoreLocked, StoreWarning
from .migrations import (
    _sql_str,
    applied_migrations,
    migrate,
    pending_migrations,
    unknown_migrations,
)

__all__ = ["STORE_ENV", "Store", "default_store_path"]

STORE_ENV = "HARNESS_STORE"
MEMORY = ":memory:"  # Store.open(MEMORY): an in-memory store, for replays that keep nothing

_LOCK_RE = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")


def default_store_path(cwd: str | os.PathLike | None = None) -> Path:
    """$HARNESS_STORE if set, else <cwd>/.harness/store.duckdb. (`--store PATH` wins over both.)"""
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(cwd if cwd is not None else os.getcwd()) / ".harness" / "store.duckdb"


def _process_command(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    cmd = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return (cmd[:300] + " ...") if len(cmd) > 300 else (cmd or None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    """Sortable by start time, unique enough across machines sharing a store file."""
    return _now().strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()


# DuckDB never fetches an extension for a store: a foreign file (SQLite, Postgres dump) must not
# make it try to download a reader
_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def check_store_file(path: Path) -> None:
    """Refuse, naming the file, something at ``path`` that is not a DuckDB database file (a
    SQLite database, a text file, a folder); a missing or empty file is a new store."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a store file; pass the .duckdb file inside it")
    if path.exists() and not path.is_file():
        raise StoreError(f"{path} is not a regular file (a device, a pipe or a socket), so it cannot "
                         "be a store; pass a .duckdb file (--store PATH or HARNESS_STORE)")
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[8:12] == b"DUCK":
        return
    what = "a SQLite database" if head.startswith(b"SQLite format 3") else "not a DuckDB database file"
    raise StoreError(f"{path} is {what}, not a harness store (give the .duckdb file harness writes)")


def damaged(path: Path, exc: Exception) -> StoreError:
    """The one-line error for a store DuckDB cannot read (truncated, bad checksums)."""
    text = " ".join(str(exc).split())[:240]
    from .check import wal_damage

    step = wal_damage(Path(path), exc)
    if step is not None:
        return StoreError(f"store {path} cannot be opened: {step}")
    return StoreError(f"store {path} cannot be read: {text}. It may be damaged (truncated or "
                      "overwritten): restore a copy (harness store backup makes one) or move it aside")


def _connect(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    check_store_file(path)
    deadline = time.monotonic() + max(0.0, wait)
    delay = 0.05
    said = False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=_CONFIG)
        except duckdb.ConnectionException as e:
            # Same process, other mode: DuckDB shares one instance per file per process.
            raise StoreError(
                f"cannot open store {path} {'read-only' if read_only else 'writable'}: this process already "
                f"has it open in the other mode ({e}). Close the other Store first."
            ) from e
        except duckdb.IOException as e:
            m = _LOCK_RE.search(str(e))
            if m is None and "Could not set lock" not in str(e):
                raise damaged(path, e) from e
            remaining = deadline - time.monotonic()
            if remaining > 0 and not said:
                said = True
                holder = f" (in use by process {m['pid']})" if m else ""
                print(f"waiting up to {remaining:.0f} s for store {path}{holder}", file=sys.stderr,
                      flush=True)
            if remaining <= 0:
                pid = int(m["pid"]) if m else None
                command = (_process_command(pid) if pid else None) or (m["exe"] if m else None)
                who = f"process {pid} ({command})" if pid else "another process"
                raise StoreLocked(
                    f"store {path} is in use by {who}. DuckDB lets one process write a store, and no "
                    f"other process open it meanwhile. Wait for that process to finish, or pass "
                    f"--wait SECONDS to keep retrying (waited {wait:g} s).",
                    path=str(path), pid=pid, command=command,
                ) from e
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.25)
        except duckdb.Error as e:  # "Corrupt database file": a block failed its checksum
            raise damaged(path, e) from e


class Store:
    """An open store. Use `Store.open(path)`; `.con` is the DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self.con = con
        self.path = path
        self.read_only = read_only
        self.pending: list[str] = []  # migrations this store lacks (read-only opens only)
        self._tx_depth = 0

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, read_only: bool = False, wait: float = 0.0) -> Store:
        """Open (and, if writable, create and migrate) the store at path (default: default_store_path())."""
        if str(path) == MEMORY:
            return cls._open_memory()
        path = Path(path).expanduser() if path is not None else default_store_path()
        path = path.absolute()
        if read_only:
            if not path.exists():
                raise StoreError(
                    f"no store at {path}: it does not exist yet. Run a suite to create it "
                    f"(e.g. `harness run suites/quickstart.yaml`), or point --store / ${STORE_ENV} at an existing one."
                )
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder for store {path}: {e}") from e
        con = _connect(path, read_only, wait)
        store = cls(con, path, read_only)
        try:
            if read_only:
                store._check_read_only()
            else:
                try:
                    migrate(con)
                except StoreError as e:
                    raise StoreError(f"store {path}: {e}") from e
                store._mark_interrupted()
        except duckdb.Error as e:  # blocks that fail their checksum, a file cut short
            con.close()
            raise damaged(path, e) from e
        except BaseException:
            con.close()
            raise
        return store

    @classmethod
    def _open_memory(cls) -> Store:
        """An in-memory store (``--store :memory:``): gone when closed. Its checkpoints go to a
        temporary folder (``path`` names a file there that never exists)."""
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="harness-memory-"))
        con = duckdb.connect(":memory:")
        migrate(con)
        store = cls(con, folder / "memory.duckdb", read_only=False)
        store._memory_dir = folder
        return store

    def _check_read_only(self) -> None:
        unknown = unknown_migrations(self.con)
        if unknown:
            warnings.warn(
                f"store {self.path} was written by a newer harness (migrations {', '.join(unknown)} are "
                "unknown here); reading it may fail. Upgrade harness.",
                StoreWarning, stacklevel=3,
            )
        self.pending = pending_migrations(self.con)
        if self.pending:
            warnings.warn(
                f"store {self.path} is older than this harness (missing migrations: {', '.join(self.pending)}); "
                "opened read-only as it is, so newer tables/views are absent. Open it writable once "
                "(run any suite) to upgrade it.",
                StoreWarning, stacklevel=3,
            )

    def _mark_interrupted(self) -> None:
        """Runs left 'running' by a process on this host that no longer exists were killed."""
        host = socket.gethostname()
        rows = self.con.execute(
            "SELECT run_id, pid FROM runs WHERE status = 'running' AND hostname = ? AND pid IS NOT NULL", [host]
        ).fetchall()
        dead = [(rid, pid) for rid, pid in rows if pid != os.getpid() and not _pid_alive(pid)]
        if not dead:
            return
        with self.transaction():
            for rid, pid in dead:
                msg = f"process {pid} exited without finishing the run"
                self.con.execute(
                    "UPDATE runs SET status = 'interrupted', error = ?, finished_at = current_timestamp"
                    " WHERE run_id = ?", [msg, rid])
                self.con.execute(
                    "UPDATE trials SET status = 'failed', error = ?, finished_at = current_timestamp"
                    " WHERE run_id = ? AND status = 'running'", [msg, rid])

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None  # type: ignore[assignment]
        folder = getattr(self, "_memory_dir", None)
        if folder is not None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, read_only={self.read_only})"

    # -- generic access ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """BEGIN ... COMMIT, or ROLLBACK on any exception. Nested uses join the outer transaction."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self
            finally:
                self._tx_depth -= 1
            return
        self.con.execute("BEGIN TRANSACTION")
        self._tx_depth = 1
        try:
            yield self
        except BaseException:
            self._tx_depth = 0
            self.con.execute("ROLLBACK")
            raise
        self._tx_depth = 0
        try:
            self.con.execute("COMMIT")
        except Exception:
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(sql, params) if params is not None else self.con.execute(sql)

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows as dicts."""
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def has_table(self, table: str) -> bool:
        """Whether the store has ``table`` (a store older than the code, opened read-only, may not)."""
        return bool(self.con.execute(
            "SELECT 1 FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'"
            " AND database_name = current_database()", [table]).fetchall())

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
        from harness import __version__

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

    def get_trial(self, trial_key: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM trials WHERE trial_key = ?", [trial_key])
        return rows[0] if rows else None

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

    @property
    def checkpoints_dir(self) -> Path:
        """Where trial checkpoints live: beside the store file."""
        return self.path.parent / "checkpoints"

    def checkpoint_abspath(self, stored: str) -> Path:
        p = Path(stored)
        return p if p.is_absolute() else self.path.parent / p

    def put_scores(self, trial_key: str, scores: Iterable[Mapping[str, Any]], *, run_id: str, plugin: str,
                   plugin_version: str) -> int:
        """scores: dicts with task, metric, value and optionally n_items."""
        rows = [{
            "trial_key": trial_key, "task": s["task"], "metric": s["metric"], "value": float(s["value"]),
            "n_items": s.get("n_items"), "run_id": run_id, "plugin": plugin, "plugin_version": plugin_version,
        } for s in scores]
        return self.insert("scores", rows, on_conflict="replace")

    def get_scores(self, trial_key: str) -> list[dict[str, Any]]:
        return self.query("SELECT task, metric, value, n_items FROM scores WHERE trial_key = ? ORDER BY task, metric",
                          [trial_key])

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

    def get_embedding(self, key: str):
        """The stored array (numpy, in its original dtype), or None."""
        return _emb.get_embedding(self.con, key)

    def put_similarity(self, key: str, value: float, *, metric: str, a: str, b: str, run_id: str, plugin: str,
                       plugin_version: str, a_embedding: str | None = None, b_embedding: str | None = None,
                       config: Any = None) -> None:
        self.insert("similarities", [{
            "similarity_key": key, "metric": metric, "a": a, "b": b, "a_embedding": a_embedding,
            "b_embedding": b_embedding, "value": float(value), "config": config, "run_id": run_id,
            "plugin": plugin, "plugin_version": plugin_version,
        }], on_conflict="ignore")

    def get_similarity(self, key: str) -> float | None:
        row = self.con.execute("SELECT value FROM similarities WHERE similarity_key = ?", [key]).fetchone()
        return None if row is None else row[0]

    # -- reading back -----------------------------------------------------------------------

    def leaderboard(self, task: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        """The leaderboard view (latest finished run per task), or one run's rankings if run_id is given."""
        if run_id is None:
            sql, params = "SELECT * FROM leaderboard", []
            if task is not None:
                sql, params = sql + " WHERE task = ?", [task]
            return self.query(sql, params)
        sql = ("SELECT task, encoder AS vision_encoder, llm AS language_model, score, metric, run_id,"
               " measured_or_predicted FROM rankings WHERE run_id = ?")
        params = [run_id]
        if task is not None:
            sql, params = sql + " AND task = ?", params + [task]
        return self.query(sql + " ORDER BY task, rank, encoder, llm", params)

    def applied_migrations(self) -> list[str]:
        return applied_migrations(self.con)

    def info(self) -> dict[str, Any]:
        """path, size_bytes (file + WAL), read_only, migrations applied/pending, rows per table."""
        wal = Path(str(self.path) + ".wal")
        size = (self.path.stat().st_size if self.path.exists() else 0) + (wal.stat().st_size if wal.exists() else 0)
        tables = [r[0] for r in self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database()"
            " ORDER BY table_oid").fetchall()]
        rows = {t: self.con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        return {
            "path": str(self.path),
            "size_bytes": size,
            "read_only": self.read_only,
            "migrations": self.applied_migrations(),
            "pending_migrations": pending_migrations(self.con),
            "rows": rows,
        }

    def backup(self, dest: str | os.PathLike) -> Path:
        """Write a consistent copy of the store to dest (a new file) and return its path.

        Copies through DuckDB (ATTACH + COPY FROM DATABASE) rather than the file system, so the copy
        reflects committed data even while the WAL holds unflushed changes. Works read-only too.
        """
        dest = Path(dest).expanduser().absolute()
        if dest.exists():
            raise StoreError(f"backup destination {dest} already exists; choose a new file name")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot write the backup {dest}: {e.strerror} ({e.filename})") from None
        if self._tx_depth:
            raise StoreError("cannot back up inside a transaction; commit it first")
        alias = "harness_backup_" + os.urandom(4).hex()
        src = self.con.execute("SELECT current_database()").fetchone()[0]
        try:
            self.con.execute(f"ATTACH {_sql_str(str(dest))} AS {alias} (READ_WRITE)")
        except duckdb.Error as e:
            raise StoreError(f"cannot write the backup {dest}: {' '.join(str(e).split())[:200]}") from None
        try:
            self.con.execute(f"COPY FROM DATABASE {_sql_ident(src)} TO {alias}")
        except BaseException as e:
            self.con.execute(f"DETACH {alias}")
            for p in (dest, Path(str(dest) + ".wal")):
                p.unlink(missing_ok=True)
            from harness.errors import environment_fault

            fault = environment_fault(e, f"writing the backup {dest}") if isinstance(e, Exception) else None
            if fault is not None:
                raise fault from e
            raise
        self.con.execute(f"DETACH {alias}")
        return dest

    def merge_from(self, other: str | os.PathLike, *, record: bool = False) -> dict[str, int]:
        """Copy every row of another store (same or older schema) into this one, in one
        transaction; rows whose primary key is already here are kept as they are. Returns rows
        added per table. For combining shards trained in parallel or on other machines;
        checkpoint paths are relative to each store's folder, so merge stores that share one.
        ``record`` logs the merge in ``imports`` (the import path: :mod:`harness.store.exchange`).
        """
        from .exchange import merge_store

        self._require_writable("merge another store")
        return merge_store(self, other, record=record)


def _sql_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (a database named after a file such as ``we"ird``)."""
    return '"' + name.replace('"', '""') + '"'


def _json(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True, default=str)

