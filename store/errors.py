"""Errors raised by the store. Messages name the file and say what to do."""

from __future__ import annotations

from harness.errors import HarnessError


class StoreError(HarnessError):
    """The store cannot be opened or used as asked (the CLI prints the message, exit code 1)."""


class StoreLocked(StoreError):
    """Another process holds the DuckDB file lock (DuckDB allows one writer process)."""

    exit_code = 3  # harness.cli.EXIT_STORE_BUSY

    def __init__(self, message: str, *, path: str, pid: int | None, command: str | None) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid
        self.command = command


class StoreWarning(UserWarning):
    """The store is usable but not what this code expects (e.g. older schema, opened read-only)."""
