"""Layer conductance and the Directional Conductance Divergence: the divergence on arrays, the
profiles on tiny real encoders and real shapes items."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import rel_entr

from harness.conductance import (
    alignment_plan,
    dcd,
    depth_cost,
    encoder_blocks,
    fit_probe,
    importance_distribution,
    layer_conductance,
    pooled_features,
    probe_forward,
    task_profile,
)
from harness.errors import BadInput

importances = st.integers(2, 6).flatmap(
    lambda n: st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=n, max_size=n))
pairs = st.integers(2, 6).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=n, max_size=n),
    st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=n, max_size=n)))


# ---------------------------------------------------------------- arrays


@settings(max_examples=30, deadline=None)
@given(importances)
def test_dcd_of_a_profile_with_itself_is_zero(v):
    assert dcd(v, v) == 0.0


@settings(max_examples=30, deadline=None)
@given(pairs)
def test_dcd_is_non_negative_and_finite(pair):
    s, t = pair
    value = dcd(s, t)
    assert np.isfinite(value) and value >= 0.0


def test_dcd_is_directional_a_broad_source_covers_a_narrow_target():
    broad, narrow = [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]
    forward, backward = dcd(broad, narrow), dcd(narrow, broad)
    assert forward > 0 and backward > 0
    # the narrow source ignores blocks the broad target relies on: the worse direction
    assert backward > 2 * forward


def test_dcd_is_the_kl_between_the_target_self_plan_and_the_source_plan():
    rng = np.random.default_rng(0)
    for _ in range(5):
        s, t = rng.random(5), rng.random(5)
        p_s, p_t = importance_distribution(s), importance_distribution(t)
        pi_st, pi_tt = alignment_plan(p_s, p_t), alignment_plan(p_t, p_t)
        joint_kl = rel_entr(pi_tt / pi_tt.sum(), pi_st / pi_st.sum()).sum()
        assert dcd(s, t) == pytest.approx(joint_kl, rel=1e-4, abs=1e-8)
        # the chain rule over the source side: KL(p_T || p_S) is part of it
        assert dcd(s, t) >= rel_entr(p_t, p_s).sum() - 1e-8


def test_plans_have_the_given_marginals_and_depth_cost_is_a_scaled_metric():
    p, q = importance_distribution([3.0, 1.0, 0.5]), importance_distribution([0.2, 1.0, 4.0])
    plan = alignment_plan(p, q)
    np.testing.assert_allclose(plan.sum(1), p, atol=1e-8)
    np.testing.assert_allclose(plan.sum(0), q, atol=1e-8)
    c = depth_cost(4)
    assert c.max() == 1.0 and np.all(np.diag(c) == 0) and np.allclose(c, c.T)
    assert c[0, 3] == c[0, 1] + c[1, 3]  # distances along depth add up
    assert depth_cost(1).tolist() == [[0.0]]


@settings(max_examples=30, deadline=None)
@given(importances, st.floats(0.0, 0.5))
def test_importance_distribution_is_a_full_support_distribution(v, floor):
    p = importance_distribution(v, floor)
    assert p.sum() == pytest.approx(1.0) and np.all(p >= floor / len(v) - 1e-15)


def test_importance_distribution_rejects_negative_or_nan():
    with pytest.raises(ValueError):
        importance_distribution([1.0, -0.1])
    with pytest.raises(ValueError):
        importance_distribution([1.0, float("nan")])


def test_probe_logits_match_sklearn_and_binary_tasks_get_two_rows():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 5))
    y = ["a", "b", "c", "d"] * 5
    probe = fit_probe(x, y, seed=0)
    direct = LogisticRegression(max_iter=2000, random_state=0).fit(
        (x - x.mean(0)) / x.std(0), y).decision_function((x - x.mean(0)) / x.std(0))
    np.testing.assert_allclose(probe.logits(x), direct, rtol=1e-6, atol=1e-8)
    binary = fit_probe(x, ["yes", "no"] * 10)
    logits = binary.logits(x)
    assert logits.shape == (20, 2)
    np.testing.assert_allclose(logits[:, 0], -logits[:, 1])
    with pytest.raises(BadInput, match="two different answers"):
        fit_probe(x, ["a"] * 20)


# ---------------------------------------------------------------- tiny real encoders


@pytest.fixture(scope="module")
def items():
    from harness.plugins.shapes import load_dataset

    return list(load_dataset("color", split="train", n=6))


def _encoder(ref):
    from harness.trial import load_encoder

    return load_encoder(ref)[1]


def test_blocks_are_found_structurally_per_architecture():
    vit, resnet, clip = _encoder("tiny:vit-p8"), _encoder("tiny:resnet"), _encoder("tiny:clip-p8")
    assert [n for n, _ in encoder_blocks(vit)] == ["blocks.0", "blocks.1", "blocks.2"]
    assert [n for n, _ in encoder_blocks(resnet)] == ["layer1", "layer2", "layer3", "layer4"]
    # the CLIP tower is read at hidden_states[-2]: its last layer does not reach the tokens
    all_layers = [n for n, _ in encoder_blocks(clip, reaching_output=False)]
    assert len(all_layers) == 3 and all(".layers." in n for n in all_layers)
    assert [n for n, _ in encoder_blocks(clip)] == all_layers[:2]
    with pytest.raises(BadInput, match="sequential blocks"):
        encoder_blocks(torch.nn.Linear(3, 3))


@pytest.mark.parametrize("ref", ["tiny:vit-p8", "tiny:resnet"])
def test_profiles_are_finite_one_per_block_and_deterministic(ref, items):
    encoder = _encoder(ref)
    first = task_profile(encoder, items, n_steps=4)
    again = task_profile(_encoder(ref), items, n_steps=4)
    assert first.shape == (len(encoder_blocks(encoder)),)
    assert np.all(np.isfinite(first)) and np.all(first >= 0)
    assert first.sum() == pytest.approx(1.0, abs=5e-3)  # float16-rounded shares
    np.testing.assert_array_equal(first, again)
    # stored as float16: the profile survives the round trip unchanged
    np.testing.assert_array_equal(first.astype(np.float16).astype(np.float32), first)


def test_conductance_through_a_block_adds_up_to_the_output_change(items):
    """Completeness: summed over a full cut of the network (a ViT block's residual stream),
    conductance approximates probe(x) - probe(baseline) for each example's true answer."""
    encoder = _encoder("tiny:vit-p8")
    pixels = torch.stack([encoder.transform(it.image) for it in items])
    labels = [it.answer for it in items]
    with torch.no_grad():
        probe = fit_probe(pooled_features(encoder, pixels).numpy(), labels)
    forward = probe_forward(encoder, probe)
    targets = probe.target_indices(labels)
    baselines = pixels.mean(0, keepdim=True).expand_as(pixels)
    with torch.no_grad():
        delta = (forward(pixels) - forward(baselines))[torch.arange(len(items)), targets]
    for _, block in encoder_blocks(encoder):
        (attr,) = layer_conductance(forward, block, pixels, baselines, targets, n_steps=8)
        total = attr.detach().reshape(len(items), -1).sum(1)
        assert torch.allclose(total, delta, atol=0.25 * float(delta.abs().mean()))
