"""Vision encoders: tiny builds, and every real loader on tiny checkpoints saved to disk."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from harness import vision
from harness.errors import BadInput

# name -> (tokens, width) at the 64x64 shapes-world image size
TINY_SHAPES = {
    "vit-p4": (256, 64),
    "vit-p8": (64, 96),
    "clip-p8": (64, 128),
    "siglip-p8": (64, 80),
    "dinov2-p14": (25, 112),
    "convnext": (16, 192),
    "resnet": (64, 128),
}


def _images(n=2, mode="RGB"):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).convert(mode)
            for _ in range(n)]


def _batch(encoder, n=2):
    return torch.stack([encoder.transform(im) for im in _images(n)])


def _load(ref, **options):
    """Through the plugin registry, as a suite would."""
    from harness.plugin_manager import get_components

    entry, name = get_components()["vision_encoder"].resolve(ref)
    return entry.load()(name, **options)


def test_plugin_names_match_the_tiny_zoo():
    from harness.plugins.encoders import TINY_ENCODERS

    assert set(TINY_ENCODERS) == set(vision.TINY_ENCODERS) == set(TINY_SHAPES)


@pytest.mark.parametrize("name", sorted(TINY_SHAPES))
def test_tiny_encoder_shapes_determinism_and_round_trip(name, tmp_path):
    enc = _load(f"tiny:{name}")
    n, d = TINY_SHAPES[name]
    x = _batch(enc)
    with torch.no_grad():
        out = enc(x)
    assert out.shape == (2, n, d)
    assert (enc.num_tokens, enc.hidden_size) == (n, d)
    assert enc.ref == f"tiny:{name}" and enc.config["seed"] == 0
    assert torch.isfinite(out).all()

    again = vision.load_tiny(name)
    other = vision.load_tiny(name, seed=1)
    with torch.no_grad():
        assert torch.equal(again(x), out)
        assert not torch.allclose(other(x), out)
    assert again.fingerprint == enc.fingerprint != other.fingerprint

    # saved in the library's own format, loaded back through the real loader by path
    ref = enc.save(tmp_path / "enc")
    assert ref.split(":")[0] == ("timm" if enc.family == "timm" else "hf")
    loaded = _load(ref)
    with torch.no_grad():
        torch.testing.assert_close(loaded(_batch(loaded)), out)
    assert loaded.transform.mean == pytest.approx(enc.transform.mean)
    assert loaded.fingerprint == _load(ref).fingerprint
    assert loaded.fingerprint != _load(other.save(tmp_path / "other")).fingerprint


def test_transform_handles_other_modes_and_pickles():
    enc = vision.load_tiny("clip-p8")
    rgba = _images(1, "RGBA")[0]
    assert enc.transform(rgba).shape == (3, 64, 64)
    clone = pickle.loads(pickle.dumps(enc.transform))
    assert torch.equal(clone(rgba), enc.transform(rgba))


def test_hf_full_clip_checkpoint_loads_its_vision_tower_and_drops_cls(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    vision_cfg = {"image_size": 64, "patch_size": 8, "hidden_size": 64, "intermediate_size": 128,
                      "num_hidden_layers": 3, "num_attention_heads": 4}
    text_cfg = {"vocab_size": 99, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                    "num_attention_heads": 2, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    torch.manual_seed(0)
    full = CLIPModel(CLIPConfig(vision_config=vision_cfg, text_config=text_cfg, projection_dim=16)).eval()
    full.save_pretrained(tmp_path)
    processor = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    processor.save_pretrained(tmp_path)

    enc = vision.load_hf(str(tmp_path))
    assert enc.config["model_type"] == "clip_vision_model"
    x = _batch(enc)
    with torch.no_grad():
        out = enc(x)
        ref = full.vision_model(pixel_values=x, output_hidden_states=True).hidden_states[-2]
    assert ref.shape[1] == 65 and out.shape == (2, 64, 64)
    torch.testing.assert_close(out, ref[:, 1:])  # LLaVA: penultimate layer, CLS dropped
    assert enc.transform.mean == pytest.approx(vision.OPENAI_CLIP_MEAN)

    last = vision.load_hf(str(tmp_path), layer=-1)
    assert last.fingerprint != enc.fingerprint  # the layer is part of what is computed


def test_hf_siglip_keeps_every_token_and_dinov2_drops_registers(tmp_path):
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    siglip = vision.load_tiny("siglip-p8")
    x = _batch(siglip)
    with torch.no_grad():
        hidden = siglip.model(pixel_values=x, output_hidden_states=True).hidden_states[-2]
        assert torch.equal(siglip(x), hidden)  # SigLIP has no CLS

    cfg = Dinov2WithRegistersConfig(image_size=56, patch_size=14, hidden_size=32, intermediate_size=64,
                                    num_hidden_layers=2, num_attention_heads=2, num_register_tokens=3)
    Dinov2WithRegistersModel(cfg).save_pretrained(tmp_path)  # no image processor saved
    enc = vision.load_hf(str(tmp_path))
    assert enc.image_size == (56, 56)  # the default processor is built from the config
    assert enc.transform.mean == pytest.approx(vision.IMAGENET_MEAN)
    with torch.no_grad():
        assert enc(_batch(enc)).shape == (2, 16, 32)  # CLS + 3 registers dropped


def fake_hub_snapshot(cache, repo_id, commit="0123456789abcdef0123456789abcdef01234567"):
    """A hub cache entry as huggingface_hub lays it out: the loaders read it offline."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def test_hf_hub_id_from_the_cache_is_fingerprinted_by_commit(tmp_path):
    tiny = vision.load_tiny("clip-p8")
    tiny.save(fake_hub_snapshot(tmp_path, "harness-test/tiny-clip"))
    enc = vision.load_hf("harness-test/tiny-clip", cache_dir=str(tmp_path))
    assert enc.ref == "hf:harness-test/tiny-clip" and enc.num_tokens == 64
    assert vision.hub_commit("harness-test/tiny-clip", cache_dir=str(tmp_path)).startswith("0123")
    # a copy of the same weights saved elsewhere is fingerprinted by content instead
    assert vision.load_hf(tiny.save(tmp_path / "copy")[3:]).fingerprint != enc.fingerprint


def test_hf_generic_vision_model_through_automodel(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2)
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    enc = vision.load_hf(str(tmp_path), grid=2)
    assert enc.config["model_type"] == "vit"
    assert (enc.num_tokens, enc.hidden_size) == (4, 32)  # 4x4 patches, CLS dropped, pooled to 2x2


def test_grid_pooling_and_intermediate_layers():
    pooled = vision.load_tiny("vit-p4", grid=4)
    full = vision.load_tiny("vit-p4")
    x = _batch(full)
    with torch.no_grad():
        out, tokens = pooled(x), full(x)
    assert out.shape == (2, 16, 64) and pooled.num_tokens == 16
    # pooling a 16x16 map to 4x4 averages 4x4 blocks
    expected = tokens.reshape(2, 4, 4, 4, 4, 64).mean(dim=(2, 4)).reshape(2, 16, 64)
    torch.testing.assert_close(out, expected)
    assert pooled.fingerprint != full.fingerprint

    convnext = vision.load_tiny("convnext", grid=(2, 2))
    assert (convnext.num_tokens, convnext.hidden_size) == (4, 192)
    stage = vision.load_tiny("convnext", layer=-2)  # timm forward_intermediates: stage 3's map
    assert (stage.num_tokens, stage.hidden_size) == (16, 96)
    vit = vision.load_tiny("vit-p8", layer=-2)
    assert (vit.num_tokens, vit.hidden_size) == (64, 96)


def test_timm_drops_register_and_class_tokens(tmp_path):
    import timm
    from timm.models import save_for_hf

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32,
                              patch_size=8, embed_dim=32, depth=1, num_heads=2, reg_tokens=2)
    assert model.num_prefix_tokens == 3
    save_for_hf(model, str(tmp_path), safe_serialization=True)
    enc = vision.load_timm(str(tmp_path))
    assert (enc.num_tokens, enc.hidden_size) == (16, 32)


@pytest.fixture(scope="module")
def open_clip_configs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("open_clip_configs")
    text = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}
    configs = {
        "harness-test-vit": {"embed_dim": 16, "text_cfg": text,
                             "vision_cfg": {"image_size": 64, "layers": 2, "width": 48,
                                            "head_width": 24, "patch_size": 8}},
        "harness-test-rn": {"embed_dim": 16, "text_cfg": text,
                            "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8}},
    }
    for name, cfg in configs.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    return folder


def test_open_clip_vit_tokens_from_a_weights_file(open_clip_configs, tmp_path):
    import open_clip
    from safetensors.torch import load_file, save_file

    open_clip.add_model_config(open_clip_configs)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = open_clip.create_model("harness-test-vit")
        paths.append(tmp_path / f"w{seed}.safetensors")
        save_file(model.state_dict(), paths[-1])

    enc = vision.load_open_clip(f"harness-test-vit/{paths[0]}", config=str(open_clip_configs))
    x = _batch(enc)
    with torch.no_grad():
        out = enc(x)
        model.load_state_dict(load_file(paths[0]))
        model.visual.output_tokens = True
        _, tokens = model.eval().visual(x)
    assert out.shape == (2, 64, 48)  # 8x8 patches, class token dropped by open_clip
    torch.testing.assert_close(out, tokens)
    again = _load(f"open_clip:harness-test-vit/{paths[0]}")
    assert again.fingerprint == enc.fingerprint
    assert vision.load_open_clip(f"harness-test-vit/{paths[1]}").fingerprint != enc.fingerprint


def test_open_clip_resnet_tower_returns_its_last_stage_map(open_clip_configs):
    enc = vision.load_open_clip("harness-test-rn", config=str(open_clip_configs))
    assert (enc.num_tokens, enc.hidden_size) == (4, 256)  # 64 / 32 = 2x2 map, width 8 * 32


def test_unknown_names_fail_clearly(tmp_path):
    with pytest.raises(BadInput, match="vit-p8"):
        vision.load_tiny("vit-p9")
    with pytest.raises(BadInput, match="hf:"):
        vision.load_hf(str(tmp_path / "missing"))
    with pytest.raises(BadInput, match="timm:"):
        vision.load_timm("no_such_model_xyz", pretrained=False)


def test_a_timm_ref_carries_a_token_grid_and_a_coarse_map_is_interpolated_up(tmp_path):
    """The paper's ConvNeXt at 16x16 tokens (after Cambrian-1): ``timm:<model>?grid=16``."""
    import timm
    from timm.models import save_for_hf

    from harness.errors import BadInput

    model = timm.create_model("convnext_atto", pretrained=False, num_classes=0)
    save_for_hf(model, str(tmp_path), safe_serialization=True)
    plain = vision.load_timm(str(tmp_path))
    gridded = vision.load_timm(f"{tmp_path}?grid=16")
    x = torch.randn(2, 3, 64, 64)
    out = gridded(x)
    assert out.shape[1] == 256 and plain(x).shape[1] == 4  # 64 px at stride 32: a 2x2 map
    assert gridded.fingerprint != plain.fingerprint and gridded.config["grid"] == [16, 16]
    # bilinear up, average down: the mean over the map is kept either way
    up = vision.pool_grid(plain(x), (2, 2), (16, 16))
    torch.testing.assert_close(up.mean(1), plain(x).mean(1), rtol=1e-4, atol=1e-5)
    assert vision.pool_grid(up, (16, 16), (2, 2)).shape == (2, 4, plain.hidden_size)
    with pytest.raises(BadInput, match="grid=N"):
        vision.load_timm(f"{tmp_path}?size=16")
    with pytest.raises(BadInput, match="whole number"):
        vision.load_timm(f"{tmp_path}?grid=big")
