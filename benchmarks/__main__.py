"""``python -m benchmarks``: list the benchmarks; ``python -m benchmarks NAME [options]``: run one
(the same as ``python -m benchmarks.NAME [options]``)."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBRARY = {"__init__", "__main__", "common"}


def benchmarks() -> dict[str, str]:
    """name -> the first line of its docstring, for every benchmark in this folder."""
    out = {}
    for path in sorted(HERE.glob("*.py")):
        if path.stem not in LIBRARY:
            try:
                doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            except SyntaxError:
                doc = "(does not parse)"
            out[path.stem] = doc.splitlines()[0] if doc else ""
    return out


def main(argv: list[str]) -> int:
    found = benchmarks()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.replace("``", "") + "\n")
        width = max(map(len, found))
        for name, line in found.items():
            print(f"  {name:<{width}}  {line}")
        return 0
    name = argv[0].removesuffix(".py").replace("-", "_")
    if name not in found:
        print(f"no benchmark {argv[0]!r}; one of: {', '.join(found)}", file=sys.stderr)
        return 2
    sys.argv = [str(HERE / f"{name}.py"), *argv[1:]]
    runpy.run_module(f"benchmarks.{name}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
