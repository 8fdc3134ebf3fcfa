"""``harness run``: open the store, record the run, hand the suite to its search strategy."""

from __future__ import annotations

from pathlib import Path

import sys

import click
from rich.console import Console

from harness import __version__
from harness.errors import HarnessError

EXIT_NOT_AVAILABLE = 4


def run_suite(suite, suite_path: Path, store_path: Path, *, wait: float = 0.0) -> int:
    """Run ``suite``; returns the process exit code."""
    from harness.plugin_manager import get_components
    from harness.registry import RegistryError
    from harness.store import Store

    strategy_entry = get_components()["search_strategy"].get(suite.search.strategy)
    with Store.open(store_path, wait=wait) as store:
        run_id = store.start_run(
            suite_name=suite.name, suite_hash=suite.fingerprint(), strategy=suite.search.strategy,
            seed=suite.seed, config=suite.model_dump(mode="json"),
            plugin=strategy_entry.plugin, plugin_version=strategy_entry.version,
        )
        click.echo(f"run {run_id}: suite {suite.name!r} ({suite_path}), store {store.path}")
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
            strategy = strategy_cls(suite=suite, store=store, run_id=run_id, console=console)
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
    return 0


def print_ranking(strategy, ranking) -> None:
    """The final table: rank, candidate, score, measured / predicted / eliminated."""
    from rich.table import Table

    table = Table("rank", "vision encoder", "language model", "score", "how",
                  title=f"{strategy.name} ranking on {strategy.objective}")
    for i, r in enumerate(ranking, 1):
        score = "failed" if r.score is None or r.score != r.score else f"{r.score:.4f}"
        how = r.measured_or_predicted
        if r.stage.startswith("eliminated"):
            how = (f"{r.stage} at r={r.sample_ratio:g}" if r.sample_ratio is not None
                   else f"{r.stage} with its cluster")
        table.add_row(str(i), r.candidate.vision_encoder, r.candidate.language_model, score, how)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    if ranking:
        best = ranking[0]
        click.echo(f"best VLM: {best.candidate.vision_encoder} + {best.candidate.language_model} "
                   f"({best.measured_or_predicted} {best.score:.4f})")
    click.echo(f"trials: {strategy.trained} trained, {strategy.reused} reused, "
               f"{strategy.failed} failed; {strategy.wall_seconds:.1f}s")
