"""Representation-similarity metrics."""

from harness.hookspecs import hookimpl


@hookimpl
def register_similarity_metrics(register):
    register("cka", "harness.similarity:cka", doc="linear CKA; minibatch unbiased-HSIC CKA for large n (Nguyen et al. 2020)", is_distance=False)
    register("gw", "harness.gromov:gw_distance", doc="Gromov-Wasserstein distance between two representations' intra-modal distance matrices (POT; entropic by default); a distance, lower is closer", is_distance=True)
