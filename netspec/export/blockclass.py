"""A generated block class as the exporter sees it: one template (`T`) per submodule slot, holding the
constructor values of every instance of the class (MISSING where an instance lacks the submodule)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..ir import Node
from ..layers.call import MISSING
from .code import lit, same
from .graph import Step


@dataclass(eq=False)
class TArg:
    """One constructor argument of a slot, with its value in every instance (MISSING where absent)."""

    name: str
    keyword: bool
    values: list[Any]
    defaults: list[Any]
    slot: str
    hints: list[str] = field(default_factory=list)  # the spec's `${name}` for it
    suggest: str | None = None  # a name to try after the hints (a nested block's argument name)
    widening: bool = False  # the output width minus the input width
    param: str | None = None  # the class argument (or expression over them) that gives it

    def known(self) -> list[Any]:
        return [v for v in self.values if v is not MISSING]

    def constant(self) -> bool:
        known = self.known()
        return all(same(v, known[0]) for v in known)

    def omitted(self) -> bool:
        """A constant equal to the constructor's default in every instance."""
        return self.constant() and all(
            d is not MISSING and same(v, d)
            for v, d in zip(self.values, self.defaults, strict=True)
            if v is not MISSING
        )


@dataclass(eq=False)
class TLeaf:
    ctor: str
    args: list[TArg]
    present: list[bool]
    slot: str
    cond: str | None = None  # where only some instances have it: the condition over the arguments


@dataclass(eq=False)
class TRef:
    cls: BlockClass
    args: list[TArg]
    present: list[bool]
    slot: str
    cond: str | None = None


@dataclass(eq=False)
class TSeq:
    items: list[T]
    present: list[bool]
    slot: str
    names: list[str] | None  # child names when they are not 0, 1, 2 ...
    cond: str | None = None


T = TLeaf | TRef | TSeq


@dataclass
class Param:
    """An argument of a generated class's constructor, with its value in each instance."""

    name: str
    values: list[Any]
    hints: set[str] = field(default_factory=set)  # the spec's names for it (`${e1x1}`)

    def annotation(self) -> str:
        vals = self.values
        if all(type(v) is bool for v in vals):
            return "bool"
        if all(type(v) is int for v in vals):
            return "int"
        if all(type(v) in (int, float) for v in vals):
            return "float"
        if all(type(v) is str for v in vals):
            return "str"
        pairs = all(type(v) is tuple and len(v) == 2 and all(type(e) is int for e in v) for v in vals)
        if pairs:
            return "tuple[int, int]"
        if all(type(v) is int or (type(v) is tuple and all(type(e) is int for e in v)) for v in vals):
            return "int | tuple[int, ...]"
        return ""


@dataclass(eq=False)
class BlockClass:
    """A generated block class and the instances it stands for."""

    kind: str
    form: str  # "body" (residual / plain sequence) | "parallel" | "graph" (items that read each other)
    instances: list[Node]
    body: list[tuple[str, T]] = field(default_factory=list)
    shortcut: tuple[str, T] | None = None
    after: list[tuple[str, T]] = field(default_factory=list)
    branches: list[tuple[str, T]] = field(default_factory=list)
    merges: list[str] = field(default_factory=list)  # per instance: add | concat | mul | none
    inplace: bool = False  # `out += shortcut` (the body's last output is not needed by autograd)
    name: str = ""
    doc: str = ""
    params: list[Param] = field(default_factory=list)
    merge_cond: str | None = None  # condition of the merge when some instances have none
    merge_attr: str = "use_residual"
    args_of: dict[str, dict[str, Any]] = field(default_factory=dict)  # instance path -> its arguments
    steps: list[Step] = field(default_factory=list)  # a graph's items (form "graph"; `body` has its modules)
    outputs: dict[str, str] | None = None  # a graph's named outputs

    def slots(self) -> list[tuple[str, T]]:
        if self.form == "parallel":
            return [*self.branches, *self.after]
        return [*self.body, *([self.shortcut] if self.shortcut else []), *self.after]

    def merge(self) -> str:
        merges = [m for m in self.merges if m != "none"]
        return merges[0] if merges else "none"


def optional(t: T, parent: list[bool]) -> bool:
    return any(p and not q for p, q in zip(parent, t.present, strict=True))


def targs(t: T) -> list[TArg]:
    if isinstance(t, TSeq):
        return [a for item in t.items for a in targs(item)]
    return list(t.args)


def pick(units: list[int]) -> Callable[[TArg], str | None]:
    """Values of the given instances, where they agree (a loop over all but the first block)."""

    def value(a: TArg) -> str | None:
        v = a.values[units[0]]
        if all(a.defaults[u] is not MISSING and same(a.values[u], a.defaults[u]) for u in units):
            return None
        return lit(v)

    return value


def never(t: T, parent: list[bool]) -> str | None:
    return None
