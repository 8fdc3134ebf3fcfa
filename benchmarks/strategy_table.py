"""Every registered strategy, replayed on the shipped benchmark of record: one table.

    python benchmarks/strategies.py [--table benchmarks/tables/minizoo] [--suite suites/minizoo.yaml]
                                    [--tasks shapes:color ...] [--seeds 0 1 2] [--fill] [--with-dcd]
    python benchmarks/strategies.py --store bench/testbed.duckdb   # a testbed_report.py store

By default the shipped table (benchmarks/tables/minizoo: every candidate of the mini zoo at
r = 1/16 .. 1, every task) is imported into a scratch store and each strategy, and Mordal with
each registered stopping policy and predictor, is run on it by replay (``harness replay``): a
trial the table holds is looked up and charged at its original cost; clustering features it
lacks are computed (seconds); a trial it lacks makes the strategy "not replayable" unless
``--fill`` trains it. Each replay is judged against the table's grid of the same seed, over the
suite's own candidates, whose ground truth is the mean over the table's seeds at r = 1.
With ``--store`` the grid is the latest ``testbed-grid`` run of benchmarks/testbed_report.py
(plus its ``testbed-fidelities`` run, and with ``--with-searches`` the suite's live Mordal runs).
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
    """(grid run, replay sources) in a store built by benchmarks/testbed_report.py: the latest
    testbed-grid run, its multi-fidelity table, and with ``with_searches`` the suite's live (not
    replayed) Mordal runs."""
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


class Bench:
    """Where replays read from and write to: a shipped table imported into a scratch store (the
    default), or a store of benchmarks/testbed_report.py (``--store``). ``grid(seed)`` is the
    grid a replay of that seed is judged against; ``sources`` the runs it replays from."""

    def __init__(self, table: Path | None, store: Path | None, suite, with_searches: bool = False):
        import tempfile

        from harness.store import Store

        self._tmp = None
        if store is None:
            from harness.store.exchange import import_export, read_export

            self._tmp = tempfile.TemporaryDirectory(prefix="harness-bench-")
            self.path = Path(self._tmp.name) / "replays.duckdb"
            manifest = read_export(table)
            with Store.open(self.path) as st:
                import_export(st, manifest["folder"], manifest)
                self.sources = list(manifest["runs"])
                self.grids = {r["seed"]: r["run_id"] for r in st.query(
                    "select seed, run_id from runs where suite_name like 'table-grid-seed%'")}
            self.label = f"table {table}"
        else:
            self.path = store
            with Store.open(store, read_only=True) as st:
                grid, self.sources = grid_sources(st, suite, with_searches)
                self.grids = {suite.seed: grid}
            self.label = f"store {store}"

    def grid(self, seed: int) -> str | None:
        return self.grids.get(seed)

    def replay(self, suite, suite_path: Path, changes: dict, task: str, seed: int, fill: bool) -> dict:
        """:func:`replay_row` of ``suite`` on ``task`` with ``changes`` to its search section and
        the given seed, against that seed's grid; an error row when the source has no such grid."""
        grid = self.grid(seed)
        if grid is None:
            return {"error": f"the {self.label} has no grid for seed {seed}"}
        variant = with_search(suite, task, changes).model_copy(update={"seed": seed})
        return replay_row(variant, suite_path, self.path, self.sources, grid, task,
                          fill=fill, fill_embeddings=True)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def tied_with_top1(store, grid_run: str, task: str, best: list, pick: list) -> bool:
    """Whether the pick's ground-truth score is within one standard error of the grid's best:
    the difference of their means over the seeds at r = 1, against the SE of that difference
    (from the seed spread with 2+ seeds, else binomial over the test items)."""
    import math
    import statistics

    def values(c):
        return [(r["value"], r["n_items"]) for r in store.query("""
            select s.value, s.n_items from trials t join scores s using (trial_key)
            where t.encoder = ? and t.llm = ? and s.task = ? and t.sample_ratio = 1.0
              and t.status = 'done'""", [c[0], c[1], task])]

    stats = []
    for c in (best, pick):
        v = values(c)
        if not v:
            return False
        mean = statistics.mean(x for x, _ in v)
        if len(v) > 1:
            se = statistics.stdev(x for x, _ in v) / math.sqrt(len(v))
        else:
            se = math.sqrt(max(mean * (1 - mean), 0.0) / (v[0][1] or 1000))
        stats.append((mean, se))
    (m1, s1), (m2, s2) = stats
    return m1 - m2 <= math.hypot(s1, s2)


def replay_row(variant, suite_path: Path, store_path: Path, sources: list[str], grid_run: str,
               task: str, fill: bool, fill_embeddings: bool = False) -> dict:
    """Replay one suite variant on ``sources`` and measure it against the grid on ``task``: the
    replay's run, trials, filled trials, training samples (warm-ups included, every trial and
    warm-up at its original price), speedup over the grid of the variant's own candidates in
    samples and in seconds, top-1, weighted tau over the grid's top-10, NDCG@5; or its error."""
    from harness.errors import HarnessError
    from harness.report import compare
    from harness.runner import run_suite
    from harness.store import Store

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            run_suite(variant, suite_path, store_path, replay_from=sources, fill=fill,
                      fill_embeddings=fill_embeddings)
            failed = None
        except HarnessError as exc:
            failed = str(exc).splitlines()[0]
    with Store.open(store_path, read_only=True) as st:
        run_id = st.query("select run_id from runs order by started_at desc, run_id desc limit 1")[0]["run_id"]
        if failed is not None:
            return {"run": run_id, "error": failed}
        (cmp,) = [c for c in compare(st, run_id, grid_run) if c["task"] == task]
        trained = st.query("select trials_trained from run_costs where run_id = ?", [run_id])[0]
        tied = cmp["top1"] or tied_with_top1(st, grid_run, task, cmp["grid_best"], cmp["search_best"])
        return {"run": run_id, "trials": cmp["search_trials"], "filled": int(trained["trials_trained"]),
                "samples": cmp["search_samples"], "warmup_samples": cmp["search_warmup_samples"],
                "grid_samples": cmp["grid_samples"],
                "speedup": cmp["speedup_samples"], "speedup_seconds": cmp["speedup"],
                "top1": cmp["top1"], "top1_within_1se": tied, "weighted_tau": cmp["weighted_tau_top10"], "ndcg5": cmp["ndcg_at_5"],
                "best": cmp["search_best"], "grid_best": cmp["grid_best"]}


def add_source_args(parser) -> None:
    parser.add_argument("--table", type=Path, default=ROOT / "benchmarks" / "tables" / "minizoo",
                        help="the shipped table replays read from (default); see --store")
    parser.add_argument("--store", type=Path, default=None,
                        help="replay from a store of benchmarks/testbed_report.py instead of the table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training-noise worlds to replay in (the table's seeds; each figure "
                             "is reported per seed and over them)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default=str(ROOT / "suites" / "minizoo.yaml"))
    add_source_args(parser)
    parser.add_argument("--tasks", nargs="+", default=["shapes:color"],
                        help="target tasks (default one: about a minute on 2 cores; about 35 s a task more)")
    parser.add_argument("--only", nargs="*", default=None, help="labels of the variants to run")
    parser.add_argument("--fill", action="store_true",
                        help="train what the source lacks (default: report it as not replayable; "
                             "clustering features are always computed when missing)")
    parser.add_argument("--with-dcd", action="store_true",
                        help="also replay dcd (layer conductance for every candidate: about 2 minutes "
                             "a task on 2 cores; benchmarks/dcd_holdout.py measures it held out)")
    parser.add_argument("--with-searches", action="store_true",
                        help="with --store: also replay from the live Mordal runs of this suite "
                             "(benchmarks/search_efficiency.py)")
    args = parser.parse_args()

    import torch

    from harness.plugin_manager import get_components
    from harness.suite import load_suite

    torch.set_num_threads(2)
    suite = load_suite(args.suite)
    bench = Bench(args.table, args.store, suite, args.with_searches)
    rows = []
    try:
        for label, changes in variants(get_components()):
            if args.only and label not in args.only or (label == "dcd" and not args.with_dcd
                                                        and not args.only):
                continue
            for seed in args.seeds:
                for task in args.tasks:
                    row = {"strategy": label, "task": task, "seed": seed,
                           **bench.replay(suite, Path(args.suite), changes, task, seed, fill=args.fill)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        bench.close()

    print(f"\nreplayed on the {bench.label}; configurations as registered, not tuned on these tasks")
    print(f"{'strategy':<24}{'task':<15}{'seed':>5}{'trials':>7}{'filled':>7}{'samples':>10}{'speedup':>9}"
          f"{'top-1':>7}{'w.tau':>8}{'NDCG@5':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['strategy']:<24}{r['task']:<15}{r['seed']:>5}  not replayable: {r['error'][:70]}")
            continue
        print(f"{r['strategy']:<24}{r['task']:<15}{r['seed']:>5}{r['trials']:>7}{r['filled']:>7}{r['samples']:>10}"
              f"{r['speedup']:>8}x{('yes' if r['top1'] else 'no'):>7}{r['weighted_tau']:>8.3f}"
              f"{r['ndcg5']:>8.3f}")


if __name__ == "__main__":
    sys.exit(main())
