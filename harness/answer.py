"""The answer a user sees, read back from the store: the pick, the runner-up, how sure the run
is of the pick, what it cost against the grid-equivalent, how to get a search-vs-grid
comparison when the store holds no grid, and, for a search with a prior from history (strategy
learned), whether the task's own data agreed with history. One owner for these sentences:
``harness run`` prints them, ``harness report`` leads with them.

How sure: the gap between the pick's and the runner-up's full-data estimates over the standard
error of the difference (a measured score's SE is binomial over its test items; a prediction's
is its 95% interval over 2 x 1.96), read with its sign, and P(pick > runner-up) under a normal
model of that difference. ``separated beyond noise`` needs a gap above ``SEPARATION_Z`` SE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.store.reads import judging_grid, judging_grids  # noqa: F401  (their home since issue 32)

SEPARATION_Z = 2.0  # a gap above this many standard errors of the difference separates two scores


@dataclass
class Answer:
    run_id: str
    task: str | None
    pick: dict | None  # the rank-1 rankings row, with "se"
    runner_up: dict | None
    gap: float | None = None  # pick - runner-up
    gap_se: float | None = None  # the standard error of that gap
    verdict: str = ""  # one sentence, read with the gap's sign
    p_pick_better: float | None = None  # P(pick > runner-up), normal model of the gap
    samples: int | None = None  # what the run was charged (empty-store price)
    grid: dict | None = None  # {"label", "samples", "estimated", "run_id"} or None
    grid_hint: str | None = None  # how to get a search-vs-grid comparison, when no grid is stored
    lines: list[str] = field(default_factory=list)  # the sentences, in the order they are shown


def row_se(row: dict) -> float | None:
    """A ranked score's standard error: the stored ``error`` of a measured score, or the 95%
    interval of a predicted one over 2 x 1.96; None when the store has neither."""
    if row.get("score") is None or _nan(row["score"]):
        return None
    if row.get("error") is not None and not _nan(row["error"]):
        return float(row["error"])
    lo, hi = row.get("lower"), row.get("upper")
    if lo is not None and hi is not None and not (_nan(lo) or _nan(hi)):
        return (float(hi) - float(lo)) / (2 * 1.96)
    return None


def separation(s1: float, se1: float | None, s2: float, se2: float | None) -> tuple[float, float | None, str, float | None]:
    """(gap, SE of the gap, verdict, P(first > second)) of two scores with standard errors; the
    verdict reads the sign: a runner-up better by more than noise is said so."""
    gap = s1 - s2
    if se1 is None or se2 is None:
        return gap, None, ("a score has no standard error here, so whether they are separated "
                           "beyond noise is not known"), None
    se = math.hypot(se1, se2)
    if se <= 0:
        # both at 0 or 1 of their items: the binomial error is 0, but they were still measured
        # on finitely many items, so only a strict gap is a verdict
        return gap, 0.0, ("pick better (both scores at 0 or 100% of their items)" if gap > 0 else
                          "tied: not separated (both scores at 0 or 100% of their items)" if gap == 0 else
                          "runner-up better (both scores at 0 or 100% of their items)"), \
            (1.0 if gap > 0 else 0.5 if gap == 0 else 0.0)
    z = gap / se
    p = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    if z > SEPARATION_Z:
        verdict = f"pick better by {z:.1f} SE: separated beyond noise"
    elif z < -SEPARATION_Z:
        verdict = f"runner-up better by {-z:.1f} SE: the ranking contradicts its own scores"
    elif z >= 0:
        verdict = f"pick ahead by {z:.1f} SE: not separated beyond noise"
    else:
        verdict = f"runner-up ahead by {-z:.1f} SE: not separated beyond noise"
    return gap, se, verdict, p


def describe(row: dict) -> str:
    """``0.2650 +- 0.0312 (measured at r=0.5)``: a ranked score and where it comes from."""
    if row.get("score") is None or _nan(row["score"]):
        return "no score"
    se = row_se(row)
    basis = row.get("basis") or row.get("measured_or_predicted")
    if basis == "predicted" or row.get("measured_or_predicted") == "predicted":
        where = "predicted for r=1"
    else:
        ratio = row.get("sample_ratio")
        where = f"measured at r={1.0 if ratio is None else ratio:g}"
        if (row.get("stage") or "").startswith("eliminated"):
            where += ", then eliminated"
    return f"{row['score']:.4f}" + (f" +- {se:.4f}" if se else "") + f" ({where})"


def grid_equivalent(store, run: dict, ranking: list[dict], grid_id: str | None) -> dict | None:
    """What the grid over the run's candidates costs: the judging grid's own trials when there
    is one, else every candidate at the samples of one full-data trial of this run."""
    from harness.report import grid_cost_over

    candidates = {(r["encoder"], r["llm"]) for r in ranking}
    if grid_id is not None:
        cost = grid_cost_over(store, grid_id, candidates)
        return {"label": f"grid of {cost.trials} (run {grid_id})", "samples": cost.samples_seen,
                "seconds": cost.total_seconds, "estimated": False, "run_id": grid_id}
    rows = store.query(
        "select max(t.samples_seen / t.sample_ratio) as per"
        " from run_uses u join trials t on t.trial_key = u.key"
        " where u.run_id = ? and u.kind = 'trial' and t.status = 'done' and t.sample_ratio > 0", [run["run_id"]])
    per = rows[0]["per"] if rows else None
    if not per:
        return None
    return {"label": f"grid of {len(candidates)} candidates at r = 1 (estimated)", "samples": int(round(per * len(candidates))),
            "seconds": None, "estimated": True, "run_id": None}  # a trial's seconds do not scale with r


def times(grid: float, spent: float) -> str:
    """What a run spent against the grid: ``4.4x fewer``, or ``1.3x more``."""
    if grid >= spent:
        return f"{grid / max(spent, 1):.1f}x fewer"
    return f"{spent / max(grid, 1):.1f}x more"


def grid_hint(run: dict, suite_path=None) -> str:
    """How to get a search-vs-grid comparison for ``run``: train the grid of the same suite
    (reusing every trial the search stored), then compare."""
    suite = suite_path or "SUITE.yaml"
    return (f"no grid of these candidates is in the store: for a search-vs-grid comparison run "
            f"`harness run {suite} --strategy grid` (every candidate at r = 1, reusing what this "
            f"search trained), then `harness report {run['run_id']}` or `harness compare "
            f"{run['run_id']} GRID_RUN`")


def answer_of(store, run_id: str, suite_path=None, grid_run: str | None = None) -> Answer:
    """The answer of ``run_id`` as stored: pick, runner-up, verdict, cost, grid (``suite_path``
    names the suite in the grid hint; ``grid_run`` judges it instead of ``judging_grid``'s)."""
    from harness.report import run_cost

    run = store.query("select * from runs where run_id = ?", [run_id])[0]
    ranking = store.query("select * from rankings where run_id = ? order by task, rank", [run_id])
    from harness.strategy import objective_first

    tasks = objective_first(dict.fromkeys(r["task"] for r in ranking))
    per_target = {t: [r for r in ranking if r["task"] == t] for t in tasks[1:]}
    ranking = [r for r in ranking if tasks and r["task"] == tasks[0]]
    for r in ranking:
        r["se"] = row_se(r)
    out = Answer(run_id, tasks[0] if tasks else None, ranking[0] if ranking else None,
                 ranking[1] if len(ranking) > 1 else None)
    if out.pick is not None:
        p = out.pick
        out.lines.append(f"best VLM: {p['encoder']} + {p['llm']}: {describe(p)}")
    if out.runner_up is not None:
        r = out.runner_up
        out.lines.append(f"runner-up: {r['encoder']} + {r['llm']}: {describe(r)}")
        if p["score"] is not None and r["score"] is not None and not (_nan(p["score"]) or _nan(r["score"])):
            out.gap, out.gap_se, out.verdict, out.p_pick_better = separation(p["score"], p["se"], r["score"], r["se"])
            line = f"pick vs runner-up: gap {out.gap:+.4f}"
            if out.gap_se:
                line += f", {out.verdict}"
                if out.p_pick_better is not None:
                    line += f"; P(pick better) {out.p_pick_better:.2f}"
            else:
                line += f": {out.verdict}"
            out.lines.append(line)
    for task, rows in per_target.items():
        if rows:
            out.lines.append(f"best on {task}: {rows[0]['encoder']} + {rows[0]['llm']}: {describe(rows[0])}")
    if ranking:
        from harness.report import prior_vs_data

        # a model-based search with a prior (strategy learned): did the task's own data agree
        # with history? (its table is in `harness report`)
        out.lines += [v.lead for v in prior_vs_data(store, run_id) if v.task == out.task]
    if not run.get("ground_truth") and ranking:
        grid_id = grid_run or judging_grid(store, run)
        out.grid = grid_equivalent(store, run, ranking, grid_id)
        try:
            out.samples = run_cost(store, run_id).samples_seen
        except Exception:  # noqa: BLE001 - a run with no cost row: say nothing of cost
            out.samples = None
        if out.grid and out.samples:
            g = out.grid
            out.lines.append(f"spent {out.samples:,} training samples (warm-ups included) vs "
                             f"{g['samples']:,} for the {g['label']}: {times(g['samples'], out.samples)}")
        if grid_id is None:
            out.grid_hint = grid_hint(run, suite_path)
            out.lines.append(out.grid_hint)
    return out


def _nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)
