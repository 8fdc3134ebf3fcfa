"""Grid vs Mordal on the miniature pretrained zoo: speedup, top-1, weighted tau, NDCG@5.

    python -m benchmarks.search_efficiency [--suite suites/minizoo.yaml] [--store bench/testbed.duckdb]
                                           [--tasks shapes:color shapes:count shapes:digits]

The grid is the ``testbed-grid`` run of benchmarks/testbed_report.py in the same store (trained
here with --workers if missing). For each task, Mordal runs live in that store: a trial it needs
that the store already holds (from the grid, the multi-fidelity table or an earlier task) is
reused but charged at its original cost (``harness.report.run_cost``), so nothing it needs is
free; with ``--fresh`` it runs on an empty store of its own instead and trains everything.
Prints one JSON line per task. Compute is counted two ways: training samples (deterministic,
the headline; the LLM projector warm-up of the clustering phase included) and wall seconds
(trials + clustering phases; noisier: the grid's trials were trained by parallel workers and
include scoring six tasks).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import add_suite, add_testbed_store, arg_parser, trial_specs


def grid_reference(store, suite, task: str, workers: int) -> tuple[dict, float, int]:
    """{(enc, llm): score} at r = 1, and the grid's training cost (seconds, samples)."""
    from harness.parallel import run_many

    from harness.trial import run_trial

    run_id = store.start_run(suite_name="search-efficiency-grid", strategy="grid", ground_truth=True, seed=0,
                             plugin="benchmarks.search_efficiency", plugin_version="1")
    specs = trial_specs(suite, seed=0)
    run_many(specs, store, run_id, workers)
    scores, seconds, samples = {}, 0.0, 0
    for spec in specs:
        out = run_trial(spec, store, run_id)
        row = store.get_trial(out.key)
        seconds += row["wall_seconds"] or 0.0
        samples += row["samples_seen"] or 0
        scores[(spec.encoder, spec.llm)] = next(s.value for s in out.scores if s.task == task)
    store.finish_run(run_id, "done")
    return scores, seconds, samples


def main() -> None:
    parser = arg_parser(__doc__)
    add_suite(parser)
    add_testbed_store(parser)
    parser.add_argument("--tasks", nargs="+", default=["shapes:color", "shapes:count", "shapes:digits"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="run Mordal on an empty store per task")
    parser.add_argument("--mordal-store", default=None,
                        help="run Mordal in this store (shared by the tasks) instead of the grid's")
    parser.add_argument("--keep", default=None, help="with --fresh: folder to keep the per-task stores in")
    args = parser.parse_args()

    import torch
    from harness.store import Store

    from harness.measures import kendall_tau, ndcg_at, top1_match, weighted_tau
    from harness.report import run_cost
    from harness.runner import run_suite
    from harness.suite import load_suite

    torch.set_num_threads(2)
    suite = load_suite(args.suite)
    for task in args.tasks:
        with Store.open(args.store) as store:
            grid, grid_seconds, grid_samples = grid_reference(store, suite, task, args.workers)
        target = next(t for t in suite.targets if t.task == task)
        mordal = suite.model_copy(update={"targets": [target],
                                          "search": suite.search.model_copy(update={"strategy": "mordal"})})
        if args.fresh:
            folder = Path(args.keep or tempfile.mkdtemp(prefix="mordal-"))
            where = folder / f"{task.replace(':', '-')}.duckdb"
        else:
            where = Path(args.mordal_store or args.store)
        start = time.perf_counter()
        run_suite(mordal, Path(args.suite), where)
        wall = time.perf_counter() - start
        with Store.open(where, read_only=True) as st:
            run_id = st.query("select run_id from runs order by started_at desc limit 1")[0]["run_id"]
            cost = run_cost(st, run_id)
            order = [(r["encoder"], r["llm"]) for r in
                     st.query("select encoder, llm from rankings where run_id = ? order by rank", [run_id])]
            warm = st.query("select coalesce(sum(samples_seen), 0) as n from phase_costs where run_id = ?",
                            [run_id])[0]["n"]
        mordal_samples = cost.samples_seen + int(warm)
        best = max(grid, key=grid.get)
        print(json.dumps({
            "task": task, "candidates": len(grid),
            "speedup": round(grid_samples / max(mordal_samples, 1), 2),
            "speedup_wall": round(grid_seconds / max(cost.total_seconds, 1e-9), 2),
            "grid_samples": grid_samples, "mordal_samples": mordal_samples,
            "grid_seconds": round(grid_seconds, 1), "mordal_seconds": round(cost.total_seconds, 1),
            "mordal_run_wall": round(wall, 1), "mordal_trials": cost.trials,
            "top1": top1_match(grid, order), "grid_best": list(best), "grid_best_score": round(grid[best], 4),
            "mordal_best": list(order[0]), "mordal_best_grid_score": round(grid[order[0]], 4),
            "weighted_tau_top10": round(weighted_tau(grid, order, 10), 3),
            "kendall_tau_top10": round(kendall_tau(grid, order, 10), 3),
            "ndcg_at_5": round(ndcg_at(grid, order, 5), 3),
        }), flush=True)


if __name__ == "__main__":
    main()
