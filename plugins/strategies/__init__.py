"""Search strategies."""

from harness.hookspecs import hookimpl


@hookimpl
def register_search_strategies(register):
    register("grid", "harness.plugins.strategies.grid:GridSearch", doc="train every candidate at r = 1 and rank by measured score")
    register("mordal", "harness.plugins.strategies.mordal:MordalSearch", doc="cluster by CKA, SHA over clusters, SHA + scaling law inside (arXiv 2502.00241)")
    register("gw-prescreen", "harness.plugins.strategies.gw_prescreen:GWPrescreen", doc="rank every candidate by Gromov-Wasserstein distance between image and text embedding geometry (no training), train only the top few")
    register("dcd", "harness.plugins.strategies.dcd:DCDSearch", doc="rank candidates for a new task from their stored results on the most similar past tasks, by Directional Conductance Divergence")
    register("learned", "harness.plugins.strategies.learned:LearnedSearch", doc="model-based and cost-aware: a surrogate of every candidate's full-data score (encoder and LLM effects, a prior from the store's other tasks), the next (candidate, ratio) by knowledge gradient per training sample, stop at search.options.confidence or budget")
