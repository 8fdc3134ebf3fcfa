"""Old import paths of modules that moved, kept working.

Built-in implementations moved from ``harness/`` into ``plugins/`` (imported as
``harness.plugins``) so that each lives where it is registered (issue 32). Code written against
the old paths (third-party plugins, notebooks, pickles) keeps working: importing an old name
gives the very same module object as the new one (``sys.modules`` holds it under both), so a
class is the same class and a monkeypatch reaches the code that runs.

``MOVED`` is the one list of moved modules: old module -> new module. ``MOVED_NAMES`` lists the
names that left a module which stayed (the engine kept ``harness.policies.drive``, the built-in
``SuccessiveHalving`` went to ``harness.plugins.policies``): the old module serves them through
:func:`names_moved_from`, so the engine module itself never imports a plugin. README.md and
CONTRIBUTING.md say where things live now.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED: dict[str, str] = {
    "harness.strategies": "harness.plugins.strategies",
    "harness.strategies.base": "harness.strategy",
    "harness.strategies.grid": "harness.plugins.strategies.grid",
    "harness.strategies.mordal": "harness.plugins.strategies.mordal",
    "harness.strategies.gw_prescreen": "harness.plugins.strategies.gw_prescreen",
    "harness.strategies.dcd": "harness.plugins.strategies.dcd",
    "harness.clustering": "harness.plugins.strategies.clustering",
    "harness.conductance": "harness.plugins.strategies.conductance",
    "harness.similarity": "harness.plugins.similarity.cka",
    "harness.gromov": "harness.plugins.similarity.gromov",
    "harness.parallel": "harness.plugins.executors.processes",
    "harness.ray_executor": "harness.plugins.executors.ray",
}


# module that stayed -> (module the names went to, the names)
MOVED_NAMES: dict[str, tuple[str, frozenset[str]]] = {
    "harness.policies": ("harness.plugins.policies", frozenset({
        "SuccessiveHalving", "NoStopping", "AsynchronousSuccessiveHalving", "Hyperband", "noisy_keep",
        "_check_options", "rank", "top", "by_height"})),
    "harness.predictors": ("harness.plugins.predictors", frozenset({
        "LogLinear", "PowerLaw", "Rectified", "ClipOptions", "r_squared", "_points", "BETA_BOUNDS",
        "DEFAULT_ALPHA", "PRE_POWER_SLOPE_FRACTION"})),
    "harness.executors": ("harness.plugins.executors.local", frozenset({"LocalExecutor"})),
    "harness.vision": ("harness.plugins.encoders.families", frozenset({
        "HFVisionEncoder", "OpenClipVisionEncoder", "TINY_ENCODERS", "TimmVisionEncoder", "load_hf", "load_open_clip", "load_timm", "load_tiny"})),
    "harness.language": ("harness.plugins.language_models.families", frozenset({
        "TINY_LLMS", "build_word_tokenizer", "load_hf", "load_tiny"})),
    # registry lookups: they need the plugin manager, which registers the dataset families
    "harness.datasets": ("harness.plugin_manager", frozenset({"family_of", "families_that", "family_entry"})),
}


def names_moved_from(module: str):
    """A module ``__getattr__`` serving the names that moved out of ``module`` (MOVED_NAMES)."""
    home, names = MOVED_NAMES[module]

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(home), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and loads it as the module it moved to."""

    def __init__(self):
        self._own: dict = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        new = MOVED[fullname]
        is_package = importlib.util.find_spec(new).submodule_search_locations is not None
        return importlib.util.spec_from_loader(fullname, self, is_package=is_package)

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        self._own[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # the import system stamped the old name's spec on the module: give it back its own
        module.__spec__ = self._own.pop(module.__spec__.name, module.__spec__)


def install() -> None:
    if not any(isinstance(f, _OldPath) for f in sys.meta_path):
        sys.meta_path.insert(0, _OldPath())  # before the path finder, which would load a copy
