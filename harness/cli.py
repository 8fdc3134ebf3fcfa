"""The ``harness`` command line.

Start-up stays light: this module imports click and the registries only. Store access
(duckdb), suites (pydantic, yaml), training (torch) and scoring (lmms-eval) are imported
inside the commands that need them, so ``harness --help`` never imports torch.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from harness import __version__
from harness.scoring import DEFAULT_TEST_ITEMS

EXIT_BAD_INPUT = 2
EXIT_STORE_BUSY = 3


class HarnessGroup(click.Group):
    """Adds plugin commands on first use and turns known errors into clean exits."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if not self._plugins_added:
            HarnessGroup._plugins_added = True
            from harness.plugin_manager import get_components

            get_components().add_commands(self)

    def list_commands(self, ctx):
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None:
            self._add_plugin_commands()
            cmd = super().get_command(ctx, name)
        return cmd

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:  # a bad option of `harness` itself
            if _shows_help(exc):
                raise
            click.echo(error_line(exc), err=True)
            raise click.exceptions.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            click.echo(INTERRUPTED, err=True)
            raise click.exceptions.Exit(130) from None

    def invoke(self, ctx):
        from harness.errors import HarnessError, interrupted

        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.ClickException as exc:  # click's own and the commands' usage errors
            if _shows_help(exc):
                raise
            click.echo(error_line(exc), err=True)
            ctx.exit(exc.exit_code)
        except Exception as exc:
            if interrupted(exc):  # Ctrl-C during a DuckDB statement
                click.echo(INTERRUPTED, err=True)
                ctx.exit(130)
            from harness.errors import environment_fault

            fault = environment_fault(exc, "writing the store")  # a full disk, not a damaged store
            if fault is not None:
                click.echo(f"error: {fault}", err=True)
                ctx.exit(fault.exit_code)
            duckdb = sys.modules.get("duckdb")
            # DuckDB failing to read a store mid-command (a damaged block found late)
            if duckdb is None or not (isinstance(exc, (duckdb.IOException, duckdb.InternalException))
                                      or "Corrupt database" in str(exc)):
                raise
            click.echo("error: the store cannot be read: " + " ".join(str(exc).split())[:240]
                       + ". It may be damaged: restore a copy (harness store backup) or move it aside",
                       err=True)
            ctx.exit(1)
        except KeyboardInterrupt:  # the run and its in-flight trial were marked on the way out
            click.echo(INTERRUPTED, err=True)
            ctx.exit(130)


# what Ctrl-C (or SIGTERM during a run) prints before exit 130: stored work is kept, so the same
# command computes only what is missing
INTERRUPTED = "interrupted: run again to resume"


def error_line(exc: click.ClickException) -> str:
    """A click error as harness prints every error: one line, "error: ...", and for a usage error
    where to read the command's help (instead of click's usage block and "Error: ...")."""
    message = " ".join(exc.format_message().split())
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        message += f" (see {exc.ctx.command_path} --help)"
    return f"error: {message}"


def _shows_help(exc: click.ClickException) -> bool:
    """A group run with no command: click prints its help, which is no error to rewrite."""
    return isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ()))


@click.group(cls=HarnessGroup)
@click.version_option(__version__, prog_name="harness")
def cli():
    """Find the best vision-language model (encoder x LLM) for a task without training every pair."""


wait_option = click.option(
    "--wait", type=float, default=0.0, show_default=True,
    help="Seconds to wait for a store another process is writing (it says when it waits).")

store_option = click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="DuckDB store file (default: $HARNESS_STORE, else ./.harness/store.duckdb).",
)


def _store_path(explicit: Path | None) -> Path:
    from harness.store import default_store_path

    return explicit if explicit is not None else default_store_path()


def _load_suite_or_exit(path: Path):
    from harness.suite import SuiteError, load_suite

    try:
        return load_suite(path)
    except SuiteError as exc:
        for line in exc.errors:  # one line per problem, each "error: FILE:LINE FIELD: what is wrong"
            click.echo(f"error: {line}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None


@cli.command()
@click.argument("suite_path", metavar="SUITE", type=click.Path(path_type=Path))
def validate(suite_path: Path):
    """Check a suite YAML; exit 0 if valid, 2 with one line per problem if not."""
    suite = _load_suite_or_exit(suite_path)
    n_enc, n_llm = len(suite.zoo.vision_encoders), len(suite.zoo.language_models)
    click.echo(
        f"{suite_path}: ok: suite {suite.name!r}, {n_enc} encoders x {n_llm} LLMs = "
        f"{n_enc * n_llm} candidates, {len(suite.targets)} target task(s), "
        f"strategy {suite.search.strategy!r}"
    )


@cli.command()
@click.argument("suite_path", metavar="SUITE", type=click.Path(path_type=Path))
@store_option
@click.option("--wait", type=float, default=0.0, show_default=True,
              help="Seconds to wait for another process that is writing the store.")
@click.option("--report", "with_report", is_flag=True,
              help="Write the run's HTML report at the end (see `harness report`) and print its path.")
@click.option("--refresh", "refresh", multiple=True, metavar="COMPONENT",
              help="Forget what the store holds for this encoder or LLM of the suite first (as "
                   "`harness store forget --component`), so the run computes it again (repeatable).")
@click.option("--no-reuse", is_flag=True,
              help="--refresh every encoder and LLM of the suite: the run reuses nothing stored.")
@click.option("--strategy", default=None, metavar="NAME",
              help="Run this search strategy instead of the suite's: `--strategy grid` measures "
                   "every candidate at r = 1 (reusing stored trials), the grid a search is "
                   "compared with by `harness compare` and `harness report`.")
def run(suite_path: Path, store_path: Path | None, wait: float, with_report: bool,
        refresh: tuple[str, ...], no_reuse: bool, strategy: str | None):
    """Run a suite's search and record everything in the store."""
    from harness.runner import run_suite

    suite = _load_suite_or_exit(suite_path)
    if strategy is not None:
        from harness.plugin_manager import get_components

        get_components()["search_strategy"].get(strategy)  # unknown names fail before the store opens
        suite = suite.model_copy(update={"search": suite.search.model_copy(update={"strategy": strategy})})
    if store_path is None and suite.store is not None:
        from harness.paths import suite_store

        store_path = suite_store(suite_path, suite.store)  # inside the suite's folder
    path = _store_path(store_path)
    zoo = [*suite.zoo.vision_encoders, *suite.zoo.language_models]
    unknown = [c for c in refresh if c not in zoo]
    if unknown:
        raise click.UsageError(f"--refresh {unknown[0]!r}: not an encoder or LLM of the suite's zoo "
                               f"({', '.join(zoo)})")
    if refresh or no_reuse:
        _forget_components(path, zoo if no_reuse else list(refresh), wait)
    _terminate_as_interrupt()
    code = run_suite(suite, suite_path, path, wait=wait)
    if with_report and code == 0:
        from harness.report_page import build_report
        from harness.store import Store

        with Store.open(path, read_only=True) as st:
            click.echo(f"report: {build_report(st)}")
    raise SystemExit(code)


def _forget_components(path: Path, refs: list[str], wait: float) -> None:
    """``harness store forget --component`` for each of ``refs`` the store holds."""
    if not path.exists():
        return
    from harness.store import Store
    from harness.store.forget import forget

    with Store.open(path, wait=wait) as st:
        held = [r for r in refs if st.query("select 1 from components where ref = ?", [r])]
        if held:
            counts = forget(st, components=held)
            click.echo(f"forgot what the store held for {', '.join(held)}: "
                       + (", ".join(f"{t} {n}" for t, n in counts.items()) or "nothing"), err=True)


def _terminate_as_interrupt() -> None:
    """SIGTERM (a scheduler, `kill`) ends a run like Ctrl-C: run and in-flight trial marked, exit
    130. SIGINT gets Python's own handler back even when this process started with it ignored
    (a parent that ignored it, a background job): `kill -INT` and Ctrl-C always stop a run."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


@cli.command()
@click.argument("run_id", metavar="[RUN]", required=False)
@store_option
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for report.html and its PNGs (default: reports/RUN beside the store).")
@click.option("--compare", "compare_run", metavar="GRID_RUN", default=None,
              help="Grid run to judge the search against (default: a finished grid run in the "
                   "store that ranked the same task, of the same suite when there is one).")
@click.option("--history", is_flag=True, help="The store's history instead: leaderboards across runs and "
                                              "how each task's best candidate changed.")
@click.option("--task", default=None, help="With --history: only this task.")
@wait_option
def report(run_id: str | None, store_path: Path | None, out: Path | None, compare_run: str | None,
           history: bool, task: str | None, wait: float):
    """Write a self-contained HTML report of a run and print its path.

    Without RUN: the latest finished run (status done) that ranked candidates, named on stderr."""
    from harness.errors import BadInput
    from harness.paths import check_out_folder
    from harness.report_page import build_history, build_report
    from harness.store import Store

    if history and (run_id or compare_run):
        raise BadInput("--history reports the whole store: drop RUN and --compare, or drop --history")
    if task and not history:
        raise BadInput("--task goes with --history (a run's report covers the task it ranked)")
    if out is not None:
        check_out_folder(out)  # no system roots, no /proc
    with Store.open(_store_path(store_path), read_only=True, wait=wait) as st:
        if run_id is None and not history:
            run_id = _latest_finished_run(st)
        page = (build_history(st, out=out, task=task) if history
                else build_report(st, run_id, out=out, compare_run=compare_run))
    click.echo(str(page))


def _latest_finished_run(st) -> str:
    """The run `harness report` shows without RUN (:func:`harness.report_page.resolve_run`'s
    rule: the latest finished run that ranked candidates), named on stderr."""
    from harness.report_page import resolve_run

    run_id = resolve_run(st, None)["run_id"]
    click.echo(f"report of run {run_id} (the latest finished run)", err=True)
    return run_id


@cli.command()
@click.option("--encoder", required=True,
              help="Vision encoder ref, e.g. mini:clip-vit-s (harness zoo list), tiny:vit-p8 or hf:/path.")
@click.option("--llm", required=True,
              help="Language model ref, e.g. mini:llama-mixed (harness zoo list), tiny:llama or hf:/path.")
@click.option("--task", "tasks", multiple=True, required=True,
              help="Target task (repeatable), e.g. shapes:color or lmms:/path/to/tasks.")
@click.option("--ratio", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Alignment-data sample ratio r in (0, 1].")
@click.option("--alignment", default="shapes:align", show_default=True, help="Alignment dataset ref.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Alignment samples at r = 1 (default: the whole alignment set, as in a suite).")
@click.option("--mode", type=click.Choice(["frozen", "lora", "full"]), default=None,
              help="How the LLM trains (the projector always does); default: a suite's vlm.llm "
                   "default (harness/suite/schema.py), like every recipe option here.")
@click.option("--projector", default=None,
              help="Projector between encoder and LLM (as vlm.projector in a suite): linear, "
                   "mlp<N>x_gelu or ln_mlp<N>x_gelu; default: a suite's vlm.projector default.")
@click.option("--epochs", type=click.FloatRange(0, min_open=True), default=None,
              help="Passes over the ratio-r subset of the alignment data (fractions allowed); "
                   "default: a suite's vlm.optim.epochs default.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Peak learning rate (AdamW); default: a suite's vlm.optim.lr default. Schedule, "
                   "warm-up and everything not given here are a suite's defaults too, so a suite "
                   "with the same settings reuses the trial.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Training examples per optimiser step; default: a suite's vlm.optim.batch_size "
                   "default.")
@click.option("--limit", type=click.IntRange(min=1), default=DEFAULT_TEST_ITEMS, show_default=True,
              help="Test items per target whose family draws them (an lmms task: its own).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the subset, initialisation and data order (part of the trial's key).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to train: auto picks cuda when available, else cpu.")
@store_option
@wait_option
def trial(encoder, llm, tasks, ratio, alignment, samples, mode, projector, epochs, lr, batch_size,
          limit, seed, device, store_path, wait):
    """Train, score and store one candidate; a stored identical trial is reused, not retrained.

    \b
    harness trial --encoder mini:clip-vit-s --llm mini:llama-mixed --task shapes:color
    harness trial --encoder mini:clip-vit-s --llm mini:llama-mixed --task shapes:color \\
        --task shapes:count --ratio 0.25 --seed 1
    """
    from harness.plugin_manager import family_of
    from harness.plugin_manager import get_components
    from harness.scoring import Target
    from harness.store import Store
    from harness.trial import TrialSpec, run_trial

    components = get_components()
    for kind, ref in (("vision_encoder", encoder), ("language_model", llm), ("dataset", alignment),
                      *(("dataset", t) for t in tasks)):
        components[kind].resolve(ref)  # unknown names fail here, before the store is touched
    config = _trial_recipe(projector=projector, llm=mode, lr=lr, batch_size=batch_size, epochs=epochs)
    spec = TrialSpec(encoder=encoder, llm=llm, alignment=alignment, samples=samples, ratio=ratio,
                     train=config, seed=seed, device=device,
                     targets=tuple(Target(t, limit=family_of(t)[0].scored_items(Target(t), limit))
                                   for t in tasks))
    with Store.open(_store_path(store_path), wait=wait) as store:
        run_id = store.start_run(suite_name="trial", strategy="trial", seed=seed,
                                 config={"spec": repr(spec)}, plugin="harness.cli",
                                 plugin_version=__version__)
        try:
            outcome = run_trial(spec, store, run_id, default_limit=limit)
        except KeyboardInterrupt:
            store.finish_run(run_id, "interrupted", "interrupted by the user")
            raise
        except BaseException as exc:  # a dataset plugin's error, a store error: the run ends failed
            store.finish_run(run_id, "failed", f"{type(exc).__name__}: {str(exc)[:500]}")
            raise
        store.finish_run(run_id, "done" if outcome.status == "done" else "failed", outcome.error)
    if outcome.status != "done":
        click.echo(f"error: trial {outcome.key[:12]} failed: {' '.join(str(outcome.error).split())}", err=True)
        raise SystemExit(1)
    how = "reused from the store" if outcome.reused else f"trained in {outcome.wall_seconds:.1f}s"
    click.echo(f"trial {outcome.key[:12]} {encoder} + {llm} r={ratio}: {how}, "
               f"{outcome.samples_seen} samples")
    for s in outcome.scores:
        click.echo(f"  {s.task:<24} {s.metric:<12} {s.value:.4f}  (n={s.n_items})")


def _trial_recipe(**given):
    """The training recipe of ``harness trial``: a suite's ``vlm`` section with only the options
    given on the command line, every other field the suite schema's default, turned into a
    TrainConfig the way a run does (:func:`harness.training.config_from_suite`), so a trial made
    here has the key a suite with the same settings asks for, and is reused by it."""
    from pydantic import ValidationError

    from harness.suite import VLMConfig
    from harness.training import config_from_suite

    vlm = {k: v for k, v in {"projector": given["projector"], "llm": given["llm"]}.items() if v is not None}
    optim = {k: v for k, v in {"lr": given["lr"], "batch_size": given["batch_size"],
                               "epochs": given["epochs"]}.items() if v is not None}
    if optim:
        vlm["optim"] = optim
    try:
        return config_from_suite(VLMConfig.model_validate(vlm))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "vlm"
        raise click.BadParameter(f"{where}: {err['msg']}") from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool):
    """List plugins: name, version, hooks and the components each registered."""
    from harness.plugin_manager import get_components

    infos = [info.as_dict() for info in get_components().plugins.values()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    from rich.table import Table

    table = Table("plugin", "version", "hooks", "components")
    for info in infos:
        comps = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in info["components"].items())
        table.add_row(
            info["name"] + ("" if info["builtin"] else f"\n({info['distribution']})"),
            info["version"],
            "\n".join(info["hooks"]),
            comps or "-",
        )
    _console().print(table)


# what `harness sql` runs: statements that only read (DESCRIBE, SHOW, SUMMARIZE, FROM and VALUES
# parse as SELECT); PRAGMA reads settings and table info, and cannot change a locked configuration
_READ_STATEMENTS = ("SELECT", "EXPLAIN", "PRAGMA")


@cli.command()
@click.argument("query")
@store_option
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True,
              help="table: for reading (decimals rounded for display); csv and json: every value in "
                   "full, for other programs.")
@click.option("--script", is_flag=True,
              help="Run several statements (separated by ';'), printing each result. QUERY '-' reads "
                   "them from standard input: harness sql --script - < store/examples.sql")
@click.option("--file", "files", multiple=True, type=click.Path(path_type=Path),
              help="A local file the query may read (read_csv, read_parquet, ... for joins); repeatable. "
                   "Nothing else outside the store can be read or written.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=120.0, show_default=True,
              help="Seconds a statement may run before it is stopped (it also runs under a memory limit).")
@wait_option
def sql(query: str, store_path: Path | None, fmt: str, script: bool, files: tuple[Path, ...], wait: float,
        timeout: float):
    """Run a read-only SQL query against the store (tables, views: leaderboard, history).

    Only statements that read run (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, PRAGMA),
    one per call unless --script; DuckDB's external access is off and its configuration
    locked, so a query cannot attach, copy, export, install or read files other than --file.
    QUERY '-' reads the SQL from standard input.

    \b
    harness sql "select * from leaderboard"
    harness sql --script - < store/examples.sql
    """
    import duckdb

    from harness.store import Store, limits

    if query == "-":
        query = sys.stdin.read()
    if not query.strip():
        raise click.UsageError("QUERY is empty: give one SQL statement, e.g. "
                               "harness sql \"select * from leaderboard\"")
    path = _store_path(store_path)
    if not path.exists():
        raise click.ClickException(
            f"no store at {path}: nothing has been run there (harness run creates it); check "
            "--store / HARNESS_STORE")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise click.UsageError(f"--file {missing[0]}: no such file")
    with Store.open(path, read_only=True, wait=wait) as store:
        con = store.con
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as exc:
            raise click.ClickException(f"query failed: {_one_line(exc)}") from None
        if not statements:
            raise click.UsageError("QUERY has no SQL statement in it")
        if len(statements) > 1 and not script:
            raise click.UsageError(f"QUERY holds {len(statements)} statements: give one, or pass "
                                   "--script to run them all")
        for i, statement in enumerate(statements, 1):
            kind = statement.type.name
            if kind not in _READ_STATEMENTS:
                where = f"statement {i} " if len(statements) > 1 else "the statement "
                raise click.ClickException(
                    f"{where}is {kind}: harness sql only reads the store (SELECT, WITH, DESCRIBE, "
                    "SHOW, SUMMARIZE, EXPLAIN, PRAGMA); nothing was run. To change a store use "
                    "harness store merge / import / backup")
        # defence in depth: no file or network access but --file, no extension downloads, and
        # settings locked so no statement can turn any of it back on
        allowed = [str(f.resolve()) for f in files]
        for setting in ("SET autoinstall_known_extensions = false", "SET autoload_known_extensions = false",
                        f"SET allowed_paths = {allowed!r}" if allowed else None,
                        *limits.settings(), "SET enable_external_access = false", "SET lock_configuration = true"):
            if setting:
                con.execute(setting)
        for statement in statements:
            try:
                columns, rows = limits.run_limited(con, statement.query, timeout)  # memory, time
            except duckdb.Error as exc:  # duckdb raises its own hierarchy; show its message
                raise click.ClickException(f"query failed: {_one_line(exc)}") from None
            _print_rows(columns, rows, fmt)


def _one_line(exc: Exception) -> str:
    """A DuckDB message on one line: its text up to the quoted query ("LINE 1: ...")."""
    lines = []
    for text in str(exc).splitlines():
        if text.startswith("LINE "):
            break
        if text.strip():
            lines.append(text.strip())
    return " ".join(lines)


def _print_rows(columns: list[str], rows: list[tuple], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([dict(zip(columns, row)) for row in rows], default=str, indent=2))
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")  # not \r\n: `$(... | tail -1)` stays clean
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*(_display(v) for v in row))
        _console().print(table)
        click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def _display(value) -> str:
    """A value as the table format shows it: NULL for null, a float to 4 decimals (4 significant
    digits below 1), trailing zeros dropped; csv and json keep every digit."""
    if value is None:
        return "NULL"
    if isinstance(value, float) and math.isfinite(value) and value != int(value):
        text = f"{value:.4f}" if abs(value) >= 1 else f"{value:.4g}"
        if "e" not in text and "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    return str(value)


@cli.command()
@click.option("--from", "sources", multiple=True, metavar="RUN",
              help="Run whose stored trials answer the replay (repeatable).")
@click.option("--table", "table", type=click.Path(path_type=Path), default=None,
              help="An exported table (e.g. benchmarks/tables/minizoo): merged into the store, "
                   "its runs answer the replay. Read-only: nothing is written to the folder.")
@click.option("--suite", "suite_path", required=True, type=click.Path(path_type=Path),
              help="The suite to replay: its zoo, data, training config and search.")
@click.option("--strategy", default=None, help="Replay this strategy instead of the suite's.")
@click.option("--seed", type=int, default=None,
              help="Replay with this seed instead of the suite's (a table's other seeds' trials).")
@click.option("--each-target/--joint", "each_target", default=None,
              help="Replay a search per target task, one line each (default with --table and "
                   "several targets), or one search of the mean over targets.")
@click.option("--fill", is_flag=True, help="Train (compute) what the source runs lack instead of stopping.")
@click.option("--fill-embeddings", is_flag=True,
              help="Compute missing clustering features (and projector warm-ups), but still stop "
                   "at a missing trial.")
@store_option
@wait_option
def replay(sources, table: Path | None, suite_path: Path, strategy: str | None, seed: int | None,
           each_target: bool | None, fill: bool, fill_embeddings: bool,
           store_path: Path | None, wait: float):
    """Run a search strategy on the trials earlier runs stored (or a shipped table): nothing
    trains (unless --fill); prints what it would have found and spent.

    \b
    harness replay --table benchmarks/tables/minizoo --suite suites/minizoo.yaml --store :memory:
    """
    from harness.replay import check_seed
    from harness.runner import run_suite

    check_seed(seed)  # before anything is read or written
    if not sources and table is None:
        raise click.UsageError("give --from RUN (repeatable) or --table DIR")
    manifest = None
    if table is not None:
        from harness.store.exchange import read_export

        manifest = read_export(table)  # every check that needs no store, before it is opened
    suite = _load_suite_or_exit(suite_path)
    if strategy is not None:
        from harness.plugin_manager import get_components

        get_components()["search_strategy"].get(strategy)  # unknown names fail before the store opens
        suite = suite.model_copy(update={"search": suite.search.model_copy(update={"strategy": strategy})})
    if seed is not None:
        suite = suite.model_copy(update={"seed": seed})
    if each_target is None:
        each_target = table is not None and len(suite.targets) > 1
    if store_path is None and suite.store is not None:
        from harness.paths import suite_store

        store_path = suite_store(suite_path, suite.store)  # inside the suite's folder
    raise SystemExit(run_suite(suite, suite_path, _store_path(store_path), wait=wait,
                               replay_from=list(sources), fill=fill, fill_embeddings=fill_embeddings,
                               table=manifest, each_target=each_target))


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@store_option
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per task, for other programs, instead of the text report.")
@wait_option
def compare(run_a: str, run_b: str, store_path: Path | None, as_json: bool, wait: float):
    """Compare a search run with a grid run: speedup, top-1, Kendall tau, weighted tau, NDCG@5."""
    from harness.report import compare as compare_runs
    from harness.store import Store

    with Store.open(_store_path(store_path), read_only=True, wait=wait) as st:
        rows = compare_runs(st, run_a, run_b)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    for row in rows:
        click.echo(f"{row['task']}: {row['search_strategy']} run {row['search_run']} vs grid "
                   f"run {row['grid_run']}")
        click.echo("  cost had nothing been stored (reused work at its original price; the grid the same way):")
        for key in ("speedup_samples", "speedup_flops", "speedup", "grid_samples", "search_samples",
                    "search_warmup_samples", "grid_seconds", "search_seconds", "grid_trials",
                    "search_trials", "search_failed_trials", "grid_eval_items", "search_eval_items",
                    "search_forward_passes"):
            click.echo(f"    {key:<22} {row[key]}")
        click.echo("  new compute this run (what reuse saved is the difference):")
        for key in ("search_new_samples", "search_new_seconds"):
            click.echo(f"    {key:<22} {row[key]}")
        click.echo("  where the search's cost went (samples, seconds):")
        for phase, cost in row["search_phases"].items():
            click.echo(f"    {phase:<22} {cost['samples']} samples, {cost['seconds']} s")
        click.echo("  ranking:")
        for key in ("top1", "grid_best", "search_best", "kendall_tau_top10", "weighted_tau_top10",
                    "ndcg_at_5"):
            click.echo(f"    {key:<22} {row[key]}")


@cli.group()
def store():
    """The store (a DuckDB file of every run, trial, score and feature): where it is, what it
    holds, checking it, and copying, merging, exporting, importing or forgetting its rows.

    Read it with `harness sql`."""


@store.command("path")
@store_option
def store_path_cmd(store_path: Path | None):
    """Print the store file this directory uses."""
    click.echo(str(_store_path(store_path)))


@store.command("info")
@store_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for other programs.")
@wait_option
def store_info(store_path: Path | None, as_json: bool, wait: float):
    """Size, applied migrations and row counts."""
    from harness.store import Store

    with Store.open(_store_path(store_path), read_only=True, wait=wait) as st:
        info = st.info()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        elif isinstance(value, list):
            click.echo(f"{key}: {', '.join(map(str, value))}")
        else:
            click.echo(f"{key}: {value}")


@store.command("backup")
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@store_option
@wait_option
def store_backup(dest: Path, store_path: Path | None, wait: float):
    """Write a consistent copy of the store to DEST."""
    from harness.store.check import backup_store

    if dest.exists():
        raise click.ClickException(f"{dest} exists; choose a new file name")
    warning = backup_store(_store_path(store_path), dest, wait)  # a damaged log: the main file
    click.echo(f"backed up {_store_path(store_path).absolute()} -> {dest}")
    if warning:
        click.echo(f"warning: {warning}", err=True)


@store.command("check")
@store_option
def store_check(store_path: Path | None):
    """Read every table of the store in full; say which are damaged (exit 1 if any)."""
    from harness.store.check import check_lines

    raise SystemExit(check_lines(_store_path(store_path), click.echo))


def _console():
    """A rich console; piped output is not cut to 80 columns."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=10_000)


@store.command("merge")
@click.argument("other", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@store_option
@wait_option
def store_merge(other: Path, store_path: Path | None, wait: float):
    """Copy every row of another store into this one (rows already here are kept)."""
    from harness.store import Store
    from harness.store.exchange import merge_store

    with Store.open(_store_path(store_path), wait=wait) as st:
        added = merge_store(st, other, record=True)
    click.echo(", ".join(f"{t}: +{n}" for t, n in added.items() if n) or "nothing new")


@store.command("export")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write (one Parquet file per table and manifest.json).")
@click.option("--run", "runs", multiple=True, metavar="RUN",
              help="Export what a replay of this run needs (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Export every row of the store.")
@click.option("--force", is_flag=True, help="Replace an existing export folder.")
@click.option("--no-embeddings", is_flag=True,
              help="Leave raw features out (the similarities computed from them are kept).")
@store_option
@wait_option
def store_export(out: Path, runs: tuple[str, ...], everything: bool, force: bool, no_embeddings: bool,
                 store_path: Path | None, wait: float):
    """Write the store (or some runs of it) as Parquet files that `harness store import` reads."""
    from harness.store import Store
    from harness.store.exchange import export_store

    if bool(runs) == everything:
        raise click.UsageError("give --run RUN (repeatable) or --all, not both or neither")
    with Store.open(_store_path(store_path), read_only=True, wait=wait) as st:
        manifest = export_store(st, out, None if everything else list(runs), force=force,
                                embeddings=not no_embeddings)
    size = sum(f.stat().st_size for f in out.iterdir())
    rows = sum(e["rows"] for e in manifest["tables"].values())
    click.echo(f"exported {len(manifest['runs'])} run(s), {rows} rows in {len(manifest['tables'])} "
               f"tables to {out} ({size / 1e6:.2f} MB)")


@store.command("forget")
@click.option("--component", "components", multiple=True, metavar="REF",
              help="An encoder or LLM (its ref, or a fingerprint prefix): its trials, features, similarities.")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME",
              help="What this plugin provided or produced (name as `harness plugins` lists it).")
@click.option("--run", "runs", multiple=True, metavar="RUN",
              help="What this run computed, and its own records (rankings, rungs, costs).")
@click.option("--key", "keys", multiple=True, metavar="KEY",
              help="A trial, embedding or similarity key (at least 8 characters of it).")
@click.option("--dry-run", is_flag=True, help="Say what would go; change nothing.")
@store_option
@wait_option
def store_forget(components, plugins, runs, keys, dry_run: bool, store_path: Path | None, wait: float):
    """Remove stored results so the next run computes them again.

    Use it to have results computed again that the store would otherwise reuse: a plugin's
    component or metric fixed without a new release (or cache_version), trials timed on a busy
    machine, what one run computed. The selectors add up: a
    component takes every trial that used it (with its scores, checkpoint and trials continued
    from it), its features and every similarity involving it; a plugin, all of that for its
    components and every feature or similarity it computed; a run, what it computed and its own
    records; a key, that one trial, feature or similarity. Past runs keep their rankings unless
    their run is named. Start with --dry-run to see what would go.
    """
    from harness.store import Store
    from harness.store.forget import dry_run_lines, forget

    if not (components or plugins or runs or keys):
        raise click.UsageError("say what to forget: --component, --plugin, --run or --key (repeatable)")
    path = _store_path(store_path)
    if not path.exists():
        raise click.ClickException(f"no store at {path}")
    with Store.open(path, read_only=dry_run, wait=wait) as st:
        counts = forget(st, components=components, plugins=plugins, runs=runs, keys=keys, dry_run=dry_run)
    what = ", ".join(f"{table} {n}" for table, n in counts.items()) or "nothing"
    click.echo(f"{'would forget' if dry_run else 'forgot'}: {what}")
    for line in dry_run_lines(counts):  # the checkpoint files a dry run would delete
        click.echo(line)


@store.command("import")
@click.argument("folder", type=click.Path(path_type=Path))
@store_option
@wait_option
def store_import(folder: Path, store_path: Path | None, wait: float):
    """Merge an export folder into the store by content key (importing twice adds nothing)."""
    from harness.store import Store
    from harness.store.exchange import import_export, read_export

    manifest = read_export(folder)  # every check that needs no store, before it is opened
    with Store.open(_store_path(store_path), wait=wait) as st:
        added = import_export(st, folder, manifest)
    click.echo(", ".join(f"{t}: +{n}" for t, n in added.items() if n) or "nothing new")


def _quiet_libraries() -> None:
    """Our own progress and tables replace the libraries' per-load bars and notices."""
    import os

    for var, value in (("TRANSFORMERS_VERBOSITY", "error"), ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TQDM_DISABLE", "1"),
                       ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(var, value)
    _one_line_warnings()


def _one_line_warnings() -> None:
    """harness's own warnings (StoreWarning, ...) print as one line, "warning: message"; the
    libraries' keep Python's format."""
    import warnings

    default = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        module = getattr(category, "__module__", "") or ""
        if module.startswith("harness"):
            return "warning: " + " ".join(str(message).split()) + "\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning


def main() -> None:
    from harness.errors import HarnessError

    _quiet_libraries()
    try:
        cli(prog_name="harness")
    except HarnessError as exc:  # raised while click resolves commands, before invoke
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
