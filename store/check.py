"""``harness store check``: read every table of a store in full and say which are damaged; and a
backup that still works when only the write-ahead log is damaged.

DuckDB keeps committed changes that are not yet in the main file in ``<store>.wal`` and replays
it on open. A damaged log (a disk error, a copy taken mid-write) makes the store refuse to open,
although the main file may be intact: :func:`wal_damage` tells which, and the error names the
recovery step (move the log aside: the main file opens, without the changes since the last
checkpoint).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from .errors import StoreError

_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def wal_of(path: Path) -> Path:
    return Path(str(path) + ".wal")


def read_tables(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    """table -> None when every row and column of it reads, else DuckDB's error (one line)."""
    names = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' ORDER BY table_name").fetchall()]
    out: dict[str, str | None] = {}
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        try:  # hash of the whole row: every column of every row is read and decoded
            con.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {quoted} AS t").fetchall()
            out[name] = None
        except duckdb.Error as e:
            out[name] = " ".join(str(e).split())[:200]
    return out


@contextmanager
def main_file_only(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to a copy of ``path`` without its log (in a temporary folder; the
    store's own files are not touched)."""
    with tempfile.TemporaryDirectory(prefix="harness-check-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        con = duckdb.connect(str(copy), read_only=True, config=_CONFIG)
        try:
            yield con
        finally:
            con.close()


def wal_damage(path: Path, exc: BaseException) -> str | None:
    """When ``exc`` (opening ``path``) is a damaged write-ahead log: the one-line recovery step
    (the main file is intact, or not); else None."""
    wal = wal_of(path)
    if "WAL" not in str(exc) or not wal.exists():
        return None
    try:
        with main_file_only(path) as con:
            bad = [t for t, err in read_tables(con).items() if err]
    except (duckdb.Error, OSError):
        bad = ["(the file does not open)"]
    if bad:
        return (f"its write-ahead log {wal} cannot be replayed, and the main file is damaged too "
                f"(tables {', '.join(bad)}): restore a copy (harness store backup makes one)")
    return (f"its write-ahead log {wal} cannot be replayed; the main file is intact. Recover: move "
            f"the log aside (mv '{wal}' '{wal}.damaged') and open the store again: it then holds "
            "everything up to its last checkpoint (the changes since are lost); harness store "
            "backup copies the main file meanwhile")


def check_store(path: str | os.PathLike) -> dict[str, Any]:
    """Open ``path`` read-only and read every table in full. Returns ``{"path", "tables": {table:
    error or None}, "damaged": [tables], "wal": recovery step or None}``; raises StoreError when
    the store cannot be opened at all (naming the recovery step for a damaged log)."""
    from .connection import check_store_file, damaged

    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise StoreError(f"no store at {path}")
    check_store_file(path)
    try:
        con = duckdb.connect(str(path), read_only=True, config=_CONFIG)
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            raise StoreError(f"store {path} is in use by another process; check it when that "
                             "process has finished") from None
        raise damaged(path, e) from None
    except duckdb.Error as e:
        raise damaged(path, e) from None
    try:
        tables = read_tables(con)
    finally:
        con.close()
    return {"path": str(path), "tables": tables, "damaged": [t for t, e in tables.items() if e]}


def backup_store(path: Path, dest: Path, wait: float = 0.0) -> str | None:
    """``harness store backup``: a consistent copy of the store at ``dest``. When only the log is
    damaged, the copy is made from the intact main file; returns a warning saying so (else None)."""
    from .connection import Store

    try:
        with Store.open(path, read_only=True, wait=wait) as st:
            st.backup(dest)
        return None
    except StoreError as e:
        path = Path(path).expanduser().absolute()
        if "write-ahead log" not in str(e) or "main file is intact" not in str(e):
            raise
    with tempfile.TemporaryDirectory(prefix="harness-backup-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        with warnings.catch_warnings():  # (about the copy, named after a temporary folder)
            warnings.simplefilter("ignore")
            with Store.open(copy, read_only=True) as st:
                st.backup(dest)
    return (f"the write-ahead log {wal_of(path)} is damaged: {dest} holds the main file, without "
            "the changes since its last checkpoint")


def check_lines(path: str | os.PathLike, echo) -> int:
    """``harness store check``: a line per damaged table, a summary line; the exit code."""
    from harness.errors import HarnessError

    try:
        report = check_store(path)
    except HarnessError as e:
        echo(f"error: {e}", err=True)
        return e.exit_code
    tables = report["tables"]
    for table in report["damaged"]:
        echo(f"damaged: table {table}: {tables[table]}")
    if report["damaged"]:
        echo(f"error: store {report['path']}: {len(report['damaged'])} of {len(tables)} tables are "
             f"damaged ({', '.join(report['damaged'])}); the others read in full. Restore a copy "
             "(harness store backup makes one), or export what reads (harness store export --run)",
             err=True)
        return 1
    echo(f"store {report['path']}: ok: all {len(tables)} tables read in full")
    return 0
