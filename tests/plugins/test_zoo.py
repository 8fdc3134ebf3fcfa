"""The miniature pretrained zoo: shipped weights load, match their recipes, and rebuild."""

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import invoke
from harness.plugins.zoo import recipes as zoo
from harness.plugins.zoo import train as zoo_train
from PIL import Image

from harness.errors import BadInput

MANIFEST = zoo.read_manifest(zoo.PACKAGE_DIR)


def _load(kind, ref, **options):
    """Through the plugin registry, as a suite would."""
    from harness.plugin_manager import get_components

    entry, name = get_components()[kind].resolve(ref)
    return entry.load()(name, **options)


def _images(n=3):
    from harness.plugins.shapes import ShapesParams, render, sample

    p = ShapesParams()
    return [render(sample(t, "test", 0, 0).scene, 64, noise=p.noise)
            for t in ("color", "count", "digits", "chart")[:n]]


def _batch(enc, images):
    return torch.stack([enc.transform(Image.fromarray(a)) for a in images])


@pytest.fixture(autouse=True)
def _only_shipped_weights(monkeypatch, tmp_path):
    """Loaders find the package's weights, not a developer's build folder or $HARNESS_ZOO."""
    monkeypatch.delenv(zoo.ZOO_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


def test_plugin_names_match_the_recipes():
    from harness.plugins.encoders import MINI_ENCODERS
    from harness.plugins.language_models import MINI_LLMS

    assert MINI_ENCODERS == zoo.MINI_ENCODERS and MINI_LLMS == zoo.MINI_LLMS
    assert len(MINI_ENCODERS) >= 8 and len(MINI_LLMS) >= 6
    assert {r.objective for r in zoo.ENCODER_RECIPES} == set(zoo.OBJECTIVES) - {"lm"}


def test_manifest_matches_every_recipe_and_the_package_is_small():
    assert set(MANIFEST) == set(zoo.RECIPES)
    for name, r in zoo.RECIPES.items():
        meta = MANIFEST[name]
        assert meta["hash"] == r.hash, f"{name}: shipped weights are from another recipe; rebuild"
        assert (meta["objective"], meta["steps"], meta["kind"]) == (r.objective, r.steps, r.kind)
        assert (zoo.PACKAGE_DIR / name).is_dir()
        assert zoo.locate(name) == zoo.PACKAGE_DIR / name
    size = sum(f.stat().st_size for f in zoo.PACKAGE_DIR.rglob("*") if f.is_file())
    assert size < 20e6
    # float16 safetensors, no pickles
    assert not list(zoo.PACKAGE_DIR.rglob("*.bin")) and not list(zoo.PACKAGE_DIR.rglob("*.pt"))


def test_recipe_hash_is_content_not_documentation():
    from dataclasses import replace

    r = zoo.recipe("sup-vit")
    assert replace(r, doc="other words").hash == r.hash
    assert replace(r, steps=r.steps + 1).hash != r.hash
    assert replace(r, data={**r.data, "seed": 2}).hash != r.hash
    assert len({x.hash for x in zoo.RECIPES.values()}) == len(zoo.RECIPES)


@pytest.mark.parametrize("name", zoo.MINI_ENCODERS)
def test_every_mini_encoder_loads_and_gives_tokens(name):
    enc = _load("vision_encoder", f"mini:{name}")
    x = _batch(enc, _images())
    with torch.no_grad():
        out = enc(x)
    assert out.shape == (3, 16, enc.hidden_size) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.std() > 0
    assert enc.ref == f"mini:{name}" and enc.config["family"] == "mini"
    assert enc.config["recipe"] == zoo.RECIPES[name].hash
    assert enc.fingerprint == _load("vision_encoder", f"mini:{name}").fingerprint


def test_grid_option_overrides_the_recipe_default():
    full = zoo.load_mini_encoder("sup-vit", grid=None)
    assert full.num_tokens == 64
    assert zoo.load_mini_encoder("sup-vit").num_tokens == 16


@pytest.mark.parametrize("name", ["sup-vit", "sup-resnet", "clip-vit-s"])
def test_training_normalisation_is_the_loaders_transform(name):
    """Pretraining feeds tensors normalised by zoo.pixels; the VLM feeds enc.transform(PIL)."""
    enc = zoo.load_mini_encoder(name)
    images = np.stack(_images())
    torch.testing.assert_close(zoo_train.pixels(images, enc.transform.mean, enc.transform.std),
                               _batch(enc, images), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name", zoo.MINI_LLMS)
def test_every_mini_llm_loads_and_gives_logits(name):
    lm = _load("language_model", f"mini:{name}")
    ids = lm.tokenizer(["what color is the circle? red", "a small blue star."], padding=True,
                       return_tensors="pt")
    with torch.no_grad():
        logits = lm(**ids).logits
    assert logits.shape == (*ids.input_ids.shape, len(lm.tokenizer))
    assert torch.isfinite(logits).all()
    assert lm.ref == f"mini:{name}" and lm.config["family"] == "mini"
    assert lm.tokenizer.convert_ids_to_tokens(lm.tokenizer("a red circle")["input_ids"]) == [
        "<s>", "a", "red", "circle"]


def test_pretrained_llms_beat_random_init_on_held_out_text():
    from harness.plugins.language_models import load_tiny

    lines = zoo.corpus_lines({"corpus": "mixed", "lines": 64, "seed": 999})

    def loss(lm):
        enc = lm.tokenizer(lines, padding=True, return_tensors="pt")
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        with torch.no_grad():
            return float(lm.model(**enc, labels=labels).loss)

    random_loss = loss(load_tiny("llama"))
    assert loss(zoo.load_mini_llm("llama-mixed")) < random_loss / 2


def test_random_control_is_the_seeded_init_and_differs_from_pretrained():
    from harness.vision import seeded

    r = zoo.recipe("random-vit")
    with seeded(r.seed):
        fresh = zoo_train.new_encoder(r)
    shipped = zoo.load_mini_encoder("random-vit")
    expected, loaded = fresh.model.state_dict(), shipped.model.state_dict()
    assert expected.keys() == loaded.keys()
    for key, value in expected.items():
        assert torch.equal(value.half().float(), loaded[key]), key
    images = _batch(shipped, _images())
    with torch.no_grad():
        control = shipped(images)
        for name in ("sup-vit", "simclr-vit", "mae-vit"):  # the same architecture, trained
            trained = zoo.load_mini_encoder(name)
            assert not torch.allclose(trained(images), control, atol=1e-2)


def _tensors(folder):
    from safetensors.torch import load_file

    (path,) = folder.glob("*.safetensors")
    return load_file(str(path))


@pytest.mark.long
def test_rebuilding_the_cheapest_recipe_reproduces_the_shipped_weights(tmp_path):
    """Full rebuild of the cheapest pretrained recipe (a few seconds on one thread)."""
    cheapest = min((r for r in zoo.RECIPES.values() if r.steps), key=lambda r: r.steps * r.batch
                   * (1 if r.kind == "language_model" else 4))
    meta = zoo_train.build(cheapest.name, out=tmp_path)
    assert meta["hash"] == MANIFEST[cheapest.name]["hash"] and not meta["cached"]
    built, shipped = _tensors(tmp_path / cheapest.name), _tensors(zoo.PACKAGE_DIR / cheapest.name)
    assert built.keys() == shipped.keys()
    for key in shipped:
        assert built[key].dtype == shipped[key].dtype
        # bit-identical on the machine that built the package; other CPUs may round differently
        torch.testing.assert_close(built[key].float(), shipped[key].float(), atol=2e-3, rtol=1e-2)
    # Bit-identical to the shipped file only where the libraries round as the building machine's
    # did (a fresh install in December 2026 matched 18% of the tensors, all within the tolerance
    # above); a second build on this machine must match the first bit for bit.
    rebuilt = zoo_train.build(cheapest.name, out=tmp_path / "again")
    assert not rebuilt["cached"]
    second = _tensors(tmp_path / "again" / cheapest.name)
    assert all(torch.equal(built[k], second[k]) for k in shipped)
    again = zoo_train.build(cheapest.name, out=tmp_path)
    assert again["cached"] and again["hash"] == meta["hash"]


def test_a_short_encoder_build_is_deterministic_and_not_mistaken_for_the_recipe(tmp_path,
                                                                                monkeypatch):
    a = zoo_train.build("sup-vit", out=tmp_path / "a", steps=2)
    b = zoo_train.build("sup-vit", out=tmp_path / "b", steps=2)
    assert a["hash"] == b["hash"] != zoo.recipe("sup-vit").hash
    ta, tb = _tensors(tmp_path / "a" / "sup-vit"), _tensors(tmp_path / "b" / "sup-vit")
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert np.isfinite(a["final_loss"]) and a["params"] == MANIFEST["sup-vit"]["params"]
    # a folder holding another recipe's result is skipped by the loader
    monkeypatch.setenv(zoo.ZOO_ENV, str(tmp_path / "a"))
    assert zoo.locate("sup-vit") == zoo.PACKAGE_DIR / "sup-vit"


def test_missing_or_stale_weights_say_how_to_build_them(tmp_path, monkeypatch):
    shipped = zoo.PACKAGE_DIR
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(zoo, "PACKAGE_DIR", empty)
    with pytest.raises(BadInput, match="harness zoo build --only sup-vit"):
        zoo.load_mini_encoder("sup-vit")
    stale = tmp_path / "stale"
    shutil.copytree(shipped / "llama-qa", stale / "llama-qa")
    zoo._write_manifest(stale, {"llama-qa": {**MANIFEST["llama-qa"], "hash": "0" * 16}})
    monkeypatch.setenv(zoo.ZOO_ENV, str(stale))
    with pytest.raises(BadInput, match="older recipe.*harness zoo build --only llama-qa"):
        zoo.load_mini_llm("llama-qa")
    with pytest.raises(BadInput, match="Unknown mini component"):
        zoo.recipe("sup-vitt")
    with pytest.raises(BadInput, match="language model, not a vision encoder"):
        zoo.load_mini_encoder("llama-qa")


def test_corpus_kinds():
    captions = zoo.corpus_lines({"corpus": "captions", "lines": 200, "seed": 3})
    qa = zoo.corpus_lines({"corpus": "qa", "lines": 200, "seed": 3})
    chat = zoo.corpus_lines({"corpus": "mixed", "chat": 0.5, "lines": 200, "seed": 3})
    mixed = zoo.corpus_lines({"corpus": "mixed", "lines": 200, "seed": 3})
    assert not any(zoo.is_question_line(x) for x in captions)
    assert all(zoo.is_question_line(x) for x in qa)
    assert any(x.startswith("USER: ") and " ASSISTANT: " in x for x in chat)
    assert not any("USER:" in x for x in qa + mixed)  # chat defaults to 0
    assert chat[:50] == zoo.corpus_lines({"corpus": "mixed", "chat": 0.5, "lines": 50, "seed": 3})
    assert 0.2 < np.mean([zoo.is_question_line(x) for x in mixed]) < 0.9
    from harness.plugins.shapes import tokenize, vocabulary

    words = set(vocabulary()) | {"user", "assistant"}
    assert all(set(tokenize(x.lower())) <= words for x in chat + mixed)


def test_cli_list_and_cached_build(tmp_path):
    out = invoke("zoo", "list")
    assert out.returncode == 0, out.stderr
    for name in zoo.RECIPES:
        assert f"mini:{name}" in out.stdout
    assert "package" in out.stdout and "missing" not in out.stdout
    rows = [json.loads(line) for line in invoke("zoo", "list", "--json").stdout.splitlines()]
    assert {row["ref"] for row in rows} == {f"mini:{n}" for n in zoo.RECIPES}

    built = invoke("zoo", "build", "--only", "random-vit", "--out", str(tmp_path))
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["cached"] is False and "built in" in built.stderr
    again = invoke("zoo", "build", "--only", "random-vit", "--out", str(tmp_path))
    assert json.loads(again.stdout)["cached"] is True and "up to date" in again.stderr
    bad = invoke("zoo", "build", "--only", "nope")
    assert bad.returncode != 0 and "Unknown mini component" in bad.stderr


def test_chat_tuned_llms_answer_in_the_vlm_template_and_the_base_one_does_not():
    prompt = "USER: how many objects are there? ASSISTANT:"

    def answer(name):
        lm = zoo.load_mini_llm(name)
        ids = lm.tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = lm.model.generate(ids, max_new_tokens=3, do_sample=False)
        return lm.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split()

    assert answer("qwen2-chat")[0] in "123456789"
    assert answer("llama-captions")[0] not in "123456789"
