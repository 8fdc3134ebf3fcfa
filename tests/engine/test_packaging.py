"""Both install forms import every package: the editable one (this test run) and a wheel."""

import subprocess
import sys
import tomllib

from helpers import ROOT, TIMEOUT

PACKAGE_DIRS = {"harness": "harness", "harness.plugins": "plugins", "harness.store": "store"}


def _declared_packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_every_package_folder_is_declared():
    found = set()
    for name, folder in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found == set(_declared_packages())


def test_built_wheel_imports_every_package(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path, timeout=TIMEOUT,
    )
    (wheel,) = wheels.glob("harness-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                    str(site), str(wheel)], check=True, capture_output=True, timeout=TIMEOUT)
    assert not (site / "store").exists() and not (site / "plugins").exists()
    packages = _declared_packages()
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r})\n"
        "import importlib, harness\n"
        f"assert harness.__file__.startswith({str(site)!r}), harness.__file__\n"
        f"for name in {packages!r}: importlib.import_module(name)\n"
        "from harness.plugin_manager import get_components\n"
        "assert 'cka' in get_components()['similarity_metric']\n"
        "import harness.store.migrations\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
