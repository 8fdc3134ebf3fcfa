"""Checks on paths the user hands harness to write to, and on text echoed back to them.

- :func:`check_out_folder`: an ``--out`` folder (``harness report --out``, ``harness store export
  --out``) is refused when it is a system root (``/``, ``/tmp``, ``/home``, ...), lies inside the
  operating system's own trees (``/etc``, ``/usr``, ``/boot``, ...) or on a
  pseudo-filesystem (``/proc``, ``/sys``, ``/dev``, ...), with one line naming the flag.
- :func:`safe_text`: user text (a suite's name, a path) with control and bidi characters escaped,
  so what is printed is what the file holds and cannot reorder or hide the rest of the line.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from harness.errors import BadInput

# folders that are never an output folder themselves
SYSTEM_ROOTS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
    "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
    "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/usr/share", "/var/lib", "/var/log",
})
# kernel and device file systems: nothing harness writes belongs there
PSEUDO_FS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
    "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc", "autofs",
    "efivarfs", "rpc_pipefs", "nsfs",
})
PSEUDO_ROOTS = ("/proc", "/sys", "/dev")
# the operating system's own trees: nothing harness writes belongs anywhere under them
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot")


def _mounts() -> list[tuple[str, str]]:
    """(mount point, file system type), longest mount point first; empty where unknown."""
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            rows.append((parts[1].replace("\\040", " "), parts[2]))
    return sorted(rows, key=lambda r: len(r[0]), reverse=True)


def _fs_type(path: Path) -> str | None:
    text = str(path)
    for point, kind in _mounts():
        if text == point or text.startswith(point.rstrip("/") + "/"):
            return kind
    return None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def check_out_folder(out: str | os.PathLike, flag: str = "--out") -> Path:
    """``out`` as an absolute path, or :class:`BadInput` (exit 2, one line) when it is a system
    root or on a pseudo-filesystem."""
    given = Path(out).expanduser()
    resolved = Path(os.path.realpath(given))
    shown = safe_text(str(given))
    for p in {str(given.absolute()), str(resolved)}:
        if p in SYSTEM_ROOTS:
            raise BadInput(f"{flag} {shown}: {p} is a system folder, not an output folder; give a "
                           "folder of your own (e.g. ./out)")
        tree = next((t for t in SYSTEM_TREES if _under(p, t)), None)
        if tree is not None:
            raise BadInput(f"{flag} {shown}: {p} is inside the system's {tree}, not an output folder; "
                           "give a folder of your own (e.g. ./out)")
        if any(_under(p, r) for r in PSEUDO_ROOTS) and _fs_type(Path(p)) != "tmpfs":  # /dev/shm is
            raise BadInput(f"{flag} {shown}: {p} is on a kernel pseudo-filesystem where no files can be "
                           "written; give a folder of your own (e.g. ./out)")
    probe = given.absolute()
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise BadInput(f"{flag} {shown}: {safe_text(str(probe))} is a file, not a folder; give a "
                       "folder (it is created if missing)")
    kind = _fs_type(resolved)
    if kind in PSEUDO_FS:
        raise BadInput(f"{flag} {shown}: {resolved} is on a {kind} pseudo-filesystem where no files can "
                       "be written; give a folder of your own (e.g. ./out)")
    return given.absolute()


_BIDI = {"LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI", "LRM", "RLM", "ALM"}


def safe_text(text: str) -> str:
    """``text`` with control characters (C0, C1 such as NEL, line and paragraph separators) and
    bidirectional formatting characters written as escapes (``\\x85``, ``\\u202e``)."""
    out = []
    for ch in str(text):
        cat = unicodedata.category(ch)
        if (cat in ("Cc", "Zl", "Zp") or (cat == "Cf" and unicodedata.bidirectional(ch) in _BIDI)
                or ch in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def suite_store(suite_path: str | os.PathLike, store: str) -> Path:
    """The store a suite's ``store:`` names: relative to the suite's folder and inside it, links
    resolved (validation refuses absolute paths and ``..``; a link that leads out is refused here).
    An absolute path comes only from ``--store`` or ``HARNESS_STORE``."""
    folder = Path(os.path.realpath(Path(suite_path).expanduser().absolute().parent))
    path = Path(os.path.realpath(folder / store))
    if os.path.isabs(store) or not path.is_relative_to(folder):
        raise BadInput(f"{safe_text(str(suite_path))}: store: {safe_text(store)!r} leads outside the suite's "
                       "folder; a store path in a suite must stay inside it: pass --store PATH or "
                       "set HARNESS_STORE to keep it elsewhere")
    return path
