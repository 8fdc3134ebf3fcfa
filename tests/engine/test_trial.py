"""Trials for real: tiny models train with torch, score through lmms-eval, land in a DuckDB file."""

import time

import pytest
import torch
from helpers import invoke
from harness.store import Store

from harness.scoring import Target
from harness.training import TrainConfig
from harness.trial import (
    TrialSpec,
    build_vlm,
    load_checkpoint,
    load_encoder,
    load_language_model,
    run_trial,
)


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store.duckdb") as s:
        yield s


def _accuracy(vlm, dataset, pixels):
    answers = vlm.generate(pixels, [item.question for item in dataset], until=["\n", "."])
    return sum(a == item.answer for a, item in zip(answers, dataset)) / len(dataset)


@pytest.mark.long
def test_color_trial_learns_from_the_image_in_under_a_minute(store):
    from harness.plugins.shapes import load_dataset

    config = TrainConfig(llm="full", lr=1e-3, batch_size=32, epochs=8, schedule="cosine", warmup=0.05)
    spec = TrialSpec(encoder="tiny:vit-p8", llm="tiny:llama", alignment="shapes:color", samples=1500,
                     train=config, targets=(Target("shapes:color", limit=300),), device="cpu")
    run_id = store.start_run(suite_name="test")
    start = time.perf_counter()
    outcome = run_trial(spec, store, run_id)
    elapsed = time.perf_counter() - start
    assert outcome.status == "done", outcome.error
    (color,) = outcome.scores
    chance = 1 / 8
    assert color.metric == "exact_match" and color.n_items == 300
    assert color.value > 3 * chance, color
    print(f"color trial: {color.value:.3f} in {elapsed:.1f}s")

    # the same checkpoint on the same questions with the images shuffled: chance
    trial = store.get_trial(outcome.key)
    _, encoder = load_encoder(spec.encoder)
    _, lm = load_language_model(spec.llm)
    vlm, _ = build_vlm(spec, encoder, lm)
    load_checkpoint(vlm, store.checkpoint_abspath(trial["checkpoint_path"]))
    vlm.eval()
    test = load_dataset("color", split="test", n=300)
    pixels = torch.stack([encoder.transform(item.image) for item in test])
    assert abs(_accuracy(vlm, test, pixels) - color.value) < 0.02  # lmms-eval agrees with us
    shuffled = pixels[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))]
    assert _accuracy(vlm, test, shuffled) < 2 * chance


def _small(**overrides):
    base = dict(encoder="tiny:vit-p4", llm="tiny:gpt2", alignment="shapes:align", samples=64, seed=3, device="cpu",
                train=TrainConfig(llm="lora", batch_size=16, epochs=1),
                targets=(Target("shapes:count", limit=16), Target("shapes:shape", limit=16)))
    return TrialSpec(**{**base, **overrides})


def test_same_spec_same_scores_and_reuse(store):
    run_a = store.start_run(suite_name="a")
    first = run_trial(_small(), store, run_a)
    assert first.status == "done" and first.trained and not first.reused
    run_b = store.start_run(suite_name="b")
    again = run_trial(_small(), store, run_b)
    assert again.reused and not again.trained
    assert [(s.task, s.value) for s in again.scores] == [(s.task, s.value) for s in first.scores]
    assert store.query("select count(*) as n from trials")[0]["n"] == 1
    uses = store.query("select run_id, reused from run_uses order by run_id")
    assert [(u["run_id"], u["reused"]) for u in uses] == [(run_a, False), (run_b, True)]
    # a new target on a stored trial is scored from its checkpoint, not retrained
    more = run_trial(_small(targets=(Target("shapes:count", limit=16), Target("shapes:color", limit=16))),
                     store, run_b)
    assert more.reused and {s.task for s in more.scores} == {"shapes:count", "shapes:color"}
    assert store.query("select count(*) as n from trials")[0]["n"] == 1
    # the seed is part of the trial: same seed, same training; another seed, another trial
    other = run_trial(_small(seed=4), store, run_b)
    assert other.trained and other.key != first.key


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_lost_checkpoint_is_trained_again_not_fatal(store, damage):
    from harness.store import StoreWarning

    run = store.start_run(suite_name="a")
    first = run_trial(_small(), store, run)
    path = store.checkpoint_abspath(store.get_trial(first.key)["checkpoint_path"])
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:100])
    wider = _small(targets=(Target("shapes:count", limit=16), Target("shapes:color", limit=16)))
    with pytest.warns(StoreWarning, match="trained again"):
        again = run_trial(wider, store, store.start_run(suite_name="b"))
    assert again.status == "done" and again.trained
    assert {s.task for s in again.scores} == {"shapes:count", "shapes:color"}
    # the same training (same seed): the count score it had is reproduced, and it is stored once
    assert [s.value for s in again.scores if s.task == "shapes:count"] == \
        [s.value for s in first.scores if s.task == "shapes:count"]
    assert store.query("select count(*) as n from trials")[0]["n"] == 1
    assert store.get_trial(first.key)["status"] == "done" and path.exists()


def test_same_seed_same_scores_in_a_fresh_store(tmp_path):
    results = []
    for i in range(2):
        with Store.open(tmp_path / f"s{i}.duckdb") as s:
            out = run_trial(_small(), s, s.start_run(suite_name="r"))
            results.append([(t.task, t.value) for t in out.scores])
    assert results[0] == results[1]


def test_a_nan_loss_fails_the_candidate_and_is_recorded(store):
    spec = _small(train=TrainConfig(llm="full", lr=1e30, batch_size=16, epochs=1, max_grad_norm=0.0))
    outcome = run_trial(spec, store, store.start_run(suite_name="nan"))
    assert outcome.status == "failed" and "non-finite loss" in outcome.error
    (row,) = store.query("select status, error from trials")
    assert row["status"] == "failed" and "non-finite loss" in row["error"]
    # the failure is not cached as a success: a fixed config trains
    assert run_trial(_small(), store, store.start_run(suite_name="ok")).status == "done"


def test_nested_subsets_feed_smaller_ratios(store):
    from harness.datasets import subset
    from harness.plugins.shapes import load_dataset

    data = load_dataset("align", split="train", n=200)
    half, quarter = subset(data, 0.5, 3), subset(data, 0.25, 3)  # _small() has seed 3
    assert {i.id for i in quarter} <= {i.id for i in half}
    out = run_trial(_small(ratio=0.25, samples=200), store, store.start_run(suite_name="r"))
    from harness.trial import examples_from

    # one epoch over the quarter subset (every turn of its 50 conversations), in whole batches
    n = len(examples_from(quarter))
    assert out.status == "done" and out.samples_seen == -(-n // 16) * 16


def test_trial_command_trains_then_reuses(tmp_path):
    args = ["trial", "--encoder", "tiny:resnet", "--llm", "tiny:qwen2",
            "--task", "shapes:count", "--samples", "48", "--limit", "8",
            "--store", tmp_path / "s.duckdb", "--device", "cpu"]  # the recipe: a suite's defaults
    first = invoke(*args)
    assert first.returncode == 0, first.stderr
    assert "trained in" in first.stdout and "shapes:count" in first.stdout
    second = invoke(*args)
    assert second.returncode == 0 and "reused from the store" in second.stdout
    value = [line for line in first.stdout.splitlines() if "shapes:count" in line]
    assert value == [line for line in second.stdout.splitlines() if "shapes:count" in line]
    bad = invoke(*args[:2], "tiny:vit-p9", *args[3:])
    assert bad.returncode == 2 and "Did you mean 'tiny:vit-p8'" in bad.stderr

    # its recipe is the suite schema's defaults (issue 32): a suite with the same settings and
    # no vlm section asks for the same trial and reuses it instead of training
    import yaml

    suite = tmp_path / "one.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "one", "seed": 0,
        "zoo": {"vision_encoders": ["tiny:resnet"], "language_models": ["tiny:qwen2"]},
        "alignment": {"dataset": "shapes:align", "samples": 48},
        "targets": [{"task": "shapes:count", "limit": 8}],
        "search": {"strategy": "grid"}, "device": "cpu"}))
    run = invoke("run", suite, "--store", tmp_path / "s.duckdb")
    assert run.returncode == 0, run.stderr
    assert "trials: 0 trained, 1 reused" in run.stdout, run.stdout
    worse = invoke(*args, "--batch-size", "100000000")
    assert worse.returncode == 2 and "Traceback" not in worse.stderr and "batch_size" in worse.stderr, worse.stderr


def _constant(**overrides):
    return _small(samples=96, train=TrainConfig(llm="lora", batch_size=16, epochs=1, schedule="constant",
                                                warmup=0.0), **overrides)


def test_a_continued_trial_trains_only_the_extra_samples_under_its_own_key(store):
    from harness.datasets import subset
    from harness.plugins.shapes import load_dataset
    from harness.trial import OPTIMIZER_FILE, examples_from

    run = store.start_run(suite_name="continue")
    half = run_trial(_constant(ratio=0.5), store, run)
    assert half.status == "done", half.error
    ckpt = store.checkpoint_abspath(store.get_trial(half.key)["checkpoint_path"])
    assert (ckpt.parent / OPTIMIZER_FILE).is_file()  # a constant recipe keeps AdamW's state
    cont = run_trial(_constant(ratio=1.0, after=(0.5,)), store, run)
    fresh = run_trial(_constant(ratio=1.0), store, run)
    assert cont.status == fresh.status == "done", (cont.error, fresh.error)
    assert len({half.key, cont.key, fresh.key}) == 3  # continued and fresh are different trials
    row = store.get_trial(cont.key)
    assert row["continued_from"] == half.key and store.get_trial(fresh.key)["continued_from"] is None
    # one epoch in whole batches: the fresh r = 1 trial's steps less the r = 1/2 trial's
    data = load_dataset("align", split="train", n=96)
    steps = [-(-len(examples_from(subset(data, r, 3))) // 16) for r in (0.5, 1.0)]
    assert half.samples_seen == steps[0] * 16 and fresh.samples_seen == steps[1] * 16
    assert cont.samples_seen == (steps[1] - steps[0]) * 16 < fresh.samples_seen
    assert {s.task for s in cont.scores} == {"shapes:count", "shapes:shape"}
    assert len(store.get_scores(cont.key)) == 2
    # the checkpoint it continued from is where it started: it moved the weights on from there
    _, enc = load_encoder("tiny:vit-p4")
    _, lm = load_language_model("tiny:gpt2")
    a, _ = build_vlm(_constant(), enc, lm)
    load_checkpoint(a, ckpt)
    b, _ = build_vlm(_constant(), *(load_encoder("tiny:vit-p4")[1], load_language_model("tiny:gpt2")[1]))
    load_checkpoint(b, store.checkpoint_abspath(row["checkpoint_path"]))
    assert torch.equal(a.feature_mean, b.feature_mean)  # standardisation is not recalibrated
    assert not torch.equal(a.projector[0].weight, b.projector[0].weight)
    # reused the second time, as any trial
    again = run_trial(_constant(ratio=1.0, after=(0.5,)), store, store.start_run(suite_name="again"))
    assert again.reused and [s.value for s in again.scores] == [s.value for s in cont.scores]


def test_a_continuation_trains_its_missing_parent_first_and_a_lost_state_again(store):
    from harness.store import StoreWarning

    from harness.trial import OPTIMIZER_FILE

    run = store.start_run(suite_name="chain")
    # nothing stored: the chain 1/4 -> 1/2 -> 1 trains its ancestors as trials of their own
    top = run_trial(_constant(ratio=1.0, after=(0.25, 0.5)), store, run)
    assert top.status == "done", top.error
    rows = store.query("select sample_ratio, continued_from is not null as continued from trials"
                       " order by sample_ratio")
    assert [(r["sample_ratio"], r["continued"]) for r in rows] == [(0.25, False), (0.5, True), (1.0, True)]
    uses = store.query("select count(*) as n from run_uses where run_id = ? and kind = 'trial'", [run])
    assert uses[0]["n"] == 3
    # the parent's optimiser state is lost: a new continuation trains the parent again, warning
    half_key = store.get_trial(top.key)["continued_from"]
    state = store.checkpoint_abspath(store.get_trial(half_key)["checkpoint_path"]).parent / OPTIMIZER_FILE
    state.unlink()
    with pytest.warns(StoreWarning, match="trained again"):
        other = run_trial(_constant(ratio=0.75, after=(0.25, 0.5)), store, store.start_run(suite_name="b"))
    assert other.status == "done" and state.is_file()


def test_a_decaying_schedule_keeps_no_optimiser_state(store):
    from harness.trial import OPTIMIZER_FILE

    out = run_trial(_small(), store, store.start_run(suite_name="linear"))
    ckpt = store.checkpoint_abspath(store.get_trial(out.key)["checkpoint_path"])
    assert ckpt.is_file() and not (ckpt.parent / OPTIMIZER_FILE).exists()
