"""Content keys: the identity of a piece of work, so that the same work is never done twice.

A trial, an embedding or a similarity is looked up by a key derived from *what it is* (its
inputs), not from when or by whom it was computed. `content_key` hashes a canonical JSON form of
a plain Python value:

- dict keys sorted, no whitespace, UTF-8;
- floats written with Python's shortest round-trip repr (stable across platforms), and a float
  that is a whole number is written as that integer, so `sample_ratio: 1` and `1.0` are the same
  trial; `-0.0` is `0`;
- tuples are lists; sets are sorted lists; `Path` is its POSIX string; numpy scalars and arrays,
  enums, dataclasses and pydantic models are reduced to their plain values;
- NaN and infinity are refused: a key built from them is a bug upstream, not a cache entry.

The builders below (`trial_key`, `embedding_key`, `similarity_key`) fix the field names of each
key; change one and every stored result of that kind stops matching, so treat them like a schema.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from pathlib import PurePath
from typing import Any

__all__ = ["canonical_json", "content_key", "embedding_key", "similarity_key", "trial_key"]

# Whole floats above this are not exactly representable as ints in a double; keep them as floats.
_MAX_EXACT_INT = 2**53


def _plain(obj: Any, where: str) -> Any:
    """Reduce obj to JSON types (dict with str keys, list, str, int, float, bool, None)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"content_key: {where} is {obj!r}; NaN and infinity cannot be part of a key")
        if obj == 0.0:
            return 0
        if obj.is_integer() and abs(obj) < _MAX_EXACT_INT:
            return int(obj)
        return obj
    if isinstance(obj, enum.Enum):
        return _plain(obj.value, where)
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, enum.Enum):
                k = k.value
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"content_key: {where} has a key of type {type(k).__name__}; use str keys")
            sk = str(k)
            if sk in out:
                raise ValueError(f"content_key: {where} has keys {k!r} and {sk!r} that collide as text")
            out[sk] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        items = [_plain(v, f"{where}{{}}") for v in obj]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj), where)
    if hasattr(obj, "model_dump") and callable(obj.model_dump):  # pydantic v2 models
        return _plain(obj.model_dump(mode="json"), where)
    # numpy without importing it: scalars have .item(), arrays have .tolist()
    if type(obj).__module__ == "numpy":
        if hasattr(obj, "tolist") and getattr(obj, "ndim", 0) > 0:
            return _plain(obj.tolist(), where)
        if hasattr(obj, "item"):
            return _plain(obj.item(), where)
    raise TypeError(
        f"content_key: {where} is a {type(obj).__module__}.{type(obj).__qualname__}, which has no "
        "canonical form; pass plain values (dict, list, str, int, float, bool, None)"
    )


def canonical_json(obj: Any) -> str:
    """The exact text that `content_key` hashes."""
    return json.dumps(
        _plain(obj, "value"), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def content_key(obj: Any, *, lenient: bool = False) -> str:
    """sha256 (64 hex chars) of the canonical JSON of obj: the one content-hash function.

    ``lenient``: the older form dataset, component and zoo-recipe fingerprints were made with
    (``harness.datasets.content_hash``, 16 hex of it): keys sorted, no spaces, ASCII, floats as
    Python writes them, any other type as ``str()``. Those fingerprints sit inside stored trial
    and embedding keys (and the shipped table), so that form is frozen; new keys use the
    canonical one, which refuses NaN and types without a canonical form."""
    if lenient:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def trial_key(
    *,
    encoder: str,
    llm: str,
    dataset: str,
    sample_ratio: float,
    train_config: Any,
    seed: int,
    continued_from: str | None = None,
) -> str:
    """Key of one training trial.

    encoder, llm and dataset are *fingerprints* (content of the weights/config and of the
    alignment data), not refs, so a renamed alias still hits and a changed checkpoint misses.
    ``continued_from``: the key of the trial a continued one resumed (its checkpoint and
    optimiser state, trained on the extra samples only); a fresh trial has none, so its key is
    what it always was.
    """
    fields = {
        "kind": "trial",
        "encoder": encoder,
        "llm": llm,
        "dataset": dataset,
        "sample_ratio": sample_ratio,
        "train_config": train_config,
        "seed": seed,
    }
    if continued_from is not None:
        fields["continued_from"] = continued_from
    return content_key(fields)


def embedding_key(*, component: str, dataset: str, layer: str | int, sample_set: Any) -> str:
    """Key of the features of one component (fingerprint) on one sample set of a dataset."""
    return content_key(
        {"kind": "embedding", "component": component, "dataset": dataset, "layer": layer, "samples": sample_set}
    )


def similarity_key(*, metric: str, a: str, b: str, config: Any = None, symmetric: bool = True,
                   producer: str | None = None) -> str:
    """Key of metric(a, b) where a and b are embedding keys.

    With symmetric=True (CKA, GW), (a, b) and (b, a) share one key. ``producer``: a plugin
    metric's ``distribution==version`` (or its declared cache_version), so a new release of the
    metric computes its values again; None for built-in metrics.
    """
    if symmetric and b < a:
        a, b = b, a
    fields = {"kind": "similarity", "metric": metric, "a": a, "b": b, "config": config}
    if producer is not None:
        fields["producer"] = producer
    return content_key(fields)
