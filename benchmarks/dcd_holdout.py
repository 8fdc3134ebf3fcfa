"""Leave-one-task-out evaluation of strategy dcd against a uniform average over past tasks.

    python -m benchmarks.dcd_holdout [--suite suites/minizoo.yaml] [--store bench/testbed.duckdb]
                                     [--tasks shapes:color shapes:count ...] [--neighbours 2]
                                     [--examples 32]

Needs a store where the suite's candidates were trained at r = 1 and scored on the tasks (the
grid of benchmarks/testbed_report.py). Each task in turn is the target: its ranking is predicted
from the other tasks' stored scores, weighted by Directional Conductance Divergence per encoder,
and compared with its measured scores (NDCG@5, Kendall tau-b over every candidate); the baseline
ranks by the plain mean over all other tasks. Nothing trains; conductance profiles and
divergences are stored, so a rerun only reads. Prints one JSON line per held-out task and a
final line with the means.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import add_suite, add_testbed_store, arg_parser


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__)
    add_suite(parser)
    add_testbed_store(parser)
    parser.add_argument("--tasks", nargs="+", default=None,
                        help="tasks to hold out in turn (default: every task scored in the store)")
    parser.add_argument("--neighbours", type=int, default=None,
                        help="past tasks used per prediction (default: the suite's transfer.neighbours)")
    parser.add_argument("--examples", type=int, default=None,
                        help="examples per task for conductance (default: the suite's transfer.examples)")
    args = parser.parse_args(argv)

    from harness.store import Store
    from harness.strategies.dcd import holdout_evaluation

    from harness.suite import load_suite

    suite = load_suite(args.suite)
    transfer = {k: v for k, v in (("neighbours", args.neighbours), ("examples", args.examples))
                if v is not None}
    if transfer:
        search = suite.search.model_copy(update={"options": {**suite.search.options, **transfer}})
        suite = suite.model_copy(update={"search": search})
    with Store.open(args.store, wait=60) as store:
        rows = holdout_evaluation(store, suite, args.tasks)
    for row in rows:
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k.endswith(("ndcg_at_5", "kendall_tau"))] if rows else []
    mean = {"task": "mean", "tasks": len(rows)}
    for key in keys:
        values = [r[key] for r in rows if not math.isnan(r[key])]
        mean[key] = sum(values) / len(values) if values else float("nan")
    print(json.dumps(mean))
    return 0


if __name__ == "__main__":
    sys.exit(main())
