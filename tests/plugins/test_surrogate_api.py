"""A third-party strategy can use the learned search's surrogate through the plugin API (issue 33).

``tests/fixtures/harness-surrogate-plugin`` is a real distribution, pip-installed here as a user
installs one (no mocks): its entry point ``thompson`` in the ``harness`` group registers the
search strategy ``thompson``, Thompson sampling on :class:`harness.surrogate.Surrogate`. The
``harness`` command runs in a process of its own that finds the plugin through ``PYTHONPATH``.
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, TIMEOUT, fetch, harness, last_run, search_suite

FIXTURE = ROOT / "tests" / "fixtures" / "harness-surrogate-plugin"
VERSION = "0.2.0"  # the fixture's pyproject.toml

# 2 x 2 tiny candidates with a learning rate and epochs at which their scores differ; 2
# Thompson draws, then at most 2 trials confirming the pick
THOMPSON = {
    "zoo.vision_encoders": ["tiny:vit-p8", "tiny:resnet"],
    "vlm.optim": {"lr": 3e-3, "batch_size": 16, "epochs": 3},
    "targets": [{"task": "shapes:color", "limit": 16}],
    "search": {"strategy": "thompson", "options": {"trials": 2}},
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The fixture distribution pip-installed for real into a throwaway --target folder (as
    tests/engine/test_plugins.py installs the example plugin)."""
    target = tmp_path_factory.mktemp("surrogate-site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(FIXTURE)],
        check=False, capture_output=True, text=True, cwd=tmp_path_factory.mktemp("surrogate-build"),
        timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return target


def _env(site):
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            "HARNESS_LOAD_PLUGINS": "thompson"}


def test_the_surrogate_plugin_registers_its_strategy_and_options(site, tmp_path):
    """Listed with its distribution and version, one strategy; its ``Options`` are validated
    with the suite (a bad value named with file and field); loading it imports no torch."""
    out = harness("plugins", "--json", env=_env(site))
    assert out.returncode == 0, out.stderr
    plugin = {p["name"]: p for p in json.loads(out.stdout)}["thompson"]
    assert plugin["distribution"] == "harness-surrogate-plugin" and plugin["version"] == VERSION
    assert plugin["builtin"] is False and plugin["components"] == {"search_strategy": ["thompson"]}
    good = search_suite(tmp_path, "good.yaml", **THOMPSON)
    assert harness("validate", good, env=_env(site)).returncode == 0
    bad = search_suite(tmp_path, "bad.yaml", **{**THOMPSON, "search": {"strategy": "thompson",
                                                                       "options": {"trials": 0}}})
    out = harness("validate", bad, env=_env(site))
    assert out.returncode == 2 and "search.options.trials" in out.stderr and "bad.yaml:" in out.stderr
    code = ("import sys\nfrom harness.plugin_manager import get_components\n"
            "get_components()['search_strategy'].get('thompson').load()\n"
            "assert 'harness.surrogate' in sys.modules and 'torch' not in sys.modules\n")
    env = {**os.environ, **_env(site)}
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr


STEPS = "select step, encoder, llm, sample_ratio, score, trial_key, spent, pick_encoder, pick_llm" \
        " from search_steps where run_id = ? order by step"
RANKING = "select rank, encoder, llm, score, measured_or_predicted, basis, sample_ratio, trial_key," \
          " lower, upper from rankings where run_id = ? order by rank"


@pytest.mark.long
def test_a_third_party_strategy_can_use_the_same_surrogate_through_the_plugin_api(site, tmp_path):
    """``search.strategy: thompson`` in a real ``harness run``: it finishes, ranks every
    candidate (the trained ones measured, the rest predicted by the surrogate with an interval),
    its pick is a measured candidate whose score is its trial's stored score, its rows name the
    plugin and its version, and a second run on a fresh store makes the same decisions."""
    suite = search_suite(tmp_path, **THOMPSON)
    seen = []
    for name in ("a", "b"):
        store = tmp_path / name / "s.duckdb"
        out = harness("run", suite, "--store", store, env=_env(site), timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        run, status = last_run(store)
        assert status == "done" and "thompson: " in out.stderr
        assert fetch(store, "select strategy, plugin, plugin_version from runs where run_id = ?", [run],
                     one=True) == ("thompson", "thompson", VERSION)

        ranking = fetch(store, RANKING, [run])
        assert sorted((enc, llm) for _, enc, llm, *_ in ranking) == sorted(
            (enc, llm) for enc in THOMPSON["zoo.vision_encoders"] for llm in ("tiny:gpt2", "tiny:mistral"))
        assert [r[0] for r in ranking] == [1, 2, 3, 4]
        _, enc, llm, score, how, basis, ratio, key, _, _ = ranking[0]
        assert (how, basis, ratio) == ("measured", "measured", 1.0) and key is not None
        stored = fetch(store, "select t.encoder, t.llm, t.sample_ratio, t.status, s.value from trials t join"
                       " scores s on s.trial_key = t.trial_key where t.trial_key = ? and s.task = 'shapes:color'",
                       [key], one=True)
        assert stored == (enc, llm, 1.0, "done", score)
        assert any(r[4] == "predicted" for r in ranking)  # this world leaves one untrained
        for _, _, _, score, how, basis, _, _, lower, upper in ranking:
            if how == "predicted":  # the surrogate's posterior mean and its 95% interval
                assert basis == "predicted" and lower < score < upper

        steps = fetch(store, STEPS, [run])
        assert 2 <= len(steps) <= 4  # 2 draws, at most 2 confirmations
        assert [s[0] for s in steps] == list(range(len(steps)))
        trained = set(fetch(store, "select t.encoder, t.llm, t.trial_key from run_uses u join trials t on"
                            " t.trial_key = u.key where u.kind = 'trial' and u.run_id = ?", [run]))
        assert {(s[1], s[2], s[5]) for s in steps} == trained
        assert (enc, llm) == steps[-1][7:9]  # the pick after the last step is the ranking's
        for table in ("rankings", "search_steps"):
            made = fetch(store, f"select distinct plugin, plugin_version from {table} where run_id = ?", [run])
            assert made == [("thompson", VERSION)], table
        seen.append((steps, ranking))
    assert seen[0] == seen[1]
