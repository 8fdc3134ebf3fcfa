"""Every registered strategy, replayed on the shipped benchmark of record: one table.

    python -m benchmarks.strategy_table [--table benchmarks/tables/minizoo] [--suite suites/minizoo.yaml]
                                        [--tasks shapes:color ...] [--seeds 0 1 2] [--fill] [--with-dcd]
    python -m benchmarks.strategy_table --store bench/testbed.duckdb   # a testbed_report store

By default the shipped table (benchmarks/tables/minizoo: every candidate of the mini zoo at
r = 1/16 .. 1, every task) is imported into a scratch store and each strategy, and Mordal with
each registered stopping policy and predictor, is run on it by replay (``harness replay``): a
trial the table holds is looked up and charged at its original cost; clustering features it
lacks are computed (seconds); a trial it lacks makes the strategy "not replayable" unless
``--fill`` trains it. Each replay is judged against the grid ``harness replay`` judges it against
(``harness.answer.judging_grid``): the table's grid of the same seed, over the suite's own
candidates, whose ground truth is the mean over the table's seeds at r = 1. With ``--store`` the
sources are the latest ``testbed-grid`` run of benchmarks/testbed_report.py, its grid (plus its
``testbed-fidelities`` run, and with ``--with-searches`` the suite's live Mordal runs).
Per strategy and task: trials, training samples, speedup vs the grid in samples, top-1,
weighted tau over the grid's top-10, NDCG@5. JSON lines, then a table.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import Bench, add_replay_args, arg_parser


def variants(components) -> list[tuple[str, dict]]:
    """(label, search-section changes): each strategy, and Mordal with each policy and predictor."""
    out = []
    for name in sorted(components["search_strategy"].names()):
        out.append((name, {"strategy": name}))
    for policy in sorted(components["stopping_policy"].names()):
        if policy not in ("sha", "none"):
            out.append((f"mordal+{policy}", {"strategy": "mordal", "inter": {"policy": policy},
                                            "intra": {"policy": policy}}))
    for predictor in sorted(components["predictor"].names()):
        if predictor != "loglinear":
            out.append((f"mordal+{predictor}", {"strategy": "mordal", "predictor": {"name": predictor}}))
    out.append(("mordal-no-clustering", {"strategy": "mordal", "clustering": {"enabled": False}}))
    out.append(("mordal-no-early-stop", {"strategy": "mordal", "early_stopping": False}))
    out.append(("mordal-no-prediction", {"strategy": "mordal", "predictor": {"enabled": False}}))
    return out


def main() -> None:
    parser = arg_parser(__doc__)
    add_replay_args(parser, ["shapes:color"],
                    "target tasks (default one: about a minute on 2 cores; about 35 s a task more)")
    parser.add_argument("--only", nargs="*", default=None, help="labels of the variants to run")
    parser.add_argument("--fill", action="store_true",
                        help="train what the source lacks (default: report it as not replayable; "
                             "clustering features are always computed when missing)")
    parser.add_argument("--with-dcd", action="store_true",
                        help="also replay dcd (layer conductance for every candidate: about 2 minutes "
                             "a task on 2 cores; python -m benchmarks.dcd_holdout measures it held out)")
    parser.add_argument("--with-searches", action="store_true",
                        help="with --store: also replay from the live Mordal runs of this suite "
                             "(python -m benchmarks.search_efficiency)")
    args = parser.parse_args()

    import torch

    from harness.plugin_manager import get_components
    from harness.suite import load_suite

    torch.set_num_threads(2)
    suite = load_suite(args.suite)
    bench = Bench(args.table, args.store, suite, args.with_searches)
    rows = []
    try:
        for label, changes in variants(get_components()):
            if args.only and label not in args.only or (label == "dcd" and not args.with_dcd
                                                        and not args.only):
                continue
            for seed in args.seeds:
                for task in args.tasks:
                    rows.append(bench.emit({"strategy": label, "task": task, "seed": seed},
                                           suite, Path(args.suite), changes, args.fill))
    finally:
        bench.close()

    print(f"\nreplayed on the {bench.label}; configurations as registered, not tuned on these tasks")
    print(f"{'strategy':<24}{'task':<15}{'seed':>5}{'trials':>7}{'filled':>7}{'samples':>10}{'speedup':>9}"
          f"{'top-1':>7}{'w.tau':>8}{'NDCG@5':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['strategy']:<24}{r['task']:<15}{r['seed']:>5}  not replayable: {r['error'][:70]}")
            continue
        print(f"{r['strategy']:<24}{r['task']:<15}{r['seed']:>5}{r['trials']:>7}{r['filled']:>7}{r['samples']:>10}"
              f"{r['speedup']:>8}x{('yes' if r['top1'] else 'no'):>7}{r['weighted_tau']:>8.3f}"
              f"{r['ndcg5']:>8.3f}")


if __name__ == "__main__":
    sys.exit(main())
