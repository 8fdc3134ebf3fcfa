"""Opening the store: path resolution, the one-writer lock, migrations, and the files beside it.

`Store` is this connection (opening, transactions, generic SQL, checkpoint paths, size, backup)
with the writes of :mod:`harness.store.writes` and the reads of :mod:`harness.store.reads`; the
file checks, the lock and the write-ahead log are in :mod:`harness.store.files`.

DuckDB lets one process open a file for writing, and while it does, no other process can open it
at all (not even read-only). `Store.open` turns DuckDB's lock error into `StoreLocked`, naming
the process that holds the file, and retries for up to `wait` seconds first.

Read-only opens never create or migrate a file. A store that is *older* than this code (pending
migrations) still opens read-only: its existing tables are queried as they are, `pending` lists
what is missing, and a `StoreWarning` says how to upgrade it (open it writable once: run any suite).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from harness.errors import environment_fault

from .errors import StoreError, StoreWarning
from .files import (
    MEMORY,
    STORE_ENV,
    connect,
    damaged,
    default_store_path,
    pid_alive,
    wal_of,
)
from .migrations import _sql_str, migrate, pending_migrations, unknown_migrations
from .reads import Reads
from .writes import Writes, new_run_id

__all__ = ["MEMORY", "STORE_ENV", "Store", "default_store_path", "new_run_id"]


class Store(Reads, Writes):
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
        con = connect(path, read_only, wait)
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
        dead = [(rid, pid) for rid, pid in rows if pid != os.getpid() and not pid_alive(pid)]
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

    # -- files beside the store ---------------------------------------------------------------

    @property
    def checkpoints_dir(self) -> Path:
        """Where trial checkpoints live: beside the store file."""
        return self.path.parent / "checkpoints"

    def checkpoint_abspath(self, stored: str) -> Path:
        p = Path(stored)
        return p if p.is_absolute() else self.path.parent / p

    def info(self) -> dict[str, Any]:
        """path, size_bytes (file + WAL), read_only, migrations applied/pending, rows per table."""
        wal = wal_of(self.path)
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
            for p in (dest, wal_of(dest)):
                p.unlink(missing_ok=True)
            fault = environment_fault(e, f"writing the backup {dest}") if isinstance(e, Exception) else None
            if fault is not None:
                raise fault from e
            raise
        self.con.execute(f"DETACH {alias}")
        return dest


def _sql_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (a database named after a file such as ``we"ird``)."""
    return '"' + name.replace('"', '""') + '"'
