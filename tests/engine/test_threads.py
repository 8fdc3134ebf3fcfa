"""Torch's thread count follows the cores each harness process really has (issue 30): the
machine's harness processes register PID files, and each gives torch its share of the cores."""

import os
import subprocess
import sys

from helpers import TIMEOUT

from harness import threads


def test_each_live_harness_process_takes_its_share_and_dead_ones_are_forgotten(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_ACTIVE_DIR", str(tmp_path))
    monkeypatch.delenv("HARNESS_THREADS", raising=False)
    cores = threads.usable_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, timeout=TIMEOUT).stdout.strip()
        (tmp_path / str(sleeper.pid)).write_text("")
        (tmp_path / dead).write_text("")  # a process that ended without removing its file
        (tmp_path / "not-a-pid").write_text("")
        with threads.registered():
            assert (tmp_path / str(os.getpid())).exists()
            assert threads.active_processes() == 2  # this one and the sleeper
            assert threads.fair_threads() == max(1, cores // 2)
        assert not (tmp_path / dead).exists() and not (tmp_path / str(os.getpid())).exists()
        assert threads.active_processes() == 1
    finally:
        sleeper.kill()
        sleeper.wait()
    monkeypatch.setenv("HARNESS_THREADS", "3")
    assert threads.fair_threads() == 3


def test_a_second_process_halves_torch_threads(tmp_path):
    """A real process importing torch, with another harness process registered beside it."""
    code = ("import torch, sys\nfrom harness import threads\n"
            "with threads.registered():\n    print(torch.get_num_threads(), threads.usable_cores())")
    env = {**os.environ, "HARNESS_ACTIVE_DIR": str(tmp_path)}
    env.pop("HARNESS_THREADS", None)
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=TIMEOUT)
    n_alone, cores = map(int, alone.stdout.split())
    assert n_alone == cores
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / str(sleeper.pid)).write_text("")
        shared = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=TIMEOUT)
        assert int(shared.stdout.split()[0]) == max(1, cores // 2)
    finally:
        sleeper.kill()
        sleeper.wait()
