"""The miniature pretrained zoo: ``mini:`` vision encoders and language models.

Random-init tiny models make a poor test bed: their grid's ranking is mostly seed noise and
feature scale (measured on this test bed; ``benchmarks/testbed_report.py`` prints the mini zoo's
properties from the shipped table). The ``mini:`` components are pretrained
briefly, on one CPU thread, on the shapes world (:mod:`harness.plugins.shapes`), with *different
objectives*, so their representations cluster by objective and no single VLM wins every task:

==============  ==================================================================  =============
objective       what the encoder learns from                                        expected bias
==============  ==================================================================  =============
``simclr``      two strongly colour-jittered, cropped, flipped views agree           colour-blind
``clip``        image-caption contrastive with a tiny text tower over the captions   generalist
``attributes``  object count, shape kinds present, which shape sits in which cell    colour-blind
``mae``         masked autoencoding (75% of patches hidden), ~5x the steps           pixel layout
``digits``      classify the handwritten digit (digit scenes only; CNNs)             documents
``none``        nothing: the random-init control
``lm``          (language models) next-token prediction on templated shapes text
==============  ==================================================================  =============

Every component is a :class:`Recipe` -- library, architecture, objective, steps, batch, lr,
seed, data -- and :func:`harness.plugins.zoo.train.build` turns a recipe into weights
deterministically (seeded torch and numpy, one thread; the objectives and loops are in that
module, which imports this one). The recipe's content hash names the result: a build is
skipped when the output folder already holds that hash, and the loaders only accept weights whose hash matches
the current recipe. Each result is one folder in its library's own format (timm
``save_for_hf``; transformers ``save_pretrained`` + processor / tokenizer) in float16, loaded
through :func:`harness.plugins.encoders.families.load_timm` / :func:`...load_hf` /
:func:`harness.plugins.language_models.families.load_hf`; ``manifest.json`` beside the folders maps each name to its
recipe hash, parameter count, build seconds and final loss.

Where weights are looked for, first match wins: ``$HARNESS_ZOO``, the build folder next to the
store (``<store dir>/zoo``, where ``harness zoo build`` writes by default), and the weights
shipped in the package (``harness/plugins/zoo/zoo_data``).

This module imports no torch at import time, so ``harness zoo list`` starts fast.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BadInput

ZOO_VERSION = "zoo-1"  # bump when a change to harness.plugins.zoo.train alters what a recipe builds
PACKAGE_DIR = Path(__file__).parent / "zoo_data"
MANIFEST = "manifest.json"
ZOO_ENV = "HARNESS_ZOO"
IMAGE_SIZE = 64

Progress = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass(frozen=True)
class Recipe:
    """How one ``mini:`` component is pretrained; everything but ``doc`` is part of its hash.

    :ivar kind: ``vision_encoder`` or ``language_model``
    :ivar library: ``timm`` or ``transformers``
    :ivar arch: a timm model name (its defaults overridden by ``arch_args``) or a transformers
        config class (``CLIPVisionConfig``, ``LlamaConfig``...)
    :ivar objective: one of :data:`OBJECTIVES`
    :ivar data: for encoders ``tasks`` (shapes scene kinds, cycled), ``images`` (pool size) and
        ``seed`` (the shapes world, train split); for LLMs ``corpus`` (``mixed``, ``captions``,
        ``qa`` or ``chat``), ``lines`` and ``seed``
    :ivar options: objective settings (temperature, mask ratio, head sizes, text tower...)
    :ivar grid: encoders only: the token grid (``grid x grid`` tokens) the objective trains
        and the loader returns by default
    """

    name: str
    kind: str
    library: str
    arch: str
    arch_args: Mapping[str, Any]
    objective: str
    steps: int
    batch: int
    lr: float
    seed: int
    data: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    grid: int | None = None
    doc: str = ""

    @property
    def ref(self) -> str:
        return f"mini:{self.name}"

    def content(self) -> dict:
        """What determines the weights: the recipe without its doc, and the generator versions."""
        from harness.plugins.shapes import GENERATOR_VERSION

        body = {k: v for k, v in asdict(self).items() if k != "doc"}
        return {"zoo": ZOO_VERSION, "shapes": GENERATOR_VERSION, **body}

    @property
    def hash(self) -> str:
        from harness.datasets import content_hash

        return content_hash(self.content())


OBJECTIVES = ("simclr", "clip", "attributes", "mae", "digits", "none", "lm")
ALL_SCENES = ("color", "shape", "count", "spatial", "digits", "chart")
_IMAGES = {"tasks": ALL_SCENES, "images": 10000, "seed": 1}
_DIGIT_IMAGES = {"tasks": ("digits",), "images": 6000, "seed": 1}

# timm ViT at 64x64, patch 8: 8x8 = 64 tokens (pooled to 4x4 by default)
_VIT_S = {"img_size": 64, "patch_size": 8, "embed_dim": 96, "depth": 3, "num_heads": 3,
          "mlp_ratio": 4.0}
# timm ResNet (resnet10t-like), output stride 8: 8x8 tokens of width 128
_RESNET = {"channels": (16, 32, 64, 128), "stem_width": 16, "output_stride": 8}
_RESNET_M = {"channels": (24, 48, 96, 192), "stem_width": 24, "output_stride": 8}
# transformers CLIP vision towers, patch 8: 8x8 tokens (CLS dropped), penultimate layer
_CLIP_S = {"image_size": 64, "patch_size": 8, "hidden_size": 96, "intermediate_size": 384,
           "num_hidden_layers": 3, "num_attention_heads": 3}
_CLIP_M = {"image_size": 64, "patch_size": 8, "hidden_size": 128, "intermediate_size": 512,
           "num_hidden_layers": 4, "num_attention_heads": 4}
_CLIP_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 2, "max_position_embeddings": 48, "projection_dim": 64}
_SIMCLR = {"temperature": 0.2, "projection": 64, "crop_scale": (0.45, 1.0), "flip": True,
           "hue": 1.0, "saturation": (0.2, 1.8), "brightness": (0.6, 1.4),
           "contrast": (0.6, 1.4), "grayscale": 0.2}

ENCODER_RECIPES: tuple[Recipe, ...] = (
    # The smaller sibling is also the less-trained one (a quarter of clip-vit-m's steps), as a
    # ViT-B/32 trained on less data is to a ViT-L/14: at 600 steps it tied clip-vit-m on every
    # task (colour 0.628 vs 0.627 over 3 seeds), so the test bed's top-1 was a coin toss between
    # near-duplicates. At 150 steps it still clusters with clip-vit-m (CKA 0.85) and scores
    # below it (colour 0.495, chart 0.246 with gpt2-mixed; benchmarks/testbed_report.py).
    Recipe("clip-vit-s", "vision_encoder", "transformers", "CLIPVisionConfig", _CLIP_S, "clip",
           steps=150, batch=64, lr=1e-3, seed=0, data=_IMAGES, options={"text": _CLIP_TEXT},
           grid=4, doc="CLIP-style image-caption contrastive, HF CLIP tower 96x3, a quarter of "
                       "clip-vit-m's steps (its smaller, less-trained sibling)"),
    Recipe("clip-vit-m", "vision_encoder", "transformers", "CLIPVisionConfig", _CLIP_M, "clip",
           steps=600, batch=64, lr=1e-3, seed=0, data=_IMAGES, options={"text": _CLIP_TEXT},
           grid=4, doc="CLIP-style image-caption contrastive, HF CLIP tower 128x4 (near-duplicate of clip-vit-s)"),
    Recipe("simclr-vit", "vision_encoder", "timm", "vit_tiny_patch16_224", _VIT_S, "simclr",
           steps=500, batch=64, lr=1e-3, seed=0, data=_IMAGES, options=_SIMCLR, grid=4,
           doc="SimCLR with strong colour jitter (colour-invariant), timm ViT 96x3"),
    Recipe("simclr-resnet", "vision_encoder", "timm", "resnet10t", _RESNET, "simclr",
           steps=500, batch=64, lr=1e-3, seed=0, data=_IMAGES, options=_SIMCLR, grid=4,
           doc="SimCLR with strong colour jitter (colour-invariant), timm ResNet"),
    Recipe("sup-vit", "vision_encoder", "timm", "vit_tiny_patch16_224", _VIT_S, "attributes",
           steps=600, batch=64, lr=1e-3, seed=0, data=_IMAGES, grid=4,
           doc="supervised scene attributes (count, shape kinds, shape per cell), timm ViT 96x3"),
    Recipe("sup-resnet", "vision_encoder", "timm", "resnet10t", _RESNET, "attributes",
           steps=600, batch=64, lr=1e-3, seed=0, data=_IMAGES, grid=4,
           doc="supervised scene attributes (count, shape kinds, shape per cell), timm ResNet"),
    Recipe("mae-vit", "vision_encoder", "timm", "vit_tiny_patch16_224", _VIT_S, "mae",
           steps=2500, batch=64, lr=1.5e-3, seed=0, data=_IMAGES,
           options={"mask_ratio": 0.75, "decoder_width": 64, "decoder_depth": 1,
                    "decoder_heads": 2}, grid=4,
           doc="masked autoencoding (75% masked, per-patch normalised pixels), timm ViT 96x3, 5x steps"),
    Recipe("digits-resnet", "vision_encoder", "timm", "resnet10t", _RESNET, "digits",
           steps=500, batch=64, lr=1e-3, seed=0, data=_DIGIT_IMAGES, grid=4,
           doc="handwritten-digit classifier (document-style specialist), timm ResNet"),
    Recipe("digits-resnet-m", "vision_encoder", "timm", "resnet10t", _RESNET_M, "digits",
           steps=500, batch=64, lr=1e-3, seed=0, data=_DIGIT_IMAGES, grid=4,
           doc="handwritten-digit classifier, timm ResNet 1.5x wider (near-duplicate of digits-resnet)"),
    Recipe("random-vit", "vision_encoder", "timm", "vit_tiny_patch16_224", _VIT_S, "none",
           steps=0, batch=0, lr=0.0, seed=0, data={}, grid=4,
           doc="random-init control, timm ViT 96x3 (the architecture of simclr-vit, sup-vit, mae-vit)"),
)

_LLAMA = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2}
_QWEN2 = {"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 3,
          "num_attention_heads": 4, "num_key_value_heads": 2}
_MISTRAL = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 1, "sliding_window": None}
_GPT2 = {"n_embd": 160, "n_layer": 3, "n_head": 4, "n_positions": 1024, "resid_pdrop": 0.0,
         "embd_pdrop": 0.0, "attn_pdrop": 0.0}


def _corpus(kind: str, chat: float, lines: int = 30000, seed: int = 11) -> dict:
    return {"corpus": kind, "chat": chat, "lines": lines, "seed": seed}


# Most LLMs have seen the VLM's USER:/ASSISTANT: template on half their questions (chat-tuned
# checkpoints, as LLaVA uses); llama-captions never has (a base model that must learn it).
LLM_RECIPES: tuple[Recipe, ...] = (
    Recipe("llama-mixed", "language_model", "transformers", "LlamaConfig", _LLAMA, "lm",
           steps=1000, batch=64, lr=2e-3, seed=0, data=_corpus("mixed", chat=0.5),
           doc="Llama 128x2 on captions and question-answer lines (half in the chat template)"),
    Recipe("llama-captions", "language_model", "transformers", "LlamaConfig", _LLAMA, "lm",
           steps=1000, batch=64, lr=2e-3, seed=0, data=_corpus("captions", chat=0.0),
           doc="Llama 128x2 on captions only: knows the words, not the question format"),
    Recipe("llama-qa", "language_model", "transformers", "LlamaConfig", _LLAMA, "lm",
           steps=1000, batch=64, lr=2e-3, seed=0, data=_corpus("qa", chat=0.5),
           doc="Llama 128x2 on question-answer lines only (half in the chat template)"),
    Recipe("qwen2-chat", "language_model", "transformers", "Qwen2Config", _QWEN2, "lm",
           steps=1000, batch=64, lr=2e-3, seed=0, data=_corpus("qa", chat=1.0),
           doc="Qwen2 96x3 on questions only, all in the chat template (instruction-tuned style)"),
    Recipe("qwen2-mixed", "language_model", "transformers", "Qwen2Config", _QWEN2, "lm",
           steps=1000, batch=64, lr=2e-3, seed=0, data=_corpus("mixed", chat=0.5),
           doc="Qwen2 96x3 on captions and question-answer lines (half in the chat template)"),
    Recipe("gpt2-mixed", "language_model", "transformers", "GPT2Config", _GPT2, "lm",
           steps=600, batch=64, lr=1e-3, seed=0, data=_corpus("mixed", chat=0.5),
           doc="GPT-2 160x3 on captions and question-answer lines (half in the chat template)"),
    Recipe("mistral-qa-short", "language_model", "transformers", "MistralConfig", _MISTRAL, "lm",
           steps=150, batch=32, lr=3e-3, seed=0, data=_corpus("qa", chat=0.5, lines=4000),
           doc="Mistral 64x4, briefly, on question-answer lines (the weakest LLM; cheapest build)"),
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (*ENCODER_RECIPES, *LLM_RECIPES)}
MINI_ENCODERS = tuple(r.name for r in ENCODER_RECIPES)
MINI_LLMS = tuple(r.name for r in LLM_RECIPES)


def recipe(name: str) -> Recipe:
    name = name.removeprefix("mini:")
    if name not in RECIPES:
        from harness.registry import did_you_mean

        raise BadInput(f"Unknown mini component {name!r}.{did_you_mean(name, list(RECIPES))}")
    return RECIPES[name]


# ---------------------------------------------------------------- where weights live


def default_build_dir() -> Path:
    """``<store dir>/zoo``: next to the store (``$HARNESS_STORE`` or ``./.harness``, as
    :func:`harness.store.default_store_path` resolves it, without importing duckdb)."""
    store = os.environ.get("HARNESS_STORE")
    base = Path(store).expanduser().parent if store else Path.cwd() / ".harness"
    return base / "zoo"


def search_dirs() -> list[Path]:
    """Where loaders look, first match wins: ``$HARNESS_ZOO``, the build dir, the package."""
    dirs = []
    if os.environ.get(ZOO_ENV):
        dirs.append(Path(os.environ[ZOO_ENV]).expanduser())
    dirs += [default_build_dir(), PACKAGE_DIR]
    return dirs


def read_manifest(directory: str | os.PathLike) -> dict[str, dict]:
    """name -> metadata of the components built in ``directory`` (empty when there are none)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("components", {})


def locate(name: str) -> Path:
    """The folder holding ``mini:name``'s weights for the current recipe, or a BadInput saying
    how to build them."""
    r = recipe(name)
    stale = []
    for directory in search_dirs():
        meta = read_manifest(directory).get(r.name)
        if meta is None or not (directory / r.name).is_dir():
            continue
        if meta.get("hash") == r.hash:
            return directory / r.name
        stale.append(str(directory))
    why = f"built from an older recipe in {', '.join(stale)}" if stale else "not found"
    looked = ", ".join(str(d) for d in search_dirs())
    raise BadInput(f"{r.ref}: weights {why} (looked in {looked}); build them with "
                   f"`harness zoo build --only {r.name}`")


# ---------------------------------------------------------------- loaders (registered as mini:)

_DEFAULT = object()


def load_mini_encoder(name: str, *, layer: int | None = None, grid: Any = _DEFAULT,
                      dtype=None):
    """A pretrained miniature encoder from the zoo, through the ``timm``/``hf`` loaders.

    ``grid`` defaults to the recipe's (4: 16 tokens); ``grid=None`` returns every token.
    """
    from harness.plugins.encoders import families as vision

    r = recipe(name)
    if r.kind != "vision_encoder":
        raise BadInput(f"{r.ref} is a language model, not a vision encoder")
    path = locate(r.name)
    grid = r.grid if grid is _DEFAULT else grid
    if r.library == "timm":
        enc = vision.load_timm(str(path), layer=layer, grid=grid, dtype=dtype)
    else:
        with _quiet_transformers():
            enc = vision.load_hf(str(path), layer=-2 if layer is None else layer, grid=grid,
                                 dtype=dtype)
    return _label(enc, r)


def load_mini_llm(name: str, *, dtype=None, attn_implementation: str | None = None,
                  device: str | None = None):
    """A pretrained miniature causal LM (word-level tokenizer) from the zoo, via ``hf``."""
    from harness.plugins.language_models import families as language

    r = recipe(name)
    if r.kind != "language_model":
        raise BadInput(f"{r.ref} is a vision encoder, not a language model")
    path = locate(r.name)
    with _quiet_transformers():
        lm = language.load_hf(str(path), dtype=dtype, attn_implementation=attn_implementation,
                              device=device)
    return _label(lm, r)


def _label(component, r: Recipe):
    """The ref and config say ``mini:``; the fingerprint (weights, config) is left as loaded."""
    component.ref = r.ref
    component.config.update(family="mini", name=r.name, recipe=r.hash, objective=r.objective)
    return component


# ---------------------------------------------------------------- data


def scene_samples(data: Mapping[str, Any], indices) -> dict:
    """Scenes of an image pool: pool index i is ``shapes.sample(tasks[i % k], "train", seed, i // k)``."""
    from harness.plugins import shapes

    tasks = tuple(data["tasks"])
    k = len(tasks)
    return {int(i): shapes.sample(tasks[i % k], "train", int(data["seed"]), int(i) // k)
            for i in indices}


def render_pool(samples: Mapping[int, Any], size: int = IMAGE_SIZE) -> Any:
    """uint8 [pool size, size, size, 3] with the given samples rendered as the shapes datasets
    render them (the rest stay black)."""
    import numpy as np
    from harness.plugins import shapes

    p = shapes.ShapesParams()
    out = np.zeros((max(samples) + 1, size, size, 3), np.uint8)
    for i, s in samples.items():
        out[i] = shapes.render(s.scene, size, noise=p.noise, supersample=p.supersample)
    return out


def batch_order(n: int, steps: int, batch: int, seed: int) -> Any:
    """int64 [steps, batch]: pool indices, epoch after epoch of seeded permutations."""
    import numpy as np

    rng = np.random.default_rng([seed, 0x200])
    need = steps * batch
    order = np.concatenate([rng.permutation(n) for _ in range(max(1, math.ceil(need / n)))])
    return order[:need].reshape(steps, batch)


def is_question_line(line: str) -> bool:
    """Corpus lines are captions or ``question answer``; only questions ask (or say "count")."""
    return "?" in line or line.startswith("count the objects")


def corpus_lines(data: Mapping[str, Any]) -> list[str]:
    """The text an LLM recipe trains on, from :func:`harness.plugins.shapes.corpus`.

    ``corpus``: ``mixed`` takes the stream as is (about a third captions), ``captions`` and
    ``qa`` keep one kind. ``chat`` (0-1) is the share of question lines written in the VLM's
    template, ``USER: q ASSISTANT: a`` (:func:`harness.vlm.format_prompt` without the image):
    an LLM that has seen it answers in that template from the first VLM step, as a chat-tuned
    checkpoint does; one that has not must learn the format during alignment.
    """
    import numpy as np
    from harness.plugins import shapes

    kind, n, chat = data["corpus"], int(data["lines"]), float(data.get("chat", 0.0))
    if kind not in ("mixed", "captions", "qa"):
        raise BadInput(f"unknown corpus {kind!r}: use mixed, captions or qa")
    rng = np.random.default_rng([int(data["seed"]), 0xC4A7])
    out: list[str] = []
    for line in shapes.corpus(10**9, int(data["seed"])):
        question = is_question_line(line)
        if kind == "captions" and question or kind == "qa" and not question:
            continue
        if question and rng.random() < chat:
            q, _, a = line.rpartition(" ")
            line = f"USER: {q} ASSISTANT: {a}"
        out.append(line)
        if len(out) == n:
            return out
    raise AssertionError("unreachable: the corpus stream is unbounded")


# ---------------------------------------------------------------- building


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Loading weights" / "Writing model shards" bars for components this small."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on ``directory`` itself (no lock file to ship), so parallel builds
    into one folder do not lose each other's manifest entries."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: builds there run one at a time
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_manifest(directory: Path, components: dict) -> None:
    body = {"zoo": ZOO_VERSION,
            "components": {k: components[k] for k in sorted(components)}}
    tmp = directory / f".{MANIFEST}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(directory / MANIFEST)
