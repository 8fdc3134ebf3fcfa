"""The tree reads as the architecture (issue 32): the engine in harness/, every built-in in
plugins/ beside its registration, one contract per kind, no import circles, and every old import
path of a moved module still working."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = {"harness": ROOT / "harness", "harness.plugins": ROOT / "plugins", "harness.store": ROOT / "store"}


def _modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Every harness module ``name`` imports, at module level or inside a function (a lazy
    import still closes a circle). ``harness._moved`` serves old paths and is left out."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(parts + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
            out |= subs
            if len(subs) < len(node.names):
                out.add(base)
    return {m for m in out if m in modules and m != name and m != "harness._moved"}


def test_no_import_circles_even_through_lazy_imports():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_nothing_inspects_a_plugin_signature_or_writes_onto_a_plugin():
    offenders = []
    for path in [*PACKAGES["harness"].rglob("*.py"), *PACKAGES["harness.plugins"].rglob("*.py")]:
        text = path.read_text()
        for needle in ("inspect.signature", "_harness_name"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders


def test_every_built_in_lives_in_plugins_beside_its_registration():
    from harness.plugin_manager import get_components

    components = get_components()
    for kind, registry in components.registries.items():
        for entry in registry:
            if entry.distribution != "harness":
                continue
            target = entry.target if isinstance(entry.target, str) else \
                f"{entry.target.__module__}:{entry.target.__qualname__}"
            assert target.startswith("harness.plugins."), f"{kind} {entry.name} lives at {target}"


@pytest.mark.parametrize("old", sorted(__import__("harness._moved", fromlist=["MOVED"]).MOVED))
def test_an_old_module_path_is_the_very_module_it_moved_to(old):
    from harness._moved import MOVED

    module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old]  # its own spec, not the alias's


def test_moved_names_are_served_from_their_old_modules():
    from harness._moved import MOVED_NAMES

    for old, (home, names) in MOVED_NAMES.items():
        module, new = importlib.import_module(old), importlib.import_module(home)
        for name in names:
            assert getattr(module, name) is getattr(new, name), f"{old}.{name}"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        importlib.import_module("harness.policies").nope  # noqa: B018


def test_old_paths_work_in_a_fresh_process_before_anything_else_is_imported():
    """A third-party plugin written against the old paths imports them first thing."""
    code = ("from harness.strategies.base import SearchStrategy, RankedCandidate\n"
            "from harness.strategies.mordal import MordalSearch\n"
            "from harness.policies import SuccessiveHalving, Rung\n"
            "from harness.predictors import LogLinear, ScalingFit\n"
            "from harness.executors import LocalExecutor\n"
            "import harness.gromov, harness.similarity, harness.clustering, harness.parallel\n"
            "from harness.contracts import StoppingPolicy, Predictor, TrialExecutor\n"
            "assert issubclass(SuccessiveHalving, StoppingPolicy) and issubclass(LogLinear, Predictor)\n"
            "assert issubclass(LocalExecutor, TrialExecutor) and issubclass(MordalSearch, SearchStrategy)\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
