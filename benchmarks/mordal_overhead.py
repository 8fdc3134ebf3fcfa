"""Where Mordal's own time goes, outside training: a replay on the shipped table trains nothing,
so its wall time is the driver's overhead (component loading for fingerprints, clustering from
stored similarities, policy decisions, store writes). Profiled with cProfile.

    python -m benchmarks.mordal_overhead [--task shapes:color] [--top 25]
"""

import cProfile
import pstats
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import Bench, add_suite, add_table, arg_parser


def main() -> None:
    parser = arg_parser(__doc__)
    add_suite(parser)
    add_table(parser)
    parser.add_argument("--task", default="shapes:color")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    from harness.suite import load_suite

    suite = load_suite(args.suite)
    bench = Bench(args.table, None, suite)
    try:
        bench.replay(suite, Path(args.suite), {}, "shapes:digits", 0, fill=False)  # imports, caches
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        row = bench.replay(suite, Path(args.suite), {}, args.task, 0, fill=False)
        profile.disable()
        wall = time.perf_counter() - start
    finally:
        bench.close()
    stats = pstats.Stats(profile)
    by_name = {f"{Path(f).name}:{name}": ct for (f, _, name), (_, _, _, ct, _) in stats.stats.items()}
    parts = {"loading components (fingerprints)": by_name.get("trial.py:load_component", 0.0),
             "store inserts (rows, uses)": by_name.get("connection.py:insert", 0.0),
             "similarities (read from the store)": by_name.get("mordal.py:_similarities", 0.0),
             "policy decisions (drive, scores included)": sum(v for k, v in by_name.items()
                                                              if k == "policies.py:drive")}
    print(f"replay of {Path(args.suite).name} on {args.task}: {row.get('trials')} trials answered from the "
          f"table, {wall:.1f} s of driver time")
    for label, seconds in parts.items():
        print(f"  {label:<45} {seconds:6.2f} s  ({100 * seconds / wall:.0f}%)")
    stats.sort_stats("cumtime").print_stats(args.top)


if __name__ == "__main__":
    main()
