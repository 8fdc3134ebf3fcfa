"""Full-data score predictors."""

from harness.hookspecs import hookimpl


@hookimpl
def register_predictors(register):
    register("loglinear", "harness.predictors:LogLinear", doc="Mordal's observational scaling law: score = a + b log(r)")
