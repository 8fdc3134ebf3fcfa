"""The shapes world: determinism, disjoint splits, balance, learnability, text, disk copies."""

import hashlib
import json
import time
from collections import Counter

import numpy as np
import pytest

from harness.plugins import shapes
from harness.plugins.llava import load_llava


def digest(ds, images=True) -> str:
    h = hashlib.sha256()
    for it in ds:
        h.update(json.dumps([it.id, list(it.conversations), it.answer, it.task]).encode())
        if images:
            h.update(it.array().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", shapes.NAMES)
def test_same_arguments_same_bytes_and_items_do_not_depend_on_n(name):
    a = shapes.load_dataset(name, n=40, seed=3)
    b = shapes.load_dataset(name, n=40, seed=3)
    assert digest(a) == digest(b)
    assert a.fingerprint == b.fingerprint
    longer = shapes.load_dataset(name, n=60, seed=3)
    assert digest(longer[:40]) == digest(a)  # item i is the same however many are drawn
    assert longer.fingerprint != a.fingerprint
    other = shapes.load_dataset(name, n=40, seed=4)
    assert digest(other) != digest(a) and other.fingerprint != a.fingerprint


def test_generator_output_is_pinned_to_its_version():
    # If this fails, generated data changed: bump shapes.GENERATOR_VERSION (it is part of every
    # fingerprint, so cached trials are not reused with different data) and update the digests.
    text = {name: digest(shapes.load_dataset(name, n=20), images=False) for name in shapes.NAMES}
    pixels = digest(shapes.load_dataset("align", n=30))
    assert shapes.GENERATOR_VERSION == "shapes-1"
    assert text == PINNED_TEXT, text
    assert pixels == PINNED_PIXELS, "rendering changed (a Pillow or numpy upgrade?): " + pixels


PINNED_TEXT = {
    "align": "08f28a1676644c47",
    "color": "e9a205a74c062960",
    "shape": "02e3fcdcea8acb5e",
    "count": "1af6e4c034a2fbeb",
    "spatial": "e38e92d6e4a63c21",
    "digits": "0f81f8609c8dca3d",
    "chart": "79e069da639881fa",
}
PINNED_PIXELS = "aaec78454b4a8edd"


@pytest.mark.parametrize("name", shapes.NAMES)
def test_train_and_test_share_no_image(name):
    train = shapes.load_dataset(name, split="train", n=300)
    test = shapes.load_dataset(name, split="test", n=300)
    hashes = lambda ds: {hashlib.sha1(it.array().tobytes()).hexdigest() for it in ds}
    assert not hashes(train) & hashes(test)
    assert train.fingerprint != test.fingerprint


def test_digit_glyphs_of_train_and_test_are_disjoint():
    train = {it.meta["glyph"] for it in shapes.load_dataset("digits", split="train", n=2000)}
    test = {it.meta["glyph"] for it in shapes.load_dataset("digits", split="test", n=2000)}
    assert not train & test
    assert len(test) > 250  # the test pool (every fifth glyph, ~360) is well covered


@pytest.mark.parametrize(
    "task, expected",
    [("color", 8), ("shape", 6), ("count", 9), ("spatial", 4), ("digits", 10), ("chart", 17)],
)
def test_answers_are_balanced_over_a_known_answer_set(task, expected):
    ds = shapes.load_dataset(task, n=1000)
    assert len(ds.choices) == expected
    groups: dict[tuple, Counter] = {}
    for it in ds:
        assert it.answer in it.choices and set(it.choices) <= set(ds.choices)
        groups.setdefault(it.choices, Counter())[it.answer] += 1
    for choices, counts in groups.items():
        total = sum(counts.values())
        assert set(counts) == set(choices)  # every answer occurs
        expect = total / len(choices)
        assert max(counts.values()) < 1.6 * expect and min(counts.values()) > 0.5 * expect, counts
    assert ds.chance == pytest.approx(
        {"color": 1 / 8, "shape": 1 / 6, "count": 1 / 9, "spatial": 1 / 4, "digits": 1 / 10}.get(
            task, ds.chance
        )
    )


def test_chart_mixes_tallest_and_value_questions():
    ds = shapes.load_dataset("chart", n=400)
    kinds = Counter(it.meta["question_type"] for it in ds)
    assert 150 < kinds["chart_tallest"] < 250
    assert 1 / 9 < ds.chance < 1 / 8


def _glyph_features(ds) -> np.ndarray:
    x = ds.images().astype(np.float32)[:, 16:48, 16:48]  # the glyph's 32x32 box
    background = np.median(x.reshape(len(x), -1, 3), axis=1)[:, None, None, :]
    ink = np.abs(x - background).sum(-1)
    ink /= ink.reshape(len(ink), -1).max(1)[:, None, None] + 1e-6
    return ink[:, ::2, ::2].reshape(len(ink), -1)


def _one_nn_accuracy(xtr, ytr, xte, yte) -> float:
    d = (xte**2).sum(1)[:, None] - 2 * xte @ xtr.T + (xtr**2).sum(1)[None, :]
    return float((ytr[d.argmin(1)] == yte).mean())


def test_digits_are_recognisable_from_pixels_and_a_shuffled_control_is_not():
    train = shapes.load_dataset("digits", split="train", n=800)
    test = shapes.load_dataset("digits", split="test", n=300)
    xtr, xte = _glyph_features(train), _glyph_features(test)
    ytr, yte = np.array(train.answers()), np.array(test.answers())
    assert _one_nn_accuracy(xtr, ytr, xte, yte) > 0.8  # chance 0.1
    shuffled = np.random.default_rng(0).permutation(ytr)
    assert _one_nn_accuracy(xtr, shuffled, xte, yte) < 0.2


def test_count_scenes_hold_the_stated_number_of_objects():
    for i in range(200):
        s = shapes.sample("count", "test", 0, i)
        assert len(s.scene.things) == int(s.turns[0][1])


def test_spatial_answers_follow_the_geometry():
    for i in range(200):
        s = shapes.sample("spatial", "test", 0, i)
        q, answer = s.turns[0]
        by_name = {t.name: t for t in s.scene.things}
        assert len(by_name) == len(s.scene.things)  # every object is uniquely named
        a_name = q.split("the ", 1)[1].split(" relative")[0].split(" compared")[0]
        b_name = q.rsplit("the ", 1)[1].rstrip("?")
        a, b = by_name[a_name], by_name[b_name]
        dx, dy = a.x - b.x, a.y - b.y
        expected = (
            ("left" if dx < 0 else "right")
            if abs(dx) > abs(dy)
            else ("above" if dy < 0 else "below")
        )
        assert answer == expected


def test_prompts_follow_the_llava_convention():
    ds = shapes.load_dataset("align", n=300)
    assert ds.task is None and ds.choices is None
    turns = Counter()
    for it in ds:
        conv = it.conversations
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        assert conv[0]["value"].startswith("<image>\n")
        assert sum(t["value"].count("<image>") for t in conv) == 1
        assert it.answer == conv[1]["value"] and it.task.startswith("align:")
        turns[len(conv) // 2] += 1
    assert set(turns) == {1, 2, 3}
    tasks = Counter(it.task for it in ds)
    assert {f"align:{k}" for k in ("caption", *shapes.TASKS)} == set(tasks)


def test_align_mix_and_parameters_are_validated():
    only = shapes.load_dataset("align", n=50, align_mix={"count": 1.0}, multi_turn=0.0)
    assert {it.task for it in only} == {"align:count"}
    with pytest.raises(ValueError, match="align_mix"):
        shapes.load_dataset("align", n=5, align_mix={"colour": 1.0})
    with pytest.raises(TypeError, match="unknown shapes parameter.*available"):
        shapes.load_dataset("count", n=5, imagesize=32)
    with pytest.raises(KeyError, match="Did you mean 'count'"):
        shapes.load_dataset("cuont")
    with pytest.raises(ValueError, match="split"):
        shapes.load_dataset("count", split="val")


def test_image_size_and_max_count_are_parameters():
    ds = shapes.load_dataset("shapes:count", n=30, image_size=96, max_count=4)
    assert ds.images().shape == (30, 96, 96, 3)
    assert ds.choices == ("1", "2", "3", "4") and {it.answer for it in ds} <= set(ds.choices)
    assert ds.fingerprint != shapes.load_dataset("count", n=30, max_count=4).fingerprint


def test_vocabulary_covers_every_generated_text():
    vocab = shapes.vocabulary()
    assert vocab == sorted(set(vocab)) == shapes.vocabulary()
    assert "<image>" in vocab and {"?", ".", ","} <= set(vocab)
    assert all(w == w.lower() for w in vocab)
    seen = set()
    for name in shapes.NAMES:
        for it in shapes.load_dataset(name, split="train", n=400):
            for turn in it.conversations:
                seen.update(shapes.tokenize(turn["value"]))
    for line in shapes.corpus(2000, seed=1):
        assert "<image>" not in line
        seen.update(shapes.tokenize(line))
    assert seen <= set(vocab), seen - set(vocab)
    assert len(seen) > 0.95 * len(vocab)  # and the vocabulary has little dead weight


def test_corpus_is_deterministic():
    assert list(shapes.corpus(50, seed=2)) == list(shapes.corpus(50, seed=2))
    assert list(shapes.corpus(50, seed=2)) != list(shapes.corpus(50, seed=3))
    assert list(shapes.corpus(80, seed=2))[:50] == list(shapes.corpus(50, seed=2))


def test_thousand_items_generate_and_render_fast():
    shapes.load_dataset("digits", n=5).images()  # first use reads the glyphs
    start = time.perf_counter()
    ds = shapes.load_dataset("count", n=1000)
    ds.images()
    assert time.perf_counter() - start < 5.0  # ~0.4 s on one core; slack for busy CI


def test_to_disk_round_trips_through_the_llava_loader(tmp_path):
    ds = shapes.load_dataset("color", n=12, cache_dir=tmp_path / "cache")
    copy = ds.to_disk()
    assert copy.root.parent == tmp_path / "cache" and ds.fingerprint in copy.root.name
    assert len(list(copy.images.glob("*.png"))) == 12
    back = load_llava(copy.json)
    assert len(back) == 12 and back.task == "color" and back.choices == tuple(sorted(shapes.COLORS))
    for a, b in zip(ds, back):
        assert (a.id, a.answer, a.choices, a.task) == (b.id, b.answer, b.choices, b.task)
        assert list(a.conversations) == list(b.conversations)
        assert np.array_equal(a.array(), b.array())
    again = ds.to_disk()  # a complete copy is reused, not rewritten
    assert again == copy and (copy.root / "COMPLETE").read_text().strip() == ds.fingerprint


def test_parquet_copy_holds_images_and_answers(tmp_path):
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    ds = shapes.load_dataset("digits", n=5)
    copy = ds.to_disk(tmp_path)
    table = pq.read_table(copy.parquet).to_pylist()
    assert [r["answer"] for r in table] == ds.answers()
    assert table[0]["question"] == ds[0].question and "<image>" not in table[0]["question"]
    assert table[0]["choices"] == list(shapes.DIGITS)
    img = Image.open(io.BytesIO(table[0]["image"]["bytes"]))
    assert np.array_equal(np.asarray(img), ds[0].array())
    assert b"huggingface" in pq.read_schema(copy.parquet).metadata


def test_cache_dir_defaults_to_harness_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    assert shapes.load_dataset("count", n=1).to_disk().root.parent == tmp_path / "shapes"


def test_registered_as_the_shapes_dataset_family():
    from harness.plugin_manager import get_components

    from harness.datasets import family_of

    entry, name = get_components()["dataset"].resolve("shapes:spatial")
    family = entry.load()(entry.name)
    ds = family.split(name, "test", n=3, seed=0)
    assert ds.name == "shapes:spatial" and len(ds) == 3
    assert ds.fingerprint == shapes.load_dataset("spatial", split="test", n=3).fingerprint
    assert family.alignment_data and family.scoring and family.splits == ("train", "test")
    assert type(family_of("shapes:align")[0]) is type(family)


def test_datasets_pickle_for_worker_processes():
    import pickle

    ds = shapes.load_dataset("digits", n=10)
    for view in (ds, ds[2:6]):
        back = pickle.loads(pickle.dumps(view))
        assert back.fingerprint == view.fingerprint and len(back) == len(view)
        assert np.array_equal(back.images(), view.images())
