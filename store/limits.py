"""The limits ``harness sql`` runs a query under: memory and time.

- memory: DuckDB's ``memory_limit`` (:data:`SQL_MEMORY`), and, for allocations DuckDB does not
  count (one huge string: ``repeat('x', 3000000000)``), a cap on the process's address space
  while the query runs (``RLIMIT_AS``: what it had, plus the limit, plus headroom), so such a
  query fails at once instead of taking the machine;
- time: ``--timeout`` seconds (:data:`SQL_TIMEOUT` by default), after which the query is
  interrupted (``connection.interrupt()`` from a timer).

Either ends the query with one line naming the limit (and how to raise the time limit).
"""

from __future__ import annotations

import os
import threading

from harness.errors import HarnessError

SQL_MEMORY = 2 * 2**30  # bytes DuckDB may use for one harness sql query
SQL_TIMEOUT = 120.0  # seconds, the default of harness sql --timeout
_HEADROOM = 1 * 2**30  # address space beyond the memory limit: threads' stacks, arenas


class QueryLimit(HarnessError):
    """A ``harness sql`` query hit its memory or time limit; it was stopped, nothing changed."""


def settings() -> list[str]:
    """Statements to run before the configuration is locked."""
    threads = max(1, min(4, os.cpu_count() or 1))
    return [f"SET memory_limit = '{SQL_MEMORY // 2**20}MiB'", f"SET threads = {threads}"]


def _vm_size() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def run_limited(con, sql: str, timeout: float = SQL_TIMEOUT) -> tuple[list[str], list[tuple]]:
    """Run one statement on ``con`` under the limits; (column names, rows)."""
    import duckdb

    fired = threading.Event()

    def stop():
        fired.set()
        con.interrupt()

    timer = threading.Timer(timeout, stop)
    timer.daemon = True
    cap = _address_cap()
    timer.start()
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        rows = cursor.fetchall() if columns else []
    except (duckdb.Error, MemoryError) as exc:
        if fired.is_set():
            raise QueryLimit(f"query stopped after {timeout:g} s, the time limit of harness sql "
                             "(--timeout SECONDS allows more); nothing was changed") from None
        text = str(exc)
        if isinstance(exc, (MemoryError, duckdb.OutOfMemoryException)) or "Out of Memory" in text \
                or "bad allocation" in text:
            raise QueryLimit(f"query stopped: it needs more memory than the {SQL_MEMORY / 2**30:g} GiB "
                             "memory limit of harness sql; select fewer rows or columns, or "
                             "aggregate; nothing was changed") from None
        raise
    finally:
        timer.cancel()
        _restore(cap)
    return columns, rows


def _address_cap():
    """Cap RLIMIT_AS for the query; what to restore after (None: left as it was)."""
    try:
        import resource
    except ImportError:  # (not on Windows)
        return None
    size = _vm_size()
    if size is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = size + SQL_MEMORY + _HEADROOM
    if soft != resource.RLIM_INFINITY and soft <= cap:
        return None
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ValueError, OSError):
        return None
    return (soft, hard)


def _restore(previous) -> None:
    if previous is None:
        return
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_AS, previous)
    except (ValueError, OSError):
        pass
