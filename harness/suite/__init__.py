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

from pathlib import Path

from pydantic import ValidationError

# the package's parts (each re-exported here, so ``from harness.suite import X`` keeps working):
# schema (the models), checks (registry lookups), yaml_lines (the file and its lines), errors
# (SuiteError and the pydantic -> one-line rewriter)
from harness.suite.checks import (
    DatasetRef,
    ExecutorRef,
    LanguageModelRef,
    PolicyRef,
    PredictorRef,
    SimilarityRef,
    StrategyRef,
    VisionEncoderRef,
)
from harness.suite.errors import SuiteError, _format_error
from harness.suite.schema import (
    MAX_BATCH,
    MAX_CANDIDATES,
    MAX_EPOCHS,
    MAX_ETA,
    MAX_FEATURE_ITEMS,
    MAX_ITEMS,
    MAX_LORA_R,
    MAX_PROJECTOR_LAYERS,
    MAX_SEED,
    MAX_STEPS,
    MAX_TARGETS,
    MAX_ZOO,
    NAME_PATTERN,
    PROJECTOR_PATTERN,
    Alignment,
    Bool,
    Candidate,
    Clustering,
    Executor,
    Fraction,
    Int,
    Linkage,
    LoRA,
    Number,
    Optim,
    Predictor,
    Prescreen,
    Ratio,
    Search,
    Stage,
    Suite,
    Target,
    Text,
    Transfer,
    VLMConfig,
    Zoo,
)
from harness.suite.yaml_lines import (
    MAX_DEPTH,
    MAX_SUITE_BYTES,
    _Loader,
    _parse,
    _read_text,
)

__all__ = [
    "MAX_BATCH", "MAX_CANDIDATES", "MAX_DEPTH", "MAX_EPOCHS", "MAX_ETA", "MAX_FEATURE_ITEMS",
    "MAX_ITEMS", "MAX_LORA_R", "MAX_PROBLEMS_SHOWN", "MAX_PROJECTOR_LAYERS", "MAX_SEED",
    "MAX_STEPS", "MAX_SUITE_BYTES", "MAX_TARGETS", "MAX_ZOO", "NAME_PATTERN", "PROJECTOR_PATTERN",
    "Alignment", "Bool", "Candidate", "Clustering", "DatasetRef", "Executor", "ExecutorRef",
    "Fraction", "Int", "LanguageModelRef", "Linkage", "LoRA", "Number", "Optim", "PolicyRef",
    "Predictor", "PredictorRef", "Prescreen", "Ratio", "Search", "SimilarityRef", "Stage",
    "StrategyRef", "Suite", "SuiteError", "Target", "Text", "Transfer", "VLMConfig",
    "VisionEncoderRef", "Zoo", "load_suite", "validate_file",
]


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
    # _Loader read here, from the package: setting harness.suite._Loader switches between
    # libyaml and pure-Python PyYAML (the tests check every bad suite under both)
    root, data, problems = _parse(text, label, _Loader)
    if root is None:
        return None, [message for _, message in problems]
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        problems += [_format_error(err, root, label, Suite) for err in exc.errors()]
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
