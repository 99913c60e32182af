"""How merged outputs are shaped: add (equal shapes), mul (broadcasting, as squeeze-and-excitation
scales), concat (along channels: DenseNet, Inception)."""

from __future__ import annotations

from ..layers.base import Shape


def fmt(shape: Shape) -> str:
    return "x".join(map(str, shape))


def broadcasts(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(p == q or p == 1 or q == 1 for p, q in zip(a, b, strict=True))


def merged_shape(merge: str, a: Shape, b: Shape) -> Shape | str:
    """The shape of `a` merged with `b`, or why they cannot be merged."""
    if merge == "add":
        return a if a == b else f"cannot add {fmt(a)} and {fmt(b)}: shapes differ"
    if merge == "mul":
        if broadcasts(a, b):
            return tuple(max(p, q) for p, q in zip(a, b, strict=True))
        return f"cannot multiply {fmt(a)} and {fmt(b)}: shapes do not broadcast"
    if len(a) != len(b) or a[1:] != b[1:]:
        return f"cannot concat {fmt(a)} and {fmt(b)}: spatial sizes differ"
    return (a[0] + b[0], *a[1:])


def merge_hint(merge: str) -> str:
    if merge == "add":
        return "make the body end at the input's shape, or use `shortcut: projection`"
    return "check the strides and paddings of the branches"
