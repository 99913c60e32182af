"""Reading YAML text safely into a tree that remembers where every value came from.

Only PyYAML's safe constructors are used (no python tags). Duplicate keys, alias bombs, deep nesting
and oversized files are errors with a position, never a hang, a RecursionError or a silent overwrite.
Only regular files are read (never a device or a pipe), and never more than the size limit.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path as FsPath
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from .errors import Location, Path, Problem, SpecSizeError, SpecSyntaxError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: zoo specs are a few KiB; more is a mistake or an attack
MAX_DEPTH = 64
MAX_NODES = 200_000  # after alias expansion
MAX_SCALAR_INT_CHARS = 100  # an int literal longer than this is a mistake; bigint parsing is superlinear


@dataclass
class ReadBudget:
    """What one spec may hold in all, the files it `extends` included: a chain of files, each under
    the limits, must not add up to what one file may not hold."""

    bytes_left: int = MAX_FILE_BYTES
    nodes_left: int = MAX_NODES

    def charge_bytes(self, size: int, file: str) -> None:
        """Count a file's bytes; the first file was already held to the one-file limit when read."""
        if size > self.bytes_left:
            raise SpecSizeError(
                Problem(
                    f"a spec and the files it extends hold more than {MAX_FILE_BYTES // 1024} KiB together",
                    location=Location(file, 1, 1),
                    hint="a spec is a short description; generate repeated parts with `depth`",
                )
            )
        self.bytes_left -= size


class _Positions:
    """A positions attribute (`positions`, `key_positions`: key or index -> Location) that the YAML
    reader leaves as the nodes until it is first asked for: most specs are read, validated and lowered
    without one error to locate."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> dict[Any, Location]:
        values = obj.__dict__
        if self.attr not in values:
            obj._read_positions()
        return values[self.attr]

    def __set__(self, obj: Any, value: dict[Any, Location]) -> None:
        obj.__dict__[self.attr] = value


class PosDict(dict):
    """A mapping that knows the location of each of its keys' values and of each key."""

    location: Location | None = None
    positions = _Positions()
    key_positions = _Positions()  # where each key itself is written
    _unread: tuple[str, list[tuple[Any, Node, Node]]] | None = None  # (file, [(key, key node, node)])

    def _read_positions(self) -> None:
        positions: dict[Any, Location] = {}
        key_positions: dict[Any, Location] = {}
        if self._unread is not None:
            file, written = self._unread
            for key, key_node, value_node in written:  # (in order: a later key overrides a merged one)
                positions[key] = _loc(file, value_node)
                key_positions[key] = _loc(file, key_node)
            self._unread = None
        self.__dict__.setdefault("_positions", positions)
        self.__dict__.setdefault("_key_positions", key_positions)


class PosList(list):
    """A sequence that knows the location of each item."""

    location: Location | None = None
    positions = _Positions()
    _unread: tuple[str, list[Node]] | None = None  # (file, the items' nodes)

    def _read_positions(self) -> None:
        file, nodes = self._unread or ("", [])
        self.__dict__.setdefault("_positions", {i: _loc(file, node) for i, node in enumerate(nodes)})
        self._unread = None

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
# the keys PyYAML's flatten_mapping acts on (`<<` merges, `=` values); a mapping without them is as written
_FLATTENED_KEY_TAGS = (_MERGE_TAG, "tag:yaml.org,2002:value")


class _Bounded(Composer, SafeConstructor):
    """What netspec adds to PyYAML's composer and constructor: a bound on nesting depth, and the keys
    each mapping writes itself (told apart from those a `<<` merge adds)."""

    file: str
    _depth: int
    own_keys: dict[int, set[int]]
    peek_event: Callable[[], Any]  # the parser's (PyYAML's or libyaml's)

    def _bound(self, file: str) -> None:
        self.file = file
        self._depth = 0
        # id(mapping node) -> ids of the keys written in that mapping itself (see flatten_mapping)
        self.own_keys = {}

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


class _Loader(_Bounded, yaml.SafeLoader):
    """PyYAML's pure-Python reader, scanner and parser: the reference, and the one whose messages
    every syntax error shows."""

    def __init__(self, stream: str, file: str):
        yaml.SafeLoader.__init__(self, stream)
        self._bound(file)


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _FastLoader(_Bounded, CParser, Resolver):
        """libyaml's scanner, parser and composer (in C, 20x faster) with PyYAML's own resolver and
        constructor, so the tags and values are PyYAML's. It only reads documents it finds correct
        and reads as PyYAML does (_sure_size); for any other, parse_yaml reads again with _Loader, whose
        messages are the reference."""

        # composed in C: libyaml refuses nesting past 1,000 levels itself, so nothing recurses deeply;
        # MAX_DEPTH is checked on the nodes (_sure_size)
        get_single_node = CParser.get_single_node

        def __init__(self, stream: str, file: str):
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._bound(file)

        def resolve(self, kind: type[Node], value: Any, implicit: Any) -> Any:
            # the composer asks for every scalar's tag (regular expressions in Python); a plain
            # scalar's tag is a function of its text alone, and specs repeat a few words and numbers
            if kind is ScalarNode and len(value) <= _CACHED_SCALAR_CHARS:
                return _scalar_tag(value, implicit)
            return Resolver.resolve(self, kind, value, implicit)

    _CACHED_SCALAR_CHARS = 100
    _RESOLVER = Resolver()

    @lru_cache(maxsize=4096)
    def _scalar_tag(value: str, implicit: tuple[bool, bool]) -> Any:
        """PyYAML's tag for a scalar written as `value` (`implicit`: whether it is plain, quoted)."""
        return _RESOLVER.resolve(ScalarNode, value, implicit)


def _unsure_scalar(node: ScalarNode) -> bool:
    """A plain (unquoted) scalar the two readers may place or split differently: a value left out
    (`{out: }`: libyaml marks the next token) or one with a '?' (a flow key to PyYAML)."""
    return not node.style and (not node.value or "?" in node.value)


class _UnsureError(Exception):
    """What _sure_size raises where the fast reader leaves a document to the reference reader."""


def _sure_size(node: Node, memo: dict[int, int], limit: int, depth: int = 1) -> int:
    """The node count after alias expansion (as _expanded_size counts it), for the fast reader, which
    reads only documents libyaml reads as PyYAML does: _UnsureError where the nodes may differ (nesting
    deeper than MAX_DEPTH, which PyYAML refuses, or an unsure scalar) or where _expanded_size would
    refuse the document (the reference reader then finds, and reports, the same). Each node is looked at
    once (aliases), first where it is written: before any alias to it."""
    if depth > MAX_DEPTH:
        raise _UnsureError
    if type(node) is ScalarNode:  # (most nodes: one each, wherever an alias repeats it)
        if _unsure_scalar(node):
            raise _UnsureError
        return 1
    key = id(node)
    known = memo.get(key)
    if known is not None:
        if known < 0:  # met again while still inside it: a recursive structure
            raise _UnsureError
        return known
    memo[key] = -1  # in progress
    size = 1
    if isinstance(node, SequenceNode):
        for child in node.value:
            size += _sure_size(child, memo, limit, depth + 1)
    elif isinstance(node, MappingNode):
        for k, v in node.value:
            size += _sure_size(k, memo, limit, depth + 1) + _sure_size(v, memo, limit, depth + 1)
    else:
        raise _UnsureError
    if size > limit:
        raise _UnsureError
    memo[key] = size
    return size


def _expanded_size(node: Node, memo: dict[int, int], file: str, limit: int = MAX_NODES) -> int:
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
            size += _expanded_size(child, memo, file, limit)
    elif isinstance(node, MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, file, limit) + _expanded_size(v, memo, file, limit)
    if size > limit:
        together = " with the files it extends" if limit < MAX_NODES else ""
        raise SpecSizeError(
            Problem(
                f"document expands to more than {MAX_NODES} values{together} (anchors and aliases included)",
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


_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"


def _construct_scalar(node: ScalarNode, loader: _Bounded, file: str) -> Any:
    """A plain value; a value its tag cannot read (`!!int abc`, `!!timestamp x`) is a located error."""
    if node.tag == _STR_TAG:  # most values, and every key: what PyYAML's str constructor returns
        return node.value
    if node.tag == _INT_TAG and len(node.value) > MAX_SCALAR_INT_CHARS:
        # PyYAML reads `1:59:59:...` (base 60) digit by digit on a growing integer: quadratic
        raise SpecSizeError(
            Problem(
                f"integer is longer than {MAX_SCALAR_INT_CHARS} characters",
                location=_loc(file, node),
                hint="no count in a spec needs that many digits",
            )
        )
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError):
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        value = node.value if len(node.value) <= 40 else node.value[:40] + "..."
        raise SpecSyntaxError(
            Problem(f"'{value}' is not a valid {tag} value", location=_loc(file, node))
        ) from None


def _construct(node: Node, loader: _Bounded, file: str) -> Any:
    if isinstance(node, ScalarNode):
        return _construct_scalar(node, loader, file)
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
        out_list = PosList([_value(child, loader, file) for child in node.value])
        out_list.location = _loc(file, node)
        out_list._unread = (file, node.value)
        return out_list
    if isinstance(node, MappingNode):
        own_keys = loader.own_keys.get(id(node))  # set when merged into another mapping before
        if own_keys is None and any(k.tag in _FLATTENED_KEY_TAGS for k, _ in node.value):
            loader.flatten_mapping(node)  # resolves YAML merge keys (<<): inherited entries come first
            own_keys = loader.own_keys[id(node)]
        written: set[Any] = set()  # keys written in this mapping (not inherited through `<<`)
        out_map = PosDict()
        out_map.location = _loc(file, node)
        at: list[tuple[Any, Node, Node]] = []
        out_map._unread = (file, at)
        for key_node, value_node in node.value:
            key = _value(key_node, loader, file)
            if isinstance(key, (PosDict, PosList)):
                raise SpecSyntaxError(
                    Problem("a mapping key must be a plain value", location=_loc(file, key_node))
                )
            own = own_keys is None or id(key_node) in own_keys  # None: every key is written here
            if own and key in written and key in out_map:
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
            out_map[key] = _value(value_node, loader, file)  # an own key overrides a merged one
            at.append((key, key_node, value_node))
        return out_map
    raise SpecSyntaxError(Problem("unsupported YAML node", location=_loc(file, node)))


def _value(node: Node, loader: _Bounded, file: str) -> Any:
    """_construct, with its most common case first: text (most values, and every key)."""
    if type(node) is ScalarNode and node.tag == _STR_TAG:
        return node.value
    return _construct(node, loader, file)


_UNREAD = object()  # what _read_fast returns for a text it leaves to the reference reader
_NOT_FAST = re.compile(yaml.reader.Reader.NON_PRINTABLE.pattern + "|[\t\ufeff]")
_NOT_FAST_ASCII = re.compile(r"[^\n\r -~]")  # the same, in ASCII text (most specs): 4x faster


def _fast_readable(text: str) -> bool:
    """No character PyYAML refuses, no tab and no byte-order mark."""
    return (_NOT_FAST_ASCII if text.isascii() else _NOT_FAST).search(text) is None


def _read_fast(text: str, file: str, budget: ReadBudget | None) -> Any:
    """The document read with libyaml's parser, or _UNREAD where that reader is missing or finds
    anything wrong: every problem is then found again, and reported, by the pure-Python reader.
    Characters PyYAML refuses never reach libyaml, nor do tabs and byte-order marks: libyaml accepts
    them in places PyYAML does not."""
    if not yaml.__with_libyaml__ or not _fast_readable(text):
        return _UNREAD
    loader = _FastLoader(text, file)
    try:
        node = loader.get_single_node()
        if node is None:
            return _UNREAD
        size = _sure_size(node, {}, budget.nodes_left if budget else MAX_NODES)
        tree = _construct(node, loader, file)
    except Exception:  # any failure here is the reference reader's to find and report
        return _UNREAD
    finally:
        loader.dispose()
    if budget:
        budget.nodes_left -= size
    return tree


def parse_yaml(text: str, file: str = "<string>", budget: ReadBudget | None = None) -> Any:
    """Parse YAML text into PosDict/PosList/scalars. Raises SpecError subclasses only.

    With a `budget`, the document's values are counted against what is left of it."""
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecSizeError(
            Problem(
                f"file is larger than {MAX_FILE_BYTES // 1024} KiB",
                location=Location(file, 1, 1),
                hint="a spec is a short description; generate repeated parts with `depth`",
            )
        )
    fast = _read_fast(text, file, budget)
    if fast is not _UNREAD:
        return fast
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
        size = _expanded_size(node, {}, file, budget.nodes_left if budget else MAX_NODES)
        if budget:
            budget.nodes_left -= size
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


@dataclass(frozen=True)
class SpecFile:
    """A spec file's text, and which file it is however its path was spelled (`./a.yaml`, a symlink,
    a hard link): the device and inode of the descriptor that was read."""

    name: str
    text: str
    identity: tuple[int, int]


# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused right after, by fstat)
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
)

_OPEN_ERRORS = {  # errno -> what it means for a spec path
    errno.ENOENT: "no such file",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ELOOP: "the path is a loop of symbolic links",
    errno.ENAMETOOLONG: "the path is too long",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def abbreviated(text: str, limit: int = 120) -> str:
    """`text` for a message: a long path or value must not make a long message."""
    return text if len(text) <= limit else text[:limit] + "..."


def read_spec_file(path: str | FsPath, named_at: Location | None = None, field: Path = ()) -> SpecFile:
    """Read a spec file's UTF-8 text, turning every failure into a located SpecError.

    Only a regular file is read, and at most MAX_FILE_BYTES + 1 bytes of it: `st_size` is not trusted
    (a device or a FIFO has none), and the check is made on the open descriptor, so nothing can swap
    the file between the check and the read. A problem with the path itself (missing, a directory, a
    symlink loop, a NUL character) points at `named_at`, where the path is written (the spec path
    `field`, such as `extends`), or else at the file."""
    name = os.fspath(path)
    name = name if isinstance(name, str) else os.fsdecode(name)
    where = named_at or Location(name, 1, 1)
    fd = _open(name, field, where)
    try:
        raw, info = _read_regular(fd, name, field, where)
    finally:
        os.close(fd)
    return SpecFile(name, _decode(raw, name), (info.st_dev, info.st_ino))


def _open(name: str, field: Path, where: Location) -> int:
    """A descriptor of `name`, opened without blocking (a FIFO must not hang the reader)."""
    shown = abbreviated(name)
    try:
        return os.open(name, _OPEN_FLAGS)
    except ValueError:  # an embedded NUL, or text the file system cannot encode
        raise SpecSyntaxError(
            Problem(
                f"'{shown}' is not a file path: it contains a NUL or an unencodable character",
                path=field,
                location=where,
            )
        ) from None
    except OSError as exc:
        reason = _OPEN_ERRORS.get(exc.errno or 0)
        hint = (
            "check the path; a zoo spec is `zoo:NAME` (see `netspec zoo`)"
            if exc.errno == errno.ENOENT
            else None
        )
        if exc.errno == errno.ENAMETOOLONG:
            shown = abbreviated(name, 60)
        message = f"{reason}: '{shown}'" if reason else f"cannot read '{shown}': {exc.strerror}"
        raise SpecSyntaxError(Problem(message, path=field, location=where, hint=hint)) from None


def _read_regular(fd: int, name: str, field: Path, where: Location) -> tuple[bytes, os.stat_result]:
    """At most MAX_FILE_BYTES + 1 bytes of an open regular file, and its status."""
    shown = abbreviated(name)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise SpecSyntaxError(
                Problem(f"'{shown}' is a directory, not a spec file", path=field, location=where)
            )
        if not stat.S_ISREG(info.st_mode):
            raise SpecSyntaxError(
                Problem(
                    f"'{shown}' is not a regular file (a device, a pipe or a socket)",
                    path=field,
                    location=where,
                    hint="a spec is read from a file; save it to one first",
                )
            )
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:  # stop one byte past the limit: enough to know it is too large
            chunk = os.read(fd, min(1 << 16, MAX_FILE_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:  # EIO, EISDIR on odd file systems...
        raise SpecSyntaxError(
            Problem(f"cannot read '{shown}': {exc.strerror}", path=field, location=where)
        ) from None
    if size > MAX_FILE_BYTES:
        raise SpecSizeError(
            Problem(
                f"file is larger than the {MAX_FILE_BYTES // 1024} KiB limit",
                location=Location(name, 1, 1),
                hint="a spec is a short description; generate repeated parts with `depth`",
            )
        )
    return b"".join(chunks), info


def _decode(raw: bytes, name: str) -> str:
    """A spec file's bytes as text: UTF-8, not UTF-16, no NUL bytes."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # a byte-order mark: UTF-16 (or UTF-32) text
        raise SpecSyntaxError(
            Problem("file is UTF-16 text", location=Location(name, 1, 1), hint="save the spec as UTF-8")
        )
    if b"\x00" in raw:
        raise SpecSyntaxError(
            Problem("file contains NUL bytes: binary data, not YAML", location=Location(name, 1, 1))
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecSyntaxError(
            Problem(
                f"file is not UTF-8 text (byte {exc.start})",
                location=Location(name, 1, 1),
                hint="save the spec as UTF-8",
            )
        ) from None


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
