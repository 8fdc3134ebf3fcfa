"""Early-stopping policies over candidates."""

from harness.hookspecs import hookimpl


@hookimpl
def register_stopping_policies(register):
    register("sha", "harness.policies:SuccessiveHalving", doc="successive halving: budget x eta per rung, keep the top 1/eta")
    register("none", "harness.policies:NoStopping", doc="train every candidate at full budget")
