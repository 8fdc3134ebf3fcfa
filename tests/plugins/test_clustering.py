import numpy as np
import pytest

from harness.clustering import (
    CandidateCluster,
    Cluster,
    candidate_clusters,
    cluster,
    distances,
    singletons,
)


def block_similarity(sizes, within=0.9, between=0.2, jitter=0.0, seed=0):
    n = sum(sizes)
    sim = np.full((n, n), between)
    start = 0
    for size in sizes:
        sim[start : start + size, start : start + size] = within
        start += size
    if jitter:
        noise = np.random.default_rng(seed).uniform(-jitter, jitter, size=(n, n))
        sim += (noise + noise.T) / 2
    np.fill_diagonal(sim, 1.0)
    return sim


def test_block_structure_gives_the_blocks():
    names = ["clip", "siglip", "dfn", "dino", "convnext", "resnet", "vit"]
    sim = block_similarity([3, 2, 2], jitter=0.05)
    clusters = cluster(names, sim, threshold=0.3)
    assert sorted(c.members for c in clusters) == sorted(
        [("clip", "dfn", "siglip"), ("convnext", "dino"), ("resnet", "vit")]
    )
    assert [c.medoid for c in clusters] == sorted(c.medoid for c in clusters)


def test_threshold_zero_gives_singletons_and_a_large_one_a_single_cluster():
    names = list("abcdef")
    sim = block_similarity([2, 4], jitter=0.05)
    assert cluster(names, sim, 0.0) == singletons(names)
    (everything,) = cluster(names, sim, 1.5)
    assert everything.members == tuple(names)


def test_medoid_is_the_member_nearest_the_others_ties_by_name():
    names = ["a", "b", "c", "d"]
    # d is close to everyone: it is the medoid of the one cluster
    sim = np.array(
        [
            [1.0, 0.5, 0.5, 0.9],
            [0.5, 1.0, 0.5, 0.9],
            [0.5, 0.5, 1.0, 0.9],
            [0.9, 0.9, 0.9, 1.0],
        ]
    )
    (only,) = cluster(names, sim, 1.0)
    assert only.medoid == "d"
    # two members at the same distance from each other: the first name wins
    (pair,) = cluster(["y", "x"], np.array([[1.0, 0.7], [0.7, 1.0]]), 0.5)
    assert pair == Cluster(("x", "y"), "x")


def test_result_does_not_depend_on_input_order():
    names = ["e1", "e2", "e3", "e4", "e5"]
    sim = block_similarity([2, 3], jitter=0.1, seed=4)
    perm = [3, 0, 4, 2, 1]
    shuffled = cluster([names[i] for i in perm], sim[np.ix_(perm, perm)], 0.4)
    assert shuffled == cluster(names, sim, 0.4)


@pytest.mark.parametrize("linkage", ["single", "complete", "average", "weighted"])
def test_linkages_recover_well_separated_blocks(linkage):
    names = [f"m{i}" for i in range(6)]
    clusters = cluster(names, block_similarity([3, 3]), 0.5, linkage=linkage)
    assert [c.members for c in clusters] == [("m0", "m1", "m2"), ("m3", "m4", "m5")]


def test_distances_clip_unbiased_overshoot():
    d = distances(np.array([[1.0, 1.02], [1.02, 1.0]]))
    assert (d >= 0).all() and d[0, 0] == 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="symmetric"):
        cluster(["a", "b"], np.array([[1.0, 0.2], [0.5, 1.0]]), 0.3)
    with pytest.raises(ValueError, match=r"\[3, 3\]"):
        cluster(["a", "b", "c"], np.eye(2), 0.3)
    with pytest.raises(ValueError, match="threshold"):
        cluster(["a", "b"], np.eye(2), -0.1)
    assert cluster([], np.zeros((0, 0)), 0.5) == []
    assert cluster(["solo"], np.eye(1), 0.5) == [Cluster(("solo",), "solo")]


def test_candidate_clusters_are_cartesian_products_with_medoid_pairs():
    encoders = [Cluster(("clip", "siglip"), "clip"), Cluster(("dino",), "dino")]
    llms = {
        "clip": [Cluster(("llama", "vicuna"), "vicuna"), Cluster(("qwen",), "qwen")],
        "dino": [Cluster(("llama", "qwen", "vicuna"), "llama")],
    }
    got = candidate_clusters(encoders, llms)
    assert got == [
        CandidateCluster(
            (("clip", "llama"), ("clip", "vicuna"), ("siglip", "llama"), ("siglip", "vicuna")),
            ("clip", "vicuna"),
        ),
        CandidateCluster((("clip", "qwen"), ("siglip", "qwen")), ("clip", "qwen")),
        CandidateCluster((("dino", "llama"), ("dino", "qwen"), ("dino", "vicuna")), ("dino", "llama")),
    ]
    # every candidate of the grid appears exactly once
    members = [m for c in got for m in c.members]
    assert len(members) == len(set(members)) == 3 * 3
    with pytest.raises(ValueError, match="dino"):
        candidate_clusters(encoders, {"clip": llms["clip"]})


def _clustering(**fields):
    from harness.suite import Clustering

    return Clustering.model_validate(fields)


def test_similarity_floors_read_as_the_paper_says_smaller_gives_fewer_larger_clusters():
    """Mordal's sensitivity text: "a smaller threshold creates fewer, larger clusters". Nested
    blocks: pairs at 0.9 inside groups of four at 0.75, groups at 0.25 from each other."""
    names = [f"e{i}" for i in range(8)]
    sim = np.full((8, 8), 0.25)
    for g in (0, 4):
        sim[g:g + 4, g:g + 4] = 0.75
        for p in (g, g + 2):
            sim[p:p + 2, p:p + 2] = 0.9
    np.fill_diagonal(sim, 1.0)

    def sizes(**fields):
        c = _clustering(**fields)
        return sorted(len(k.members) for k in cluster(names, sim, c.distance_cut("encoder")))

    assert sizes(t_ve=0.95) == [1] * 8  # nothing is that alike
    assert sizes(t_ve=0.8) == [2, 2, 2, 2]
    assert sizes(t_ve=0.7) == [4, 4]  # smaller floor: fewer, larger clusters
    assert sizes(t_ve=0.2) == [8]
    # the same cuts written as distances, where a larger value gives fewer clusters
    assert sizes(threshold_kind="max_distance", t_ve=0.2) == [2, 2, 2, 2]
    assert sizes(threshold_kind="max_distance", t_ve=0.3) == [4, 4]
    assert sizes(threshold_kind="max_distance", t_ve=0.7) == [4, 4]
    # the old reading of the paper's 0.8 as a distance merges everything
    assert sizes(threshold_kind="max_distance", t_ve=0.8) == [8]


def test_threshold_kind_defaults_to_the_paper_and_round_trips_through_a_suite(tmp_path):
    from harness.suite import SuiteError, load_suite

    c = _clustering()
    assert (c.threshold_kind, c.distance_cut("encoder"), c.distance_cut("llm")) == \
        ("min_similarity", pytest.approx(0.3), pytest.approx(0.2))
    assert _clustering(threshold_kind="max_distance", t_ve=1.5).distance_cut("encoder") == 1.5
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nzoo: {vision_encoders: [tiny:vit-p8], language_models: [tiny:llama]}\n"
                     "alignment: {dataset: shapes:align}\ntargets: [{task: shapes:color}]\n"
                     "search:\n  clustering: {threshold_kind: min_similarity, t_ve: 1.2}\n")
    with pytest.raises(SuiteError) as err:
        load_suite(suite)
    assert "s.yaml:6 search.clustering.t_ve: a similarity floor is at most 1, got 1.2" in str(err.value)
    assert "threshold_kind: max_distance" in str(err.value)
    suite.write_text(suite.read_text().replace("min_similarity, t_ve: 1.2", "max_distance, t_ve: 0.25"))
    loaded = load_suite(suite)
    assert loaded.search.clustering.distance_cut("encoder") == 0.25
    again = type(loaded).model_validate(loaded.model_dump(mode="json"))
    assert again.search.clustering == loaded.search.clustering
