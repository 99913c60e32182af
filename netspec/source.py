"""Reading YAML text safely into a tree that remembers where every value came from.

Only PyYAML's safe constructors are used (no python tags). Duplicate keys, alias bombs, deep nesting
and oversized files are errors with a position, never a hang, a RecursionError or a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path as FsPath
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Location, Path, Problem, SpecSizeError, SpecSyntaxError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: zoo specs are a few KiB; more is a mistake or an attack
MAX_DEPTH = 64
MAX_NODES = 200_000  # after alias expansion


class PosDict(dict):
    """A mapping that knows the location of each of its keys' values."""

    location: Location | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.positions: dict[Any, Location] = {}
        self.key_positions: dict[Any, Location] = {}  # where each key itself is written


class PosList(list):
    """A sequence that knows the location of each item."""

    location: Location | None = None

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.positions: dict[int, Location] = {}

    @classmethod
    def of(cls, items: Iterable[tuple[Any, Location]], location: Location) -> PosList:
        """A list written at `location` from (value, where the value is written) pairs."""
        out = cls()
        out.location = location
        for i, (value, where) in enumerate(items):
            out.append(value)
            out.positions[i] = where
        return out


def _loc(file: str, node: Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader that bounds nesting depth and tracks positions."""

    def __init__(self, stream: str, file: str):
        super().__init__(stream)
        self.file = file
        self._depth = 0
        # id(mapping node) -> ids of the keys written in that mapping itself (see flatten_mapping)
        self.own_keys: dict[int, set[int]] = {}

    def flatten_mapping(self, node: MappingNode) -> None:
        # remember the keys written in this mapping itself before `<<` merges add inherited ones
        # (flattening mutates the node, also when it is merged into another mapping)
        if id(node) not in self.own_keys:  # the document's nodes live until it is constructed
            self.own_keys[id(node)] = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
        super().flatten_mapping(node)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise SpecSizeError(
                Problem(
                    f"document is nested deeper than {MAX_DEPTH} levels",
                    location=Location(self.file, mark.line + 1, mark.column + 1),
                    hint="a spec needs only a few levels; flatten the structure",
                )
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(node: Node, memo: dict[int, int], file: str) -> int:
    """Node count after alias expansion, computed on the DAG so a bomb is measured, not expanded."""
    key = id(node)
    if key in memo:
        if memo[key] < 0:  # met again while still inside it
            raise SpecSyntaxError(
                Problem(
                    "an alias refers to a list or mapping that contains it (a recursive structure)",
                    location=_loc(file, node),
                    hint="a spec is a tree; write the value out instead of aliasing its parent",
                )
            )
        return memo[key]
    memo[key] = -1  # in progress
    size = 1
    if isinstance(node, SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo, file)
    elif isinstance(node, MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, file) + _expanded_size(v, memo, file)
    if size > MAX_NODES:
        raise SpecSizeError(
            Problem(
                f"document expands to more than {MAX_NODES} values (anchors and aliases included)",
                location=_loc(file, node),
                hint="is this an alias bomb? write the spec without nested aliases",
            )
        )
    memo[key] = size
    return size


_PLAIN_TAGS: dict[type[Node], str] = {
    SequenceNode: "tag:yaml.org,2002:seq",
    MappingNode: "tag:yaml.org,2002:map",
}


def _construct(node: Node, loader: _Loader, file: str) -> Any:
    if isinstance(node, ScalarNode):
        return loader.construct_object(node, deep=True)
    if type(node) in _PLAIN_TAGS and node.tag != _PLAIN_TAGS[type(node)]:
        # a tagged list or mapping (!!python/object/apply:..., !!set, !foo) is never constructed
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise SpecSyntaxError(
            Problem(
                f"the tag '{tag}' is not allowed: tags such as !!python/... are not allowed in a spec",
                location=_loc(file, node),
                hint="remove the tag; specs hold plain data only",
            )
        )
    if isinstance(node, SequenceNode):
        children = ((_construct(child, loader, file), _loc(file, child)) for child in node.value)
        return PosList.of(children, _loc(file, node))
    if isinstance(node, MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<): inherited entries come first
        own_keys = loader.own_keys.get(id(node), set())
        written: set[Any] = set()  # keys written in this mapping (not inherited through `<<`)
        out_map = PosDict()
        out_map.location = _loc(file, node)
        for key_node, value_node in node.value:
            key = _construct(key_node, loader, file)
            if isinstance(key, (PosDict, PosList)):
                raise SpecSyntaxError(
                    Problem("a mapping key must be a plain value", location=_loc(file, key_node))
                )
            own = id(key_node) in own_keys
            if key in out_map and own and key in written:
                first = out_map.positions[key]
                raise SpecSyntaxError(
                    Problem(
                        f"duplicate key '{key}' (first defined at line {first.line})",
                        location=_loc(file, key_node),
                        hint="YAML would silently keep only the last one; remove one of them",
                    )
                )
            if own:
                written.add(key)
            out_map[key] = _construct(value_node, loader, file)  # an own key overrides a merged one
            out_map.positions[key] = _loc(file, value_node)
            out_map.key_positions[key] = _loc(file, key_node)
        return out_map
    raise SpecSyntaxError(Problem("unsupported YAML node", location=_loc(file, node)))


def parse_yaml(text: str, file: str = "<string>") -> Any:
    """Parse YAML text into PosDict/PosList/scalars. Raises SpecError subclasses only."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecSizeError(
            Problem(
                f"file is larger than {MAX_FILE_BYTES // 1024} KiB",
                location=Location(file, 1, 1),
                hint="a spec is a short description; generate repeated parts with `depth`",
            )
        )
    try:
        loader = _Loader(text, file)  # the reader checks every character here
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - before.rfind("\n")
        code = ord(exc.character) if isinstance(exc.character, str) else exc.character
        raise SpecSyntaxError(
            Problem(
                f"not a YAML text file: {exc.reason} (character #x{code:04x})",
                location=Location(file, line, col),
            )
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecSyntaxError(
                Problem("file is empty", location=Location(file, 1, 1), hint="write a spec")
            )
        _expanded_size(node, {}, file)
        return _construct(node, loader, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        message = str(exc.problem or exc.context or "invalid YAML")
        hint = None
        if "could not determine a constructor" in message:
            message = "tags such as !!python/... are not allowed in a spec"
            hint = "remove the tag; specs hold plain data only"
        raise SpecSyntaxError(Problem(f"YAML syntax error: {message}", location=where, hint=hint)) from None
    except yaml.YAMLError as exc:  # reader errors: binary garbage, bad encodings
        raise SpecSyntaxError(
            Problem(f"not a YAML text file: {exc}", location=Location(file, 1, 1))
        ) from None
    except RecursionError:
        raise SpecSizeError(Problem("document is nested too deeply", location=Location(file, 1, 1))) from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | FsPath) -> Any:
    """Read and parse a spec file, turning every I/O failure into a SpecError."""
    p = FsPath(path)
    name = str(path)
    try:
        if p.is_dir():
            raise SpecSyntaxError(Problem(f"'{name}' is a directory, not a spec file"))
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecSizeError(
                Problem(
                    f"file is {size} bytes, more than the {MAX_FILE_BYTES // 1024} KiB limit",
                    location=Location(name, 1, 1),
                )
            )
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SpecSyntaxError(
            Problem(f"no such file: '{name}'", hint="check the path; zoo specs live in specs/")
        ) from None
    except OSError as exc:
        raise SpecSyntaxError(Problem(f"cannot read '{name}': {exc.strerror}")) from None
    if b"\x00" in raw:
        raise SpecSyntaxError(
            Problem("file contains NUL bytes: binary data, not YAML", location=Location(name, 1, 1))
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecSyntaxError(
            Problem(
                f"file is not UTF-8 text (byte {exc.start})",
                location=Location(name, 1, 1),
                hint="save the spec as UTF-8",
            )
        ) from None
    return parse_yaml(text, name)


def locate_key(tree: Any, path: Path) -> Location | None:
    """Where the key `path[-1]` itself is written (for an unknown field), else `locate(tree, path)`.

    A block-style value starts on the line after its key; an unknown key should point at the key."""
    parent = tree
    for part in path[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            parent = None
            break
    keys = getattr(parent, "key_positions", None)
    if path and keys and path[-1] in keys:
        return keys[path[-1]]
    return locate(tree, path)


def locate(tree: Any, path: Path) -> Location | None:
    """The most precise known location of `path` inside a positioned tree."""
    best: Location | None = getattr(tree, "location", None)
    node = tree
    for part in path:
        positions = getattr(node, "positions", None)
        if positions is None:
            break
        if part in positions:
            best = positions[part]
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        inner = getattr(node, "location", None)
        if inner is not None:
            best = inner if part not in positions else best
    return best
