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


class EnvironmentFault(HarnessError):
    """The machine, not the candidate, failed: the disk is full, the checkpoint folder or the
    store is read-only or not ours, a quota or file-size limit is reached. Every candidate
    would fail the same way, so the run stops (recorded ``failed``) with one line naming the
    fault and the fix; a re-run resumes (finished trials are reused). Raised where a trial's
    outcome is produced (:mod:`harness.trial`); strategies let :class:`HarnessError` through."""

    exit_code = 1


# errno -> (what is wrong, what to do)
_ELSEWHERE = "(or point --store / HARNESS_STORE at {})"
_FAULTS = {
    "ENOSPC": ("no space left on the device", "free space there " + _ELSEWHERE.format("a disk with room")),
    "EDQUOT": ("the disk quota is used up", "free space in your quota " + _ELSEWHERE.format("another disk")),
    "EROFS": ("the file system is read-only", "make it writable " + _ELSEWHERE.format("a writable folder")),
    "EACCES": ("permission denied", "make the folder writable for this user "
               + _ELSEWHERE.format("a folder you own")),
    "EFBIG": ("the file size limit is reached", "raise it (ulimit -f unlimited) or free space"),
}
_FAULT_TEXT = {"ENOSPC": "No space left on device", "EDQUOT": "Disk quota exceeded",
               "EROFS": "Read-only file system", "EACCES": "Permission denied", "EFBIG": "File too large"}


def _fault_errno(exc: BaseException) -> tuple[str, str | None] | None:
    """(errno name, file name) when ``exc`` or an exception it came from is an environment fault:
    an OSError with one of the errnos above, or a library's error (DuckDB's IOException, a Rust
    extension's I/O error) whose text is the operating system's message for one."""
    import errno as _errno
    import re

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            name = _errno.errorcode.get(exc.errno)
            if name in _FAULTS:
                return name, exc.filename
        elif not isinstance(exc, OSError):
            text = str(exc)
            for name, message in _FAULT_TEXT.items():
                code = getattr(_errno, name, None)
                if message in text or (code is not None and re.search(rf"\bos error {code}\b", text)):
                    return name, None
        exc = exc.__cause__ or exc.__context__
    return None


def environment_fault(exc: BaseException, doing: str, path=None) -> EnvironmentFault | None:
    """The :class:`EnvironmentFault` that ``exc`` is (``doing``: what harness was writing, e.g.
    "saving trial 1a2b's checkpoint"), or None when ``exc`` is the candidate's own failure."""
    if isinstance(exc, EnvironmentFault):
        return exc
    found = _fault_errno(exc)
    if found is None:
        return None
    name, filename = found
    what, fix = _FAULTS[name]
    where = filename or path
    return EnvironmentFault(f"{doing}: {what} ({name}{f', {where}' if where else ''}); every trial "
                            f"would fail the same way, so the run stopped. Fix: {fix}, then run it "
                            "again: it resumes, reusing the finished trials")
