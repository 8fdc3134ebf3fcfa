"""The built-in language-model families: ``hf`` (AutoModelForCausalLM + AutoTokenizer) and ``tiny``
(random init over a word-level tokenizer).

Each loader returns a :class:`harness.language.LanguageModel` (the contract); they are
registered in :mod:`harness.plugins.language_models` through the same hook a third-party plugin
uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence


from harness.datasets import IMAGE_TOKEN
from harness.errors import BadInput
from harness.language import (
    BASE_WORDS,
    BOS,
    EOS,
    MAX_POSITIONS,
    PAD,
    SPECIAL_TOKENS,
    UNK,
    LanguageModel,
    default_attention,
)
from harness.vision import hub_commit, resolve_dtype, seeded


def _set_pad(tokenizer, model) -> None:
    if tokenizer.pad_token is None:
        # LLaVA pads Vicuna/Llama with unk; models without unk (Qwen, GPT-2) with eos
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id


def _load_tokenizer(name_or_path: str, **common):
    """``AutoTokenizer``, except for word-level tokenizers saved with the generic fast class.

    transformers 5 swaps in a model type's own tokenizer class for some types (Qwen2, Phi-3),
    rebuilding it from the vocabulary as byte-level BPE; that would silently lose a word-level
    pipeline such as tiny:qwen2's. Such a tokenizer (``tokenizer_class`` TokenizersBackend or
    PreTrainedTokenizerFast, a WordLevel ``tokenizer.json``) loads as exactly what was saved.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    from transformers.utils import cached_file

    files = {k: v for k, v in common.items() if k != "trust_remote_code"}

    def read(filename):
        path = cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False, **files)
        if path is None:
            return {}
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    try:
        declared = read("tokenizer_config.json").get("tokenizer_class")
        if (declared in ("TokenizersBackend", "PreTrainedTokenizerFast")
                and read("tokenizer.json").get("model", {}).get("type") == "WordLevel"):
            return PreTrainedTokenizerFast.from_pretrained(name_or_path, **files)
    except (OSError, ValueError):
        pass  # AutoTokenizer below reports what is missing
    return AutoTokenizer.from_pretrained(name_or_path, **common)


def load_hf(name: str, *, dtype=None, revision: str | None = None, attn_implementation: str | None = None,
            device: str | None = None, tokenizer: str | None = None, cache_dir: str | None = None,
            trust_remote_code: bool = False, **kwargs) -> LanguageModel:
    """``AutoModelForCausalLM`` and ``AutoTokenizer`` (from ``tokenizer`` if given) by hub id or path.

    ``dtype`` defaults to bfloat16 on a bf16-capable GPU, else float32; ``device`` loads straight
    onto that device (``device_map``); other options go to ``from_pretrained``.
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype, prefer_bf16_on_cuda=True)
    attn = attn_implementation or default_attention(torch_dtype, device)
    common = {"revision": revision, "cache_dir": cache_dir, "trust_remote_code": trust_remote_code}
    try:
        tok = _load_tokenizer(tokenizer or name, **common)
    except OSError as exc:
        raise BadInput(f"hf:{name}: neither a local directory nor a cached hub model: {exc}") from exc
    load = dict(dtype=torch_dtype, attn_implementation=attn, **common, **kwargs)
    if device is not None:
        load["device_map"] = device
    try:
        model = AutoModelForCausalLM.from_pretrained(name, **load)
    except (ValueError, ImportError):
        if attn != "flash_attention_2" or attn_implementation is not None:
            raise
        load["attn_implementation"] = attn = "sdpa"  # an architecture without flash-attn support
        model = AutoModelForCausalLM.from_pretrained(name, **load)
    model.eval()
    _set_pad(tok, model)
    commit = hub_commit(name, revision, cache_dir=cache_dir)
    return LanguageModel(model, tok, ref=f"hf:{name}",
                         config={"family": "hf", "name": name, "attn_implementation": attn},
                         weights_id=f"{name}@{commit}" if commit else None)


# ---------------------------------------------------------------- tiny (random init)

# name -> (transformers config class, its arguments); vocabulary, special ids, positions and tied
# embeddings are added in load_tiny. Widths 64-192, depths 2-4, so the zoo differs in both.
TINY_LLMS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", {
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}),
    "qwen2": ("Qwen2Config", {
        "hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2}),
    "mistral": ("MistralConfig", {
        "hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 1, "sliding_window": None}),
    "gemma": ("GemmaConfig", {
        "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64}),
    "phi3": ("Phi3Config", {
        "hidden_size": 192, "intermediate_size": 384, "num_hidden_layers": 2,
        "num_attention_heads": 6, "num_key_value_heads": 6}),
    # GPT-2's dropouts set to 0 like the others, so every tiny LM trains the same way
    "gpt2": ("GPT2Config", {
        "n_embd": 160, "n_layer": 3, "n_head": 4, "n_positions": MAX_POSITIONS,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}),
}


def build_word_tokenizer(words: Iterable[str], *, model_max_length: int = MAX_POSITIONS):
    """A word-level fast tokenizer: lowercase, split on whitespace and single punctuation marks.

    Ids 0-4 are ``<pad> <unk> <s> </s> <image>``; then :data:`BASE_WORDS` and ``words`` (each split
    the way text is, so a vocabulary entry like "don't" contributes its pieces), sorted. Encoding
    prepends ``<s>`` (as Llama tokenizers do); decoding joins words with spaces and re-attaches
    punctuation ("there are 3 .") -> "there are 3.").
    """
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])
    pieces: set[str] = set()
    for word in (*BASE_WORDS, *words):
        if word in SPECIAL_TOKENS:
            continue
        text = normalizer.normalize_str(word)
        pieces.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(text))
    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *sorted(pieces)))}

    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    # WordPiece's decoder joins with spaces and cleans " ." " ?" " ,"; no token starts with "##"
    tok.decoder = decoders.Sequence([decoders.WordPiece(prefix="##", cleanup=True),
                                     decoders.Replace(" :", ":"), decoders.Replace(" ;", ";")])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD,
        extra_special_tokens=[IMAGE_TOKEN], model_max_length=model_max_length)


def load_tiny(name: str, *, seed: int = 0, vocabulary: Sequence[str] | None = None, dtype=None,
              attn_implementation: str | None = None) -> LanguageModel:
    """A random-init causal LM from :data:`TINY_LLMS`, deterministic in ``seed``.

    ``vocabulary`` is the word-level tokenizer's (the registered ``tiny`` family passes the
    bundled test bed's, :func:`harness.plugins.language_models.load_tiny`); the model's vocab
    size, pad, bos and eos ids follow the tokenizer. Float32 unless ``dtype`` says otherwise.
    """
    import transformers
    from transformers import AutoModelForCausalLM

    if name not in TINY_LLMS:
        from harness.registry import did_you_mean

        raise BadInput(f"Unknown tiny language model {name!r}.{did_you_mean(name, list(TINY_LLMS))}")
    if vocabulary is None:
        raise BadInput(f"tiny language model {name!r}: no vocabulary given (the registered tiny family "
                       "passes one: load it as tiny:<name> through the registry)")
    tok = build_word_tokenizer(vocabulary)
    config_name, args = TINY_LLMS[name]
    extra = {} if name == "gpt2" else {"max_position_embeddings": MAX_POSITIONS}
    config = getattr(transformers, config_name)(
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=True, **extra, **args)
    torch_dtype = resolve_dtype(dtype)
    attn = attn_implementation or default_attention(torch_dtype)
    with seeded(seed):
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch_dtype)
    model.eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return LanguageModel(model, tok, ref=f"tiny:{name}",
                         config={"family": "tiny", "name": name, "seed": seed,
                                 "attn_implementation": attn})
