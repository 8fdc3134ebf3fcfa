"""``harness run``: open the store, record the run, hand the suite to its search strategy."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from harness import __version__
from harness.errors import HarnessError, interrupted

EXIT_NOT_AVAILABLE = 4
EXIT_ALL_FAILED = 5  # a run whose every trial failed: recorded failed, nothing ranked


def run_suite(suite, suite_path: Path, store_path: Path, *, wait: float = 0.0,
              replay_from: list[str] | None = None, fill: bool = False,
              fill_embeddings: bool = False, table: dict | None = None,
              each_target: bool = False) -> int:
    """Run ``suite``; returns the process exit code. With ``replay_from`` (run ids) nothing
    trains: every trial is looked up among those runs' trials (:mod:`harness.replay`). With
    ``table`` (an export's manifest, :func:`harness.store.exchange.read_export`) the export is
    merged into the store first and its runs are sources too; ``each_target`` replays every
    target as a search of its own and prints one line per task."""
    from harness.plugin_manager import get_components
    from harness.store import Store

    get_components()["search_strategy"].get(suite.search.strategy)  # unknown names fail first
    preflight(suite)  # bad data fails before the store is touched
    with Store.open(store_path, wait=wait) as store:
        sources = list(replay_from or [])
        if table is not None:
            from harness.store.exchange import import_export

            import_export(store, table["folder"], table)
            sources += [r for r in table["runs"] if r not in sources]
        if not each_target:
            return _run(store, suite, suite_path, replay_from=sources or None, fill=fill,
                        fill_embeddings=fill_embeddings)
        rows = []
        for target in suite.targets:
            one = suite.model_copy(update={"targets": [target]})
            code = _run(store, one, suite_path, replay_from=sources, fill=fill,
                        fill_embeddings=fill_embeddings, quiet=True)
            if code:
                return code
            rows.append(_replay_summary(store, store.query(
                "select run_id from runs order by started_at desc, run_id desc limit 1")[0]["run_id"],
                sources))
        print_replay_table(rows)
    return 0


def preflight(suite) -> None:
    """What validation leaves to the run, checked before the store is opened: every dataset the
    suite names must be readable here (:meth:`harness.datasets.DatasetFamily.preflight`: a LLaVA
    json must exist). Validation checks the files it can reach and lets a missing relative path
    pass, so a suite written for another machine still validates."""
    from harness.plugin_manager import family_of

    refs = [suite.alignment.dataset] + [t.task for t in suite.targets]
    for ref in dict.fromkeys(refs):
        family, name = family_of(ref)
        family.preflight(name)


def _run(store, suite, suite_path: Path, *, replay_from: list[str] | None, fill: bool,
         fill_embeddings: bool, quiet: bool = False) -> int:
    from harness.plugin_manager import get_components
    from harness.registry import RegistryError

    strategy_entry = get_components()["search_strategy"].get(suite.search.strategy)
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
    what = (f"replay of {len(replay_from)} run(s)" if replay_from and len(replay_from) > 3 else
            f"replay of run(s) {', '.join(replay_from)}" if replay_from else f"suite {suite.name!r}")
    if not quiet:
        click.echo(f"run {run_id}: {what} ({suite_path}), store {store.path}", err=True)
    try:
        strategy_cls = strategy_entry.load()
    except RegistryError as exc:
        message = (f"search strategy {suite.search.strategy!r} is not available yet in harness "
                   f"{__version__} ({exc}); the run is recorded as {run_id} with status failed")
        store.finish_run(run_id, "failed", error=message)
        click.echo(f"error: {message}", err=True)
        return EXIT_NOT_AVAILABLE
    if getattr(strategy_cls, "exhaustive", False):  # every candidate at r = 1: a ground truth
        store.execute("update runs set ground_truth = true where run_id = ?", [run_id])
    try:
        # status lines go to stderr, without wrapping (a log file gets whole lines)
        console = Console(stderr=True, soft_wrap=True)
        kwargs = {"executor": executor} if executor is not None else {}
        strategy = strategy_cls(suite=suite, store=store, run_id=run_id, console=console, **kwargs)
        strategy.show_progress = not quiet
        ranking = strategy.run()
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted", error="interrupted by the user")
        raise
    except HarnessError as exc:
        store.finish_run(run_id, "failed", error=str(exc))
        raise
    except Exception as exc:
        if interrupted(exc):  # Ctrl-C during a DuckDB statement
            store.finish_run(run_id, "interrupted", error="interrupted by the user")
            raise KeyboardInterrupt from exc
        store.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if strategy.failed and not (strategy.trained + strategy.reused):
        # nothing to rank on: the run failed, whatever the strategy returned
        message = f"every trial failed ({strategy.failed}); nothing could be ranked"
        store.finish_run(run_id, "failed", error=message)
        if not quiet:
            print_ranking(strategy, ranking, suite_path)
        click.echo(f"error: {message} (the failures are listed above and in the store's trials)", err=True)
        return EXIT_ALL_FAILED
    store.finish_run(run_id, "done")
    if quiet:
        return 0
    print_ranking(strategy, ranking, suite_path)
    if replay_from:
        print_replay(store, run_id, replay_from)
    return 0


def _grids_for(store, run_id: str, sources: list[str]) -> list[str]:
    """The grid runs among ``sources`` that judge ``run_id``: :func:`harness.answer.judging_grids`,
    the rule ``harness report`` uses too."""
    from harness.answer import judging_grids

    run = store.query("select * from runs where run_id = ?", [run_id])[0]
    return judging_grids(store, run, sources)


def _replay_summary(store, run_id: str, sources: list[str]) -> dict:
    from harness.report import compare, run_cost

    from harness.strategy import objective_first

    tasks = objective_first(r["task"] for r in store.query(
        "select distinct task from rankings where run_id = ? order by task", [run_id]))
    row = {"run": run_id, "task": tasks[0] if tasks else "?", "cost": run_cost(store, run_id)}
    pick = store.query("select encoder, llm, score, measured_or_predicted from rankings where run_id = ?"
                       " and rank = 1 and task = ?", [run_id, row["task"]])
    row["pick"] = pick[0] if pick else None
    grids = _grids_for(store, run_id, sources)
    row["vs"] = compare(store, run_id, grids[0])[0] if grids else None
    return row


def print_replay_table(rows: list[dict]) -> None:
    """One line per task: the pick, what it cost against the grid, and how well it ranked."""
    from rich.table import Table

    table = Table("task", "pick", "score", "grid best", "top-1", "speedup (samples)",
                  "speedup (s)", "w.tau top-10", "NDCG@5", "run", title="replay per task")
    for row in rows:
        pick, vs = row["pick"], row["vs"]
        name = f"{pick['encoder'].split(':')[-1]} + {pick['llm'].split(':')[-1]}" if pick else "-"
        score = "-" if not pick or pick["score"] is None else f"{pick['score']:.3f} ({pick['measured_or_predicted'][0]})"
        if vs is None:
            table.add_row(row["task"], name, score, "-", "-", "-", "-", "-", "-", row["run"])
            continue
        best = " + ".join(x.split(":")[-1] for x in vs["grid_best"])
        table.add_row(row["task"], name, score, best, "yes" if vs["top1"] else "no",
                      f"{vs['speedup_samples']}x", f"{vs['speedup']}x", f"{vs['weighted_tau_top10']:.2f}",
                      f"{vs['ndcg_at_5']:.2f}", row["run"])
    Console(width=200).print(table)


def print_replay(store, run_id: str, sources: list[str]) -> None:
    """What the replayed strategy would have spent, and how it compares with a grid among the sources."""
    from harness.report import compare, run_cost

    cost = run_cost(store, run_id)
    click.echo(f"replay cost: {cost.trials} trials, {cost.samples_seen} training samples "
               f"({cost.phase_samples} of them warm-ups), {cost.total_seconds:.1f}s at their original "
               f"cost (nothing trained: {cost.trials_trained} filled)")
    for grid in _grids_for(store, run_id, sources):
        for row in compare(store, run_id, grid):
            click.echo(f"vs grid {grid} on {row['task']}: speedup {row['speedup_samples']}x in "
                       f"samples ({row['speedup']}x in seconds), top-1 {row['top1']}, "
                       f"weighted tau {row['weighted_tau_top10']}, NDCG@5 {row['ndcg_at_5']}")


def print_ranking(strategy, ranking, suite_path=None) -> None:
    """The final table: rank, candidate, score, measured / predicted / eliminated."""
    from rich.table import Table

    table = Table("rank", "vision encoder", "language model", "score", "how",
                  title=f"{strategy.name} ranking on {strategy.objective}")
    for i, r in enumerate(ranking, 1):
        score = "-" if r.score is None or r.score != r.score else f"{r.score:.4f}"
        how = r.measured_or_predicted
        if how == "measured" and r.sample_ratio not in (None, 1.0):
            how += f" at r={r.sample_ratio:g}"
        if r.lower is not None and r.upper is not None:
            how += f" [{r.lower:.4f}, {r.upper:.4f}]"
        if r.stage.startswith("eliminated"):
            how = (f"{r.stage} at r={r.sample_ratio:g}" if r.sample_ratio is not None
                   else f"{r.stage} with its cluster")
            if r.estimate is not None:
                how += f" (est. {r.estimate:.4f})"
        table.add_row(str(i), r.candidate.vision_encoder, r.candidate.language_model, score, how)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    if ranking:
        from harness.answer import answer_of

        for line in answer_of(strategy.store, strategy.run_id, suite_path).lines:
            click.echo(line)
    click.echo(f"trials: {strategy.trained} trained, {strategy.reused} reused, "
               f"{strategy.failed} failed; {strategy.wall_seconds:.1f}s")
    failures = {}
    for (candidate, ratio), outcome in strategy._outcomes.items():
        if outcome.status != "done":
            failures.setdefault(candidate, (ratio, (outcome.error or "").splitlines()[0][:200]))
    for candidate, (ratio, error) in failures.items():
        click.echo(f"failed: {candidate.vision_encoder} + {candidate.language_model} (r={ratio:g}): {error}")
    from harness.report import run_cost

    cost = run_cost(strategy.store, strategy.run_id)
    click.echo(f"cost had nothing been stored: {cost.samples_seen} training samples "
               f"({cost.trial_samples} in {cost.trials} trials + {cost.phase_samples} in warm-ups), "
               f"{cost.total_seconds:.1f}s; new compute this run: {cost.new_samples} samples, "
               f"{cost.new_seconds:.1f}s")
