"""Where a search lost the grid's top-1, read from the rungs it stored: no training.

    python -m benchmarks.why_missed                                   # the suite's own configuration
    python -m benchmarks.why_missed --seeds 0 1 2 --config '{"inter": {"uninformative": 0.5}}'
    python -m benchmarks.why_missed --tasks shapes:count --all        # every task, found or not

Each (task, seed) is replayed on the shipped table (benchmarks/tables/minizoo, the sources of
benchmarks/strategy_table.py) with the suite's search section changed by ``--config`` (JSON, merged
one level deep, as in benchmarks/mordal_sweep.py). For a replay that missed the grid's top-1 g,
one paragraph says:

* the ground truth around g: its mean score over the table's seeds at r = 1 with the SE of that
  mean, the pick's, and how many of the suite's candidates are within 1 SE of g (a near-tie no
  search can be expected to break);
* where g was lost: the inter-cluster stage (the representative that stood for g's cluster, its
  score and standard error at the rung where it was cut, the cut line, and how many candidates
  of that rung sat within 2 SE of the task's constant-answer baseline), the intra-cluster stage
  (g's own score at its last rung against the cut line), or the final choice (g survived and
  another survivor's measured or predicted score was higher);
* how much rank information each lower ratio carried on this task and seed: Kendall tau between
  the scores of the suite's candidates at that ratio and the ground truth.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import Bench, add_replay_args, arg_parser, ground_truth, pair, tau


def one(st, sql: str, params: list) -> dict | None:
    rows = st.query(sql, params)
    return rows[0] if rows else None


def kendall_by_ratio(st, task: str, seed: int, truth: dict) -> dict[float, float]:
    """Kendall tau between the suite's candidates' scores at each lower ratio and the ground truth."""
    out = {}
    for ratio in (0.0625, 0.125, 0.25, 0.5):
        rows = st.query("""select t.encoder, t.llm, s.value from trials t join scores s using (trial_key)
                           where s.task = ? and t.seed = ? and t.sample_ratio = ? and t.status = 'done'
                             and t.continued_from is null""", [task, seed, ratio])
        pairs = [(r["value"], truth[(r["encoder"], r["llm"])][0]) for r in rows if (r["encoder"], r["llm"]) in truth]
        if len(pairs) > 2:
            out[ratio] = tau(*zip(*pairs))
    return out


def cluster_of(st, run_id: str, candidate: tuple) -> tuple[list[str], list[str]]:
    """The encoders of ``candidate``'s encoder cluster and the LLMs of its LLM cluster (within
    that encoder cluster), as the run clustered them; the candidate alone when it did not."""
    enc, llm = candidate
    row = one(st, "select cluster_id from clusters where run_id = ? and level = 'encoder' and member = ?",
              [run_id, enc])
    if row is None:
        return [enc], [llm]
    encoders = [r["member"] for r in st.query(
        "select member from clusters where run_id = ? and level = 'encoder' and cluster_id = ?",
        [run_id, row["cluster_id"]])]
    medoid = one(st, "select member from clusters where run_id = ? and level = 'encoder' and cluster_id = ?"
                 " and is_medoid", [run_id, row["cluster_id"]])
    context = medoid["member"] if medoid else enc
    lrow = one(st, "select cluster_id from clusters where run_id = ? and level = 'llm' and context = ? and member = ?",
               [run_id, context, llm])
    if lrow is None:
        return encoders, [llm]
    llms = [r["member"] for r in st.query(
        "select member from clusters where run_id = ? and level = 'llm' and context = ? and cluster_id = ?",
        [run_id, context, lrow["cluster_id"]])]
    return encoders, llms


def fate(st, run_id: str, task: str, g: tuple, baseline: float | None) -> str:
    """Where ``g`` (or the representative of its cluster) left the search."""
    rungs = st.query("""select phase, rung, encoder, llm, sample_ratio, score, error, kept, note from rungs
                        where run_id = ? and (task = ? or task is null)""", [run_id, task])

    def cut_line(phase, rung):
        kept = [r["score"] for r in rungs if r["phase"] == phase and r["rung"] == rung and r["kept"]]
        return min(kept) if kept else float("nan")

    def at_base(phase, rung):
        same = [r for r in rungs if r["phase"] == phase and r["rung"] == rung]
        if baseline is None:
            return ""
        n = sum(r["score"] <= baseline + 2 * (r["error"] or 0.0) for r in same)
        return f"; {n} of {len(same)} within 2 SE of the constant-answer baseline {baseline:.3f}"

    def describe(r, phase_name):
        note = f" ({r['note']})" if r["note"] else ""
        return (f"{phase_name} rung {r['rung']} (r = {r['sample_ratio']:g}): {pair((r['encoder'], r['llm']))} "
                f"scored {r['score']:.3f} +- {r['error'] or 0:.3f}, cut line {cut_line(r['phase'], r['rung']):.3f}"
                f"{at_base(r['phase'], r['rung'])}{note}")

    own = [r for r in rungs if r["phase"] == "intra" and (r["encoder"], r["llm"]) == g]
    if own:
        last = max(own, key=lambda r: r["rung"])
        if not last["kept"]:
            return "lost in the intra-cluster stage at " + describe(last, "intra")
        return f"survived every intra rung ({describe(last, 'intra')}); lost at the final choice"
    encoders, llms = cluster_of(st, run_id, g)
    reps = [r for r in rungs if r["phase"] == "inter" and r["encoder"] in encoders and r["llm"] in llms]
    if not reps:
        return "its cluster was never looked at"
    top_rung = max(r["rung"] for r in reps)
    last = max((r for r in reps if r["rung"] == top_rung), key=lambda r: r["score"])
    if not any(r["kept"] for r in reps if r["rung"] == top_rung):
        return (f"its cluster ({len(encoders)} encoder(s) x {len(llms)} LLM(s)) was cut in the inter-cluster "
                f"stage at " + describe(last, "inter"))
    return (f"its cluster survived the inter-cluster stage ({describe(last, 'inter')}) but g itself was "
            "never trained in the intra stage")


def main() -> int:
    parser = arg_parser(__doc__)
    add_replay_args(parser)
    parser.add_argument("--config", default="{}", help="the search-section changes as JSON")
    parser.add_argument("--all", action="store_true", help="describe every (task, seed), found or not")
    args = parser.parse_args()
    try:
        changes = json.loads(args.config)
    except json.JSONDecodeError as exc:
        parser.error(f"--config: not JSON ({exc}); e.g. --config '{{\"inter\": {{\"tie_z\": 1}}}}'")

    from harness.store import Store

    from harness.suite import load_suite

    suite = load_suite(args.suite)
    candidates = [(e, m) for e in suite.zoo.vision_encoders for m in suite.zoo.language_models]
    bench = Bench(args.table, args.store, suite)
    missed = 0
    try:
        for seed in args.seeds:
            for task in args.tasks:
                row = bench.replay(suite, Path(args.suite), changes, task, seed, fill=False)
                if "error" in row:
                    print(f"{task} seed {seed}: not replayable: {row['error']}")
                    continue
                missed += not row["top1"]
                if row["top1"] and not args.all:
                    continue
                with Store.open(bench.path, read_only=True) as st:
                    truth = ground_truth(st, task, candidates)
                    g, pick = tuple(row["grid_best"]), tuple(row["best"])
                    (gm, gs), (pm, ps) = truth[g], truth[pick]
                    near = [c for c in truth if c != g and gm - truth[c][0] <= math.hypot(gs, truth[c][1])]
                    base = one(st, "select value from task_baselines where task = ? limit 1", [task])
                    taus = kendall_by_ratio(st, task, seed, truth)
                    where = "found" if row["top1"] else fate(st, row["run"], task, g, base and base["value"])
                gap = (gm - pm) / math.hypot(gs, ps) if math.hypot(gs, ps) > 0 else float("inf")
                print(f"{task} seed {seed}: {'found' if row['top1'] else 'MISSED'} {pair(g)} "
                      f"({gm:.3f} +- {gs:.3f} over seeds at r = 1); pick {pair(pick)} ({pm:.3f} +- {ps:.3f}, "
                      f"{gap:.1f} SE below); {len(near)} other candidate(s) within 1 SE of the top-1"
                      f"{' (' + ', '.join(pair(c) for c in near[:4]) + ')' if near else ''}")
                if not row["top1"]:
                    print(f"    {where}")
                print("    Kendall tau with the ground truth at r = " +
                      ", ".join(f"{r:g}: {t:.2f}" for r, t in taus.items()))
    finally:
        bench.close()
    print(f"missed {missed} of {len(args.seeds) * len(args.tasks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
