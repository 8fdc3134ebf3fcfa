"""Representation-similarity metrics."""

from harness.hookspecs import hookimpl


@hookimpl
def register_similarity_metrics(register):
    register("cka", "harness.plugins.similarity.cka:cka", doc="linear CKA; minibatch unbiased-HSIC CKA for large n (Nguyen et al. 2020)", is_distance=False,
             takes=("minibatch", "seed"))
    register("gw", "harness.plugins.similarity.gromov:gw_distance", doc="Gromov-Wasserstein distance between two representations' intra-modal distance matrices (POT; entropic by default); a distance, lower is closer", is_distance=True)
