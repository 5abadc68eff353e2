"""Edits of a station file's text that change only what the integrator changed: the recipe editor
sends every recipe, and only the keys whose values differ are rewritten — in place, in the style
they were written (flow lists stay flow, quotes stay quotes). Untouched recipes and checks, comments
and everything outside ``recipes:`` stay byte for byte; a default the file did not spell out is not
written. Where the file's shape does not allow a targeted edit (reordered checks, flow mappings),
the recipe or the whole block is written anew; the result is always checked to read back as sent."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode

from .recipes import CountCheck, PointCheck, QACheck, Recipe

_CHECKS: dict[str, type[BaseModel]] = {"point": PointCheck, "count": CountCheck, "qa": QACheck}
_NONE = object()


class EditError(ValueError):
    """The file's text cannot be edited this way (not YAML, no top-level mapping); one line."""


class _Dumper(yaml.SafeDumper):
    """Block style with indented sequences (as the examples are written); a point [x, y] on one line."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


def _represent_list(dumper: yaml.SafeDumper, data: list):
    point = len(data) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=point)


_Dumper.add_representer(list, _represent_list)


def dump_recipes(recipes: list[dict]) -> str:
    """The ``recipes:`` block for ``recipes``."""
    return yaml.dump(
        {"recipes": recipes}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120
    )


def _default(model: type[BaseModel] | None, key: str) -> Any:
    field = model.model_fields.get(key) if model is not None else None
    if field is None or field.default is PydanticUndefined:
        return _NONE
    return field.default


def _norm(value: Any) -> Any:
    """A value for comparison: tuples are lists, 1 == 1.0, a bool stays a bool."""
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _model_of(data: Any, level: str) -> type[BaseModel] | None:
    if level == "recipe":
        return Recipe
    kind = data.get("kind") if isinstance(data, dict) else None
    return _CHECKS.get(kind) if isinstance(kind, str) else None


def _effective(data: Any, level: str) -> Any:
    """``data`` without the keys whose value is the default (what the settings mean, not their spelling)."""
    if not isinstance(data, dict):
        return _norm(data)
    model = _model_of(data, level)
    out = {}
    for key, value in data.items():
        if key == "checks" and level == "recipe" and isinstance(value, list):
            out[key] = [_effective(c, "check") for c in value]
        elif _default(model, key) is _NONE or _norm(value) != _norm(_default(model, key)):
            out[key] = _norm(value)
    return out


def _same(a: Any, b: Any, level: str) -> bool:
    return json.dumps(_effective(a, level), sort_keys=True) == json.dumps(_effective(b, level), sort_keys=True)


class _Text:
    """The file's text and the replacements planned on it (character offsets, applied back to front)."""

    def __init__(self, text: str):
        self.text = text
        self.edits: list[tuple[int, int, str]] = []

    def line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def line_end(self, index: int) -> int:
        """Just past the newline of the line holding ``index - 1`` (the last character of a value)."""
        end = self.text.find("\n", max(index - 1, 0))
        return len(self.text) if end < 0 else end + 1

    def replace(self, start: int, end: int, new: str) -> None:
        self.edits.append((start, end, new))

    def result(self) -> str:
        out, last = self.text, None
        order = sorted(range(len(self.edits)), key=lambda i: (self.edits[i][0], self.edits[i][1], i), reverse=True)
        for start, end, new in (self.edits[i] for i in order):  # at one offset, what was planned first comes first
            if last is not None and end > last:
                raise _Unsafe("overlapping edits")
            out = out[:start] + new + out[end:]
            last = start
        return out


class _Unsafe(Exception):
    """This targeted edit cannot be made safely: write the enclosing part anew."""


def _content_end(node: Node) -> int:
    """Offset just past a node's last character (a block collection's end mark lies at the next token)."""
    if not isinstance(node, CollectionNode) or node.flow_style or not node.value:
        return node.end_mark.index
    last = node.value[-1]
    return _content_end(last[1] if isinstance(node, MappingNode) else last)


def _flow(value: Any, like: Node | None = None) -> str:
    """``value`` on one line; a string keeps the quotes of the value it replaces."""
    style = like.style if isinstance(like, ScalarNode) else None
    if isinstance(value, str) and style == '"':
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and style == "'":
        return "'" + value.replace("'", "''") + "'"
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1 << 30, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _block(value: Any, indent: int) -> str:
    """A list item (``- …``) or mapping in block style, indented to ``indent`` columns, ending in a newline."""
    text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
    return "".join(" " * indent + line for line in text.splitlines(keepends=True))


def _written(data: dict, level: str) -> dict:
    """A new recipe or check as it is written: defaults left out."""
    model = _model_of(data, level)
    out = {}
    for key, value in data.items():
        if key == "checks" and level == "recipe" and isinstance(value, list):
            out[key] = [_written(c, "check") if isinstance(c, dict) else c for c in value]
        elif _default(model, key) is _NONE or _norm(value) != _norm(_default(model, key)):
            out[key] = value
    return out


def _dash_column(t: _Text, item: Node) -> int:
    """Column of the ``-`` that starts a block sequence's item."""
    start = t.line_start(item.start_mark.index)
    head = t.text[start : item.start_mark.index]
    if head.strip() != "-":
        raise _Unsafe("a list item that does not start its line")
    return head.index("-")


def _item_span(t: _Text, item: Node) -> tuple[int, int]:
    _dash_column(t, item)
    return t.line_start(item.start_mark.index), t.line_end(_content_end(item))


def _kept(old: dict, new: dict, level: str) -> dict:
    """``new`` as written over ``old``: a default is written only where the file spelled it out."""
    model = _model_of(new, level)
    return {
        k: v for k, v in new.items() if k in old or _default(model, k) is _NONE or _norm(v) != _norm(_default(model, k))
    }


def _edit_mapping(t: _Text, node: Node, old: dict, new: dict, level: str) -> None:
    """Rewrite the keys of a block mapping whose values changed; add and remove keys by line. A flow
    mapping ({name: …, kind: …}) is written anew on its line, in flow style."""
    if not isinstance(node, MappingNode) or not isinstance(new, dict) or not isinstance(old, dict):
        raise _Unsafe("not a mapping")
    if node.flow_style:
        t.replace(node.start_mark.index, node.end_mark.index, _flow(_kept(old, new, level)))
        return
    model = _model_of(new, level)
    keys = {k.value: (k, v) for k, v in node.value if isinstance(k, ScalarNode)}
    indent = node.value[0][0].start_mark.column
    for key, value in new.items():
        if key not in keys:
            if _default(model, key) is not _NONE and _norm(value) == _norm(_default(model, key)):
                continue  # a default the file does not spell out stays unwritten
            at = t.line_end(_content_end(node))
            t.replace(at, at, " " * indent + f"{key}: {_flow(value)}\n")
            continue
        key_node, value_node = keys[key]
        if key == "checks" and level == "recipe":
            _edit_checks(t, value_node, old.get("checks"), value)
        elif _norm(old.get(key)) != _norm(value):
            if isinstance(value_node, ScalarNode) or value_node.flow_style:
                t.replace(value_node.start_mark.index, value_node.end_mark.index, _flow(value, like=value_node))
            else:  # a block list or mapping: the key and its lines anew
                start, end = t.line_start(key_node.start_mark.index), t.line_end(_content_end(value_node))
                t.replace(start, end, _block({key: value}, indent))
    for key, (key_node, value_node) in keys.items():
        if key in new or (_default(model, key) is not _NONE and _norm(old.get(key)) == _norm(_default(model, key))):
            continue  # still there, or spelled-out default the editor left out: the same setting
        start = t.line_start(key_node.start_mark.index)
        if t.text[start : key_node.start_mark.index].strip():
            raise _Unsafe("the first key of a list item")
        t.replace(start, t.line_end(_content_end(value_node)), "")


def _edit_items(t: _Text, node: Node, old: list, new: list, key: str, level: str) -> None:
    """A block list of recipes (by ``number``) or checks (by ``name``): untouched items stay as they
    are, changed ones are edited, new ones are added after their predecessor, removed ones deleted."""
    if not isinstance(node, SequenceNode) or node.flow_style or not node.value or not isinstance(old, list):
        raise _Unsafe("not a block list")
    ids = [o.get(key) if isinstance(o, dict) else None for o in old]
    new_ids = [n.get(key) if isinstance(n, dict) else None for n in new]
    if None in ids or None in new_ids or len(set(ids)) < len(ids) or len(set(new_ids)) < len(new_ids):
        raise _Unsafe("items without a unique " + key)
    kept = [i for i in new_ids if i in ids]
    if kept != [i for i in ids if i in new_ids]:
        raise _Unsafe("items reordered")
    column = _dash_column(t, node.value[0])
    after = t.line_start(node.value[0].start_mark.index)  # where a new first item goes
    for item_id, data in zip(new_ids, new, strict=True):
        if item_id in ids:
            index = ids.index(item_id)
            span = _item_span(t, node.value[index])
            if not _same(old[index], data, level):
                planned = len(t.edits)
                try:
                    _edit_mapping(t, node.value[index], old[index], data, level)
                except _Unsafe:  # this item anew, the others as they are
                    del t.edits[planned:]
                    t.replace(*span, _block([_kept(old[index], data, level)], column))
            after = span[1]
        else:
            t.replace(after, after, _block([_written(data, level)], column))
    for index, item_id in enumerate(ids):
        if item_id not in new_ids:
            t.replace(*_item_span(t, node.value[index]), "")


def _edit_checks(t: _Text, node: Node, old: Any, new: Any) -> None:
    if not isinstance(new, list):
        raise _Unsafe("checks is not a list")
    _edit_items(t, node, old, new, "name", "check")


def _recipes_lines(text: str, root: Node) -> tuple[int, int, Node] | None:
    """0-based [first, end) lines of the top-level ``recipes:`` key and its value, and the value."""
    for key, value in root.value:
        if getattr(key, "value", None) == "recipes":
            end_mark = value.end_mark
            end = end_mark.line if end_mark.column == 0 else end_mark.line + 1
            lines = text.splitlines()
            while end > key.start_mark.line + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
                end -= 1  # blank lines and column-0 comments after the block belong to what follows
            return key.start_mark.line, end, value
    return None


def _whole_block(text: str, span: tuple[int, int] | None, recipes: list) -> str:
    block = dump_recipes([_written(r, "recipe") if isinstance(r, dict) else r for r in recipes])
    lines = text.splitlines(keepends=True)
    if span is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        return "".join(lines) + block
    first, end = span
    return "".join(lines[:first]) + block + "".join(lines[end:])


def replace_recipes(text: str, recipes: list[dict]) -> str:
    """``text`` with its top-level ``recipes:`` changed to ``recipes``, touching only what differs."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        old = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise EditError(f"the file is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(root, MappingNode):
        raise EditError("the file is not a mapping of sections")
    found = _recipes_lines(text, root)
    if found is None:
        return _whole_block(text, None, recipes)
    first, end, node = found
    t = _Text(text)
    try:
        _edit_items(t, node, old.get("recipes"), recipes, "number", "recipe")
        edited = t.result()
        again = yaml.safe_load(edited).get("recipes")
        if len(again) == len(recipes) and all(_same(a, b, "recipe") for a, b in zip(again, recipes, strict=True)):
            return edited
    except (_Unsafe, yaml.YAMLError, AttributeError, TypeError):
        pass
    return _whole_block(text, (first, end), recipes)
