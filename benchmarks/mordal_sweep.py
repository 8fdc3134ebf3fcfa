"""Mordal's hyperparameters swept by replay on the shipped benchmark of record: no training.

    python -m benchmarks.mordal_sweep                       # the suite's own configuration, 6 tasks
    python -m benchmarks.mordal_sweep --all --loto          # every configuration, leave-one-task-out
    python -m benchmarks.mordal_sweep [--table DIR | --store bench/testbed.duckdb] [--seeds 0 1 2]
        [--suite suites/minizoo.yaml] [--tasks shapes:color ...] [--config 'LABEL={"intra": {...}}' ...]

The sources are those of benchmarks/strategy_table.py: by default the shipped table
(benchmarks/tables/minizoo, every mini-zoo candidate at r = 1/16, 1/8, 1/4, 1/2 and 1) imported
into a scratch store. Each configuration (changes to the suite's ``search`` section, merged one
level deep) is replayed on every task and seed, never training (clustering features a task
lacks are computed): a configuration that needs a trial the table lacks is reported as not
replayable. Each replay is judged against the table's grid of its seed over the suite's own
candidates (ground truth: the mean over the table's seeds at r = 1). Prints a JSON line per
(configuration, seed, task), then per configuration: tasks with top-1 found, the least and mean
speedup in training samples (grid / search; projector warm-ups included, every trial and warm-up
at its original price), the mean speedup in seconds, mean weighted tau over the grid's top-10,
mean NDCG@5.

Every figure of a configuration run on all tasks is **in-sample**: the configuration was chosen
(by a person, or by this sweep) on the same grid and tasks. ``--loto`` is the held-out protocol:
for each task, the configuration is chosen on the other tasks (most top-1 hits, then the highest
mean NDCG@5, then the highest mean speedup) and reported on the held-out one; the summary row
"leave-one-task-out" is the figure to quote. With several seeds, the pooled row chooses on the other
tasks of every seed and reports the held-out task in every seed.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import Bench, add_replay_args, arg_parser

# the paper's plain cuts (ties broken by name, no rung judged uninformative): the suite spells
# out the schema's noise-aware default (uninformative 0.5), so configurations of plain Mordal
# turn it off
PLAIN = {"inter": {"uninformative": None}, "intra": {"uninformative": None}}


def plain(changes: dict) -> dict:
    """``changes`` on top of the plain cuts (merged one level deep, as the replays merge them)."""
    out = {key: dict(value) for key, value in PLAIN.items()}
    for key, value in changes.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


CONFIGS = {
    # the suite's own: floors t_ve 0.75 / t_llm 0.8; inter and intra SHA eta 4 from 1/16, top-1;
    # prediction from 1/4 and 1/8; a rung where half the candidates sit within 2 SE of the
    # constant-answer score promotes everyone (uninformative 0.5, the schema's default)
    "suite": {},
    "plain cuts (the paper's)": PLAIN,
    "top-2 clusters": plain({"inter": {"top_k": 2}}),
    # a floor of 0.2: one LLM cluster per encoder family
    "t_llm floor 0.2, top-2 clusters": plain({
        "clustering": {"t_llm": 0.2}, "inter": {"top_k": 2}}),
    "t_llm floor 0.2, top-1 cluster from 1/8 (eta 2)": plain({
        "clustering": {"t_llm": 0.2}, "inter": {"eta": 2, "min_ratio": 0.125}}),
    "paper floors 0.7 / 0.8": plain({"clustering": {"t_ve": 0.7, "t_llm": 0.8}}),
    "inter from 1/8 (eta 2), top-2 clusters": plain({"inter": {"eta": 2, "min_ratio": 0.125, "top_k": 2}}),
    "minibatch CKA (batch 64)": plain({"clustering": {"cka_batch": 64}}),
    # noise-aware cuts (issue 13): keep candidates tied with the last kept within z SE; promote
    # everyone at a rung where half the candidates sit at the constant-answer baseline
    "ties within 1 SE": plain({"inter": {"tie_z": 1}, "intra": {"tie_z": 1}}),
    "ties within 2 SE": plain({"inter": {"tie_z": 2}, "intra": {"tie_z": 2}}),
    "ties within 1 SE, uninformative 0.5": {"inter": {"tie_z": 1, "uninformative": 0.5},
                                            "intra": {"tie_z": 1, "uninformative": 0.5}},
    # clusters judged by their medoid and their farthest member (clustering.representatives)
    "2 representatives": plain({"clustering": {"representatives": 2}}),
    # the candidates below the survivors by estimated full-data score (search.rank_below)
    "rank below by estimate": plain({"rank_below": "estimate"}),
    # two survivors; those whose prediction intervals overlap the leader's measured at r = 1
    "top-2 clusters, intra top-2, confirm 2": plain({"inter": {"top_k": 2}, "intra": {"top_k": 2},
                                                     "predictor": {"confirm": 2}}),
    "ties 1 SE, uninformative 0.5, 2 representatives": {
        "inter": {"tie_z": 1, "uninformative": 0.5}, "intra": {"tie_z": 1, "uninformative": 0.5},
        "clustering": {"representatives": 2}},
    # cheaper noise-aware variants: only the inter-cluster stage is noise-aware
    "inter ties 1 SE, uninformative 0.5": {"inter": {"tie_z": 1, "uninformative": 0.5},
                                           "intra": {"uninformative": None}},
    "ties 1 SE, uninformative 0.5, rank below by estimate": {
        "inter": {"tie_z": 1, "uninformative": 0.5}, "intra": {"tie_z": 1, "uninformative": 0.5},
        "rank_below": "estimate"},
    "ties 1 SE, uninformative 0.7": {"inter": {"tie_z": 1, "uninformative": 0.7},
                                     "intra": {"tie_z": 1, "uninformative": 0.7}},
}



def summarize(rows: list[dict]) -> dict | None:
    ok = [r for r in rows if "error" not in r]
    if not ok or len(ok) < len(rows):
        return None
    return {"n": len(ok), "top1": sum(r["top1"] for r in ok),
            "tied": sum(r.get("top1_within_1se", r["top1"]) for r in ok),
            "min_speedup": min(r["speedup"] for r in ok),
            "speedup": statistics.mean(r["speedup"] for r in ok),
            "speedup_seconds": statistics.mean(r["speedup_seconds"] for r in ok),
            "weighted_tau": statistics.mean(r["weighted_tau"] for r in ok),
            "ndcg5": statistics.mean(r["ndcg5"] for r in ok)}


def choose(by_config: dict[str, list[dict]], tasks: set[str]) -> str | None:
    """The configuration with the most top-1 hits on ``tasks``, then mean NDCG@5, then speedup."""
    scored = []
    for label, rows in by_config.items():
        s = summarize([r for r in rows if r["task"] in tasks])
        if s is not None:
            scored.append(((s["top1"] / s["n"], s["ndcg5"], s["speedup"]), label))
    return max(scored)[1] if scored else None


def held_out(by_config: dict[str, list[dict]], tasks: list[str]) -> list[dict]:
    """Leave-one-task-out: for each task, the rows of the configuration chosen on the other tasks
    (all of its rows on that task: one per seed when ``by_config`` pools seeds), marked "chosen"."""
    held = []
    for task in tasks:
        label = choose(by_config, set(tasks) - {task})
        if label is not None:
            held.extend({**r, "chosen": label} for r in by_config[label] if r["task"] == task)
    return held


def line(label: str, s: dict | None, note: str = "") -> str:
    if s is None:
        return f"{label:<50} not replayable on every task{note}"
    return (f"{label:<50}{s['top1']:>3}/{s['n']:<3}{s['tied']:>4}/{s['n']:<3}{s['min_speedup']:>8.1f}x{s['speedup']:>7.1f}x"
            f"{s['speedup_seconds']:>7.1f}x{s['weighted_tau']:>8.3f}{s['ndcg5']:>8.3f}{note}")


def main() -> int:
    parser = arg_parser(__doc__)
    add_replay_args(parser)
    parser.add_argument("--all", action="store_true", help="every built-in configuration, not only the suite's")
    parser.add_argument("--loto", action="store_true",
                        help="leave-one-task-out: choose the configuration on the other tasks, report it on each")
    parser.add_argument("--config", action="append", default=None, metavar='LABEL=JSON',
                        help="a configuration: its label, '=', the search-section changes as JSON")
    parser.add_argument("--rows", type=Path, nargs="+", default=None, metavar="FILE",
                        help="replay nothing: summarize the JSON rows earlier sweeps printed (several "
                             "files, e.g. one per seed run side by side, are pooled; --tasks and "
                             "--config labels filter them)")
    args = parser.parse_args()
    if args.rows:
        return summarize_rows(args)

    import torch

    from harness.suite import load_suite

    torch.set_num_threads(2)
    configs = dict(CONFIGS) if (args.all or args.loto) else {"suite": {}}
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
    bench = Bench(args.table, args.store, suite, with_searches=args.store is not None)
    by_seed: dict[int, dict[str, list[dict]]] = {}
    try:
        for seed in args.seeds:
            for label, changes in configs.items():
                rows = by_seed.setdefault(seed, {}).setdefault(label, [])
                for task in args.tasks:
                    rows.append(bench.emit({"config": label, "seed": seed, "task": task},
                                           suite, Path(args.suite), changes))
    finally:
        bench.close()

    print(f"\nreplayed on the {bench.label}; every row below but leave-one-task-out is in-sample")
    report(by_seed, args)
    return 0


def summarize_rows(args) -> int:
    """``--rows``: the summary of rows printed by earlier sweeps, read back instead of replayed."""
    labels = {item.partition("=")[0] for item in args.config} if args.config else None
    by_seed: dict[int, dict[str, list[dict]]] = {}
    seen = set()
    for path in args.rows:
        if not path.is_file():
            print(f"--rows: no file {path}", file=sys.stderr)
            return 2
        for n, text in enumerate(path.read_text().splitlines(), 1):
            if not text.startswith("{"):
                continue  # a summary line of the sweep that printed the rows
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                print(f"{path}:{n}: not a JSON row ({exc})", file=sys.stderr)
                return 2
            key = (row.get("config"), row.get("seed"), row.get("task"))
            if None in key or row["task"] not in args.tasks or (labels and row["config"] not in labels) \
                    or key in seen:
                continue
            seen.add(key)
            by_seed.setdefault(row["seed"], {}).setdefault(row["config"], []).append(row)
    if not by_seed:
        print(f"--rows: no rows of the tasks {args.tasks} in {', '.join(map(str, args.rows))}", file=sys.stderr)
        return 2
    print(f"summarized from {len(seen)} rows of {', '.join(map(str, args.rows))}; "
          "every row below but leave-one-task-out is in-sample")
    report(dict(sorted(by_seed.items())), args)
    return 0


def report(by_seed: dict[int, dict[str, list[dict]]], args) -> None:
    print(f"{'configuration':<50}{'top-1':>6}{'<1 SE':>8}{'min spd':>10}{'mean':>8}{'secs':>8}{'w.tau':>8}{'NDCG@5':>8}")
    for seed, by_config in by_seed.items():
        print(f"seed {seed}")
        for label, rows in by_config.items():
            print(line(label, summarize(rows)))
            if summarize(rows) is None:
                print("    " + next(r["error"] for r in rows if "error" in r)[:100])
        if args.loto and len(args.tasks) > 1:
            held = held_out(by_config, args.tasks)
            for r in held:
                print(f"    held out {r['task']:<16} chose {r['chosen']!r}: top-1 {'yes' if r['top1'] else 'no'}, "
                      f"{r['speedup']:.1f}x, w.tau {r['weighted_tau']:.3f}, NDCG@5 {r['ndcg5']:.3f}")
            print(line("leave-one-task-out (held-out figures)", summarize(held)))
    pooled: dict[str, list[dict]] = {}
    for by_config in by_seed.values():
        for label, rows in by_config.items():
            pooled.setdefault(label, []).extend(rows)
    if len(by_seed) > 1:  # one configuration for every task and seed (in-sample)
        print(f"seeds {', '.join(map(str, by_seed))} pooled")
        for label, rows in pooled.items():
            print(line(label, summarize(rows)))
    if args.loto and len(args.tasks) > 1 and len(by_seed) > 1:
        # one choice per held-out task, made on the other tasks of every seed, reported on the
        # held-out task in every seed: no seed world of the held-out task informs its choice
        held = held_out(pooled, args.tasks)
        for task in args.tasks:
            rows = [r for r in held if r["task"] == task]
            if rows:
                print(f"    held out {task:<16} (all seeds) chose {rows[0]['chosen']!r}: top-1 "
                      f"{sum(r['top1'] for r in rows)}/{len(rows)}")
        print(line(f"leave-one-task-out over seeds {', '.join(map(str, by_seed))}", summarize(held)))


if __name__ == "__main__":
    sys.exit(main())
