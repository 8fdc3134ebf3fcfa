"""Vision-text datasets: one item type and one dataset type shared by every source.

An item is one image (possibly none) with a LLaVA-style conversation; target-task items also
carry the gold short ``answer`` and the ``choices`` it is drawn from, so chance level is known.
Sources: the generated shapes world (:mod:`harness.shapes`) and LLaVA-format json + image folder
(:func:`load_llava`). Every dataset has a ``fingerprint`` (a content hash) that keys cached
trials and embeddings; :func:`subset` draws nested, seeded subsets for the sample-ratio rungs.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from harness.errors import BadInput

IMAGE_TOKEN = "<image>"


class DatasetError(BadInput, ValueError):
    """Malformed dataset input: the message names the file and the offending entry (a harness
    error: the CLI prints it as one line and exits 2)."""


def content_hash(obj: Any) -> str:
    """Stable short hash (16 hex digits of sha256) of a JSON-serialisable object."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


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
# LLaVA-format json + image folder


def _check_entry(entry: Any) -> str:
    """Validate one LLaVA entry; returns the problem or ``""``."""
    if not isinstance(entry, dict):
        return f"is a {type(entry).__name__}, expected an object with id, image, conversations"
    if "id" not in entry:
        return "has no 'id'"
    if not isinstance(entry["id"], (str, int)):
        return f"has an 'id' of type {type(entry['id']).__name__}, expected a string"
    image = entry.get("image")
    if image is not None and not isinstance(image, str):
        return (
            f"has 'image' of type {type(image).__name__}; only one image path (a string) per entry "
            "is supported"
        )
    conv = entry.get("conversations")
    if not isinstance(conv, list) or not conv:
        return "has no 'conversations' list (or it is empty)"
    for t, turn in enumerate(conv):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return f"conversation turn {t} is not an object with a string 'value'"
        expected = "human" if t % 2 == 0 else "gpt"
        if turn.get("from") != expected:
            return f"conversation turn {t} is from {turn.get('from')!r}, expected {expected!r} (turns alternate human, gpt)"
    if len(conv) % 2:
        return "ends with a human turn that has no gpt reply"
    tokens = sum(turn["value"].count(IMAGE_TOKEN) for turn in conv)
    if image is not None and tokens != 1:
        return f"has an image but {tokens} '{IMAGE_TOKEN}' tokens in its conversation (expected exactly 1)"
    if image is None and tokens:
        return f"has no image but its conversation contains '{IMAGE_TOKEN}'"
    return ""


def _open_rgb(path: Path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def llava_ref(path: str | os.PathLike) -> tuple[Path, dict]:
    """(json path, options) of ``<path>[?images=FOLDER&outside=1]``: the options ride on the
    ref when the path without them is the file."""
    text = str(path)
    base, sep, query = text.rpartition("?")
    if not sep or Path(text).is_file():
        return Path(text), {}
    options = {}
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key not in ("images", "outside"):
            raise DatasetError(f"llava:{text}: unknown option {key!r} (options: images=FOLDER, outside=1)")
        options[key] = value
    return Path(base), options


def _check_image_headers(path: Path, folder: Path, items: list, n: int) -> None:
    """Open the headers of up to ``n`` images, evenly spaced over ``items``; a file PIL cannot
    identify is a :class:`DatasetError` naming the entry."""
    from PIL import Image, UnidentifiedImageError

    if not items:
        return
    step = max(1, len(items) // n)
    for item in items[::step][:n]:
        try:
            with Image.open(folder / item.image_path) as img:
                img.size  # noqa: B018 - the header only
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"{path}: entry id {item.id!r}: image {item.image_path!r} cannot be "
                               f"read as an image ({type(exc).__name__})") from None


def load_llava(
    path: str | os.PathLike, image_folder: str | os.PathLike | None = None, *,
    allow_outside: bool | None = None, check_images: int = 0, **_: Any
) -> Dataset:
    """Read LLaVA-format data: a json list of ``{"id", "image", "conversations"}``.

    ``image`` paths are relative to ``image_folder`` (default: the json's folder; the ref
    option ``?images=FOLDER``) and must stay inside it (no absolute path, no ``..`` out of it)
    unless ``allow_outside`` (``?outside=1``). Entries without ``image`` are text-only.
    Optional ``answer``/``task``/``choices`` keys (written by :meth:`Dataset.to_disk`) are
    kept. Raises :class:`DatasetError` naming the file and the entry index for malformed
    entries, missing images and an empty list; ``check_images`` > 0 also opens that many image
    headers, evenly spaced (a cheap check that the files are images: suite validation does it).

    The fingerprint hashes the json bytes and the list of image paths with their sizes.
    """
    path, options = llava_ref(path)
    if image_folder is None and options.get("images"):
        image_folder = options["images"]
    if allow_outside is None:
        allow_outside = options.get("outside", "") in ("1", "true", "yes")
    if not path.is_file():
        raise DatasetError(f"LLaVA json {str(path)!r} does not exist")
    folder = Path(image_folder) if image_folder is not None else path.parent
    if not folder.is_dir():
        raise DatasetError(f"image folder {str(folder)!r} for {str(path)!r} does not exist")
    inside = folder.resolve()
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid json: {exc}") from None
    if not isinstance(data, list):
        raise DatasetError(
            f"{path}: expected a json list of entries, found a {type(data).__name__}"
        )
    if not data:
        raise DatasetError(f"{path}: the list of entries is empty: nothing to train or score on")

    items: list[VisionTextItem] = []
    image_list: list[tuple[str, int]] = []
    for i, entry in enumerate(data):
        problem = _check_entry(entry)
        if problem:
            ident = f" (id {entry['id']!r})" if isinstance(entry, dict) and "id" in entry else ""
            raise DatasetError(f"{path}: entry {i}{ident} {problem}")
        rel = entry.get("image")
        loader = None
        if rel is not None:
            full = folder / rel
            if not allow_outside and (Path(rel).is_absolute() or not full.resolve().is_relative_to(inside)):
                raise DatasetError(
                    f"{path}: entry {i} (id {entry['id']!r}) image {rel!r} is outside the image folder "
                    f"{str(folder)!r}; image paths are relative to it (allow others with the ref "
                    f"option llava:{path}?outside=1)")
            try:
                size = full.stat().st_size
            except OSError:
                raise DatasetError(
                    f"{path}: entry {i} (id {entry['id']!r}) image {rel!r} not found in {str(folder)!r}"
                ) from None
            image_list.append((rel, size))
            loader = functools.partial(_open_rgb, full)
        choices = entry.get("choices")
        answer = entry.get("answer")
        if answer is None:
            answer = entry["conversations"][1]["value"]
        items.append(
            VisionTextItem(
                id=str(entry["id"]),
                conversations=tuple(dict(t) for t in entry["conversations"]),
                task=str(entry.get("task") or ""),
                answer=str(answer),
                choices=tuple(str(c) for c in choices) if isinstance(choices, list) else None,
                image_path=rel,
                load_image=loader,
                meta={
                    k: v
                    for k, v in entry.items()
                    if k not in ("id", "image", "conversations", "task", "answer", "choices")
                },
            )
        )

    if check_images > 0:
        _check_image_headers(path, folder, [it for it in items if it.image_path is not None], check_images)
    fingerprint = content_hash({"json": hashlib.sha256(raw).hexdigest(), "images": image_list})
    tasks = {it.task for it in items}
    task = (
        next(iter(tasks))
        if len(tasks) == 1 and "" not in tasks and all(it.choices for it in items)
        else None
    )
    choices = sorted({c for it in items for c in (it.choices or ())}) if task else None
    return Dataset(
        f"llava:{path}",
        len(items),
        items.__getitem__,
        fingerprint,
        task=task,
        choices=choices,
        split=None,
        meta={"json": str(path), "image_folder": str(folder)},
    )


def load_lmms_task(name: str, **options: Any):
    """An lmms-eval target task: a built-in task name or a folder / YAML path of local tasks.

    lmms-eval reads its own data, so this returns the ``harness.scoring.Target`` that the
    scorer runs; ``dataset=`` overrides a built-in task's data with a local parquet file.
    """
    from harness.scoring import Target

    return Target(f"lmms:{name}", limit=options.get("limit"), metric=options.get("metric"),
                  dataset=options.get("dataset"))
