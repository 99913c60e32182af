"""Merges: `concat`, `add` and `mul`, the kinds that read several outputs (`from: [a, b, ...]`).

A merge is a graph operation (torch.cat, +, *), not a module: it has no parameters, no state_dict entry,
and its `name:` only names its output. Everything about how each merge combines lives here: the shape
rule over all inputs (`infer_merge`), the cost rule (0 MACs; FLOPs as today's residual merges: one per
output element per extra input of an add or a multiply, none for a concat), the op itself
(`combine`, plain torch code that also records itself on torch.fx proxies) and its source text
(`source`, for export). Residual and parallel blocks (`merge: add`) use the same kinds, so a block's
merge and a written-out one cannot disagree.
"""

from __future__ import annotations

import keyword
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator

from .base import IDENTIFIER, IDENTITY_WINDOW, Cost, LayerKind, LayerParams, Shape, ShapeError, Window, numel
from .call import Call

if TYPE_CHECKING:
    from torch import Tensor


def _fmt(shape: Shape) -> str:
    return "x".join(map(str, shape))


def _value_name(name: str) -> str:
    """A merge's name names a value, not a module: any identifier (`children`, as timm's DLA names its
    list of outputs), not only those an nn.Module may hold as an attribute."""
    if not IDENTIFIER.fullmatch(name) or keyword.iskeyword(name) or name == "input":
        raise ValueError(f"'{name}' is not a usable name: letters, digits and '_', not a Python keyword")
    return name


class MergeParams(LayerParams):
    name: Annotated[str, AfterValidator(_value_name)] | None = None


class MergeKind(LayerKind):
    """A kind that reads two or more outputs. Backends ask `isinstance(kind, MergeKind)`, never a name."""

    Params = MergeParams
    min_inputs: ClassVar[int] = 2
    fresh_output = True  # a new tensor: an in-place activation may follow
    # one FLOP per output element per input after the first (add, mul); a concat only copies
    elementwise: ClassVar[bool] = True
    # a [C, 1, 1] gate may scale a [C, H, W] map (squeeze-and-excitation)
    broadcasts: ClassVar[bool] = False
    # a zero branch leaves the other input unchanged: zero-gamma makes a residual block start as identity
    zero_branch_is_identity: ClassVar[bool] = False
    # the merge may write into its first input when autograd does not keep it (`out += shortcut`)
    accumulates: ClassVar[bool] = False
    verb: ClassVar[str] = ""  # for messages: "cannot add 3x4x4 and 5x4x4"
    # the last inputs it reads for their shape only (an upsample to another output's size): they add
    # nothing to its receptive field
    shape_only_inputs: ClassVar[int] = 0

    def infer(self, p: Any, x: Shape) -> Shape:
        raise ShapeError(f"`{self.name}` merges several outputs: give it `from: [a, b, ...]`")

    def infer_merge(self, shapes: Sequence[Shape]) -> Shape:
        """The merged shape of `shapes`, in order, or ShapeError saying which pair disagrees."""
        if len(shapes) < self.min_inputs:
            raise ShapeError(f"`{self.name}` merges at least {self.min_inputs} outputs, got {len(shapes)}")
        out = shapes[0]
        for shape in shapes[1:]:
            out = self.pair(out, shape)
        return out

    def pair(self, a: Shape, b: Shape) -> Shape:
        raise NotImplementedError

    def merge_cost(self, shapes: Sequence[Shape], y: Shape) -> Cost:
        return Cost(flops=numel(y) * (len(shapes) - 1)) if self.elementwise else Cost()

    def merge_window(self, shapes: Sequence[Shape], y: Shape) -> Window:
        """How its output's positions map the first input's (the receptive field): one to one."""
        return IDENTITY_WINDOW

    def merge_scratch(self, shapes: Sequence[Shape], y: Shape) -> int:
        """Elements its op holds beside its output at its fullest (for the default `ops`)."""
        return 0

    def ops(self, shapes: Sequence[Shape], y: Shape) -> list[tuple[int, tuple[int, ...]]]:
        """The merge as the ops `combine` records (peak memory, memory.py, plays them with the graph's
        liveness): for each, the elements it allocates and what it reads (input i as i, the result of
        op j as len(shapes) + j); the last op's result is the output. Default: one op on every input,
        beside `merge_scratch` temporaries."""
        n, scratch = len(shapes), self.merge_scratch(shapes, y)
        everything = tuple(range(n))
        if not scratch:
            return [(numel(y), everything)]
        return [(scratch, everything), (numel(y), (*everything, n))]

    def combine(self, xs: Sequence[Tensor]) -> Tensor:
        """The merge of `xs` (tensors, or torch.fx proxies: the same code records the graph's op)."""
        raise NotImplementedError

    def source(self, args: Sequence[str]) -> str:
        """The merge as Python source over the names of its inputs (`torch.cat([a, b], 1)`)."""
        raise NotImplementedError

    def module_call(self, p: Any, x: Shape, y: Shape, inplace: bool = False) -> Call:
        raise TypeError(f"`{self.name}` is a graph operation, not a module")

    def describe(self, p: Any, x: Shape, y: Shape) -> str:
        return self.name


def _chain(n: int, y: Shape) -> list[tuple[int, tuple[int, ...]]]:
    """`a + b + c ...` as the binary ops fx records: the first two inputs, then the last result and
    the next input."""
    ops: list[tuple[int, tuple[int, ...]]] = [(numel(y), (0, 1))]
    return ops + [(numel(y), (n + k - 1, k + 1)) for k in range(1, n - 1)]


class Concat(MergeKind):
    name = "concat"
    prefix = "cat"
    doc = "Concatenate outputs along channels (`from: [a, b, ...]`; equal H and W)."
    elementwise = False
    verb = "concat"

    def pair(self, a: Shape, b: Shape) -> Shape:
        if len(a) != len(b) or a[1:] != b[1:]:
            raise ShapeError(f"cannot concat {_fmt(a)} and {_fmt(b)}: spatial sizes differ")
        return (a[0] + b[0], *a[1:])

    def combine(self, xs: Sequence[Tensor]) -> Tensor:
        import torch

        return torch.cat(list(xs), 1)

    def source(self, args: Sequence[str]) -> str:
        return f"torch.cat([{', '.join(args)}], 1)"


class Add(MergeKind):
    name = "add"
    prefix = "add"
    doc = "Add outputs of one shape (`from: [a, b, ...]`)."
    zero_branch_is_identity = True
    accumulates = True
    verb = "add"

    def pair(self, a: Shape, b: Shape) -> Shape:
        if a != b:
            raise ShapeError(f"cannot add {_fmt(a)} and {_fmt(b)}: shapes differ")
        return a

    def ops(self, shapes: Sequence[Shape], y: Shape) -> list[tuple[int, tuple[int, ...]]]:
        return _chain(len(shapes), y)

    def combine(self, xs: Sequence[Tensor]) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def source(self, args: Sequence[str]) -> str:
        return " + ".join(args)


class Mul(MergeKind):
    name = "mul"
    prefix = "mul"
    doc = "Multiply outputs elementwise, broadcasting a [C, 1, 1] gate (`from: [a, b, ...]`)."
    broadcasts = True
    verb = "multiply"

    def pair(self, a: Shape, b: Shape) -> Shape:
        if len(a) != len(b) or not all(p == q or p == 1 or q == 1 for p, q in zip(a, b, strict=True)):
            raise ShapeError(f"cannot multiply {_fmt(a)} and {_fmt(b)}: shapes do not broadcast")
        return tuple(max(p, q) for p, q in zip(a, b, strict=True))

    def ops(self, shapes: Sequence[Shape], y: Shape) -> list[tuple[int, tuple[int, ...]]]:
        return _chain(len(shapes), y)

    def combine(self, xs: Sequence[Tensor]) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out

    def source(self, args: Sequence[str]) -> str:
        return " * ".join(args)


# in the order of the Residual/Parallel modules' merge codes (modules.py)
MERGES: tuple[MergeKind, ...] = (Add(), Concat(), Mul())
