"""Plugin system: registries, hooks, built-ins, and a real pip-installed third-party plugin."""

import inspect
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import helpers
from helpers import ROOT, TIMEOUT, fetch, harness

from harness import hookspecs
from harness.hookspecs import hookimpl
from harness.plugin_manager import (
    DEFAULT_PLUGINS,
    Components,
    PluginError,
    make_plugin_manager,
)
from harness.registry import (
    KINDS,
    DuplicateComponent,
    Entry,
    Registry,
    UnknownComponent,
)

FIXTURE = ROOT / "tests" / "fixtures" / "harness-example-plugin"


def test_every_hookspec_is_documented_and_takes_the_documented_args():
    specs = [
        (name, fn) for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "harness_spec")
    ]
    assert {name for name, _ in specs} == {hook for hook, _ in KINDS.values()} | {"register_commands"}
    for name, fn in specs:
        assert fn.__doc__ and len(fn.__doc__.strip()) > 20, name
        for arg in inspect.signature(fn).parameters:
            assert f":param {arg}:" in fn.__doc__, f"{name} does not document {arg}"


def test_builtins_register_through_the_hooks():
    components = Components(*make_plugin_manager())
    for module in DEFAULT_PLUGINS:
        info = components.plugins[module]
        assert info.builtin and info.hooks, module
        assert info.components or info.hooks == ["register_commands"], module
    assert "tiny:vit-p8" in components["vision_encoder"].available()
    assert components["stopping_policy"].get("sha").plugin == "harness.plugins.policies"


def test_duplicate_name_names_both_plugins():
    pm, infos = make_plugin_manager()
    rogue = types.ModuleType("rogue")

    @hookimpl
    def register_similarity_metrics(register):
        register("cka", "rogue:cka")

    rogue.register_similarity_metrics = register_similarity_metrics
    pm.register(rogue, name="rogue")
    infos["rogue"] = type(infos["harness.plugins.similarity"])("rogue", "9", "rogue", False)
    with pytest.raises(DuplicateComponent) as err:
        Components(pm, infos)
    assert "'cka'" in str(err.value)
    assert "harness.plugins.similarity" in str(err.value) and "rogue" in str(err.value)


def test_unknown_names_suggest_and_list():
    components = Components(*make_plugin_manager())
    with pytest.raises(UnknownComponent) as err:
        components["stopping_policy"].get("shaa")
    assert "Did you mean 'sha' or 'asha'?" in str(err.value)
    assert "Available: asha, hyperband, none, sha" in str(err.value)
    with pytest.raises(UnknownComponent) as err:
        components["vision_encoder"].resolve("tiny:vit-p9")
    assert "Did you mean 'tiny:vit-p8'" in str(err.value) and "tiny:convnext" in str(err.value)
    with pytest.raises(UnknownComponent) as err:
        components["vision_encoder"].resolve("hff:openai/clip")
    assert "family 'hff'" in str(err.value) and "Did you mean 'hf'?" in str(err.value)
    with pytest.raises(UnknownComponent, match="family:name"):
        components["language_model"].resolve("llama")
    entry, name = components["vision_encoder"].resolve("hf:openai/clip-vit-large-patch14-336")
    assert entry.name == "hf" and name == "openai/clip-vit-large-patch14-336"


def test_lazy_targets_import_on_first_use_and_explain_failures():
    registry = Registry("similarity_metric")
    registry.add(Entry("similarity_metric", "dist", "math:dist", "p", "1"))
    registry.add(Entry("similarity_metric", "ghost", "harness_no_such_module:f", "p", "1"))
    import math

    assert registry.get("dist").load() is math.dist
    with pytest.raises(Exception, match="ghost.*from plugin 'p'.*cannot be imported"):
        registry.get("ghost").load()


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--json"], ["store", "path"]])
def test_light_commands_do_not_import_torch(args):
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['harness', *{args!r}]\n"
        "try:\n    runpy.run_module('harness.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('torch', 'lmms_eval', 'transformers', 'duckdb') if m in sys.modules]\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    heavy = out.stderr.rsplit("HEAVY=", 1)[1].split(",")
    assert "torch" not in heavy and "lmms_eval" not in heavy and "transformers" not in heavy


@pytest.fixture(scope="module")
def installed_fixture(tmp_path_factory):
    """pip-install the example plugin distribution for real, into a throwaway site dir."""
    site = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(FIXTURE)],
        capture_output=True, text=True, cwd=build, timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    return site


def _with_site(site, allow=None):
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    if allow is None:
        env["HARNESS_LOAD_PLUGINS"] = ""
    else:
        env["HARNESS_LOAD_PLUGINS"] = allow
    return env


def _install_module_plugin(tmp_path, name, source, version="1.0", suffix=""):
    """pip-install (into its own --target folder) a plugin distribution harness-NAME whose one
    module harness_NAME holds SOURCE and is its entry point NAME; returns that folder."""
    pkg = tmp_path / f"{name}{suffix}"
    pkg.mkdir()
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires=["setuptools"]\nbuild-backend="setuptools.build_meta"\n'
        f'[project]\nname="harness-{name}"\nversion="{version}"\n'
        f'[project.entry-points.harness]\n{name} = "harness_{name}"\n'
        f'[tool.setuptools]\npy-modules=["harness_{name}"]\n')
    (pkg / f"harness_{name}.py").write_text(source)
    site = tmp_path / f"site{suffix}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(pkg)], check=True, capture_output=True,
                   cwd=tmp_path, timeout=TIMEOUT)
    return site


def _plugin_names(proc):
    assert proc.returncode == 0, proc.stderr
    return {p["name"]: p for p in json.loads(proc.stdout)}


def test_installed_plugin_is_listed_with_version_and_components(installed_fixture):
    env = _with_site(installed_fixture, allow="example")
    plugins = _plugin_names(harness("plugins", "--json", env=env))
    example = plugins["example"]
    assert example["version"] == "0.4.0"
    assert example["distribution"] == "harness-example-plugin"
    assert example["builtin"] is False
    assert example["components"] == {
        "vision_encoder": ["exenc"], "language_model": ["exlm"], "similarity_metric": ["rv"],
        "stopping_policy": ["median"], "predictor": ["last"], "dataset": ["squares"],
        "search_strategy": ["sampled"], "executor": ["logged"]}
    import harness.hookspecs as specs  # the template implements every hook there is

    assert set(example["hooks"]) == {n for n, f in vars(specs).items() if n.startswith("register_") and callable(f)}
    table = harness("plugins", env=env)
    assert "example" in table.stdout and "0.4.0" in table.stdout
    hello = harness("example-hello", env=env)
    assert hello.returncode == 0 and "hello from harness-example-plugin" in hello.stdout


def test_env_switch_allow_lists_or_disables_entry_points(installed_fixture, tmp_path):
    assert "example" not in _plugin_names(harness("plugins", "--json", env=_with_site(installed_fixture)))
    env = _with_site(installed_fixture, allow="some-other-plugin")
    assert "example" not in _plugin_names(harness("plugins", "--json", env=env))
    by_dist = _with_site(installed_fixture, allow="harness-example-plugin")
    assert "example" in _plugin_names(harness("plugins", "--json", env=by_dist))
    # the exclusion form: every plugin but the ones named (by entry point or distribution)
    for excluded in ("-example", "-harness-example-plugin"):
        assert "example" not in _plugin_names(harness("plugins", "--json", env=_with_site(installed_fixture, allow=excluded)))
    typo = harness("plugins", "--json", env=_with_site(installed_fixture, allow="-exampel"))
    assert "example" in _plugin_names(typo)
    assert "names 'exampel', which matches no installed plugin" in typo.stderr
    # a component the filtered-out plugin provides: the error says the filter left it out
    suite = tmp_path / "rv.yaml"
    suite.write_text((ROOT / "suites" / "quickstart.yaml").read_text().replace(
        "similarity: cka", "similarity: rv"))
    proc = harness("validate", str(suite), env=_with_site(installed_fixture, allow="-example"))
    assert proc.returncode == 2, proc.stderr
    assert "not loaded because of HARNESS_LOAD_PLUGINS: example" in proc.stdout + proc.stderr
    everything = {k: v for k, v in _with_site(installed_fixture).items() if k == "PYTHONPATH"}
    proc = harness("plugins", "--json", env={"HARNESS_LOAD_PLUGINS": None, **everything})
    assert "example" in _plugin_names(proc)


def test_suite_can_name_the_plugin_components(installed_fixture, tmp_path):
    quickstart = (ROOT / "suites" / "quickstart.yaml").read_text()
    suite = tmp_path / "suite.yaml"
    text = quickstart.replace("similarity: cka", "similarity: rv").replace("policy: sha", "policy: median")
    assert "similarity: rv" in text and "policy: median" in text
    suite.write_text(text)
    ok = harness("validate", str(suite), env=_with_site(installed_fixture, allow="example"))
    assert ok.returncode == 0, ok.stderr
    missing = harness("validate", str(suite), env=_with_site(installed_fixture))
    assert missing.returncode == 2
    assert "search.similarity" in missing.stderr and "Unknown similarity metric 'rv'" in missing.stderr
    assert not (tmp_path / ".harness").exists()


def test_a_third_party_policy_takes_its_own_options_from_the_suite(installed_fixture, tmp_path):
    """The example plugin's ``median`` declares ``Options(ratio)``: the suite's inter.options
    are validated against it (a wrong value named with file:line) and reach the policy, whose
    one rung then trains at that ratio."""

    env = _with_site(installed_fixture, allow="example")
    bad = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, "bad.yaml", **{
        "search.inter": {"policy": "median", "top_k": 2, "options": {"ratio": 2}}})
    out = harness("validate", str(bad), env=env)
    assert out.returncode == 2 and "search.inter.options.ratio" in out.stdout + out.stderr
    assert "stopping policy 'median'" in out.stdout + out.stderr
    good = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, "good.yaml", **{
        "zoo.vision_encoders": ["tiny:vit-p4", "tiny:vit-p8", "tiny:resnet"],
        "search.clustering.t_llm": 1.0,  # every LLM its own cluster: 6 clusters for median to cut
        "search.inter": {"policy": "median", "top_k": 2, "options": {"ratio": 0.25}},
        # and the predictor's: predictions clipped to [0, 0.001]
        "search.predictor": {"r0": 0.5, "points": 2, "options": {"clip": [0.0, 0.001]}}})
    store = tmp_path / "s.duckdb"
    out = harness("run", str(good), "--store", str(store), env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    ratios = fetch(store, "select distinct sample_ratio from rungs where phase = 'inter'")
    assert ratios == [(0.25,)]
    predicted = fetch(store, "select max(predicted_score), count(*) from predictions", one=True)
    assert predicted[1] > 0 and predicted[0] <= 0.001


def test_a_plugin_that_fails_to_import_is_named(tmp_path):
    site = _install_module_plugin(tmp_path, "broken", "import no_such_dependency_xyz\n")
    env = _with_site(site, allow="broken")
    # reported in one line naming the plugin and its distribution, and skipped: the commands
    # that do not need it still work (issue 18)
    for args in (["--help"], ["plugins"], ["validate", str(ROOT / "suites" / "quickstart.yaml")]):
        proc = harness(*args, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if "broken" in line]
        assert lines and lines[0].startswith('warning: Error importing plugin "broken"'), proc.stderr
        assert "harness-broken 1.0" in lines[0] and "no_such_dependency_xyz" in lines[0]
    # a component it might have provided: the unknown-name error says it was skipped
    proc = harness("trial", "--encoder", "broken:x", "--llm", "tiny:gpt2", "--task", "shapes:color", env=env)
    assert proc.returncode == 2 and "failed to import: broken" in proc.stderr


def test_a_skipped_plugin_is_forgotten_when_the_manager_is_rebuilt_without_it(tmp_path, monkeypatch):
    """The skipped-plugin note describes the current manager: a plugin that failed to import
    in an earlier build must not be named in every later error of the process (the CI failure of
    stop 25: one test's broken plugin leaked into every unknown-component message after it)."""
    import importlib

    from harness import plugin_manager
    site = _install_module_plugin(tmp_path, "gone", "raise ImportError('gone for good')\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "gone")
    try:
        plugin_manager.reset()
        with pytest.warns(plugin_manager.PluginWarning, match="gone for good"):
            components = plugin_manager.get_components()
        assert "gone" in components.failed  # the state of the manager that skipped it
        monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "")
        plugin_manager.reset()
        assert plugin_manager.get_components().failed == {}
        assert not hasattr(plugin_manager, "FAILED_PLUGINS")  # no module global holds it
    finally:
        monkeypatch.undo()
        plugin_manager.reset()
        importlib.invalidate_caches()


def test_names_on_a_kind_without_families_is_a_plugin_error_naming_it():
    pm, infos = make_plugin_manager()
    odd = types.ModuleType("odd")

    @hookimpl
    def register_similarity_metrics(register):
        register("fam", "odd:metric", names=["a", "b"])

    odd.register_similarity_metrics = register_similarity_metrics
    pm.register(odd, name="odd")
    infos["odd"] = type(infos["harness.plugins.similarity"])("odd", "1", "odd", False)
    with pytest.raises(PluginError, match="plugin 'odd': similarity_metric 'fam' passed names="):
        Components(pm, infos)


FP_PLUGIN = '''
from harness.hookspecs import hookimpl


def load(name):
    from harness.vision import load_tiny

    return load_tiny(name)


def cka2(x, y):
    from harness.similarity import cka

    return cka(x, y)


@hookimpl
def register_vision_encoders(register):
    register("fp", "harness_fp:load", names=["vit-p4", "vit-p8"], doc="tiny encoders, by a plugin")


@hookimpl
def register_similarity_metrics(register):
    register("cka2", "harness_fp:cka2", doc="CKA, by a plugin")
'''


def _install_fp(tmp_path, version):
    site = _install_module_plugin(tmp_path, "fp", FP_PLUGIN, version=version, suffix=f"-{version}")
    return _with_site(site, allow="fp")


@pytest.mark.long
def test_a_new_plugin_release_is_not_served_stale_results_and_rows_name_their_producer(tmp_path):
    """Issue 18 items 1 and 6: a plugin's components and metric are keyed by its release, so
    version 2.0 trains and measures again what 1.0 stored, while the built-ins' results are
    reused; each row names the plugin that made it (metric, policy, predictor, encoder)."""

    store = tmp_path / "s.duckdb"
    suite = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, **{
        "zoo.vision_encoders": ["fp:vit-p4", "fp:vit-p8", "tiny:resnet"], "search.similarity": "cka2"})
    for version in ("1.0", "2.0"):
        out = harness("run", str(suite), "--store", str(store), env=_install_fp(tmp_path, version))
        assert out.returncode == 0, out.stderr
    runs = [r for r, in fetch(store, "select run_id from runs order by started_at")]
    uses = fetch(store, "select t.encoder, u.reused from run_uses u join trials t on t.trial_key = u.key"
                 " where u.kind = 'trial' and u.run_id = ?", [runs[1]])
    assert uses and all(not reused for enc, reused in uses if enc.startswith("fp:"))
    assert any(enc.startswith("fp:") for enc, _ in uses)
    assert all(reused for enc, reused in uses if enc == "tiny:resnet")
    assert fetch(store, "select count(distinct fingerprint) from components where ref = 'fp:vit-p4'",
                 one=True) == (2,)
    # similarities: computed again under 2.0 (none of run 2's encoder similarities was reused)
    sims = fetch(store, "select reused from run_uses where kind = 'similarity' and run_id = ? and phase ="
                 " 'cluster-encoders'", [runs[1]])
    assert sims and not any(r for r, in sims)
    # provenance: the metric, the encoders' plugin, the policy, the predictor
    assert set(fetch(store, "select plugin, plugin_version from similarities where metric = 'cka2'")) == {
        ("fp", "1.0"), ("fp", "2.0")}
    emb = fetch(store, "select distinct e.plugin from embeddings e join components c on"
                " c.fingerprint = e.component_fingerprint where c.ref like 'fp:%'")
    assert emb == [("fp",)]
    assert fetch(store, "select distinct plugin from rungs") == [("harness.plugins.policies",)]
    assert set(fetch(store, "select distinct plugin from scaling_fits")) <= {("harness.plugins.predictors",)}
    assert fetch(store, "select distinct plugin from predictions") == [("harness.plugins.predictors",)]


def test_a_declared_cache_version_keys_results_instead_of_the_release():
    from harness.registry import Entry

    built_in = Entry("similarity_metric", "cka", None, "harness.plugins.similarity", "0.1.0")
    assert built_in.producer is None  # the shipped table's keys do not move with a harness release
    plugin = Entry("similarity_metric", "rv", None, "example", "0.3.1", distribution="harness-example-plugin")
    assert plugin.producer == "harness-example-plugin==0.3.1"
    pinned = Entry("similarity_metric", "rv", None, "example", "0.3.2", distribution="harness-example-plugin",
                   cache_version="1")
    assert pinned.producer == "harness-example-plugin==1"


FAULTS = '''
from harness.hookspecs import hookimpl


def nanmetric(x, y):
    return float("nan")


class NanPredictor:
    def fit(self, ratios, scores):
        from harness.predictors import ScalingFit

        return ScalingFit({"a": 0.5, "b": 0.1}, 1.0)

    def predict(self, fit, ratio=1.0):
        return float("nan")


class Rogue:
    def __init__(self, **options):
        pass

    def plan(self, n_candidates, top_k):
        from harness.policies import Rung

        return [] if n_candidates <= top_k else [Rung(0, 0.5, n_candidates, top_k)]

    def keep(self, scores, n_keep):
        return ["no-such-candidate"]


def raisemetric(x, y):
    raise RuntimeError("metric bug")


def load_boom(name):
    from harness.vision import load_tiny

    encoder = load_tiny("vit-p4")

    def boom(*args, **kwargs):
        raise RuntimeError("boom in forward")

    encoder.forward = boom
    return encoder


@hookimpl
def register_vision_encoders(register):
    register("faults", "harness_faults:load_boom", names=["boom"])


@hookimpl
def register_similarity_metrics(register):
    register("nanmetric", nanmetric)
    register("raisemetric", raisemetric)


class RaisingPredictor(NanPredictor):
    def fit(self, ratios, scores):
        return 1 / 0


class RaisingPolicy(Rogue):
    def keep(self, scores, n_keep):
        raise ValueError("policy bug")


@hookimpl
def register_predictors(register):
    register("nanpred", NanPredictor)
    register("raisepred", RaisingPredictor)


@hookimpl
def register_stopping_policies(register):
    register("rogue", Rogue)
    register("raisepolicy", RaisingPolicy)
'''


@pytest.mark.long
def test_faulty_plugin_outputs_are_refused_and_named_end_to_end(tmp_path):
    """Issue 18 item 3 on real runs: a metric returning NaN, a predictor returning NaN and a
    policy keeping a candidate it was not given are each named in one line (plugin, version);
    nothing non-finite is stored; the first two runs finish, the policy's fails."""

    site = _install_module_plugin(tmp_path, "faults", FAULTS)
    env = _with_site(site, allow="faults")
    one_llm = {"zoo.language_models": ["tiny:gpt2"]}  # the policy faults end the run early
    cases = {"nanmetric": {"search.similarity": "nanmetric"}, "raisemetric": {"search.similarity": "raisemetric"},
             "nanpred": {"search.predictor.name": "nanpred"}, "raisepred": {"search.predictor.name": "raisepred"},
             "forward": {"zoo.vision_encoders": ["faults:boom", "tiny:vit-p8", "tiny:resnet"]},
             "rogue": {"search.inter.policy": "rogue", **one_llm},
             "raisepolicy": {"search.inter.policy": "raisepolicy", **one_llm}}
    for label, changes in cases.items():
        store = tmp_path / f"{label}.duckdb"
        suite = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, f"{label}.yaml", **changes)
        out = harness("run", str(suite), "--store", str(store), env=env)
        said = " ".join((out.stdout + out.stderr).split())
        assert "Traceback" not in out.stderr, out.stderr
        status = fetch(store, "select status from runs", one=True)[0]
        if label in ("nanmetric", "raisemetric"):  # nothing stored; the components clustered apart
            assert out.returncode == 0 and status == "done", said[-2000:]
            what = "returned nan" if label == "nanmetric" else "raised RuntimeError: metric bug"
            assert f"similarity metric '{label}' (plugin faults 1.0) {what}" in said
            assert fetch(store, "select count(*) from similarities", one=True) == (0,)
        elif label in ("nanpred", "raisepred"):  # no prediction stored; ranked by what was measured
            assert out.returncode == 0 and status == "done", said[-2000:]
            what = "returned nan" if label == "nanpred" else "raised ZeroDivisionError"
            assert f"predictor '{label}' (plugin faults 1.0) {what}" in said
            assert fetch(store, "select count(*) from predictions", one=True) == (0,)
            assert fetch(store, "select basis from rankings where rank = 1", one=True) == ("measured",)
        elif label == "forward":  # clustered alone; its candidates fail when trained; the search goes on
            assert out.returncode == 0 and "could not be computed: RuntimeError: boom in forward" in said
            assert "(plugin faults 1.0)" in said.split("could not be computed")[0][-200:]
            assert fetch(store, "select distinct encoder from trials where status = 'failed'") in (
                [], [("faults:boom",)])
            assert fetch(store, "select count(*) from rankings", one=True) == (6,)
        elif label == "rogue":
            assert out.returncode != 0 and status == "failed"
            assert "stopping policy 'rogue' (plugin faults 1.0)" in said
        else:
            assert out.returncode != 0 and status == "failed"
            assert ("stopping policy 'raisepolicy' (plugin faults 1.0): its keep() raised ValueError:"
                    " policy bug") in said


@pytest.mark.parametrize("name,code,said", [
    ("regraise", "@hookimpl\ndef register_similarity_metrics(register):\n"
                 "    register('half', lambda x, y: 0.5)\n    raise RuntimeError('registration bug')\n",
     'Plugin "regraise" (harness-regraise 1.0): its hook register_similarity_metrics raised '
     "RuntimeError: registration bug; its similarity metrics are skipped"),
    ("typo", "@hookimpl\ndef register_encoders(register):\n    pass\n",
     "implements unknown hook 'register_encoders' (did you mean 'register_vision_encoders'?); it is skipped"),
])
def test_a_plugin_whose_hook_raises_or_is_misspelt_is_named_and_skipped(tmp_path, name, code, said):
    site = _install_module_plugin(tmp_path, name, "from harness.hookspecs import hookimpl\n\n" + code)
    env = _with_site(site, allow=name)
    for args in (["--help"], ["plugins", "--json"]):
        proc = harness(*args, env=env)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if name in line]
        assert len(lines) == 1 and said in lines[0], proc.stderr
    listed = {p["name"]: p for p in json.loads(harness("plugins", "--json", env=env).stdout)}
    assert "half" not in str(listed.get(name, {}).get("components", {}))  # what it registered went too


def test_a_component_of_the_wrong_kind_is_named_with_what_it_should_be(tmp_path):
    """Issue 16 item 1: the registry checks each kind's contract, at registration for an
    object and when a lazy "module:attr" target is imported; either way the plugin is named."""
    site = _install_module_plugin(
        tmp_path, "wrong",
        "from harness.hookspecs import hookimpl\n\n\nclass NoKeep:\n    def plan(self, n, k):\n"
        "        return []\n\n\n@hookimpl\ndef register_similarity_metrics(register):\n"
        "    register('fortytwo', 42)\n\n\n@hookimpl\ndef register_stopping_policies(register):\n"
        "    register('nokeep', 'harness_wrong:NoKeep')\n")
    env = _with_site(site, allow="wrong")
    proc = harness("plugins", "--json", env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert ("registered similarity metric 'fortytwo' as int 42; it should be a callable metric"
            in proc.stderr), proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert "similarity_metric" not in listed["wrong"]["components"]
    assert listed["wrong"]["components"]["stopping_policy"] == ["nokeep"]
    import importlib

    from harness.plugin_manager import get_components, reset
    from harness.registry import ContractError
    sys.path.insert(0, str(site))
    try:
        os.environ["HARNESS_LOAD_PLUGINS"] = "wrong"
        reset()
        entry = get_components()["stopping_policy"].get("nokeep")
        with pytest.raises(ContractError, match=r"from plugin 'wrong' \(harness-wrong 1.0\).*should be a "
                           r"policy class with plan\(\) and keep\(\)"):
            entry.load()
    finally:
        os.environ["HARNESS_LOAD_PLUGINS"] = ""
        sys.path.remove(str(site))
        reset()
        importlib.invalidate_caches()


CTRL_C = '''
from harness.hookspecs import hookimpl


def load_ctrlc(name):
    from harness.vision import load_tiny

    encoder = load_tiny("vit-p4")

    def forward(*args, **kwargs):  # Ctrl-C while DuckDB runs a statement
        import os
        import signal
        import threading

        import duckdb

        con = duckdb.connect()  # (a SIGINT that lands before the statement starts waits for its end)
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        con.execute("select count(*) from range(30000000000) t(i) where i % 7 = 3").fetchall()
        raise AssertionError("the statement was not interrupted")

    encoder.forward = forward
    return encoder


@hookimpl
def register_vision_encoders(register):
    register("ctrlc", "harness_ctrlc:load_ctrlc", names=["enc"])
'''


@pytest.mark.long
def test_ctrl_c_during_a_duckdb_statement_interrupts_the_run_instead_of_failing_a_candidate(tmp_path):
    """DuckDB turns a SIGINT that arrives during a statement into RuntimeError('Query
    interrupted'): the handlers that isolate one candidate's or one plugin's failure must not
    take it for one (the search then went on and ended 0); the run stops as on any Ctrl-C."""

    from harness.errors import interrupted

    site = _install_module_plugin(tmp_path, "ctrlc", CTRL_C)
    suite = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, "ctrlc.yaml",
                                   **{"zoo.vision_encoders": ["ctrlc:enc", "tiny:vit-p8"]})
    store = tmp_path / "s.duckdb"
    out = harness("run", str(suite), "--store", str(store), env=_with_site(site, allow="ctrlc"), timeout=600)
    assert out.returncode == 130, out.stderr[-2000:]
    assert "interrupted" in out.stderr and "Traceback" not in out.stderr
    assert fetch(store, "select status from runs", one=True) == ("interrupted",)
    said = out.stderr
    assert "clustered alone" not in said and "failed ctrlc:enc" not in said  # not taken for a fault
    assert interrupted(RuntimeError("Query interrupted")) and not interrupted(RuntimeError("a plugin's own error"))


def test_a_third_party_executor_takes_its_own_options_from_the_suite(installed_fixture, tmp_path):
    """The example plugin's ``logged`` executor requires ``log``: a misspelt key is named with
    its file and line (and what it may have meant); given, every trial is logged."""
    env = _with_site(installed_fixture, allow="example")
    bad = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, "bad.yaml", **{
        "search.strategy": "grid", "executor": {"name": "logged", "options": {"lgo": "x"}}})
    out = harness("validate", str(bad), env=env)
    assert out.returncode == 2 and "executor.options.lgo" in out.stdout + out.stderr, out.stderr
    assert "executor 'logged'" in out.stdout + out.stderr and "bad.yaml:" in out.stderr
    log = tmp_path / "trials.log"
    good = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, "good.yaml", **{
        "search.strategy": "grid", "zoo.language_models": ["tiny:gpt2"],
        "executor": {"name": "logged", "options": {"log": str(log)}}})
    out = harness("run", str(good), "--store", str(tmp_path / "s.duckdb"), env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(log.read_text().splitlines()) == 3  # the grid of 3 encoders x 1 LLM, each logged


LM_FAMILY = '''
from harness.hookspecs import hookimpl


def load_small(name):
    """A third-party LLM family: the tiny gpt2 built with this family's own seed, on the shapes
    world's words."""
    from harness.language import load_tiny
    from harness.plugins.shapes import vocabulary

    return load_tiny("gpt2", seed=7, vocabulary=vocabulary())


@hookimpl
def register_language_models(register):
    register("mylm", "harness_mylm:load_small", names=["small"])
'''


def test_a_third_party_language_model_family_is_searched_like_a_built_in(tmp_path):

    site = _install_module_plugin(tmp_path, "mylm", LM_FAMILY)
    suite = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, "lm.yaml", **{
        "search.strategy": "grid", "zoo.vision_encoders": ["tiny:vit-p8"],
        "zoo.language_models": ["mylm:small", "tiny:gpt2"]})
    store = tmp_path / "s.duckdb"
    out = harness("run", str(suite), "--store", str(store), env=_with_site(site, allow="mylm"), timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = dict(fetch(store, "select llm, status from trials"))
    assert rows == {"mylm:small": "done", "tiny:gpt2": "done"}
    # its component row names the plugin that made it, and the two LLMs are told apart
    made = dict(fetch(store, "select ref, plugin from components where kind = 'language_model'"))
    assert made["mylm:small"] == "mylm" and made["tiny:gpt2"] != "mylm"


def test_the_example_plugin_searches_with_its_own_component_of_every_kind(installed_fixture, tmp_path):
    """The template plugin, pip-installed, used for every hook at once: its encoder and LLM
    families, its dataset family as the alignment set and the target (trained on, clustered on
    its train split, scored on its test split by the default exact-match task), its metric,
    policy (with options) and predictor in a Mordal search; then its strategy (with options) on
    its executor (with options). Every row says the plugin made it."""

    env = _with_site(installed_fixture, allow="example")
    zoo = {"zoo.vision_encoders": ["exenc:small", "tiny:vit-p4"], "zoo.language_models": ["exlm:small", "tiny:gpt2"],
           "alignment": {"dataset": "squares:colors", "samples": 32},
           "targets": [{"task": "squares:colors", "limit": 8}]}
    suite = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, "mordal.yaml", **zoo, **{
        "search.similarity": "rv", "search.inter": {"policy": "median", "options": {"ratio": 0.5}, "top_k": 1},
        "search.predictor.name": "last"})
    store = tmp_path / "s.duckdb"
    out = harness("run", str(suite), "--store", str(store), env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "come from the alignment data" not in out.stderr  # clustered on its own train split
    assert set(fetch(store, "select task, n_items from scores")) == {("squares:colors", 8)}
    made = set(fetch(store, "select ref, plugin from components")) | set(fetch(store, "select ref, plugin from datasets"))
    assert {("exenc:small", "example"), ("exlm:small", "example"), ("squares:colors", "example")} <= made
    assert {r[0] for r in fetch(store, "select distinct plugin from similarities")} == {"example"}
    assert ("inter", "example") in set(fetch(store, "select phase, plugin from rungs"))
    assert {r[0] for r in fetch(store, "select distinct plugin from predictions")} == {"example"}

    log = tmp_path / "trials.log"
    suite = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, "sampled.yaml", **zoo, **{
        "search": {"strategy": "sampled", "options": {"k": 2, "ratio": 0.5}},
        "executor": {"name": "logged", "log": str(log)}})
    out = harness("run", str(suite), "--store", str(tmp_path / "t.duckdb"), env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [line.split()[-1] for line in log.read_text().splitlines()] == ["0.5", "0.5"]
    ranked = fetch(tmp_path / "t.duckdb", "select basis, sample_ratio from rankings order by rank")
    assert [b for b, _ in ranked] == ["measured", "measured", "cluster", "cluster"]

    # a suite is held to each family's declared capabilities when it is validated
    bad = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, "bad.yaml",
                                 targets=[{"task": "llava:elsewhere/data.json"}])
    out = harness("validate", str(bad), env=env)
    assert out.returncode == 2 and "bad.yaml:" in out.stderr and "targets[0].task" in out.stderr
    assert "cannot be a target" in out.stderr and "squares" in out.stderr.split("cannot be a target")[1]
    bad = helpers.write_suite(tmp_path, helpers.TINY_MORDAL, "bad2.yaml",
                                 alignment={"dataset": "lmms:mmmu_val"})
    out = harness("validate", str(bad), env=env)
    assert out.returncode == 2 and "alignment.dataset" in out.stderr and "cannot be an alignment set" in out.stderr


def test_every_hook_has_docs_and_a_third_party_plugin_test():
    """Like datasette's: each hookspec is documented (docstring, and named in CONTRIBUTING.md or
    README.md) and implemented by a plugin some test installs (tests/ or its fixtures)."""
    import harness.hookspecs as specs

    root = ROOT
    docs = (root / "CONTRIBUTING.md").read_text() + (root / "README.md").read_text()
    sources = "".join(p.read_text() for p in (root / "tests").rglob("*.py") if p.name != "test_plugins.py")
    sources += Path(__file__).read_text().split("def test_every_hook_has_docs_and_a_third_party_plugin_test")[0]
    example = (FIXTURE / "harness_example_plugin.py").read_text()
    hooks = [n for n, f in vars(specs).items() if n.startswith("register_") and callable(f)]
    assert len(hooks) >= 9
    for hook in hooks:
        fn = getattr(specs, hook)
        assert (fn.__doc__ or "").strip(), f"hook {hook} has no docstring"
        assert f"| `{hook}` |" in docs, f"hook {hook} has no row in CONTRIBUTING.md's table of hooks"
        assert f"def {hook}(" in sources, f"hook {hook} has no third-party plugin test"
        assert f"def {hook}(" in example, f"the example plugin does not implement {hook}"
