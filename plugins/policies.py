"""Early-stopping policies over candidates."""

from harness.hookspecs import hookimpl


@hookimpl
def register_stopping_policies(register):
    register("sha", "harness.policies:SuccessiveHalving", doc="successive halving: budget x eta per rung, keep the top 1/eta")
    register("asha", "harness.policies:AsynchronousSuccessiveHalving", doc="asynchronous successive halving (Li et al. 2020): promote a candidate as soon as it is in the top 1/eta of its rung")
    register("hyperband", "harness.policies:Hyperband", doc="Hyperband (Li et al. 2018): successive halving brackets with different starting ratios")
    register("none", "harness.policies:NoStopping", doc="train every candidate at full budget")
