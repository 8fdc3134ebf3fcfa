"""Common dataset types: nested subsets, the LLaVA-format loader and its error messages."""

import itertools
import json
import math

import numpy as np
import pytest
from PIL import Image

from harness.datasets import (
    Dataset,
    DatasetError,
    VisionTextDataset,
    VisionTextItem,
    subset,
)
from harness.plugins.llava import load_llava


def toy(n: int, fingerprint: str = "toy") -> Dataset:
    items = [
        VisionTextItem(
            id=f"t{i}",
            conversations=({"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a"}),
        )
        for i in range(n)
    ]
    return Dataset("toy", n, items.__getitem__, fingerprint)


@pytest.mark.parametrize("n", [1, 7, 100, 1001])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_subsets_are_nested_and_sized_by_ceiling(n, seed):
    ds = toy(n)
    ratios = [1 / 16, 1 / 8, 0.2, 1 / 4, 1 / 3, 1 / 2, 0.75, 1.0]
    chosen = [{it.id for it in subset(ds, r, seed)} for r in ratios]
    for r, ids in zip(ratios, chosen):
        assert len(ids) == max(1, math.ceil(r * n - 1e-9))
    for small, large in itertools.pairwise(chosen):
        assert small <= large
    assert chosen[-1] == {it.id for it in ds}


def test_subsets_are_deterministic_ordered_and_fingerprinted():
    ds = toy(200)
    a, b = subset(ds, 0.25, seed=3), subset(ds, 0.25, seed=3)
    assert [it.id for it in a] == [it.id for it in b] and a.fingerprint == b.fingerprint
    assert [int(it.id[1:]) for it in a] == sorted(int(it.id[1:]) for it in a)  # dataset order
    c = subset(ds, 0.25, seed=4)
    assert {it.id for it in c} != {it.id for it in a} and c.fingerprint != a.fingerprint
    assert subset(ds, 0.5, seed=3).fingerprint != a.fingerprint
    assert subset(toy(200, "other"), 0.25, seed=3).fingerprint != a.fingerprint
    assert len(subset(toy(10), 0.1)) == 1  # 0.1 * 10 is 1.0000000000000002 in floats
    for bad in (0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            subset(ds, bad)


def test_dataset_indexing():
    ds = toy(10)
    assert isinstance(ds, VisionTextDataset)
    assert ds[-1].id == "t9" and [it.id for it in ds[2:5]] == ["t2", "t3", "t4"]
    with pytest.raises(IndexError, match="out of range for toy"):
        ds[10]
    assert ds[0].prompt == "q0" and ds[0].image is None and ds.chance is None


# --- LLaVA format ------------------------------------------------------------------------------


def write_llava(tmp_path, entries, images=("a.png", "sub/b.png")):
    folder = tmp_path / "imgs"
    for k, name in enumerate(images):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 5, 3), 40 * k, np.uint8)).save(folder / name)
    path = tmp_path / "data.json"
    path.write_text(json.dumps(entries))
    return path, folder


def conv(q="<image>\nwhat is this?", a="a cat", *more):
    turns = [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    for k, text in enumerate(more):
        turns.append({"from": "human" if k % 2 == 0 else "gpt", "value": text})
    return turns


GOOD = [
    {"id": "000", "image": "a.png", "conversations": conv()},
    {
        "id": 1,
        "image": "sub/b.png",
        "conversations": conv("<image>\nhow many?", "2", "and now?", "3"),
    },
    {"id": "text-only", "conversations": conv("hello", "hi")},
]


def test_llava_loader_reads_images_conversations_and_text_only_entries(tmp_path):
    path, folder = write_llava(tmp_path, GOOD)
    ds = load_llava(path, image_folder=folder)
    assert len(ds) == 3 and ds.task is None and ds.name == f"llava:{path}"
    assert ds[0].image.size == (5, 6) and ds[0].array().shape == (6, 5, 3)
    assert ds[1].id == "1" and ds[1].answer == "2" and len(ds[1].conversations) == 4
    assert ds[1].question == "how many?"
    assert ds[2].image is None and not ds[2].has_image
    assert ds.images([0, 1]).shape == (2, 6, 5, 3)


def test_llava_fingerprint_follows_json_and_images(tmp_path):
    path, folder = write_llava(tmp_path, GOOD)
    first = load_llava(path, image_folder=folder).fingerprint
    assert load_llava(path, image_folder=folder).fingerprint == first
    Image.fromarray(np.zeros((60, 50, 3), np.uint8)).save(folder / "a.png")
    second = load_llava(path, image_folder=folder).fingerprint
    assert second != first
    path.write_text(json.dumps(GOOD[:2]))
    assert load_llava(path, image_folder=folder).fingerprint not in (first, second)


def test_image_folder_defaults_to_the_json_folder(tmp_path):
    entries = [{"id": "x", "image": "imgs/a.png", "conversations": conv()}]
    path, _ = write_llava(tmp_path, entries, images=("a.png",))
    assert load_llava(path)[0].image.size == (5, 6)


@pytest.mark.parametrize(
    "bad_entry, message",
    [
        ({"image": "a.png", "conversations": conv()}, "entry 1 has no 'id'"),
        (
            {"id": "x", "image": "missing.png", "conversations": conv()},
            "entry 1 (id 'x') image 'missing.png' not found",
        ),
        ({"id": "x", "image": "a.png"}, "entry 1 (id 'x') has no 'conversations'"),
        ({"id": "x", "image": "a.png", "conversations": conv("what?")}, "0 '<image>' tokens"),
        (
            {"id": "x", "conversations": conv()},
            "has no image but its conversation contains '<image>'",
        ),
        ({"id": "x", "image": ["a.png", "a.png"], "conversations": conv()}, "only one image path"),
        (
            {
                "id": "x",
                "image": "a.png",
                "conversations": [{"from": "gpt", "value": "<image>\nhi"}],
            },
            "turn 0 is from 'gpt', expected 'human'",
        ),
        ({"id": "x", "image": "a.png", "conversations": conv()[:1]}, "no gpt reply"),
        ("just a string", "entry 1 is a str"),
    ],
)
def test_malformed_llava_entries_name_the_file_and_the_entry(tmp_path, bad_entry, message):
    path, folder = write_llava(tmp_path, [GOOD[0], bad_entry, GOOD[2]])
    with pytest.raises(DatasetError) as err:
        load_llava(path, image_folder=folder)
    assert str(path) in str(err.value) and message in str(err.value)


def test_malformed_llava_files(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(DatasetError, match="does not exist"):
        load_llava(path)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="x.json: not valid json"):
        load_llava(path)
    path.write_text(json.dumps({"id": 1}))
    with pytest.raises(DatasetError, match="expected a json list"):
        load_llava(path)
    path.write_text("[]")
    with pytest.raises(DatasetError, match="image folder .*nowhere.* does not exist"):
        load_llava(path, image_folder=tmp_path / "nowhere")


def test_llava_data_copies_to_disk(tmp_path):
    path, folder = write_llava(tmp_path, GOOD[:2])
    ds = load_llava(path, image_folder=folder)
    copy = ds.to_disk(tmp_path / "out")
    back = load_llava(copy.json)
    assert [it.id for it in back] == ["000", "1"]
    assert np.array_equal(back[1].array(), ds[1].array())


def test_an_lmms_built_in_task_with_a_local_dataset_is_scored_on_that_file(tmp_path):
    from harness.plugins.lmms import LmmsFamily
    from harness.scoring import Target

    found = LmmsFamily("lmms").scoring_task(Target("lmms:ai2d", limit=5, dataset=str(tmp_path / "ai2d.parquet")),
                                            n=1000, seed=0)
    (task,) = found.tasks
    assert task["task"] == "ai2d" and found.limit == 5 and found.include_defaults
    assert task["dataset_kwargs"]["data_files"]["test"] == str((tmp_path / "ai2d.parquet").resolve())


def test_llava_datasets_pickle(tmp_path):
    import pickle

    path, folder = write_llava(tmp_path, GOOD)
    ds = load_llava(path, image_folder=folder)
    back = pickle.loads(pickle.dumps(subset(ds, 0.5)))
    assert [it.id for it in back] == [it.id for it in subset(ds, 0.5)]
    assert np.array_equal(back[0].array(), subset(ds, 0.5)[0].array())
