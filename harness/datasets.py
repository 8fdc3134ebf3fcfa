"""Vision-text datasets: one item type and one dataset type shared by every source.

An item is one image (possibly none) with a LLaVA-style conversation; target-task items also
carry the gold short ``answer`` and the ``choices`` it is drawn from, so chance level is known.
Every dataset has a ``fingerprint`` (a content hash) that keys cached trials and embeddings;
:func:`subset` draws nested, seeded subsets for the sample-ratio rungs. Where datasets come from
is a dataset family's business (:class:`DatasetFamily`, the contract every family implements,
built-in or not: the bundled ones are in ``harness.plugins``).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from harness._moved import names_moved_from
from harness.errors import BadInput

IMAGE_TOKEN = "<image>"


class DatasetError(BadInput, ValueError):
    """Malformed dataset input: the message names the file and the offending entry (a harness
    error: the CLI prints it as one line and exits 2)."""


def content_hash(obj: Any) -> str:
    """Stable short hash (16 hex digits of sha256) of a JSON-serialisable object: the store's
    content key in its lenient form, cut short. Dataset, component and zoo-recipe fingerprints
    are made here and sit inside stored trial and embedding keys, so every value is frozen."""
    from harness.store.keys import content_key

    return content_key(obj, lenient=True)[:16]


@dataclass(frozen=True, eq=False)
class VisionTextItem:
    """One example: an image (loaded on demand) and a conversation about it.

    ``conversations`` uses LLaVA's turn format, ``{"from": "human"|"gpt", "value": str}``;
    the first human turn holds the ``<image>`` token when there is an image. For target tasks
    ``answer`` is the exact-match gold answer and ``choices`` the closed answer set.
    """

    id: str
    conversations: tuple[Mapping[str, str], ...]
    task: str = ""
    answer: str | None = None
    choices: tuple[str, ...] | None = None
    image_path: str | None = None  # as written in the source (relative to its image folder)
    load_image: Callable[[], Any] | None = field(default=None, repr=False)
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def has_image(self) -> bool:
        return self.load_image is not None

    @property
    def image(self):
        """The image as an RGB ``PIL.Image`` (``None`` for text-only items); loaded on each access."""
        if self.load_image is None:
            return None
        img = self.load_image()
        if isinstance(img, np.ndarray):
            from PIL import Image

            return Image.fromarray(img, "RGB")
        return img if img.mode == "RGB" else img.convert("RGB")

    def array(self) -> np.ndarray | None:
        """The image as a ``uint8`` array of shape (H, W, 3)."""
        if self.load_image is None:
            return None
        img = self.load_image()
        if isinstance(img, np.ndarray):
            return img
        return np.asarray(img.convert("RGB"), dtype=np.uint8)

    @property
    def prompt(self) -> str:
        """The first human turn, ``<image>`` token included."""
        return self.conversations[0]["value"]

    @property
    def question(self) -> str:
        """The first human turn without the ``<image>`` token (for lmms-eval style prompts)."""
        return self.prompt.replace(IMAGE_TOKEN, "").strip()

    def to_llava(self, image_path: str | None = None) -> dict[str, Any]:
        """The LLaVA json entry; ``answer``/``task``/``choices`` ride along as extra keys."""
        entry: dict[str, Any] = {"id": self.id}
        path = image_path if image_path is not None else self.image_path
        if path is not None:
            entry["image"] = path
        entry["conversations"] = [dict(t) for t in self.conversations]
        if self.task:
            entry["task"] = self.task
        if self.answer is not None:
            entry["answer"] = self.answer
        if self.choices is not None:
            entry["choices"] = list(self.choices)
        return entry


@runtime_checkable
class VisionTextDataset(Protocol):
    """What the rest of harness relies on: a sized, indexable, fingerprinted item sequence."""

    name: str
    fingerprint: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> VisionTextItem: ...

    def __iter__(self) -> Iterator[VisionTextItem]: ...


class DiskCopy(NamedTuple):
    """Where :meth:`Dataset.to_disk` wrote a dataset."""

    root: Path  # the folder holding everything below
    json: Path  # LLaVA-format list (``image`` paths relative to ``root``) + answer/task/choices
    parquet: Path  # one row per item, image bytes embedded (HF ``Image`` feature), for lmms-eval
    images: Path  # PNG files, one per item


class Dataset(Sequence):
    """A fingerprinted sequence of :class:`VisionTextItem`, built lazily from ``item_at(i)``.

    :param name: e.g. ``shapes:count`` or ``llava:/data/llava_v1_5_mix665k.json``
    :param fingerprint: content hash; equal fingerprints mean equal items
    :param task: target task name, or ``None`` for alignment / instruction data
    :param choices: the closed answer set of a target task (union over items)
    """

    def __init__(
        self,
        name: str,
        length: int,
        item_at: Callable[[int], VisionTextItem],
        fingerprint: str,
        *,
        task: str | None = None,
        choices: Sequence[str] | None = None,
        split: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ):
        self.name = name
        self.fingerprint = fingerprint
        self.task = task
        self.choices = tuple(choices) if choices is not None else None
        self.split = split
        self.meta = dict(meta or {})
        self._length = length
        self._item_at = item_at

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.select(range(*index.indices(self._length)))
        if not isinstance(index, (int, np.integer)):
            raise TypeError(
                f"dataset indices must be integers or slices, not {type(index).__name__}"
            )
        i = int(index)
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(
                f"index {index} out of range for {self.name} with {self._length} items"
            )
        return self._item_at(i)

    def __iter__(self) -> Iterator[VisionTextItem]:
        for i in range(self._length):
            yield self._item_at(i)

    def __repr__(self) -> str:
        return (
            f"<Dataset {self.name} split={self.split} n={len(self)} fingerprint={self.fingerprint}>"
        )

    @property
    def chance(self) -> float | None:
        """Expected exact-match accuracy of a uniform guess among each item's ``choices``."""
        if self.task is None or not len(self):
            return None
        probs = [1.0 / len(it.choices) for it in self if it.choices]
        return float(np.mean(probs)) if probs else None

    def answers(self) -> list[str | None]:
        return [it.answer for it in self]

    def images(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Images as one ``uint8`` array (N, H, W, 3); all must share a size."""
        idx = range(len(self)) if indices is None else indices
        arrays = [self[i].array() for i in idx]
        if any(a is None for a in arrays):
            raise DatasetError(f"{self.name}: some items have no image")
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise DatasetError(
                f"{self.name}: images differ in size ({sorted(shapes)[:3]}...); resize first"
            )
        return np.stack(arrays) if arrays else np.zeros((0, 0, 0, 3), np.uint8)

    def select(self, indices: Sequence[int], *, tag: str | None = None) -> Dataset:
        """A view of the items at ``indices`` (in that order); its fingerprint derives from this one's."""
        idx = [int(i) for i in indices]
        for i in idx:
            if not 0 <= i < len(self):
                raise IndexError(f"index {i} out of range for {self.name} with {len(self)} items")
        fp = content_hash({"parent": self.fingerprint, "select": tag if tag is not None else idx})
        return Dataset(
            self.name,
            len(idx),
            _Remap(self._item_at, idx),
            fp,
            task=self.task,
            choices=self.choices,
            split=self.split,
            meta={**self.meta, "parent": self.fingerprint, "selection": tag or "indices"},
        )

    def default_disk_dir(self) -> Path:
        return harness_cache_dir() / "datasets"

    def to_disk(self, directory: str | os.PathLike | None = None) -> DiskCopy:
        """Write images + a LLaVA json + a parquet index under ``directory/<name>-<fingerprint>``.

        Reuses an existing complete copy (the folder name carries the fingerprint); writes go
        to a temporary folder renamed into place, so concurrent writers never see half a copy.
        """
        base = Path(directory) if directory is not None else self.default_disk_dir()
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name).strip("-")[:80]
        root = base / f"{slug}-{self.split or 'all'}-{self.fingerprint}"
        done = DiskCopy(root, root / "data.json", root / "data.parquet", root / "images")
        if (root / "COMPLETE").exists():
            return done
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=base))
        try:
            _write_copy(self, tmp)
            (tmp / "COMPLETE").write_text(self.fingerprint + "\n")
            try:
                os.rename(tmp, root)
            except OSError:
                if not (root / "COMPLETE").exists():  # not a concurrent writer's finished copy
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return done


class _Remap:
    """``item_at`` of a selection (a class, not a lambda, so datasets pickle for worker processes)."""

    def __init__(self, item_at: Callable[[int], VisionTextItem], indices: list[int]):
        self.item_at, self.indices = item_at, indices

    def __call__(self, j: int) -> VisionTextItem:
        return self.item_at(self.indices[j])


def harness_cache_dir() -> Path:
    """``$HARNESS_CACHE`` or ``~/.cache/harness``."""
    env = os.environ.get("HARNESS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "harness"


def _hf_features() -> dict[str, Any]:
    """Schema metadata that makes ``datasets.load_dataset("parquet", ...)`` decode images as PIL."""
    value = {"dtype": "string", "_type": "Value"}
    return {
        "info": {
            "features": {
                "id": value,
                "image": {"_type": "Image"},
                "image_path": value,
                "question": value,
                "prompt": value,
                "answer": value,
                "task": value,
                "choices": {"feature": value, "_type": "Sequence"},  # read as List by datasets>=4
                "conversations": value,
            }
        }
    }


def _write_copy(ds: Dataset, root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = root / "images"
    images.mkdir(parents=True)
    entries, rows = [], {k: [] for k in _hf_features()["info"]["features"]}
    used: set[str] = set()
    for i, item in enumerate(ds):
        rel, png = None, None
        if item.has_image:
            stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.id) or f"item{i}"
            if stem in used:
                stem = f"{stem}__{i}"
            used.add(stem)
            rel = f"images/{stem}.png"
            buf = io.BytesIO()
            item.image.save(buf, format="PNG", compress_level=1)
            png = buf.getvalue()
            (root / rel).write_bytes(png)
        entries.append(item.to_llava(rel))
        rows["id"].append(item.id)
        rows["image"].append({"bytes": png, "path": rel} if png is not None else None)
        rows["image_path"].append(rel)
        rows["question"].append(item.question)
        rows["prompt"].append(item.prompt)
        rows["answer"].append(item.answer)
        rows["task"].append(item.task or None)
        rows["choices"].append(list(item.choices) if item.choices is not None else None)
        rows["conversations"].append(json.dumps([dict(t) for t in item.conversations]))
    (root / "data.json").write_text(json.dumps(entries, indent=1))
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("image", image_type),
            ("image_path", pa.string()),
            ("question", pa.string()),
            ("prompt", pa.string()),
            ("answer", pa.string()),
            ("task", pa.string()),
            ("choices", pa.list_(pa.string())),
            ("conversations", pa.string()),
        ],
        metadata={"huggingface": json.dumps(_hf_features())},
    )
    pq.write_table(pa.Table.from_pydict(rows, schema=schema), root / "data.parquet")


# ---------------------------------------------------------------------------------------------
# Nested subsets


def subset(dataset: Dataset, ratio: float, seed: int = 0, *, after: float | None = None) -> Dataset:
    """The first ``ceil(ratio * n)`` items of a seeded permutation, kept in dataset order.

    Nested by construction: for the same dataset and seed, the ``r/2`` subset is contained in
    the ``r`` subset. The fingerprint depends on the parent, the seed and the item count.
    With ``after`` (a smaller ratio), only the items the ``ratio`` subset adds to the ``after``
    one: what a trial continued from ratio ``after`` trains on.
    """
    if not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ValueError(f"subset ratio must be in (0, 1], got {ratio!r}")
    if after is not None and not 0 < after < ratio:
        raise ValueError(f"subset after must be in (0, ratio = {ratio!r}), got {after!r}")
    n = len(dataset)
    if n == 0:
        return dataset
    k = _subset_size(ratio, n)
    start = 0 if after is None else _subset_size(after, n)
    order = np.random.default_rng(np.random.SeedSequence([0x5EB5E7, int(seed)])).permutation(n)
    chosen = np.sort(order[start:k])
    tag = f"subset:seed={int(seed)}:k={k}:of={n}" + (f":from={start}" if start else "")
    return dataset.select(chosen.tolist(), tag=tag)


def _subset_size(ratio: float, n: int) -> int:
    return max(1, math.ceil(ratio * n - 1e-9))  # 1e-9: 0.1 * 10 must give 1, not 2


# ---------------------------------------------------------------------------------------------
# The contract of a dataset family


@dataclass(frozen=True)
class ScoringTask:
    """How lmms-eval finds a target's task: ``TaskManager(include_path, include_defaults)`` and
    the task names (or inline task configs) to run, ``limit`` documents of each (None: all)."""

    tasks: tuple
    include_path: str | None = None
    include_defaults: bool = True
    limit: int | None = None


class DatasetFamily:
    """One dataset family, registered by a plugin with ``register_datasets``:
    ``register("myfam", "mypkg:MyFamily", names=None, doc="...")``, a subclass of this class.

    A ref ``myfam:<name>`` reaches the family's methods with ``<name>``. What a family can do it
    declares with three capabilities, and the suite is validated against them (an alignment set
    must have alignment data, a target must be scorable), so nothing fails at run time for it:

    - ``alignment_data``: :meth:`alignment` gives the image-text items projectors train on;
    - ``splits``: :meth:`split` gives items of these splits (``"train"``: features for
      clustering, warm-ups, Gromov-Wasserstein and conductance probes; ``"test"``: what a
      target is scored on and its constant-answer baseline);
    - ``scoring``: its refs can be targets; :meth:`scoring_task` says which lmms-eval task scores
      them. By default that is an exact-match task written from the ``test`` split, so a family
      with a test split of items with answers is scorable without writing any lmms-eval YAML.

    The core never names a family: ``shapes``, ``llava`` and ``lmms`` are three implementations in
    ``harness.plugins``, registered like a third-party one.
    """

    alignment_data: ClassVar[bool] = False
    splits: ClassVar[tuple[str, ...]] = ()
    scoring: ClassVar[bool] = False
    #: lmms-eval reads the whole task itself: a target's ``limit`` caps it and no default applies
    #: (else a target without ``limit`` is scored on the runner's default number of test items)
    scores_whole_task: ClassVar[bool] = False
    #: the most items one ref can draw (None: no limit), checked when the suite is validated
    max_items: ClassVar[int | None] = None

    def __init__(self, family: str):
        self.family = family  # the registered name, for messages

    # -- capabilities ---------------------------------------------------------------------

    def alignment(self, name: str, *, samples: int | None, seed: int) -> Dataset:
        """The alignment items of ``name``: at most ``samples`` of them (None: all; a generated
        family: its own default size), a seeded choice where there are more."""
        raise DatasetError(f"dataset family {self.family!r} holds no alignment data")

    def split(self, name: str, split: str, *, n: int | None, seed: int) -> Dataset:
        """The first ``n`` items (None: all) of ``split`` (one of :attr:`splits`) of ``name``; a
        family that reads a fixed file may give all of it (callers take the items they need)."""
        raise DatasetError(f"dataset family {self.family!r} has no {split!r} split")

    def features(self, name: str, *, n: int, seed: int, target=None) -> tuple[Dataset | None, str | None]:
        """(items, note): what a component's features on this task are computed on, never its
        test items; (None, why) when there are none. ``note`` is said in the run's log (None:
        nothing worth saying). ``target`` is the suite's :class:`harness.scoring.Target` when
        ``name`` is one. Default: the train split."""
        if "train" not in self.splits:
            return None, f"family {self.family!r} has no train split"
        return self.split(name, "train", n=n, seed=seed), None

    def scoring_task(self, target, *, n: int, seed: int, cache_dir: Path | None = None) -> ScoringTask:
        """The lmms-eval task that scores ``target`` (a :class:`harness.scoring.Target`), on
        ``n`` items when the family draws them. Default: an exact-match task on the first ``n``
        items of the test split, written once as parquet + YAML (:func:`local_task_dir`)."""
        if not self.scoring:
            raise DatasetError(f"{target.task}: dataset family {self.family!r} has no scoring "
                               "task (its tasks cannot be targets)")
        dataset = self.split(target.task.partition(":")[2], "test", n=n, seed=seed)
        folder, task = local_task_dir(dataset, cache_dir)
        return ScoringTask(tasks=(task,), include_path=str(folder), include_defaults=False)

    def scored_items(self, target, default_limit: int) -> int | None:
        """How many items a target is scored on: None when lmms-eval decides (its whole task)."""
        return target.limit if self.scores_whole_task else (target.limit or default_limit)

    def answers(self, name: str, n: int) -> list[str | None] | None:
        """The gold answers of the first ``n`` test items (the constant-answer baseline); None
        when they are not known here."""
        if "test" not in self.splits:
            return None
        return self.split(name, "test", n=n, seed=0).answers()

    # -- checks ---------------------------------------------------------------------------

    def check(self, name: str) -> None:
        """Called when a suite naming ``name`` is validated: raise :class:`DatasetError` for bad
        data that can be found cheaply here (a file on another machine may be left to
        :meth:`preflight`)."""

    def preflight(self, name: str) -> None:
        """Called before a run opens its store: raise :class:`DatasetError` for what the run
        cannot read (a missing file)."""


def local_task_dir(dataset: Dataset, cache_dir: Path | None = None) -> tuple[Path, str]:
    """Write (once) an lmms-eval exact-match task for ``dataset``'s items (question, image,
    answer) beside its disk copy; returns (folder, task name). The name carries the
    fingerprint, so other items get another task."""
    import textwrap

    copy = dataset.to_disk(cache_dir)
    label = "".join(c if c.isalnum() else "_" for c in (dataset.task or dataset.name))
    task = f"{LOCAL_TASK_PREFIX}{label}_{dataset.fingerprint}"
    yaml_path = Path(copy.root) / "lmms_task" / f"{task}.yaml"
    if not yaml_path.exists():
        yaml_path.parent.mkdir(parents=True, exist_ok=True)
        (yaml_path.parent / f"{LOCAL_TASK_UTILS_MODULE}.py").write_text(LOCAL_TASK_UTILS)
        text = LOCAL_TASK_YAML.format(task=task, parquet=Path(copy.parquet).resolve(), version=1,
                                      utils=LOCAL_TASK_UTILS_MODULE)
        tmp = yaml_path.with_suffix(".tmp")
        tmp.write_text(textwrap.dedent(text))
        tmp.replace(yaml_path)
    return yaml_path.parent, task


LOCAL_TASK_PREFIX = "harness_local_"
LOCAL_TASK_UTILS_MODULE = "harness_local_utils"
LOCAL_TASK_UTILS = '''
def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]
'''

LOCAL_TASK_YAML = """
task: {task}
dataset_path: parquet
dataset_kwargs:
  data_files:
    test: {parquet}
test_split: test
output_type: generate_until
doc_to_visual: !function {utils}.doc_to_visual
doc_to_text: !function {utils}.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 4
  until: ["\\n", "."]
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
metadata:
  version: {version}
"""


__getattr__ = names_moved_from(__name__)  # family_of & co., by their home before they moved
