"""The suite: one YAML file that says which VLMs to search over, how to train and search them.

``load_suite(path)`` reads and validates a suite and raises ``SuiteError`` listing *every* problem,
each as ``<file>:<line> <yaml.path>: <message>``; ``validate_file(path)`` returns the same as a
list. Neither opens a store, imports torch or loads a model: validation is a pure function of the
file and the plugin registries (component names are checked against them, with "did you mean").

A minimal suite names only ``name``, ``zoo``, ``alignment`` and ``targets``; everything else has a
default from the Mordal paper (arXiv 2502.00241, appendix B-C) or from LLaVA-1.5.

Conventions worth knowing:

* Every data-sample ratio (``min_ratio``, ``predictor.r0``) lies in (0, 1]; 1 is the full
  alignment set. ``warmup`` and ``lora.dropout`` are fractions in [0, 1).
* ``clustering.t_ve`` / ``t_llm`` mean what ``clustering.threshold_kind`` says. The default,
  ``min_similarity``, is the Mordal paper's reading (appendix C: t_ve 0.7, t_llm 0.8; "a smaller
  threshold creates fewer, larger clusters"): groups merge while their (average-linkage)
  similarity is >= the floor, i.e. ``scipy.cluster.hierarchy.fcluster`` (criterion ``distance``)
  cuts ``1 - similarity`` at ``1 - t``; floors lie in [0, 1]. ``max_distance`` cuts at ``t``
  itself: larger gives fewer, larger clusters, and it is the natural kind for a metric that is a
  distance (``similarity: gw``: t is then a Gromov-Wasserstein distance; a floor s there means
  distance <= 1 - s). Distance cut-offs are >= 0 with no upper bound (``ward``/``centroid``/
  ``median`` merge heights and unbounded metrics can exceed 1).
* Projectors: ``linear`` (one Linear), ``mlp<N>x_gelu`` (LLaVA's: N Linear layers with GELU
  between; ``mlp1x_gelu`` equals ``linear``), ``ln_mlp<N>x_gelu`` (a LayerNorm over the encoder
  features, then ``mlp<N>x_gelu``). The builder is ``harness.vlm.build_projector``.
* ``search.early_stopping: false`` turns both stages' policies into ``none`` (ablation
  "no early stopping"); ``clustering.enabled: false`` puts every candidate in its own cluster
  ("no clustering"); ``predictor.enabled: false`` trains survivors at r = 1 instead of
  extrapolating ("no scaling prediction").
* YAML aliases and merge keys are rejected (they let a small file expand into a huge one);
  duplicate keys are rejected (PyYAML would silently keep the last).
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from harness.errors import BadInput

# Limits that keep validating a hostile file cheap; real suites are far inside them.
MAX_SUITE_BYTES = 1024 * 1024  # a suite is a page of YAML; checked before reading
MAX_DEPTH = 32  # mappings and lists inside each other; a suite uses about 4
MAX_ZOO = 256  # vision encoders, and separately LLMs
MAX_TARGETS = 64
# upper bounds on sizes: far above any real use, low enough that a typo (10**12) is refused at
# validation instead of growing memory until the machine kills the run
MAX_CANDIDATES = MAX_ZOO * MAX_ZOO
MAX_ITEMS = 100_000_000  # alignment samples, test items per target (LLaVA-665k: 665k)
MAX_FEATURE_ITEMS = 1_000_000  # items embedded for clustering / prescreen / conductance
MAX_BATCH = 65_536  # batch_size, grad_accum
MAX_EPOCHS = 10_000
MAX_STEPS = 1_000_000_000
MAX_LORA_R = 4_096
MAX_ETA = 1_024
MAX_PROJECTOR_LAYERS = 16  # mlp<N>x_gelu: LLaVA uses 2
MAX_SEED = 2**63 - 1  # stored as BIGINT

# libyaml when PyYAML was built with it (the wheels are): ~10x faster than pure Python
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PROJECTOR_PATTERN = re.compile(r"^(?:linear|(ln_)?mlp([1-9][0-9]*)x_gelu)$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
Linkage = Literal["average", "single", "complete", "weighted", "centroid", "median", "ward"]


class SuiteError(BadInput):
    """A suite file is unusable; ``errors`` holds one ``<file>:<line> <path>: <message>`` each."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class _Located(ValueError):
    """A validation error that belongs to a part of the value (``sub_loc``), not the whole field."""

    def __init__(self, message: str, sub_loc: tuple = ()):
        super().__init__(message)
        self.sub_loc = sub_loc


# --------------------------------------------------------------------------- field types


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML, short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        from harness.paths import safe_text

        text = value if len(value) <= 60 else value[:57] + "..."
        return safe_text(json.dumps(text, ensure_ascii=False))
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def _number(value: Any) -> Any:
    # YAML 1.1 reads ``1e-3`` (no dot) as a string; accept it, but not booleans
    if isinstance(value, bool):  # pydantic turns only ValueError into a validation error
        raise ValueError(f"expected a number, got {_show(value)}")  # noqa: TRY004
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {_show(value)}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value


def _ratio(value: float) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"must be a ratio in (0, 1], got {value:g}")
    return value


def _fraction(value: float) -> float:
    if not 0 <= value < 1:
        raise ValueError(f"must be in [0, 1), got {value:g}")
    return value


Number = Annotated[float, BeforeValidator(_number)]
Ratio = Annotated[float, BeforeValidator(_number), AfterValidator(_ratio)]
Fraction = Annotated[float, BeforeValidator(_number), AfterValidator(_fraction)]
Int = Annotated[int, Field(strict=True)]
Bool = Annotated[bool, Field(strict=True)]
Text = Annotated[str, Field(strict=True, min_length=1)]


def _component(kind: str):
    """A string that must name a registered component of ``kind`` (skipped when the validation
    context says ``{"check_components": False}``)."""

    def check(value: str, info: ValidationInfo) -> str:
        if _checks_components(info):
            from harness.plugin_manager import get_components
            from harness.registry import UnknownComponent

            try:
                get_components()[kind].resolve(value)
            except UnknownComponent as exc:
                raise ValueError(str(exc)) from None
            _check_local_path(value)
            if kind == "dataset":
                _check_dataset(value)
        return value

    return Annotated[str, Field(strict=True, min_length=1), AfterValidator(check)]


def _check_local_path(ref: str) -> None:
    """A ref whose name is written as a local path (``/``, ``./``, ``../``, ``~``) must exist:
    checked here, cheaply, instead of failing every candidate after the run has started."""
    name = ref.partition(":")[2].split("?", 1)[0]
    if name.startswith(("/", "./", "../", "~")):
        path = Path(name).expanduser()
        if not path.exists():
            raise ValueError(f"{ref}: no such file or directory {str(path)!r} (a local model or "
                             "dataset path must exist; a hub name has no leading / . or ~)")


def _check_dataset(ref: str) -> None:
    """The dataset family's own check (:meth:`harness.datasets.DatasetFamily.check`: LLaVA data
    is read as a run would, with a sample of image headers), so bad data fails validation
    instead of a started run. A file on another machine is left to the run's preflight
    (:func:`harness.runner.preflight`), which refuses it before touching the store."""
    from harness.datasets import DatasetError, family_of

    family, name = family_of(ref)
    try:
        family.check(name)
    except DatasetError as exc:
        raise ValueError(str(exc)) from None


VisionEncoderRef = _component("vision_encoder")
LanguageModelRef = _component("language_model")
DatasetRef = _component("dataset")
SimilarityRef = _component("similarity_metric")
PolicyRef = _component("stopping_policy")
PredictorRef = _component("predictor")
StrategyRef = _component("search_strategy")
ExecutorRef = _component("executor")


def _checks_components(info: ValidationInfo) -> bool:
    """Whether this validation checks components against the registry (the context can say
    ``{"check_components": False}``)."""
    return (info.context or {}).get("check_components", True)


def _component_class(kind: str, name: str, info: ValidationInfo):
    """The registered ``kind`` component ``name`` as loaded, or None when components are not
    checked or it cannot be loaded (an unknown or broken one is named by its own field, and a
    run fails naming its plugin)."""
    if not _checks_components(info):
        return None
    from harness.plugin_manager import get_components

    try:
        return get_components()[kind].get(name).load()
    except Exception:  # noqa: BLE001 - named elsewhere
        return None


def _plugin_options(kind: str, name: str, options: dict, info: ValidationInfo) -> dict:
    """``options`` checked against the ``Options`` pydantic model that the registered ``kind``
    component ``name`` declares (a component without one takes none); returns them as that
    model validated them (only the keys given: defaults stay the component's). Skipped, like component names, when the validation
    context says ``{"check_components": False}``, and when the component cannot be loaded
    (the run then fails naming its plugin)."""
    target = _component_class(kind, name, info)
    if target is None:
        return options
    model = getattr(target, "Options", None)
    what = f"{kind.replace('_', ' ')} {name!r}"
    if model is None:
        if options:
            raise _Located(f"{what} takes no options; got {', '.join(map(str, options))} (a "
                           "component takes options by declaring an Options model)")
        return options
    try:
        return model.model_validate(options).model_dump(exclude_unset=True)
    except ValidationError as exc:
        # a misspelt key first: its "did you mean" explains the missing one it leaves behind
        err = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        allowed = ", ".join(model.model_fields)
        hint = f" ({what} takes: {allowed})" if err["type"] == "extra_forbidden" else ""
        raise _Located(f"{what}: {err['msg']}{hint}", tuple(err["loc"])) from None


def _options_for(kind: str, name_field: str):
    """The validator of a model's ``options`` mapping: :func:`_plugin_options` for the ``kind``
    component that the sibling field ``name_field`` names (skipped when that field was itself
    invalid, so only its own error is reported)."""

    def check(cls, v, info: ValidationInfo):
        name = info.data.get(name_field)
        return v if name is None else _plugin_options(kind, name, v, info)

    return field_validator("options")(check)


def _unique(items: list, what: str) -> list:
    seen: dict[Any, int] = {}
    for i, item in enumerate(items):
        if item in seen:
            raise _Located(f"duplicate {what} {item!r} (first at [{seen[item]}])", (i,))
        seen[item] = i
    return items


# --------------------------------------------------------------------------- the schema


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Zoo(_Model):
    """The candidate components; every encoder is paired with every LLM."""

    vision_encoders: Annotated[list[VisionEncoderRef], Field(min_length=1, max_length=MAX_ZOO)]
    language_models: Annotated[list[LanguageModelRef], Field(min_length=1, max_length=MAX_ZOO)]

    @field_validator("vision_encoders")
    @classmethod
    def _unique_encoders(cls, v):
        return _unique(v, "vision encoder")

    @field_validator("language_models")
    @classmethod
    def _unique_llms(cls, v):
        return _unique(v, "language model")


def _dataset_fits(model, info: ValidationInfo, ref_field: str, field: str, capability: str, role: str):
    """The dataset family of the ref in ``ref_field`` can play ``role`` (its ``capability``:
    alignment data, or a scoring task) and draws the ``field`` items asked for (at most its
    ``max_items``)."""
    if not _checks_components(info):
        return model
    from harness.datasets import families_that, family_of

    ref = getattr(model, ref_field)
    try:
        family, _ = family_of(ref)
    except Exception:  # noqa: BLE001 - an unknown ref is reported by its own field
        return model
    if not getattr(family, capability):
        raise _Located(f"{ref}: dataset family {family.family!r} cannot be {role}; families that can: "
                       f"{', '.join(families_that(capability)) or '(none)'}", (ref_field,))
    n = getattr(model, field) or 0
    if family.max_items is not None and n > family.max_items:
        raise _Located(f"dataset family {family.family!r} draws at most {family.max_items:,} items "
                       f"(every item is built up front), got {n:,}", (field,))
    return model


class Alignment(_Model):
    """The image-text data the projector (and LoRA) is trained on."""

    dataset: DatasetRef
    samples: Annotated[Int, Field(gt=0, le=MAX_ITEMS)] | None = None  # None: the whole dataset

    @model_validator(mode="after")
    def _family_fits(self, info: ValidationInfo):
        return _dataset_fits(self, info, "dataset", "samples", "alignment_data", "an alignment set")


class LoRA(_Model):
    r: Annotated[Int, Field(gt=0, le=MAX_LORA_R)] = 8
    alpha: Annotated[Number, Field(gt=0)] = 16.0
    dropout: Fraction = 0.05
    targets: Any = "all-linear"  # "all-linear" or a list of module-name suffixes

    @field_validator("targets")
    @classmethod
    def _targets(cls, v):
        if v == "all-linear":
            return v
        if isinstance(v, list) and v and all(isinstance(t, str) and t for t in v):
            return _unique(v, "LoRA target")
        raise ValueError(
            f"expected \"all-linear\" or a non-empty list of module names (e.g. [q_proj, v_proj]), "
            f"got {_show(v)}"
        )


class Optim(_Model):
    lr: Annotated[Number, Field(gt=0)] = 1e-3
    batch_size: Annotated[Int, Field(gt=0, le=MAX_BATCH)] = 16
    grad_accum: Annotated[Int, Field(ge=1, le=MAX_BATCH)] = 1
    epochs: Annotated[Number, Field(gt=0, le=MAX_EPOCHS)] | None = None  # default 1 unless steps is given
    steps: Annotated[Int, Field(gt=0, le=MAX_STEPS)] | None = None
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup: Fraction = 0.03
    weight_decay: Annotated[Number, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _epochs_or_steps(self):
        if self.epochs is not None and self.steps is not None:
            raise _Located("give epochs or steps, not both", ("steps",))
        if self.epochs is None and self.steps is None:
            object.__setattr__(self, "epochs", 1.0)
        return self


class VLMConfig(_Model):
    """How each candidate VLM is assembled and aligned."""

    projector: Text = "mlp2x_gelu"
    llm: Literal["frozen", "lora", "full"] = "lora"
    vision: Literal["frozen", "unfrozen"] = "frozen"
    lora: LoRA = LoRA()
    optim: Optim = Optim()
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    normalize_features: Bool = True  # standardise encoder features before the projector

    @field_validator("projector")
    @classmethod
    def _projector(cls, v):
        match = PROJECTOR_PATTERN.match(v)
        if not match:
            raise ValueError(
                f"expected linear, mlp<N>x_gelu or ln_mlp<N>x_gelu (N >= 1), got {_show(v)}"
            )
        if match.group(2) and int(match.group(2)) > MAX_PROJECTOR_LAYERS:
            raise ValueError(f"a projector of at most {MAX_PROJECTOR_LAYERS} layers "
                             f"(mlp{MAX_PROJECTOR_LAYERS}x_gelu), got {_show(v)}")
        return v

    @property
    def projector_layers(self) -> tuple[bool, int]:
        """(LayerNorm first?, number of Linear layers)."""
        match = PROJECTOR_PATTERN.match(self.projector)
        if self.projector == "linear":
            return False, 1
        return bool(match.group(1)), int(match.group(2))


class Target(_Model):
    """A task the candidates are scored on (through lmms-eval, or a bundled task)."""

    task: DatasetRef
    metric: Text | None = None  # None: the task's own primary metric
    limit: Annotated[Int, Field(gt=0, le=MAX_ITEMS)] | None = None  # None: every test item

    @model_validator(mode="after")
    def _family_fits(self, info: ValidationInfo):
        return _dataset_fits(self, info, "task", "limit", "scoring", "a target (it has no scoring task)")


class Clustering(_Model):
    enabled: Bool = True
    # what t_ve / t_llm mean (see the module docstring): "min_similarity", the paper's reading
    # (members of a cluster are at least this similar; a smaller value gives fewer, larger
    # clusters), or "max_distance", a cut on 1 - similarity (a larger value gives fewer clusters)
    threshold_kind: Literal["min_similarity", "max_distance"] = "min_similarity"
    t_ve: Annotated[Number, Field(ge=0)] = 0.7
    t_llm: Annotated[Number, Field(ge=0)] = 0.8
    linkage: Linkage = "average"  # scipy.cluster.hierarchy.linkage methods
    samples: Annotated[Int, Field(gt=3, le=MAX_FEATURE_ITEMS)] = 512  # unbiased HSIC needs n > 3
    warmup_steps: Annotated[Int, Field(ge=0, le=MAX_STEPS)] = 10  # projector warm-up before LLM embeddings
    # minibatch unbiased CKA (Nguyen et al. 2020), as the Mordal paper computes it: batches of
    # this many samples, for any metric that takes ``minibatch``; null: the biased full-batch CKA
    cka_batch: Annotated[Int, Field(gt=3, le=1_000_000)] | None = 64
    # the inter-cluster stage judges a cluster by the best score of this many members: its
    # medoid, then the members farthest from it (encoder distance + LLM distance, 1 - similarity);
    # 1: the medoid alone, as in the paper
    representatives: Annotated[Int, Field(ge=1, le=MAX_CANDIDATES)] = 1

    @model_validator(mode="after")
    def _floors_at_most_one(self):
        if self.threshold_kind == "min_similarity":
            for name in ("t_ve", "t_llm"):
                if getattr(self, name) > 1:
                    raise _Located(f"a similarity floor is at most 1, got {getattr(self, name):g} "
                                   "(for a distance cut-off set threshold_kind: max_distance)", (name,))
        return self

    def distance_cut(self, level: Literal["encoder", "llm"]) -> float:
        """The cut on the dendrogram's distance (1 - similarity, or a distance metric itself)
        that ``t_ve`` (level ``encoder``) or ``t_llm`` (``llm``) means under ``threshold_kind``."""
        t = float(self.t_ve if level == "encoder" else self.t_llm)
        return 1.0 - t if self.threshold_kind == "min_similarity" else t


class Stage(_Model):
    """One evaluation stage (inter- or intra-cluster): a stopping policy over rungs of data."""

    policy: PolicyRef = "sha"
    eta: Annotated[Int, Field(ge=2, le=MAX_ETA)] = 2
    top_k: Annotated[Int, Field(ge=1, le=MAX_CANDIDATES)] = 3
    min_ratio: Ratio = 0.125  # the first rung's sample ratio; rungs grow by eta up to 1
    # noise-aware cuts (harness.policies.noisy_keep, for policies that take them: sha): keep
    # every candidate within tie_z standard errors of the last kept one; when this fraction of
    # a rung sits within 2 SE of the task's constant-answer baseline, promote everyone.
    # null: plain cuts (ties broken by name). Defaults from the 18-configuration sweep over the
    # shipped table's three seeds (benchmarks/mordal_sweep.py --loto --seeds 0 1 2): the
    # uninformative rule at 0.5 alone finds top-1 on 13 of 18 (task, seed) against 9 of 18
    # for plain cuts, as many as any configuration, and is the cheapest of those (4.5x mean);
    # ties within 1 SE add cost (3.7x) and no top-1
    tie_z: Annotated[Number, Field(ge=0)] | None = None
    uninformative: Annotated[Number, Field(gt=0, le=1)] | None = 0.5
    # the policy's own options, checked against the Options model it declares (file:line errors
    # like every field) and passed to its constructor: e.g. asha's workers and stop_early
    options: dict[str, Any] = {}

    _policy_options = _options_for("stopping_policy", "policy")


class Predictor(_Model):
    enabled: Bool = True
    name: PredictorRef = "loglinear"
    r0: Ratio = 0.125  # the largest sample ratio trained; later points use smaller ratios
    points: Annotated[Int, Field(ge=2, le=64)] = 3
    # Algorithm 1's "until log-linearity is observed": a fit over 3+ points with R^2 below this
    # gets the next larger ratio (2 r, up to r = 1, then the candidate is measured) before its
    # prediction is trusted; null: no check. 0.8: on the shipped table the log-linear R^2 over
    # r in [1/8, 1] has median 0.88 and is >= 0.8 on 102 of 160 learning curves
    min_r2: Annotated[Number, Field(ge=0, le=1)] | None = 0.8
    # at most this many r = 1 trials for the survivors whose 95% interval overlaps the leader's
    # (the leader first when it is predicted); they are then ranked by the measured score. 0: trust
    # the predictions
    confirm: Annotated[Int, Field(ge=0, le=MAX_CANDIDATES)] = 0
    # the predictor's own options (its Options model), passed to its constructor
    options: dict[str, Any] = {}

    _predictor_options = _options_for("predictor", "name")


class Prescreen(_Model):
    """The options of strategy ``gw-prescreen`` (``search.options``): rank every candidate
    without training, then train the best few."""

    train_top: Annotated[Int, Field(ge=0, le=MAX_CANDIDATES)] = 3  # candidates trained at r = 1 after the ranking
    samples: Annotated[Int, Field(gt=3, le=MAX_FEATURE_ITEMS)] = 256  # target images (and their paired texts) embedded
    # exact conditional-gradient GW by default: on CPU at 256 points it is as fast as the entropic
    # solver, and at epsilon 0.05 the entropic plan is so smeared that identical inputs score
    # about as far apart as unrelated ones (measured in tests/test_gromov.py's cases)
    entropic: Bool = False
    epsilon: Annotated[Number, Field(gt=0)] = 0.05  # entropic regularisation, on distances scaled to [0, 1]


class Transfer(_Model):
    """The options of strategy ``dcd`` (``search.options``): rank candidates from stored results
    on the most similar past tasks."""

    history: Annotated[list[Text], Field(max_length=MAX_TARGETS)] | None = None  # None: every stored task
    examples: Annotated[Int, Field(gt=1, le=MAX_FEATURE_ITEMS)] = 32  # target examples per task for layer conductance
    neighbours: Annotated[Int, Field(ge=1, le=MAX_TARGETS * 1024)] = 2  # most similar past tasks whose results are used
    train_top: Annotated[Int, Field(ge=0, le=MAX_CANDIDATES)] = 0  # candidates then trained at r = 1 to confirm


class Search(_Model):
    strategy: StrategyRef = "mordal"
    similarity: SimilarityRef = "cka"
    clustering: Clustering = Clustering()
    inter: Stage = Stage()
    intra: Stage = Stage()
    early_stopping: Bool = True  # false: the ablation "no early stopping"
    # how the candidates below the survivors are ordered: "elimination" (later-eliminated first,
    # then by the dropping rung's score) or "estimate" (by an estimated full-data score: the last
    # rung score plus the run's median gain from that ratio to r = 1; never-trained members of a
    # dropped cluster take its estimate)
    rank_below: Literal["elimination", "estimate"] = "elimination"
    # a survivor promoted from ratio r to r' resumes its r checkpoint and AdamW state and trains
    # only the samples r' adds (the paper's SHA doubles the survivors' budget); needs a constant
    # learning rate (vlm.optim.schedule: constant). Continued trials have keys of their own, so
    # a replay of a table of fresh trials cannot answer them
    continuation: Bool = False
    predictor: Predictor = Predictor()
    # the strategy's own options, checked against the Options model it declares (gw-prescreen:
    # Prescreen, dcd: Transfer, above) and read by the strategy as ``self.options``
    options: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _moved_sections(cls, data):
        if isinstance(data, dict):
            for key, strategy, model in (("prescreen", "gw-prescreen", Prescreen), ("transfer", "dcd", Transfer)):
                if key in data:
                    raise _Located(f"search.{key} is now search.options, the options of strategy "
                                   f"{strategy} ({', '.join(model.model_fields)}): write "
                                   f"`options: {{...}}` under search", (key,))
        return data

    _strategy_options = _options_for("search_strategy", "strategy")

    def policy(self, stage: Literal["inter", "intra"]) -> str:
        """The stopping policy a stage runs: its own, or ``none`` when early stopping is off."""
        return getattr(self, stage).policy if self.early_stopping else "none"


class Candidate(NamedTuple):
    vision_encoder: str
    language_model: str

    def __str__(self) -> str:
        return f"{self.vision_encoder} + {self.language_model}"


class Executor(_Model):
    """Where trials run: ``executor: local`` (a name) or a mapping with the name and the
    executor's options, checked against the ``Options`` model its class declares. The options
    may sit under ``options`` or beside ``name`` (``executor: {name: ray, address: auto}``);
    both spellings are one executor (and one suite hash)."""

    name: ExecutorRef = "local"
    options: dict[str, Any] = {}  # as the executor's Options model validated them (keys given only)

    @model_validator(mode="before")
    @classmethod
    def _flat_options(cls, data, info: ValidationInfo):
        """Keys beside ``name`` are options too; all are checked here, so an error names the key
        where the suite wrote it (``executor.retries`` or ``executor.options.retries``)."""
        if not isinstance(data, dict):
            return data
        flat = {k: v for k, v in data.items() if k not in ("name", "options")}
        nested = data.get("options", {})
        if not isinstance(nested, dict):
            return data  # the field's own type error
        clash = sorted(set(flat) & set(nested))
        if clash:
            raise _Located(f"{clash[0]!r} is given twice, beside name and under options: keep one",
                           (clash[0],))
        name = data.get("name", "local")
        if not isinstance(name, str):
            return data
        try:
            options = _plugin_options("executor", name, {**flat, **nested}, info)
        except _Located as exc:
            # the key where the suite wrote it; a missing one where the suite writes options
            key = exc.sub_loc[0] if exc.sub_loc else None
            if key in nested or (key not in flat and "options" in data):
                raise _Located(str(exc), ("options", *exc.sub_loc)) from None
            raise
        _executor_available(name, info)
        return {"name": name, "options": options}

    def kwargs(self) -> dict:
        """Keyword arguments for the executor's constructor: its options as the suite gave them."""
        return dict(self.options)

    @model_serializer(mode="plain")
    def _dump(self):
        # a bare name dumps as the name: suites that say `executor: local` keep their hash
        return self.name if not self.options else {"name": self.name, **self.options}


def _executor_available(name: str, info: ValidationInfo) -> None:
    """An executor that cannot run here says why (``unavailable()`` on its class: ``ray``
    without Ray installed names the install command)."""
    why = getattr(_component_class("executor", name, info), "unavailable", None)
    why = why() if callable(why) else None
    if why:
        raise _Located(why, ("name",))


def _executor(value):
    return {"name": value} if isinstance(value, str) else value


class Suite(_Model):
    name: Annotated[str, Field(strict=True, min_length=1, max_length=100)]
    seed: Annotated[Int, Field(ge=0, le=MAX_SEED)] = 0
    store: Text | None = None  # relative to the suite file; None: $HARNESS_STORE or the default
    zoo: Zoo
    alignment: Alignment
    vlm: VLMConfig = VLMConfig()
    targets: Annotated[list[Target], Field(min_length=1, max_length=MAX_TARGETS)]
    search: Search = Search()
    executor: Annotated[Executor, BeforeValidator(_executor)] = Executor()
    device: Literal["auto", "cpu", "cuda"] = "auto"

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not NAME_PATTERN.match(v):
            raise ValueError(
                "must be letters, digits, '.', '_' or '-', starting with a letter or digit; "
                f"got {_show(v)}"
            )
        return v

    @field_validator("store")
    @classmethod
    def _store_inside_the_suites_folder(cls, v):
        if v is None:
            return v
        fix = "to keep the store elsewhere, pass --store PATH or set HARNESS_STORE"
        if "\0" in v:
            raise ValueError(f"must be a file name, got {_show(v)}")
        if os.path.isabs(v) or v.startswith("~"):
            raise ValueError(f"an absolute path ({_show(v)}) is not allowed in a suite: a store "
                             f"path in a suite is relative to the suite's folder; {fix}")
        norm = os.path.normpath(v)
        if norm == ".." or norm.startswith("../") or norm == ".":
            raise ValueError(f"{_show(v)} leaves the suite's folder: a store path in a suite "
                             f"must stay inside it; {fix}")
        return v

    @field_validator("targets")
    @classmethod
    def _unique_tasks(cls, v):
        seen: dict[str, int] = {}
        for i, target in enumerate(v):
            if target.task in seen:
                raise _Located(
                    f"duplicate task {target.task!r} (first at targets[{seen[target.task]}])",
                    (i, "task"),
                )
            seen[target.task] = i
        return v

    @model_validator(mode="after")
    def _continuation_needs_a_constant_schedule(self):
        if self.search.continuation and self.vlm.optim.schedule != "constant":
            raise _Located(f"continuation needs vlm.optim.schedule: constant, not "
                           f"{self.vlm.optim.schedule!r}: a {self.vlm.optim.schedule} schedule has "
                           "decayed the learning rate to 0 by the end of each ratio's training, so a "
                           "continued trial would not follow the recipe of a fresh one",
                           ("search", "continuation"))
        return self

    @property
    def source(self) -> Path | None:
        """The file this suite was loaded from (None when built in code)."""
        return self._source

    def candidates(self) -> list[Candidate]:
        """Every (vision encoder, LLM) pair, encoder-major, in zoo order."""
        return [
            Candidate(ve, lm)
            for ve in self.zoo.vision_encoders
            for lm in self.zoo.language_models
        ]

    def fingerprint(self) -> str:
        """sha256 of the normalised suite (defaults filled, numbers as floats/ints, keys sorted).

        ``store`` is left out: where results are kept does not change what they are.
        """
        data = self.model_dump(mode="json", exclude={"store"})
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------- reading the file


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; raises ``SuiteError`` with every problem found."""
    suite, errors = validate_file(path)
    if errors:
        raise SuiteError(errors)
    assert suite is not None
    return suite


def validate_file(path: str | Path) -> tuple[Suite | None, list[str]]:
    """(suite, []) when the file is a valid suite, else (None, messages), one per problem."""
    from harness.paths import safe_text

    label = safe_text(str(path))
    path = Path(path)
    text, error = _read_text(path, label)
    if error:
        return None, [error]
    root, data, problems = _parse(text, label)
    if root is None:
        return None, [message for _, message in problems]
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        problems += [_format_error(err, root, label) for err in exc.errors()]
    else:
        if not problems:
            suite._source = path
            return suite, []
    problems.sort(key=lambda p: p[0])  # stable: same-line problems keep pydantic's order
    messages = list(dict.fromkeys(message for _, message in problems))
    if len(messages) > MAX_PROBLEMS_SHOWN:
        rest = len(messages) - MAX_PROBLEMS_SHOWN
        messages = messages[:MAX_PROBLEMS_SHOWN] + [f"{label}: ... and {rest:,} more problems"]
    return None, messages


MAX_PROBLEMS_SHOWN = 100  # a file with thousands of bad keys gets its first ones and a count


def _read_text(path: Path, label: str) -> tuple[str, str | None]:
    try:
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "", (f"{label}: a loop of symbolic links (it resolves to itself, never to a "
                            "file); point the link at the suite file")
            if exc.errno == errno.ENOENT and path.is_symlink():
                return "", f"{label}: a symbolic link to a file that does not exist"
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                return "", f"{label}: cannot read: {exc.strerror or exc}"
        if not path.exists():
            return "", f"{label}: file not found"
        if not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            return "", f"{label}: not a file ({kind})"
        size = path.stat().st_size
        if size > MAX_SUITE_BYTES:
            return "", (
                f"{label}: file is {size:,} bytes, over the {MAX_SUITE_BYTES:,}-byte "
                f"({MAX_SUITE_BYTES // 1024 // 1024} MiB) limit for a suite"
            )
        with path.open("rb") as f:
            raw = f.read(MAX_SUITE_BYTES + 1)  # the file may have grown since stat()
    except OSError as exc:
        return "", f"{label}: cannot read: {exc.strerror or exc}"
    if len(raw) > MAX_SUITE_BYTES:
        return "", f"{label}: file is over the {MAX_SUITE_BYTES:,}-byte limit for a suite"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return "", (
            f"{label}:{line}: not UTF-8: invalid byte 0x{raw[exc.start]:02x} at byte offset "
            f"{exc.start}; save the file as UTF-8"
        )
    return text.removeprefix("\ufeff"), None


def _parse(text: str, label: str) -> tuple[Node | None, Any, list[tuple[int, str]]]:
    """Compose the node tree (for line numbers), check it, and construct the data from it.

    Returns (root, data, problems); root is None when nothing more can be checked.
    """
    def fail(line: int, message: str):
        return None, None, [(line, message)]

    try:
        # First a pass over the event stream, stopping at the first alias (composing a
        # billion-laughs tree is already the attack) or at absurd nesting (PyYAML's scanner is
        # quadratic in flow depth and its composer recursive).
        depth = 0
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1
                return fail(line, f"{label}:{line}: YAML aliases (*{event.anchor}) are not "
                                  "supported in a suite; write the value out")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1
                    return fail(line, f"{label}:{line}: the YAML nests deeper than {MAX_DEPTH} "
                                      "levels; a suite needs a handful")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return fail(0, f"{label}: the file is empty; a suite needs at least: "
                               "name, zoo, alignment, targets")
            if not isinstance(root, MappingNode):
                line = root.start_mark.line + 1
                kind = (
                    "a list" if isinstance(root, SequenceNode) else f"the value {_show(root.value)}"
                )
                return fail(line, f"{label}:{line}: the top level must be a mapping of suite "
                                  f"fields (name, zoo, alignment, targets, ...), got {kind}")
            # before construction, which flattens merge keys and drops duplicate keys
            problems = _check_tree(root, label)
            data = loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        problem = exc.problem or str(exc)
        context = f" ({exc.context})" if exc.context and exc.context != problem else ""
        if "maximum nesting depth" in problem:  # libyaml >= 0.2.6 stops absurd nesting itself
            line = mark.line + 1 if mark else 0
            return fail(line, f"{label}:{line}: the YAML nests deeper than {MAX_DEPTH} levels; "
                              "a suite needs a handful")
        if problem.startswith("but found another document"):
            problem, context = "a suite is a single YAML document, but this file has another", ""
        elif mark and _char_at(text, mark.line, mark.column) == "\t":
            context = " (a tab: indent with spaces)"
        return fail(mark.line + 1 if mark else 0, f"{where}: invalid YAML: {problem}{context}")
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        return fail(line, f"{label}:{line}: invalid YAML: unacceptable character "
                          f"#x{exc.character:04x} at character offset {exc.position}")
    except yaml.YAMLError as exc:
        return fail(0, f"{label}: invalid YAML: {exc}")
    return root, data, problems


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line + 1)
    return lines[line][column : column + 1] if line < len(lines) else ""


def _check_tree(root: Node, label: str) -> list[tuple[int, str]]:
    """Duplicate keys and merge keys, which construction would silently resolve."""
    problems: list[tuple[int, str]] = []

    def walk(node: Node, path: str) -> None:
        if isinstance(node, MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, ScalarNode) else "<complex key>"
                line = key.start_mark.line + 1
                if key.tag == "tag:yaml.org,2002:merge":
                    problems.append((line, (f"{label}:{line} {path or '(top level)'}: YAML merge "
                                           "keys (<<) are not supported in a suite; write the "
                                           "keys out")))
                    continue
                if name in first:
                    problems.append((line, (f"{label}:{line} {_join(path, name)}: duplicate key "
                                           f"{name!r} (first at line {first[name]})")))
                else:
                    first[name] = line
                walk(value, _join(path, name))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    walk(root, "")
    return problems


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


# --------------------------------------------------------------------------- pydantic -> human


def _locate(root: Node, loc: tuple) -> int:
    """The 1-based line of the node at ``loc``.

    A mapping entry is located at its key (where the user wrote it); a list item at the item.
    When the path stops early (a missing field) the answer is the line of the last node found,
    i.e. the key that holds the parent mapping.
    """
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, MappingNode):
            index = getattr(node, "_harness_keys", None)
            if index is None:  # built once per mapping: locating every error stays linear
                index = {}
                for key, value in node.value:
                    if isinstance(key, ScalarNode):
                        index.setdefault(key.value, (value, key.start_mark.line + 1))
                node._harness_keys = index
            if str(part) not in index:
                part = _yaml_spelling(part, index)
            if str(part) not in index:
                return line
            node, line = index[str(part)]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _yaml_spelling(part: Any, index: dict) -> Any:
    """The key as the suite wrote it when YAML constructed it into something else (``null:``,
    ``~:`` -> None, ``yes:`` -> True, ``0x1:`` -> 1), so an error about it points at its line."""
    import yaml

    for written in index:
        try:
            value = yaml.safe_load(written) if written else None
        except yaml.YAMLError:
            continue
        if not isinstance(value, (str, dict, list)) and str(part) in (str(value), _key_name(value)):
            return written
    return part


def _key_name(key: Any) -> str:
    """A mapping key as YAML writes it (``null``, ``true``), for keys YAML did not keep as text."""
    spelled = {"None": "null", "True": "true", "False": "false"}
    return spelled.get(str(key), str(key)) if not isinstance(key, str) or key in spelled else key


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class whose field ``loc`` names (to list allowed keys for an unknown one)."""
    tp: Any = Suite
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            if get_origin(tp) is list:
                tp = get_args(tp)[0]
                continue
            return None
        if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or type(tp).__name__ == "UnionType":
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "dict": "a mapping",
}


def _message(err: dict) -> tuple[str, tuple]:
    """A human message for one pydantic error, and any extra location it points into."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    loc = tuple(err["loc"])
    if kind == "missing":
        return "required field is missing", ()
    if kind in ("extra_forbidden", "invalid_key"):  # invalid_key: not a string (`1:`, `yes:`)
        model = _model_at(loc[:-1])
        allowed = sorted(model.model_fields) if model else []
        key = loc[-1]
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        return f"unknown key {key!r}{hint} allowed: {', '.join(allowed)}", ()
    if kind == "value_error":
        exc = ctx.get("error")
        sub = getattr(exc, "sub_loc", ())
        return str(exc), sub
    if kind == "model_type" or kind == "model_attributes_type":
        model = _model_at(loc)
        keys = f" with keys {', '.join(model.model_fields)}" if model else ""
        return f"expected a mapping{keys}; got {_show(value)}", ()
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"expected one of {', '.join(options)}; got {_show(value)}{hint}", ()
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}, got {_show(value)}", ()
    if kind == "too_short":
        if not value:
            return "must not be empty", ()
        return f"needs at least {ctx.get('min_length')} item(s)", ()
    if kind == "too_long":
        return f"lists too many items (at most {ctx.get('max_length')})", ()
    if kind == "string_too_short":
        return "must not be empty", ()
    if kind == "string_too_long":
        return f"is too long ({len(value)} characters, at most {ctx.get('max_length')})", ()
    if kind == "int_from_float":
        return f"expected an integer, got {_show(value)}", ()
    if kind == "finite_number":
        return f"expected a finite number, got {_show(value)}", ()
    for suffix in ("_type", "_parsing"):
        if kind.endswith(suffix) and kind[: -len(suffix)] in _TYPE_NAMES:
            hint = ""
            if kind == "string_type" and isinstance(value, dict) and len(value) == 1:
                # `hf:` or `a: b` inside a flow list is a one-key mapping in YAML
                hint = "; quote values that end in ':' or contain ': '"
            return f"expected {_TYPE_NAMES[kind[: -len(suffix)]]}, got {_show(value)}{hint}", ()
    return err["msg"], ()


def _format_error(err: dict, root: Node, label: str) -> tuple[int, str]:
    if err["type"] in ("invalid_key", "extra_forbidden") and err["loc"]:  # `null:`, `yes:` keys
        err = {**err, "loc": (*tuple(err["loc"])[:-1], _key_name(err["loc"][-1]))}
    message, sub = _message(err)
    loc = tuple(err["loc"]) + tuple(sub)
    if err["type"] == "invalid_key":  # a mapping key, not a list index
        loc = loc[:-1] + (str(loc[-1]),)
    line = _locate(root, loc)
    path = ""
    for part in loc:
        path = _join(path, part)
    return line, (f"{label}:{line} {path}: {message}" if path else f"{label}:{line}: {message}")
