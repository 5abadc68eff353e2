"""Reading station.yaml without surprises: the size is bounded before anything is parsed, the bytes
must be UTF-8, and the YAML loader refuses what PyYAML would silently accept or crash on —
duplicate keys (PyYAML keeps the last), nesting deep enough to exhaust the stack, alias bombs and
cycles, integers too long to convert. Every refusal names the line and the key path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1 << 20  # a station file is a few kB; 1 MiB leaves room for comments
MAX_DEPTH = 32  # the deepest real key (recipes.N.checks.N.roi.N.N) is 7 levels down
MAX_NODES = 50_000  # values after aliases are expanded; a large station has a few thousand
MAX_INT_DIGITS = 40

Path_ = tuple[Any, ...]
MERGE_TAG = "tag:yaml.org,2002:merge"
INT_TAG = "tag:yaml.org,2002:int"


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based
    key: Path_  # () = the file as a whole
    message: str


class YamlProblems(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def key_text(key: Path_) -> str:
    return ".".join(str(p) for p in key) or "(top)"


class StationLoader(yaml.SafeLoader):
    """SafeLoader that tracks the key path while composing, bounds depth and node count there (before
    Python's recursion limit or the clock is reached), and marks construction errors with a line."""

    def __init__(self, text: str):
        super().__init__(text)
        self.key_path: list[Any] = []
        self.composed = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if isinstance(index, ScalarNode):
            self.key_path.append(index.value)
        elif isinstance(index, int):
            self.key_path.append(index)
        else:
            self.key_path.append(None)  # composing a key: it belongs to the parent's path
        try:
            self.composed += 1
            depth = sum(1 for p in self.key_path if p is not None)
            if depth > MAX_DEPTH or self.composed > MAX_NODES:
                what = (
                    f"nested more than {MAX_DEPTH} levels deep"
                    if depth > MAX_DEPTH
                    else f"more than {MAX_NODES:,} values"
                )
                raise _LimitError(what, self.peek_event().start_mark, self._path())
            return super().compose_node(parent, index)
        except yaml.YAMLError as err:
            if not hasattr(err, "key_path"):
                err.key_path = self._path()  # type: ignore[attr-defined]
            raise
        finally:
            self.key_path.pop()

    def _path(self) -> Path_:
        return tuple(p for p in self.key_path if p is not None)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except (ValueError, OverflowError, TypeError, ArithmeticError) as err:  # e.g. date 2024-13-45
            raise ConstructorError(None, None, f"cannot read this value: {err}", node.start_mark) from None


class _LimitError(yaml.MarkedYAMLError):
    def __init__(self, problem: str, mark: yaml.Mark, key_path: Path_):
        super().__init__(problem=problem, problem_mark=mark)
        self.key_path = key_path


# YAML 1.2 reads an unquoted 1e9 or 1.5e3 as a number; PyYAML (YAML 1.1) wants a dot and a signed
# exponent (1.5e+3) and would hand over a string, which the strict schema refuses as it refuses quotes.
StationLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_limited(path: Path) -> bytes:
    """The file's bytes; its size is checked before reading (and again while reading)."""
    size = path.stat().st_size
    if size <= MAX_BYTES:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        size = len(data)
    if size > MAX_BYTES:
        raise YamlProblems(
            [Problem(1, (), f"the file is {size:,} bytes; a station file may be at most {MAX_BYTES:,} bytes (1 MiB)")]
        )
    return data


def key_at_line(root: Node | None, line: int) -> Path_:
    """Best guess of the key path that covers 1-based ``line``: the last key starting on or before it."""
    path: list[Any] = []
    node = root
    for _ in range(MAX_DEPTH + 1):
        if isinstance(node, MappingNode):
            pairs = [(k, v) for k, v in node.value if k.start_mark.line < line]
            if not pairs:
                break
            key, node = pairs[-1]
            path.append(key.value if isinstance(key, ScalarNode) else "?")
        elif isinstance(node, SequenceNode):
            items = [(i, v) for i, v in enumerate(node.value) if v.start_mark.line < line]
            if not items:
                break
            i, node = items[-1]
            path.append(i)
        else:
            break
    return tuple(path)


def _key_of_mark(root: Node | None, mark: yaml.Mark) -> Path_ | None:
    """The key path of the value that starts at ``mark`` (where a construction error points)."""
    seen: set[int] = set()
    stack: list[tuple[Node, Path_]] = [(root, ())] if root is not None else []
    while stack:
        node, path = stack.pop()
        if node.start_mark.index == mark.index and node.start_mark.line == mark.line:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack += [(child, path + (key,)) for key, child in _children(node)]
    return None


def _guess_key(text: str, line: int) -> Path_:
    """The key path at ``line`` of a text that could not be read as it is (problem characters replaced)."""
    loader = StationLoader(text)
    try:
        return key_at_line(loader.get_single_node(), line)
    except (yaml.YAMLError, RecursionError):
        return ()
    finally:
        loader.dispose()


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        text = data.decode("utf-8", errors="replace")
        message = f"not UTF-8: byte 0x{data[err.start]:02x} at offset {err.start} (save the file as UTF-8)"
        raise YamlProblems([Problem(line, _guess_key(_printable(text), line), message)]) from None


def _printable(text: str) -> str:
    return "".join(c if yaml.reader.Reader.NON_PRINTABLE.match(c) is None else "?" for c in text)


def _check_tree(loader: StationLoader, root: Node) -> list[Problem]:
    """One walk over the composed nodes (each node once, however many aliases point at it): the size and
    depth after alias expansion, cycles, duplicate keys and integers too long to convert."""
    problems: list[Problem] = []
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Node, Path_, bool]] = [(root, (), False)]
    while stack:
        node, path, done = stack.pop()
        nid = id(node)
        children = _children(node)
        if done:
            size[nid] = 1 + sum(size.get(id(c), 1) for _, c in children)
            depth[nid] = 1 + max((depth.get(id(c), 1) for _, c in children), default=0)
            open_.discard(nid)
            if size[nid] > MAX_NODES or depth[nid] > MAX_DEPTH + 1:
                what = (
                    f"more than {MAX_NODES:,} values once aliases are expanded"
                    if size[nid] > MAX_NODES
                    else f"nested more than {MAX_DEPTH} levels deep once aliases are expanded"
                )
                return [Problem(node.start_mark.line + 1, path, what)]
            continue
        if nid in size:
            continue
        if nid in open_:
            return [Problem(node.start_mark.line + 1, path, "an alias refers to the value it is part of (a cycle)")]
        open_.add(nid)
        stack.append((node, path, True))
        if isinstance(node, MappingNode):
            problems += _duplicate_keys(loader, node, path)
        elif isinstance(node, ScalarNode) and node.tag == INT_TAG:
            digits = sum(c.isdigit() for c in node.value)
            if digits > MAX_INT_DIGITS:
                problems.append(
                    Problem(node.start_mark.line + 1, path, f"an integer with {digits:,} digits is out of range")
                )
        for key, child in reversed(children):
            stack.append((child, path + (key,), False))
    return problems


def _children(node: Node) -> list[tuple[Any, Node]]:
    if isinstance(node, MappingNode):
        return [(k.value if isinstance(k, ScalarNode) else "?", v) for k, v in node.value]
    if isinstance(node, SequenceNode):
        return list(enumerate(node.value))
    return []


def _duplicate_keys(loader: StationLoader, node: MappingNode, path: Path_) -> list[Problem]:
    problems = []
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, ScalarNode) and key_node.tag == MERGE_TAG:
            if not _mergeable(_):
                problems.append(
                    Problem(
                        key_node.start_mark.line + 1,
                        path + (key_node.value,),
                        "'<<' merges a mapping or a list of mappings (e.g. <<: *defaults)",
                    )
                )
            continue
        if not isinstance(key_node, ScalarNode):
            continue  # merged keys ('<<: *base') may be overridden; complex keys are refused by the schema
        try:
            key = loader.construct_object(key_node)
            hash(key)
        except (yaml.YAMLError, TypeError):
            continue  # reported when the document is constructed
        line = key_node.start_mark.line + 1
        if key in first:
            problems.append(
                Problem(
                    line,
                    path + (key_node.value,),
                    f"duplicate key (lines {first[key]} and {line}); each key may appear once",
                )
            )
        else:
            first[key] = line
    return problems


def _mergeable(node: Node) -> bool:
    if isinstance(node, SequenceNode):
        return all(isinstance(n, MappingNode) for n in node.value)
    return isinstance(node, MappingNode)


def parse(data: bytes) -> tuple[Node | None, Any]:
    """The composed root node (for line numbers) and the constructed data of a station file's bytes."""
    text = decode(data)
    try:
        loader = StationLoader(text)
    except yaml.reader.ReaderError as err:  # a control character; the reader checks the whole text first
        line = text.count("\n", 0, err.position) + 1
        code = err.character if isinstance(err.character, int) else ord(err.character)
        message = f"YAML syntax error: the control character U+{code:04X} is not allowed (offset {err.position})"
        raise YamlProblems([Problem(line, _guess_key(_printable(text), line), message)]) from None
    root: Node | None = None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        problems = _check_tree(loader, root)
        if problems:
            raise YamlProblems(problems)
        return root, loader.construct_document(root)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        key = getattr(err, "key_path", None)
        if key is None:
            key = _key_of_mark(root, mark) if mark is not None else None
        if key is None:
            key = key_at_line(root, line)
        problem = getattr(err, "problem", None) or str(err)
        context = getattr(err, "context", None)
        if context and not isinstance(err, _LimitError):
            problem = f"{context}, {problem}"
        if isinstance(err, _LimitError):
            raise YamlProblems([Problem(line, key, problem)]) from None
        raise YamlProblems([Problem(line, key, f"YAML syntax error: {' '.join(str(problem).split())}")]) from None
    except RecursionError:  # not reached with MAX_DEPTH far below the recursion limit; kept as a guard
        raise YamlProblems([Problem(1, (), f"nested more than {MAX_DEPTH} levels deep")]) from None
    finally:
        loader.dispose()
