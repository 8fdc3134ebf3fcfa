"""Trial executors."""

from harness.hookspecs import hookimpl


@hookimpl
def register_executors(register):
    register("local", "harness.executors:LocalExecutor", doc="run trials one after another in this process")
