"""The suite schema: pydantic models of every section, their defaults and their bounds.

Defaults are the Mordal paper's (arXiv 2502.00241, appendix B-C) or LLaVA-1.5's; every setting
has its one default here (``harness trial`` and ``TrainConfig`` read them). Checks against the
plugin registries are in :mod:`harness.suite.checks`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from harness.suite.checks import (
    DatasetRef,
    ExecutorRef,
    LanguageModelRef,
    PolicyRef,
    PredictorRef,
    SimilarityRef,
    StrategyRef,
    VisionEncoderRef,
    _component_class,
    _dataset_fits,
    _executor_available,
    _options_for,
    _plugin_options,
)
from harness.suite.errors import _Located
from harness.suite.yaml_lines import _show

# upper bounds on sizes: far above any real use, low enough that a typo (10**12) is refused at
# validation instead of growing memory until the machine kills the run
MAX_ZOO = 256  # vision encoders, and separately LLMs
MAX_TARGETS = 64
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

PROJECTOR_PATTERN = re.compile(r"^(?:linear|(ln_)?mlp([1-9][0-9]*)x_gelu)$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
Linkage = Literal["average", "single", "complete", "weighted", "centroid", "median", "ward"]


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
    """A task the candidates are scored on (through lmms-eval, or a bundled task).

    The one target type: a suite's ``targets`` are these, and so is what a plan, a trial,
    scoring and a dataset family receive (``harness.scoring.Target`` is this class). In code,
    ``Target("shapes:color", limit=300)``: checked like a suite's target except against the
    plugin registries, which a suite's targets meet when the suite is validated.
    """

    task: DatasetRef
    metric: Text | None = None  # None: the task's own primary metric
    limit: Annotated[Int, Field(gt=0, le=MAX_ITEMS)] | None = None  # None: every test item
    # a local parquet file standing in for an lmms-eval built-in task's data
    # (``Target("lmms:ai2d", dataset=path)``): set in code only, never written in a suite, so it
    # is not a field (not a suite key, not in the suite's fingerprint)
    _dataset: str | None = PrivateAttr(default=None)

    def __init__(self, task: str | None = None, /, *, dataset: str | None = None, **fields: Any):
        if task is not None:
            fields["task"] = task
        self.__pydantic_validator__.validate_python(fields, self_instance=self,
                                                    context={"check_components": False})
        self._dataset = dataset

    # validating a suite (``model_validate``) keeps pydantic's own __init__ path, so this one
    # neither sees a suite's context nor accepts ``dataset`` from a file; pydantic's RootModel
    # marks its positional __init__ the same way
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @property
    def dataset(self) -> str | None:
        """The local parquet override of an lmms-eval task's data (None: the task's own)."""
        return self._dataset

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
    # about as far apart as unrelated ones (measured in tests/plugins/test_gromov.py's cases)
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
    # the default built without validation: validating it looks "local" up in the registries,
    # which would load every plugin while harness.suite is still being imported (a plugin that
    # imports harness.suite then fails to import: a circle)
    executor: Annotated[Executor, BeforeValidator(_executor)] = Executor.model_construct(name="local", options={})
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

    @model_validator(mode="after")
    def _the_strategy_can_search_it(self, info: ValidationInfo):
        """The strategy's own check of the whole suite (``SearchStrategy.check_suite``), so what it
        refuses is refused here, before a run starts and writes anything."""
        check = getattr(_component_class("search_strategy", self.search.strategy, info), "check_suite", None)
        if check is not None:
            try:
                check(self)
            except ValueError as exc:
                raise _Located(str(exc), ("search", "options")) from None
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
