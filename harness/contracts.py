"""The contract of every plugin kind, in one place: what the core calls, with which keywords.

A built-in and a third-party plugin are held to the same contract. Each kind is a base class
whose methods have keyword arguments with defaults, and capability flags (class attributes)
that say what the core may hand it; the core reads those flags and never inspects a plugin's
signatures or writes attributes onto it (the anchors: simonw/llm ``Model.can_stream``, Optuna
``BaseStorage``, Syne Tune ``TrialScheduler``). A class that does not subclass its contract
(duck typing, as older plugins do) gets the contract's minimal call: the defaults of every flag.

==================  ==========================================  ===========================================
kind                contract                                    where the built-ins live
==================  ==========================================  ===========================================
search strategy     :class:`harness.strategy.SearchStrategy`    ``harness.plugins.strategies``
stopping policy     :class:`StoppingPolicy`                     ``harness.plugins.policies``
predictor           :class:`Predictor`                          ``harness.plugins.predictors``
similarity metric   :class:`SimilarityMetric` (or a function)   ``harness.plugins.similarity``
executor            :class:`TrialExecutor`                      ``harness.plugins.executors``
dataset family      :class:`harness.datasets.DatasetFamily`     ``harness.plugins.shapes``, ``llava``, ``lmms``
encoder family      a loader returning :class:`harness.vision.VisionEncoder`    ``harness.plugins.encoders``
LLM family          a loader returning :class:`harness.language.LanguageModel`  ``harness.plugins.language_models``
==================  ==========================================  ===========================================

This module imports nothing heavy (no torch, no store), so the registry checks plugins against
it at registration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

# -- stopping policies ----------------------------------------------------------------------------


class Rung(NamedTuple):
    """One round: train ``n_in`` candidates at sample ratio ``ratio``, keep ``n_keep``."""

    index: int
    ratio: float
    n_in: int
    n_keep: int


#: the fields of a suite's ``inter`` / ``intra`` stage a policy may take (``settings``)
STAGE_SETTINGS = ("eta", "min_ratio", "tie_z", "uninformative")


def check_plan_args(n_candidates: int, top_k: int) -> None:
    if n_candidates < 0:
        raise ValueError(f"n_candidates must be >= 0, got {n_candidates}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")


@dataclass(frozen=True)
class RungResult:
    rung: Rung
    candidates: tuple  # trained at this rung, in the order they were evaluated
    scores: Mapping
    kept: tuple  # best first
    why: str = ""  # what widened a noise-aware cut beyond n_keep ("" for a plain cut)


@dataclass(frozen=True)
class StageResult:
    rungs: tuple[RungResult, ...]
    survivors: tuple  # best first when any rung ran; the input order otherwise
    # candidates no rung evaluated although a decision was made (Hyperband with a pool larger
    # than its brackets draw): neither survivors nor eliminated, so a ranking puts them last
    untried: tuple = ()


class StoppingPolicy:
    """Which candidates to train at which data-sample ratio, and whom to keep (``sha``, ``asha``...).

    Two pure decisions, so a strategy can drive it and a replay re-drives it from recorded
    scores: ``plan(n_candidates, top_k)`` fixes the rungs, ``keep(scores, n_keep)`` returns at
    most ``n_keep`` names best first (ties by name, NaN last). A policy whose control flow is
    not a fixed list of rungs defines ``drive(candidates, top_k, evaluate)`` instead
    (:func:`harness.policies.drive` checks its result against the same contract); the
    ``evaluate`` it gets is a :class:`Evaluate`, whose ``prefetch(pairs)`` hands (candidate,
    ratio) pairs to a batching executor.

    Capability flags:

    * ``settings``: the stage fields (of :data:`STAGE_SETTINGS`) the constructor takes; the
      core builds the policy as ``cls(**those, **options)``, ``options`` being the stage's
      ``options`` as the class's ``Options`` pydantic model validated them.
    * ``noise_aware``: ``keep`` (and the optional ``cut`` / ``why``) take ``errors`` (candidate
      -> standard error of its score), ``baseline`` (the task's constant-answer score, or None)
      and ``final`` (the stage's last cut), and may keep more than ``n_keep`` at a cut that is
      not final.
    """

    settings: ClassVar[tuple[str, ...]] = ()
    noise_aware: ClassVar[bool] = False

    @classmethod
    def from_stage(cls, stage: Mapping[str, Any], options: Mapping[str, Any]) -> StoppingPolicy:
        return cls(**{k: stage[k] for k in cls.settings if k in stage}, **options)

    def plan(self, n_candidates: int, top_k: int) -> list[Rung]:
        """The rungs that take ``n_candidates`` down to at most ``top_k``; empty if n <= top_k."""
        raise NotImplementedError

    def keep(self, scores: Mapping, n_keep: int, *, errors: Mapping | None = None,
             baseline: float | None = None, final: bool = False) -> list:
        """At most ``n_keep`` names from ``scores``, best first."""
        raise NotImplementedError


def build_policy(target: Callable, stage: Mapping[str, Any], options: Mapping[str, Any]):
    """A registered policy built for one stage: :meth:`StoppingPolicy.from_stage` for a subclass
    of the contract, ``target(**options)`` for any other class or factory."""
    if isinstance(target, type) and issubclass(target, StoppingPolicy):
        return target.from_stage(stage, options)
    return target(**options)


class Evaluate:
    """What a policy's ``drive`` calls: ``evaluate(candidate, ratio) -> score``; ``prefetch``
    (or None) takes a list of (candidate, ratio) pairs decided on, which a batching executor
    trains together."""

    def __init__(self, evaluate: Callable[[Any, float], float],
                 prefetch: Callable[[list], None] | None = None):
        self._evaluate = evaluate
        self.prefetch = prefetch

    def __call__(self, candidate, ratio: float) -> float:
        return self._evaluate(candidate, ratio)


# -- predictors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalingFit:
    """A fitted scaling law: named parameters and the coefficient of determination on its points."""

    params: dict[str, float]
    r2: float


class Predictor:
    """A full-data score predictor (``loglinear``, ``rectified``, ``powerlaw``).

    Built as ``cls(**options)`` from the suite's ``predictor.options`` (checked against the
    class's ``Options`` model). ``fit`` gets ``errors`` (each score's standard error, binomial
    over the test items for accuracy) and ``baseline`` (the task's constant-answer score; None
    when unknown) as keywords; a class that does not subclass this contract is called as
    ``fit(ratios, scores)``.
    """

    def fit(self, ratios: Sequence[float], scores: Sequence[float], *,
            errors: Sequence[float] | None = None, baseline: float | None = None) -> ScalingFit:
        """Fit the law to scores measured at data-sample ratios."""
        raise NotImplementedError

    def predict(self, fit: ScalingFit, ratio: float = 1.0) -> float:
        """The fitted law's score at ``ratio`` (1 = the full alignment set)."""
        raise NotImplementedError

    def for_interval(self) -> Predictor:
        """The predictor whose first-order interval is computed and then clipped to ``clip``
        (:func:`harness.predictors.prediction_interval`); itself by default."""
        return self


def fit_with(predictor, ratios: Sequence[float], scores: Sequence[float],
             errors: Sequence[float] | None = None, baseline: float | None = None) -> ScalingFit:
    """``predictor.fit`` called as its contract says: with ``errors`` and ``baseline`` for a
    :class:`Predictor`, plainly for any other object."""
    if isinstance(predictor, Predictor):
        return predictor.fit(ratios, scores, errors=None if errors is None else [float(e) for e in errors],
                             baseline=baseline)
    return predictor.fit(ratios, scores)


# -- similarity metrics ---------------------------------------------------------------------------


class SimilarityMetric:
    """A representation-similarity metric: ``metric(x, y, **options) -> float`` on two [n, d]
    (or [n, tokens, d]) feature matrices of the same items. A plain function is a metric too;
    what the core needs to know it reads from the registration, never from the function:

    * ``is_distance=True``: lower is closer (``gw``); the default is a similarity (``cka``);
    * ``takes=("minibatch", "seed")``: the suite options the metric accepts; ``minibatch`` is
      ``search.clustering.cka_batch`` (with a fixed batching ``seed`` 0). The options given
      are part of the similarity's content key.
    """

    def __call__(self, x: Any, y: Any, **options) -> float:
        raise NotImplementedError


#: the options a suite can hand a similarity metric (``register(..., takes=...)``)
METRIC_OPTIONS = ("minibatch", "seed")


def metric_options(takes: Sequence[str] | None, cka_batch: int | None) -> dict:
    """The keyword options the suite gives a metric registered with ``takes``: ``minibatch``
    (and batching seed 0) from ``clustering.cka_batch``; none keeps the plain metric's key."""
    takes = tuple(takes or ())
    if "minibatch" in takes and cka_batch is not None:
        return {"minibatch": int(cka_batch), "seed": 0} if "seed" in takes else {"minibatch": int(cka_batch)}
    return {}


# -- executors ------------------------------------------------------------------------------------


class TrialExecutor:
    """Where trials run (``local``, ``processes``, ``ray``): built as ``cls(store, run_id,
    **options)`` (the suite's ``executor`` fields and ``options``, checked against ``Options``).

    ``run(spec, progress=None) -> TrialOutcome`` is required; the rest have defaults that an
    executor overrides when it can do better. Capability flags: ``batches`` (``run_many`` runs
    trials in parallel) and ``streams`` (``submit`` starts trials without waiting). A class that
    does not subclass this contract is read the same way: its flags from the methods it has.
    """

    batches: ClassVar[bool] = False
    streams: ClassVar[bool] = False

    def __init__(self, store, run_id: str, **options):
        self.store = store
        self.run_id = run_id
        self.options = options

    def run(self, spec, progress=None):
        raise NotImplementedError

    def run_many(self, specs: list) -> list:
        """Outcomes in the order of ``specs``."""
        return [self.run(spec) for spec in specs]

    def submit(self, specs: list) -> None:
        """Start ``specs`` without waiting, where the executor can (else nothing)."""

    def close(self) -> None:
        """Cancel what was submitted and never asked for."""

    def missing_embedding(self, what: str) -> None:
        """Called before a strategy computes features this executor says should exist (a replay
        stops there); nothing for an executor that computes."""


def __getattr__(name: str):
    """The contracts that live with heavier code, importable from here too."""
    homes = {"SearchStrategy": "harness.strategy", "DatasetFamily": "harness.datasets",
             "VisionEncoder": "harness.vision", "LanguageModel": "harness.language"}
    if name in homes:
        import importlib

        return getattr(importlib.import_module(homes[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
