"""The plugin manager: built-ins and third-party plugins, registered the same way.

Built-in plugins are the modules in ``harness.plugins`` listed in ``DEFAULT_PLUGINS``;
third-party plugins are modules named by entry points in the ``harness`` group. Both are
passed to ``pm.register`` and both fill the registries through the same hooks.

``HARNESS_LOAD_PLUGINS`` controls entry-point plugins (built-ins always load):
unset -> load every installed one; empty -> load none (the test suite's default);
``"a,b"`` -> load only the entry points or distributions named; ``"-a,-b"`` -> load every one
but those (``"a,-b"``: only a, never b). A name that matches no installed plugin is warned
about, and an unknown component's error names the plugins the filter left out.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata

import pluggy

from harness import __version__, hookspecs
from harness.contracts import METRIC_OPTIONS
from harness.registry import KINDS, Entry, Registry, RegistryError

ENTRY_POINT_GROUP = "harness"
ENV_LOAD_PLUGINS = "HARNESS_LOAD_PLUGINS"

DEFAULT_PLUGINS = (
    "harness.plugins.encoders",
    "harness.plugins.language_models",
    "harness.plugins.similarity",
    "harness.plugins.policies",
    "harness.plugins.predictors",
    "harness.plugins.datasets",
    "harness.plugins.strategies",
    "harness.plugins.executors",
    "harness.plugins.zoo",
)


class PluginError(RegistryError):
    """A plugin could not be imported or registered something invalid."""


@dataclass
class PluginInfo:
    name: str
    version: str
    distribution: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "components": self.components,
        }


def _names_of(ep: metadata.EntryPoint) -> set[str]:
    return {ep.name, ep.dist.name} if ep.dist is not None else {ep.name}


def _entry_point_allowed(ep: metadata.EntryPoint, allow: tuple[set[str], set[str]] | None) -> bool:
    if allow is None:
        return True
    only, never = allow
    names = _names_of(ep)
    if names & never:
        return False
    return not only and bool(never) or bool(names & only)


def _allow_list() -> tuple[set[str], set[str]] | None:
    """(names to load, names never to load) from ``HARNESS_LOAD_PLUGINS``; None when unset."""
    raw = os.environ.get(ENV_LOAD_PLUGINS)
    if raw is None:
        return None
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    return ({p for p in parts if not p.startswith("-")}, {p[1:] for p in parts if p.startswith("-")})


class PluginWarning(UserWarning):
    """A third-party plugin could not be imported and was skipped."""


class Plugins(dict):
    """The plugins one manager registered (name -> :class:`PluginInfo`), and what it left out:
    ``failed`` (name -> why it was skipped: an import error, an unknown hook, a broken hook or
    a wrong kind of object) and ``filtered`` (entry points ``HARNESS_LOAD_PLUGINS`` left out).
    Held by the :class:`Components` built from that manager, so a note about a skipped plugin
    describes the manager that skipped it, never an earlier one."""

    def __init__(self):
        super().__init__()
        self.failed: dict[str, str] = {}
        self.filtered: set[str] = set()

    def skipped(self, name: str, message: str) -> None:
        self.failed[name] = message
        warnings.warn(message, PluginWarning, stacklevel=3)


def make_plugin_manager() -> tuple[pluggy.PluginManager, Plugins]:
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    infos = Plugins()

    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        infos[module_name] = PluginInfo(module_name, __version__, "harness", builtin=True)

    allow = _allow_list()
    installed = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    if allow is not None:
        known = set().union(*(_names_of(ep) for ep in installed)) if installed else set()
        for name in sorted((allow[0] | allow[1]) - known):
            warnings.warn(f"{ENV_LOAD_PLUGINS} names {name!r}, which matches no installed plugin "
                          f"(entry points: {', '.join(ep.name for ep in installed) or 'none'})",
                          PluginWarning, stacklevel=2)
    for ep in installed:
        if not _entry_point_allowed(ep, allow):
            infos.filtered.add(ep.name)
            continue
        if pm.has_plugin(ep.name):
            raise PluginError(
                f'Error importing plugin "{ep.name}": the name is already taken by '
                f"{'a built-in' if ep.name in infos and infos[ep.name].builtin else 'another plugin'}"
            )
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - reported and skipped: one broken plugin must not stop every command
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
            message = (f'Error importing plugin "{ep.name}" ({ep.value}, {dist}): '
                       f"{type(exc).__name__}: {exc}; it is skipped")
            infos.skipped(ep.name, message)
            continue
        pm.register(module, name=ep.name)
        try:  # an implementation of a hook that does not exist is a typo: name it, skip the plugin
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            pm.unregister(module)
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
            import difflib

            hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
            bad = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
            close = difflib.get_close_matches(bad, hooks, n=1, cutoff=0.5)
            message = (f'Plugin "{ep.name}" ({ep.value}, {dist}) implements unknown hook {bad!r}'
                       f"{f' (did you mean {close[0]!r}?)' if close else ''}; it is skipped")
            infos.skipped(ep.name, message)
            continue
        dist = ep.dist
        infos[ep.name] = PluginInfo(
            ep.name,
            dist.version if dist is not None else "unknown",
            dist.name if dist is not None else "unknown",
            builtin=False,
        )
    # an implementation of a hook that does not exist is a typo; fail at start-up
    pm.check_pending()
    for name, info in infos.items():
        plugin = pm.get_plugin(name)
        info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return pm, infos


class Components:
    """All registries, filled from one plugin manager."""

    def __init__(self, pm: pluggy.PluginManager, infos: Plugins):
        self.pm = pm
        self.plugins = infos
        self.registries: dict[str, Registry] = {kind: Registry(kind, plugins=infos) for kind in KINDS}
        for kind, (hook_name, families) in KINDS.items():
            caller = getattr(pm.hook, hook_name)
            # one call per implementation, so each registration knows its plugin
            for impl in reversed(caller.get_hookimpls()):
                self._call(kind, families, impl)

    def _call(self, kind: str, families: bool, impl: pluggy.HookImpl) -> None:
        info = self.plugins[impl.plugin_name]
        registry = self.registries[kind]

        def register(name, target, *, names=None, doc="", cache_version=None, is_distance=None, takes=None):
            if names is not None and not families:
                raise PluginError(
                    f"plugin {info.name!r}: {kind} {name!r} passed names=, which only "
                    "family kinds (encoders, language models, datasets) accept"
                )
            if takes is not None and (kind != "similarity_metric" or isinstance(takes, str)
                                      or not set(takes) <= set(METRIC_OPTIONS)):
                raise PluginError(
                    f"plugin {info.name!r}: {kind} {name!r} passed takes={takes!r}; only similarity "
                    f"metrics take it, a list of {', '.join(METRIC_OPTIONS)}"
                )
            registry.add(
                Entry(
                    kind=kind,
                    name=name,
                    target=target,
                    plugin=info.name,
                    version=info.version,
                    names=list(names) if names is not None else None,
                    doc=doc,
                    distribution=info.distribution,
                    cache_version=None if cache_version is None else str(cache_version),
                    is_distance=None if is_distance is None else bool(is_distance),
                    takes=tuple(takes or ()),
                )
            )
            info.components.setdefault(kind, []).append(name)

        kwargs = {"register": register}
        before = set(registry.names())
        from harness.registry import ContractError

        try:
            impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except ContractError as exc:  # the wrong kind of object: that plugin's entries are skipped
            for name in set(registry.names()) - before:
                registry._entries.pop(name, None)
            info.components.pop(kind, None)
            message = f'Plugin "{info.name}" ({info.distribution} {info.version}): {exc}; its ' \
                      f"{kind.replace('_', ' ')}s are skipped"
            self.plugins.skipped(info.name, message)
            return
        except RegistryError:
            raise  # a clash of names, a bad name: already names both plugins
        except Exception as exc:  # noqa: BLE001 - one plugin's broken hook must not stop every command
            for name in set(registry.names()) - before:  # what it registered before failing goes too
                registry._entries.pop(name, None)
            info.components.pop(kind, None)
            message = (f'Plugin "{info.name}" ({info.distribution} {info.version}): its hook '
                       f"{impl.function.__name__} raised {type(exc).__name__}: {exc}; its {kind.replace('_', ' ')}s "
                       "are skipped")
            self.plugins.skipped(info.name, message)

    @property
    def failed(self) -> dict[str, str]:
        """Plugins this manager skipped: name -> why."""
        return self.plugins.failed

    @property
    def filtered(self) -> set[str]:
        """Installed plugins ``HARNESS_LOAD_PLUGINS`` left out of this manager."""
        return self.plugins.filtered

    def __getitem__(self, kind: str) -> Registry:
        return self.registries[kind]

    def add_commands(self, cli) -> None:
        self.pm.hook.register_commands(cli=cli)


@lru_cache(maxsize=1)
def get_components() -> Components:
    """The process-wide registries (cached; ``reset()`` clears the cache for tests)."""
    pm, infos = make_plugin_manager()
    return Components(pm, infos)


def reset() -> None:
    get_components.cache_clear()


# -- dataset families, through the process's registries --------------------------------------------


def family_of(ref: str) -> tuple:
    """(family, name) of a dataset ref ``family:name``, through the registry (unknown names fail
    with the available ones)."""
    _, family, name = family_entry(ref)
    return family, name


def families_that(capability: str) -> list[str]:
    """The registered families whose class declares ``capability`` (``alignment_data``,
    ``scoring``, or a split name such as ``"train"``), for messages; a family whose plugin
    cannot be imported here is left out."""
    out = []
    for entry in get_components()["dataset"]:
        try:
            family = entry.load()
        except Exception:  # noqa: BLE001, S112 - named by its own errors where it is used
            continue
        if capability in getattr(family, "splits", ()) or getattr(family, capability, False) is True:
            out.append(entry.name)
    return sorted(out)


def family_entry(ref: str):
    """(registry entry, family, name) of a dataset ref: the entry says which plugin made it."""
    entry, name = get_components()["dataset"].resolve(ref)
    return entry, entry.load()(entry.name), name
