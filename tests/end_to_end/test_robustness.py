"""The bad-input battery of benchmarks/robustness.py, case by case (issue 19): every suite,
data file, store and SQL statement there gets a one-line error, exit != 0, no traceback, no
hang, and leaves every file as it was. Then the controls: good inputs still pass."""

import json
import sys

import pytest
from helpers import ROOT, invoke

sys.path.insert(0, str(ROOT / "benchmarks"))

import robustness  # noqa: E402

CASES = robustness.cases()


def test_the_battery_has_at_least_250_inputs_of_every_kind():
    kinds = {c.kind for c in CASES}
    assert len(CASES) >= 250 and kinds == {"suites", "data", "stores", "sql"}
    assert len({c.name for c in CASES}) == len(CASES)  # each case named once


@pytest.mark.long
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_cleanly(case, tmp_path):
    row = robustness.run_case(case, tmp_path / "case", timeout=60)
    assert row["verdict"] == "clean", row
    assert row["store_changed"] == [], row


def test_good_llava_data_validates_and_outside_images_need_the_option(tmp_path):
    robustness._png(tmp_path)
    data = tmp_path / "img" / "data.json"
    data.write_text(json.dumps([robustness.GOOD]))
    suite = tmp_path / "suite.yaml"
    suite.write_text(robustness.suite_text(align=f"llava:{data}"))
    ok = invoke("validate", suite)
    assert ok.returncode == 0, ok.stderr
    # an image outside the folder: refused, unless the ref says outside=1
    (tmp_path / "elsewhere.png").write_bytes((tmp_path / "img" / "a.png").read_bytes())
    data.write_text(json.dumps([{**robustness.GOOD, "image": str(tmp_path / "elsewhere.png")}]))
    refused = invoke("validate", suite)
    assert refused.returncode == 2 and "outside the image folder" in refused.stderr
    suite.write_text(robustness.suite_text(align=f"llava:{data}?outside=1"))
    allowed = invoke("validate", suite)
    assert allowed.returncode == 0, allowed.stderr


def test_bounds_name_the_field_and_the_limit(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(robustness.suite_text(**{"batch_size: 16": "batch_size: 1000000000000"}))
    out = invoke("validate", suite)
    assert out.returncode == 2 and "vlm.optim.batch_size" in out.stderr and "65536" in out.stderr


def test_the_battery_covers_issue_31():
    """Data loss (export --force, forget of a forged checkpoint path), paths a suite or --out may
    not name, the tracebacks that became one line, the limits of harness sql, damaged .wal files
    and echoed control characters are cases of the battery."""
    names = {c.name for c in CASES}
    for want in ("export --force over the store's own folder", "export --force over a project with a manifest.json",
                 "forget a trial imported with another trial's checkpoint path",
                 "import a manifest with tables: []", "import a manifest entry without sha256",
                 'import a manifest with format_version "9"', "replay --seed -1",
                 "replay --seed 18446744073709551616", "export --out /proc/x", "report --out /proc/x",
                 'backup of a store named we"ird', "suite store leaves the folder (validate)",
                 "suite store absolute (run)", "suite null key (validate)", "suite bidi name (validate)",
                 "suite is a symlink loop (validate)", "store is /dev/full", "damaged .wal: check",
                 "sql a 3 GB string", "sql past --timeout"):
        assert want in names, want
    forged = next(c for c in CASES if c.name.startswith("forget a trial imported"))
    assert forged.ok and forged.may_change == ("s.duckdb",)  # the victim's checkpoint is compared
    assert robustness._RAW.search("a\u202eb") and robustness._RAW.search("a\x85b")
    assert not robustness._RAW.search("a\\u202eb caf\u00e9")


@pytest.mark.parametrize("seed", ["-1", "18446744073709551616", "9223372036854775808"])
def test_a_replay_seed_out_of_range_is_one_line_before_the_store_is_touched(tmp_path, seed):
    """It used to train for a minute, then fail with a ValueError (or DuckDB's
    ConversionException) and leave a `failed` run behind."""
    from helpers import make_store, snapshot

    store = tmp_path / "s.duckdb"
    make_store(store)
    suite = tmp_path / "suite.yaml"
    suite.write_text(robustness.suite_text())
    before = snapshot(tmp_path)
    out = invoke("replay", "--from", "nope", "--suite", suite, "--seed", seed, "--store", store)
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.output
    assert lines[0] == f"error: --seed {seed}: a seed is an integer from 0 to {2**63 - 1} (2^63 - 1)"
    assert snapshot(tmp_path) == before
