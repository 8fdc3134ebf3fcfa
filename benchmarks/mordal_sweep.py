"""Mordal's hyperparameters swept by replay on a stored multi-fidelity grid: no training.

    python benchmarks/mordal_sweep.py [--store bench/testbed.duckdb] [--suite suites/minizoo.yaml]
                                      [--tasks shapes:color ...] [--config 'LABEL={"intra": {...}}' ...]

The sources are those of benchmarks/strategies.py: the latest ``testbed-grid`` run (every
candidate at r = 1) and ``testbed-fidelities`` run (every candidate at small ratios, from
``testbed_report.py --fidelities 0.0625 0.125 0.25``), plus the suite's live Mordal runs. Each
configuration (changes to the suite's ``search`` section, merged one level deep) is replayed
on every task, never training (clustering features and projector warm-ups are computed where a
task has none, ``--fill-embeddings``): a configuration that needs a trial the table lacks is
reported as not replayable with the trial it needs. Prints a JSON line per (configuration, task), then per
configuration: tasks with top-1 found, the least and mean speedup in training samples (grid /
search, warm-up included), mean weighted tau over the grid's top-10 and mean NDCG@5.

The default configurations are the suite's own and variations of its clustering and
inter-cluster stage that stay on the table's ratios (1/16, 1/8, 1/4 and 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

TASKS = ["shapes:color", "shapes:shape", "shapes:count", "shapes:spatial", "shapes:digits", "shapes:chart"]

CONFIGS = {
    # the suite's own (t_llm 0.2; inter and intra SHA eta 4 from 1/16, top-1; prediction from 1/4, 1/8)
    "suite": {},
    "top-2 clusters": {"inter": {"top_k": 2}},
    "t_llm 0.8 (one LLM cluster per encoder family), top-2 clusters": {
        "clustering": {"t_llm": 0.8}, "inter": {"top_k": 2}},
    "t_llm 0.8, top-1 cluster from 1/8 (eta 2)": {
        "clustering": {"t_llm": 0.8}, "inter": {"eta": 2, "min_ratio": 0.125}},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default=str(ROOT / "suites" / "minizoo.yaml"))
    parser.add_argument("--store", default=str(ROOT / "bench" / "testbed.duckdb"))
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--config", action="append", default=None, metavar='LABEL=JSON',
                        help="a configuration: its label, '=', the search-section changes as JSON")
    args = parser.parse_args()

    import torch
    from strategies import grid_sources, replay_row, with_search

    from harness.store import Store
    from harness.suite import load_suite

    torch.set_num_threads(2)
    configs = CONFIGS
    if args.config:
        configs = {}
        for item in args.config:
            label, sep, text = item.partition("=")
            if not sep:
                parser.error(f"--config {item!r}: expected LABEL=JSON")
            try:
                configs[label] = json.loads(text)
            except json.JSONDecodeError as exc:
                parser.error(f"--config {label!r}: the changes are not JSON ({exc}); e.g. "
                             '--config \'eta3={"intra": {"eta": 3}}\'')
    suite = load_suite(args.suite)
    with Store.open(args.store, read_only=True) as st:
        grid_run, sources = grid_sources(st, suite, with_searches=True)
    summary = []
    for label, changes in configs.items():
        rows = []
        for task in args.tasks:
            row = {"config": label, "task": task,
                   **replay_row(with_search(suite, task, changes), Path(args.suite), Path(args.store),
                                sources, grid_run, task, fill=False, fill_embeddings=True)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        ok = [r for r in rows if "error" not in r]
        if len(ok) < len(rows):
            summary.append(f"{label:<44} not replayable on {len(rows) - len(ok)} task(s): "
                           + next(r["error"] for r in rows if "error" in r)[:80])
            continue
        summary.append(f"{label:<44}{sum(r['top1'] for r in ok):>3}/{len(ok)}"
                       f"{min(r['speedup'] for r in ok):>9.1f}x{statistics.mean(r['speedup'] for r in ok):>8.1f}x"
                       f"{statistics.mean(r['weighted_tau'] for r in ok):>8.3f}"
                       f"{statistics.mean(r['ndcg5'] for r in ok):>8.3f}")
    print(f"\n{'configuration':<44}{'top-1':>6}{'min spd':>10}{'mean':>9}{'w.tau':>8}{'NDCG@5':>8}")
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
