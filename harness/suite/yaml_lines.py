"""Reading a suite file into a YAML node tree that remembers where every value was written.

``_read_text`` reads the file (size, encoding, links checked first); ``_parse`` composes the node
tree, refusing aliases, merge keys, duplicate keys and absurd nesting, and constructs the data;
``_locate`` maps a validation error's location (``("search", "inter", "eta")``) back to the line
the user wrote it on. ``_show`` writes a value back as the user wrote it in YAML, for messages.
Nothing here knows the suite's schema.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# Limits that keep reading a hostile file cheap; real suites are far inside them.
MAX_SUITE_BYTES = 1024 * 1024  # a suite is a page of YAML; checked before reading
MAX_DEPTH = 32  # mappings and lists inside each other; a suite uses about 4

# libyaml when PyYAML was built with it (the wheels are): ~10x faster than pure Python
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML, short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        from harness.paths import safe_text

        text = value if len(value) <= 60 else value[:57] + "..."
        return safe_text(json.dumps(text, ensure_ascii=False))
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def _read_text(path: Path, label: str) -> tuple[str, str | None]:
    try:
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "", (f"{label}: a loop of symbolic links (it resolves to itself, never to a "
                            "file); point the link at the suite file")
            if exc.errno == errno.ENOENT and path.is_symlink():
                return "", f"{label}: a symbolic link to a file that does not exist"
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                return "", f"{label}: cannot read: {exc.strerror or exc}"
        if not path.exists():
            return "", f"{label}: file not found"
        if not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            return "", f"{label}: not a file ({kind})"
        size = path.stat().st_size
        if size > MAX_SUITE_BYTES:
            return "", (
                f"{label}: file is {size:,} bytes, over the {MAX_SUITE_BYTES:,}-byte "
                f"({MAX_SUITE_BYTES // 1024 // 1024} MiB) limit for a suite"
            )
        with path.open("rb") as f:
            raw = f.read(MAX_SUITE_BYTES + 1)  # the file may have grown since stat()
    except OSError as exc:
        return "", f"{label}: cannot read: {exc.strerror or exc}"
    if len(raw) > MAX_SUITE_BYTES:
        return "", f"{label}: file is over the {MAX_SUITE_BYTES:,}-byte limit for a suite"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return "", (
            f"{label}:{line}: not UTF-8: invalid byte 0x{raw[exc.start]:02x} at byte offset "
            f"{exc.start}; save the file as UTF-8"
        )
    return text.removeprefix("\ufeff"), None


def _parse(text: str, label: str, loader_class: type = _Loader) -> tuple[Node | None, Any, list[tuple[int, str]]]:
    """Compose the node tree (for line numbers), check it, and construct the data from it, with
    ``loader_class`` (libyaml's or PyYAML's pure-Python safe loader: the same answers).

    Returns (root, data, problems); root is None when nothing more can be checked.
    """
    def fail(line: int, message: str):
        return None, None, [(line, message)]

    try:
        # First a pass over the event stream, stopping at the first alias (composing a
        # billion-laughs tree is already the attack) or at absurd nesting (PyYAML's scanner is
        # quadratic in flow depth and its composer recursive).
        depth = 0
        for event in yaml.parse(text, Loader=loader_class):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1
                return fail(line, f"{label}:{line}: YAML aliases (*{event.anchor}) are not "
                                  "supported in a suite; write the value out")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1
                    return fail(line, f"{label}:{line}: the YAML nests deeper than {MAX_DEPTH} "
                                      "levels; a suite needs a handful")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        loader = loader_class(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return fail(0, f"{label}: the file is empty; a suite needs at least: "
                               "name, zoo, alignment, targets")
            if not isinstance(root, MappingNode):
                line = root.start_mark.line + 1
                kind = (
                    "a list" if isinstance(root, SequenceNode) else f"the value {_show(root.value)}"
                )
                return fail(line, f"{label}:{line}: the top level must be a mapping of suite "
                                  f"fields (name, zoo, alignment, targets, ...), got {kind}")
            # before construction, which flattens merge keys and drops duplicate keys
            problems = _check_tree(root, label)
            data = loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        problem = exc.problem or str(exc)
        context = f" ({exc.context})" if exc.context and exc.context != problem else ""
        if "maximum nesting depth" in problem:  # libyaml >= 0.2.6 stops absurd nesting itself
            line = mark.line + 1 if mark else 0
            return fail(line, f"{label}:{line}: the YAML nests deeper than {MAX_DEPTH} levels; "
                              "a suite needs a handful")
        if problem.startswith("but found another document"):
            problem, context = "a suite is a single YAML document, but this file has another", ""
        elif mark and _char_at(text, mark.line, mark.column) == "\t":
            context = " (a tab: indent with spaces)"
        return fail(mark.line + 1 if mark else 0, f"{where}: invalid YAML: {problem}{context}")
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        return fail(line, f"{label}:{line}: invalid YAML: unacceptable character "
                          f"#x{exc.character:04x} at character offset {exc.position}")
    except yaml.YAMLError as exc:
        return fail(0, f"{label}: invalid YAML: {exc}")
    return root, data, problems


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line + 1)
    return lines[line][column : column + 1] if line < len(lines) else ""


def _check_tree(root: Node, label: str) -> list[tuple[int, str]]:
    """Duplicate keys and merge keys, which construction would silently resolve."""
    problems: list[tuple[int, str]] = []

    def walk(node: Node, path: str) -> None:
        if isinstance(node, MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, ScalarNode) else "<complex key>"
                line = key.start_mark.line + 1
                if key.tag == "tag:yaml.org,2002:merge":
                    problems.append((line, (f"{label}:{line} {path or '(top level)'}: YAML merge "
                                           "keys (<<) are not supported in a suite; write the "
                                           "keys out")))
                    continue
                if name in first:
                    problems.append((line, (f"{label}:{line} {_join(path, name)}: duplicate key "
                                           f"{name!r} (first at line {first[name]})")))
                else:
                    first[name] = line
                walk(value, _join(path, name))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    walk(root, "")
    return problems


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _locate(root: Node, loc: tuple) -> int:
    """The 1-based line of the node at ``loc``.

    A mapping entry is located at its key (where the user wrote it); a list item at the item.
    When the path stops early (a missing field) the answer is the line of the last node found,
    i.e. the key that holds the parent mapping.
    """
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, MappingNode):
            index = getattr(node, "_harness_keys", None)
            if index is None:  # built once per mapping: locating every error stays linear
                index = {}
                for key, value in node.value:
                    if isinstance(key, ScalarNode):
                        index.setdefault(key.value, (value, key.start_mark.line + 1))
                node._harness_keys = index
            if str(part) not in index:
                part = _yaml_spelling(part, index)
            if str(part) not in index:
                return line
            node, line = index[str(part)]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _yaml_spelling(part: Any, index: dict) -> Any:
    """The key as the suite wrote it when YAML constructed it into something else (``null:``,
    ``~:`` -> None, ``yes:`` -> True, ``0x1:`` -> 1), so an error about it points at its line."""
    import yaml

    for written in index:
        try:
            value = yaml.safe_load(written) if written else None
        except yaml.YAMLError:
            continue
        if not isinstance(value, (str, dict, list)) and str(part) in (str(value), _key_name(value)):
            return written
    return part


def _key_name(key: Any) -> str:
    """A mapping key as YAML writes it (``null``, ``true``), for keys YAML did not keep as text."""
    spelled = {"None": "null", "True": "true", "False": "false"}
    return spelled.get(str(key), str(key)) if not isinstance(key, str) or key in spelled else key
