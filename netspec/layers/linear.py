"""Fully connected layer (torch.nn.Linear) on a flat vector."""

from __future__ import annotations

from .base import Cost, LayerKind, LayerParams, PositiveInt, Shape, ShapeError
from .call import Arg, Call, InitStep
from .conv import Init
from .init_schemes import DEFAULT_INIT, InitScheme, weight_init


class LinearParams(LayerParams):
    out: PositiveInt
    bias: bool = True
    init: Init = DEFAULT_INIT


class Linear(LayerKind):
    name = "linear"
    Params = LinearParams
    prefix = "fc"
    shorthand = "out"
    doc = "Fully connected layer (torch.nn.Linear)."
    fresh_output = True
    overwritable_output = True
    matmul = True
    init_default = "linear"
    classes_arg = "out_features"

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

    def module_call(self, p: LinearParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "nn.Linear",
            (
                Arg("in_features", x[0], keyword=False),
                Arg("out_features", p.out, keyword=False, field="out"),
                Arg("bias", bool(p.bias), default=True, field="bias"),
            ),
        )

    def init_steps(self, p: LinearParams, scheme: InitScheme, zero_init: bool) -> tuple[InitStep, ...]:
        return weight_init(scheme, p.bias)
