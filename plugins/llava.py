"""The ``llava`` dataset family: LLaVA-format json (``[{id, image, conversations}]``) and an image
folder, by path: alignment data (``llava:/data/llava_v1_5_mix665k.json``), and items with images
and answers for clustering features and conductance probes. It has no test split, so it is not a
target: score on the tasks of the ``lmms`` family instead."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from harness.datasets import (
    IMAGE_TOKEN,
    Dataset,
    DatasetError,
    DatasetFamily,
    VisionTextItem,
    content_hash,
    subset,
)


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


class LlavaFamily(DatasetFamily):
    """``llava:<json>[?images=FOLDER&outside=1]``: alignment data, subsampled (seeded) to a
    suite's ``samples``; its items with images and answers are its ``train`` split (for
    features and probes)."""

    alignment_data = True
    splits = ("train",)

    def alignment(self, name: str, *, samples: int | None, seed: int) -> Dataset:
        dataset = load_llava(name)
        if samples and samples < len(dataset):
            dataset = subset(dataset, samples / len(dataset), seed)
        return dataset

    def split(self, name: str, split: str, *, n: int | None, seed: int) -> Dataset:
        if split != "train":
            raise DatasetError(f"llava:{name}: a LLaVA json has no {split!r} split (it is all train)")
        return load_llava(name)  # read whole: the caller takes the items it needs

    def check(self, name: str) -> None:
        """The data read as a run would (json, entries, every image's presence) plus a sample of
        image headers, so a bad file fails validation instead of a started run. A file that is
        not here (a relative path written for another machine) is left to :meth:`preflight`."""
        path, _ = llava_ref(name)
        if path.is_file():
            load_llava(name, check_images=256)

    def preflight(self, name: str) -> None:
        path, _ = llava_ref(name)
        if not path.is_file():
            raise DatasetError(f"LLaVA json {str(path)!r} does not exist")

