"""Per-run figures read back from the store: compute spent, and a search's ranking against a
grid's (speedup, top-1, Kendall tau, weighted tau, NDCG@5)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.errors import BadInput
from harness.measures import kendall_tau, ndcg_at, top1_match, weighted_tau


@dataclass
class RunCost:
    run_id: str
    strategy: str
    trials: int  # distinct trials the run needed
    trials_trained: int  # of those, trained by this run
    trial_seconds: float  # their original cost, reused or not
    samples_seen: int
    phase_seconds: float  # clustering and other non-trial compute
    total_seconds: float


def run_cost(store, run_id: str) -> RunCost:
    """What ``run_id`` needed, each trial charged at its original cost even when reused: a
    search is never cheaper because an earlier run already paid."""
    runs = store.query("select strategy from runs where run_id = ?", [run_id])
    if not runs:
        raise BadInput(f"no run {run_id!r} in the store; list runs with: harness sql "
                       "\"select run_id, suite_name, strategy, status from runs\"")
    row = store.query(
        "select count(*) as n, coalesce(sum(case when not u.reused then 1 else 0 end), 0) as trained,"
        " coalesce(sum(t.wall_seconds), 0) as secs, coalesce(sum(t.samples_seen), 0) as samples"
        " from run_uses u join trials t on t.trial_key = u.key"
        " where u.run_id = ? and u.kind = 'trial' and t.status = 'done'", [run_id])[0]
    phases = store.query("select coalesce(sum(wall_seconds), 0) as secs from phase_costs"
                         " where run_id = ?", [run_id])[0]["secs"]
    return RunCost(run_id, runs[0]["strategy"], int(row["n"]), int(row["trained"]),
                   float(row["secs"]), int(row["samples"]), float(phases),
                   float(row["secs"]) + float(phases))


def ranking(store, run_id: str) -> dict[str, list[dict]]:
    """task -> the run's ranking rows, best first."""
    out: dict[str, list[dict]] = {}
    for row in store.query("select task, rank, encoder, llm, score, measured_or_predicted"
                           " from rankings where run_id = ? order by task, rank", [run_id]):
        out.setdefault(row["task"], []).append(row)
    return out


def compare(store, run_a: str, run_b: str) -> list[dict]:
    """One dict per shared task: the search run against the grid run (either order)."""
    costs = {r: run_cost(store, r) for r in (run_a, run_b)}
    grid_runs = [r for r in (run_a, run_b) if costs[r].strategy == "grid"]
    if not grid_runs:
        raise BadInput(f"neither {run_a} nor {run_b} is a grid run; compare a search against "
                       "the grid run of the same zoo, data and training config")
    grid_id = grid_runs[0]
    search_id = run_b if grid_id == run_a else run_a
    grid_rank, search_rank = ranking(store, grid_id), ranking(store, search_id)
    shared = sorted(set(grid_rank) & set(search_rank))
    if not shared:
        raise BadInput(f"runs {grid_id} and {search_id} ranked no task in common")
    out = []
    for task in shared:
        scores = {(r["encoder"], r["llm"]): r["score"] for r in grid_rank[task]
                  if r["score"] is not None}
        order = [(r["encoder"], r["llm"]) for r in search_rank[task]]
        grid_cost, search_cost = costs[grid_id], costs[search_id]
        out.append({
            "task": task, "grid_run": grid_id, "search_run": search_id,
            "search_strategy": search_cost.strategy,
            "grid_seconds": round(grid_cost.total_seconds, 2),
            "search_seconds": round(search_cost.total_seconds, 2),
            "speedup": round(grid_cost.total_seconds / max(search_cost.total_seconds, 1e-9), 3),
            "speedup_samples": round(grid_cost.samples_seen / max(search_cost.samples_seen, 1), 3),
            "grid_trials": grid_cost.trials, "search_trials": search_cost.trials,
            "top1": top1_match(scores, order),
            "grid_best": list(max(scores, key=scores.get)), "search_best": list(order[0]),
            "kendall_tau_top10": round(kendall_tau(scores, order, 10), 4),
            "weighted_tau_top10": round(weighted_tau(scores, order, 10), 4),
            "ndcg_at_5": round(ndcg_at(scores, order, 5), 4),
        })
    return out


def cost_dict(cost: RunCost) -> dict:
    return asdict(cost)
