"""Pretraining the miniature zoo: :func:`build` a recipe of :mod:`harness.plugins.zoo.recipes`,
the objectives and their loops (this module imports the recipes, never the other way round).

Everything here runs inside ``build``'s seeded, single-threaded context and consumes random
numbers in a fixed order, so a recipe's weights are a pure function of the recipe (changing
the order in which modules are created or random numbers drawn changes the shipped weights:
bump :data:`harness.plugins.zoo.recipes.ZOO_VERSION` and rebuild when you do).

Encoders train through the :class:`~harness.vision.VisionEncoder` wrapper the VLM uses, on
the tokens it returns (pooled to the recipe's grid), except where an objective needs the
library model's internals (CLIP's pooled CLS, MAE's patch embedding). Heads are discarded.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from harness.plugins.zoo.recipes import (
    IMAGE_SIZE,
    Progress,
    Recipe,
    _locked,
    _quiet_transformers,
    _write_manifest,
    batch_order,
    corpus_lines,
    default_build_dir,
    read_manifest,
    recipe,
    render_pool,
    scene_samples,
)
from torch import nn


def fit(params: list, step_loss: Callable[[int], torch.Tensor], r: Recipe,
        progress: Progress | None, *, weight_decay: float = 0.05,
        warmup: float = 0.05) -> list[float]:
    """AdamW, linear warmup then cosine decay, gradient clipping at 1; returns per-step losses."""
    optim = torch.optim.AdamW(params, lr=r.lr, weight_decay=weight_decay)
    warm = max(1, int(warmup * r.steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, r.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(optim, factor)
    losses = []
    for step in range(r.steps):
        loss = step_loss(step)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{r.ref}: non-finite loss at step {step}")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        sched.step()
        losses.append(float(loss.item()))
        if progress is not None:
            progress(step + 1, r.steps, losses[-1])
    return losses


# ---------------------------------------------------------------- encoders


def new_encoder(r: Recipe):
    """The recipe's encoder at random init (call under a seed), wrapped as a VisionEncoder."""
    from harness import vision
    from harness.plugins.encoders import families

    extra = {"mini": r.name}
    if r.library == "timm":
        import timm

        data = ({"mean": vision.HALF, "std": vision.HALF} if r.arch.startswith("vit")
                else {"mean": vision.IMAGENET_MEAN, "std": vision.IMAGENET_STD})
        overlay = dict(input_size=(3, IMAGE_SIZE, IMAGE_SIZE), crop_pct=1.0,
                       interpolation="bicubic", **data)
        model = timm.create_model(r.arch, pretrained=False, num_classes=0,
                                  pretrained_cfg_overlay=overlay, **dict(r.arch_args))
        return families._wrap_timm(model, ref=r.ref, name=r.name, layer=None, grid=r.grid,
                                 weights_id=None, extra=extra)
    import transformers

    config = getattr(transformers, r.arch)(**dict(r.arch_args))
    model = transformers.CLIPVisionModel(config)
    processor = families._default_processor(config.model_type, config.image_size)
    return families._wrap_hf(model, processor, ref=r.ref, name=r.name, layer=-2, grid=r.grid,
                           weights_id=None, extra=extra)


def pixels(images_u8, mean, std) -> torch.Tensor:
    """uint8 [B, H, W, 3] (numpy) -> normalised float [B, 3, H, W], as the encoder's transform."""
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float() / 255.0
    return normalize(x, mean, std)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def train_encoder(r: Recipe, progress: Progress | None):
    """(encoder, per-step losses): the recipe's image pool, objective and schedule."""
    enc = new_encoder(r)
    if r.objective == "none" or r.steps == 0:
        return enc, []
    n = int(r.data["images"])
    order = batch_order(n, r.steps, r.batch, r.seed)
    samples = scene_samples(r.data, sorted(set(order.reshape(-1).tolist())))
    images = render_pool(samples, IMAGE_SIZE)
    gen = torch.Generator().manual_seed(r.seed)
    mean, std = enc.transform.mean, enc.transform.std
    objective = OBJECTIVES[r.objective](r, enc, samples, gen)
    enc.model.train()

    def step_loss(step: int):
        idx = order[step]
        x01 = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float() / 255.0
        return objective.loss(x01, idx, lambda x: normalize(x, mean, std))

    params = list(enc.model.parameters()) + list(objective.parameters())
    losses = fit(params, step_loss, r, progress)
    enc.model.eval()
    return enc, losses


class Objective(nn.Module):
    """Heads and a loss over a batch: ``loss(x01 [B, 3, H, W] in [0, 1], pool indices, normalise)``.

    The encoder is held outside the module tree, so ``parameters()`` are the heads only.
    """

    def __init__(self, r: Recipe, enc, samples: Mapping[int, Any], gen: torch.Generator):
        super().__init__()
        self.enc, self.samples, self.gen = [enc], samples, gen
        self.options = dict(r.options)
        self.width = enc.hidden_size

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc[0](x)

    def loss(self, x01, idx, norm) -> torch.Tensor:
        raise NotImplementedError


class SimCLR(Objective):
    """Two augmented views of each image agree (NT-Xent) through a projection of mean tokens."""

    def __init__(self, r, enc, samples, gen):
        super().__init__(r, enc, samples, gen)
        self.head = nn.Sequential(nn.Linear(self.width, 128), nn.GELU(),
                                  nn.Linear(128, self.options["projection"]))

    def loss(self, x01, idx, norm):
        views = torch.cat([augment(x01, self.gen, self.options),
                           augment(x01, self.gen, self.options)])
        z = F.normalize(self.head(self.tokens(norm(views)).mean(1)), dim=1)
        return nt_xent(z, self.options["temperature"])


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss over 2B normalised embeddings where rows i and i+B are the positive pair."""
    b2 = z.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(b2, dtype=torch.bool), float("-inf"))
    target = (torch.arange(b2) + b2 // 2) % b2
    return F.cross_entropy(sim, target)


def augment(x01: torch.Tensor, gen: torch.Generator, o: Mapping[str, Any]) -> torch.Tensor:
    """Random resized crop (+ flip) and strong colour jitter, batched, in [0, 1] space."""
    b = x01.shape[0]

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(b, *shape, generator=gen)

    area = uniform(*o["crop_scale"])
    aspect = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
    sx = torch.sqrt(area * aspect).clamp(max=1.0)
    sy = torch.sqrt(area / aspect).clamp(max=1.0)
    tx = (uniform(-1, 1)) * (1 - sx)
    ty = (uniform(-1, 1)) * (1 - sy)
    if o.get("flip"):
        sx = sx * torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    zero = torch.zeros(b)
    theta = torch.stack([torch.stack([sx, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    x = F.grid_sample(x01, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # hue: rotate colours about the grey axis (Rodrigues), up to +-pi * hue
    angle = uniform(-math.pi, math.pi) * o["hue"]
    k = torch.full((3,), 1 / math.sqrt(3))
    cross = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    cos, sin = torch.cos(angle).view(b, 1, 1), torch.sin(angle).view(b, 1, 1)
    rot = cos * torch.eye(3) + sin * cross + (1 - cos) * torch.outer(k, k)
    x = torch.einsum("bij,bjhw->bihw", rot, x)
    grey = x.mean(1, keepdim=True)
    x = grey + uniform(*o["saturation"]).view(b, 1, 1, 1) * (x - grey)
    x = x * uniform(*o["brightness"]).view(b, 1, 1, 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + uniform(*o["contrast"]).view(b, 1, 1, 1) * (x - mean)
    to_grey = (torch.rand(b, generator=gen) < o["grayscale"]).view(b, 1, 1, 1)
    x = torch.where(to_grey, x.mean(1, keepdim=True).expand_as(x), x)
    return x.clamp(0, 1)


def scene_attributes(scene, grid: int = 4) -> dict:
    """Labels the ``attributes`` objective predicts: object count, which shape kinds are
    present, scene kind, and per grid cell the shape whose centre lies there (0: none; the
    largest wins). No colours: the supervised encoders are not told them."""
    from harness.plugins.shapes import BASE, SHAPES

    kinds = [0] * len(SHAPES)
    cells = [0] * (grid * grid)
    best = [0.0] * (grid * grid)
    for t in scene.things:
        kinds[SHAPES.index(t.shape)] = 1
        cell = min(grid - 1, int(t.y / BASE * grid)) * grid + min(grid - 1, int(t.x / BASE * grid))
        if t.r > best[cell]:
            best[cell], cells[cell] = t.r, 1 + SHAPES.index(t.shape)
    kind = 2 if scene.chart is not None else 1 if scene.glyph is not None else 0
    return {"count": len(scene.things), "kinds": kinds, "cells": cells, "scene": kind}


class Attributes(Objective):
    """Supervised scene attributes from the scene specs, on the grid tokens the VLM sees."""

    def __init__(self, r, enc, samples, gen):
        from harness.plugins.shapes import SHAPES

        labels = {i: scene_attributes(s.scene, r.grid or 4) for i, s in samples.items()}
        super().__init__(r, enc, samples, gen)
        self.labels = labels
        self.count = nn.Linear(self.width, 10)
        self.kinds = nn.Linear(self.width, len(SHAPES))
        self.scene = nn.Linear(self.width, 3)
        self.cell = nn.Linear(self.width, 1 + len(SHAPES))

    def loss(self, x01, idx, norm):
        tokens = self.tokens(norm(x01))  # [B, grid*grid, D]
        pooled = tokens.mean(1)
        lab = [self.labels[int(i)] for i in idx]
        count = torch.tensor([a["count"] for a in lab])
        kinds = torch.tensor([a["kinds"] for a in lab], dtype=torch.float32)
        scene = torch.tensor([a["scene"] for a in lab])
        cells = torch.tensor([a["cells"] for a in lab])
        return (F.cross_entropy(self.count(pooled), count)
                + F.binary_cross_entropy_with_logits(self.kinds(pooled), kinds)
                + 0.5 * F.cross_entropy(self.scene(pooled), scene)
                + F.cross_entropy(self.cell(tokens).flatten(0, 1), cells.flatten()))


class Digits(Objective):
    """Classify the handwritten digit from the mean token (digit scenes only)."""

    def __init__(self, r, enc, samples, gen):
        super().__init__(r, enc, samples, gen)
        self.labels = {i: s.scene.glyph.digit for i, s in samples.items()}
        self.head = nn.Linear(self.width, 10)

    def loss(self, x01, idx, norm):
        y = torch.tensor([self.labels[int(i)] for i in idx])
        return F.cross_entropy(self.head(self.tokens(norm(x01)).mean(1)), y)


class Clip(Objective):
    """Image-caption contrastive (CLIP): the tower's pooled CLS vs a tiny CLIP text tower over
    one generated caption per image, word-level tokenizer of the shapes vocabulary."""

    def __init__(self, r, enc, samples, gen):
        import numpy as np
        import transformers
        from harness.plugins.shapes import caption, vocabulary

        from harness.plugins.language_models.families import build_word_tokenizer

        tok = build_word_tokenizer(vocabulary())
        text_args = dict(r.options["text"])
        projection = text_args.pop("projection_dim")
        ids = {}
        for i, s in samples.items():
            text = caption(s.scene, np.random.default_rng([int(r.data["seed"]), 0xCA9, i]))
            ids[i] = tok(text)["input_ids"] + [tok.eos_token_id]
        super().__init__(r, enc, samples, gen)
        self.pad, self.ids = tok.pad_token_id, ids
        config = transformers.CLIPTextConfig(
            vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, **text_args)  # pooled at the first </s>
        self.text = transformers.CLIPTextModel(config)
        self.visual_projection = nn.Linear(enc.model.config.hidden_size, projection, bias=False)
        self.text_projection = nn.Linear(config.hidden_size, projection, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def loss(self, x01, idx, norm):
        pooled = self.enc[0].model(pixel_values=norm(x01)).pooler_output  # CLS, post-layernorm
        rows = [self.ids[int(i)] for i in idx]
        width = max(len(t) for t in rows)
        input_ids = torch.full((len(rows), width), self.pad)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for j, t in enumerate(rows):
            input_ids[j, :len(t)] = torch.tensor(t)
            mask[j, :len(t)] = 1
        text = self.text(input_ids=input_ids, attention_mask=mask).pooler_output
        img = F.normalize(self.visual_projection(pooled), dim=1)
        txt = F.normalize(self.text_projection(text), dim=1)
        logits = self.logit_scale.clamp(max=math.log(100)).exp() * img @ txt.T
        target = torch.arange(len(rows))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/p)*(W/p), p*p*C], patches in row-major order."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


class MAE(Objective):
    """Masked autoencoding (He et al. 2022) on a timm ViT: the encoder sees the visible 25% of
    patches (plus CLS), a one-block decoder fills in mask tokens and predicts the hidden
    patches' pixels, normalised per patch unless ``norm_pix`` is false."""

    def __init__(self, r, enc, samples, gen):
        from timm.models.vision_transformer import Block

        super().__init__(r, enc, samples, gen)
        m = enc.model
        o = self.options
        dw = o["decoder_width"]
        self.patch = m.patch_embed.patch_size[0]
        self.n_tokens = m.patch_embed.num_patches
        self.keep = round(self.n_tokens * (1 - o["mask_ratio"]))
        self.embed = nn.Linear(m.embed_dim, dw)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dw))
        self.pos = nn.Parameter(torch.randn(1, 1 + self.n_tokens, dw) * 0.02)
        self.blocks = nn.Sequential(*[Block(dw, o["decoder_heads"], qkv_bias=True)
                                      for _ in range(o["decoder_depth"])])
        self.norm = nn.LayerNorm(dw)
        self.head = nn.Linear(dw, self.patch * self.patch * 3)
        nn.init.normal_(self.mask_token, std=0.02)

    def loss(self, x01, idx, norm):
        m, n_tokens = self.enc[0].model, self.n_tokens
        x = norm(x01)
        b = x.shape[0]
        tokens = m.patch_embed(x) + m.pos_embed[:, m.num_prefix_tokens:]
        d = tokens.shape[-1]
        shuffle = torch.rand(b, n_tokens, generator=self.gen).argsort(1)
        restore = shuffle.argsort(1)
        visible = tokens.gather(1, shuffle[:, :self.keep, None].expand(-1, -1, d))
        cls = (m.cls_token + m.pos_embed[:, :1]).expand(b, -1, -1)
        h = m.norm(m.blocks(m.norm_pre(torch.cat([cls, visible], 1))))
        h = self.embed(h)
        dw = h.shape[-1]
        full = torch.cat([h[:, 1:], self.mask_token.expand(b, n_tokens - self.keep, -1)], 1)
        full = full.gather(1, restore[:, :, None].expand(-1, -1, dw))
        full = torch.cat([h[:, :1], full], 1) + self.pos
        pred = self.head(self.norm(self.blocks(full))[:, 1:])
        target = patchify(x, self.patch)
        if self.options.get("norm_pix", True):
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        masked = (restore >= self.keep).float()  # 1 where the patch was hidden
        per_patch = ((pred - target) ** 2).mean(-1)
        return (per_patch * masked).sum() / masked.sum()


OBJECTIVES: dict[str, type[Objective]] = {
    "simclr": SimCLR, "attributes": Attributes, "digits": Digits, "clip": Clip, "mae": MAE,
}


# ---------------------------------------------------------------- language models


def new_llm(r: Recipe):
    """The recipe's causal LM at random init (call under a seed), with the word tokenizer."""
    import transformers
    from harness.plugins.shapes import vocabulary
    from transformers import AutoModelForCausalLM

    from harness.language import MAX_POSITIONS, LanguageModel
    from harness.plugins.language_models.families import build_word_tokenizer

    tok = build_word_tokenizer(vocabulary())
    extra = {} if r.arch == "GPT2Config" else {"max_position_embeddings": MAX_POSITIONS}
    config = getattr(transformers, r.arch)(
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=True, **extra, **dict(r.arch_args))
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model.generation_config.pad_token_id = tok.pad_token_id
    return LanguageModel(model, tok, ref=r.ref,
                         config={"family": "mini", "name": r.name, "attn_implementation": "sdpa"})


def train_llm(r: Recipe, progress: Progress | None):
    """(language model, per-step losses): next-token loss on every token of ``<s> line </s>``."""
    lm = new_llm(r)
    if r.steps == 0:
        return lm, []
    tok = lm.tokenizer
    lines = corpus_lines(r.data)
    encoded = [ids + [tok.eos_token_id] for ids in tok(lines)["input_ids"]]
    order = batch_order(len(encoded), r.steps, r.batch, r.seed)
    lm.model.train()

    def step_loss(step: int):
        rows = [encoded[i] for i in order[step].tolist()]
        width = max(len(t) for t in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for j, t in enumerate(rows):
            ids[j, :len(t)] = labels[j, :len(t)] = torch.tensor(t)
            mask[j, :len(t)] = 1
        return lm.model(input_ids=ids, attention_mask=mask, labels=labels).loss

    losses = fit(list(lm.model.parameters()), step_loss, r, progress, weight_decay=0.01)
    lm.model.eval()
    return lm, losses


# ---------------------------------------------------------------- building


def build(name: str, *, out: str | os.PathLike | None = None, steps: int | None = None,
          force: bool = False, progress: Progress | None = None) -> dict:
    """Pretrain ``name`` from its recipe and save it under ``out/name``; returns its metadata.

    Skipped (metadata from the manifest, ``"cached": True``) when ``out`` already holds this
    recipe's hash, unless ``force``. ``steps`` overrides the recipe's (a shortened variant, for
    smoke tests: its hash differs, so loaders do not mistake it for the recipe). Deterministic:
    seeded torch and numpy, one torch thread; the caller's RNG and thread count are restored.
    """
    r = recipe(name)
    if steps is not None:
        r = replace(r, steps=int(steps))
    out_dir = Path(out) if out is not None else default_build_dir()
    known = read_manifest(out_dir).get(r.name)
    if not force and known and known.get("hash") == r.hash and (out_dir / r.name).is_dir():
        return {**known, "cached": True, "path": str(out_dir / r.name)}

    from harness.vision import seeded

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        with seeded(r.seed):
            train = train_encoder if r.kind == "vision_encoder" else train_llm
            component, losses = train(r, progress)
    finally:
        torch.set_num_threads(threads)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    target = out_dir / r.name
    tmp = out_dir / f".{r.name}.tmp{os.getpid()}"
    _save(component, tmp)
    meta = {
        "name": r.name, "ref": r.ref, "kind": r.kind, "hash": r.hash, "objective": r.objective,
        "library": r.library, "arch": r.arch, "steps": r.steps, "batch": r.batch,
        "params": sum(p.numel() for p in component.model.parameters()),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),  # the wall time on a busy machine overstates the cost
        "final_loss": round(_final_loss(losses), 4) if losses else None,
        "first_loss": round(losses[0], 4) if losses else None,
        "bytes": sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()),
        "torch": torch.__version__, "doc": r.doc,
    }
    with _locked(out_dir):
        if target.exists():
            import shutil

            shutil.rmtree(target)
        tmp.replace(target)
        manifest = read_manifest(out_dir)
        manifest[r.name] = meta
        _write_manifest(out_dir, manifest)
    return {**meta, "cached": False, "path": str(target)}


def _final_loss(losses: list[float]) -> float:
    tail = losses[-max(1, len(losses) // 20):]
    return sum(tail) / len(tail)


def _save(component, directory: Path) -> None:
    """float16 weights in the component's library format (tokenizer/processor alongside)."""
    import shutil

    if directory.exists():
        shutil.rmtree(directory)
    component.model.half()
    with _quiet_transformers():
        component.save(directory)
    for f in directory.rglob("*"):  # safetensors writes 0600; package data must be world-readable
        if f.is_file():
            f.chmod(0o644)
