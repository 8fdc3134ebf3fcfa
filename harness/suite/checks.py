"""Checks against the plugin registries: component names, their options, what a dataset can be.

Each check runs inside pydantic validation and is skipped when the validation context says
``{"check_components": False}`` (a suite validated without its plugins, a target built in code).
A failed check raises ``ValueError`` (or :class:`harness.suite.errors._Located` to point into
part of the value), which the error rewriter turns into one ``file:line`` message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from harness.suite.errors import _Located


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


def _executor_available(name: str, info: ValidationInfo) -> None:
    """An executor that cannot run here says why (``unavailable()`` on its class: ``ray``
    without Ray installed names the install command)."""
    why = getattr(_component_class("executor", name, info), "unavailable", None)
    why = why() if callable(why) else None
    if why:
        raise _Located(why, ("name",))
