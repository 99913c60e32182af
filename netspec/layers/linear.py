"""Fully connected layer (torch.nn.Linear) on a flat vector."""

from __future__ import annotations

from typing import Any

from .base import Cost, LayerKind, LayerParams, PositiveInt, Shape, ShapeError
from .conv import Init


class LinearParams(LayerParams):
    out: PositiveInt
    bias: bool = True
    init: Init = "default"


class Linear(LayerKind):
    name = "linear"
    Params = LinearParams
    prefix = "fc"
    shorthand = "out"
    doc = "Fully connected layer (torch.nn.Linear)."

    def infer(self, p: LinearParams, x: Shape) -> Shape:
        if len(x) != 1:
            raise ShapeError(
                f"linear needs a flat vector but gets a {'x'.join(map(str, x))} map; "
                "add `flatten` (after a global pool) before it"
            )
        return (p.out,)

    def cost(self, p: LinearParams, x: Shape, y: Shape) -> Cost:
        macs = x[0] * p.out
        return Cost(
            params=macs + (p.out if p.bias else 0),
            macs=macs,
            flops=2 * macs + (p.out if p.bias else 0),
        )

    def build(self, p: LinearParams, x: Shape, y: Shape) -> Any:
        from torch import nn

        return nn.Linear(x[0], p.out, bias=p.bias)
