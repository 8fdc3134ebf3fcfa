"""Alignment training of a VLM: the projector always, the LLM frozen / LoRA / full, the
encoder frozen or not. AdamW, warmup + linear/cosine/constant schedule, gradient accumulation;
fp32 on CPU, bf16 autocast on CUDA. Deterministic for a given seed."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from harness.errors import HarnessError
from harness.vlm import VLM, Conversation


class TrainingFailed(HarnessError):
    """The candidate failed to train (NaN loss, out of memory, ...): recorded, search goes on."""


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05  # the suite schema's default (harness.suite.LoRA)
    targets: tuple[str, ...] | str = "all-linear"


@dataclass(frozen=True)
class TrainConfig:
    projector: str = "mlp2x_gelu"
    llm: str = "lora"  # frozen | lora | full
    vision: str = "frozen"  # frozen | unfrozen
    lora: LoraSettings = field(default_factory=LoraSettings)
    lr: float = 1e-3
    batch_size: int = 16
    grad_accum: int = 1
    epochs: float = 1.0
    steps: int | None = None  # optimiser steps at r = 1 (wins over epochs); a trial at r uses r x steps
    schedule: str = "linear"  # linear | cosine | constant
    warmup: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    normalize_features: bool = True
    precision: str = "auto"  # auto | fp32 | bf16

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Example:
    image: object  # PIL.Image
    prompt: str
    answer: str


@dataclass
class TrainResult:
    steps: int
    samples_seen: int
    wall_seconds: float
    losses: list[float]
    device: str
    optimizer_state: dict | None = None  # AdamW's state at the end (what a continuation resumes)
    steps_total: int = 0  # optimiser steps since the start, ancestors' included


@dataclass(frozen=True)
class Resume:
    """Where a continued trial starts: its ancestor's AdamW state, the optimiser steps taken
    so far, and the step count a fresh trial at this ratio would take in all (the LR schedule
    is evaluated at ``steps_before .. steps_planned - 1``)."""

    optimizer_state: dict
    steps_before: int
    steps_planned: int


def planned_steps(config: TrainConfig, n_examples: int, ratio: float) -> int:
    """Optimiser steps of a fresh trial on ``n_examples`` (the ratio-r subset's examples):
    ``ceil(steps * ratio)`` with ``config.steps``, else ``epochs`` passes in whole batches."""
    if config.steps is not None:
        return max(1, math.ceil(config.steps * ratio))
    total_samples = max(1, int(round(n_examples * config.epochs)))
    return max(1, math.ceil(total_samples / (config.batch_size * config.grad_accum)))


def continuable(config: TrainConfig) -> str | None:
    """Why a trial trained with ``config`` cannot be continued at a larger ratio, or None.

    Continuing resumes the checkpoint and AdamW state and trains the extra samples: that is
    the fresh recipe only when the learning rate does not decay to the end of each ratio's
    run (a linear or cosine schedule has reached 0 there), so only ``constant`` qualifies."""
    if config.schedule != "constant":
        return (f"the {config.schedule} schedule decays the learning rate to 0 at the end of each "
                "ratio's training, so a continued trial would not follow the fresh recipe; use "
                "vlm.optim.schedule: constant")
    return None


CALIBRATION_IMAGES = 256


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def prepare_trainable(vlm: VLM, config: TrainConfig) -> VLM:
    """Freeze/unfreeze per the config; wraps the LLM with a peft LoRA adapter in lora mode."""
    for p in vlm.encoder.parameters():
        p.requires_grad_(config.vision == "unfrozen")
    for p in vlm.projector.parameters():
        p.requires_grad_(True)
    if config.llm == "lora":
        from peft import LoraConfig, get_peft_model

        targets = config.lora.targets
        lora = LoraConfig(
            r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
            target_modules=targets if isinstance(targets, str) else list(targets),
            task_type="CAUSAL_LM",
        )
        vlm.lm.model = get_peft_model(vlm.lm.model, lora)
    else:
        for p in vlm.llm.parameters():
            p.requires_grad_(config.llm == "full")
    return vlm


def _lr_lambda(schedule: str, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return factor


@torch.no_grad()
def _encode_once(vlm: VLM, examples: list[Example], transform, dev, batch: int = 64):
    """Features of every distinct image (examples of one conversation share its image)."""
    slot_of_image: dict[int, int] = {}
    images = []
    slot = []
    for ex in examples:
        key = id(ex.image)
        if key not in slot_of_image:
            slot_of_image[key] = len(images)
            images.append(ex.image)
        slot.append(slot_of_image[key])
    feats = [vlm.encoder(torch.stack([transform(im) for im in images[i:i + batch]]).to(dev))
             for i in range(0, len(images), batch)]
    return torch.cat(feats), slot


def train(vlm: VLM, examples: list[Example], config: TrainConfig, *, seed: int,
          device: str = "auto", ratio: float = 1.0, progress=None,
          resume: Resume | None = None) -> TrainResult:
    """Train on ``examples`` (the ratio-r subset) in a seeded order; raises TrainingFailed on a
    non-finite loss. With ``config.steps`` the step count is ``ceil(steps * ratio)``, so a
    smaller sample ratio costs proportionally less compute either way.

    With ``resume`` the VLM already holds its ancestor's checkpoint (trainable weights and
    feature standardisation, which is not recalibrated): AdamW starts from the ancestor's
    state and takes the ``steps_planned - steps_before`` steps a fresh trial would have taken
    beyond the ancestor's, over ``examples`` (then the extra items, or the whole subset with
    ``config.steps``)."""
    if not examples:
        from harness.errors import BadInput

        raise BadInput("no training examples: the alignment data (at this sample ratio) is empty")
    dev = resolve_device(device)
    before = resume.steps_before if resume is not None else 0
    torch.manual_seed(seed + 7919 * before)  # a continuation draws dropout masks of its own
    vlm.to(dev)
    use_bf16 = dev.type == "cuda" and config.precision in ("auto", "bf16")
    params = [p for p in vlm.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                              fused=dev.type == "cuda")
    per_step = config.batch_size * config.grad_accum
    if resume is not None:
        optim.load_state_dict(resume.optimizer_state)
        for group in optim.param_groups:  # the schedule below sets lr from the recipe's base
            group["lr"] = group["initial_lr"] = config.lr
        total_steps = max(0, resume.steps_planned - before)
        planned = resume.steps_planned
    else:
        total_steps = planned = planned_steps(config, len(examples), ratio)
    factor = _lr_lambda(config.schedule, int(config.warmup * planned), planned)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda step: factor(step + before))
    generator = torch.Generator().manual_seed(seed + 7919 * before)
    order: list[int] = []
    while len(order) < total_steps * per_step:
        order += torch.randperm(len(examples), generator=generator).tolist()
    transform = vlm.encoder.transform
    frozen = config.vision == "frozen"

    vlm.train()
    vlm.encoder.eval()
    cached = None
    if frozen:
        # A frozen encoder sees each image once: its features are computed up front and the
        # steps reuse them (the encoder was a third of a CPU step for the mini zoo).
        cached, slot = _encode_once(vlm, examples, transform, dev)
    if config.normalize_features and resume is None:
        calib = order[:CALIBRATION_IMAGES]
        if cached is not None:
            vlm.calibrate(features=cached[[slot[i] for i in calib]])
        else:
            vlm.calibrate(torch.stack([transform(examples[i].image) for i in calib]).to(dev))
    if not frozen:
        vlm.encoder.train()
    losses: list[float] = []
    start = time.perf_counter()
    samples = 0
    for step in range(total_steps):
        optim.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(config.grad_accum):
            lo = (step * config.grad_accum + micro) * config.batch_size
            idx = order[lo:lo + config.batch_size]
            convs = [Conversation(examples[i].prompt, examples[i].answer) for i in idx]
            if cached is not None:
                pixels, feats = None, cached[[slot[i] for i in idx]]
            else:
                pixels = torch.stack([transform(examples[i].image) for i in idx]).to(dev)
                feats = None
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = vlm.loss(pixels, convs, features=feats) / config.grad_accum
            if not torch.isfinite(loss):
                raise TrainingFailed(f"non-finite loss ({loss.item()}) at step {step}")
            loss.backward()
            step_loss += loss.item()
            samples += len(idx)
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optim.step()
        sched.step()
        losses.append(step_loss)
        if progress is not None:
            progress(step + 1, total_steps, step_loss)
    vlm.eval()
    return TrainResult(steps=total_steps, samples_seen=samples,
                       wall_seconds=time.perf_counter() - start, losses=losses,
                       device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                       optimizer_state=optim.state_dict(), steps_total=before + total_steps)


def config_from_suite(vlm) -> TrainConfig:
    """The TrainConfig a suite's ``vlm`` section describes."""
    lora = vlm.lora
    targets = lora.targets if isinstance(lora.targets, str) else tuple(lora.targets)
    optim = vlm.optim
    return TrainConfig(
        projector=vlm.projector, llm=vlm.llm, vision=vlm.vision,
        lora=LoraSettings(r=lora.r, alpha=lora.alpha, dropout=lora.dropout, targets=targets),
        lr=optim.lr, batch_size=optim.batch_size, grad_accum=optim.grad_accum,
        epochs=optim.epochs if optim.epochs is not None else 1.0, steps=optim.steps,
        schedule=optim.schedule, warmup=optim.warmup, weight_decay=optim.weight_decay,
        normalize_features=vlm.normalize_features, precision=vlm.precision,
    )
