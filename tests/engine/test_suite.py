"""Suite schema and loader: valid suites load with defaults; malformed ones say why and where."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers import BAD_SUITES, ROOT, TIMEOUT
from pydantic import ValidationError

import harness.suite
from harness.errors import BadInput
from harness.suite import (
    MAX_SUITE_BYTES,
    Candidate,
    Suite,
    SuiteError,
    load_suite,
    validate_file,
)

BAD = BAD_SUITES
QUICKSTART = ROOT / "suites" / "quickstart.yaml"
PAPER = ROOT / "suites" / "mordal-paper.yaml"

# file -> the messages it must produce, in order, each a substring of one error line
# ("<file>:<line> <path>: <message>"), or a tuple of substrings of one line; a file must
# produce exactly these and no others.
EXPECTED = {
    "alias.yaml": ["alias.yaml:10: YAML aliases (*al) are not supported in a suite"],
    "bad_projector.yaml": [
        ('bad_projector.yaml:11 vlm.projector: expected linear, mlp<N>x_gelu or ln_mlp<N>x_gelu '
        '(N >= 1), got "mlp0x_gelu"')
    ],
    "bool_not_bool.yaml": [
        'bool_not_bool.yaml:12 search.clustering.enabled: expected true or false, got "maybe"'
    ],
    "cka_samples_three.yaml": [
        "cka_samples_three.yaml:11 search.clustering.samples: must be > 3, got 3"
    ],
    "continuation_linear.yaml": [
        ("continuation_linear.yaml:10 search.continuation: continuation needs vlm.optim.schedule: "
         "constant, not 'cosine'")
    ],
    "duplicate_encoder.yaml": [
        ("duplicate_encoder.yaml:4 zoo.vision_encoders[2]: duplicate vision encoder 'tiny:vit-p8' "
        "(first at [0])")
    ],
    "duplicate_key.yaml": ["duplicate_key.yaml:11 seed: duplicate key 'seed' (first at line 3)"],
    "duplicate_llm.yaml": [
        ("duplicate_llm.yaml:5 zoo.language_models[1]: duplicate language model 'tiny:llama' "
        "(first at [0])")
    ],
    "duplicate_task.yaml": [
        "duplicate_task.yaml:10 targets[2].task: duplicate task 'shapes:color' (first at targets[0])"
    ],
    "empty.yaml": ["empty.yaml: the file is empty; a suite needs at least: name, zoo, alignment, targets"],
    "empty_encoders.yaml": ["empty_encoders.yaml:4 zoo.vision_encoders: must not be empty"],
    "epochs_and_steps.yaml": ["epochs_and_steps.yaml:13 vlm.optim.steps: give epochs or steps, not both"],
    "eta_one.yaml": ["eta_one.yaml:13 search.inter.eta: must be >= 2, got 1"],
    "linkage_typo.yaml": [
        ("linkage_typo.yaml:11 search.clustering.linkage: expected one of average, single, complete, "
        "weighted, centroid, median, ward; got \"avrage\" (did you mean 'average'?)")
    ],
    "llm_without_family.yaml": [
        ("llm_without_family.yaml:5 zoo.language_models[0]: language model 'llama' must be written "
        "family:name")
    ],
    "lora_dropout_one.yaml": ["lora_dropout_one.yaml:12 vlm.lora.dropout: must be in [0, 1), got 1"],
    "lora_targets_number.yaml": [
        ('lora_targets_number.yaml:11 vlm.lora.targets: expected "all-linear" or a non-empty list '
        "of module names")
    ],
    "merge_key.yaml": ["merge_key.yaml:11 vlm: YAML merge keys (<<) are not supported in a suite"],
    "missing_alignment_dataset.yaml": [
        "missing_alignment_dataset.yaml:6 alignment.dataset: required field is missing"
    ],
    "missing_name.yaml": ["missing_name.yaml:2 name: required field is missing"],
    "missing_targets.yaml": ["missing_targets.yaml:2 targets: required field is missing"],
    "multiple_errors.yaml": [
        "multiple_errors.yaml:3 seed: must be >= 0, got -1",
        ("multiple_errors.yaml:5 zoo.vision_encoders[0]: Unknown vision encoder 'tiny:vit-p9'. "
        "Did you mean 'tiny:vit-p8'"),
        "multiple_errors.yaml:12 search.inter.eta: must be >= 2, got 1",
        "multiple_errors.yaml:12 search.inter.top_k: must be >= 1, got 0",
        "multiple_errors.yaml:13 executor.name: Unknown executor 'remote'. Available: local",
    ],
    "name_bidi.yaml": [('name_bidi.yaml:1 name: must be letters', 'got "bad \\u202ename"')],
    "null_key.yaml": ["null_key.yaml:10 null: unknown key 'null'"],
    "store_absolute.yaml": [('store_absolute.yaml:10 store: an absolute path ("/dev/full") is not allowed',
                             "pass --store PATH or set HARNESS_STORE")],
    "store_leaves_folder.yaml": [("store_leaves_folder.yaml:4 store: \"../../x/s.duckdb\" leaves the suite's",
                                  "pass --store PATH or set HARNESS_STORE")],
    "name_with_space.yaml": [
        ("name_with_space.yaml:2 name: must be letters, digits, '.', '_' or '-', starting with a "
        'letter or digit; got "my suite"')
    ],
    "negative_lr.yaml": ["negative_lr.yaml:11 vlm.optim.lr: must be > 0, got -0.001"],
    "negative_threshold.yaml": [
        "negative_threshold.yaml:12 search.clustering.t_ve: must be >= 0, got -0.2"
    ],
    "not_utf8.yaml": ["not_utf8.yaml:2: not UTF-8: invalid byte 0xe9 at byte offset 39"],
    "nul_byte.yaml": ["nul_byte.yaml:2: invalid YAML: unacceptable character #x0000"],
    "only_comments.yaml": ["only_comments.yaml: the file is empty"],
    "points_one.yaml": ["points_one.yaml:11 search.predictor.points: must be >= 2, got 1"],
    "precision_fp16.yaml": [
        "precision_fp16.yaml:10 vlm.precision: expected one of auto, fp32, bf16; got \"fp16\""
    ],
    "ratio_above_one.yaml": [
        "ratio_above_one.yaml:11 search.predictor.r0: must be a ratio in (0, 1], got 1.5"
    ],
    "ratio_zero.yaml": ["ratio_zero.yaml:12 search.inter.min_ratio: must be a ratio in (0, 1], got 0"],
    "schedule_typo.yaml": [
        ("schedule_typo.yaml:12 vlm.optim.schedule: expected one of linear, cosine, constant; "
        "got \"cosin\" (did you mean 'cosine'?)")
    ],
    "section_not_mapping.yaml": [
        ('section_not_mapping.yaml:6 alignment: expected a mapping with keys dataset, samples; '
        'got "shapes:align"')
    ],
    "seed_not_int.yaml": ['seed_not_int.yaml:3 seed: expected an integer, got "abc"'],
    "syntax_error.yaml": [("syntax_error.yaml:5:18: invalid YAML: ", "',' or ']'")],
    "tab_indent.yaml": [("tab_indent.yaml:4:1: invalid YAML: found character", "(a tab: indent with spaces)")],
    "target_limit_zero.yaml": ["target_limit_zero.yaml:9 targets[0].limit: must be > 0, got 0"],
    "top_k_zero.yaml": ["top_k_zero.yaml:11 search.intra.top_k: must be >= 1, got 0"],
    "top_level_list.yaml": [("top_level_list.yaml:2: the top level must be a mapping", "got a list")],
    "top_level_scalar.yaml": [
        ("top_level_scalar.yaml:2: the top level must be a mapping", 'got the value "just a string"')
    ],
    "two_documents.yaml": ["two_documents.yaml:3:1: invalid YAML: a suite is a single YAML document"],
    "unknown_alignment_family.yaml": [
        ("unknown_alignment_family.yaml:6 alignment.dataset: Unknown dataset family 'shape' in "
        "'shape:align'. Did you mean 'shapes'? Available: ")
    ],
    "unknown_encoder.yaml": [
        ("unknown_encoder.yaml:4 zoo.vision_encoders[1]: Unknown vision encoder 'tiny:vit-p9'. "
        "Did you mean 'tiny:vit-p8'")
    ],
    "unknown_encoder_family.yaml": [
        ("unknown_encoder_family.yaml:4 zoo.vision_encoders[1]: Unknown vision encoder family 'hff' "
        "in 'hff:openai/clip-vit-large-patch14-336'. Did you mean 'hf'? Available: ")
    ],
    "unknown_executor.yaml": [
        ("unknown_executor.yaml:10 executor.name: Unknown executor 'locl'. Did you mean 'local'? "
        "Available: local")
    ],
    "unknown_llm.yaml": [
        ("unknown_llm.yaml:5 zoo.language_models[0]: Unknown language model 'tiny:lama'. "
        "Did you mean 'tiny:llama'")
    ],
    "unknown_nested_key.yaml": [
        ("unknown_nested_key.yaml:12 search.inter.etaa: unknown key 'etaa'; did you mean 'eta'? "
        "allowed: eta, min_ratio, options, policy, tie_z, top_k, uninformative")
    ],
    "unknown_policy.yaml": [
        ("unknown_policy.yaml:11 search.inter.policy: Unknown stopping policy 'shaa'. "
        "Did you mean 'sha' or 'asha'? Available: ")
    ],
    "unknown_predictor.yaml": [
        ("unknown_predictor.yaml:12 search.predictor.name: Unknown predictor 'log-linear'. "
        "Did you mean 'loglinear'? Available: ")
    ],
    "unknown_similarity.yaml": [
        ("unknown_similarity.yaml:11 search.similarity: Unknown similarity metric 'ckaa'. "
        "Did you mean 'cka'? Available: ")
    ],
    "unknown_strategy.yaml": [
        ("unknown_strategy.yaml:11 search.strategy: Unknown search strategy 'mordl'. "
        "Did you mean 'mordal'? Available: ")
    ],
    "unknown_target_dataset.yaml": [
        ("unknown_target_dataset.yaml:8 targets[0].task: Unknown dataset 'shapes:colour'. "
        "Did you mean 'shapes:color'")
    ],
    "unknown_top_level_key.yaml": [
        ("unknown_top_level_key.yaml:10 serach: unknown key 'serach'; did you mean 'search'? "
        "allowed: alignment, device, executor, name, search, seed, store, targets, vlm, zoo")
    ],
    "unquoted_colon.yaml": [
        ("unquoted_colon.yaml:4 zoo.vision_encoders[1]: expected a string, got a mapping; "
        "quote values that end in ':'")
    ],
    "warmup_one.yaml": ["warmup_one.yaml:11 vlm.optim.warmup: must be in [0, 1), got 1"],
}

MINIMAL = """\
name: minimal
zoo:
  vision_encoders: [tiny:vit-p8, tiny:clip-p8]
  language_models: [tiny:llama, tiny:qwen2, tiny:gpt2]
alignment: {dataset: shapes:align}
targets: [{task: shapes:color}]
"""


@pytest.fixture(params=["libyaml", "pure-python"])
def yaml_backend(request, monkeypatch):
    """Run with both PyYAML backends: messages and lines must not depend on how it was built."""
    if request.param == "libyaml":
        if not hasattr(yaml, "CSafeLoader"):
            pytest.skip("PyYAML built without libyaml")
        monkeypatch.setattr(harness.suite, "_Loader", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(harness.suite, "_Loader", yaml.SafeLoader)
    return request.param


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_every_bad_suite_has_an_expectation():
    files = sorted(p.name for p in BAD.iterdir())
    assert files == sorted(EXPECTED)
    assert len(files) >= 30


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_suite_says_what_and_where(name, yaml_backend):
    path = BAD / name
    suite, errors = validate_file(path)
    assert suite is None
    expected = EXPECTED[name]
    assert len(errors) == len(expected), "\n".join(errors)
    for want, got in zip(expected, errors, strict=True):
        for part in want if isinstance(want, tuple) else (want,):
            assert part in got, f"\nwant: {part}\ngot:  {got}"
        assert got.startswith(str(path)), got
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert info.value.errors == errors
    assert str(info.value) == "\n".join(errors)


def test_suite_error_is_bad_input():
    with pytest.raises(SuiteError) as info:
        load_suite(BAD / "eta_one.yaml")
    assert isinstance(info.value, BadInput) and info.value.exit_code == 2


def test_missing_file(tmp_path):
    _, errors = validate_file(tmp_path / "nope.yaml")
    assert errors == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_directory_is_not_a_suite(tmp_path):
    _, errors = validate_file(tmp_path)
    assert errors == [f"{tmp_path}: not a file (a directory)"]


def test_huge_file_is_rejected_by_size_before_reading(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:  # sparse: 50 MB on paper, nothing on disk
        f.truncate(50 * 1024 * 1024)
    _, errors = validate_file(path)
    assert errors == [
        f"{path}: file is 52,428,800 bytes, over the 1,048,576-byte (1 MiB) limit for a suite"
    ]
    assert MAX_SUITE_BYTES == 1024 * 1024


def test_deep_nesting_is_an_error_not_a_crash(tmp_path, yaml_backend):
    path = tmp_path / "deep.yaml"
    path.write_text("name: " + "[" * 20000 + "]" * 20000 + "\n")
    _, errors = validate_file(path)
    assert errors == [f"{path}:1: the YAML nests deeper than 32 levels; a suite needs a handful"]


def test_minimal_suite_fills_defaults(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL))
    assert suite.name == "minimal" and suite.seed == 0 and suite.store is None
    assert suite.alignment.samples is None
    assert suite.vlm.projector == "mlp2x_gelu" and suite.vlm.projector_layers == (False, 2)
    assert (suite.vlm.llm, suite.vlm.vision, suite.vlm.precision) == ("lora", "frozen", "auto")
    assert suite.vlm.normalize_features is True
    assert suite.vlm.lora.targets == "all-linear"
    optim = suite.vlm.optim
    assert (optim.epochs, optim.steps, optim.schedule, optim.grad_accum) == (1.0, None, "linear", 1)
    s = suite.search
    assert (s.strategy, s.similarity, s.early_stopping) == ("mordal", "cka", True)
    assert (s.clustering.t_ve, s.clustering.t_llm, s.clustering.linkage) == (0.7, 0.8, "average")
    assert (s.clustering.warmup_steps, s.clustering.enabled) == (10, True)
    assert (s.inter.policy, s.inter.eta, s.inter.top_k, s.inter.min_ratio) == ("sha", 2, 3, 0.125)
    assert (s.intra.policy, s.intra.top_k) == ("sha", 3)
    assert (s.predictor.name, s.predictor.r0, s.predictor.points) == ("loglinear", 0.125, 3)
    assert (suite.executor.name, suite.executor.kwargs(), suite.device) == ("local", {}, "auto")
    assert suite.targets[0].metric is None and suite.targets[0].limit is None
    assert suite.source == tmp_path / "suite.yaml"


def test_candidates_are_encoder_major(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL))
    cands = suite.candidates()
    assert len(cands) == 6
    assert cands[0] == Candidate("tiny:vit-p8", "tiny:llama")
    assert cands[3] == Candidate("tiny:clip-p8", "tiny:llama")
    assert str(cands[0]) == "tiny:vit-p8 + tiny:llama"


def test_fingerprint_ignores_formatting_and_defaults(tmp_path):
    a = load_suite(write(tmp_path, MINIMAL, "a.yaml"))
    # same suite: block style, other key order, defaults spelt out, 1e-3 as YAML 1.1 reads it
    b = load_suite(write(tmp_path, """\
        targets:
          - task: shapes:color
        alignment:
          dataset: shapes:align
        zoo:
          language_models: [tiny:llama, tiny:qwen2, tiny:gpt2]
          vision_encoders: [tiny:vit-p8, tiny:clip-p8]
        name: minimal
        seed: 0
        store: elsewhere.duckdb
        vlm: {optim: {lr: 1e-3, epochs: 1}, lora: {alpha: 16}}
        search: {inter: {eta: 2}}
        """, "b.yaml"))
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    reseeded = MINIMAL.replace("name: minimal", "name: minimal\nseed: 1")
    c = load_suite(write(tmp_path, reseeded, "c.yaml"))
    assert c.fingerprint() != a.fingerprint()
    # Pinned: a change here means every stored run of an unchanged suite gets a new identity.
    # If the schema changed on purpose (a new field, a new default), update the value.
    assert a.fingerprint() == PINNED_MINIMAL_FINGERPRINT


PINNED_MINIMAL_FINGERPRINT = "4237f437c35ff638e41de33653660847209261dbf0bb734f3ea2b12f6f9cf6e1"


def test_fingerprint_is_stable_across_processes(tmp_path):
    path = write(tmp_path, MINIMAL)
    code = f"from harness.suite import load_suite; print(load_suite({str(path)!r}).fingerprint())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=TIMEOUT)
    assert out.stdout.strip() == load_suite(path).fingerprint()


def test_quickstart_suite_is_valid(yaml_backend):
    suite = load_suite(QUICKSTART)
    assert suite.name == "quickstart"
    assert len(suite.zoo.vision_encoders) == 4 and len(suite.zoo.language_models) == 3
    refs = suite.zoo.vision_encoders + suite.zoo.language_models
    assert all(ref.startswith("mini:") for ref in refs)  # the shipped pretrained zoo: offline
    assert suite.alignment.dataset == "shapes:align"
    assert [t.task for t in suite.targets] == ["shapes:digits"]
    assert suite.search.strategy == "mordal"


def test_mordal_paper_suite_is_valid_offline(yaml_backend):
    suite = load_suite(PAPER)
    assert len(suite.candidates()) == 49
    assert "hf:openai/clip-vit-large-patch14-336" in suite.zoo.vision_encoders
    assert "hf:lmsys/vicuna-7b-v1.5" in suite.zoo.language_models
    assert suite.alignment.dataset == "llava:data/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json"
    assert [t.task for t in suite.targets] == [
        "lmms:gqa", "lmms:vizwiz_vqa_val", "lmms:chartqa",
        "lmms:docvqa_val", "lmms:scienceqa_img", "lmms:ai2d",
    ]
    optim = suite.vlm.optim
    assert (optim.lr, optim.batch_size, optim.schedule) == (1e-4, 4, "linear")
    assert suite.vlm.precision == "bf16"
    s = suite.search
    assert (s.clustering.t_ve, s.clustering.t_llm, s.clustering.warmup_steps) == (0.7, 0.8, 10)
    assert (s.inter.top_k, s.intra.top_k, s.inter.eta) == (3, 3, 2)
    assert (s.predictor.r0, s.predictor.points) == (0.125, 3)


def test_steps_instead_of_epochs(tmp_path):
    extra = "vlm: {optim: {steps: 50}, projector: ln_mlp3x_gelu}\n"
    suite = load_suite(write(tmp_path, MINIMAL + extra))
    assert (suite.vlm.optim.steps, suite.vlm.optim.epochs) == (50, None)
    assert suite.vlm.projector_layers == (True, 3)


def test_ablation_switches_and_lora_targets(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL + textwrap.dedent("""\
        vlm: {lora: {targets: [q_proj, v_proj]}, projector: linear}
        search:
          early_stopping: false
          clustering: {enabled: false, threshold_kind: max_distance, t_ve: 1.5, linkage: ward}
          predictor: {enabled: false}
        """)))
    assert suite.vlm.lora.targets == ["q_proj", "v_proj"]
    assert suite.vlm.projector_layers == (False, 1)
    assert suite.search.early_stopping is False
    assert suite.search.clustering.enabled is False and suite.search.clustering.t_ve == 1.5
    assert suite.search.predictor.enabled is False


def test_suite_is_frozen(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL))
    with pytest.raises(ValidationError):
        suite.seed = 3
    assert suite.model_copy(update={"seed": 3}).seed == 3


def test_in_code_construction_checks_components_unless_told_not_to():
    data = {
        "name": "x",
        "zoo": {"vision_encoders": ["mine:enc"], "language_models": ["tiny:llama"]},
        "alignment": {"dataset": "shapes:align"},
        "targets": [{"task": "shapes:color"}],
    }
    with pytest.raises(ValidationError, match="Unknown vision encoder family 'mine'"):
        Suite.model_validate(data)
    suite = Suite.model_validate(data, context={"check_components": False})
    assert suite.zoo.vision_encoders == ["mine:enc"]


def test_validation_touches_no_store_and_imports_no_torch(tmp_path):
    store = tmp_path / "probe" / "store.duckdb"
    code = textwrap.dedent(f"""
        import sys
        from harness.suite import load_suite
        load_suite({str(PAPER)!r})
        load_suite({str(QUICKSTART)!r})
        heavy = [m for m in ("torch", "duckdb", "harness.store", "transformers", "lmms_eval")
                 if m in sys.modules]
        print(heavy)
        """)
    env = {**os.environ, "HARNESS_STORE": str(store)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env, cwd=tmp_path, timeout=TIMEOUT)
    assert out.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []  # no store, no .harness/, nothing


def test_executor_ray_without_ray_installed_names_the_install_command(tmp_path, monkeypatch):
    import harness.ray_executor

    monkeypatch.setattr(harness.ray_executor, "ray_available", lambda: False)
    path = tmp_path / "s.yaml"
    text = (ROOT / "suites" / "quickstart.yaml").read_text()
    path.write_text(text.replace("executor: local", "executor: {name: ray, address: auto}"))
    with pytest.raises(BadInput) as err:
        harness.suite.load_suite(path)
    assert "executor" in str(err.value) and 'pip install -e ".[ray]"' in str(err.value)


def test_suite_values_reach_the_trial_without_a_layer_substituting_its_own(tmp_path):
    """Issue 16 item 4: alignment.samples absent means the whole alignment set, all the way to
    the TrialSpec and the data a trial trains on; the LoRA defaults of the schema and of the
    training config agree."""
    import json as _json

    from harness.plugins.llava import load_llava
    from harness.plugins.shapes import DEFAULT_N
    from harness.store import Store

    from harness.strategies.grid import GridSearch
    from harness.suite import LoRA
    from harness.training import LoraSettings, TrainConfig, config_from_suite
    from harness.trial import TrialSpec, load_alignment

    folder = tmp_path / "llava"
    folder.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "a.png")
    entry = {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nq"},
                                                 {"from": "gpt", "value": "a"}]}
    (folder / "data.json").write_text(_json.dumps([{**entry, "id": str(i)} for i in range(7000)]))
    text = MINIMAL.replace("{dataset: shapes:align}", f"{{dataset: 'llava:{folder / 'data.json'}'}}")
    suite = load_suite(write(tmp_path, text))
    assert suite.alignment.samples is None
    with Store.open(tmp_path / "s.duckdb") as store:
        strategy = GridSearch(suite, store, store.start_run(suite_name="x"))
        spec = strategy.spec(suite.candidates()[0], 1.0)
    assert spec.samples is None
    _, data = load_alignment(spec.alignment, spec.samples, seed=0)
    assert len(data) == len(load_llava(folder / "data.json")) == 7000  # not 2000, not 5000
    assert TrialSpec("e", "l", "shapes:align").samples is None
    _, shapes = load_alignment("shapes:align", None, seed=0)
    assert len(shapes) == DEFAULT_N["train"]  # a generated set: its own size
    schema = LoRA()
    assert (schema.r, schema.alpha, schema.dropout) == (LoraSettings().r, LoraSettings().alpha,
                                                        LoraSettings().dropout)
    assert config_from_suite(suite.vlm).lora.dropout == TrainConfig().lora.dropout


# -- a component's own options (issue 16 item 3) -----------------------------------------------

OPTIONS_SUITE = MINIMAL + """\
search:
  inter: {policy: asha, options: {workers: 2}}
  predictor: {name: powerlaw, options: {clip: [0, 100]}}
"""


def test_a_policy_and_a_predictor_get_the_options_their_models_allow(tmp_path):
    suite, errors = validate_file(write(tmp_path, OPTIONS_SUITE))
    assert errors == [] and suite.search.inter.options == {"workers": 2}
    assert suite.search.predictor.options == {"clip": (0.0, 100.0)}
    assert suite.search.intra.options == {}  # defaults stay the component's own


def test_the_strategy_builds_the_policy_and_the_predictor_with_their_options(tmp_path):
    from harness.contracts import build_policy
    from harness.plugin_manager import get_components

    suite, _ = validate_file(write(tmp_path, OPTIONS_SUITE))
    components = get_components()
    inter = suite.search.inter
    policy = build_policy(components["stopping_policy"].get("asha").load(),
                          {"eta": inter.eta, "min_ratio": inter.min_ratio, "tie_z": inter.tie_z,
                           "uninformative": inter.uninformative}, inter.options)
    assert policy.workers == 2 and policy.stop_early is False
    assert policy.eta == inter.eta and policy.min_ratio == inter.min_ratio  # the settings it declares
    predictor = components["predictor"].get("powerlaw").load()(**suite.search.predictor.options)
    assert predictor.clip == (0.0, 100.0)


@pytest.mark.parametrize("options, where, what", [
    ("inter: {policy: asha, options: {workers: 0}}", "search.inter.options.workers", "greater than or equal to 1"),
    ("inter: {policy: asha, options: {workers: '2'}}", "search.inter.options.workers", "valid integer"),
    ("inter: {policy: asha, options: {wrokers: 2}}", "search.inter.options.wrokers", "takes: workers, stop_early"),
    ("intra: {policy: sha, options: {workers: 2}}", "search.intra.options", "'sha' takes no options"),
    ("predictor: {options: {clip: [0]}}", "search.predictor.options.clip", "clip"),
    ("{strategy: gw-prescreen, options: {train_top: -1}}", "search.options.train_top", "greater than or equal to 0"),
    ("{strategy: dcd, options: {neighbors: 2}}", "search.options.neighbors", "neighbours"),
    ("{strategy: mordal, options: {train_top: 1}}", "search.options", "'mordal' takes no options"),
    ("{strategy: gw-prescreen, prescreen: {train_top: 1}}", "search.prescreen", "now search.options"),
])
def test_a_wrong_option_is_named_with_its_file_and_line(tmp_path, options, where, what):
    section = "search: " + options if options.startswith("{") else "search:\n  " + options
    path = write(tmp_path, MINIMAL + section + "\n")
    _, errors = validate_file(path)
    assert len(errors) == 1, errors
    line = 7 if options.startswith("{") else 8
    assert errors[0].startswith(f"{path}:{line}") and where in errors[0] and what in errors[0], errors


def test_a_strategy_reads_its_own_options_with_its_defaults(tmp_path):
    from harness.strategies.dcd import DCDSearch
    from harness.strategies.gw_prescreen import GWPrescreen

    suite, errors = validate_file(write(tmp_path, MINIMAL + "search: {strategy: gw-prescreen, options: {train_top: 5}}\n"))
    assert errors == [] and suite.search.options == {"train_top": 5}
    options = GWPrescreen.Options.model_validate(suite.search.options)
    assert options.train_top == 5 and options.samples == 256  # the rest: the strategy's defaults
    assert DCDSearch.Options.model_validate({}).neighbours == 2


def test_strategies_read_a_plan_resolved_once_not_the_suite(tmp_path):
    """Item 6 of issue 16: the plan holds what a strategy needs, with the schema's defaults
    filled in, and no strategy module reaches into the Suite."""
    from harness.store import Store

    from harness.plan import Plan
    from harness.scoring import Target
    from harness.strategies.base import SearchStrategy
    from harness.training import config_from_suite

    suite = load_suite(write(tmp_path, MINIMAL))
    plan = Plan.of(suite)
    assert plan.candidates == tuple(suite.candidates()) and len(plan.candidates) == \
        len(plan.encoders) * len(plan.llms)
    assert plan.train == config_from_suite(suite.vlm) and plan.samples == suite.alignment.samples
    assert plan.targets == tuple(Target(t.task, limit=t.limit, metric=t.metric) for t in suite.targets)
    with Store.open(tmp_path / "s.duckdb") as store:
        strategy = SearchStrategy(suite, store, store.start_run(suite_name="plan"))
        assert strategy.plan == plan and not hasattr(strategy, "suite")
    import harness.strategies as pkg

    for module in Path(pkg.__file__).parent.glob("*.py"):
        assert "self.suite" not in module.read_text(), f"{module.name} reads the suite, not the plan"


def test_an_executors_options_beside_its_name_or_under_options_are_one_executor(tmp_path):
    """Ray's fields are RayExecutor.Options: both spellings validate against it, give the same
    constructor keywords and the same suite hash; a key given both ways is refused."""
    pytest.importorskip("ray")
    flat = load_suite(write(tmp_path, MINIMAL + "executor: {name: ray, address: auto, retries: 1}\n", "a.yaml"))
    nested = load_suite(write(tmp_path, MINIMAL + "executor: {name: ray, options: {address: auto, retries: 1}}\n",
                              "b.yaml"))
    assert flat.executor.kwargs() == nested.executor.kwargs() == {"address": "auto", "retries": 1}
    assert flat.fingerprint() == nested.fingerprint()
    with pytest.raises(SuiteError, match="given twice"):
        load_suite(write(tmp_path, MINIMAL + "executor: {name: ray, retries: 1, options: {retries: 2}}\n", "c.yaml"))


def test_a_symlink_loop_or_a_dangling_link_is_named_as_such(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    assert validate_file(loop)[1] == [(f"{loop}: a loop of symbolic links (it resolves to itself, never "
                                       "to a file); point the link at the suite file")]
    dangling = tmp_path / "dangling.yaml"
    dangling.symlink_to(tmp_path / "gone.yaml")
    assert validate_file(dangling)[1] == [f"{dangling}: a symbolic link to a file that does not exist"]
    assert validate_file(tmp_path / "none.yaml")[1] == [f"{tmp_path / 'none.yaml'}: file not found"]


def test_control_and_bidi_characters_are_escaped_wherever_a_suite_is_echoed(tmp_path):
    odd = tmp_path / "a\u202eb\x85c.yaml"
    odd.write_text("name: \"x\u202ey\u2066z\"\nseed: -1\n")
    _, errors = validate_file(odd)
    text = "\n".join(errors)
    assert "\u202e" not in text and "\x85" not in text and "\u2066" not in text
    assert "a\\u202eb\\x85c.yaml" in errors[0] and '"x\\u202ey\\u2066z"' in text


def test_a_suites_store_stays_in_its_folder_at_run_time_too(tmp_path):
    """Validation refuses `..` and absolute paths; a link that leads out is refused by the run."""
    from harness.paths import suite_store

    (tmp_path / "suite").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "suite" / "out").symlink_to(tmp_path / "elsewhere")
    assert suite_store(tmp_path / "suite" / "s.yaml", "data/s.duckdb") == tmp_path / "suite" / "data" / "s.duckdb"
    with pytest.raises(BadInput, match="leads outside the suite's folder.*--store PATH or set HARNESS_STORE"):
        suite_store(tmp_path / "suite" / "s.yaml", "out/s.duckdb")
