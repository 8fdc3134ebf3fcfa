"""Torch's thread count follows the cores a process really has.

Torch starts one intra-op thread per core of the machine. Two harness processes on a 2-core
machine then run four spinning OpenMP threads on two cores, and each trial takes several times
as long as it would alone. Every harness process that computes (a run, a replay that fills, a
worker of ``executor: processes``) registers itself in a folder of PID files shared by the
machine's harness processes; before each trial it sets torch's threads to

    max(1, usable cores // harness processes computing now)

where the usable cores are the process's CPU affinity, capped by a cgroup CPU quota when one
is set. ``HARNESS_THREADS`` fixes the count instead (a worker of ``executor: processes`` and a
Ray task are given theirs by the executor).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def usable_cores() -> int:
    """The cores this process may run on: its affinity, capped by a cgroup v2 ``cpu.max``
    quota (a container's CPU limit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def registry() -> Path:
    """The folder of PID files (``HARNESS_ACTIVE_DIR``, default in the system's temp folder)."""
    return Path(os.environ.get("HARNESS_ACTIVE_DIR") or Path(tempfile.gettempdir()) / "harness-active")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def active_processes() -> int:
    """Harness processes computing on this machine now (this one included when registered);
    the files of processes that died are removed on the way."""
    folder = registry()
    n = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 1
    for f in entries:
        try:
            pid = int(f.name)
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            n += 1
        else:
            with contextlib.suppress(OSError):
                f.unlink()
    return max(1, n)


def fair_threads() -> int:
    """The threads this process should give torch now (``HARNESS_THREADS`` when set)."""
    fixed = os.environ.get("HARNESS_THREADS")
    if fixed:
        try:
            return max(1, int(fixed))
        except ValueError:
            pass
    return max(1, usable_cores() // active_processes())


def set_fair_threads() -> int:
    """Set torch's intra-op threads to :func:`fair_threads` (when torch is loaded); returns it."""
    import sys

    n = fair_threads()
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def registered():
    """This process counts as computing while inside (its PID file in :func:`registry`); a
    folder that cannot be written only means the count leaves this process out."""
    path = registry() / str(os.getpid())
    made = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            path.parent.chmod(0o1777)  # shared by every user's harness processes, like /tmp
        if not path.exists():
            path.write_text("")
            made = True
    except OSError:
        pass
    try:
        set_fair_threads()
        yield
    finally:
        if made:
            with contextlib.suppress(OSError):
                path.unlink()
