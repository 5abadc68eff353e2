"""Edits of a station file's text that keep what the integrator wrote around them: the recipe editor
replaces the top-level ``recipes:`` block and nothing else (comments and spelling elsewhere stay)."""

from __future__ import annotations

import yaml


class EditError(ValueError):
    """The file's text cannot be edited this way (not YAML, no top-level mapping); one line."""


def _recipes_lines(text: str) -> tuple[int, int] | None:
    """0-based [first, end) lines of the top-level ``recipes:`` key and its value, or None."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise EditError(f"the file is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(root, yaml.MappingNode):
        raise EditError("the file is not a mapping of sections")
    for key, value in root.value:
        if getattr(key, "value", None) == "recipes":
            end_mark = value.end_mark
            end = end_mark.line if end_mark.column == 0 else end_mark.line + 1
            lines = text.splitlines()
            while end > key.start_mark.line + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
                end -= 1  # blank lines and column-0 comments after the block belong to what follows
            return key.start_mark.line, end
    return None


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


def replace_recipes(text: str, recipes: list[dict]) -> str:
    """``text`` with its top-level ``recipes:`` block replaced by ``recipes`` (appended when absent)."""
    block = dump_recipes(recipes)
    span = _recipes_lines(text)
    lines = text.splitlines(keepends=True)
    if span is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        return "".join(lines) + block
    first, end = span
    return "".join(lines[:first]) + block + "".join(lines[end:])
