"""``harness store check``: read every table of a store in full and say which are damaged; and a
backup that still works when only the write-ahead log is damaged (the log and how its damage is
told apart from the main file's: :mod:`harness.store.files`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import duckdb

from harness.errors import HarnessError

from .connection import Store
from .errors import StoreError
from .files import (
    CONFIG,
    check_store_file,
    damaged,
    main_file_only,
    read_tables,
    wal_damage,
    wal_of,
)

__all__ = ["backup_store", "check_lines", "check_store", "main_file_only", "read_tables", "wal_damage",
           "wal_of"]


def check_store(path: str | os.PathLike) -> dict[str, Any]:
    """Open ``path`` read-only and read every table in full. Returns ``{"path", "tables": {table:
    error or None}, "damaged": [tables], "wal": recovery step or None}``; raises StoreError when
    the store cannot be opened at all (naming the recovery step for a damaged log)."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise StoreError(f"no store at {path}")
    check_store_file(path)
    try:
        con = duckdb.connect(str(path), read_only=True, config=CONFIG)
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
