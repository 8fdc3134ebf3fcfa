"""The miniature pretrained zoo: ``mini:`` encoders and LLMs pretrained on the shapes world, and
the ``harness zoo`` command. :mod:`.recipes`: what each component is, where its weights are, its
loaders (no torch at import); :mod:`.train`: the objectives and ``build``; :mod:`.cli`: the
command; ``zoo_data``: the shipped weights."""

from harness.hookspecs import hookimpl


@hookimpl
def register_commands(cli):
    from harness.plugins.zoo.cli import zoo

    cli.add_command(zoo)
