"""Start-up cost of the light commands, and proof that they import no torch.

    python -m benchmarks.cli_startup [--repeat 5]

Prints one JSON line per command: median wall seconds over repeats, and which heavy modules
(torch, transformers, lmms_eval, duckdb) ended up imported. For scale it also times
`import torch` alone.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import arg_parser

COMMANDS = [["--help"], ["plugins", "--json"], ["store", "path"], ["validate", "suites/quickstart.yaml"]]
HEAVY = ("torch", "transformers", "lmms_eval", "duckdb")

PROBE = """
import sys, runpy
sys.argv = ['harness', *{args!r}]
try:
    runpy.run_module('harness.cli', run_name='__main__')
except SystemExit:
    pass
sys.stderr.write('\\nHEAVY=' + ','.join(m for m in {heavy!r} if m in sys.modules))
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - start, proc.stderr


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for command in COMMANDS:
        code = PROBE.format(args=command, heavy=HEAVY)
        runs = [timed([sys.executable, "-c", code]) for _ in range(args.repeat)]
        heavy = runs[-1][1].rsplit("HEAVY=", 1)[-1].strip()
        print(json.dumps({"command": "harness " + " ".join(command),
                          "median_s": round(statistics.median(t for t, _ in runs), 3),
                          "heavy_modules_imported": heavy.split(",") if heavy else []}))
    torch_runs = [timed([sys.executable, "-c", "import torch"])[0] for _ in range(args.repeat)]
    print(json.dumps({"command": "python -c 'import torch' (for scale)",
                      "median_s": round(statistics.median(torch_runs), 3)}))


if __name__ == "__main__":
    main()
