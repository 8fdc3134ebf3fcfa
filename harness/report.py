"""Per-run figures read back from the store: compute spent, a search's ranking against a
grid's (speedup, top-1, Kendall tau, weighted tau, NDCG@5), and what a model-based search's
prior from history said beside what the task's own data said."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from harness.errors import BadInput
from harness.measures import kendall_tau, ndcg_at, top1_match, weighted_tau


@dataclass
class RunCost:
    """One run's cost in the one cost model (the ``run_costs`` view).

    The charged figures (``samples_seen``, ``flops``, ``total_seconds``) are what the run would
    have cost had nothing been stored: every trial it used at its original cost, reused or
    failed, and every clustering feature and projector warm-up at its original price. They are
    the figures to compare with a grid. ``new_samples`` / ``new_seconds`` are what the run
    computed itself; what reuse saved is the difference."""

    run_id: str
    strategy: str
    trials: int  # distinct trials the run needed (failed ones included)
    trials_trained: int  # of those, trained by this run
    trial_seconds: float  # their original cost, reused or not
    samples_seen: int  # training samples: trials + warm-ups
    phase_seconds: float  # clustering features, warm-ups and other non-trial compute
    total_seconds: float
    trials_failed: int = 0
    trial_samples: int = 0
    phase_samples: int = 0  # projector warm-ups
    flops: float = 0.0  # approximate training FLOPs: samples x (2 x encoder + 6 x LLM parameters)
    eval_items: int = 0  # test items scored
    forward_passes: int = 0  # items embedded for clustering features
    new_samples: int = 0  # computed by this run itself
    new_seconds: float = 0.0


def run_cost(store, run_id: str) -> RunCost:
    """What ``run_id`` needed, every trial and feature charged at its original cost even when
    reused: a search is never cheaper because an earlier run already paid."""
    rows = store.query("select * from run_costs where run_id = ?", [run_id])
    if not rows:
        raise BadInput(f"no run {run_id!r} in the store; list runs with: harness sql "
                       "\"select run_id, suite_name, strategy, status from runs\"")
    r = rows[0]
    return RunCost(run_id, r["strategy"], int(r["trials"]), int(r["trials_trained"]),
                   float(r["trial_seconds"]), int(r["samples"]), float(r["phase_seconds"]),
                   float(r["seconds"]), trials_failed=int(r["trials_failed"]),
                   trial_samples=int(r["trial_samples"]), phase_samples=int(r["phase_samples"]),
                   flops=float(r["flops"]), eval_items=int(r["eval_items"]),
                   forward_passes=int(r["forward_passes"]), new_samples=int(r["new_samples"]),
                   new_seconds=float(r["new_seconds"]))


def grid_cost_over(store, grid_id: str, candidates: set) -> RunCost:
    """A grid run's cost counting only its trials of ``candidates`` ((encoder, LLM) pairs): the
    grid of a search over a sub-zoo (a suite of 48 replayed on a table of 70)."""
    full = run_cost(store, grid_id)
    rows = store.query("""
        select t.encoder, t.llm, coalesce(t.samples_seen, 0) as samples, coalesce(t.wall_seconds, 0) as seconds,
               coalesce(t.samples_seen, 0) * (2.0 * coalesce(e.n_params, 0) + 6.0 * coalesce(l.n_params, 0)) as flops,
               t.status, not u.reused as trained,
               (select coalesce(sum(n_items), 0) from scores s where s.trial_key = t.trial_key) as eval_items
        from (select key, bool_and(reused) as reused from run_uses
              where run_id = ? and kind = 'trial' group by key) u
        join trials t on t.trial_key = u.key
        left join components e on e.fingerprint = t.encoder_fingerprint
        left join components l on l.fingerprint = t.llm_fingerprint
        where t.status in ('done', 'failed')""", [grid_id])
    rows = [r for r in rows if (r["encoder"], r["llm"]) in candidates]
    samples = sum(int(r["samples"]) for r in rows)
    seconds = sum(float(r["seconds"]) for r in rows)
    return RunCost(grid_id, full.strategy, len(rows), sum(bool(r["trained"]) for r in rows), seconds,
                   samples, 0.0, seconds, trials_failed=sum(r["status"] == "failed" for r in rows),
                   trial_samples=samples, flops=sum(float(r["flops"]) for r in rows),
                   eval_items=sum(int(r["eval_items"]) for r in rows),
                   new_samples=sum(int(r["samples"]) for r in rows if r["trained"]),
                   new_seconds=sum(float(r["seconds"]) for r in rows if r["trained"]))


def phase_breakdown(store, run_id: str) -> dict[str, dict]:
    """Where a run's cost went: trials by the stage that asked for them (from ``rungs``, else
    ``trials``) and each kind of phase (features, warm-ups), charged at original prices."""
    out: dict[str, dict] = {}
    for row in store.query(
            "select split_part(phase, '@', 1) as phase, sum(coalesce(cost_samples, samples_seen, 0)) as samples,"
            " sum(coalesce(cost_seconds, wall_seconds)) as seconds from phase_costs where run_id = ?"
            " group by 1 order by 1", [run_id]):
        out[row["phase"]] = {"samples": int(row["samples"]), "seconds": round(float(row["seconds"]), 2)}
    for row in store.query("""
            with used as (select distinct key from run_uses where run_id = ? and kind = 'trial'),
            staged as (select trial_key, min(phase) as phase from rungs where run_id = ? group by 1)
            select coalesce(s.phase, 'trials') as phase, sum(coalesce(t.samples_seen, 0)) as samples,
                   sum(coalesce(t.wall_seconds, 0)) as seconds
            from used u join trials t on t.trial_key = u.key left join staged s on s.trial_key = u.key
            group by 1 order by 1""", [run_id, run_id]):
        out[f"trials:{row['phase']}"] = {"samples": int(row["samples"]),
                                         "seconds": round(float(row["seconds"]), 2)}
    return out


def ranking(store, run_id: str) -> dict[str, list[dict]]:
    """task -> the run's ranking rows, best first."""
    out: dict[str, list[dict]] = {}
    for row in store.query("select task, rank, encoder, llm, score, measured_or_predicted"
                           " from rankings where run_id = ? order by task, rank", [run_id]):
        out.setdefault(row["task"], []).append(row)
    return out


def compare(store, run_a: str, run_b: str) -> list[dict]:
    """One dict per shared task: the search run against the grid run (either order; ``run_b``
    is the reference when both are grids)."""
    costs = {r: run_cost(store, r) for r in (run_a, run_b)}
    truth = {r["run_id"] for r in store.query(
        "select run_id from runs where ground_truth and run_id in (?, ?)", [run_a, run_b])}
    grid_runs = [r for r in (run_a, run_b) if r in truth]
    if not grid_runs:
        raise BadInput(f"neither {run_a} nor {run_b} is a grid run; compare a search against "
                       "the grid run of the same zoo, data and training config")
    # the reference is the grid; when both are grids (a replayed grid strategy against the
    # table's), the second run is the reference
    grid_id = grid_runs[-1]
    search_id = run_b if grid_id == run_a else run_a
    grid_rank, search_rank = ranking(store, grid_id), ranking(store, search_id)
    shared = sorted(set(grid_rank) & set(search_rank))
    if not shared:
        raise BadInput(f"runs {grid_id} and {search_id} ranked no task in common")
    out = []
    for task in shared:
        order = [(r["encoder"], r["llm"]) for r in search_rank[task]]
        # a grid over a larger zoo than the search's (a shipped table) is judged, and charged,
        # over the search's candidates only: its best outside them is not a miss
        zoo = set(order)
        scores = {(r["encoder"], r["llm"]): r["score"] for r in grid_rank[task]
                  if r["score"] is not None and (r["encoder"], r["llm"]) in zoo}
        if not scores:
            raise BadInput(f"grid {grid_id} scored none of the candidates {search_id} ranked on {task}")
        # the search's candidates the grid lacks cannot be judged: the ranking is compared on
        # the ones it has (a replay that filled trials for a larger zoo than the grid's)
        unjudged = len([c for c in order if c not in scores])
        pick = order[0] if order else None
        order = [c for c in order if c in scores]
        grid_cost, search_cost = costs[grid_id], costs[search_id]
        wider = {(r["encoder"], r["llm"]) for r in grid_rank[task]} - zoo
        if wider:
            grid_cost = grid_cost_over(store, grid_id, zoo)
        out.append({
            "task": task, "grid_run": grid_id, "search_run": search_id,
            "grid_candidates": len(scores), "search_candidates_not_in_grid": unjudged,
            "search_strategy": search_cost.strategy,
            "grid_seconds": round(grid_cost.total_seconds, 2),
            "search_seconds": round(search_cost.total_seconds, 2),
            "speedup": round(grid_cost.total_seconds / max(search_cost.total_seconds, 1e-9), 3),
            "speedup_samples": round(grid_cost.samples_seen / max(search_cost.samples_seen, 1), 3),
            "speedup_flops": round(grid_cost.flops / search_cost.flops, 3) if search_cost.flops else None,
            "grid_samples": grid_cost.samples_seen, "search_samples": search_cost.samples_seen,
            "search_warmup_samples": search_cost.phase_samples,
            "grid_eval_items": grid_cost.eval_items, "search_eval_items": search_cost.eval_items,
            "search_forward_passes": search_cost.forward_passes,
            "search_failed_trials": search_cost.trials_failed,
            "search_new_samples": search_cost.new_samples,
            "search_new_seconds": round(search_cost.new_seconds, 2),
            "search_phases": phase_breakdown(store, search_id),
            "grid_trials": grid_cost.trials, "search_trials": search_cost.trials,
            "top1": pick in scores and top1_match(scores, order),  # a pick the grid lacks: not judged a hit
            "grid_best": list(max(scores, key=scores.get)), "search_best": list(pick),
            "kendall_tau_top10": round(kendall_tau(scores, order, 10), 4),
            "weighted_tau_top10": round(weighted_tau(scores, order, 10), 4),
            "ndcg_at_5": round(ndcg_at(scores, order, 5), 4),
        })
    return out


# -- prior vs data (strategy learned, issue 33) ---------------------------------------------------

MOVERS_SHOWN = 3  # at most this many candidates are shown for a large move between prior and posterior


@dataclass
class PriorView:
    """What a model-based search (``search_prior`` rows) believed of its candidates on one
    objective before its own data and after, with the history that informed the prior."""

    run_id: str
    task: str
    rows: list[dict]  # the rows shown (search_prior, each with "roles"), posterior rank first
    history: dict[str, list[str]]  # history task -> the runs whose scores informed the prior
    flat: bool  # no history, or a prior that did not tell the candidates apart
    lead: str  # one sentence: did the task's own data agree with history?
    candidates: int = 0
    moved: int = 0  # a rank change of at least this much is shown as a move
    unscored: int = 0  # candidates history had no score of (their prior is history's average)
    history_option: object = "auto"  # the run's search.options.history
    against_history: bool = False  # the prior orders candidates opposite to their history z-scores
    all_rows: list[dict] = field(default_factory=list)


def candidate_name(row: dict) -> str:
    return f"{row['encoder']} + {row['llm']}"


def p_text(p: float) -> str:
    """A probability to two decimals, never rounded to a certainty it is not (``>0.99``)."""
    if 0 < p < 0.005:
        return "<0.01"
    if 0.995 <= p < 1:
        return ">0.99"
    return f"{p:.2f}"


def prior_vs_data(store, run_id: str) -> list[PriorView]:
    """One :class:`PriorView` per objective of ``run_id``'s ``search_prior`` rows; empty for a
    run that wrote none (any strategy but learned, or a store older than migration m016)."""
    if not store.has_table("search_prior"):
        return []
    rows = store.query("select * from search_prior where run_id = ? order by task, posterior_rank, encoder, llm",
                       [run_id])
    if not rows:
        return []
    history: dict[str, list[str]] = {}
    if store.has_table("search_history"):
        for r in store.query("select task, source_run from search_history where run_id = ?"
                             " order by task, source_run", [run_id]):
            history.setdefault(r["task"], []).append(r["source_run"])
    config = (store.query("select config from runs where run_id = ?", [run_id]) or [{}])[0].get("config")
    config = json.loads(config) if isinstance(config, str) else (config or {})
    option = ((config.get("search") or {}).get("options") or {}).get("history", "auto")
    ranked = store.query("select task, rank, encoder, llm from rankings where run_id = ? and rank <= 2"
                         " order by task, rank", [run_id])
    return [_prior_view(run_id, task, [r for r in rows if r["task"] == task], history, option,
                        [(r["encoder"], r["llm"]) for r in ranked if r["task"] == task])
            for task in dict.fromkeys(r["task"] for r in rows)]


def _prior_view(run_id: str, task: str, rows: list[dict], history: dict, option, top: list) -> PriorView:
    """``top``: the run's pick and runner-up on ``task`` (its rankings); the posterior's first
    two where the run ranked none."""
    n = len(rows)
    means = [float(r["prior_mean"]) for r in rows]
    flat = not history or max(means) - min(means) <= 1e-12
    by_post = sorted(rows, key=lambda r: r["posterior_rank"])
    index = {(r["encoder"], r["llm"]): r for r in rows}
    top = [index[c] for c in top if c in index] or by_post[:2]
    pick, runner = top[0], (top[1] if len(top) > 1 else None)
    hist_pick = min(rows, key=lambda r: r["prior_rank"])
    moved = max(2, math.ceil(n / 4))
    roles: dict[tuple, list[str]] = {}

    def role(r, label):
        roles.setdefault((r["encoder"], r["llm"]), []).append(label)

    role(pick, "pick")
    if runner is not None:
        role(runner, "runner-up")
    # the ranking sorts a score measured at r = 1 as measured (harness.evidence), so its pick can
    # differ from the posterior's top: both are shown
    post_top = by_post[0]
    if post_top is not pick:
        role(post_top, "posterior's top")
    if not flat:
        role(hist_pick, "history's pick")
        movers = [r for r in rows if abs(r["prior_rank"] - r["posterior_rank"]) >= moved
                  and (r["encoder"], r["llm"]) not in roles]
        movers.sort(key=lambda r: (-abs(r["prior_rank"] - r["posterior_rank"]), r["posterior_rank"]))
        for r in movers[:MOVERS_SHOWN]:
            shift = r["prior_rank"] - r["posterior_rank"]
            role(r, f"moved {'up' if shift > 0 else 'down'} {abs(shift)}")
    shown = [{**r, "roles": roles[(r["encoder"], r["llm"])]} for r in by_post if (r["encoder"], r["llm"]) in roles]
    p = p_text(float(pick["p_best"]))
    p = p if p[0] in "<>" else f"={p}"  # P(best)=0.93, P(best)>0.99
    if not history:
        lead = (f"no history: the prior was flat; the task's own data put {candidate_name(pick)} "
                f"at the top (P(best){p})")
    elif flat:
        lead = (f"history ({', '.join(history)}) did not tell the candidates apart: the prior was flat; "
                f"the task's own data put {candidate_name(pick)} at the top (P(best){p})")
    elif (hist_pick["encoder"], hist_pick["llm"]) == (pick["encoder"], pick["llm"]):
        lead = (f"the task's data agreed with history: history's pick {candidate_name(pick)} (prior rank 1) "
                f"stayed at the top (P(best){p})")
    else:
        lead = (f"history's pick was {candidate_name(hist_pick)} (prior rank 1, posterior rank "
                f"{hist_pick['posterior_rank']}); the task's own data moved {candidate_name(pick)} from prior "
                f"rank {pick['prior_rank']} to the top (P(best){p})")
    if post_top is not pick:
        lead += (f"; the posterior mean ranks {candidate_name(post_top)} first ({post_top['posterior_mean']:.4f} "
                 f"against {pick['posterior_mean']:.4f})")
    unscored = sum(r["history_z"] is None for r in rows) if history else 0
    # the prior is linear in history z (the surrogate's mean + weight x z): a prior mean that
    # falls as z rises is a negative weight
    scored = sorted((float(r["history_z"]), float(r["prior_mean"])) for r in rows if r["history_z"] is not None)
    against = (not flat and len(scored) > 1 and scored[-1][0] > scored[0][0] + 1e-12
               and scored[-1][1] < scored[0][1] - 1e-12)
    return PriorView(run_id, task, shown, history, flat, lead, n, moved, unscored, option, against, by_post)
