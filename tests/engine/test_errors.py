"""Faults of the machine, not of a candidate (issue 31): a full disk, a read-only checkpoint
folder, a file-size limit stop the whole run with one line naming the fault and the fix; the run
is recorded failed, and a re-run resumes. Real faults: a tiny tmpfs (where this user may mount
one) and RLIMIT_FSIZE in a subprocess (anywhere)."""

import subprocess
import sys
import textwrap
import uuid

import pytest
from helpers import fetch, harness

from harness.errors import EnvironmentFault, environment_fault

SUITE = """\
name: fault
seed: 0
zoo: {vision_encoders: [tiny:vit-p4], language_models: [LLMS]}
alignment: {dataset: shapes:color, samples: 32}
vlm: {llm: full, optim: {lr: 1.0e-3, batch_size: 16, epochs: 1}}
targets: [{task: shapes:color, limit: 8}]
search: {strategy: grid}
device: cpu
"""


def test_the_classifier_takes_real_os_errors_and_library_texts_only():
    import errno

    full = OSError(errno.ENOSPC, "No space left on device")
    assert "no space left" in str(environment_fault(full, "saving x"))
    assert isinstance(environment_fault(OSError(errno.EROFS, "Read-only file system"), "x"), EnvironmentFault)
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert "quota" in str(environment_fault(wrapped, "x"))
    rust = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert "ENOSPC" in str(environment_fault(rust, "x"))
    for own in (ValueError("loss is NaN"), OSError(errno.ENOENT, "No such file"), MemoryError()):
        assert environment_fault(own, "x") is None


def test_a_checkpoint_over_the_file_size_limit_is_an_environment_fault(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the write (EFBIG), as root too."""
    script = textwrap.dedent(f"""
        import resource, torch
        from pathlib import Path
        from harness.errors import EnvironmentFault
        from harness.trial import save_checkpoint

        class VLM(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = torch.nn.Linear(64, 64)
                self.register_buffer("feature_mean", torch.zeros(64))
                self.register_buffer("feature_std", torch.ones(64))

        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            save_checkpoint(VLM(), Path({str(tmp_path)!r}) / "checkpoints" / "abc")
        except EnvironmentFault as e:
            print("FAULT", e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("FAULT saving the checkpoint of trial abc: the file size limit"), out
    assert "EFBIG" in out.stdout and "ulimit -f" in out.stdout
    assert not list((tmp_path / "checkpoints" / "abc").iterdir())  # no half-written file left


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 MiB tmpfs, mounted for this test (root only); unmounted after."""
    mnt = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder):
    """Write until the disk is full; the file to delete to free it again."""
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_a_full_or_read_only_checkpoint_disk_stops_the_run_and_a_rerun_resumes(tmp_path, tiny_disk):
    (tmp_path / "checkpoints").symlink_to(tiny_disk)
    store = tmp_path / "s.duckdb"
    one = tmp_path / "one.yaml"
    one.write_text(SUITE.replace("LLMS", "tiny:gpt2"))
    two = tmp_path / "two.yaml"
    two.write_text(SUITE.replace("LLMS", "tiny:gpt2, tiny:mistral"))
    assert harness("run", one, "--store", store).returncode == 0  # the first candidate, stored

    filler = _fill(tiny_disk)
    full = harness("run", two, "--store", store)
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    assert len(errors) == 1 and "no space left on the device (ENOSPC" in errors[0], full.stderr
    assert "run it again: it resumes" in errors[0]
    runs = fetch(store, "select status, error from runs order by started_at")
    assert [r[0] for r in runs] == ["done", "failed"] and "ENOSPC" in runs[1][1]
    assert fetch(store, "select llm, status from trials order by llm") == [
        ("tiny:gpt2", "done"), ("tiny:mistral", "failed")]

    filler.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    ro = harness("run", two, "--store", store)
    errors = [line for line in ro.stderr.splitlines() if line.startswith("error:")]
    assert ro.returncode == 1 and len(errors) == 1 and "read-only (EROFS" in errors[0], ro.stderr

    subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
    resumed = harness("run", two, "--store", store)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 trained, 1 reused, 0 failed" in resumed.stderr + resumed.stdout
    assert [r[0] for r in fetch(store, "select status from runs order by started_at")] == [
        "done", "failed", "failed", "done"]
