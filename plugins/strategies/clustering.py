"""Hierarchical clustering of components by representation similarity, with medoids.

Mordal (arXiv 2502.00241, section 3.1 and appendix A) clusters vision encoders by CKA, then,
for each encoder cluster, clusters the language models on embeddings made with that cluster's
medoid encoder; each (encoder cluster x LLM cluster) Cartesian product is one *candidate
cluster*, represented by its medoid pair. The paper uses ``scipy.cluster.hierarchy``.

Thresholds. The paper's appendix C sets "the threshold for vision encoder and LLMs" to t_ve
and t_llm (0.7 and 0.8 in its summary) without saying whether they bound similarity or
distance. Its sensitivity analysis says "a smaller threshold creates fewer, larger clusters",
which reads like a *similarity* floor; the paper also says "a distance matrix is ... constructed
based on the dissimilarity values" and fed to the clustering function with that threshold.
Here ``threshold`` is what ``scipy.cluster.hierarchy.fcluster(..., criterion='distance')``
takes: a cut on the merge height over distances ``1 - similarity``. Two groups join when their
linkage distance is <= threshold, so 0 gives singletons (short of identical representations)
and larger thresholds give fewer, larger clusters. Suites say which reading their t_ve / t_llm
use (``clustering.threshold_kind``): the default ``min_similarity`` is the paper's, a floor s
becomes the cut ``1 - s`` (``harness.suite.Clustering.distance_cut``); ``max_distance`` passes
the value through.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Sums of distances this close are treated as equal when choosing a medoid, so that the
# name decides and the result does not depend on floating-point summation order.
_MEDOID_TIE_TOL = 1e-12


@dataclass(frozen=True)
class Cluster:
    """A group of components (sorted by name) and its medoid, the member nearest the rest."""

    members: tuple[str, ...]
    medoid: str


@dataclass(frozen=True)
class CandidateCluster:
    """(encoder, LLM) pairs from one encoder cluster x one LLM cluster, and the medoid pair."""

    members: tuple[tuple[str, str], ...]
    medoid: tuple[str, str]


def _check_matrix(names: Sequence[str], similarity: np.ndarray) -> np.ndarray:
    sim = np.asarray(similarity, dtype=np.float64)
    m = len(names)
    if sim.shape != (m, m):
        raise ValueError(f"similarity matrix must be [{m}, {m}] for {m} names, got {sim.shape}")
    if len(set(names)) != m:
        raise ValueError(f"names must be unique, got {list(names)}")
    if not np.isfinite(sim).all():
        raise ValueError("similarity matrix has non-finite entries")
    if not np.allclose(sim, sim.T, rtol=1e-9, atol=1e-9):
        raise ValueError("similarity matrix must be symmetric")
    return sim


def distances(similarity: np.ndarray) -> np.ndarray:
    """Distance matrix 1 - similarity: symmetrised, zero diagonal, clipped at 0.

    Clipping matters for unbiased (minibatch) CKA, which can exceed 1 by estimation noise.
    """
    d = 1.0 - np.asarray(similarity, dtype=np.float64)
    d = np.maximum((d + d.T) / 2.0, 0.0)
    np.fill_diagonal(d, 0.0)
    return d


def medoid(members: Sequence[str], names: Sequence[str], distance: np.ndarray) -> str:
    """The member with the smallest summed distance to the other members; ties go to the name first in sort order."""
    index = {n: i for i, n in enumerate(names)}
    idx = [index[m] for m in members]
    sums = distance[np.ix_(idx, idx)].sum(axis=1)
    best = sums.min()
    tied = [m for m, s in zip(members, sums) if s <= best + _MEDOID_TIE_TOL * max(1.0, abs(best))]
    return min(tied)


def cluster(
    names: Sequence[str],
    similarity_matrix: np.ndarray,
    threshold: float,
    linkage: str = "average",
) -> list[Cluster]:
    """Agglomerative clustering of ``names`` cut at distance ``threshold`` (see module docstring).

    ``similarity_matrix[i, j]`` is the similarity of names[i] and names[j]. ``linkage`` is any
    ``scipy.cluster.hierarchy.linkage`` method (``ward``/``centroid``/``median`` assume
    Euclidean distances, which 1 - CKA is not; ``average`` is the default). Names are sorted
    before clustering so the result does not depend on input order; clusters come back sorted
    by medoid name, members sorted by name.
    """
    from scipy.cluster.hierarchy import fcluster
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from scipy.spatial.distance import squareform

    sim = _check_matrix(names, similarity_matrix)
    if not (math.isfinite(float(threshold)) and threshold >= 0):
        raise ValueError(f"threshold must be a finite distance >= 0, got {threshold!r}")
    order = sorted(range(len(names)), key=lambda i: names[i])
    names = [names[i] for i in order]
    dist = distances(sim[np.ix_(order, order)])
    if len(names) == 0:
        return []
    if len(names) == 1:
        labels = np.array([1])
    else:
        tree = scipy_linkage(squareform(dist, checks=False), method=linkage)
        labels = fcluster(tree, t=float(threshold), criterion="distance")
    groups: dict[int, list[str]] = {}
    for name, label in zip(names, labels):
        groups.setdefault(int(label), []).append(name)
    clusters = [Cluster(tuple(g), medoid(g, names, dist)) for g in groups.values()]
    return sorted(clusters, key=lambda c: c.medoid)


def singletons(names: Sequence[str]) -> list[Cluster]:
    """Every name in its own cluster (clustering disabled), sorted by name."""
    return [Cluster((n,), n) for n in sorted(names)]


def candidate_clusters(
    encoder_clusters: Sequence[Cluster],
    llm_clusters_per_encoder_cluster: Mapping[str, Sequence[Cluster]],
) -> list[CandidateCluster]:
    """Candidate clusters: each encoder cluster x each of its LLM clusters, as a Cartesian product.

    ``llm_clusters_per_encoder_cluster`` maps an encoder cluster's medoid to the LLM clusters
    computed with that medoid's embeddings. The medoid candidate pairs the two medoids. Order:
    encoder clusters as given, then their LLM clusters as given; members sorted.
    """
    out = []
    for enc in encoder_clusters:
        if enc.medoid not in llm_clusters_per_encoder_cluster:
            raise ValueError(f"no LLM clusters for encoder cluster with medoid {enc.medoid!r}")
        for llm in llm_clusters_per_encoder_cluster[enc.medoid]:
            members = tuple(sorted(itertools.product(enc.members, llm.members)))
            out.append(CandidateCluster(members, (enc.medoid, llm.medoid)))
    return out


def farthest_members(members: Sequence, medoid, distance, k: int) -> list:
    """``k`` representatives of a cluster: its medoid, then greedily the member farthest from
    those already chosen (max-min ``distance(a, b)``; ties by member order). Fewer when the
    cluster is smaller."""
    chosen = [medoid]
    rest = [m for m in members if m != medoid]
    while rest and len(chosen) < k:
        far = max(rest, key=lambda m: (min(distance(m, c) for c in chosen), -rest.index(m)))
        chosen.append(far)
        rest.remove(far)
    return chosen
