"""Representation similarity: linear CKA, full-batch and minibatch (unbiased HSIC).

Mordal clusters vision encoders, and then language models, by how similar their
representations of the same samples are (arXiv 2502.00241, section 3.1). The metric is CKA,
centered kernel alignment (Kornblith et al. 2019):

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) * HSIC(L, L)),   HSIC(K, L) = tr(K H L H) / (n - 1)^2

with K = X X^T, L = Y Y^T the linear-kernel Gram matrices of two representations X [n, p] and
Y [n, q] of the same n samples, and H = I - 11^T / n the centering matrix. CKA compares
representations of different widths and is invariant to orthogonal transforms and isotropic
scaling of either one.

The paper's appendix A uses *minibatch* CKA (Nguyen et al. 2020): the unbiased HSIC estimator
of Song et al. (2012) is averaged over minibatches and CKA is the ratio of those averages.
Memory is then O(batch^2) instead of O(n^2), and the estimate does not depend on the batch
size the way a biased per-batch average would.

Every function here is pure and accepts numpy arrays or torch tensors (the arithmetic used is
common to both); :func:`cka` is the registered entry point and decides where to compute.
Torch is imported only when a tensor is passed or a device is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

Pool = Literal["mean", "flatten"]


def _is_torch(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "torch"


def _eye_like(k: Any) -> Any:
    n = k.shape[0]
    if _is_torch(k):
        import torch

        return torch.eye(n, dtype=k.dtype, device=k.device)
    return np.eye(n, dtype=k.dtype)


def _as_float(a: Any) -> Any:
    """A float64 array (numpy) or tensor (torch), leaving the device alone."""
    if _is_torch(a):
        import torch

        return a.detach().to(torch.float64)
    return np.asarray(a, dtype=np.float64)


def _check_pair(x: Any, y: Any) -> None:
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"expected [n, d] features, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"representations must cover the same samples: {x.shape[0]} rows vs {y.shape[0]} rows"
        )


def center(x: Any) -> Any:
    """Subtract the per-feature mean over samples (rows): H X."""
    return x - x.sum(0)[None, :] / x.shape[0]


def gram(x: Any) -> Any:
    """Linear-kernel Gram matrix X X^T of [n, d] features."""
    return x @ x.T


def linear_cka(x: Any, y: Any) -> float:
    """Biased linear CKA of Kornblith et al. (2019) between [n, p] and [n, q] features.

    Computed as <HKH, HLH>_F / (||HKH||_F ||HLH||_F) with HKH = (HX)(HX)^T; the (n - 1)^2 of
    HSIC cancels. The value lies in [0, 1] and is 1 for identical representations.
    """
    x, y = _as_float(x), _as_float(y)
    _check_pair(x, y)
    kc, lc = gram(center(x)), gram(center(y))
    kl, kk, ll = float((kc * lc).sum()), float((kc * kc).sum()), float((lc * lc).sum())
    if kk <= 0.0 or ll <= 0.0:
        raise ValueError("a representation is constant across samples; CKA is undefined")
    return kl / math.sqrt(kk * ll)


def unbiased_hsic(k: Any, l: Any) -> float:
    """Unbiased HSIC estimator HSIC_1 (Song et al. 2012; Nguyen et al. 2020, eq. 3).

    With K~, L~ the Gram matrices with their diagonals set to zero and n > 3 samples:

        HSIC_1 = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3))

    ``k`` and ``l`` must be symmetric [n, n] kernel matrices (Gram matrices are); symmetry is
    what lets tr(K~ L~) be computed as the elementwise sum of K~ * L~.
    """
    k, l = _as_float(k), _as_float(l)
    n = k.shape[0]
    if k.shape != (n, n) or l.shape != (n, n):
        raise ValueError(f"expected two [n, n] kernel matrices, got {tuple(k.shape)} and {tuple(l.shape)}")
    if n <= 3:
        raise ValueError(f"unbiased HSIC needs more than 3 samples, got {n}")
    off = 1.0 - _eye_like(k)
    kt, lt = k * off, l * off
    trace_kl = (kt * lt).sum()
    sums = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (kt.sum(0) * lt.sum(0)).sum()
    return float((trace_kl + sums - cross) / (n * (n - 3)))


def minibatches(n: int, batch_size: int, seed: int | None = None) -> list[np.ndarray]:
    """Deterministic index batches covering range(n) once each.

    Consecutive slices of ``batch_size`` (after a seeded permutation when ``seed`` is given). A
    last batch of fewer than 4 samples, too small for unbiased HSIC, is merged into the one
    before it.
    """
    if batch_size <= 3:
        raise ValueError(f"minibatch size must be > 3 for unbiased HSIC, got {batch_size}")
    if n <= 3:
        raise ValueError(f"minibatch CKA needs more than 3 samples, got {n}")
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) <= 3:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def minibatch_cka(x: Any, y: Any, batch_size: int, *, seed: int | None = None) -> float:
    """Minibatch linear CKA (Nguyen et al. 2020) between [n, p] and [n, q] features.

    CKA = mean_b HSIC_1(K_b, L_b) / sqrt(mean_b HSIC_1(K_b, K_b) * mean_b HSIC_1(L_b, L_b)) over
    the batches of :func:`minibatches`. With one batch (``batch_size >= n``) this is the full
    unbiased CKA. Being a ratio of unbiased estimates it is 1 for identical representations but,
    unlike :func:`linear_cka`, can fall slightly outside [0, 1] for unrelated ones.
    """
    x, y = _as_float(x), _as_float(y)
    _check_pair(x, y)
    xy = xx = yy = 0.0
    for idx in minibatches(x.shape[0], batch_size, seed):
        if _is_torch(x):
            import torch

            idx = torch.as_tensor(idx, device=x.device)
        k, l = gram(x[idx]), gram(y[idx])
        xy += unbiased_hsic(k, l)
        xx += unbiased_hsic(k, k)
        yy += unbiased_hsic(l, l)
    if xx <= 0.0 or yy <= 0.0:
        raise ValueError("a representation has no variance the unbiased HSIC can see; CKA is undefined")
    return xy / math.sqrt(xx * yy)


def pool_tokens(x: Any, pool: Pool = "mean") -> Any:
    """[n, d] features from [n, d] or token features [n, t, d].

    ``mean`` averages over tokens; ``flatten`` concatenates them into [n, t * d], comparing
    token positions one to one (Kornblith et al. flatten conv feature maps this way). Any other
    rank is an error.
    """
    if pool not in ("mean", "flatten"):
        raise ValueError(f"pool must be 'mean' or 'flatten', got {pool!r}")
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x.mean(1) if pool == "mean" else x.reshape(x.shape[0], -1)
    raise ValueError(f"expected [n, d] or [n, tokens, d] features, got shape {tuple(x.shape)}")


def cka(
    x: Any,
    y: Any,
    *,
    minibatch: int | None = None,
    device: str | None = None,
    pool: Pool = "mean",
    seed: int | None = None,
) -> float:
    """Linear CKA between two representations of the same samples (the registered ``cka``).

    :param x: [n, p] or [n, t, p] features, numpy or torch.
    :param y: [n, q] or [n, s, q] features of the same n samples (t and s may differ with
        ``pool='mean'``).
    :param minibatch: None for the biased full-batch CKA of Kornblith et al. (in [0, 1]); an
        int for minibatch CKA over unbiased HSIC (Nguyen et al.; what Mordal uses), needing O
        (minibatch^2) memory.
    :param device: where to compute: ``"cuda"`` (or ``"cuda:1"``...) computes in torch on that
        GPU when one is available and falls back to the CPU otherwise; None computes where the
        inputs are (numpy on the CPU, tensors on their device).
    :param pool: how token features are reduced to one vector per sample, see
        :func:`pool_tokens`. The default ``mean`` is cheap, works when two models emit different
        numbers of tokens, and is the usual sentence representation for LLM hidden states;
        ``flatten`` keeps the spatial layout of image tokens at t times the cost.
    :param seed: shuffle the samples before batching (minibatch only); None keeps their order.
    """
    if device is not None and (device.startswith("cuda") or _is_torch(x) or _is_torch(y)):
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        x, y = (torch.as_tensor(a).to(device=device, dtype=torch.float64) for a in (x, y))
    elif _is_torch(x) != _is_torch(y):  # one tensor, one array: compute in torch on the tensor's device
        import torch

        dev = x.device if _is_torch(x) else y.device
        x, y = (torch.as_tensor(a).to(device=dev, dtype=torch.float64) for a in (x, y))
    x, y = pool_tokens(_as_float(x), pool), pool_tokens(_as_float(y), pool)
    if minibatch is None:
        return linear_cka(x, y)
    return minibatch_cka(x, y, minibatch, seed=seed)


def pairwise_similarity(
    features: Mapping[str, Any],
    metric: Callable[..., float] = cka,
    **options: Any,
) -> tuple[list[str], np.ndarray]:
    """Similarity of every pair of named representations of the same samples.

    Returns the names (in the mapping's order) and a symmetric [m, m] float64 matrix. Each
    unordered pair is computed once, ``metric(features[a], features[b], **options)``; the
    diagonal is 1, as for every normalised similarity (CKA, RV).
    """
    names = list(features)
    m = len(names)
    sim = np.eye(m, dtype=np.float64)
    for i in range(m):
        for j in range(i + 1, m):
            sim[i, j] = sim[j, i] = float(metric(features[names[i]], features[names[j]], **options))
    return names, sim

