"""The built-in vision-encoder families: ``hf``, ``timm``, ``open_clip`` and ``tiny``.

Each loader returns a :class:`harness.vision.VisionEncoder` (the contract, with the table of
what each family loads); they are registered in :mod:`harness.plugins.encoders` through the same
hook a third-party plugin uses.
"""

from __future__ import annotations

import json
import os

import torch

from harness.errors import BadInput
from harness.vision import (
    HALF,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTransform,
    VisionEncoder,
    config_summary,
    hub_commit,
    resolve_dtype,
    seeded,
)


def _ref_options(name: str) -> tuple[str, dict]:
    """``name?grid=16&layer=-2`` -> (name, {"grid": 16, "layer": -2}): loader options written in
    a suite's component ref. Known keys: ``grid`` (N or HxW), ``layer``, ``dtype``."""
    base, sep, query = name.partition("?")
    if not sep:
        return name, {}
    options: dict = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or key not in ("grid", "layer", "dtype"):
            raise BadInput(f"{name!r}: option {part!r} is not one of grid=N (or HxW), layer=N, dtype=NAME")
        try:
            if key == "grid":
                h, _, w = value.partition("x")
                options[key] = (int(h), int(w or h))
            elif key == "layer":
                options[key] = int(value)
            else:
                options[key] = value
        except ValueError:
            raise BadInput(f"{name!r}: option {part!r}: expected a whole number") from None
    return base, options


def _map_to_tokens(fmap: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """[B, C, H, W] -> ([B, H*W, C], (H, W))."""
    return fmap.flatten(2).transpose(1, 2), (int(fmap.shape[2]), int(fmap.shape[3]))


def _drop_prefix(tokens: torch.Tensor, hw: tuple[int, int] | None):
    """Drop the leading tokens beyond the h*w spatial ones (CLS, registers, distillation)."""
    if hw is None:
        return tokens, None
    extra = tokens.shape[1] - hw[0] * hw[1]
    if extra < 0:  # not one token per patch (e.g. attention-pooled queries): leave as is
        return tokens, None
    return tokens[:, extra:], hw


# ---------------------------------------------------------------- hf (transformers)

# model_type -> tower class; anything else goes through AutoModel (and .vision_model when present)
_HF_TOWERS = {
    "clip": "CLIPVisionModel",
    "clip_vision_model": "CLIPVisionModel",
    "siglip": "SiglipVisionModel",
    "siglip_vision_model": "SiglipVisionModel",
    "dinov2": "Dinov2Model",
    "dinov2_with_registers": "Dinov2WithRegistersModel",
}


class HFVisionEncoder(VisionEncoder):
    family = "hf"

    def __init__(self, model, processor, *, patch_size: int | None, **kwargs):
        super().__init__(model, **kwargs)
        self.patch_size = patch_size
        self.processor = processor

    def tokens(self, pixel_values):
        out = self.model(pixel_values=pixel_values, output_hidden_states=True)
        hidden = out.hidden_states[self.layer]
        hw = None
        if self.patch_size:
            hw = (pixel_values.shape[-2] // self.patch_size, pixel_values.shape[-1] // self.patch_size)
        return _drop_prefix(hidden, hw)

    def save(self, path):
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)
        return f"hf:{path}"


def _hf_vision_config(config):
    return getattr(config, "vision_config", None) or config


def _default_processor(model_type: str, size: int):
    """The preprocessing a tower's family uses, for checkpoints saved without one (and tiny ones)."""
    import transformers

    square = {"height": size, "width": size}
    if model_type.startswith("siglip"):
        return transformers.SiglipImageProcessor(size=square, image_mean=HALF, image_std=HALF)
    if model_type.startswith("clip"):
        return transformers.CLIPImageProcessor(size={"shortest_edge": size}, crop_size=square)
    # DINOv2 and the rest: ImageNet statistics, resize + centre crop at the config's size
    return transformers.BitImageProcessor(size={"shortest_edge": size}, crop_size=square,
                                          image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
                                          do_center_crop=True)


def _processor_stats(processor):
    return getattr(processor, "image_mean", None), getattr(processor, "image_std", None)


def _wrap_hf(model, processor, *, ref, name, layer, grid, weights_id, extra=None):
    mean, std = _processor_stats(processor)
    vcfg = _hf_vision_config(model.config)
    return HFVisionEncoder(
        model, processor,
        patch_size=getattr(vcfg, "patch_size", None),
        ref=ref,
        transform=ImageTransform(processor, kind="hf_processor", mean=mean, std=std),
        config={"name": name, "model_type": model.config.model_type,
                "model": config_summary(model.config),
                "processor": config_summary(processor), **(extra or {})},
        layer=layer, grid=grid, weights_id=weights_id,
    )


def load_hf(name: str, *, layer: int = -2, grid=None, dtype=None, revision: str | None = None,
            cache_dir: str | None = None, trust_remote_code: bool = False,
            **kwargs) -> VisionEncoder:
    """A transformers vision tower by hub id or local directory.

    CLIP and SigLIP checkpoints (full two-tower or vision-only) load as their vision model;
    DINOv2 (with or without registers) as its base model; other model types through
    ``AutoModel``, taking ``.vision_model`` when the checkpoint is a multimodal container. The
    transform is the checkpoint's ``AutoImageProcessor``, or the family default when absent.
    """
    import transformers

    torch_dtype = resolve_dtype(dtype, prefer_bf16_on_cuda=True)
    common = {"revision": revision, "cache_dir": cache_dir, "trust_remote_code": trust_remote_code}
    try:
        config = transformers.AutoConfig.from_pretrained(name, **common)
    except OSError as exc:
        raise BadInput(f"hf:{name}: neither a local directory nor a cached hub model: {exc}") from exc
    cls_name = _HF_TOWERS.get(config.model_type)
    cls = getattr(transformers, cls_name) if cls_name else transformers.AutoModel
    model = cls.from_pretrained(name, dtype=torch_dtype, **common, **kwargs)
    if cls_name is None and hasattr(model, "vision_model"):
        model = model.vision_model
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(name, **common)
    except (OSError, ValueError, KeyError):
        size = int(getattr(_hf_vision_config(config), "image_size", 224))
        processor = _default_processor(config.model_type, size)
    commit = hub_commit(name, revision, cache_dir=cache_dir)
    return _wrap_hf(model, processor, ref=f"hf:{name}", name=name, layer=layer, grid=grid,
                    weights_id=f"{name}@{commit}" if commit else None)


# ---------------------------------------------------------------- timm


class TimmVisionEncoder(VisionEncoder):
    family = "timm"

    def tokens(self, pixel_values):
        m = self.model
        if self.layer is not None:
            fmap = m.forward_intermediates(pixel_values, indices=[self.layer],
                                           intermediates_only=True)[0]
            return _map_to_tokens(fmap)
        out = m.forward_features(pixel_values)
        if out.ndim == 4:
            if getattr(m, "output_fmt", "NCHW") == "NHWC":  # e.g. Swin
                out = out.permute(0, 3, 1, 2)
            return _map_to_tokens(out)
        out = out[:, getattr(m, "num_prefix_tokens", 0):]
        patch = getattr(getattr(m, "patch_embed", None), "patch_size", None)
        hw = None
        if patch is not None:
            hw = (pixel_values.shape[-2] // patch[0], pixel_values.shape[-1] // patch[1])
        elif int(out.shape[1] ** 0.5) ** 2 == out.shape[1]:
            side = int(out.shape[1] ** 0.5)
            hw = (side, side)
        return _drop_prefix(out, hw)

    def save(self, path):
        from timm.models import save_for_hf

        save_for_hf(self.model, str(path), safe_serialization=True)
        return f"timm:{path}"


def _wrap_timm(model, *, ref, name, layer, grid, weights_id, extra=None):
    import timm.data

    data_config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**data_config, is_training=False)
    return TimmVisionEncoder(
        model,
        ref=ref,
        transform=ImageTransform(transform, kind="timm", mean=data_config["mean"],
                                 std=data_config["std"]),
        config={"name": name, "architecture": model.pretrained_cfg.get("architecture"),
                "model_args": _jsonable(_timm_model_args(model)),
                "data_config": _jsonable(data_config), **(extra or {})},
        layer=layer, grid=grid, weights_id=weights_id,
    )


def _timm_model_args(model) -> dict:
    try:
        from timm.models._input import get_model_args

        return get_model_args(model, {})
    except (ImportError, AttributeError, TypeError):  # a private helper; informational only
        return {}


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def load_timm(name: str, *, pretrained: bool = True, layer: int | None = None, grid=None,
              dtype=None, **model_kwargs) -> VisionEncoder:
    """A timm model by registry name (``vit_base_patch16_clip_224.openai``), ``hf-hub:`` id, or a
    local directory written by ``timm.models.save_for_hf`` (config.json + weights).

    ``num_classes=0``; tokens from ``forward_features`` with ``num_prefix_tokens`` dropped, or
    from ``forward_intermediates`` at ``layer``. Extra options go to ``timm.create_model``
    (e.g. ``checkpoint_path=``, ``img_size=``). A suite sets ``grid``, ``layer`` or ``dtype`` in
    the ref: ``timm:convnext_large_mlp.clip_laion2b_augreg?grid=16`` interpolates ConvNeXt's
    8x8 map (at 256 px) to 16x16 tokens, as the Mordal paper does after Cambrian-1.
    """
    import timm

    name, options = _ref_options(name)
    layer = options.get("layer", layer)
    grid = options.get("grid", grid)
    dtype = options.get("dtype", dtype)

    model_name = f"local-dir:{name}" if os.path.isdir(name) else name
    try:
        model = timm.create_model(model_name, pretrained=pretrained, num_classes=0, **model_kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise BadInput(f"timm:{name}: {exc}; pass a timm model name or a save_for_hf dir") from exc
        raise
    model = model.to(resolve_dtype(dtype))
    return _wrap_timm(model, ref=f"timm:{name}", name=name, layer=layer, grid=grid, weights_id=None)


# ---------------------------------------------------------------- open_clip


class OpenClipVisionEncoder(VisionEncoder):
    family = "open_clip"

    def tokens(self, pixel_values):
        visual = self.model
        if self.layer is None and getattr(visual, "output_tokens", False):
            # open_clip's VisionTransformer: ln_post'd tokens, class token already removed
            _, tokens = visual(pixel_values)
            patch = getattr(visual, "patch_size", None)
            hw = None
            if patch is not None:
                hw = (pixel_values.shape[-2] // patch[0], pixel_values.shape[-1] // patch[1])
            return _drop_prefix(tokens, hw)
        # ModifiedResNet and timm towers (and any tower at a chosen layer): the stage's map
        index = [self.layer] if self.layer is not None else 1
        fmap = visual.forward_intermediates(pixel_values, indices=index,
                                            intermediates_only=True)["image_intermediates"][-1]
        return _map_to_tokens(fmap)


def _split_open_clip(name: str) -> tuple[str, str | None]:
    """``ViT-B-32/laion2b_s34b_b79k`` -> (arch, tag); ``hf-hub:``/``local-dir:`` names are whole."""
    if name.startswith(("hf-hub:", "local-dir:")):
        return name, None
    arch, sep, pretrained = name.partition("/")
    return arch, (pretrained or None) if sep else None


def load_open_clip(name: str, *, layer: int | None = None, grid=None, dtype=None,
                   config: str | None = None, **kwargs) -> VisionEncoder:
    """An open_clip image tower: ``arch``, ``arch/<pretrained tag>``, ``arch/<weights file>``,
    ``hf-hub:<id>`` or ``local-dir:<dir>``.

    ``config`` registers a model-config json (or a folder of them) with
    ``open_clip.add_model_config`` first, for custom architectures. ViT towers return their
    ``output_tokens`` (final layer after ``ln_post``, class token dropped); ModifiedResNet and
    timm-trunk towers (ConvNeXt, timm ViTs) return the last stage's map from
    ``forward_intermediates`` (before any attention pool or head). With ``layer`` every tower
    uses ``forward_intermediates`` at that block. An arch with no tag is random init.
    """
    import open_clip

    if config is not None:
        open_clip.add_model_config(config)
    arch, pretrained = _split_open_clip(name)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, **kwargs)
    except RuntimeError as exc:
        if "not found" in str(exc).lower() or "unknown" in str(exc).lower():
            raise BadInput(f"open_clip:{name}: {exc}") from exc
        raise
    visual = model.visual.to(resolve_dtype(dtype))
    del model  # the text tower is not needed
    if hasattr(visual, "output_tokens"):  # VisionTransformer: forward returns (pooled, tokens)
        visual.output_tokens = True
    mean = getattr(visual, "image_mean", None)
    std = getattr(visual, "image_std", None)
    is_path = pretrained is not None and os.path.exists(pretrained)
    model_cfg = open_clip.get_model_config(arch) if not arch.startswith(("hf-hub:", "local-dir:")) else None
    return OpenClipVisionEncoder(
        visual,
        ref=f"open_clip:{name}",
        transform=ImageTransform(preprocess, kind="open_clip", mean=mean, std=std),
        config={"name": name, "arch": arch, "pretrained": None if is_path else pretrained,
                "model_config": _jsonable(model_cfg), "preprocess": repr(preprocess)},
        layer=layer, grid=grid, weights_id=None,
    )


# ---------------------------------------------------------------- tiny (random init)

_TINY_TIMM_DATA = {
    "vit": {"mean": HALF, "std": HALF},  # AugReg ViTs normalise to [-1, 1]
    "cnn": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
}

# name -> how to build it; all take 64x64 images
TINY_ENCODERS: dict[str, dict] = {
    # timm VisionTransformer: 16x16 = 256 tokens of width 64
    "vit-p4": {
        "library": "timm", "arch": "vit_tiny_patch16_224", "data": "vit",
        "args": {"img_size": 64, "patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 2,
                 "mlp_ratio": 2.0},
    },
    # timm VisionTransformer: 8x8 = 64 tokens of width 96
    "vit-p8": {
        "library": "timm", "arch": "vit_tiny_patch16_224", "data": "vit",
        "args": {"img_size": 64, "patch_size": 8, "embed_dim": 96, "depth": 3, "num_heads": 3,
                 "mlp_ratio": 4.0},
    },
    # transformers CLIPVisionModel: 8x8 = 64 tokens (CLS dropped) of width 128, layer -2
    "clip-p8": {
        "library": "transformers", "model": "CLIPVisionModel", "config": "CLIPVisionConfig",
        "args": {"image_size": 64, "patch_size": 8, "hidden_size": 128, "intermediate_size": 256,
                 "num_hidden_layers": 3, "num_attention_heads": 4},
    },
    # transformers SiglipVisionModel: 8x8 = 64 tokens (no CLS) of width 80, layer -2
    "siglip-p8": {
        "library": "transformers", "model": "SiglipVisionModel", "config": "SiglipVisionConfig",
        "args": {"image_size": 64, "patch_size": 8, "hidden_size": 80, "intermediate_size": 160,
                 "num_hidden_layers": 3, "num_attention_heads": 4},
    },
    # transformers Dinov2Model, patch 14 at 70x70 (64 upsampled): 5x5 = 25 tokens of width 112
    "dinov2-p14": {
        "library": "transformers", "model": "Dinov2Model", "config": "Dinov2Config",
        "args": {"image_size": 70, "patch_size": 14, "hidden_size": 112, "intermediate_size": 224,
                 "num_hidden_layers": 3, "num_attention_heads": 4},
    },
    # timm ConvNeXt (atto-like, 4 stages), output stride 16: 4x4 = 16 tokens of width 192
    "convnext": {
        "library": "timm", "arch": "convnext_atto", "data": "cnn",
        "args": {"depths": (1, 1, 2, 1), "dims": (24, 48, 96, 192), "output_stride": 16},
    },
    # timm ResNet (resnet10t-like, one BasicBlock a stage), output stride 8: 8x8 = 64 tokens of width 128
    "resnet": {
        "library": "timm", "arch": "resnet10t", "data": "cnn",
        "args": {"channels": (16, 32, 64, 128), "stem_width": 16, "output_stride": 8},
    },
}


def load_tiny(name: str, *, seed: int = 0, layer: int | None = None, grid=None,
              dtype=None) -> VisionEncoder:
    """A random-init encoder from :data:`TINY_ENCODERS`, deterministic in ``seed``.

    Built from the same library classes the ``hf``/``timm`` loaders use; ``save(path)`` writes
    it in that library's format and returns the ``hf:``/``timm:`` ref that loads it back.
    ``layer`` defaults to the family's: -2 for transformers towers, final features for timm.
    """
    if name not in TINY_ENCODERS:
        from harness.registry import did_you_mean

        raise BadInput(f"Unknown tiny encoder {name!r}.{did_you_mean(name, list(TINY_ENCODERS))}")
    spec = TINY_ENCODERS[name]
    extra = {"tiny": name, "seed": seed}
    torch_dtype = resolve_dtype(dtype)
    if spec["library"] == "timm":
        import timm

        data = _TINY_TIMM_DATA[spec["data"]]
        overlay = dict(input_size=(3, 64, 64), crop_pct=1.0, interpolation="bicubic", **data)
        with seeded(seed):
            model = timm.create_model(spec["arch"], pretrained=False, num_classes=0,
                                      pretrained_cfg_overlay=overlay, **spec["args"])
        model = model.to(torch_dtype)
        return _wrap_timm(model, ref=f"tiny:{name}", name=name, layer=layer, grid=grid,
                          weights_id=None, extra=extra)
    import transformers

    config = getattr(transformers, spec["config"])(**spec["args"])
    with seeded(seed):
        model = getattr(transformers, spec["model"])(config)
    model = model.to(torch_dtype)
    processor = _default_processor(config.model_type, spec["args"]["image_size"])
    return _wrap_hf(model, processor, ref=f"tiny:{name}", name=name,
                    layer=-2 if layer is None else layer, grid=grid, weights_id=None, extra=extra)
