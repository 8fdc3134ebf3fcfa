"""The test bed's ground truth: train the whole miniature grid and show it is a real one.

    python -m benchmarks.testbed_report [--suite suites/minizoo.yaml] [--store bench/testbed.duckdb]
                                        [--workers 2] [--seeds 3] [--top 3]
    python -m benchmarks.testbed_report --table benchmarks/tables/minizoo   # the shipped table: seconds

Trains every candidate of the suite's zoo at r = 1 (seed 0) and scores it on every target
task, then seeds 1..S-1 for each task's top candidates, then a few candidates at
r in {1/16, 1/8, 1/4, 1/2, 1}. Everything goes to the store (re-running reuses it all) as two
runs: ``testbed-grid`` (the seed-0 grid, with a ranking per task, for `harness compare`) and
``testbed-extra`` (seeds and scaling points). Prints:
  per-task score table; seed-to-seed tau vs between-task tau; top-1 gap over its standard
  error per task; encoder CKA matrix and clusters vs pretraining objectives; correlation of
  CKA with score-profile similarity; R^2 of score vs log(data fraction); a JSON verdict line.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (RATIOS, add_suite, add_testbed_store, arg_parser, mean_se, pair, short,
                               spearman, table_views, tau)
from benchmarks.common import trial_specs as grid_specs  # the name this module gave it (tests use it)

FLIP_NEAR, FLIP_ABOVE = 0.03, 0.10  # a flip: one seed within FLIP_NEAR of chance, one FLIP_ABOVE over it


def scores_of(store, specs, run_id: str) -> dict:
    """(encoder, llm, seed, ratio) -> {task: score} for specs already in the store."""
    from harness.trial import run_trial

    out = {}
    for spec in specs:
        outcome = run_trial(spec, store, run_id, stored_only=True)  # a lookup, never training
        if outcome is not None and outcome.status == "done":
            out[(spec.encoder, spec.llm, spec.seed, spec.ratio)] = {s.task: s.value
                                                                   for s in outcome.scores}
    return out


def seed_values(grid: dict, seeded: dict, candidate: tuple, task: str) -> list[float]:
    """The candidate's scores on ``task`` at r = 1: seed 0 (the grid), then the other seeds."""
    return [grid[(*candidate, 0, 1.0)][task]] + [sc[task] for (e, l, s, _), sc in sorted(seeded.items())
                                                 if (e, l) == tuple(candidate)]


def top1_gaps(grid: dict, seeded: dict, tasks) -> list[dict]:
    """Per task, the two reseeded candidates with the best mean over seeds and their gap over
    the standard error of the difference (unpaired: the seeds' SEs added in quadrature)."""
    top = sorted({k[:2] for k in seeded})
    out = []
    for t in tasks if len(top) >= 2 else []:
        stats = {}
        for c in top:
            vals = seed_values(grid, seeded, c, t)
            se = float(np.std(vals, ddof=1)) / math.sqrt(len(vals)) if len(vals) > 1 else math.nan
            stats[c] = (float(np.mean(vals)), se, len(vals))
        first, second = sorted(stats, key=lambda c: -stats[c][0])[:2]
        (m1, se1, n1), (m2, se2, n2) = stats[first], stats[second]
        se = math.sqrt(se1 ** 2 + se2 ** 2)
        ratio = (m1 - m2) / se if se > 0 else (math.inf if m1 > m2 else 0.0)
        out.append({"task": t, "first": first, "second": second, "mean1": m1, "mean2": m2,
                    "ratio": ratio, "seeds": min(n1, n2)})
    return out


def flips(grid: dict, seeded: dict, tasks, chance: dict, near: float = FLIP_NEAR,
          above: float = FLIP_ABOVE) -> dict:
    """(encoder, llm, task) -> seed scores, where one seed sits within ``near`` of chance and
    another more than ``above`` over it: a candidate that learns the task on some seeds only."""
    out = {}
    for c in sorted({k[:2] for k in seeded}):
        for t in tasks:
            if chance.get(t) is None:
                continue
            vals = seed_values(grid, seeded, c, t)
            if min(vals) <= chance[t] + near and max(vals) > chance[t] + above:
                out[(*c, t)] = vals
    return out


def main() -> int | None:
    parser = arg_parser(__doc__)
    add_suite(parser)
    add_testbed_store(parser)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--top", type=int, default=3, help="top candidates per task to reseed")
    parser.add_argument("--scaling", type=int, default=4, help="candidates with a scaling curve")
    parser.add_argument("--fidelities", type=float, nargs="*", default=[],
                        help="also train every candidate at these ratios (e.g. 0.0625 0.125 0.25): "
                             "a multi-fidelity table that strategies can be replayed on")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report on what the store already holds")
    parser.add_argument("--table", type=Path, default=None,
                        help="report on a shipped table (e.g. benchmarks/tables/minizoo) instead: "
                             "reads its Parquet files, trains and loads nothing")
    args = parser.parse_args()
    if args.table is not None:
        return table_report(args.table)

    import torch
    from harness.parallel import run_many
    from harness.store import Store

    from harness.suite import load_suite

    torch.set_num_threads(1)
    suite = load_suite(args.suite)
    tasks = [t.task for t in suite.targets]
    start = time.perf_counter()
    with Store.open(args.store) as store:
        grid_run = store.start_run(suite_name="testbed-grid", strategy="grid", ground_truth=True, seed=0,
                                   suite_hash=suite.fingerprint(), config=suite.model_dump(mode="json"),
                                   plugin="benchmarks.testbed_report", plugin_version="1")
        base = grid_specs(suite, seed=0)
        if not args.report_only:
            run_many(base, store, grid_run, args.workers)
        grid = scores_of(store, base, grid_run)
        grid_seconds = time.perf_counter() - start
        for task in tasks:
            ranked = sorted(grid, key=lambda k: -grid[k][task])
            store.insert("rankings", [{"run_id": grid_run, "task": task, "metric": "exact_match",
                                       "rank": i + 1, "encoder": k[0], "llm": k[1], "score": grid[k][task],
                                       "measured_or_predicted": "measured", "sample_ratio": 1.0,
                                       "stage": "grid", "plugin": "benchmarks.testbed_report",
                                       "plugin_version": "1"} for i, k in enumerate(ranked)])
        store.finish_run(grid_run, "done")

        table_specs = [s for r in args.fidelities for s in grid_specs(suite, 0, r)]
        if table_specs:
            # a run of its own, so the grid run's cost stays the grid's (harness compare)
            table_run = store.start_run(suite_name="testbed-fidelities", strategy="grid", ground_truth=True, seed=0,
                                        plugin="benchmarks.testbed_report", plugin_version="1")
            if not args.report_only:
                run_many(table_specs, store, table_run, args.workers)
            table = scores_of(store, table_specs, table_run)
            store.finish_run(table_run, "done")
        else:
            table = {}

        extra_run = store.start_run(suite_name="testbed-extra", strategy="grid", ground_truth=True, seed=0,
                                    plugin="benchmarks.testbed_report", plugin_version="1")
        from harness.suite import Candidate

        top = sorted({k[:2] for task in tasks
                      for k in sorted(grid, key=lambda k: -grid[k][task])[:args.top]})
        top_candidates = [Candidate(*c) for c in top]
        seed_specs = [s for seed in range(1, args.seeds) for s in grid_specs(suite, seed, 1.0, top_candidates)]
        # scaling curves: the best candidate of the first tasks and the median candidate
        by_mean = sorted(grid, key=lambda k: -np.mean(list(grid[k].values())))
        curve = []
        for task in tasks:
            best = max(grid, key=lambda k: grid[k][task])[:2]
            if best not in curve:
                curve.append(best)
        curve = (curve[: args.scaling - 1] + [by_mean[len(by_mean) // 2][:2]])[: args.scaling]
        scaling_specs = [s for r in RATIOS[:-1]
                         for s in grid_specs(suite, 0, r, [Candidate(*c) for c in curve])]
        if not args.report_only:
            run_many(seed_specs + scaling_specs, store, extra_run, args.workers)
        seeded = scores_of(store, seed_specs, extra_run)
        scaled = {**table, **scores_of(store, scaling_specs, extra_run)}
        store.finish_run(extra_run, "done")
        n_trials = store.query("select count(*) as n, sum(wall_seconds) as s from trials"
                               " where status = 'done'")[0]
    report(suite, tasks, grid, seeded, scaled, curve, args, grid_seconds, time.perf_counter() - start,
           n_trials)


def report(suite, tasks, grid, seeded, scaled, curve, args, grid_seconds, total_seconds, n_trials):
    from harness.clustering import cluster
    from harness.similarity import cka

    cands = sorted({k[:2] for k in grid})
    short_task = {t: short(t) for t in tasks}
    print(f"# Test bed: {len(suite.zoo.vision_encoders)} encoders x {len(suite.zoo.language_models)} "
          f"LLMs = {len(cands)} candidates, {len(tasks)} tasks, "
          f"{suite.targets[0].limit or 1000} test items each")
    print(f"grid wall {grid_seconds:.0f}s, all {total_seconds:.0f}s; {n_trials['n']} trials in store, "
          f"{(n_trials['s'] or 0):.0f} trial-seconds\n")

    # 1. per-task score table
    print("## Scores at r = 1, seed 0 (best per task marked *)")
    print(f"{'encoder':<20}{'llm':<22}" + "".join(f"{short_task[t]:>9}" for t in tasks) + f"{'mean':>9}")
    best = {t: max(grid, key=lambda k: grid[k][t]) for t in tasks}
    for k in sorted(grid, key=lambda k: -np.mean([grid[k][t] for t in tasks])):
        cells = "".join(f"{grid[k][t]:>8.3f}{'*' if best[t] == k else ' '}" for t in tasks)
        print(f"{k[0]:<20}{k[1]:<22}{cells}{np.mean([grid[k][t] for t in tasks]):>9.3f}")
    chance = {t: None for t in tasks}
    try:
        from harness.plugins.shapes import load_dataset

        chance = {t: load_dataset(short(t), split="test", n=10).chance for t in tasks}
    except Exception:  # noqa: BLE001 - chance levels are informative only
        pass
    print("median  " + "  ".join(f"{short_task[t]} {np.median([grid[k][t] for k in grid]):.3f}"
                                 f" (chance {chance[t]:.3f})" if chance[t] else "" for t in tasks))

    # 2. seed-to-seed tau vs between-task tau
    verdict = {}
    seed_taus = []
    top = sorted({k[:2] for k in seeded})
    for t in tasks:
        per_seed = {0: {c: grid[(*c, 0, 1.0)][t] for c in top}}
        for (e, l, s, _), sc in seeded.items():
            per_seed.setdefault(s, {})[(e, l)] = sc[t]
        for a, b in itertools.combinations(sorted(per_seed), 2):
            t_ab = tau(per_seed[a], per_seed[b])
            if not math.isnan(t_ab):
                seed_taus.append(t_ab)
    task_taus = []
    for a, b in itertools.combinations(tasks, 2):
        task_taus.append(tau({c: grid[c][a] for c in grid}, {c: grid[c][b] for c in grid}))
    seed_tau, task_tau = float(np.mean(seed_taus)) if seed_taus else math.nan, float(np.mean(task_taus))
    print(f"\n## Rank agreement\nseed-to-seed Kendall tau (top candidates, per task): {seed_tau:.3f}"
          f" over {len(seed_taus)} pairs\nbetween-task Kendall tau (all candidates): {task_tau:.3f}"
          f" (min {min(task_taus):.2f}, max {max(task_taus):.2f})")
    verdict["seed_tau"], verdict["task_tau"] = round(seed_tau, 3), round(task_tau, 3)

    # 3. top-1 gap over its standard error, from the seeds
    print("\n## Top-1 vs #2 (mean over seeds; SE of the difference from seed spread)")
    winners = {max(grid, key=lambda k: grid[k][t])[:2] for t in tasks}
    gaps = top1_gaps(grid, seeded, tasks)
    for g in gaps:
        (e1, _), (e2, _) = g["first"], g["second"]
        print(f"{short_task[g['task']]:<8} #1 {pair(g['first'], shorten=False)} {g['mean1']:.3f}  "
              f"#2 {pair(g['second'], shorten=False)} {g['mean2']:.3f}"
              f"  gap/SE {g['ratio']:.2f} ({g['seeds']} seeds)")
        if e1 == e2:
            # the same encoder with two LLMs: how flat is that encoder's row (seed 0)?
            row = sorted((grid[k][g["task"]] for k in grid if k[0] == e1), reverse=True)
            print(f"{'':<8} same encoder, LLM decides: its {len(row)} LLMs score {row[-1]:.3f}-{row[0]:.3f}"
                  f" at seed 0, {sum(row[0] - v <= 0.02 for v in row)} within 0.02 of its best")
    if not gaps:
        print("(no reseeded candidates in the store yet)")
    separated = sum(g["ratio"] > 2 for g in gaps)
    print(f"top-1 separated by > 2 SE on {separated} of {len(tasks)} tasks; "
          f"{len(winners)} different seed-0 winners over {len(tasks)} tasks")
    flipped = flips(grid, seeded, tasks, chance)
    print(f"chance-vs-learning flips over seeds (one seed within {FLIP_NEAR:g} of chance, another"
          f" {FLIP_ABOVE:g} above): {len(flipped)} of {len(top) * len(tasks)} reseeded (candidate, task)"
          + "".join(f"\n  {pair((e, l), shorten=False)} {short_task[t]}: {' '.join(f'{v:.3f}' for v in vals)}"
                    for (e, l, t), vals in flipped.items()))
    verdict["tasks_top1_gt_2se"] = separated
    verdict["distinct_winners"] = len(winners)
    verdict["seed_flips"] = len(flipped)

    # 4. encoder CKA and clusters vs objectives
    import torch
    from harness.plugins.shapes import load_dataset

    from harness.trial import load_encoder

    images = [it.image for it in load_dataset("align", split="test", n=256)]
    feats, objective = {}, {}
    for ref in suite.zoo.vision_encoders:
        _, enc = load_encoder(ref)
        enc.eval()
        with torch.no_grad():
            f = torch.cat([enc(torch.stack([enc.transform(im) for im in images[i:i + 64]]))
                           for i in range(0, len(images), 64)]).float()
        f = (f - f.mean(0)) / f.std(0).clamp_min(1e-6)
        feats[ref] = f.reshape(len(images), -1).numpy()
        objective[ref] = enc.config.get("objective", "?")
    encs = list(suite.zoo.vision_encoders)
    sim = np.eye(len(encs))
    for i, j in itertools.combinations(range(len(encs)), 2):
        sim[i, j] = sim[j, i] = cka(feats[encs[i]], feats[encs[j]])
    print("\n## Encoder token-level linear CKA (256 shapes images, standardised, flattened)")
    names = [short(e) for e in encs]
    print(" " * 16 + "".join(f"{n[:7]:>8}" for n in names))
    for i, n in enumerate(names):
        print(f"{n:<16}" + "".join(f"{sim[i, j]:>8.2f}" for j in range(len(encs))))
    clustering = suite.search.clustering
    clusters = cluster(encs, sim, clustering.distance_cut("encoder"), clustering.linkage)
    print(f"clusters at t_ve={clustering.t_ve} ({clustering.threshold_kind}):")
    for c in clusters:
        print("  " + ", ".join(f"{short(m)} [{objective[m]}]" for m in c.members))
    pure = sum(len({objective[m] for m in c.members}) == 1 for c in clusters)
    verdict["encoder_clusters"] = len(clusters)
    verdict["objective_pure_clusters"] = pure

    # 5. CKA vs score-profile similarity
    llms = list(suite.zoo.language_models)
    complete = [i for i, e in enumerate(encs) if all((e, l, 0, 1.0) in grid for l in llms)]
    profile = {encs[i]: np.array([grid[(encs[i], l, 0, 1.0)][t] for l in llms for t in tasks])
               for i in complete}
    pairs = list(itertools.combinations(complete, 2))
    cka_vals = [sim[i, j] for i, j in pairs]
    prof_vals = [float(np.corrcoef(profile[encs[i]], profile[encs[j]])[0, 1]) for i, j in pairs]
    rho = spearman(cka_vals, prof_vals)
    print(f"\n## CKA vs score-profile similarity: Spearman {rho:.2f} over {len(pairs)} encoder pairs")
    verdict["cka_vs_profile_spearman"] = round(rho, 3)

    # 6. scaling: R^2 of score vs log(data fraction), per range of r
    from harness.predictors import LogLinear

    def points(c, t, lo):
        return [(r, (grid if r == 1.0 else scaled)[(*c, 0, r)][t]) for r in RATIOS
                if r >= lo and (*c, 0, r) in (grid if r == 1.0 else scaled)]

    print("\n## Score vs log(data fraction), r in {1/16, 1/8, 1/4, 1/2, 1}")
    for c in curve:
        for t in tasks:
            pts = points(c, t, 0)
            if len(pts) >= 3:
                fit = LogLinear(clip=None).fit([p[0] for p in pts], [p[1] for p in pts])
                print(f"{pair(c, shorten=False)} {short_task[t]:<8} " + " ".join(f"{p[1]:.3f}" for p in pts)
                      + f"  R^2 {fit.r2:.2f}")
    # every candidate with >= 3 ratios (the multi-fidelity table when trained); curves that
    # move less than 0.05 over the range are flat (at chance or saturated) and left out
    every = sorted({k[:2] for k in scaled})
    for lo in sorted({r for r in RATIOS[:-1] if any(k[3] == r for k in scaled)}):
        r2s = []
        for c in every:
            for t in tasks:
                pts = points(c, t, lo)
                if len(pts) >= 3 and max(p[1] for p in pts) - min(p[1] for p in pts) > 0.05:
                    r2s.append(LogLinear(clip=None).fit([p[0] for p in pts], [p[1] for p in pts]).r2)
        if r2s:
            label = f"r in [{lo:g}, 1]"
            print(f"{label}: R^2 median {np.median(r2s):.2f}, >= 0.8 on {sum(r >= 0.8 for r in r2s)} of "
                  f"{len(r2s)} learning curves ({len(every)} candidates x {len(tasks)} tasks)")
            verdict[f"scaling_r2_median {label}"] = round(float(np.median(r2s)), 3)
            verdict[f"scaling_r2_ge_0.8 {label}"] = f"{sum(r >= 0.8 for r in r2s)}/{len(r2s)}"
    print("\n" + json.dumps({"verdict": verdict}))


def table_report(folder: Path) -> int:
    """The test bed's properties from a shipped table's Parquet files (seconds, no training):
    what it holds and cost; seed-to-seed vs between-task Kendall tau at r = 1; the top-1 gap over
    its standard error per task; rank correlation of each ratio with r = 1; R^2 of score vs
    log(data fraction); failed trials. A JSON verdict line last."""
    from harness.predictors import LogLinear

    con, manifest = table_views(folder)
    rows = con.execute("""
        select t.encoder, t.llm, t.seed, t.sample_ratio, s.task, s.value, s.n_items
        from trials t join scores s using (trial_key) where t.status = 'done'""").fetchall()
    score = {(e, l, seed, r, t): (v, n) for e, l, seed, r, t, v, n in rows}
    tasks = sorted({k[4] for k in score})
    cands = sorted({k[:2] for k in score})
    seeds = sorted({k[2] for k in score})
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    cost = con.execute("select count(*), coalesce(sum(wall_seconds), 0) from trials").fetchone()
    feat = con.execute("select coalesce(sum(wall_seconds), 0) from feature_costs").fetchone()[0]
    failed = con.execute("select encoder, llm, seed, sample_ratio, error from trials where status = 'failed'"
                         " order by all").fetchall()
    verdict: dict = {}
    print(f"# Shipped table {folder}: {size / 1e6:.2f} MB, {len(manifest['runs'])} runs, exported "
          f"{manifest['created_at']}")
    print(f"{len(cands)} candidates ({len({c[0] for c in cands})} encoders x {len({c[1] for c in cands})} LLMs), "
          f"{len(tasks)} tasks; trials by seed and ratio (candidates with every task scored):")
    for seed in seeds:
        by_r = {}
        for r in sorted({k[3] for k in score if k[2] == seed}):
            by_r[r] = sum(all((*c, seed, r, t) in score for t in tasks) for c in cands)
        print(f"  seed {seed}: " + ", ".join(f"r={r:g}: {n}" for r, n in by_r.items()))
    print(f"build cost: {cost[0]} trials, {cost[1] / 3600:.1f} core-hours (the trials' wall times summed; "
          f"each build worker trains on one core) + {feat / 60:.1f} min of clustering features")
    print(f"failed trials: {len(failed)}" + "".join(f"\n  {f[0]}+{f[1]} seed {f[2]} r={f[3]:g}: {f[4][:80]}"
                                                      for f in failed))
    verdict.update(candidates=len(cands), tasks=len(tasks), seeds=seeds, size_mb=round(size / 1e6, 2),
                   trial_cpu_hours=round(cost[1] / 3600, 2), failed_trials=len(failed))

    def at(seed, r, t):
        return {c: score[(*c, seed, r, t)][0] for c in cands if (*c, seed, r, t) in score}

    # rank agreement: seeds vs tasks, at r = 1
    seed_taus = [tau(at(a, 1.0, t), at(b, 1.0, t), at_least=3) for t in tasks
                 for a, b in itertools.combinations(seeds, 2)]
    seed_taus = [x for x in seed_taus if not math.isnan(x)]
    task_taus = [tau(at(0, 1.0, a), at(0, 1.0, b), at_least=3) for a, b in itertools.combinations(tasks, 2)]
    print("\n## Rank agreement at r = 1 (Kendall tau over every candidate both rank)")
    if seed_taus:
        print(f"seed-to-seed, per task: mean {np.mean(seed_taus):.3f} over {len(seed_taus)} (task, seed pair)"
              f" [{', '.join(f'{x:.2f}' for x in seed_taus)}]")
    else:
        print("seed-to-seed: the table holds one seed at r = 1")
    print(f"between tasks (seed 0): mean {np.mean(task_taus):.3f} (min {min(task_taus):.2f}, "
          f"max {max(task_taus):.2f}) over {len(task_taus)} task pairs")
    verdict["seed_tau"] = round(float(np.mean(seed_taus)), 3) if seed_taus else None
    verdict["task_tau"] = round(float(np.mean(task_taus)), 3)

    # top-1 gap over its standard error, ground truth = mean over seeds at r = 1
    print("\n## Top-1 vs #2 by the mean over seeds at r = 1 (SE: seed spread with >= 2 seeds, else "
          "binomial over the test items; SEs of the two added in quadrature)")
    separated = 0
    winners = set()
    for t in tasks:
        stats = {}
        for c in cands:
            vals = [score[(*c, s, 1.0, t)] for s in seeds if (*c, s, 1.0, t) in score]
            if not vals:
                continue
            stats[c] = (*mean_se([v for v, _ in vals], vals[0][1]), len(vals))
        first, second = sorted(stats, key=lambda c: (-stats[c][0], c))[:2]
        winners.add(first)
        (m1, se1, n1), (m2, se2, _) = stats[first], stats[second]
        gap = (m1 - m2) / math.hypot(se1, se2) if math.hypot(se1, se2) > 0 else math.inf
        separated += gap > 2
        print(f"{t:<16} #1 {pair(first, shorten=False)} {m1:.3f}  #2 {pair(second, shorten=False)} {m2:.3f}  "
              f"gap/SE {gap:.2f} ({n1} seeds)")
    print(f"top-1 separated by > 2 SE on {separated} of {len(tasks)} tasks; {len(winners)} different winners")
    verdict["tasks_top1_gt_2se"], verdict["distinct_winners"] = separated, len(winners)

    # low-fidelity ranking quality
    print("\n## Rank correlation of each ratio with r = 1 (seed 0, every candidate; mean over tasks)")
    ratios = sorted({k[3] for k in score if k[2] == 0})
    for r in ratios[:-1]:
        taus = [tau(at(0, r, t), at(0, 1.0, t), at_least=3) for t in tasks]
        rhos = [spearman(at(0, r, t), at(0, 1.0, t)) for t in tasks]
        print(f"r = {r:<7g} Kendall {np.mean(taus):.3f} [{', '.join(f'{x:.2f}' for x in taus)}]  "
              f"Spearman {np.mean(rhos):.3f}")
        verdict[f"tau_r{r:g}_vs_r1"] = round(float(np.mean(taus)), 3)

    # scaling: score vs log(data fraction)
    print("\n## Score vs log(data fraction), seed 0: R^2 of the log-linear fit over r in [lo, 1]"
          " (learning curves moving > 0.05)")
    for lo in ratios[:-2]:
        r2s = []
        for c in cands:
            for t in tasks:
                pts = [(r, score[(*c, 0, r, t)][0]) for r in ratios if r >= lo and (*c, 0, r, t) in score]
                if len(pts) >= 3 and max(p[1] for p in pts) - min(p[1] for p in pts) > 0.05:
                    r2s.append(LogLinear(clip=None).fit([p[0] for p in pts], [p[1] for p in pts]).r2)
        if r2s:
            print(f"r in [{lo:g}, 1]: R^2 median {np.median(r2s):.2f}, >= 0.8 on {sum(x >= 0.8 for x in r2s)}"
                  f" of {len(r2s)} curves")
            verdict[f"scaling_r2_median r in [{lo:g}, 1]"] = round(float(np.median(r2s)), 3)
    print("\n" + json.dumps({"verdict": verdict}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
