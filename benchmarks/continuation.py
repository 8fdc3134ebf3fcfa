"""What continuing survivors across rungs (``search.continuation``) saves, and what it changes.

    python -m benchmarks.continuation                      # accounting on the shipped table: seconds
    python -m benchmarks.continuation --train [--pairs 8]  # fidelity: real trials, ~15 min on 2 cores

**Accounting** (default; replays only): the suite's search is replayed on the shipped table for
every task and seed, and each replay's trials are charged twice: as trained (every trial from
scratch, the table's samples) and as a continued search would charge them for the same trials
(a candidate's trial at r, after its trial at a smaller r' in the same run, pays only
``samples(r) - samples(r')``). The decisions are the replay's: what continuation would change
in the scores, and so in the decisions, is the second part's question.

**Fidelity** (``--train``): continuation needs a constant learning rate, and the table's recipe
is cosine, so the same recipe with ``schedule: constant`` trains ``--pairs`` candidates of the
suite (spread over the table's ground-truth order) from scratch at r = 1/16, 1/8, 1/4 and as
the chain 1/16 -> 1/8 -> 1/4, scored on ``--tasks`` (500 test items each). It prints each
trial's score, samples and seconds, the mean absolute score difference continued vs fresh at
each ratio, and Kendall's tau between the two orders of the candidates at r = 1/4 (how far a
search that cut on continued scores would rank as one that cut on fresh ones).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import TASKS, Bench, add_suite, add_table, arg_parser, table_views, tau


def continued_samples(trials: list[dict]) -> int:
    """Samples of ``trials`` (encoder, llm, sample_ratio, samples) had each candidate's trials
    continued one another in ratio order: each pays what it adds to the one below it."""
    by_candidate: dict = {}
    for t in trials:
        by_candidate.setdefault((t["encoder"], t["llm"]), []).append(t)
    total = 0
    for chain in by_candidate.values():
        chain.sort(key=lambda t: t["sample_ratio"])
        before = 0
        for t in chain:
            total += max(0, int(t["samples"]) - before)
            before = int(t["samples"])
    return total


def accounting(args) -> None:
    from harness.store import Store

    from harness.suite import load_suite

    suite = load_suite(args.suite)
    bench = Bench(args.table, None, suite)
    rows = []
    try:
        for seed in args.seeds:
            for task in args.tasks:
                row = bench.replay(suite, Path(args.suite), {}, task, seed, fill=False)
                if "error" in row:
                    print(json.dumps({"task": task, "seed": seed, **row}), flush=True)
                    continue
                with Store.open(bench.path, read_only=True) as st:
                    trials = st.query(
                        "select t.encoder, t.llm, t.sample_ratio, coalesce(t.samples_seen, 0) as samples"
                        " from (select distinct key from run_uses where run_id = ? and kind = 'trial') u"
                        " join trials t on t.trial_key = u.key", [row["run"]])
                fresh = sum(int(t["samples"]) for t in trials)
                cont = continued_samples(trials)
                warm = row["warmup_samples"]
                grid = row["grid_samples"]
                out = {"task": task, "seed": seed, "trials": len(trials), "trial_samples": fresh,
                       "continued_trial_samples": cont, "warmup_samples": warm,
                       "search_samples": fresh + warm, "continued_search_samples": cont + warm,
                       "speedup": round(grid / (fresh + warm), 2),
                       "continued_speedup": round(grid / (cont + warm), 2), "top1": row["top1"]}
                rows.append(out)
                print(json.dumps(out), flush=True)
    finally:
        bench.close()
    if rows:
        saved = [1 - r["continued_search_samples"] / r["search_samples"] for r in rows]
        print(f"\n{len(rows)} replays of {Path(args.suite).name} on the {bench.label} (the same decisions):")
        print(f"  trial samples: fresh {sum(r['trial_samples'] for r in rows)}, continued "
              f"{sum(r['continued_trial_samples'] for r in rows)}")
        print(f"  a search's samples (warm-ups included) fall by {100 * statistics.mean(saved):.1f}% on "
              f"average ({100 * min(saved):.1f}-{100 * max(saved):.1f}%)")
        print(f"  speedup over the grid: mean {statistics.mean(r['speedup'] for r in rows):.2f}x fresh, "
              f"{statistics.mean(r['continued_speedup'] for r in rows):.2f}x continued")


def fidelity(args) -> None:
    import tempfile

    import torch
    from harness.store import Store

    from harness.scoring import Target
    from harness.suite import load_suite
    from harness.training import config_from_suite
    from harness.trial import TrialSpec, run_trial

    torch.set_num_threads(1)
    suite = load_suite(args.suite)
    config = config_from_suite(suite.vlm)
    import dataclasses

    config = dataclasses.replace(config, schedule="constant")
    pairs = spread_pairs(args.table, suite, args.pairs)
    targets = tuple(Target(t, limit=500) for t in args.tasks)
    ratios = (1 / 16, 1 / 8, 1 / 4)
    folder = Path(args.store_dir or tempfile.mkdtemp(prefix="harness-continuation-"))
    folder.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    with Store.open(folder / "continuation.duckdb") as store:
        run_id = store.start_run(suite_name="continuation-bench")
        for enc, llm in pairs:
            base = TrialSpec(encoder=enc, llm=llm, alignment=suite.alignment.dataset,
                             samples=suite.alignment.samples, train=config, seed=suite.seed,
                             targets=targets, device="cpu")
            for mode in ("fresh", "continued"):
                for i, r in enumerate(ratios):
                    after = ratios[:i] if mode == "continued" else ()
                    if mode == "continued" and i == 0:
                        results[(enc, llm, mode, r)] = results[(enc, llm, "fresh", r)]
                        continue
                    start = time.perf_counter()
                    out = run_trial(dataclasses.replace(base, ratio=r, after=after), store, run_id)
                    value = (statistics.mean(s.value for s in out.scores)
                             if out.status == "done" else float("nan"))
                    results[(enc, llm, mode, r)] = {"score": value, "samples": out.samples_seen,
                                                    "seconds": round(time.perf_counter() - start, 1)}
                    print(json.dumps({"encoder": enc, "llm": llm, "mode": mode, "ratio": r,
                                      **results[(enc, llm, mode, r)], "status": out.status}), flush=True)
    print(f"\n{len(pairs)} candidates, the suite's recipe with a constant learning rate, scored on "
          f"{', '.join(args.tasks)} (500 items each)")
    for r in ratios[1:]:
        diffs = [abs(results[(e, ll, "continued", r)]["score"] - results[(e, ll, "fresh", r)]["score"])
                 for e, ll in pairs]
        fresh = [results[(e, ll, "fresh", r)]["score"] for e, ll in pairs]
        cont = [results[(e, ll, "continued", r)]["score"] for e, ll in pairs]
        print(f"  r={r:g}: mean |continued - fresh| {statistics.mean(diffs):.3f} (max {max(diffs):.3f}); "
              f"mean score fresh {statistics.mean(fresh):.3f}, continued {statistics.mean(cont):.3f}; "
              f"Kendall tau fresh vs continued {tau(fresh, cont):.2f}")
    for mode in ("fresh", "continued"):
        samples = sum(results[(e, ll, mode, r)]["samples"] for e, ll in pairs for r in ratios)
        seconds = sum(results[(e, ll, mode, r)]["seconds"] for e, ll in pairs for r in ratios)
        print(f"  the three ratios, {mode}: {samples} samples, {seconds:.0f} s")


def spread_pairs(table: Path, suite, n: int) -> list[tuple[str, str]]:
    """``n`` of the suite's candidates spread evenly over the table's ground-truth order (mean
    over tasks at r = 1)."""
    con, _ = table_views(table)
    try:
        rows = con.execute(
            "select encoder, llm, avg(score) as s from rankings"
            " where stage = 'grid' and metric = 'mean over seeds' group by 1, 2 order by s desc, 1, 2").fetchall()
    finally:
        con.close()
    mine = {(c.vision_encoder, c.language_model) for c in suite.candidates()}
    ordered = [(e, ll) for e, ll, _ in rows if (e, ll) in mine]
    step = max(1, len(ordered) // n)
    return ordered[::step][:n]


def main() -> int:
    parser = arg_parser(__doc__)
    add_suite(parser)
    add_table(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--train", action="store_true", help="the fidelity measurement (trains)")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--store-dir", default=None, help="--train: keep the trials here (default: a temp folder)")
    args = parser.parse_args()
    if args.train:
        args.tasks = args.tasks or ["shapes:color", "shapes:digits"]
        fidelity(args)
    else:
        args.tasks = args.tasks or TASKS
        accounting(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
