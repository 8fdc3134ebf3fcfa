"""Every loader family, from a local directory the test writes, trains a step and scores
through lmms-eval: the code paths real hub checkpoints take, without a hub."""

import json

import pytest

from harness.scoring import Target
from harness.store import Store
from harness.training import TrainConfig
from harness.trial import TrialSpec, run_trial


@pytest.fixture(scope="module")
def local_models(tmp_path_factory):
    import open_clip
    import torch
    from safetensors.torch import save_file

    from harness.plugins.language_models import load_tiny as tiny_llm
    from harness.vision import load_tiny as tiny_encoder

    root = tmp_path_factory.mktemp("models")
    refs = {
        "hf-clip": tiny_encoder("clip-p8").save(root / "clip"),
        "hf-siglip": tiny_encoder("siglip-p8").save(root / "siglip"),
        "timm-vit": tiny_encoder("vit-p4").save(root / "vit"),
        "hf-llm": tiny_llm("qwen2").save(root / "qwen2"),
    }
    configs = root / "open_clip_configs"
    configs.mkdir()
    (configs / "harness-trial-vit.json").write_text(json.dumps({
        "embed_dim": 16,
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 48, "head_width": 24, "patch_size": 8},
    }))
    open_clip.add_model_config(configs)
    torch.manual_seed(0)
    weights = root / "open_clip.safetensors"
    save_file(open_clip.create_model("harness-trial-vit").state_dict(), weights)
    refs["open_clip"] = f"open_clip:harness-trial-vit/{weights}"
    return refs


@pytest.mark.parametrize("encoder", ["hf-clip", "hf-siglip", "timm-vit", "open_clip"])
def test_local_checkpoints_train_one_step_and_score(local_models, encoder, tmp_path):
    assert local_models[encoder].split(":")[0] in ("hf", "timm", "open_clip")
    spec = TrialSpec(encoder=local_models[encoder], llm=local_models["hf-llm"], alignment="shapes:align", samples=32,
                     train=TrainConfig(llm="lora", batch_size=4, steps=1), device="cpu",
                     targets=(Target("shapes:count", limit=8),))
    with Store.open(tmp_path / "s.duckdb") as store:
        outcome = run_trial(spec, store, store.start_run(suite_name="loaders"))
        assert outcome.status == "done", outcome.error
        assert outcome.samples_seen == 4
        (score,) = outcome.scores
        assert score.task == "shapes:count" and score.n_items == 8 and 0 <= score.value <= 1
        (row,) = store.query("select encoder, llm, status, checkpoint_path from trials")
        assert row["encoder"] == local_models[encoder] and row["status"] == "done"
        assert store.checkpoint_abspath(row["checkpoint_path"]).exists()
        kinds = {r["kind"] for r in store.query("select kind from components")}
        assert kinds == {"vision_encoder", "language_model"}
