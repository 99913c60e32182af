"""Selective-kernel selection (Li et al. 2019, "Selective Kernel Networks"): M branch outputs weighted
by a softmax over the branches and summed, as timm's `SelectiveKernelAttn` ends (the `view` to
[N, M, C, 1, 1] and `torch.softmax(x, dim=1)`) and `SelectiveKernel.forward` continues
(`torch.stack(paths, 1) * attn`, `.sum(1)`).

`- select: {from: [path0, path1, logits]}` reads the M branches (equal shapes [C, H, W]) and, last,
their attention logits [M*C, 1, 1] (timm's `fc_select` conv: channel m*C + c is branch m's logit for
channel c), or [M*C, H, W] for a selection per position. Like the other merges it is a graph
operation, not a module: the softmax and the weighted sum have no parameters, so a spec that writes
out timm's block keeps timm's state_dict names. fvcore has no handle for softmax, mul, stack or sum:
0 MACs. The receptive field is the widest input's (the logits of a spatial mean see the whole image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from .base import Cost, Shape, ShapeError, numel
from .merge import MergeKind, _fmt

if TYPE_CHECKING:
    from torch import Tensor


class Select(MergeKind):
    name = "select"
    prefix = "select"
    doc = (
        "Selective-kernel selection (SKNet): softmax over M branches of logits [M*C, 1, 1] given last, "
        "then the weighted sum of the branches (`from: [b1, ..., bM, logits]`)."
    )
    min_inputs: ClassVar[int] = 3  # two branches at least, and the logits
    verb = "select from"

    def infer_merge(self, shapes: Sequence[Shape]) -> Shape:
        if len(shapes) < self.min_inputs:
            raise ShapeError(
                f"`select` reads M >= 2 branch outputs and then their logits, got {len(shapes)} inputs"
            )
        *branches, logits = shapes
        first = branches[0]
        if len(first) != 3:
            raise ShapeError(f"`select` needs (C, H, W) branch outputs, got {_fmt(first)}")
        for other in branches[1:]:
            if other != first:
                raise ShapeError(f"cannot select from {_fmt(first)} and {_fmt(other)}: branch shapes differ")
        c, h, w = first
        m = len(branches)
        if len(logits) != 3 or logits[0] != m * c or logits[1:] not in ((1, 1), (h, w)):
            raise ShapeError(
                f"the logits (the last input) must be {m * c}x1x1 or {m * c}x{h}x{w} "
                f"({m} branches x {c} channels), got {_fmt(logits)}"
            )
        return first

    def merge_cost(self, shapes: Sequence[Shape], y: Shape) -> Cost:
        m = len(shapes) - 1
        # softmax: an exp, a sum and a division per logit; then M products and M - 1 sums per output
        return Cost(flops=3 * numel(shapes[-1]) + (2 * m - 1) * numel(y))

    def ops(self, shapes: Sequence[Shape], y: Shape) -> list[tuple[int, tuple[int, ...]]]:
        # as `combine` records them: the softmax of the logits (a view of them, input M), the stack of
        # the M branches, the weighted product (reads ops 1 and 0), and its sum over the branches
        n = len(shapes)
        m = n - 1
        return [
            (numel(shapes[-1]), (m,)),
            (m * numel(y), tuple(range(m))),
            (m * numel(y), (n + 1, n)),
            (numel(y), (n + 2,)),
        ]

    def combine(self, xs: Sequence[Tensor]) -> Tensor:
        import torch

        *branches, logits = xs
        # [N, M*C, h, w] -> [N, M, C, h, w]: timm's `view(B, num_paths, C // num_paths, H, W)`
        weights = torch.softmax(logits.unflatten(1, (len(branches), -1)), dim=1)
        return (torch.stack(list(branches), 1) * weights).sum(1)

    def source(self, args: Sequence[str]) -> str:
        *branches, logits = args
        return (
            f"(torch.stack([{', '.join(branches)}], 1)"
            f" * torch.softmax({logits}.unflatten(1, ({len(branches)}, -1)), dim=1)).sum(1)"
        )
