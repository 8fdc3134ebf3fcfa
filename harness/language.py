"""Language models: the wrapper every LLM family returns (the contract): a causal LM and its tokenizer.

The built-in loader families (``hf``, ``tiny``) live in
:mod:`harness.plugins.language_models.families`; they are described below.

Every loader returns a :class:`LanguageModel`; the VLM feeds it ``inputs_embeds`` built from
:meth:`LanguageModel.embed` and the projected image tokens.

``hf:<id or path>``  ``AutoModelForCausalLM`` + ``AutoTokenizer``; attention is
                     ``flash_attention_2`` when flash-attn imports, CUDA is present and the dtype
                     is 16-bit, else ``sdpa``; a missing pad token becomes unk (LLaVA) or eos.
``tiny:<name>``      random-init Llama / Qwen2 / Mistral / Gemma / Phi-3 / GPT-2 shapes over a
                     word-level tokenizer of the shapes world's vocabulary; ``save(path)`` writes
                     ``save_pretrained`` of both, which ``hf:<path>`` loads back.

The fingerprint follows :mod:`harness.vision`: family, model config, tokenizer and dtype, and the
weights' identity (``repo@commit`` for a cached hub snapshot, else a sha256 of the state dict).
"""

from __future__ import annotations

import hashlib
import os

import torch
from torch import nn

from harness.datasets import IMAGE_TOKEN, content_hash
from harness._moved import names_moved_from
from harness.vision import (
    config_summary,
    weights_digest,
)

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IMAGE_TOKEN)  # ids 0..4 in every tiny tokenizer
# always in a tiny vocabulary, whatever the corpus: digits, punctuation and the chat template's
# role words (harness.vlm.format_prompt writes "USER: ... ASSISTANT:")
BASE_WORDS = (*"0123456789", *".,?!:;'\"()-", "user", "assistant")
MAX_POSITIONS = 1024  # 256 image tokens (tiny:vit-p4) + prompt + answer fit with room to spare


class LanguageModel(nn.Module):
    """A causal LM with its tokenizer.

    :ivar model: the transformers ``*ForCausalLM``
    :ivar tokenizer: a fast tokenizer with bos/eos/pad set; ``<image>`` is a special token in tiny ones
    :ivar ref: how it was asked for (``tiny:llama``, ``hf:lmsys/vicuna-7b-v1.5``)
    :ivar config: JSON-able description (family, model config, tokenizer digest, dtype)
    """

    def __init__(self, model: nn.Module, tokenizer, *, ref: str, config: dict,
                 weights_id: str | None = None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.ref = ref
        text_config = model.config.get_text_config()
        self.config = {
            **config,
            "model_type": model.config.model_type,
            "hidden_size": self.hidden_size,
            "num_layers": getattr(text_config, "num_hidden_layers", None),
            "vocab_size": model.get_input_embeddings().num_embeddings,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "model": config_summary(model.config),
            "tokenizer": tokenizer_digest(tokenizer),
        }
        # from the weights as loaded, before a trainer casts or wraps them
        identity = weights_id or weights_digest(model)
        public = {k: v for k, v in self.config.items()
                  if k not in ("name", "path", "attn_implementation")}
        self.fingerprint = content_hash({"kind": "language_model", "config": public, "weights": identity})

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    @property
    def bos_token(self) -> str | None:
        return self.tokenizer.bos_token

    @property
    def eos_token(self) -> str | None:
        return self.tokenizer.eos_token

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``[B, T, hidden_size]`` (Gemma's sqrt(d) scaling happens later, inside
        the model, for text and image embeddings alike)."""
        return self.model.get_input_embeddings()(input_ids)

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def save(self, path: str | os.PathLike) -> str:
        """``save_pretrained`` of model and tokenizer; returns the ref that loads them back."""
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        return f"hf:{path}"

    def extra_repr(self) -> str:
        return f"ref={self.ref!r}, fingerprint={self.fingerprint}"


def tokenizer_digest(tokenizer) -> str:
    """sha256 of what decides token ids: the fast tokenizer's full json, or the vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        blob = backend.to_str()
    else:
        blob = repr(sorted(tokenizer.get_vocab().items()))
    special = repr(sorted((k, str(v)) for k, v in tokenizer.special_tokens_map.items()))
    return hashlib.sha256((blob + special).encode()).hexdigest()[:16]


def default_attention(dtype: torch.dtype, device=None) -> str:
    """``flash_attention_2`` where it can run (flash-attn installed, CUDA, 16-bit), else ``sdpa``."""
    if dtype not in (torch.float16, torch.bfloat16) or not torch.cuda.is_available():
        return "sdpa"
    if device is not None and torch.device(device).type != "cuda":
        return "sdpa"
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return "sdpa"
    return "flash_attention_2"


__getattr__ = names_moved_from(__name__)  # the loaders, by their names before they moved
