"""Where lowering stands, as one small immutable value (the state torchvision's `_make_layer` keeps).

A `Cursor` says which module is being filled (its path and the names already taken in it), the shape
that reaches the next item, the expression scope and where in the spec the item is written. Lowering a
sequence moves the cursor item by item; entering a block or a stage makes a child cursor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ..ir import Node
from ..layers.base import Shape

Src = tuple[str | int, ...]  # a path into the spec tree, for error locations and reports
Lowered = tuple[list[Node], Shape | None]  # nodes made, and the shape after them (None after a problem)
NameStyle = Literal["numbered", "named"]


class NameClashError(Exception):
    """A module name is used twice in one parent (the message is the name)."""


class Ref(NamedTuple):
    """What a name in a graph list reads: the output of child `node` (or INPUT), its shape, where the
    item that made it is written. (A tuple: one is made for every node lowered.)"""

    node: str
    shape: Shape
    src: Src


@dataclass
class Namespace:
    """Names children of one module: by index (nn.Sequential) or by kind counter (conv1, bn1, ...).

    The one mutable part of a cursor: siblings share their parent's namespace. It is also the scope of
    the list's references (graph.py): the names its earlier items made visible, and every name an item
    of the list declares (for "defined later" messages)."""

    style: NameStyle
    names: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)
    count: int = 0
    graph: bool = False  # the list uses references (`from:`, `outputs:`): dotted names are allowed
    refs: dict[str, Ref] = field(default_factory=dict)
    declared: dict[str, Src] = field(default_factory=dict)
    pending: str | None = None  # a dotted name, for the next module this namespace names
    holders: set[str] = field(default_factory=set)  # the holder modules dotted names create
    failed: set[str] = field(default_factory=set)  # names of items whose problems are reported
    skipped: set[str] = field(default_factory=set)  # names of items left out by their `when:`
    # outputs are read by name from outside the list too: the model's (`outputs:`) and its wrappers'
    # (messages about names inside `features:`); else only a graph list's own items read them
    published: bool = False

    def assign(self, prefix: str, explicit: str | None, holder: str = "") -> str:
        """A child's name: `explicit`, else the next of its kind (`bn1`), under `holder` where given
        (the sugar siblings of a module at a dotted path sit beside it: `body.conv1` -> `body.bn1`)."""
        if explicit is None and self.pending is not None:
            explicit, self.pending = self.pending, None
        if explicit is None and holder:
            explicit = self._next(prefix, f"{holder}.")
        if explicit is not None:
            name = explicit
            if name in self.holders:
                raise NameClashError(name)
            if "." in name:  # (only a dotted name has holders: most names are not)
                holders = holder_paths(name)
                if any(h in self.names for h in holders):
                    raise NameClashError(name)
                self.holders.update(holders)
        elif self.style == "numbered":
            name = str(self.count)
        else:
            name = self._next(prefix)
        if name in self.names:
            raise NameClashError(name)
        self.names.add(name)
        self.count += 1
        return name

    def _next(self, prefix: str, under: str = "") -> str:
        # relu6 -> relu6_1, not relu61
        sep = "_" if prefix[-1].isdigit() else ""
        n = self.counters.get(prefix, 0) + 1
        while f"{under}{prefix}{sep}{n}" in self.names:
            n += 1
        self.counters[prefix] = n
        return f"{under}{prefix}{sep}{n}"


def holder_paths(name: str) -> list[str]:
    """The holder modules a dotted name sits under: `fpn.inner_blocks.0.0` -> fpn, fpn.inner_blocks, ..."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


@dataclass(frozen=True, slots=True)
class Cursor:
    shape: Shape | None  # what reaches the next item; None after a problem (only parameter checks go on)
    scope: Mapping[str, Any]  # names `${...}` may read
    src: Src  # where the next item is written
    section: str  # "stem", a stage name, or "head"
    parent: str = ""  # module path of the module being filled ("" is the model)
    names: Namespace = field(default_factory=lambda: Namespace("named"))
    own: str = ""  # the name of the module being filled in its parent (dotted in a graph list)

    # (the moves construct through _cursor: dataclasses.replace would be most of lowering's time)
    def at(self, *keys: str | int) -> Cursor:
        """The cursor at a part of the current spec item."""
        return _cursor(
            self.shape, self.scope, (*self.src, *keys), self.section, self.parent, self.names, self.own
        )

    def at_item(self, index: int, shape: Shape | None) -> Cursor:
        """The cursor at item `index` of the current list, fed `shape`."""
        return _cursor(shape, self.scope, (*self.src, index), self.section, self.parent, self.names, self.own)

    def moved(self, src: Src, shape: Shape | None) -> Cursor:
        """The cursor at `src`, fed `shape` (two moves in one)."""
        return _cursor(shape, self.scope, src, self.section, self.parent, self.names, self.own)

    def located(self, src: Src) -> Cursor:
        return _cursor(self.shape, self.scope, src, self.section, self.parent, self.names, self.own)

    def with_shape(self, shape: Shape | None) -> Cursor:
        return _cursor(shape, self.scope, self.src, self.section, self.parent, self.names, self.own)

    def with_scope(self, scope: Mapping[str, Any]) -> Cursor:
        return _cursor(self.shape, scope, self.src, self.section, self.parent, self.names, self.own)

    def in_section(self, section: str) -> Cursor:
        return _cursor(self.shape, self.scope, self.src, section, self.parent, self.names, self.own)

    def child(self, name: str, style: NameStyle = "numbered") -> Cursor:
        """The cursor inside a new submodule `name` of the module being filled."""
        return _cursor(
            self.shape, self.scope, self.src, self.section, join(self.parent, name), Namespace(style), name
        )

    def path(self, name: str) -> str:
        """The module path of a child `name`."""
        return join(self.parent, name)

    @property
    def name(self) -> str:
        """The name of the module being filled, in its parent."""
        return self.own

    @property
    def where(self) -> str:
        """The module being filled, as messages say it."""
        return self.parent or "the model"


# The moves make several cursors per layer. A frozen dataclass's __init__ sets each field through
# object.__setattr__ (a lookup by name each time); the slots' own setters cost a third less.
_new_object = object.__new__
_set_shape, _set_scope, _set_src, _set_section, _set_parent, _set_names, _set_own = (
    Cursor.__dict__[f].__set__ for f in ("shape", "scope", "src", "section", "parent", "names", "own")
)


def _cursor(
    shape: Shape | None,
    scope: Mapping[str, Any],
    src: Src,
    section: str,
    parent: str,
    names: Namespace,
    own: str,
) -> Cursor:
    """Cursor(shape, scope, src, section, parent, names, own), made faster."""
    cur = _new_object(Cursor)
    _set_shape(cur, shape)
    _set_scope(cur, scope)
    _set_src(cur, src)
    _set_section(cur, section)
    _set_parent(cur, parent)
    _set_names(cur, names)
    _set_own(cur, own)
    return cur
