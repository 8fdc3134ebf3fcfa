"""Every command's --help explains every option (issue 30 item 4): walked with click's CliRunner
over the real command tree, subgroups and the built-in plugins' commands included."""

import click
from click.testing import CliRunner

from harness.cli import cli


def _commands(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ("harness",)):
    yield path, group, ctx
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = click.Context(command, info_name=name, parent=ctx)
        if isinstance(command, click.Group):
            yield from _commands(command, sub, path + (name,))
        else:
            yield path + (name,), command, sub


def test_every_option_of_every_command_has_help_text():
    ctx = click.Context(cli, info_name="harness")
    walked = list(_commands(cli, ctx))
    names = {" ".join(path) for path, _, _ in walked}
    assert {"harness sql", "harness trial", "harness store", "harness store forget", "harness zoo"} <= names
    missing = []
    for path, command, sub in walked:
        if not (command.help or "").strip():
            missing.append(f"{' '.join(path)}: the command itself")
        for param in command.get_params(sub):
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{' '.join(path)} {'/'.join(param.opts)}")
    assert not missing, "options without help text:\n" + "\n".join(missing)


def test_every_help_page_renders():
    """`--help` of each command exits 0 and shows its options, never an error."""
    runner = CliRunner()
    for path, _, _ in _commands(cli, click.Context(cli, info_name="harness")):
        result = runner.invoke(cli, [*path[1:], "--help"], prog_name="harness")
        assert result.exit_code == 0, (path, result.output)
        assert "Options:" in result.output, (path, result.output)


def test_store_help_says_what_the_group_is_for_and_trial_uses_the_shipped_zoo():
    runner = CliRunner()
    store = runner.invoke(cli, ["store", "--help"], prog_name="harness").output
    assert "DuckDB file" in store and "harness sql" in store
    forget = runner.invoke(cli, ["store", "forget", "--help"], prog_name="harness").output
    assert "harness.store" not in forget and "--dry-run" in forget
    trial = runner.invoke(cli, ["trial", "--help"], prog_name="harness").output
    assert "--encoder mini:clip-vit-s --llm mini:llama-mixed" in trial
    from harness.plugin_manager import get_components

    for ref in ("mini:clip-vit-s", "mini:llama-mixed"):  # the examples name shipped components
        kind = "vision_encoder" if "clip" in ref else "language_model"
        get_components()[kind].resolve(ref)
