"""Per-run figures read back from the store: compute spent, and a search's ranking against a
grid's (speedup, top-1, Kendall tau, weighted tau, NDCG@5)."""

from __future__ import annotations

from dataclasses import dataclass

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
