"""Errors the CLI reports as one clean line and a non-zero exit, never a traceback."""


class HarnessError(Exception):
    exit_code = 1


class BadInput(HarnessError):
    """The user's input (suite, flag, file) is wrong; the message names it and the fix."""

    exit_code = 2


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is a Ctrl-C in disguise: DuckDB turns a SIGINT that arrives while it runs
    a statement into ``RuntimeError('Query interrupted')`` (or its ``InterruptException``), which
    a handler of one candidate's or one plugin's failure would otherwise take for that failure
    and go on. Such handlers raise ``KeyboardInterrupt`` for it instead."""
    import sys

    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(exc, getattr(duckdb, "InterruptException", ())):
        return True
    return isinstance(exc, RuntimeError) and str(exc).startswith("Query interrupted")


def stop_if_interrupted(exc: BaseException) -> None:
    """Raise ``KeyboardInterrupt`` for a Ctrl-C in disguise (:func:`interrupted`): called first
    in the handlers that isolate one candidate's or one plugin's failure."""
    if interrupted(exc):
        raise KeyboardInterrupt from exc
