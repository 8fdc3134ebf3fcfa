"""Gromov-Wasserstein distance: invariances, known cases, agreement with POT's own solvers."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from harness.gromov import gw_distance, higher_is_closer, intra_distances
from harness.similarity import cka


def rotation(d, rng):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


def clustered(n, d, rng, k=3):
    """Points around k well-separated centres: geometry GW can see at any epsilon."""
    centres = rng.normal(size=(k, d)) * 4
    return centres[np.arange(n) % k] + rng.normal(size=(n, d))


def embedded(x, d_out, rng, noise=0.0):
    """x placed isometrically in a higher dimension (zero-padded, rotated, shifted), plus noise."""
    padded = np.hstack([x, np.zeros((x.shape[0], d_out - x.shape[1]))])
    return padded @ rotation(d_out, rng) + 3.0 + noise * rng.normal(size=(x.shape[0], d_out))


def test_identical_inputs_are_at_distance_zero_for_the_exact_solver():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 5))
    assert gw_distance(x, x, entropic=False) == pytest.approx(0.0, abs=1e-12)


def test_entropic_distance_of_identical_inputs_shrinks_with_epsilon():
    # the entropic plan is blurred, so GW_eps(X, X) > 0; it must vanish as epsilon does
    rng = np.random.default_rng(1)
    x = clustered(12, 4, rng)
    values = [gw_distance(x, x, epsilon=e) for e in (0.05, 0.02, 0.005)]
    assert values[0] > values[1] > values[2] >= 0
    assert values[2] < 0.1 * values[0]


@pytest.mark.parametrize("entropic", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_invariant_to_rigid_motions_and_isotropic_scaling(entropic, seed):
    rng = np.random.default_rng(seed)
    x, y = clustered(14, 6, rng), rng.normal(size=(14, 9))
    base = gw_distance(x, y, entropic=entropic)
    moved_x = x @ rotation(6, rng) - 5.0  # rotation + translation
    scaled_y = 37.0 * (y @ rotation(9, rng)) + 2.0  # isotropic scaling (removed by the max-scaling)
    assert gw_distance(moved_x, scaled_y, entropic=entropic) == pytest.approx(base, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("entropic", [False, True])
def test_ignores_the_row_pairing(entropic):
    # GW compares two geometries and finds its own matching: breaking the pairing of X's and
    # Y's rows changes nothing
    rng = np.random.default_rng(2)
    x = clustered(15, 5, rng)
    y = embedded(x, 8, rng, noise=0.3)
    shuffled = y[rng.permutation(len(y))]
    assert gw_distance(x, shuffled, entropic=entropic) == pytest.approx(
        gw_distance(x, y, entropic=entropic), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("entropic", [False, True])
def test_shared_structure_is_closer_than_unrelated_points(entropic):
    rng = np.random.default_rng(3)
    x = clustered(18, 5, rng)
    same_shape = embedded(x, 12, rng, noise=0.3)  # other width, other scale, same geometry
    unrelated = rng.uniform(size=(18, 12))
    near, far = (gw_distance(x, b, entropic=entropic) for b in (same_shape, unrelated))
    assert 0 <= near < 0.5 * far


def test_entropic_approaches_the_exact_value_on_a_small_case():
    rng = np.random.default_rng(4)
    x = clustered(12, 4, rng)
    y = embedded(x, 6, rng, noise=0.2)
    unrelated = rng.uniform(size=(12, 6))
    exact = gw_distance(x, y, entropic=False)
    scale = gw_distance(x, unrelated, entropic=False)  # what "far" means for these points
    assert abs(gw_distance(x, y, epsilon=0.005) - exact) < 0.1 * scale


def test_two_points_against_an_equilateral_triangle():
    # C1 = [[0, 1], [1, 0]], C2 = 1 - I (3 x 3). For any coupling T with marginals (1/2, 1/2)
    # and (1/3, 1/3, 1/3): GW(T) = sum r_i^2 + sum c_j^2 - 2 ||T||_F^2 = 1/2 + 1/3 - 2 ||T||^2,
    # concave in T, so minimal at a vertex of the transport polytope: T = [[1/3, 1/6, 0],
    # [0, 1/6, 1/3]] up to permutations, ||T||^2 = 5/18, GW = 5/18.
    two = np.array([[0.0], [1.0]])
    triangle = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    assert gw_distance(two, triangle, entropic=False) == pytest.approx(5 / 18, abs=1e-9)


def test_matches_the_square_loss_of_pots_plan_on_the_same_matrices():
    import ot

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(9, 3)), rng.normal(size=(7, 4))
    c1, c2 = cdist(x, x), cdist(y, y)
    c1, c2 = c1 / c1.max(), c2 / c2.max()
    np.testing.assert_allclose(intra_distances(x), c1)
    p, q = ot.unif(9), ot.unif(7)
    plan = ot.gromov.gromov_wasserstein(c1, c2, p, q, loss_fun="square_loss")
    loss = np.einsum("ik,jl,ij,kl->", c1 ** 2, np.ones_like(c2), plan, plan) \
        + np.einsum("ik,jl,ij,kl->", np.ones_like(c1), c2 ** 2, plan, plan) \
        - 2 * np.einsum("ik,jl,ij,kl->", c1, c2, plan, plan)  # sum (C1_ik - C2_jl)^2 T_ij T_kl
    assert gw_distance(x, y, entropic=False) == pytest.approx(loss, rel=1e-9, abs=1e-12)
    entropic = ot.gromov.entropic_gromov_wasserstein2(c1, c2, p, q, loss_fun="square_loss",
                                                       epsilon=0.05)
    assert gw_distance(x, y, epsilon=0.05) == pytest.approx(entropic, rel=1e-9)


def test_deterministic_and_symmetric():
    rng = np.random.default_rng(6)
    x, y = clustered(12, 4, rng), rng.normal(size=(10, 7))
    for entropic in (False, True):
        a = gw_distance(x, y, entropic=entropic)
        assert gw_distance(x, y, entropic=entropic) == a
        assert gw_distance(y, x, entropic=entropic) == pytest.approx(a, rel=1e-6, abs=1e-9)


def test_token_features_are_pooled_and_tensors_accepted():
    import torch

    rng = np.random.default_rng(7)
    tokens = rng.normal(size=(10, 4, 3))
    y = rng.normal(size=(10, 5))
    assert gw_distance(torch.tensor(tokens), y, entropic=False) == pytest.approx(
        gw_distance(tokens.mean(1), y, entropic=False), abs=1e-12)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least 2 samples"):
        gw_distance(np.ones((1, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        gw_distance(np.array([[0.0], [np.nan]]), np.ones((4, 3)))


def test_gw_is_registered_as_a_distance_and_cka_as_a_similarity():
    from harness.plugin_manager import get_components

    metrics = get_components()["similarity_metric"]
    assert metrics.get("gw").load() is gw_distance
    assert higher_is_closer(gw_distance) is False
    assert higher_is_closer(metrics.get("cka").load()) is True and higher_is_closer(cka) is True
