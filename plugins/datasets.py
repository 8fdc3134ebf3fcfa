"""Dataset families: the bundled shapes world, LLaVA-format alignment data, lmms-eval tasks.

Each is a :class:`harness.datasets.DatasetFamily`, registered exactly as a third-party one is."""

from harness.hookspecs import hookimpl

SHAPES = ("align", "color", "shape", "count", "spatial", "digits", "chart")


@hookimpl
def register_datasets(register):
    register("shapes", "harness.plugins.shapes:ShapesFamily", names=SHAPES,
             doc="generated shapes world: alignment mix and graded target tasks")
    register("llava", "harness.plugins.llava:LlavaFamily",
             doc="LLaVA-format json ([{id, image, conversations}]) + image folder, by path")
    register("lmms", "harness.plugins.lmms:LmmsFamily",
             doc="an lmms-eval task by name (with local dataset override) or task folder path")
