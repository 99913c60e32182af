"""Elementwise activations. FLOPs: one per output element, whatever the function (a convention)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Cost, LayerKind, LayerParams, Shape, UnitRole, numel
from .call import Arg, Call


class ActParams(LayerParams):
    pass


class LeakyParams(LayerParams):
    negative_slope: float = Field(0.01, ge=0, le=1)


class Activation(LayerKind):
    Params = ActParams
    torch_name: str = ""  # the torch.nn class
    inplace_ok = True  # the torch module takes `inplace`
    unit_role = UnitRole.ACT

    def cost(self, p: Any, x: Shape, y: Shape) -> Cost:
        return Cost(flops=numel(y))

    def module_call(self, p: Any, x: Shape, y: Shape, inplace: bool = False) -> Call:
        args = []
        if isinstance(p, LeakyParams):
            args.append(Arg("negative_slope", float(p.negative_slope), default=0.01, field="negative_slope"))
        if self.inplace_ok:
            args.append(Arg("inplace", bool(inplace), default=False))
        return Call(f"nn.{self.torch_name}", tuple(args))


def _act(kind: str, torch_name: str, inplace_ok: bool = True, params: type = ActParams) -> Activation:
    cls = type(
        torch_name,
        (Activation,),
        {
            "name": kind,
            "prefix": kind,
            "torch_name": torch_name,
            "inplace_ok": inplace_ok,
            "Params": params,
            "doc": f"torch.nn.{torch_name}",
        },
    )
    return cls()


ACTIVATIONS = [
    _act("relu", "ReLU"),
    _act("relu6", "ReLU6"),
    _act("leaky_relu", "LeakyReLU", params=LeakyParams),
    _act("tanh", "Tanh", inplace_ok=False),
    _act("sigmoid", "Sigmoid", inplace_ok=False),
    _act("silu", "SiLU"),
    _act("hardswish", "Hardswish"),
    _act("hardsigmoid", "Hardsigmoid"),
    _act("gelu", "GELU", inplace_ok=False),
]
