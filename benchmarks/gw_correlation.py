"""Does Gromov-Wasserstein distance rank candidates the way training does? GW vs a stored grid.

    python -m benchmarks.gw_correlation [--store bench/testbed.duckdb] [--suite suites/minizoo.yaml]
                                        [--grid-suite testbed-grid | --grid-run RUN_ID]
                                        [--tasks shapes:color ...] [--samples 256] [--exact]
                                        [--epsilon 0.05] [--work-store PATH]

The grid is the latest finished run named ``--grid-suite`` (default ``testbed-grid``, written by
benchmarks/testbed_report.py) or ``--grid-run``; its ``rankings`` rows give (task, encoder, llm,
score) for every task. For each task, the GW distance of every candidate of the suite's zoo is
computed on that task's train images and paired texts by the ``gw-prescreen`` strategy's own
code (:meth:`GWPrescreen.gw_values`, embeddings and values cached in ``--work-store``, default
the grid's store). Nothing is trained. Prints one JSON line per task: Spearman and Kendall tau
between -GW and the grid's score, top-1 match and NDCG@5 of the GW ranking, the grid's and GW's
best candidates; then a summary line with the means over tasks.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (add_suite, add_testbed_store, arg_parser, grid_scores, latest_run, pair,
                               spearman, tau)


def _finite(value) -> float | None:
    """None (JSON null) for NaN: correlations are undefined when a grid ties everywhere."""
    value = float(value)
    return value if math.isfinite(value) else None


def agreement(grid: dict, gw: dict) -> dict:
    """Rank agreement of GW (lower is better) with the grid's scores over their common candidates."""
    from harness.strategies.gw_prescreen import gw_order

    from harness.measures import kendall_tau, ndcg_at, top1_match

    common = sorted(c for c in grid if c in gw and not math.isnan(gw[c]))
    scores = [grid[c] for c in common]
    closeness = [-gw[c] for c in common]
    ranking = [tuple(c) for c in gw_order({c: gw[c] for c in common})]
    subgrid = {c: grid[c] for c in common}
    return {"candidates": len(common),
            "spearman": _finite(spearman(closeness, scores)),
            "kendall": _finite(tau(closeness, scores)),
            "kendall_grid_top10": _finite(kendall_tau(subgrid, ranking, top=10)),
            "top1": top1_match(subgrid, ranking),
            "ndcg_at_5": ndcg_at(subgrid, ranking, k=5),
            "grid_best": pair(max(common, key=lambda c: (grid[c], c)), " + ", shorten=False),
            "gw_best": pair(ranking[0], " + ", shorten=False)}


def main() -> None:
    parser = arg_parser(__doc__)
    add_testbed_store(parser)
    add_suite(parser)
    parser.add_argument("--grid-suite", default="testbed-grid", help="suite_name of the grid run")
    parser.add_argument("--grid-run", default=None, help="the grid run's id (overrides --grid-suite)")
    parser.add_argument("--tasks", nargs="+", default=None, help="default: every task the grid ranked")
    parser.add_argument("--samples", type=int, default=None, help="default: the suite's prescreen.samples")
    parser.add_argument("--exact", action="store_true", help="exact GW instead of entropic")
    parser.add_argument("--epsilon", type=float, default=None, help="default: the suite's prescreen.epsilon")
    parser.add_argument("--work-store", default=None,
                        help="store for the run, embeddings and GW values (default: --store)")
    args = parser.parse_args()

    import torch
    from harness.store import Store
    from harness.strategies.gw_prescreen import GWPrescreen

    from harness.suite import Target, load_suite

    torch.set_num_threads(2)
    suite = load_suite(args.suite)
    with Store.open(args.store, read_only=True) as store:
        grid_run = args.grid_run or latest_run(store, args.grid_suite)
        if grid_run is None:
            raise SystemExit(f"no finished run with suite_name {args.grid_suite!r} in {store.path}: run "
                             "benchmarks/testbed_report.py first, or pass --grid-run / --grid-suite")
        grid = grid_scores(store, grid_run)
    tasks = args.tasks or [t for t in grid if not t.startswith("mean(")]
    missing = [t for t in tasks if t not in grid]
    if missing:
        raise SystemExit(f"grid run {grid_run} ranked no {', '.join(missing)}; it ranked {sorted(grid)}")

    prescreen = {**suite.search.options, **{
        k: v for k, v in {"samples": args.samples, "epsilon": args.epsilon,
                          "entropic": False if args.exact else None}.items() if v is not None}}
    options = GWPrescreen.Options.model_validate(prescreen)  # the options the strategy reads
    results = []
    with Store.open(args.work_store or args.store, wait=60) as store:
        run_id = store.start_run(suite_name="gw-correlation", strategy="gw-prescreen",
                                 seed=suite.seed, config={"grid_run": grid_run, "tasks": tasks,
                                                          **options.model_dump(mode="json")},
                                 plugin="benchmarks.gw_correlation", plugin_version="1")
        try:
            for task in tasks:
                one = suite.model_copy(update={
                    "targets": [Target(task=task)],
                    "search": suite.search.model_copy(update={"strategy": "gw-prescreen",
                                                              "options": prescreen})})
                strategy = GWPrescreen(suite=one, store=store, run_id=run_id)
                start = time.perf_counter()
                gw = {tuple(c): v for c, v in strategy.gw_values(task).items()}
                row = {"task": task, "grid_run": grid_run, **agreement(grid[task], gw),
                       "samples": options.samples, "entropic": options.entropic,
                       "epsilon": options.epsilon if options.entropic else None,
                       "seconds": round(time.perf_counter() - start, 1)}
                results.append(row)
                print(json.dumps(row), flush=True)
        except KeyboardInterrupt:
            store.finish_run(run_id, "interrupted", error="interrupted by the user")
            raise
        except Exception as exc:
            store.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        store.finish_run(run_id, "done")

    def mean(key):
        values = [float(r[key]) for r in results if r[key] is not None]
        return sum(values) / len(values) if values else None

    print(json.dumps({"summary": True, "tasks": len(results),
                      **{f"mean_{k}": mean(k) for k in ("spearman", "kendall", "kendall_grid_top10",
                                                        "top1", "ndcg_at_5")}}))


if __name__ == "__main__":
    sys.exit(main())
