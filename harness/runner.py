"""``harness run``: open the store, record the run, hand the suite to its search strategy."""

from __future__ import annotations

from pathlib import Path

import sys

import click
from rich.console import Console

from harness import __version__
from harness.errors import HarnessError

EXIT_NOT_AVAILABLE = 4


def run_suite(suite, suite_path: Path, store_path: Path, *, wait: float = 0.0,
              replay_from: list[str] | None = None, fill: bool = False,
              fill_embeddings: bool = False) -> int:
    """Run ``suite``; returns the process exit code. With ``replay_from`` (run ids) nothing
    trains: every trial is looked up among those runs' trials (:mod:`harness.replay`)."""
    from harness.plugin_manager import get_components
    from harness.registry import RegistryError
    from harness.store import Store

    strategy_entry = get_components()["search_strategy"].get(suite.search.strategy)
    with Store.open(store_path, wait=wait) as store:
        executor = None
        config = suite.model_dump(mode="json")
        if replay_from:
            from harness.replay import ReplayExecutor

            # checks the source runs before anything is written, so bad input leaves the store as it was
            executor = ReplayExecutor(store, "", replay_from, fill=fill, fill_embeddings=fill_embeddings)
            config["replay"] = {"from": list(replay_from), "fill": fill, "fill_embeddings": fill_embeddings}
        run_id = store.start_run(
            suite_name=suite.name, suite_hash=suite.fingerprint(), strategy=suite.search.strategy,
            seed=suite.seed, config=config,
            plugin=strategy_entry.plugin, plugin_version=strategy_entry.version,
        )
        if executor is not None:
            executor.run_id = run_id
        what = f"replay of run(s) {', '.join(replay_from)}" if replay_from else f"suite {suite.name!r}"
        click.echo(f"run {run_id}: {what} ({suite_path}), store {store.path}")
        try:
            strategy_cls = strategy_entry.load()
        except RegistryError as exc:
            message = (f"search strategy {suite.search.strategy!r} is not available yet in harness "
                       f"{__version__} ({exc}); the run is recorded as {run_id} with status failed")
            store.finish_run(run_id, "failed", error=message)
            click.echo(f"error: {message}", err=True)
            return EXIT_NOT_AVAILABLE
        try:
            console = Console(stderr=True)
            kwargs = {"executor": executor} if executor is not None else {}
            strategy = strategy_cls(suite=suite, store=store, run_id=run_id, console=console, **kwargs)
            ranking = strategy.run()
        except KeyboardInterrupt:
            store.finish_run(run_id, "interrupted", error="interrupted by the user")
            raise
        except HarnessError as exc:
            store.finish_run(run_id, "failed", error=str(exc))
            raise
        except Exception as exc:
            store.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        store.finish_run(run_id, "done")
        print_ranking(strategy, ranking)
        if replay_from:
            print_replay(store, run_id, replay_from)
    return 0


def print_replay(store, run_id: str, sources: list[str]) -> None:
    """What the replayed strategy would have spent, and how it compares with a grid among the sources."""
    from harness.report import compare, run_cost

    cost = run_cost(store, run_id)
    click.echo(f"replay cost: {cost.trials} trials, {cost.samples_seen} training samples, "
               f"{cost.total_seconds:.1f}s at their original cost (nothing trained: "
               f"{cost.trials_trained} filled)")
    grids = [r["run_id"] for r in store.query(
        "select run_id from runs where strategy = 'grid' and run_id in (" + ", ".join("?" for _ in sources)
        + ")", sources)]
    ranked = {r["task"] for r in store.query("select distinct task from rankings where run_id = ?", [run_id])}
    for grid in grids:
        grid_tasks = {r["task"] for r in store.query("select distinct task from rankings where run_id = ?",
                                                     [grid])}
        if ranked & grid_tasks:
            for row in compare(store, run_id, grid):
                click.echo(f"vs grid {grid} on {row['task']}: speedup {row['speedup_samples']}x in "
                           f"samples ({row['speedup']}x in seconds), top-1 {row['top1']}, "
                           f"weighted tau {row['weighted_tau_top10']}, NDCG@5 {row['ndcg_at_5']}")


def print_ranking(strategy, ranking) -> None:
    """The final table: rank, candidate, score, measured / predicted / eliminated."""
    from rich.table import Table

    table = Table("rank", "vision encoder", "language model", "score", "how",
                  title=f"{strategy.name} ranking on {strategy.objective}")
    for i, r in enumerate(ranking, 1):
        score = "-" if r.score is None or r.score != r.score else f"{r.score:.4f}"
        how = r.measured_or_predicted
        if r.stage.startswith("eliminated"):
            how = (f"{r.stage} at r={r.sample_ratio:g}" if r.sample_ratio is not None
                   else f"{r.stage} with its cluster")
        table.add_row(str(i), r.candidate.vision_encoder, r.candidate.language_model, score, how)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    if ranking:
        best = ranking[0]
        score = "no score" if best.score is None or best.score != best.score else f"{best.score:.4f}"
        click.echo(f"best VLM: {best.candidate.vision_encoder} + {best.candidate.language_model} "
                   f"({best.measured_or_predicted} {score})")
    click.echo(f"trials: {strategy.trained} trained, {strategy.reused} reused, "
               f"{strategy.failed} failed; {strategy.wall_seconds:.1f}s")
