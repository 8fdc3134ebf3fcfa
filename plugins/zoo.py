"""The miniature pretrained zoo: ``mini:`` encoders and LLMs, and the ``harness zoo`` command."""

from harness.hookspecs import hookimpl


@hookimpl
def register_commands(cli):
    from harness.zoo_cli import zoo

    cli.add_command(zoo)
