"""The bad-input battery of benchmarks/robustness.py, case by case (issue 19): every suite,
data file, store and SQL statement there gets a one-line error, exit != 0, no traceback, no
hang, and leaves every file as it was. Then the controls: good inputs still pass."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import robustness

CASES = robustness.cases()


def test_the_battery_has_at_least_a_hundred_inputs_of_every_kind():
    kinds = {c.kind for c in CASES}
    assert len(CASES) >= 100 and kinds == {"suites", "data", "stores", "sql"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_cleanly(case, tmp_path):
    row = robustness.run_case(case, tmp_path / "case", timeout=60)
    assert row["verdict"] == "clean", row
    assert row["store_changed"] == [], row


def harness(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def test_good_llava_data_validates_and_outside_images_need_the_option(tmp_path):
    robustness._png(tmp_path)
    data = tmp_path / "img" / "data.json"
    data.write_text(json.dumps([robustness.GOOD]))
    suite = tmp_path / "suite.yaml"
    suite.write_text(robustness.suite_text(align=f"llava:{data}"))
    ok = harness("validate", suite)
    assert ok.returncode == 0, ok.stderr
    # an image outside the folder: refused, unless the ref says outside=1
    (tmp_path / "elsewhere.png").write_bytes((tmp_path / "img" / "a.png").read_bytes())
    data.write_text(json.dumps([{**robustness.GOOD, "image": str(tmp_path / "elsewhere.png")}]))
    refused = harness("validate", suite)
    assert refused.returncode == 2 and "outside the image folder" in refused.stderr
    suite.write_text(robustness.suite_text(align=f"llava:{data}?outside=1"))
    allowed = harness("validate", suite)
    assert allowed.returncode == 0, allowed.stderr


def test_bounds_name_the_field_and_the_limit(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(robustness.suite_text(**{"batch_size: 16": "batch_size: 1000000000000"}))
    out = harness("validate", suite)
    assert out.returncode == 2 and "vlm.optim.batch_size" in out.stderr and "65536" in out.stderr
