"""Trial executors."""

from harness.hookspecs import hookimpl


@hookimpl
def register_executors(register):
    register("local", "harness.plugins.executors.local:LocalExecutor", doc="run trials one after another in this process")
    register("processes", "harness.plugins.executors.processes:ProcessExecutor", doc="run independent trials in worker processes (HARNESS_WORKERS, default all cores), each with a store shard merged back")
    register("ray", "harness.plugins.executors.ray:RayExecutor",
             doc="trials as Ray tasks on this machine or a cluster (pip install -e \".[ray]\"); only the driver "
                 "writes the store; workers that die are retried")
