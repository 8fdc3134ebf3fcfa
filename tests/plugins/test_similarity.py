import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.similarity import (
    cka,
    linear_cka,
    minibatch_cka,
    minibatches,
    pairwise_similarity,
    pool_tokens,
    unbiased_hsic,
)

FAST = settings(max_examples=25, deadline=None)


def features(seed, n=40, d=8):
    return np.random.default_rng(seed).normal(size=(n, d))


def orthogonal(seed, d):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def related(seed, n=60, p=10, q=14, noise=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    return x, x @ rng.normal(size=(p, q)) + noise * rng.normal(size=(n, q))


seeds = st.integers(0, 2**31 - 1)
dims = st.integers(2, 12)


@FAST
@given(seeds, dims)
def test_self_similarity_is_one(seed, d):
    x = features(seed, d=d)
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert minibatch_cka(x, x, 16) == pytest.approx(1.0)


@FAST
@given(seeds, dims, st.floats(0.01, 100.0))
def test_invariant_to_orthogonal_transform_and_isotropic_scaling(seed, d, scale):
    x, y = features(seed, d=d), features(seed + 1, d=5)
    q = orthogonal(seed + 2, d)
    base = linear_cka(x, y)
    assert linear_cka(scale * x @ q, y) == pytest.approx(base, abs=1e-9)
    assert linear_cka(x, scale * y) == pytest.approx(base, abs=1e-9)
    mb = minibatch_cka(x, y, 10)
    assert minibatch_cka(scale * x @ q, y, 10) == pytest.approx(mb, abs=1e-9)


@FAST
@given(seeds, dims, dims)
def test_symmetric_bounded_and_width_agnostic(seed, p, q):
    x, y = features(seed, d=p), features(seed + 1, d=q)
    value = linear_cka(x, y)
    assert 0.0 <= value <= 1.0 + 1e-12
    assert linear_cka(y, x) == pytest.approx(value)
    assert minibatch_cka(x, y, 8) == pytest.approx(minibatch_cka(y, x, 8))


def test_known_case_against_the_centering_matrix_formula():
    x = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, 3.0], [4.0, 2.0], [1.0, 1.0]])
    y = np.array([[2.0], [1.0], [0.0], [3.0], [5.0]])
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n

    def hsic(k, l):
        return np.trace(k @ h @ l @ h) / (n - 1) ** 2

    k, l = x @ x.T, y @ y.T
    expected = hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-12)


def test_unbiased_hsic_against_a_direct_sum():
    # HSIC_1 as the U-statistic it is: an average over ordered 4-tuples of distinct indices.
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    k, l = x @ x.T, y @ y.T
    n = len(k)
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * (l[i, j] + l[q, r] - 2 * l[i, q])
        count += 1
    assert unbiased_hsic(k, l) == pytest.approx(total / count, rel=1e-10)


def test_unbiased_minibatch_estimate_is_close_to_full_unbiased_cka():
    x, y = related(0, n=1200, noise=1.0)
    full = minibatch_cka(x, y, len(x))
    assert minibatch_cka(x, y, 200) == pytest.approx(full, abs=0.03)
    assert minibatch_cka(x, y, 200, seed=1) == pytest.approx(full, abs=0.03)


def test_unbiased_minibatches_do_not_inflate_independent_features():
    # Why minibatch CKA uses unbiased HSIC: biased CKA of independent features is far from 0
    # on small batches, the unbiased estimate is not.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1000, 10)), rng.normal(size=(1000, 10))
    biased_per_batch = np.mean([linear_cka(x[i : i + 20], y[i : i + 20]) for i in range(0, 1000, 20)])
    assert biased_per_batch > 0.3
    assert abs(minibatch_cka(x, y, 20)) < 0.05


def test_minibatches_are_deterministic_and_merge_a_tiny_tail():
    assert [len(b) for b in minibatches(10, 4)] == [4, 6]
    assert [len(b) for b in minibatches(12, 4)] == [4, 4, 4]
    assert np.concatenate(minibatches(10, 4)).tolist() == list(range(10))
    a, b = minibatches(50, 8, seed=7), minibatches(50, 8, seed=7)
    assert all((u == v).all() for u, v in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == list(range(50))
    with pytest.raises(ValueError, match="> 3"):
        minibatches(10, 3)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(features(0, n=10), features(1, n=11))
    with pytest.raises(ValueError, match="more than 3"):
        unbiased_hsic(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(np.ones((10, 3)), features(0, n=10))


def test_token_features_pool_or_flatten():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(20, 5, 4))
    assert pool_tokens(tokens, "mean").shape == (20, 4)
    assert pool_tokens(tokens, "flatten").shape == (20, 20)
    other = rng.normal(size=(20, 7, 3))  # different token count and width
    assert cka(tokens, other) == pytest.approx(linear_cka(tokens.mean(1), other.mean(1)))
    assert cka(tokens, tokens, pool="flatten") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="pool"):
        cka(tokens, other, pool="max")


def test_torch_and_device_paths_match_numpy():
    torch = pytest.importorskip("torch")
    x, y = related(1, n=64)
    ref, ref_mb = cka(x, y), cka(x, y, minibatch=16)
    assert cka(torch.tensor(x, dtype=torch.float32), torch.tensor(y)) == pytest.approx(ref, rel=1e-6)
    assert cka(torch.tensor(x), y, minibatch=16) == pytest.approx(ref_mb, rel=1e-9)
    # 'cuda' falls back to the CPU when no GPU is present
    assert cka(x, y, device="cuda") == pytest.approx(ref, rel=1e-9)
    assert cka(x, y, minibatch=16, device="cuda") == pytest.approx(ref_mb, rel=1e-9)


def test_pairwise_similarity_is_symmetric_with_unit_diagonal():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 6))
    feats = {"b": base, "a": base @ orthogonal(1, 6), "c": rng.normal(size=(30, 9))}
    names, sim = pairwise_similarity(feats)
    assert names == ["b", "a", "c"]
    assert np.allclose(sim, sim.T) and np.allclose(np.diag(sim), 1.0)
    assert sim[0, 1] == pytest.approx(1.0)
    _, mb = pairwise_similarity(feats, minibatch=10)
    assert mb[0, 1] == pytest.approx(1.0) and mb[0, 2] < 0.5
