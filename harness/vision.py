"""Vision encoders: the wrapper every encoder family returns (the contract), and what families share.

The four built-in loader families (``hf``, ``timm``, ``open_clip``, ``tiny``) live in
:mod:`harness.plugins.encoders.families`; the table below describes them.

Every loader returns a :class:`VisionEncoder`, an ``nn.Module`` whose ``forward`` maps a batch of
preprocessed images ``[B, 3, H, W]`` to patch tokens ``[B, N, D]`` the way LLaVA feeds its
projector: prefix tokens (CLS, registers) dropped, spatial tokens in row-major order.

==============  ============================================  ===================================
family          what it loads                                  tokens
==============  ============================================  ===================================
``hf``          transformers towers: CLIP, SigLIP, DINOv2      ``hidden_states[layer]`` (default
                (+ registers), any AutoModel with pixel        -2, LLaVA's penultimate layer),
                inputs; hub id or a ``save_pretrained`` dir    prefix tokens dropped
``timm``        ``timm.create_model(name)`` or a               ``forward_features`` (or
                ``save_for_hf`` dir (``local-dir:``)           ``forward_intermediates`` at
                                                               ``layer``); CNN maps flattened
``open_clip``   ``arch[/tag or weights path]``                 ViT: ``output_tokens``; ResNet and
                                                               timm towers: last stage map
``tiny``        random init, built with the same library      as the family it is built with
                classes (timm ViT/ConvNeXt/ResNet; HF CLIP/
                SigLIP/DINOv2), 64x64 images, seeded
==============  ============================================  ===================================

Options every family takes: ``grid`` (int or (h, w): adaptive-average-pool the token map to a
fixed grid, as Cambrian-1 does for ConvNeXt), ``dtype`` (default float32; hf: bfloat16 on a
bf16-capable GPU), ``layer``.

The fingerprint is a content key: family, configuration (model config, preprocessing, layer,
grid, dtype) and the weights' identity -- ``repo@commit`` for a hub checkpoint whose snapshot is
in the local cache, otherwise a sha256 of the state dict as loaded. A local path is not part of
it, so moving a checkpoint directory keeps its cached embeddings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness._moved import names_moved_from
from harness.datasets import content_hash
from harness.errors import BadInput

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)

# config keys that say where or when a checkpoint was written, not what it computes
_VOLATILE_CONFIG_KEYS = {
    "transformers_version", "_name_or_path", "name_or_path", "_commit_hash", "architectures",
    "dtype", "torch_dtype", "_attn_implementation", "_attn_implementation_autoset",
    "_experts_implementation", "output_hidden_states", "return_dict",
}


# ---------------------------------------------------------------- helpers shared with language.py


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's state dict: every tensor's name, dtype, shape and bytes, in key order."""
    h = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def hub_commit(repo_id: str, revision: str | None = None, filename: str = "config.json",
               cache_dir: str | None = None) -> str | None:
    """The commit of ``repo_id``'s snapshot in the local hub cache, or None (a path, not cached)."""
    if os.path.isdir(repo_id):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, filename, revision=revision, cache_dir=cache_dir)
    except ValueError:  # an id the hub library rejects is simply not a cached hub checkpoint
        return None
    if not isinstance(path, str):
        return None
    parts = Path(path).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def resolve_dtype(dtype: Any, *, prefer_bf16_on_cuda: bool = False) -> torch.dtype:
    """``torch.float32`` for None, unless ``prefer_bf16_on_cuda`` and a bf16-capable GPU is present;
    names ("bfloat16", "bf16", "fp16", "float32"...) map to torch dtypes."""
    if dtype is None:
        if prefer_bf16_on_cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32",
               "float": "float32"}
    value = getattr(torch, aliases.get(str(dtype), str(dtype)), None)
    if not isinstance(value, torch.dtype):
        raise BadInput(f"unknown dtype {dtype!r}: use float32, bfloat16 or float16")
    return value


def config_summary(config: Any) -> dict:
    """A transformers config as a JSON-able dict without the keys that vary between saves."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return json.loads(json.dumps(_drop_volatile(raw), sort_keys=True, default=str))


def _drop_volatile(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _drop_volatile(v) for k, v in obj.items() if k not in _VOLATILE_CONFIG_KEYS}
    return obj


@contextmanager
def seeded(seed: int):
    """Build random-init modules deterministically without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ---------------------------------------------------------------- preprocessing


class ImageTransform:
    """PIL image -> float tensor [3, H, W], wrapping a library's own preprocessing.

    Converts to RGB first (the shapes world and many datasets hold RGBA or L images). Plain
    attributes only, so it pickles into DataLoader workers.
    """

    def __init__(self, inner: Callable, *, kind: str, mean=None, std=None):
        self.inner = inner
        self.kind = kind
        self.mean = tuple(float(m) for m in mean) if mean is not None else None
        self.std = tuple(float(s) for s in std) if std is not None else None

    def __call__(self, image) -> torch.Tensor:
        if getattr(image, "mode", "RGB") != "RGB":
            image = image.convert("RGB")
        if self.kind == "hf_processor":
            return self.inner(images=image, return_tensors="pt")["pixel_values"][0]
        return self.inner(image)

    def __repr__(self) -> str:
        return f"ImageTransform({self.kind}, mean={self.mean}, std={self.std})"


def _output_size(transform: ImageTransform) -> tuple[int, int]:
    from PIL import Image

    out = transform(Image.new("RGB", (256, 256)))
    return int(out.shape[-2]), int(out.shape[-1])


# ---------------------------------------------------------------- the wrapper


class VisionEncoder(nn.Module):
    """A vision tower that returns patch tokens ``[B, N, D]``.

    :ivar model: the library's module (a transformers tower, a timm model, open_clip's visual)
    :ivar transform: PIL image -> tensor [3, H, W], the model's own preprocessing
    :ivar ref: how it was asked for, e.g. ``tiny:vit-p8`` or ``hf:openai/clip-vit-large-patch14-336``
    :ivar config: JSON-able description (family, model config, preprocessing, layer, grid, dtype)
    """

    family = ""  # the library family whose code runs it: hf, timm or open_clip (tiny ones too)

    def __init__(self, model: nn.Module, *, ref: str, transform: ImageTransform, config: dict,
                 layer: int | None = None, grid: int | tuple[int, int] | None = None,
                 weights_id: str | None = None):
        super().__init__()
        self.model = model.eval()
        self.ref = ref
        self.transform = transform
        self.layer = layer
        self.grid = _as_grid(grid)
        self.image_size = _output_size(transform)
        dtype = next(model.parameters()).dtype
        self.config = {
            "family": ref.partition(":")[0], "library": self.family, **config, "layer": layer,
            "grid": list(self.grid) if self.grid else None,
            "image_size": list(self.image_size), "mean": transform.mean, "std": transform.std,
            "dtype": str(dtype).removeprefix("torch."),
        }
        # computed now, from the weights as loaded: a later .to(bf16) by a trainer must not move it
        identity = weights_id or weights_digest(model)
        public = {k: v for k, v in self.config.items() if k not in ("name", "path")}
        self.fingerprint = content_hash({"kind": "vision_encoder", "config": public, "weights": identity})
        self._shape: tuple[int, int] | None = None

    # subclasses: tokens [B, N, D] and the (h, w) grid they lie on, or None when not spatial
    def tokens(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int] | None]:
        raise NotImplementedError

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        p = next(self.model.parameters())
        tokens, hw = self.tokens(pixel_values.to(device=p.device, dtype=p.dtype))
        if self.grid is not None:
            if hw is None:
                raise ValueError(f"{self.ref}: grid= needs tokens laid out on a grid; these are not")
            tokens = pool_grid(tokens, hw, self.grid)
        return tokens

    def _probe(self) -> tuple[int, int]:
        """(N, D) from one forward of a blank image at the transform's output size."""
        if self._shape is None:
            p = next(self.model.parameters())
            was_training = self.training
            self.eval()  # a BatchNorm in train mode would update its running stats
            try:
                with torch.no_grad():
                    out = self(torch.zeros(1, 3, *self.image_size, device=p.device, dtype=p.dtype))
            finally:
                self.train(was_training)
            self._shape = (int(out.shape[1]), int(out.shape[2]))
        return self._shape

    @property
    def num_tokens(self) -> int:
        """Tokens per image (N) at the transform's output size."""
        return self._probe()[0]

    @property
    def hidden_size(self) -> int:
        """Token width (D)."""
        return self._probe()[1]

    def save(self, path: str | os.PathLike) -> str:
        """Write the encoder in its library's own format; returns the ref that loads it back."""
        raise NotImplementedError(f"{self.family} encoders cannot be saved by harness")

    def extra_repr(self) -> str:
        return f"ref={self.ref!r}, fingerprint={self.fingerprint}"


def _as_grid(grid) -> tuple[int, int] | None:
    if grid is None:
        return None
    if isinstance(grid, int):
        return (grid, grid)
    h, w = grid
    return (int(h), int(w))


def pool_grid(tokens: torch.Tensor, hw: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """[B, h*w, D] on an (h, w) grid -> [B, gh*gw, D]: adaptive average pooling down to a
    smaller grid, bilinear interpolation up to a larger one (Cambrian-1 interpolates ConvNeXt's
    coarse map to a fixed token grid; the Mordal paper follows it at 16x16)."""
    b, n, d = tokens.shape
    h, w = hw
    if n != h * w:
        raise ValueError(f"{n} tokens do not lie on a {h}x{w} grid")
    fmap = tokens.transpose(1, 2).reshape(b, d, h, w)
    if grid[0] > h or grid[1] > w:
        out = F.interpolate(fmap.float(), size=grid, mode="bilinear", align_corners=False).to(fmap.dtype)
    else:
        out = F.adaptive_avg_pool2d(fmap, grid)
    return out.flatten(2).transpose(1, 2)


__getattr__ = names_moved_from(__name__)  # the loaders, by their names before they moved
