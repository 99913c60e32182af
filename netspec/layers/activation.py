"""Elementwise activations. FLOPs: one per output element, whatever the function (a convention)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Cost, LayerKind, LayerParams, Shape, numel


class ActParams(LayerParams):
    pass


class LeakyParams(LayerParams):
    negative_slope: float = Field(0.01, ge=0, le=1)


class Activation(LayerKind):
    Params = ActParams
    torch_name: str = ""
    inplace_ok: bool = True  # the torch module takes `inplace`

    def cost(self, p: Any, x: Shape, y: Shape) -> Cost:
        return Cost(flops=numel(y))

    def build(self, p: Any, x: Shape, y: Shape, inplace: bool = False) -> Any:
        from torch import nn

        cls = getattr(nn, self.torch_name)
        kwargs: dict[str, Any] = {}
        if isinstance(p, LeakyParams):
            kwargs["negative_slope"] = p.negative_slope
        if self.inplace_ok and inplace:
            kwargs["inplace"] = True
        return cls(**kwargs)


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
