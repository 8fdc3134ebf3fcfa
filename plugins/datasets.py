"""Dataset families: the bundled shapes world, LLaVA-format alignment data, lmms-eval tasks."""

from harness.hookspecs import hookimpl

SHAPES = ("align", "color", "shape", "count", "spatial", "digits", "chart")


@hookimpl
def register_datasets(register):
    register("shapes", "harness.shapes:load_dataset", names=SHAPES, doc="generated shapes world: alignment mix and graded target tasks")
    register("llava", "harness.datasets:load_llava", doc="LLaVA-format json ([{id, image, conversations}]) + image folder, by path")
    register("lmms", "harness.datasets:load_lmms_task", doc="an lmms-eval task by name (with local dataset override) or task folder path")
