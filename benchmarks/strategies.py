"""Every registered strategy, replayed on one stored grid of the miniature zoo: one table.

    python benchmarks/strategies.py [--store bench/testbed.duckdb] [--suite suites/minizoo.yaml]
                                    [--tasks shapes:color shapes:count shapes:digits] [--no-fill]

The grid is the latest ``testbed-grid`` run of benchmarks/testbed_report.py in the store (r = 1,
every candidate), plus its ``testbed-fidelities`` run when there is one (every candidate at small
ratios: a multi-fidelity table), plus with ``--with-searches`` the live Mordal runs of the suite. Each strategy, and Mordal with each registered stopping policy
and predictor, is run by replay (``harness replay``) against those runs: a trial the table holds
is looked up and charged at its original cost; one it lacks is trained (``--fill``, the default)
and charged the same way, or, with ``--no-fill``, the strategy is reported as not replayable.
Per strategy and task: trials, training samples, speedup vs the grid in samples, top-1,
weighted tau over the grid's top-10, NDCG@5. JSON lines, then a table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def variants(components) -> list[tuple[str, dict]]:
    """(label, search-section changes): each strategy, and Mordal with each policy and predictor."""
    out = []
    for name in sorted(components["search_strategy"].names()):
        out.append((name, {"strategy": name}))
    for policy in sorted(components["stopping_policy"].names()):
        if policy not in ("sha", "none"):
            out.append((f"mordal+{policy}", {"strategy": "mordal", "inter": {"policy": policy},
                                            "intra": {"policy": policy}}))
    for predictor in sorted(components["predictor"].names()):
        if predictor != "loglinear":
            out.append((f"mordal+{predictor}", {"strategy": "mordal", "predictor": {"name": predictor}}))
    out.append(("mordal-no-clustering", {"strategy": "mordal", "clustering": {"enabled": False}}))
    out.append(("mordal-no-early-stop", {"strategy": "mordal", "early_stopping": False}))
    out.append(("mordal-no-prediction", {"strategy": "mordal", "predictor": {"enabled": False}}))
    return out


def with_search(suite, task: str, changes: dict):
    """The suite for one task with its search section changed (validated like a suite file)."""
    from harness.suite import Suite

    data = suite.model_dump(mode="json")
    data["targets"] = [t for t in data["targets"] if t["task"] == task]
    for key, value in changes.items():
        if isinstance(value, dict):
            data["search"][key] = {**data["search"][key], **value}
        else:
            data["search"][key] = value
    return Suite.model_validate(data)


def grid_sources(store, suite, with_searches: bool) -> tuple[str, list[str]]:
    """(grid run, replay sources): the latest testbed-grid run, its multi-fidelity table, and
    with ``with_searches`` the suite's live (not replayed) Mordal runs."""
    latest = {r["suite_name"]: r["run_id"] for r in store.query(
        "select suite_name, run_id from runs where status = 'done' and suite_name in"
        " ('testbed-grid', 'testbed-fidelities') order by started_at")}
    searches = [r["run_id"] for r in store.query(
        "select run_id from runs where status = 'done' and strategy = 'mordal' and suite_name = ?"
        " and config->>'replay' is null", [suite.name])] if with_searches else []
    if "testbed-grid" not in latest:
        raise SystemExit(f"no testbed-grid run in {store.path}: run benchmarks/testbed_report.py first")
    grid_run = latest["testbed-grid"]
    sources = [grid_run] + ([latest["testbed-fidelities"]] if "testbed-fidelities" in latest else [])
    return grid_run, sources + searches


def replay_row(variant, suite_path: Path, store_path: Path, sources: list[str], grid_run: str,
               task: str, fill: bool, fill_embeddings: bool = False) -> dict:
    """Replay one suite variant on ``sources`` and measure it against the grid on ``task``: the
    replay's run, trials, filled trials, samples (clustering warm-up included), speedup in
    samples, top-1, weighted tau over the grid's top-10, NDCG@5; or its error."""
    from harness.store import Store

    from harness.errors import HarnessError
    from harness.report import compare, run_cost
    from harness.runner import run_suite

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            run_suite(variant, suite_path, store_path, replay_from=sources, fill=fill,
                      fill_embeddings=fill_embeddings)
            failed = None
        except HarnessError as exc:
            failed = str(exc).splitlines()[0]
    with Store.open(store_path, read_only=True) as st:
        run_id = st.query("select run_id from runs order by started_at desc limit 1")[0]["run_id"]
        if failed is not None:
            return {"run": run_id, "error": failed}
        cost = run_cost(st, run_id)
        warm = st.query("select coalesce(sum(samples_seen), 0) as n from phase_costs"
                        " where run_id = ?", [run_id])[0]["n"]
        (cmp,) = [c for c in compare(st, run_id, grid_run) if c["task"] == task]
        grid_samples = run_cost(st, grid_run).samples_seen
        samples = cost.samples_seen + int(warm)
        return {"run": run_id, "trials": cost.trials, "filled": cost.trials_trained, "samples": samples,
                "speedup": round(grid_samples / max(samples, 1), 2), "top1": cmp["top1"],
                "weighted_tau": cmp["weighted_tau_top10"], "ndcg5": cmp["ndcg_at_5"],
                "best": cmp["search_best"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default=str(ROOT / "suites" / "minizoo.yaml"))
    parser.add_argument("--store", default=str(ROOT / "bench" / "testbed.duckdb"))
    parser.add_argument("--tasks", nargs="+", default=["shapes:color", "shapes:count", "shapes:digits"])
    parser.add_argument("--only", nargs="*", default=None, help="labels of the variants to run")
    parser.add_argument("--no-fill", action="store_true", help="never train: report what is missing")
    parser.add_argument("--with-searches", action="store_true",
                        help="also replay from the live Mordal runs of this suite in the store "
                             "(benchmarks/search_efficiency.py), whose small-ratio trials then need no fill")
    args = parser.parse_args()

    import torch
    from harness.store import Store

    from harness.plugin_manager import get_components
    from harness.suite import load_suite

    torch.set_num_threads(2)
    suite = load_suite(args.suite)
    with Store.open(args.store, read_only=True) as st:
        grid_run, sources = grid_sources(st, suite, args.with_searches)
    rows = []
    for label, changes in variants(get_components()):
        if args.only and label not in args.only:
            continue
        for task in args.tasks:
            row = {"strategy": label, "task": task,
                   **replay_row(with_search(suite, task, changes), Path(args.suite), Path(args.store),
                                sources, grid_run, task, fill=not args.no_fill)}
            rows.append(row)
            print(json.dumps(row), flush=True)

    print(f"\n{'strategy':<24}{'task':<15}{'trials':>7}{'filled':>7}{'samples':>10}{'speedup':>9}"
          f"{'top-1':>7}{'w.tau':>8}{'NDCG@5':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['strategy']:<24}{r['task']:<15}  not replayable: {r['error'][:70]}")
            continue
        print(f"{r['strategy']:<24}{r['task']:<15}{r['trials']:>7}{r['filled']:>7}{r['samples']:>10}"
              f"{r['speedup']:>8}x{('yes' if r['top1'] else 'no'):>7}{r['weighted_tau']:>8.3f}"
              f"{r['ndcg5']:>8.3f}")


if __name__ == "__main__":
    sys.exit(main())
