"""Layer conductance of a vision encoder on a task, and the Directional Conductance Divergence
(DCD) between two tasks, after "Model Specific Task Similarity for Vision Language Model
Selection via Layer Conductance" (Yang et al.).

A task is represented, per encoder, by how much each of the encoder's sequential blocks
conducts the task's decision on a few of its examples:

1. The task output. The encoder has no task head, so one is fitted: a few-shot linear probe
   (scikit-learn ``LogisticRegression``, seeded) on the standardised, mean-pooled tokens of the
   ``k`` examples against their answers. The scalar output of example ``x`` is the probe's logit
   for ``x``'s true answer. The probe is refit on the same ``k`` examples it explains: it stands
   for "what this encoder would need to solve the task", not for a held-out accuracy.
2. Conductance. captum's ``LayerConductance`` per block, from a baseline to each example. The
   baseline is the *mean image* of the ``k`` examples (in preprocessed pixel space): the probe
   separates examples from each other, so the path should carry what differs between them, not
   the image statistics every item shares (a black baseline attributes mostly the latter).
3. Block importance. Per example, the sum of |conductance| over the block's output; averaged
   over examples -> one non-negative value per block (:func:`block_conductance`), normalised to
   a distribution over blocks (:func:`importance_distribution`).

DCD(S -> T), for source task S and target task T on the same encoder (:func:`dcd`):

    C[i, j]  = |i - j| / (n - 1)                        normalised depth distance of blocks i, j
    pi_ST    = sinkhorn(p_S, p_T, C, eps)               rows: source blocks, columns: target blocks
    pi_TT    = sinkhorn(p_T, p_T, C, eps)               the target's entropic self-alignment
    DCD(S->T) = sum_j p_T(j) * KL( pi_TT(. | j) || pi_ST(. | j) )

``pi(. | j)`` is a plan's column ``j`` normalised: the target-conditioned distribution over the
blocks that target block ``j`` is aligned with. Both plans have column marginal ``p_T``, so this
is ``KL(pi_TT || pi_ST)``, which also equals ``KL(p_T || p_S) + E_{i ~ p_T} KL(pi_TT(. | i) ||
pi_ST(. | i))``: the divergence of the source's block importance from the target's, plus how
differently the two plans spread the target's important blocks over depth.

Why directional: every term is weighted by the *target's* importance and conditioned on the
target's blocks, and KL(p_T || p_S) is large where the target relies on a block the source does
not use (the source's evidence says little about it), small in the opposite case. So a source
that uses every block "covers" a target that relies on one, not the other way round. It is a
sum of KL divergences of normalised distributions, hence >= 0, and 0 when p_S = p_T (the two
plans are then the same computation). Distributions carry a small uniform floor, so every plan
entry is positive and DCD is finite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from harness.errors import BadInput

# names of the module lists that hold an encoder's sequential blocks: timm ViT ``blocks``, timm
# ConvNeXt / many CNNs ``stages``, transformers ``encoder.layers`` (CLIP, SigLIP) and
# ``encoder.layer`` (DINOv2), open_clip ViT ``transformer.resblocks``
BLOCK_CONTAINERS = ("blocks", "stages", "layers", "layer", "resblocks")
_RESNET_STAGE = re.compile(r"layer(\d+)")

DEFAULT_EPSILON = 0.1  # entropic regularisation, on depth costs scaled to [0, 1]
DEFAULT_FLOOR = 1e-3  # share of uniform mass mixed into a block-importance distribution
# steps of the trapezoid rule along the baseline -> input path; profiles are cached under the
# layer name "conductance", so a change here (or to the probe) must rename that layer
N_STEPS = 8


# ---------------------------------------------------------------- blocks


def encoder_blocks(encoder, *, reaching_output: bool = True) -> list[tuple[str, object]]:
    """The encoder's sequential blocks, input to output, as ``(qualified name, module)``.

    Found structurally in ``encoder.model`` (or ``encoder`` itself when it has no ``.model``):
    ResNet-style direct children ``layer1..layerN``; else the first ``ModuleList`` /
    ``Sequential`` named one of :data:`BLOCK_CONTAINERS`, in module order. With
    ``reaching_output`` blocks whose output the encoder's tokens do not depend on are left out
    (a transformers tower read at ``hidden_states[-2]`` runs its last layer for nothing);
    that is checked with one backward pass on a blank image.
    """
    from torch import nn

    model = getattr(encoder, "model", encoder)
    stages = [(n, m) for n, m in model.named_children() if _RESNET_STAGE.fullmatch(n)]
    blocks = sorted(stages, key=lambda nm: int(_RESNET_STAGE.fullmatch(nm[0]).group(1)))
    if not blocks:
        for name, module in model.named_modules():
            if (name.rsplit(".", 1)[-1] in BLOCK_CONTAINERS and len(module) > 0
                    and isinstance(module, (nn.ModuleList, nn.Sequential))):
                blocks = [(f"{name}.{i}", child) for i, child in enumerate(module)]
                break
    if not blocks:
        raise BadInput(
            f"cannot find the sequential blocks of {getattr(encoder, 'ref', type(model).__name__)}"
            f" ({type(model).__name__}): expected children layer1..layerN or a ModuleList/Sequential"
            f" named one of {', '.join(BLOCK_CONTAINERS)}")
    if reaching_output and hasattr(encoder, "image_size"):
        reached = _blocks_reaching_output(encoder, [m for _, m in blocks])
        blocks = [b for b, ok in zip(blocks, reached) if ok]
    return blocks


def _blocks_reaching_output(encoder, modules) -> list[bool]:
    import torch

    reached = [False] * len(modules)

    def hook(i):
        def on_output(_module, _inputs, output):
            for t in _tensors(output):
                if t.requires_grad:
                    t.register_hook(lambda g, i=i: reached.__setitem__(i, reached[i] or bool(g.abs().sum() > 0)))
        return on_output

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    p = next(encoder.parameters())
    try:
        with torch.enable_grad():
            x = torch.randn(1, 3, *encoder.image_size, generator=torch.Generator().manual_seed(0))
            x = x.to(device=p.device, dtype=p.dtype).requires_grad_(True)
            encoder(x).float().sum().backward()
    finally:
        for h in handles:
            h.remove()
        encoder.zero_grad(set_to_none=True)
    return reached


def _tensors(output) -> list:
    import torch

    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for t in output if isinstance(t, torch.Tensor)]
    return []


# ---------------------------------------------------------------- the task output


@dataclass(frozen=True)
class TaskProbe:
    """A linear probe on standardised pooled features: ``logits = ((z - mean) / std) @ W.T + b``."""

    classes: tuple[str, ...]
    mean: np.ndarray  # [D]
    std: np.ndarray  # [D]
    weight: np.ndarray  # [C, D], one row per class
    bias: np.ndarray  # [C]

    def target_indices(self, labels) -> list[int]:
        index = {c: i for i, c in enumerate(self.classes)}
        return [index[str(label)] for label in labels]

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std) @ self.weight.T + self.bias


def fit_probe(features: np.ndarray, labels, *, seed: int = 0, c: float = 1.0) -> TaskProbe:
    """Fit a seeded multinomial logistic regression on ``features`` [k, D] against ``labels``."""
    from sklearn.linear_model import LogisticRegression

    labels = [str(label) for label in labels]
    if len(set(labels)) < 2:
        raise BadInput(f"a task probe needs examples with at least two different answers; got "
                       f"{len(labels)} examples all answering {labels[0]!r}" if labels
                       else "a task probe needs examples; got none")
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(0)
    std = np.maximum(x.std(0), 1e-6)  # a constant feature would divide by zero
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit((x - mean) / std, labels)
    weight, bias = clf.coef_, clf.intercept_
    if weight.shape[0] == 1:  # binary: sklearn keeps one row, the logit of classes_[1]
        weight, bias = np.concatenate([-weight, weight]) / 2, np.concatenate([-bias, bias]) / 2
    return TaskProbe(tuple(str(c_) for c_ in clf.classes_), mean, std, weight, bias)


def pooled_features(encoder, pixels):
    """Mean-pooled tokens [B, D] (float32) of a batch of preprocessed images."""
    return encoder(pixels).float().mean(1)


def probe_forward(encoder, probe: TaskProbe):
    """A differentiable ``pixels -> probe logits [B, C]`` for captum."""
    import torch

    mean, std, weight, bias = (torch.as_tensor(a, dtype=torch.float32)
                               for a in (probe.mean, probe.std, probe.weight, probe.bias))

    def forward(pixels):
        z = pooled_features(encoder, pixels)
        m, s, w, b = (t.to(z.device) for t in (mean, std, weight, bias))
        return ((z - m) / s) @ w.T + b

    return forward


# ---------------------------------------------------------------- conductance


def layer_conductance(forward, block, pixels, baselines, targets, *, n_steps: int = N_STEPS,
                      internal_batch_size: int | None = None):
    """captum's conductance of ``block``'s output(s) for ``forward``'s ``targets`` logits:
    a tuple of tensors shaped like the block's output tensors."""
    import torch
    from captum.attr import LayerConductance

    with torch.enable_grad():
        attr = LayerConductance(forward, block).attribute(
            pixels, baselines=baselines, target=targets, n_steps=n_steps,
            method="riemann_trapezoid", internal_batch_size=internal_batch_size)
    return attr if isinstance(attr, tuple) else (attr,)


def block_conductance(encoder, pixels, labels, *, seed: int = 0, n_steps: int = N_STEPS,
                      internal_batch_size: int | None = None) -> np.ndarray:
    """Importance of each of :func:`encoder_blocks` for the task the examples pose: the mean
    over examples of the summed |conductance| over the block's output. Shape [n_blocks]."""
    import torch

    encoder.eval()
    p = next(encoder.parameters())
    pixels = pixels.to(device=p.device, dtype=p.dtype)
    with torch.no_grad():
        feats = pooled_features(encoder, pixels).cpu().numpy()
    probe = fit_probe(feats, labels, seed=seed)
    forward = probe_forward(encoder, probe)
    targets = probe.target_indices(labels)
    baselines = pixels.mean(0, keepdim=True).expand_as(pixels).contiguous()
    out = []
    for _, block in encoder_blocks(encoder):
        attrs = layer_conductance(forward, block, pixels, baselines, targets, n_steps=n_steps,
                                  internal_batch_size=internal_batch_size)
        per_example = sum(a.detach().float().abs().reshape(a.shape[0], -1).sum(1) for a in attrs)
        out.append(float(per_example.mean()))
    return np.asarray(out, dtype=np.float64)


def task_profile(encoder, items, *, seed: int = 0, n_steps: int = N_STEPS) -> np.ndarray:
    """The encoder's block-importance distribution on ``items`` (images with answers), float32
    rounded to float16 precision, so a profile read back from the store equals a fresh one."""
    import torch

    pixels = torch.stack([encoder.transform(it.image) for it in items])
    importance = block_conductance(encoder, pixels, [it.answer for it in items], seed=seed,
                                   n_steps=n_steps)
    total = importance.sum()
    if not np.isfinite(total) or total <= 0:
        raise BadInput(f"{getattr(encoder, 'ref', 'encoder')}: no conductance through any block "
                       "(the probe's output does not depend on the image)")
    return (importance / total).astype(np.float16).astype(np.float32)


# ---------------------------------------------------------------- divergence


def importance_distribution(importance, floor: float = DEFAULT_FLOOR) -> np.ndarray:
    """Non-negative block importances -> a distribution with ``floor`` of uniform mass mixed in."""
    v = np.asarray(importance, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError(f"block importances must be a non-empty finite non-negative vector, got {v}")
    total = v.sum()
    p = v / total if total > 0 else np.full_like(v, 1.0 / v.size)
    return (1.0 - floor) * p + floor / v.size


def depth_cost(n: int) -> np.ndarray:
    """|i - j| / (n - 1): block depth distance scaled to [0, 1] (zeros for a single block)."""
    depth = np.arange(n, dtype=np.float64)
    return np.abs(depth[:, None] - depth[None, :]) / max(n - 1, 1)


def alignment_plan(p_source, p_target, epsilon: float = DEFAULT_EPSILON) -> np.ndarray:
    """The entropic OT plan (POT's Sinkhorn) from source blocks to target blocks. Costs lie in
    [0, 1], so the kernel exp(-C / epsilon) stays above exp(-1 / epsilon) (4.5e-5 at the default):
    the plain iteration is stable there and far cheaper than the log-domain one."""
    import ot

    a, b = np.asarray(p_source, np.float64), np.asarray(p_target, np.float64)
    return ot.sinkhorn(a, b, depth_cost(a.size), epsilon, method="sinkhorn",
                       numItermax=500, stopThr=1e-8)


def dcd(source_importance, target_importance, *, epsilon: float = DEFAULT_EPSILON,
        floor: float = DEFAULT_FLOOR) -> float:
    """Directional Conductance Divergence DCD(source -> target) (module docstring): >= 0, 0 for
    equal profiles, asymmetric. Both vectors are block importances of the same encoder."""
    from scipy.special import rel_entr

    p_s = importance_distribution(source_importance, floor)
    p_t = importance_distribution(target_importance, floor)
    if p_s.size != p_t.size:
        raise ValueError(f"profiles over different blocks: {p_s.size} vs {p_t.size}")
    cond_st = _column_conditionals(alignment_plan(p_s, p_t, epsilon))
    cond_tt = _column_conditionals(alignment_plan(p_t, p_t, epsilon))
    value = float(np.sum(p_t * rel_entr(cond_tt, cond_st).sum(0)))
    return max(value, 0.0)  # a sum of KLs; only float rounding can dip below zero


def _column_conditionals(plan: np.ndarray) -> np.ndarray:
    # a tiny positive floor: an entropic plan is positive, but exp underflow can make it 0
    plan = np.maximum(plan, 1e-300)
    return plan / plan.sum(0, keepdims=True)
