"""The hooks a harness plugin may implement.

Every hook takes a ``register`` callback owned by the core. An implementation may accept
fewer arguments than the spec lists, so hooks can grow new arguments without breaking
plugins. ``register(name, target, **meta)`` records one component; ``target`` is either the
object itself or a ``"module:attribute"`` string that is imported the first time the
component is used, so registering imports no backend (torch, lmms-eval).

What each kind of component must be is written once, as a base class with keyword defaults
and capability flags, in :mod:`harness.contracts`; the core calls a component only as its
contract says and never inspects its signature. The built-ins, in ``plugins/`` (imported as
``harness.plugins``), implement the same hooks.
"""

import pluggy

hookspec = pluggy.HookspecMarker("harness")
hookimpl = pluggy.HookimplMarker("harness")


@hookspec
def register_vision_encoders(register):
    """Register vision-encoder families, e.g. ``hf`` for ``hf:<id or path>``.

    :param register: ``register(family, target, names=None, doc="")``. ``names`` lists the
        accepted ``family:<name>`` names for closed families (``tiny``); ``None`` means any
        name is accepted and checked when loaded (``hf``, ``timm``, ``open_clip``).
    """


@hookspec
def register_language_models(register):
    """Register language-model families, e.g. ``hf`` for ``hf:<id or path>``.

    :param register: ``register(family, target, names=None, doc="")``, as for encoders.
    """


@hookspec
def register_similarity_metrics(register):
    """Register representation-similarity metrics (``cka``, ``gw``, ...).

    A metric is ``metric(x, y, **options) -> float`` on two [n, d] feature matrices of the same
    items (:class:`harness.contracts.SimilarityMetric`, or a plain function). What the core
    needs to know it reads from the registration alone: ``is_distance=True`` marks one where
    lower is closer (``gw``); ``takes=("minibatch", "seed")`` lists the suite options it
    accepts (``cka``: ``search.clustering.cka_batch`` as ``minibatch``, batching seed 0). A
    plugin's metric is keyed by its release, or by ``cache_version`` when declared
    (CONTRIBUTING.md).

    :param register: ``register(name, target, doc="", is_distance=None, takes=None, cache_version=None)``.
    """


@hookspec
def register_stopping_policies(register):
    """Register early-stopping policies (``sha``, ``asha``, ``hyperband``, ``none``).

    A policy is a :class:`harness.contracts.StoppingPolicy`: built with the stage fields it
    declares in ``settings`` (of ``eta``, ``min_ratio``, ``tie_z``, ``uninformative``) and the
    stage's ``options`` (checked against the pydantic model the class declares as ``Options``;
    a class without one takes none; asha: ``workers``, ``stop_early``); it implements
    ``plan(n, top_k)`` and ``keep(scores, n_keep)`` (or its own ``drive(candidates, top_k,
    evaluate)``, whose ``evaluate.prefetch`` takes lists of ``(candidate, ratio)`` it has decided
    to evaluate, which a batching executor trains together), see :mod:`harness.policies`.
    Noise: a policy that declares ``noise_aware = True`` gets, as keywords of ``keep``, ``errors``
    (candidate -> standard error of its score: binomial over the test items for accuracy),
    ``baseline`` (the task's constant-answer score: always giving its most frequent answer;
    None when unknown) and ``final`` (the stage's last cut), and may keep more than ``n_keep``
    at a cut that is not final. A ``why`` method with the same arguments says what widened the
    cut (printed with the rung). A class that does not subclass the contract is built with its
    ``options`` alone and called as ``keep(scores, n_keep)``.

    :param register: ``register(name, target, doc="")``.
    """


@hookspec
def register_predictors(register):
    """Register full-data score predictors (``loglinear``, ``rectified``, ``powerlaw``).

    A predictor is a :class:`harness.contracts.Predictor`: ``fit(ratios, scores, *, errors=None,
    baseline=None) -> ScalingFit`` and ``predict(fit, ratio)``, see :mod:`harness.predictors`;
    it is built with the suite's ``predictor.options``, checked against the pydantic model it
    declares as ``Options`` (the built-ins: ``clip``). ``errors`` are each score's standard
    error and ``baseline`` the task's constant-answer score, as stored in ``task_baselines``
    (None when unknown); a class that does not subclass the contract is called as
    ``fit(ratios, scores)`` (:func:`harness.predictors.fit_points`).
    The 95% interval stored with each prediction is computed from those errors for any
    predictor (:func:`harness.predictors.prediction_interval`).

    :param register: ``register(name, target, doc="")``.
    """


@hookspec
def register_datasets(register):
    """Register dataset families: alignment sets and target tasks (``shapes``, ``llava``, ...).

    A family is a subclass of :class:`harness.datasets.DatasetFamily` and declares its
    capabilities (``alignment_data``, ``splits``, ``scoring``); suites are validated against
    them. A family with a test split is scored by a local exact-match task harness writes;
    one whose tasks lmms-eval reads itself overrides ``scoring_task``.

    :param register: ``register(family, target, names=None, doc="")``, as for encoders.
    """


@hookspec
def register_search_strategies(register):
    """Register search strategies (``grid``, ``mordal``, ...).

    A strategy is a :class:`harness.strategy.SearchStrategy` subclass. One that takes
    parameters declares a pydantic model as its class attribute ``Options``: the suite's
    ``search.options`` are checked against it when the suite is (file:line errors) and the
    strategy reads them as ``self.options`` (``gw-prescreen``: train_top, samples, entropic,
    epsilon; ``dcd``: history, examples, neighbours, train_top). One without takes none.
    A strategy reads the suite through ``self.plan`` (:class:`harness.plan.Plan`: candidates,
    training recipe, targets, alignment budget, seed, device and its ``search`` section, all
    resolved once), never the whole suite.

    :param register: ``register(name, target, doc="")``.
    """


@hookspec
def register_executors(register):
    """Register trial executors (built in: ``local``, ``processes``, ``ray``).

    The target is a :class:`harness.contracts.TrialExecutor`, called as ``cls(store, run_id, **options)``, ``options`` being the
    fields the suite's ``executor`` mapping set (``executor: {name: NAME, ...}``) and its
    ``executor.options``, checked against the pydantic model the class declares as ``Options``
    (a class without one takes none). It has
    ``run(spec, progress=None) -> TrialOutcome`` (:func:`harness.trial.run_trial` does the
    work in-process) and may have ``run_many(specs) -> list[TrialOutcome]`` (same order):
    strategies then hand it independent trials together (a rung, the grid, the prediction
    points) to run in parallel. Only the process that holds the store may write it; workers
    elsewhere return their results to it (see :mod:`harness.plugins.executors.ray`).

    :param register: ``register(name, target, doc="")``.
    """


@hookspec
def register_commands(cli):
    """Add subcommands to the ``harness`` command line.

    :param cli: the root ``click.Group``; call ``cli.add_command(...)`` or use ``@cli.command()``.
    """
