"""What the benchmarks share (issue 32): one small library, so no benchmark keeps its own copy of
a path, a short name, a rank correlation, a ground truth, a grid read or the replay loop.

- paths and defaults: ``ROOT``, ``TABLE`` (the shipped benchmark of record), ``TASKS``, ``RATIOS``;
- argument helpers: :func:`arg_parser`, :func:`add_suite`, :func:`add_table`, :func:`add_testbed_store`,
  :func:`add_replay_args`;
- names: :func:`short` (``mini:clip-vit-s`` -> ``clip-vit-s``) and :func:`pair` (a candidate);
- rank correlations between two score lists or dicts: :func:`tau`, :func:`spearman` (scipy); a
  search's ranking against a grid is measured by ``harness.measures`` (kendall_tau, weighted_tau,
  ndcg_at, top1_match), never here;
- ground truth: :func:`mean_se`, :func:`ground_truth` (mean and SE over the seeds at r = 1);
- tables and stores: :func:`table_views` (a shipped table's Parquet files as DuckDB views),
  :func:`imported_table` (a table in a scratch store), :func:`latest_run`, :func:`grid_scores`,
  :func:`testbed_sources`, :func:`trial_specs`;
- the replay bench: :class:`Bench`, :func:`with_search`, :func:`replay_row`; a replay is judged
  against ``harness.answer.judging_grid``, the grid ``harness replay`` and ``harness report``
  judge a run against.

Every benchmark runs from the repository root as ``python -m benchmarks.NAME`` (``python -m
benchmarks`` lists them) or as ``python benchmarks/NAME.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "suites"
TABLE = ROOT / "benchmarks" / "tables" / "minizoo"  # the shipped benchmark of record
TESTBED = ROOT / "bench" / "testbed.duckdb"  # the store benchmarks/testbed_report.py trains
TASKS = ["shapes:color", "shapes:shape", "shapes:count", "shapes:spatial", "shapes:digits", "shapes:chart"]
RATIOS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)  # the table's sample ratios


# -- arguments ------------------------------------------------------------------------------------


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's parser: its module docstring as the description, laid out as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_suite(parser: argparse.ArgumentParser, name: str = "minizoo.yaml") -> None:
    parser.add_argument("--suite", default=str(SUITES / name))


def add_table(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--table", type=Path, default=TABLE, help=help)


def add_testbed_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=str(TESTBED))


def add_replay_args(parser: argparse.ArgumentParser, tasks: list[str] = TASKS, tasks_help: str | None = None) -> None:
    """A replay benchmark's suite, where it replays from (the shipped table by default, or a test
    bed's store), the seeds and the tasks."""
    add_suite(parser)
    add_table(parser, help="the shipped table replays read from (default); see --store")
    parser.add_argument("--store", type=Path, default=None,
                        help="replay from a store of benchmarks/testbed_report.py instead of the table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training-noise worlds to replay in (the table's seeds; each figure "
                             "is reported per seed and over them)")
    parser.add_argument("--tasks", nargs="+", default=tasks, help=tasks_help)


# -- names ----------------------------------------------------------------------------------------


def short(name: str) -> str:
    """A name without its family: ``mini:clip-vit-s`` -> ``clip-vit-s``, ``shapes:color`` -> ``color``."""
    return str(name).split(":", 1)[-1]


def pair(candidate: Sequence[str], sep: str = "+", shorten: bool = True) -> str:
    """A candidate (encoder, llm) in one word: ``clip-vit-s+llama-qa`` (full names with ``shorten=False``)."""
    return sep.join(short(c) if shorten else str(c) for c in candidate)


# -- rank correlations ----------------------------------------------------------------------------


def _paired(a, b) -> tuple[list, list]:
    if isinstance(a, Mapping):
        keys = sorted(set(a) & set(b))
        return [a[k] for k in keys], [b[k] for k in keys]
    return list(a), list(b)


def tau(a, b, at_least: int = 0) -> float:
    """Kendall tau-b (scipy) of two paired score lists, or of two score dicts over the keys both
    hold; NaN where undefined or with fewer than ``at_least`` pairs."""
    from scipy.stats import kendalltau

    x, y = _paired(a, b)
    return float(kendalltau(x, y).statistic) if len(x) >= at_least else math.nan


def spearman(a, b) -> float:
    """Spearman's rho (scipy) of two paired score lists, or of two score dicts over their common keys."""
    from scipy.stats import spearmanr

    return float(spearmanr(*_paired(a, b)).statistic)


# -- ground truth ---------------------------------------------------------------------------------


def mean_se(values: Sequence[float], n_items: int | None = None) -> tuple[float, float]:
    """The mean of a candidate's scores over seeds and the standard error of that mean: from the
    seed spread with two or more, else binomial over the test items (``n_items``, default
    ``harness.scoring.DEFAULT_TEST_ITEMS``)."""
    mean = statistics.mean(values)
    if len(values) > 1:
        return mean, statistics.stdev(values) / math.sqrt(len(values))
    from harness.scoring import DEFAULT_TEST_ITEMS

    return mean, math.sqrt(max(mean * (1 - mean), 0.0) / (n_items or DEFAULT_TEST_ITEMS))


def ground_truth(store, task: str, candidates=None) -> dict[tuple, tuple[float, float]]:
    """(mean, SE of the mean) of each candidate's score on ``task`` over the seeds of its finished
    trials at r = 1 (trained from scratch); ``candidates`` (in their order) or every one scored."""
    values: dict[tuple, list] = {}
    for r in store.query("""select t.encoder, t.llm, s.value, s.n_items from trials t join scores s using (trial_key)
                            where s.task = ? and t.sample_ratio = 1.0 and t.status = 'done'
                              and t.continued_from is null""", [task]):
        values.setdefault((r["encoder"], r["llm"]), []).append((r["value"], r["n_items"]))
    wanted = list(values) if candidates is None else [tuple(c) for c in candidates if tuple(c) in values]
    return {c: mean_se([v for v, _ in values[c]], values[c][0][1]) for c in wanted}


def tied_with_top1(store, task: str, best, pick) -> bool:
    """Whether the pick's ground-truth score is within one standard error of the grid's best:
    the difference of their means over the seeds at r = 1, against the SE of that difference."""
    truth = ground_truth(store, task, [best, pick])
    if len(truth) < len({tuple(best), tuple(pick)}):
        return False
    (m1, s1), (m2, s2) = truth[tuple(best)], truth[tuple(pick)]
    return m1 - m2 <= math.hypot(s1, s2)


# -- tables and stores ----------------------------------------------------------------------------


def table_views(folder: Path):
    """(connection, manifest): an in-memory DuckDB connection with one view per table of an
    exported table (its Parquet files, checked by ``read_export``; nothing is loaded or written)."""
    import duckdb
    from harness.store.exchange import read_export

    manifest = read_export(folder)
    con = duckdb.connect()
    for name, entry in manifest["tables"].items():
        path = str(Path(folder) / entry["file"]).replace("'", "''")
        con.execute(f"create view {name} as select * from read_parquet('{path}')")
    return con, manifest


@contextlib.contextmanager
def imported_table(table: Path, name: str = "replays.duckdb") -> Iterator[tuple[Path, dict]]:
    """(store path, manifest): an exported table imported into a scratch store, removed after."""
    from harness.store import Store
    from harness.store.exchange import import_export, read_export

    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        path = Path(tmp) / name
        manifest = read_export(table)
        with Store.open(path) as st:
            import_export(st, manifest["folder"], manifest)
        yield path, manifest


def latest_run(store, suite_name: str) -> str | None:
    """The latest finished run named ``suite_name`` (a benchmark's own grid, e.g. ``testbed-grid``)."""
    rows = store.query("select run_id from runs where status = 'done' and suite_name = ?"
                       " order by started_at desc, run_id desc limit 1", [suite_name])
    return rows[0]["run_id"] if rows else None


def grid_scores(store, run_id: str) -> dict[str, dict[tuple[str, str], float]]:
    """task -> {(encoder, llm): score} of a run's rankings (``harness.report.ranking``; candidates
    without a score left out)."""
    from harness.report import ranking

    out = {}
    for task, rows in ranking(store, run_id).items():
        scores = {(r["encoder"], r["llm"]): float(r["score"]) for r in rows if r["score"] is not None}
        if scores:
            out[task] = scores
    return out


def testbed_sources(store, suite, with_searches: bool) -> list[str]:
    """The runs a replay reads in a store of benchmarks/testbed_report.py: its latest
    ``testbed-grid`` run, its multi-fidelity table, and with ``with_searches`` the suite's live (not
    replayed) Mordal runs."""
    grid = latest_run(store, "testbed-grid")
    if grid is None:
        raise SystemExit(f"no testbed-grid run in {store.path}: run benchmarks/testbed_report.py first")
    fidelities = latest_run(store, "testbed-fidelities")
    searches = [r["run_id"] for r in store.query(
        "select run_id from runs where status = 'done' and strategy = 'mordal' and suite_name = ?"
        " and config->>'replay' is null", [suite.name])] if with_searches else []
    return [grid] + ([fidelities] if fidelities else []) + searches


def trial_specs(suite, seed: int, ratio: float = 1.0, candidates=None) -> list:
    """The trial of each candidate of ``suite`` (or of ``candidates``) at ``ratio`` and ``seed``,
    with the suite's recipe, scored on every target, on the CPU: what a grid trains."""
    from harness.scoring import Target
    from harness.training import config_from_suite
    from harness.trial import TrialSpec

    config = config_from_suite(suite.vlm)
    targets = tuple(Target(t.task, limit=t.limit, metric=t.metric) for t in suite.targets)
    return [TrialSpec(encoder=c.vision_encoder, llm=c.language_model,
                      alignment=suite.alignment.dataset, samples=suite.alignment.samples,
                      ratio=ratio, train=config, seed=seed, targets=targets, device="cpu")
            for c in (suite.candidates() if candidates is None else candidates)]


# -- the replay bench -----------------------------------------------------------------------------


def with_search(suite, task: str, changes: dict):
    """The suite for one task with its search section changed (merged one level deep; validated
    like a suite file)."""
    from harness.suite import Suite

    data = suite.model_dump(mode="json")
    data["targets"] = [t for t in data["targets"] if t["task"] == task]
    for key, value in changes.items():
        if isinstance(value, dict):
            data["search"][key] = {**data["search"][key], **value}
        else:
            data["search"][key] = value
    return Suite.model_validate(data)


class Bench:
    """Where replays read from and write to: a shipped table imported into a scratch store (the
    default), or a store of benchmarks/testbed_report.py (``store``); ``sources`` are the runs a
    replay reads. Each replay is judged against the grid among them that ``harness replay``
    would judge it against (``harness.answer.judging_grid``): for the table, the grid of the
    replay's seed."""

    def __init__(self, table: Path | None, store: Path | None, suite, with_searches: bool = False):
        from harness.store import Store

        self._scratch = contextlib.ExitStack()
        if store is None:
            self.path, manifest = self._scratch.enter_context(imported_table(table))
            self.sources = list(manifest["runs"])
            self.label = f"table {table}"
        else:
            self.path = store
            with Store.open(store, read_only=True) as st:
                self.sources = testbed_sources(st, suite, with_searches)
            self.label = f"store {store}"

    def replay(self, suite, suite_path: Path, changes: dict, task: str, seed: int, fill: bool) -> dict:
        """:func:`replay_row` of ``suite`` on ``task`` with ``changes`` to its search section and
        the given seed."""
        variant = with_search(suite, task, changes).model_copy(update={"seed": seed})
        return replay_row(variant, suite_path, self.path, self.sources, task, fill=fill, fill_embeddings=True)

    def emit(self, head: dict, suite, suite_path: Path, changes: dict, fill: bool = False) -> dict:
        """``head`` (which names ``task`` and ``seed``) and its :meth:`replay`, printed as a JSON line."""
        row = {**head, **self.replay(suite, suite_path, changes, head["task"], head["seed"], fill=fill)}
        print(json.dumps(row), flush=True)
        return row

    def close(self) -> None:
        self._scratch.close()


def replay_row(variant, suite_path: Path, store_path: Path, sources: list[str], task: str,
               fill: bool, fill_embeddings: bool = False) -> dict:
    """Replay one suite variant on ``sources`` and measure it against its judging grid on
    ``task``: the replay's run, trials, filled trials, training samples (warm-ups included, every
    trial and warm-up at its original price), speedup over the grid of the variant's own
    candidates in samples and in seconds, top-1 (and within one SE of it), weighted tau over the
    grid's top-10, NDCG@5; or its error."""
    from harness.store import Store

    from harness.answer import judging_grid
    from harness.errors import HarnessError
    from harness.report import compare
    from harness.runner import run_suite

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            run_suite(variant, suite_path, store_path, replay_from=sources, fill=fill,
                      fill_embeddings=fill_embeddings)
            failed = None
        except HarnessError as exc:
            failed = str(exc).splitlines()[0]
    with Store.open(store_path, read_only=True) as st:
        run = st.query("select * from runs order by started_at desc, run_id desc limit 1")[0]
        run_id = run["run_id"]
        if failed is not None:
            return {"run": run_id, "error": failed}
        grid_run = judging_grid(st, run, sources)
        if grid_run is None:
            return {"run": run_id, "error": f"no grid among the {len(sources)} source runs ranked {task}"}
        (cmp,) = [c for c in compare(st, run_id, grid_run) if c["task"] == task]
        trained = st.query("select trials_trained from run_costs where run_id = ?", [run_id])[0]
        tied = cmp["top1"] or tied_with_top1(st, task, cmp["grid_best"], cmp["search_best"])
        return {"run": run_id, "trials": cmp["search_trials"], "filled": int(trained["trials_trained"]),
                "samples": cmp["search_samples"], "warmup_samples": cmp["search_warmup_samples"],
                "grid_samples": cmp["grid_samples"],
                "speedup": cmp["speedup_samples"], "speedup_seconds": cmp["speedup"],
                "top1": cmp["top1"], "top1_within_1se": tied, "weighted_tau": cmp["weighted_tau_top10"],
                "ndcg5": cmp["ndcg_at_5"], "best": cmp["search_best"], "grid_best": cmp["grid_best"]}
