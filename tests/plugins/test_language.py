"""Language models: tiny builds, the word-level tokenizer, and the hf loader on saved tiny ones."""

import json

import pytest
import torch

from harness import language
from harness.errors import BadInput

try:
    from harness.plugins.shapes import corpus, vocabulary

    WORDS = vocabulary()
    LINES = list(corpus(200))
except ImportError:  # the shapes world is built elsewhere; these tests do not depend on it
    WORDS = ["a", "red", "blue", "circle", "square", "how", "many", "are", "there", "what",
             "color", "is", "the", "shape", "yes", "no"]
    LINES = ["how many red circle are there? 3", "what color is the square? blue", "a red circle."]

PROMPT = "<image>\nUSER: what color is the square? ASSISTANT: blue"


def _load(ref, **options):
    """Through the plugin registry, as a suite would."""
    from harness.plugin_manager import get_components

    entry, name = get_components()["language_model"].resolve(ref)
    return entry.load()(name, **options)


@pytest.fixture(scope="module")
def tokenizer():
    return language.build_word_tokenizer(WORDS)


def test_plugin_names_match_the_tiny_zoo():
    from harness.plugins.language_models import TINY_LLMS

    assert set(TINY_LLMS) == set(language.TINY_LLMS)


def test_tokenizer_round_trips_shapes_text(tokenizer):
    for line in LINES:
        ids = tokenizer(line)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.unk_token_id not in ids, line
        assert tokenizer.decode(ids, skip_special_tokens=True) == line.lower()


def test_tokenizer_special_tokens(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in language.SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tokenizer.pad_token, tokenizer.unk_token, tokenizer.bos_token, tokenizer.eos_token) == (
        "<pad>", "<unk>", "<s>", "</s>")
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    assert tokens[:4] == ["<image>", "user", ":", "what"]  # <image> whole, words lowercased
    assert tokenizer("Blue!!")["input_ids"][1:] == tokenizer("blue ! !")["input_ids"][1:]


@pytest.mark.parametrize("name", sorted(language.TINY_LLMS))
def test_tiny_llm_round_trip(name, tmp_path):
    lm = _load(f"tiny:{name}", vocabulary=WORDS)
    ids = lm.tokenizer([PROMPT], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = lm(input_ids=ids).logits
        embeds = lm.embed(ids)
        from_embeds = lm(inputs_embeds=embeds).logits
    assert logits.shape == (1, ids.shape[1], len(lm.tokenizer))
    assert embeds.shape == (1, ids.shape[1], lm.hidden_size) == (1, ids.shape[1], lm.config["hidden_size"])
    torch.testing.assert_close(from_embeds, logits)
    cfg = lm.model.config
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 2, 3)
    assert lm.eos_token == "</s>" and lm.bos_token == "<s>"

    same = language.load_tiny(name, vocabulary=WORDS)
    other = language.load_tiny(name, vocabulary=WORDS, seed=1)
    assert same.fingerprint == lm.fingerprint != other.fingerprint
    with torch.no_grad():
        assert torch.equal(same(input_ids=ids).logits, logits)

    ref = lm.save(tmp_path / "lm")
    loaded = _load(ref)
    assert loaded.ref == f"hf:{tmp_path / 'lm'}"
    assert loaded.tokenizer(PROMPT)["input_ids"] == ids[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, logits)
    assert loaded.fingerprint == language.load_hf(ref[3:]).fingerprint
    assert loaded.fingerprint != language.load_hf(other.save(tmp_path / "other")[3:]).fingerprint


def test_hf_hub_id_from_the_cache_keeps_the_word_level_tokenizer(tmp_path):
    # transformers would rebuild a qwen2 checkpoint's tokenizer as byte-level BPE
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--harness-test--tiny-qwen2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    tiny = language.load_tiny("qwen2", vocabulary=WORDS)
    tiny.save(repo / "snapshots" / commit)

    lm = language.load_hf("harness-test/tiny-qwen2", cache_dir=str(tmp_path))
    assert lm.ref == "hf:harness-test/tiny-qwen2"
    assert lm.tokenizer(PROMPT)["input_ids"] == tiny.tokenizer(PROMPT)["input_ids"]
    assert lm.fingerprint == language.load_hf("harness-test/tiny-qwen2", cache_dir=str(tmp_path)).fingerprint


def test_tiny_sizes_differ():
    shapes = {}
    for name in language.TINY_LLMS:
        lm = language.load_tiny(name, vocabulary=WORDS)
        shapes[name] = (lm.hidden_size, lm.config["num_layers"], sum(p.numel() for p in lm.parameters()))
        assert 64 <= lm.hidden_size <= 192 and 2 <= lm.config["num_layers"] <= 4
    assert len({s[2] for s in shapes.values()}) == len(shapes)


def test_hf_loader_sets_a_missing_pad_token(tmp_path):
    lm = language.load_tiny("llama", vocabulary=WORDS)
    lm.model.config.pad_token_id = None
    lm.save(tmp_path)
    config_file = tmp_path / "tokenizer_config.json"
    tok_config = json.loads(config_file.read_text())
    tok_config.pop("pad_token")
    config_file.write_text(json.dumps(tok_config))

    loaded = language.load_hf(str(tmp_path), dtype="float32")
    assert loaded.tokenizer.pad_token == "<unk>"  # LLaVA's choice for Llama-family models
    assert loaded.model.config.pad_token_id == loaded.tokenizer.unk_token_id
    assert loaded.config["attn_implementation"] == "sdpa"  # CPU


def test_attention_choice_and_errors(tmp_path):
    assert language.default_attention(torch.float32) == "sdpa"
    assert language.default_attention(torch.bfloat16, "cpu") == "sdpa"
    with pytest.raises(BadInput, match="llama"):
        language.load_tiny("lama")
    with pytest.raises(BadInput, match="hf:"):
        language.load_hf(str(tmp_path / "missing"))
