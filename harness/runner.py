"""``harness run``: open the store, record the run, hand the suite to its search strategy."""

from __future__ import annotations

from pathlib import Path

import click

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
            strategy = strategy_cls(suite=suite, store=store, run_id=run_id)
            strategy.run()
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
    return 0
