"""Full-data score predictors."""

from harness.hookspecs import hookimpl


@hookimpl
def register_predictors(register):
    register("loglinear", "harness.predictors:LogLinear", doc="Mordal's observational scaling law: score = a + b log(r)")
    register("rectified", "harness.predictors:Rectified", doc="rectified scaling law (Lin et al. 2024): error = B / (D_l + D^beta) + E, fitted on the points past the phase transition")
    register("powerlaw", "harness.predictors:PowerLaw", doc="saturating power law: score = c - a * r^(-alpha)")
