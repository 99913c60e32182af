"""How merged outputs are shaped: add (equal shapes), mul (broadcasting, as squeeze-and-excitation
scales), concat (along channels: DenseNet, Inception). The rules are the merge kinds' (layers/merge.py)."""

from __future__ import annotations

from ..layers import KINDS, ShapeError
from ..layers.base import Shape
from ..layers.merge import MergeKind


def fmt(shape: Shape) -> str:
    return "x".join(map(str, shape))


def broadcasts(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(p == q or p == 1 or q == 1 for p, q in zip(a, b, strict=True))


def merge_kind(merge: str) -> MergeKind:
    kind = KINDS[merge]
    assert isinstance(kind, MergeKind), merge  # BlockDef's `merge` names only merge kinds
    return kind


def merged_shape(merge: str, a: Shape, b: Shape) -> Shape | str:
    """The shape of `a` merged with `b`, or why they cannot be merged."""
    try:
        return merge_kind(merge).pair(a, b)
    except ShapeError as exc:
        return str(exc)


def merge_hint(merge: str) -> str:
    kind = merge_kind(merge)
    if kind.elementwise and not kind.broadcasts:
        return "make the body end at the input's shape, or use `shortcut: projection`"
    return "check the strides and paddings of the branches"
