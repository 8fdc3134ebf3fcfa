"""Anytime regret of every strategy on the shipped table, simulated in memory (issue 33).

Each (task, seed) case is a world: the table's score of every (encoder, llm) at every ratio for
that seed; the ground truth is the mean over the three seeds at r = 1. A strategy spends
training samples (in full-data trials: a trial at ratio r costs r, a grid costs one per
candidate) and holds a pick after every step; its normalised regret at a budget is
(best - truth[pick]) / (best - worst) for the pick it holds when that budget is spent (before any
score: the mean regret of a random pick, unless history gives it one).

Strategies: the oracle; the grid in random order (on a finite pool this is random search too);
the top-k at the lowest ratio (all at 1/16, then the top 3 at r = 1); plain successive halving
from 1/16 (eta 4), ASHA and Hyperband (the real ``harness.plugins.policies`` classes driven by
``harness.policies.drive``); the portfolio from history (candidates by their mean standardised
score on the other tasks, trained at r = 1 in that order; before the first, its top is the pick);
history's top 6 then successive halving from 1/2 (eta 2) on the task's own rungs (the issue's
first cut; k and the first ratio chosen on the 18 cases);
``learned`` with history and without (``plugins/strategies/learned.LearnedCore``, the decisions
the live strategy makes; ``--acquisitions`` adds its other acquisition functions). With
``--mordal`` the paper's Mordal (plain cuts) and today's default replay through ``harness
replay`` (the live code path): Mordal returns one pick at the end, so each is one operating point
(its mean cost, its mean regret), drawn on the figure beside the curves.

Held out: anything using history sees the other five tasks only (every seed of the held-out task
removed), leave-one-task-out. ``--sequence N`` runs the six tasks in N random orders per seed, the
history being only what the earlier searches of the order trained (their trials are free to
score on a later task), and reports the total new training against one grid.

    python -m benchmarks.anytime                 # 18 cases of suites/minizoo.yaml, figure + table
    python -m benchmarks.anytime --subsets 100   # random zoo subsets of 12-40 candidates
    python -m benchmarks.anytime --sequence 10   # the six-task sequence protocol
    python -m benchmarks.anytime --timing        # one surrogate update for 48 and 500 candidates, and
                                                 # replayed searches a minute
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # python benchmarks/anytime.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RATIOS, ROOT, TABLE, TASKS, arg_parser, table_views  # noqa: E402

BUDGETS = (1 / 20, 1 / 10, 1 / 5, 1 / 2)


# -- the world --------------------------------------------------------------------------------------


def load_world(table: Path = TABLE) -> dict:
    """{(task, seed): {(encoder, llm, ratio): score}} of the table's trials from scratch."""
    con, _ = table_views(table)
    rows = con.execute("""select s.task, t.seed, t.encoder, t.llm, t.sample_ratio, s.value
                          from trials t join scores s using (trial_key)
                          where t.status = 'done' and t.continued_from is null
                          order by s.task, t.seed, t.encoder, t.llm, t.sample_ratio""").fetchall()
    world: dict = {}
    for task, seed, e, l, r, v in rows:
        world.setdefault((task, int(seed)), {})[(e, l, round(float(r), 6))] = float(v)
    return world


def truth_of(world: dict, task: str, candidates) -> dict:
    seeds = sorted({s for (t, s) in world if t == task})
    return {c: float(np.mean([world[(task, s)][(*c, 1.0)] for s in seeds])) for c in candidates}


def regret(truth: dict, pick) -> float:
    best, worst = max(truth.values()), min(truth.values())
    return 0.0 if best == worst else (best - truth[pick]) / (best - worst)


def random_regret(truth: dict) -> float:
    return float(np.mean([regret(truth, c) for c in truth]))


def prior_order(hist: dict, cands) -> list:
    """``cands`` by history's prior, best first (ties by name): the portfolio's order."""
    from harness.surrogate import history_prior

    prior = history_prior(hist["full"]) if hist["full"] else {}
    return sorted(cands, key=lambda c: (-prior.get(c, 0.0), str(c)))


def best_prior_rank(truth: dict, hist: dict) -> int:
    """Where history's prior ranks the candidate ``truth`` says is best (1 = history's pick)."""
    best = max(truth, key=lambda c: (truth[c], str(c)))
    return 1 + prior_order(hist, list(truth)).index(best)


def same_seed_grid_regret(world, task: str, seed: int, truth: dict) -> float:
    """The regret of a grid trained at ``seed`` alone (its best full-data score): the ceiling of
    any one-seed search."""
    return regret(truth, max(truth, key=lambda c: (world[(task, seed)][(*c, 1.0)], str(c))))


# -- strategies: each returns a trace [(spent, pick)] in full-data trials --------------------------


def s_oracle(case, cands, observe, hist, rng):
    truth = case["truth"]
    return [(0.0, max(cands, key=lambda c: truth[c]))]


def _full_data_in_order(order, observe, spent: float = 0.0) -> list:
    """Train ``order`` at r = 1 one after another; the pick is the best measured so far."""
    best, trace = None, []
    for c in order:
        s = observe(c, 1.0)
        spent += 1.0
        if best is None or s > best[1]:
            best = (c, s)
        trace.append((spent, best[0]))
    return trace


def s_grid_random(case, cands, observe, hist, rng):
    order = list(cands)
    rng.shuffle(order)
    return _full_data_in_order(order, observe)


def s_lowest_topk(case, cands, observe, hist, rng, k: int = 3):
    r0 = RATIOS[0]
    low = {c: observe(c, r0) for c in cands}
    spent = r0 * len(cands)
    top = sorted(cands, key=lambda c: (-low[c], str(c)))[:k]
    return [(spent, top[0])] + _full_data_in_order(top, observe, spent)


def _policy_trace(policy, cands, observe):
    from harness.policies import drive

    log = []

    def evaluate(c, r):
        s = observe(c, r)
        log.append((c, r, s))
        return s

    drive(policy, list(cands), 1, evaluate)
    trace, spent, best = [], 0.0, {}
    for c, r, s in log:
        spent += r
        best[c] = (r, s)  # a candidate judged at the highest ratio it reached
        pick = max(best, key=lambda x: (best[x][0], best[x][1]))
        trace.append((spent, pick))
    return trace


def s_sha(case, cands, observe, hist, rng):
    from harness.plugins.policies import SuccessiveHalving

    return _policy_trace(SuccessiveHalving(eta=4, min_ratio=RATIOS[0]), cands, observe)


def s_hyperband(case, cands, observe, hist, rng):
    from harness.plugins.policies import Hyperband

    return _policy_trace(Hyperband(eta=4, min_ratio=RATIOS[0]), cands, observe)


def s_asha(case, cands, observe, hist, rng):
    from harness.plugins.policies import AsynchronousSuccessiveHalving

    return _policy_trace(AsynchronousSuccessiveHalving(eta=4, min_ratio=RATIOS[0]), cands, observe)


def s_portfolio(case, cands, observe, hist, rng):
    order = prior_order(hist, cands)
    return [(0.0, order[0])] + _full_data_in_order(order, observe)


def s_prior_sha(case, cands, observe, hist, rng, k: int = 6, min_ratio: float = 0.5):
    """The issue's first cut, history's top-k then halving on the task's own rungs: the k
    candidates of the highest history prior, successive halving from ``min_ratio`` with eta 2.
    k and ``min_ratio`` were chosen on these 18 cases (in-sample); on the subsets they are not
    tuned again."""
    from harness.plugins.policies import SuccessiveHalving

    order = prior_order(hist, cands)[:k]
    return [(0.0, order[0])] + _policy_trace(SuccessiveHalving(eta=2, min_ratio=min_ratio), order, observe)


def _learned(case, cands, observe, hist, rng, *, use_history: bool, confidence=None, budget=None,
             acquisition=None):
    from harness.surrogate import Hyper, fit_hyperparameters, history_prior
    from harness.plugins.strategies.learned import LearnedCore

    full, low = (hist["full"], hist["low"]) if use_history else ({}, {})
    hyper = fit_hyperparameters(full, low) if full else Hyper()
    prior = history_prior(full) if full else None
    confidence = case.get("confidence", 0.999) if confidence is None else confidence
    budget = case.get("budget") if budget is None else budget
    core = LearnedCore(cands, ratios=RATIOS, hyper=hyper, prior=prior, confidence=confidence,
                       budget=len(cands) if budget is None else budget, seed=case["seed"], n_items=1000,
                       draws=500, acquisition=acquisition or case.get("acquisition") or default_acquisition(),
                       tolerance=case.get("tolerance"))  # None: auto, the live default
    core.free([(c, r) for c, r in hist.get("free", ())], lambda c, r: observe(c, r, free=True))
    mean, _ = core.surrogate.mean_sd()
    first = cands[int(np.argmax(mean))] if (prior or core.measured) else None
    result = core.run(lambda c, r: observe(c, r))
    trace = [(0.0, first)] if first is not None else []
    trace += [(st.spent, st.pick) for st in result.steps]
    # the default's stop under "learned" / "learned-flat", another acquisition's beside it
    key = ("learned" if use_history else "learned-flat") + (f"-{acquisition}" if acquisition else "")
    case.setdefault("stops", {})[key] = (result.spent, result.order[0], result.stopped)
    case.setdefault("measured", {})[key] = dict(core.measured)
    return trace


def s_learned(case, cands, observe, hist, rng):
    return _learned(case, cands, observe, hist, rng, use_history=True)


def s_learned_flat(case, cands, observe, hist, rng):
    return _learned(case, cands, observe, hist, rng, use_history=False)


def _variant(acq, use_history):
    return lambda case, cands, observe, hist, rng: _learned(case, cands, observe, hist, rng,
                                                           use_history=use_history, acquisition=acq)


STRATEGIES: dict[str, Callable] = {
    "oracle": s_oracle, "grid (random order)": s_grid_random, "top-3 at 1/16": s_lowest_topk,
    "SHA 1/16 eta 4": s_sha, "ASHA 1/16 eta 4": s_asha, "Hyperband eta 4": s_hyperband,
    "portfolio (history)": s_portfolio, "history top-6 + SHA 1/2": s_prior_sha,
    "learned (no history)": s_learned_flat, "learned (history)": s_learned,
}
# learned with its other acquisition functions (``--acquisitions``): what a measurement is worth
# per training sample, measured rather than guessed
ACQUISITIONS: dict[str, Callable] = {
    **{f"learned {a} (history)": _variant(a, True) for a in ("info", "kg", "ei", "thompson")},
    **{f"learned {a} (no history)": _variant(a, False) for a in ("info", "kg", "ei", "thompson")},
}
STRATEGIES.update(ACQUISITIONS)
DEFAULT = [n for n in STRATEGIES if n not in ACQUISITIONS]


# -- cases ------------------------------------------------------------------------------------------


def history_for(world: dict, task: str, cands, tasks=TASKS) -> dict:
    """The other tasks' scores of ``cands`` (every seed of ``task`` removed): full-data scores
    averaged over seeds, and low-ratio scores, as the live strategy reads them from a store."""
    full, low = {}, {}
    for t in tasks:
        if t == task:
            continue
        seeds = sorted({s for (tt, s) in world if tt == t})
        full[t] = {c: float(np.mean([world[(t, s)][(*c, 1.0)] for s in seeds])) for c in cands}
        low[t] = {(c, r): float(np.mean([world[(t, s)][(*c, r)] for s in seeds]))
                  for c in cands for r in RATIOS if r < 1}
    return {"full": full, "low": low}


def tasks_of(world: dict) -> list[str]:
    """The world's tasks: the shipped table's in ``TASKS`` order, any other's sorted."""
    tasks = {t for t, _ in world}
    return list(TASKS) if tasks == set(TASKS) else sorted(tasks)


def seeds_of(world: dict) -> list[int]:
    return sorted({s for _, s in world})


def run_case(world, task, seed, cands, names, hist=None, spend_log=None, **settings):
    truth = truth_of(world, task, cands)
    case = {"task": task, "seed": seed, "truth": truth, **settings}
    hist = history_for(world, task, cands, tasks_of(world)) if hist is None else hist
    assert task not in hist["full"] and task not in hist["low"], "history leaks the held-out task"
    out = {}
    for name in names:
        rng = random.Random(f"{task}-{seed}-{name}")
        spent = {"train": 0.0}

        def observe(c, r, free=False, _s=spent):
            if not free:
                _s["train"] += r
            return world[(task, seed)][(*c, round(r, 6))]

        trace = STRATEGIES[name](case, list(cands), observe, hist, rng)
        out[name] = trace
        if spend_log is not None:
            spend_log[name] = spent["train"]
    case["traces"] = out
    return case


def regret_at(case, name, budget_trials) -> float:
    pick = None
    for spent, p in case["traces"][name]:
        if spent <= budget_trials + 1e-9:
            pick = p
        else:
            break
    return random_regret(case["truth"]) if pick is None else regret(case["truth"], pick)


def bootstrap(values, reps=1000, seed=0):
    rng = np.random.default_rng(seed)
    v = np.asarray(values, dtype=float)
    means = v[rng.integers(len(v), size=(reps, len(v)))].mean(axis=1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(cases, names, n_cands_of, label: str, figure: Path | None, points: dict | None = None):
    """The table of figures at ``BUDGETS`` and the anytime figure; ``points``: name -> (regrets,
    shares of the grid spent) of searches that return one pick at the end (Mordal), drawn as
    operating points (mean share, mean regret with its 95% bootstrap interval)."""
    xs = np.geomspace(1 / 50, 1, 40)
    print(f"\n{label}: {len(cases)} cases; mean normalised regret [95% bootstrap] and top-1 at budgets "
          "(fraction of the grid's training samples)")
    head = f"{'strategy':24s}" + "".join(f"  {'1/' + str(round(1 / b)):>22s}" for b in BUDGETS) + "  top-1 @1/10"
    print(head)
    curves = {}
    for name in names:
        row = f"{name:24s}"
        for b in BUDGETS:
            vals = [regret_at(c, name, b * n_cands_of(c)) for c in cases]
            m, lo, hi = bootstrap(vals)
            row += f"  {m:6.3f} [{lo:5.3f}, {hi:5.3f}]"
        top = sum(regret_at(c, name, 0.1 * n_cands_of(c)) == 0 for c in cases)
        row += f"  {top:3d}/{len(cases)}"
        print(row)
        curves[name] = [bootstrap([regret_at(c, name, x * n_cands_of(c)) for c in cases]) for x in xs]
    if figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5))
        for name, pts in curves.items():
            m = [p[0] for p in pts]
            ax.plot(xs, m, label=name)
            ax.fill_between(xs, [p[1] for p in pts], [p[2] for p in pts], alpha=0.15)
        for k, (name, (regs, spent)) in enumerate(sorted((points or {}).items())):
            m, lo, hi = bootstrap(regs)
            ax.errorbar([float(np.mean(spent))], [m], yerr=[[m - lo], [hi - m]], fmt="os^"[k % 3], color="black",
                        capsize=3, label=f"{name} (one pick, at its cost)")
        ax.set_xscale("log")
        ax.set_xlabel("training samples spent (fraction of the grid's)")
        ax.set_ylabel("mean normalised regret")
        ax.set_title(label)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figure, dpi=110)
        print(f"figure: {figure}")
    # at each one-pick search's own cost: every curve's regret there, beside the search's
    for name, (regs, spent) in sorted((points or {}).items()):
        share = float(np.mean(spent))
        m, lo, hi = bootstrap(regs)
        at = ", ".join("{} {:.3f} [{:.3f}, {:.3f}]".format(
            n, *bootstrap([regret_at(c, n, share * n_cands_of(c)) for c in cases])) for n in names if n.startswith("learned"))
        print(f"at {name}'s cost ({share:.3f} of the grid): {name} {m:.3f} [{lo:.3f}, {hi:.3f}]; {at}")
    return curves


def frontier(cases, names, n_cands_of, label: str) -> None:
    """The frontier at each of ``BUDGETS``: the lowest mean regret any strategy reaches there
    (which one), learned's gap to it, and the mean over cases of the lowest regret any strategy
    reaches on that case (a selector that knew, per case, which strategy to run: no strategy of
    this family does better)."""
    rivals = [n for n in names if n != "oracle"]
    if not rivals:
        return
    print(f"\nfrontier ({label}): at each budget the best mean regret of any strategy but the oracle, and the "
          "mean per-case best (hindsight)")
    for b in BUDGETS:
        means = {n: float(np.mean([regret_at(c, n, b * n_cands_of(c)) for c in cases])) for n in rivals}
        lead = min(means, key=means.get)
        hindsight = float(np.mean([min(regret_at(c, n, b * n_cands_of(c)) for n in rivals) for c in cases]))
        gaps = ", ".join(f"{n} {means[n] - means[lead]:+.3f}" for n in rivals if n.startswith("learned"))
        print(f"  1/{round(1 / b):<3d} best {means[lead]:.3f} ({lead}); per-case best {hindsight:.3f}; "
              f"learned's gap: {gaps}")
    # the whole curve, not just the table's budgets: where each learned curve is above the best
    # of the others (the strategies that are not learned)
    xs = np.geomspace(1 / 50, 1, 40)
    others = [n for n in rivals if not n.startswith("learned")]
    if not others:
        return
    floor = np.array([min(np.mean([regret_at(c, n, x * n_cands_of(c)) for c in cases]) for n in others) for x in xs])
    for name in (n for n in rivals if n.startswith("learned")):
        curve = np.array([np.mean([regret_at(c, name, x * n_cands_of(c)) for c in cases]) for x in xs])
        gap = curve - floor
        worst = int(np.argmax(gap))
        print(f"  {name}: at or below every other strategy at {int((gap <= 1e-9).sum())} of {len(xs)} points of the "
              f"curve (1/50 to 1); most above at {xs[worst]:.3f} of the grid, by {max(gap[worst], 0.0):.3f}")


def limits(world, cands) -> None:
    """What limits any search of the table at a small budget, task by task (every figure from the
    table itself): where history's prior ranks the task's best (leave-one-task-out: within
    1/10 of the grid, ``n/10`` full-data trials, a search that follows the prior and checks at
    r = 1 reaches it only when that rank is within them); how far each low ratio's ranking
    tracks the truth (Kendall tau, mean over seeds: what a cheap trial can say); how the task's
    own variance splits into encoder, LLM and interaction parts against history's (a prior
    fitted on the other tasks expects their split); and the regret of a same-seed grid's pick
    (seed noise: the ceiling of any one-seed search)."""
    from scipy.stats import kendalltau

    from harness.surrogate import variance_components

    afford = int(0.1 * len(cands))
    print(f"\nlimits (leave-one-task-out; 1/10 of the grid = {afford} full-data trials of {len(cands)}):")
    print(f"  {'task':16s} {'prior rank of best':>18s}  {'tau with r=1 at ' + ' '.join(f'1/{round(1 / r)}' for r in RATIOS[:-1]):>34s}"
          f"  {'enc/llm/pair variance':>22s}  {'history enc/llm/pair':>21s}  same-seed grid")
    reachable = 0
    for task in tasks_of(world):
        seeds = [s for s in seeds_of(world) if (task, s) in world]
        truth = truth_of(world, task, cands)
        hist = history_for(world, task, cands, tasks_of(world))
        rank = best_prior_rank(truth, hist)
        reachable += len(seeds) * (rank <= afford)
        taus = []
        for r in RATIOS[:-1]:
            vals = [kendalltau([world[(task, s)][(*c, r)] for c in cands], [truth[c] for c in cands])[0]
                    for s in seeds]
            taus.append(float(np.nanmean(vals)))

        def shares(scores):
            parts = np.array(variance_components(scores))
            return parts / parts.sum() if parts.sum() > 0 else parts

        own = shares(truth)
        other = np.mean([shares(v) for v in hist["full"].values()], axis=0) if hist["full"] else own * np.nan
        grid = np.mean([same_seed_grid_regret(world, task, s, truth) for s in seeds])
        print(f"  {task:16s} {rank:18d}  {' '.join(f'{t:5.2f}' for t in taus):>34s}"
              f"  {'/'.join(f'{x:.2f}' for x in own):>22s}  {'/'.join(f'{x:.2f}' for x in other):>21s}  {grid:.3f}")
    print(f"  the best within history's top {afford}: {reachable} of {len(tasks_of(world)) * len(seeds_of(world))} "
          "cases; the rest must be found from low ratios or main effects")


def prior_reach(world, specs) -> None:
    """On (task, seed, candidates) ``specs`` (the subsets): how many full-data trials 1/10 of
    each grid buys, and on how many cases the best is within history's top that many
    (leave-one-task-out), the cases a search that follows the prior and checks at r = 1 can
    reach at 1/10; and the regret of a same-seed grid's pick (on a subset whose scores lie
    close together, normalised regret is mostly seed noise)."""
    within, afford, grid = 0, [], []
    for task, seed, cands in specs:
        truth = truth_of(world, task, cands)
        grid.append(same_seed_grid_regret(world, task, seed, truth))
        k = int(0.1 * len(cands))
        afford.append(k)
        within += best_prior_rank(truth, history_for(world, task, cands, tasks_of(world))) <= k
    print(f"limits: 1/10 of a subset's grid buys {min(afford)}-{max(afford)} full-data trials (mean "
          f"{np.mean(afford):.1f}); the best is within history's top that many on {within} of {len(specs)} cases; "
          f"a same-seed grid (the ceiling of a one-seed search) has regret {np.mean(grid):.3f}, worst "
          f"{max(grid):.3f}, top-1 on {sum(g == 0 for g in grid)}")


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--subsets", type=int, default=0, help="also run this many random zoo subsets (12-40 candidates)")
    p.add_argument("--sequence", type=int, default=0, help="run the six tasks as a sequence in this many orders per seed")
    p.add_argument("--timing", action="store_true", help="time one surrogate update for 48 and 500 candidates, and whole replayed searches")
    p.add_argument("--mordal", action="store_true",
                   help="also replay Mordal (today's default and the paper's plain cuts; with --subsets, the default "
                        "on every subset) through harness replay (the live code path; a few minutes) for their "
                        "operating points on the same cases")
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "anytime.png", help="where the PNG goes")
    p.add_argument("--table", type=Path, default=TABLE,
                   help="an exported table to simulate (default the shipped minizoo table; a synthetic one from "
                        "python -m benchmarks.synthetic, with its suite DIR.yaml beside it for --mordal)")
    p.add_argument("--strategies", default=",".join(DEFAULT), help="comma-separated subset of: " + ", ".join(STRATEGIES))
    p.add_argument("--acquisitions", action="store_true",
                   help="also run learned with each other acquisition function (of info, kg, ei, thompson), with and "
                        "without history")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        p.error(f"--strategies: unknown {', '.join(map(repr, unknown))}; choose from: {', '.join(STRATEGIES)}")
    if args.acquisitions:  # every acquisition function but the default (that one is "learned")
        names += [n for n in ACQUISITIONS if n not in names and f" {default_acquisition()} " not in n]
    if args.timing:
        return timing()
    start = time.perf_counter()
    world = load_world(args.table)
    from harness.suite import load_suite

    suite_path = ROOT / "suites" / "minizoo.yaml" if args.table == TABLE else args.table.with_suffix(".yaml")
    suite = load_suite(suite_path) if suite_path.exists() else None
    if args.table == TABLE:
        cands = [(c.vision_encoder, c.language_model) for c in suite.candidates()]
    else:  # every candidate the table's world holds
        cands = sorted({(e, l) for w in world.values() for (e, l, _) in w})
    if args.mordal and suite is None:
        p.error(f"--mordal: no suite {suite_path} beside the table to replay it with")
    tasks, seeds = tasks_of(world), seeds_of(world)
    cases = [run_case(world, t, s, cands, names) for t in tasks for s in seeds]
    mordal_trained: dict = {}
    mordal = replay_mordal(world, suite, [(t, s, cands) for t in tasks for s in seeds], mordal_configs(),
                           args.table, suite_path, trained=mordal_trained) if args.mordal else {}
    label = f"minizoo suite ({len(cands)} candidates)" if args.table == TABLE else \
        f"{args.table.name} ({len(cands)} candidates)"
    summarise(cases, names, lambda c: len(c["truth"]), label, args.figure, points=mordal)
    frontier(cases, names, lambda c: len(c["truth"]), label)
    limits(world, cands)
    operating_points(world, cands, mordal)
    stops = [c["stops"]["learned"] for c in cases if "learned" in c.get("stops", {})]
    if stops:
        print(f"learned (history) run to a confidence of 0.999: spent {np.mean([s[0] for s in stops]) / len(cands):.3f} "
              f"of the grid on average")
    if args.subsets:
        rng = random.Random(33)
        encs = sorted({c[0] for (_, _), w in [(k, v) for k, v in world.items()] for c in [(e, l) for (e, l, _) in w]})
        llms = sorted({l for w in world.values() for (_, l, _) in w})
        sub_cases, specs = [], []
        for i in range(args.subsets):
            while True:
                e = rng.sample(encs, rng.randint(3, len(encs)))
                l = rng.sample(llms, rng.randint(3, len(llms)))
                if 12 <= len(e) * len(l) <= 40:
                    break
            sc = [(a, b) for a in sorted(e) for b in sorted(l)]
            spec = (rng.choice(tasks), rng.choice(seeds), sc)
            specs.append(spec)
            sub_cases.append(run_case(world, *spec, names))
        mordal_sub = replay_mordal(world, suite, specs, {"Mordal default": {}}, args.table,
                                   suite_path) if args.mordal else {}
        summarise(sub_cases, names, lambda c: len(c["truth"]), f"{args.subsets} random zoo subsets",
                  args.figure.with_name(args.figure.stem + "-subsets.png"), points=mordal_sub)
        frontier(sub_cases, names, lambda c: len(c["truth"]), f"{args.subsets} random zoo subsets")
        prior_reach(world, specs)
        operating_points(world, cands, mordal_sub, specs, f"{args.subsets} random zoo subsets")
    if args.sequence:
        sequence(world, cands, args.sequence,
                 (mordal_trained, {n: regs for n, (regs, _) in mordal.items()}) if mordal else None)
    print(f"\n({time.perf_counter() - start:.0f}s)")
    return 0


def mordal_configs() -> dict:
    """Today's default Mordal and the paper's (plain cuts): name -> changes to the suite's search."""
    from benchmarks.mordal_sweep import PLAIN

    return {"Mordal default": {}, "Mordal, the paper's plain cuts": PLAIN}


def replay_mordal(world, suite, specs, configs: dict, table: Path = TABLE,
                  suite_path: Path = ROOT / "suites" / "minizoo.yaml", trained: dict | None = None) -> dict:
    """Mordal, which returns one pick at the end (not an anytime search), in each of ``configs``
    (name -> changes to the suite's search), replayed through ``harness replay`` (the live code
    path) on each (task, seed, candidates) of ``specs``; candidates other than the suite's run the
    suite with its zoo cut to their encoders and LLMs (a subset). Returns name -> (normalised
    regrets, shares of the (subset's) grid's training samples spent). ``trained``, when given,
    gets (name, task, seed) -> ({trial_key: training samples} of every trial the replay used,
    its warm-up samples, the grid's samples): what a sequence of searches sharing one store
    would train once (:func:`sequence`)."""
    from benchmarks.common import Bench
    from harness.suite import Suite

    everyone = {(c.vision_encoder, c.language_model) for c in suite.candidates()}
    bench = Bench(table, None, suite)
    out = {}
    try:
        for name, changes in configs.items():
            regs, spent = [], []
            for task, seed, cands in specs:
                variant = suite
                if set(cands) != everyone:
                    data = suite.model_dump(mode="json")
                    data["zoo"]["vision_encoders"] = sorted({e for e, _ in cands})
                    data["zoo"]["language_models"] = sorted({l for _, l in cands})
                    variant = Suite.model_validate(data)
                row = bench.replay(variant, suite_path, changes, task, seed, fill=False)
                if "error" in row:
                    raise SystemExit(f"{name} replay of {task} seed {seed} ({len(cands)} candidates): {row['error']}")
                regs.append(regret(truth_of(world, task, cands), tuple(row["best"])))
                spent.append(row["samples"] / row["grid_samples"])
                if trained is not None:
                    trained[(name, task, seed)] = (_trials_used(bench.path, row["run"]),
                                                   int(row["warmup_samples"] or 0), int(row["grid_samples"]))
            out[name] = (regs, spent)
    finally:
        bench.close()
    return out


def _trials_used(store_path: Path, run_id: str) -> dict:
    """{trial_key: training samples} of every trial run ``run_id`` used (trained or reused)."""
    from harness.store import Store

    with Store.open(store_path, read_only=True) as st:
        return {r["trial_key"]: int(r["samples"]) for r in st.query(
            """select t.trial_key, coalesce(t.samples_seen, 0) as samples
               from (select distinct key from run_uses where run_id = ? and kind = 'trial') u
               join trials t on t.trial_key = u.key""", [run_id])}


def default_acquisition() -> str:
    """``strategy: learned``'s default acquisition function (``LearnedOptions``)."""
    from harness.plugins.strategies.learned import LearnedOptions

    return LearnedOptions().acquisition


def learned_defaults(n_candidates: int) -> dict:
    """``strategy: learned``'s default confidence and budget (``LearnedOptions``), the budget in
    full-data trials of ``n_candidates``."""
    from harness.plugins.strategies.learned import LearnedOptions

    opt = LearnedOptions()
    return {"confidence": opt.confidence, "budget": opt.budget * n_candidates}


def operating_points(world, cands, mordal: dict, specs=None, label: str = "18 cases") -> None:
    """Each search at its defaults: mean regret, worst, top-1, and the mean fraction of the
    grid's training samples it spent, on every (task, seed) with ``cands`` or on ``specs``
    ((task, seed, candidates) triples: the subsets). ``learned`` stops at confidence 0.9 or a
    budget of 0.5 (its defaults, ``LearnedOptions``); ``mordal``: :func:`replay_mordal`'s."""
    specs = specs or [(t, s, cands) for t in tasks_of(world) for s in seeds_of(world)]
    rows = []
    for name, key in (("learned (history)", "learned"), ("learned (no history)", "learned-flat")):
        regs, spent = [], []
        for task, seed, cs in specs:
            case = run_case(world, task, seed, cs, [name], **learned_defaults(len(cs)))
            sp, pick, _ = case["stops"][key]
            regs.append(regret(case["truth"], pick))
            spent.append(sp / len(cs))
        rows.append((f"{name}, defaults", regs, spent))
    rows += [(f"{name} (harness replay)", regs, spent) for name, (regs, spent) in mordal.items()]
    print(f"\noperating points ({label}): mean regret [95% bootstrap], worst, top-1, mean share of the grid's samples")
    for name, regs, spent in rows:
        m, lo, hi = bootstrap(regs)
        print(f"{name:40s} {m:.3f} [{lo:.3f}, {hi:.3f}]  worst {max(regs):.3f}  top-1 "
              f"{sum(r == 0 for r in regs)}/{len(regs)}  spent {np.mean(spent):.3f}")


def shared_store_cost(runs) -> float:
    """New training of searches that share one store, in grids: ``runs`` are (trials
    {trial_key: samples}, warm-up samples, the grid's samples) of each search; a trial two
    searches use is trained once (the store reuses it), the projector warm-ups once (the same
    components and alignment data each time)."""
    union: dict = {}
    for trials, _, _ in runs:
        union.update(trials)
    return (sum(union.values()) + max(w for _, w, _ in runs)) / runs[0][2]


def sequence(world, cands, orders: int, mordal: dict | None = None) -> None:
    """Six tasks in a row: history is what the earlier searches of the order trained; their
    trials are free to score on later tasks; total new training against one grid. ``mordal``:
    :func:`replay_mordal`'s ``trained`` and regrets of its 18 cases ((name, task, seed) -> trials,
    warm-up samples, grid samples; name -> regrets): Mordal uses no history, so in any order its
    six searches on one store train the union of their trials (a trial an earlier search trained
    is reused, as the live store reuses it), its warm-ups once."""
    totals, regrets = [], []
    by_position: dict = {}  # k -> new training of the k-th search of an order, in grids
    for seed in seeds_of(world):
        rng = random.Random(f"sequence-{seed}")
        for _ in range(orders):
            order = tasks_of(world)
            rng.shuffle(order)
            trained: set = set()
            full: dict = {}
            low: dict = {}
            total = 0.0
            for k, task in enumerate(order):
                hist = {"full": {t: v for t, v in full.items()}, "low": dict(low),
                        "free": sorted(trained, key=str)}
                log: dict = {}
                case = run_case(world, task, seed, cands, ["learned (history)"], hist=hist, spend_log=log,
                                **learned_defaults(len(cands)))
                case_stop = case["stops"]["learned"]
                total += log["learned (history)"]
                by_position.setdefault(k, []).append(log["learned (history)"] / len(cands))
                regrets.append(regret(case["truth"], case_stop[1]))
                # what this search trained becomes history (its scores on this task) and is free
                # to score on the later tasks of the order
                for (c, r), value in case["measured"]["learned"].items():
                    trained.add((c, r))
                    if r >= 1.0:
                        full.setdefault(task, {})[c] = value
                    else:
                        low.setdefault(task, {})[(c, r)] = value
            totals.append(total / len(cands))
    print(f"\nsequence: {len(totals)} orders; new training for six tasks = {np.mean(totals):.2f} of one grid "
          f"(min {np.min(totals):.2f}, max {np.max(totals):.2f}); mean regret {np.mean(regrets):.3f}")
    print("  new training by position in the order (the first has no history): " +
          ", ".join(f"{k + 1}: {np.mean(v):.2f}" for k, v in sorted(by_position.items())))
    if not mordal:
        return
    trained, regrets_of = mordal
    for name in sorted({n for n, _, _ in trained}):
        shares, alone = [], []
        for seed in seeds_of(world):
            runs = [trained[(name, task, seed)] for task in tasks_of(world) if (name, task, seed) in trained]
            shares.append(shared_store_cost(runs))
            alone.append(sum(sum(t.values()) + w for t, w, _ in runs) / runs[0][2])
        print(f"{name}, the six tasks on one store (any order; it uses no history, a trial an earlier search "
              f"trained is reused): new training = {np.mean(shares):.2f} of one grid ({np.mean(alone):.2f} "
              f"without reuse); mean regret {np.mean(regrets_of[name]):.3f} (its 18 cases)")


def timing() -> int:
    from harness.surrogate import Surrogate

    for n_enc, n_llm in ((8, 6), (25, 20)):
        cands = [(f"e{i}", f"l{j}") for i in range(n_enc) for j in range(n_llm)]
        s = Surrogate(cands)
        rng = np.random.default_rng(0)
        for k in range(min(60, len(cands))):
            s.observe(cands[k * 7 % len(cands)], RATIOS[k % 5], float(rng.random()), 0.01)
        t0 = time.perf_counter()
        s._post = None
        s.posterior()
        t1 = time.perf_counter()
        s.p_best(2000)
        t2 = time.perf_counter()
        s.information(RATIOS, np.ones(len(cands)), {})
        t3 = time.perf_counter()
        s.knowledge_gradient(RATIOS, {})
        t4 = time.perf_counter()
        print(f"{len(cands):4d} candidates, 60 observations: posterior {1e3 * (t1 - t0):.1f} ms, "
              f"P(best) (2000 draws) {1e3 * (t2 - t1):.1f} ms, information {1e3 * (t3 - t2):.1f} ms, "
              f"knowledge gradient {1e3 * (t4 - t3):.1f} ms")
    # whole replayed searches: each of the 18 cases of the shipped suite, in memory (no component
    # loaded, no row written), learned at its defaults
    from harness.suite import load_suite

    world = load_world()
    cands = [(c.vision_encoder, c.language_model) for c in load_suite(ROOT / "suites" / "minizoo.yaml").candidates()]
    specs = [(t, s) for t in tasks_of(world) for s in seeds_of(world)]
    for name in ("learned (history)", "learned (no history)", "SHA 1/16 eta 4", "Hyperband eta 4"):
        settings = learned_defaults(len(cands)) if name.startswith("learned") else {}
        t0 = time.perf_counter()
        for task, seed in specs:
            run_case(world, task, seed, cands, [name], **settings)
        per_minute = 60 * len(specs) / (time.perf_counter() - t0)
        print(f"{name:22s} {per_minute:8.0f} replayed searches a minute ({len(specs)} cases, {len(cands)} candidates)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
