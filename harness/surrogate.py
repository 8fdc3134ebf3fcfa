"""A surrogate of every candidate's full-data score, with uncertainty, for a model-based search.

The model (a Gaussian process with a kernel built from the grid's structure, written out as a
linear-Gaussian model so the posterior is exact and closed-form):

    f_i = m + beta * h_i + a_e(i) + b_l(i) + c_i           the full-data (r = 1) score of candidate i
    y   = rho_r f_i + d_r + a'_(e,r) + b'_(l,r) + c'_(i,r) + noise   a score at ratio r < 1

* ``a_e`` / ``b_l``: encoder and LLM main effects (sd ``s_enc`` / ``s_llm``): one measurement of
  a pair informs every candidate sharing its encoder or LLM, which is why main effects are
  estimated with less noise than any single candidate (the grid's additive structure);
* ``c_i``: the pair's own interaction (sd ``s_pair``);
* ``h_i``: the prior from history (mean standardised score of the pair on other tasks, 0 where
  unknown) with a learned weight ``beta`` (sd ``s_hist``): the data decide how far to trust it;
* at a ratio r < 1 (multi-fidelity, autoregressive co-kriging): ``rho_r`` says how much of a
  full-data difference shows at r (near 0 where small ratios sit at the constant-answer floor),
  ``d_r`` is a shift shared by every score at r, and ``a'``, ``b'``, ``c'`` are the parts of a
  low-ratio score that the full-data score does not explain, themselves with encoder and LLM
  structure (an encoder that learns slowly is low at r with every LLM); at r = 1, y = f_i + noise;
  ``noise`` is the score's own standard error (binomial over its test items).

Hyperparameters come from the store's history when it has some (:func:`fit_hyperparameters`:
variance components of full-data grids on other tasks; how low-ratio scores follow full-data
ones), else from defaults that take low ratios at their word (rho 1, as Mordal's scaling
assumption does). Why not
scikit-learn's GaussianProcessRegressor: its kernels act on feature vectors, and this kernel is
a sum of group indicators over latent encoder, LLM and per-ratio parts; written as a
linear-Gaussian model it is ~100 lines of numpy, exact, and one update for 48 candidates takes
about a millisecond (``benchmarks/anytime.py --timing`` prints it for 48 and 500).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Hyper:
    """The model's scales, in score units. Per ratio r < 1 (multi-fidelity, an autoregressive
    co-kriging model): ``rho[r]`` (how a full-data difference shows at r) and the sds of the
    part of a score at r that the full-data score does not explain, by encoder, LLM and pair."""

    mean: float = 0.3  # prior mean of a full-data score
    s_mean: float = 0.2  # uncertainty of that mean
    s_enc: float = 0.08
    s_llm: float = 0.08
    s_pair: float = 0.04
    hist_weight: float = 0.0  # prior mean of that weight: how much a unit of history moves a score
    s_hist: float = 0.08  # sd of the weight on the history prior (per unit of standardised score)
    s_shift: float = 0.1  # a shift shared by every score at one ratio
    rho: Mapping[float, float] = field(default_factory=dict)
    d_enc: Mapping[float, float] = field(default_factory=dict)
    d_llm: Mapping[float, float] = field(default_factory=dict)
    d_pair: Mapping[float, float] = field(default_factory=dict)
    # with no history: a low ratio shows full-data differences as they are (rho 1, the scaling
    # assumption Mordal makes) plus a modest discrepancy
    rho_default: float = 1.0
    d_default: float = 0.03

    def at(self, ratio: float) -> tuple[float, float, float, float]:
        """(rho, d_enc, d_llm, d_pair) at ``ratio``; (1, 0, 0, 0) at r = 1."""
        if ratio >= 1.0 - 1e-12:
            return 1.0, 0.0, 0.0, 0.0
        r = round(ratio, 6)
        return (float(self.rho.get(r, self.rho_default)), float(self.d_enc.get(r, self.d_default)),
                float(self.d_llm.get(r, self.d_default)), float(self.d_pair.get(r, self.d_default)))


class Surrogate:
    """Posterior over the full-data scores of ``candidates`` (pairs (encoder, llm)).

    :param prior: candidate -> history prior (standardised score on other tasks); missing: 0.
    :param ratios: the ratios < 1 scores may come from (more are added as they are observed).
    """

    def __init__(self, candidates: Sequence[tuple[Hashable, Hashable]], hyper: Hyper | None = None,
                 prior: Mapping | None = None, ratios: Sequence[float] = ()):
        self.candidates = list(candidates)
        self.index = {c: i for i, c in enumerate(self.candidates)}
        self.hyper = hyper or Hyper()
        n = len(self.candidates)
        self.encoders = sorted({c[0] for c in self.candidates}, key=str)
        self.llms = sorted({c[1] for c in self.candidates}, key=str)
        self.enc_of = np.array([self.encoders.index(c[0]) for c in self.candidates])
        self.llm_of = np.array([self.llms.index(c[1]) for c in self.candidates])
        A = np.zeros((n, len(self.encoders)))
        B = np.zeros((n, len(self.llms)))
        A[np.arange(n), self.enc_of] = 1.0
        B[np.arange(n), self.llm_of] = 1.0
        h = np.array([float((prior or {}).get(c, 0.0)) for c in self.candidates])
        hy = self.hyper
        self.prior_h = h
        self.m0 = hy.mean + hy.hist_weight * h  # the prior's pick is history's best
        self.K = (hy.s_mean ** 2 * np.ones((n, n)) + hy.s_hist ** 2 * np.outer(h, h)
                  + hy.s_enc ** 2 * A @ A.T + hy.s_llm ** 2 * B @ B.T + hy.s_pair ** 2 * np.eye(n))
        self.low = sorted({round(float(r), 6) for r in ratios if r < 1.0 - 1e-12})
        self.observations: list[tuple[int, float, float, float]] = []  # (i, ratio, score, se)
        self._post = None

    def with_hyper(self, hyper: Hyper) -> Surrogate:
        """The same candidates, prior and observations under other hyperparameters (to compare
        their :meth:`log_evidence`, or to refit as data arrive)."""
        model = Surrogate(self.candidates, hyper, {c: h for c, h in zip(self.candidates, self.prior_h)},
                          ratios=self.low)
        model.observations = list(self.observations)
        return model

    def believing(self, pairs: Sequence[tuple[Hashable, float]], se: Mapping[float, float]) -> Surrogate:
        """A copy that has also observed each (candidate, ratio) of ``pairs`` at its posterior
        mean, with standard error ``se[ratio]`` (the "kriging believer": trials in flight
        shrink the uncertainty they will remove, without guessing their scores)."""
        import copy

        m, _ = self._posterior()
        model = copy.copy(self)
        model.observations = list(self.observations)
        for c, r in pairs:
            i = self.index[c]
            H, _ = self._rows(round(r, 6), np.array([i]))
            model.observations.append((i, round(r, 6), float((H @ m)[0]), se[r]))
        model._post = None
        return model

    # -- data ---------------------------------------------------------------------------------

    def observe(self, candidate, ratio: float, score: float, se: float = 0.0) -> None:
        """A measured score (NaN: a failed trial, which tells nothing about the score)."""
        if score is None or not math.isfinite(score):
            return
        r = round(float(ratio), 6)
        if r < 1.0 - 1e-12 and r not in self.low:
            self.low = sorted([*self.low, r])
        self.observations.append((self.index[candidate], r, float(score), float(se)))
        self._post = None

    # -- the latent vector: [f (n) | per low ratio: shift, encoder parts, LLM parts] ------------

    def _block(self, r: float) -> int:
        n, E, L = len(self.candidates), len(self.encoders), len(self.llms)
        return n + self.low.index(r) * (1 + E + L)

    def _prior(self):
        n, E, L = len(self.candidates), len(self.encoders), len(self.llms)
        dim = n + len(self.low) * (1 + E + L)
        P = np.zeros((dim, dim))
        P[:n, :n] = self.K
        for r in self.low:
            b = self._block(r)
            _, de, dl, _ = self.hyper.at(r)
            P[b, b] = self.hyper.s_shift ** 2
            P[b + 1: b + 1 + E, b + 1: b + 1 + E] = np.eye(E) * de ** 2
            P[b + 1 + E: b + 1 + E + L, b + 1 + E: b + 1 + E + L] = np.eye(L) * dl ** 2
        m = np.concatenate([self.m0, np.zeros(dim - n)])
        return m, P

    def _rows(self, ratio: float, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, noise without the score's own SE): observation rows of candidates ``which`` at ``ratio``."""
        n, E = len(self.candidates), len(self.encoders)
        dim = n + len(self.low) * (1 + E + len(self.llms))
        H = np.zeros((len(which), dim))
        rho, _, _, dp = self.hyper.at(ratio)
        H[np.arange(len(which)), which] = rho
        if ratio < 1.0 - 1e-12 and ratio in self.low:
            b = self._block(ratio)
            H[:, b] = 1.0
            H[np.arange(len(which)), b + 1 + self.enc_of[which]] = 1.0
            H[np.arange(len(which)), b + 1 + E + self.llm_of[which]] = 1.0
        elif ratio < 1.0 - 1e-12:  # a ratio with no block yet: its parts at their prior, as noise
            _, de, dl, _ = self.hyper.at(ratio)
            dp = math.sqrt(dp ** 2 + de ** 2 + dl ** 2 + self.hyper.s_shift ** 2)
        return H, np.full(len(which), dp ** 2)

    # -- the posterior ------------------------------------------------------------------------

    def _observed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(H, noise, y) of every observation: its row of the latent vector, its variance (the
        unexplained part at its ratio plus its own SE squared) and its score."""
        rows = [self._rows(r, np.array([i])) for i, r, _, _ in self.observations]
        H = np.vstack([h for h, _ in rows])
        noise = np.array([extra[0] + se ** 2 + 1e-8 for (_, extra), (_, _, _, se) in zip(rows, self.observations)])
        y = np.array([s for _, _, s, _ in self.observations])
        return H, noise, y

    def _posterior(self):
        if self._post is None:
            m, P = self._prior()
            if self.observations:
                H, noise, y = self._observed()
                PH = P @ H.T
                S = H @ PH + np.diag(noise)
                L = np.linalg.cholesky(S)
                gain = np.linalg.solve(L.T, np.linalg.solve(L, PH.T)).T  # P H' S^-1
                m = m + gain @ (y - H @ m)
                P = P - gain @ PH.T
            self._post = (m, P)
        return self._post

    def log_evidence(self) -> float:
        """log p(observations) under this model (its hyperparameters' marginal likelihood)."""
        if not self.observations:
            return 0.0
        m, P = self._prior()
        H, noise, y = self._observed()
        S = H @ P @ H.T + np.diag(noise)
        L = np.linalg.cholesky(S)
        z = np.linalg.solve(L, y - H @ m)
        return float(-0.5 * z @ z - np.log(np.diag(L)).sum() - 0.5 * len(y) * math.log(2 * math.pi))

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean [n], covariance [n, n]) of the full-data scores given every observation."""
        m, P = self._posterior()
        n = len(self.candidates)
        return m[:n], P[:n, :n]

    def mean_sd(self) -> tuple[np.ndarray, np.ndarray]:
        mean, cov = self.posterior()
        return mean, np.sqrt(np.clip(np.diag(cov), 0.0, None))

    def draws(self, draws: int = 4000, seed: int = 0) -> np.ndarray:
        """[draws, n] samples of the full-data scores from the posterior (seeded: the same data
        give the same samples). The last ones are kept until the posterior changes, so
        :meth:`p_best` and :meth:`p_within` of one state share them."""
        post = self._posterior()
        cached = getattr(self, "_draws", None)
        if cached is not None and cached[0] is post and cached[1] == (draws, seed):
            return cached[2]
        mean, cov = self.posterior()
        rng = np.random.default_rng(seed)
        w, V = np.linalg.eigh(cov)
        root = V * np.sqrt(np.clip(w, 0.0, None))
        samples = mean + rng.standard_normal((draws, len(mean))) @ root.T
        self._draws = (post, (draws, seed), samples)
        return samples

    def p_best(self, draws: int = 4000, seed: int = 0) -> np.ndarray:
        """P(candidate i has the highest full-data score), by sampling the posterior (seeded:
        the same data give the same probabilities)."""
        samples = self.draws(draws, seed)
        wins = np.bincount(np.argmax(samples, axis=1), minlength=samples.shape[1])
        return wins / draws

    def p_within(self, tolerance: float, draws: int = 4000, seed: int = 0) -> np.ndarray:
        """P(candidate i's full-data score is within ``tolerance`` of the highest): with
        tolerance 0, :meth:`p_best`; above it, candidates tied within noise count together (the
        probabilities then sum to more than 1)."""
        samples = self.draws(draws, seed)
        return (samples >= samples.max(axis=1, keepdims=True) - tolerance).mean(axis=0)

    def lookahead(self, ratios: Sequence[float], se: Mapping[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """What one more measurement would tell, for every candidate i at every ratio r:
        (cov [n_j, n_i, len(ratios)]: cov(f_j, y_ir), var [n_i, len(ratios)]: var(y_ir)), with
        ``se[r]`` the measurement's own standard error."""
        _, P = self._posterior()
        n = len(self.candidates)
        cov = np.zeros((n, n, len(ratios)))
        var = np.zeros((n, len(ratios)))
        every = np.arange(n)
        for k, r in enumerate(ratios):
            r = round(float(r), 6)
            H, noise = self._rows(r, every)
            PH = P @ H.T  # [dim, i]
            var[:, k] = np.einsum("id,di->i", H, PH) + noise + se.get(r, 0.0) ** 2 + 1e-12
            cov[:, :, k] = PH[:n, :]
        return cov, var

    def information(self, ratios: Sequence[float], weights: np.ndarray, se: Mapping[float, float]
                    ) -> np.ndarray:
        """[n, len(ratios)]: how much measuring candidate i at ratio r would shrink the
        ``weights``-weighted variance of the full-data scores (closed form for one Gaussian
        observation: sum_j w_j cov(f_j, y)^2 / var(y))."""
        cov, var = self.lookahead(ratios, se)
        return np.einsum("j,jik->ik", weights, cov ** 2) / var

    def knowledge_gradient(self, ratios: Sequence[float], se: Mapping[float, float], nodes: int = 48
                           ) -> np.ndarray:
        """[n, len(ratios)]: the knowledge gradient of measuring candidate i at ratio r, the
        expected rise of the best posterior mean, E[max_j mu'_j] - max_j mu_j, where after the
        measurement mu'_j = mu_j + cov(f_j, y) / sd(y) * Z, Z ~ N(0, 1) (correlated beliefs,
        Frazier, Powell & Dayanik 2009); the expectation by Gauss-Hermite quadrature."""
        mean, _ = self.posterior()
        cov, var = self.lookahead(ratios, se)
        slope = cov / np.sqrt(var)[None, :, :]  # [j, i, k]
        z, w = np.polynomial.hermite_e.hermegauss(nodes)
        w = w / w.sum()
        best = float(mean.max())
        n = len(mean)
        out = np.zeros(slope.shape[1:])
        block = max(1, 4_000_000 // (n * slope.shape[2] * nodes))  # bounded memory for large grids
        for a in range(0, n, block):
            # [i, k, node]: max over j of mean_j + slope_jik * z
            top = (mean[:, None, None, None] + slope[:, a:a + block, :, None] * z).max(axis=0)
            out[a:a + block] = top @ w - best
        return np.clip(out, 0.0, None)

    def expected_improvement(self, ratios: Sequence[float], se: Mapping[float, float]) -> np.ndarray:
        """[n, len(ratios)]: multi-fidelity expected improvement (Huang et al. 2006): candidate
        i's EI over the best posterior mean, times the correlation between its full-data score
        and a measurement of it at ratio r."""
        from scipy.stats import norm

        mean, sd = self.mean_sd()
        cov, var = self.lookahead(ratios, se)
        n = len(mean)
        gap = mean - mean.max()
        safe = np.maximum(sd, 1e-12)
        ei = np.where(sd > 1e-12, gap * norm.cdf(gap / safe) + sd * norm.pdf(gap / safe), 0.0)
        own = cov[np.arange(n), np.arange(n), :]  # cov(f_i, y_ir)
        corr = own / (safe[:, None] * np.sqrt(var))
        return ei[:, None] * np.clip(corr, 0.0, 1.0)

    def sample(self, seed: int) -> np.ndarray:
        """One draw of the full-data scores from the posterior (seeded)."""
        return self.draws(1, seed)[0]


def standardised(scores: Mapping) -> dict:
    """Each value as a z-score within ``scores`` (0 when they do not vary)."""
    vals = np.array([float(scores[k]) for k in sorted(scores, key=str)], dtype=float)
    if len(vals) < 2 or not np.isfinite(vals).all() or vals.std() == 0:
        return {k: 0.0 for k in scores}
    mu, sd = vals.mean(), vals.std()
    return {k: (float(v) - mu) / sd for k, v in scores.items()}


def history_prior(full_by_task: Mapping[str, Mapping]) -> dict:
    """candidate -> mean standardised full-data score over the history tasks it was scored on."""
    sums: dict = {}
    for _, scores in sorted(full_by_task.items()):
        for c, z in standardised(scores).items():
            s, k = sums.get(c, (0.0, 0))
            sums[c] = (s + z, k + 1)
    return {c: s / k for c, (s, k) in sums.items()}


def fit_hyperparameters(full_by_task: Mapping[str, Mapping], low_by_task: Mapping[str, Mapping] | None = None,
                        base: Hyper | None = None) -> Hyper:
    """Scales from history: per task, a two-way decomposition of its full-data grid (encoder
    main effect, LLM main effect, residual), averaged over tasks; the weight of the history
    prior (leave-one-task-out slopes); per ratio r < 1, ``rho[r]`` (the slope of scores at r on
    full-data scores) and the same decomposition of what that slope leaves unexplained. Tasks
    with fewer than 2 encoders or LLMs are skipped. ``low_by_task``: task -> {(candidate, ratio):
    score}."""
    base = base or Hyper()
    enc_v, llm_v, res_v, means, sds = [], [], [], [], []
    for _, scores in sorted(full_by_task.items()):
        cands = sorted(scores, key=str)
        encs = sorted({c[0] for c in cands}, key=str)
        llms = sorted({c[1] for c in cands}, key=str)
        if len(encs) < 2 or len(llms) < 2:
            continue
        y = np.array([float(scores[c]) for c in cands])
        ev, lv, pv = variance_components(scores)
        enc_v.append(ev)
        llm_v.append(lv)
        res_v.append(pv)
        mu = y.mean()
        means.append(mu)
        sds.append(y.std())
    if not enc_v:
        return base
    # how far history predicts a task: the slope of each history task's scores on the prior made
    # from the other history tasks (leave-one-out), averaged; its spread is the weight's sd
    slopes = []
    for task, scores in sorted(full_by_task.items()):
        others = {t: v for t, v in full_by_task.items() if t != task}
        if not others:
            continue
        h = history_prior(others)
        cands = [c for c in sorted(scores, key=str) if c in h]
        x = np.array([h[c] for c in cands])
        y = np.array([float(scores[c]) for c in cands])
        if len(cands) >= 3 and x.std() > 0:
            slopes.append(float(np.cov(x, y, bias=True)[0, 1] / x.var()))
    # never below 0: history that disagrees with itself is worth nothing, never read backwards
    # (with two history tasks whose scores run against each other the leave-one-out slope is
    # negative, and the prior's pick would be history's worst)
    hist_weight = max(float(np.mean(slopes)), 0.0) if slopes else 0.0
    s_hist = max(float(np.std(slopes)), 0.25 * abs(hist_weight), 0.01) if slopes else float(np.mean(sds))
    rho, d_enc, d_llm, d_pair = {}, {}, {}, {}
    if low_by_task:
        per_r: dict = {}
        for task, low in sorted(low_by_task.items()):
            full = full_by_task.get(task, {})
            by_r: dict = {}
            for (c, r), v in sorted(low.items(), key=str):
                if c in full and r < 1.0 - 1e-12:
                    by_r.setdefault(round(r, 6), {})[c] = float(v)
            for r, at in sorted(by_r.items()):
                cands = sorted(at, key=str)
                if len(cands) < 4:
                    continue
                x = np.array([float(full[c]) for c in cands])
                y = np.array([at[c] for c in cands])
                slope = float(np.cov(x, y, bias=True)[0, 1] / x.var()) if x.var() > 0 else 0.0
                resid = dict(zip(cands, y - y.mean() - slope * (x - x.mean())))
                ev, lv, pv = variance_components(resid)
                per_r.setdefault(r, []).append((slope, ev, lv, pv))
        for r, vals in sorted(per_r.items()):
            v = np.array(vals)
            rho[r] = float(np.mean(v[:, 0]))
            d_enc[r], d_llm[r], d_pair[r] = (math.sqrt(float(np.mean(v[:, k]))) + 1e-3 for k in (1, 2, 3))
    return Hyper(mean=float(np.mean(means)), s_mean=max(float(np.std(means)), 0.05),
                 s_enc=math.sqrt(float(np.mean(enc_v))) + 1e-3, s_llm=math.sqrt(float(np.mean(llm_v))) + 1e-3,
                 s_pair=math.sqrt(float(np.mean(res_v))) + 1e-3, hist_weight=hist_weight, s_hist=s_hist,
                 s_shift=base.s_shift, rho=rho, d_enc=d_enc, d_llm=d_llm, d_pair=d_pair,
                 rho_default=base.rho_default, d_default=base.d_default)


def variance_components(values: Mapping) -> tuple[float, float, float]:
    """Variance of encoder main effects, LLM main effects and the rest, of {(enc, llm): value}."""
    cands = sorted(values, key=str)
    y = np.array([float(values[c]) for c in cands])
    mu = y.mean()
    # sorted, so the sums (and every decision made from them) do not depend on hash order
    ea = {e: np.mean([float(values[c]) for c in cands if c[0] == e]) - mu for e in sorted({c[0] for c in cands}, key=str)}
    la = {l: np.mean([float(values[c]) for c in cands if c[1] == l]) - mu for l in sorted({c[1] for c in cands}, key=str)}
    res = np.array([float(values[c]) - mu - ea[c[0]] - la[c[1]] for c in cands])
    return float(np.var(list(ea.values()))), float(np.var(list(la.values()))), float(np.var(res))
