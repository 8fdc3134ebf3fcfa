"""Search strategies."""

from harness.hookspecs import hookimpl


@hookimpl
def register_search_strategies(register):
    register("grid", "harness.strategies.grid:GridSearch", doc="train every candidate at r = 1 and rank by measured score")
    register("mordal", "harness.strategies.mordal:MordalSearch", doc="cluster by CKA, SHA over clusters, SHA + scaling law inside (arXiv 2502.00241)")
