"""What a bad suite raises, and the rewriter that turns a pydantic error into one line.

Every problem becomes ``<file>:<line> <yaml.path>: <message>``: the line from the YAML node tree
(:func:`harness.suite.yaml_lines._locate`), the message in the suite's own words (allowed keys
with "did you mean", bounds, expected types) instead of pydantic's.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from yaml.nodes import Node

from harness.errors import BadInput
from harness.suite.yaml_lines import _join, _key_name, _locate, _show


class SuiteError(BadInput):
    """A suite file is unusable; ``errors`` holds one ``<file>:<line> <path>: <message>`` each."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class _Located(ValueError):
    """A validation error that belongs to a part of the value (``sub_loc``), not the whole field."""

    def __init__(self, message: str, sub_loc: tuple = ()):
        super().__init__(message)
        self.sub_loc = sub_loc


def _model_at(loc: tuple, top: type[BaseModel]) -> type[BaseModel] | None:
    """The model class whose field ``loc`` (from the top-level model ``top``) names (to list
    allowed keys for an unknown one)."""
    tp: Any = top
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            if get_origin(tp) is list:
                tp = get_args(tp)[0]
                continue
            return None
        if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or type(tp).__name__ == "UnionType":
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "dict": "a mapping",
}


def _message(err: dict, top: type[BaseModel]) -> tuple[str, tuple]:
    """A human message for one pydantic error from validating ``top``, and any extra location it
    points into."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    loc = tuple(err["loc"])
    if kind == "missing":
        return "required field is missing", ()
    if kind in ("extra_forbidden", "invalid_key"):  # invalid_key: not a string (`1:`, `yes:`)
        model = _model_at(loc[:-1], top)
        allowed = sorted(model.model_fields) if model else []
        key = loc[-1]
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        return f"unknown key {key!r}{hint} allowed: {', '.join(allowed)}", ()
    if kind == "value_error":
        exc = ctx.get("error")
        sub = getattr(exc, "sub_loc", ())
        return str(exc), sub
    if kind == "model_type" or kind == "model_attributes_type":
        model = _model_at(loc, top)
        keys = f" with keys {', '.join(model.model_fields)}" if model else ""
        return f"expected a mapping{keys}; got {_show(value)}", ()
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"expected one of {', '.join(options)}; got {_show(value)}{hint}", ()
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}, got {_show(value)}", ()
    if kind == "too_short":
        if not value:
            return "must not be empty", ()
        return f"needs at least {ctx.get('min_length')} item(s)", ()
    if kind == "too_long":
        return f"lists too many items (at most {ctx.get('max_length')})", ()
    if kind == "string_too_short":
        return "must not be empty", ()
    if kind == "string_too_long":
        return f"is too long ({len(value)} characters, at most {ctx.get('max_length')})", ()
    if kind == "int_from_float":
        return f"expected an integer, got {_show(value)}", ()
    if kind == "finite_number":
        return f"expected a finite number, got {_show(value)}", ()
    for suffix in ("_type", "_parsing"):
        if kind.endswith(suffix) and kind[: -len(suffix)] in _TYPE_NAMES:
            hint = ""
            if kind == "string_type" and isinstance(value, dict) and len(value) == 1:
                # `hf:` or `a: b` inside a flow list is a one-key mapping in YAML
                hint = "; quote values that end in ':' or contain ': '"
            return f"expected {_TYPE_NAMES[kind[: -len(suffix)]]}, got {_show(value)}{hint}", ()
    return err["msg"], ()


def _format_error(err: dict, root: Node, label: str, top: type[BaseModel]) -> tuple[int, str]:
    """``(line, "<label>:<line> <path>: <message>")`` for one pydantic error from validating
    ``top`` (the suite) against the data of the YAML tree ``root``."""
    if err["type"] in ("invalid_key", "extra_forbidden") and err["loc"]:  # `null:`, `yes:` keys
        err = {**err, "loc": (*tuple(err["loc"])[:-1], _key_name(err["loc"][-1]))}
    message, sub = _message(err, top)
    loc = tuple(err["loc"]) + tuple(sub)
    if err["type"] == "invalid_key":  # a mapping key, not a list index
        loc = loc[:-1] + (str(loc[-1]),)
    line = _locate(root, loc)
    path = ""
    for part in loc:
        path = _join(path, part)
    return line, (f"{label}:{line} {path}: {message}" if path else f"{label}:{line}: {message}")
