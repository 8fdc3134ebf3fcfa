"""Typed registries of components, one per kind, filled by plugins through the hooks.

A component is named either plainly (``cka``, ``sha``) or, for the open-ended kinds, as
``family:name`` (``hf:openai/clip-vit-large-patch14-336``, ``tiny:vit-p8``). Targets may be
``"module:attribute"`` strings imported on first use, so building the registry is cheap.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from harness.errors import BadInput, HarnessError

T = TypeVar("T")

# kind -> (hook name, whether components are addressed as family:name)
KINDS: dict[str, tuple[str, bool]] = {
    "vision_encoder": ("register_vision_encoders", True),
    "language_model": ("register_language_models", True),
    "similarity_metric": ("register_similarity_metrics", False),
    "stopping_policy": ("register_stopping_policies", False),
    "predictor": ("register_predictors", False),
    "dataset": ("register_datasets", True),
    "search_strategy": ("register_search_strategies", False),
    "executor": ("register_executors", False),
}


class RegistryError(HarnessError):
    """A registration conflict or a lookup of a name nobody registered."""


class DuplicateComponent(RegistryError):
    pass


class ContractError(RegistryError):
    """A plugin registered something that is not what its kind must be (names the plugin)."""


# kind -> (what it must be, the check); a registered object is checked at registration, a
# "module:attr" string when it is first imported
CONTRACTS: dict[str, tuple[str, Any]] = {
    "vision_encoder": ("a loader: a callable taking the name after 'family:'", callable),
    "language_model": ("a loader: a callable taking the name after 'family:'", callable),
    "dataset": ("a dataset family: a subclass of harness.datasets.DatasetFamily", lambda t: _is_family(t)),
    "similarity_metric": ("a callable metric(x, y, **options) -> float", callable),
    "stopping_policy": ("a policy class with plan() and keep() (or drive())",
                        lambda t: callable(t) and (hasattr(t, "drive") or (hasattr(t, "plan") and hasattr(t, "keep")))),
    "predictor": ("a predictor class with fit() and predict()",
                  lambda t: callable(t) and hasattr(t, "fit") and hasattr(t, "predict")),
    "search_strategy": ("a strategy class with search() (subclass harness.strategy.SearchStrategy)",
                        lambda t: isinstance(t, type) and hasattr(t, "search")),
    "executor": ("an executor class with run(spec) (and optionally run_many(specs))",
                 lambda t: callable(t) and hasattr(t, "run")),
}


def _is_family(target: Any) -> bool:
    from harness.datasets import DatasetFamily

    return isinstance(target, type) and issubclass(target, DatasetFamily)


def contract_problem(kind: str, target: Any) -> str | None:
    """What ``target`` should be for ``kind`` when it is not, else None."""
    what, check = CONTRACTS[kind]
    return None if check(target) else f"{what}, not {type(target).__name__} {target!r:.60}"


class UnknownComponent(RegistryError, BadInput, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def did_you_mean(name: str, available: list[str], plugins=None) -> str:
    """``Did you mean 'x'? Available: a, b, c`` (the first part only when something is close),
    and, given the ``plugins`` of the manager that built the registry
    (:class:`harness.plugin_manager.Plugins`), those it skipped or filtered out, which might
    have provided it."""
    close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    failed, filtered = getattr(plugins, "failed", None), getattr(plugins, "filtered", None)
    if failed:
        hint += f" (plugins skipped because they failed to import: {', '.join(sorted(failed))})"
    if filtered:
        hint += (" (installed plugins not loaded because of HARNESS_LOAD_PLUGINS: "
                 f"{', '.join(sorted(filtered))})")
    return f"{hint} Available: {', '.join(sorted(available)) or '(none)'}"


@dataclass
class Entry(Generic[T]):
    """One registered component (or component family)."""

    kind: str
    name: str
    target: Any
    plugin: str
    version: str
    names: list[str] | None = None  # closed families list their members
    doc: str = ""
    distribution: str = "harness"  # the pip distribution that provides it
    cache_version: str | None = None  # declared by the plugin: outputs change only when it does
    is_distance: bool | None = None  # a similarity metric's direction, declared at registration
    takes: tuple[str, ...] = ()  # a similarity metric's suite options (harness.contracts.METRIC_OPTIONS)
    _loaded: Any = field(default=None, repr=False)

    @property
    def producer(self) -> str | None:
        """What stored results of this component are keyed by besides their content:
        ``distribution==cache_version`` (else ``==version``, so every release of a plugin that
        declares no cache_version gets new keys); None for harness's built-ins, whose keys
        are content alone (the shipped table's keys do not change with a harness release)."""
        if self.distribution == "harness":
            return None
        return f"{self.distribution}=={self.cache_version or self.version}"

    @property
    def higher_is_closer(self) -> bool:
        """A similarity metric's direction, from its registration alone: True unless it was
        registered with ``is_distance=True``."""
        return not self.is_distance

    def load(self) -> T:
        """The registered object, importing a ``"module:attr"`` target the first time."""
        if self._loaded is None:
            target = self.target
            if isinstance(target, str):
                module_name, _, attr = target.partition(":")
                try:
                    obj = importlib.import_module(module_name)
                    for part in attr.split(".") if attr else []:
                        obj = getattr(obj, part)
                except (ImportError, AttributeError) as exc:
                    raise RegistryError(
                        f"{self.kind} {self.name!r} from plugin {self.plugin!r} points at "
                        f"{target!r}, which cannot be imported: {exc}"
                    ) from exc
                target = obj
                problem = contract_problem(self.kind, target)
                if problem:
                    raise ContractError(
                        f"{self.kind.replace('_', ' ')} {self.name!r} from plugin {self.plugin!r} "
                        f"({self.distribution} {self.version}) points at {self.target!r}, which should "
                        f"be {problem}")
            self._loaded = target
        return self._loaded


class Registry(Generic[T]):
    """Components of one kind; names are unique across all plugins."""

    def __init__(self, kind: str, plugins=None):
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}")
        self.kind = kind
        self.plugins = plugins  # the manager's Plugins: what it skipped, for the hints
        self.families = KINDS[kind][1]
        self._entries: dict[str, Entry[T]] = {}

    def add(self, entry: Entry[T]) -> None:
        if not isinstance(entry.target, str):
            problem = contract_problem(self.kind, entry.target)
            if problem:
                raise ContractError(f"plugin {entry.plugin!r} registered {self.kind.replace('_', ' ')} "
                                    f"{entry.name!r} as {problem.split(', not ', 1)[1]}; it should be "
                                    f"{problem.split(', not ', 1)[0]}")
        if not entry.name or ":" in entry.name:
            raise RegistryError(
                f"plugin {entry.plugin!r} registered a {self.kind} named {entry.name!r}: "
                "names must be non-empty and contain no ':'"
            )
        if entry.name in self._entries:
            other = self._entries[entry.name]
            raise DuplicateComponent(
                f"{self.kind} {entry.name!r} is registered twice: by plugin {other.plugin!r} "
                f"and by plugin {entry.plugin!r}. Uninstall one, or disable one with "
                "HARNESS_LOAD_PLUGINS."
            )
        self._entries[entry.name] = entry

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            label = self.kind.replace("_", " ")
            raise UnknownComponent(
                f"Unknown {label} {name!r}.{did_you_mean(name, self.names(), self.plugins)}"
            ) from None

    def resolve(self, ref: str) -> tuple[Entry[T], str]:
        """Split ``family:name`` and check both parts; returns (family entry, name).

        For kinds without families the whole ref is the name and the second value is ``""``.
        """
        label = self.kind.replace("_", " ")
        if not self.families:
            return self.get(ref), ""
        family, sep, name = ref.partition(":")
        if not sep or not name:
            examples = ", ".join(f"{f}:<name>" for f in self.names()[:4])
            raise UnknownComponent(
                f"{label} {ref!r} must be written family:name (e.g. {examples})"
            )
        if family not in self._entries:
            raise UnknownComponent(
                f"Unknown {label} family {family!r} in {ref!r}."
                f"{did_you_mean(family, self.names(), self.plugins)}"
            )
        entry = self._entries[family]
        if entry.names is not None and name not in entry.names:
            full = [f"{family}:{n}" for n in entry.names]
            raise UnknownComponent(f"Unknown {label} {ref!r}.{did_you_mean(ref, full, self.plugins)}")
        return entry, name

    def available(self) -> list[str]:
        """Every name a suite may use: plain names, closed families' members, ``family:*``."""
        out: list[str] = []
        for entry in self:
            if not self.families:
                out.append(entry.name)
            elif entry.names is None:
                out.append(f"{entry.name}:*")
            else:
                out.extend(f"{entry.name}:{n}" for n in entry.names)
        return sorted(out)
