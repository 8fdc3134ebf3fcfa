"""The store's files: where a store lives, what may be opened as one, its write-ahead log, and
the one-writer lock.

DuckDB lets one process open a file for writing, and while it does, no other process can open it
at all (not even read-only). :func:`connect` turns DuckDB's lock error into `StoreLocked`, naming
the process that holds the file, and retries for up to `wait` seconds first.

DuckDB keeps committed changes that are not yet in the main file in ``<store>.wal`` and replays
it on open. A damaged log (a disk error, a copy taken mid-write) makes the store refuse to open,
although the main file may be intact: :func:`wal_damage` tells which, and the error names the
recovery step (move the log aside: the main file opens, without the changes since the last
checkpoint).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from .errors import StoreError, StoreLocked

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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# DuckDB never fetches an extension for a store: a foreign file (SQLite, Postgres dump) must not
# make it try to download a reader
CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


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
        con = duckdb.connect(str(copy), read_only=True, config=CONFIG)
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


def damaged(path: Path, exc: Exception) -> StoreError:
    """The one-line error for a store DuckDB cannot read (truncated, bad checksums)."""
    text = " ".join(str(exc).split())[:240]
    step = wal_damage(Path(path), exc)
    if step is not None:
        return StoreError(f"store {path} cannot be opened: {step}")
    return StoreError(f"store {path} cannot be read: {text}. It may be damaged (truncated or "
                      "overwritten): restore a copy (harness store backup makes one) or move it aside")


def connect(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to the store file ``path`` (checked first): while another process
    holds the file, retry for up to ``wait`` seconds, then raise StoreLocked naming it."""
    check_store_file(path)
    deadline = time.monotonic() + max(0.0, wait)
    delay = 0.05
    said = False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=CONFIG)
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
