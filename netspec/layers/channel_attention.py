"""Efficient channel attention (ECA, Wang et al. 2020) as one kind whose module is the whole attention, as
timm's EcaModule: spatial mean, a 1-D convolution across channels, a sigmoid gate times the input."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from .base import Cost, LayerParams, PositiveInt, Shape, Window, need_map, numel
from .call import Arg, Call
from .shipped import ShippedModuleKind


class EcaParams(LayerParams):
    kernel: PositiveInt | Literal["adaptive"] = Field(
        "adaptive",
        description="odd 1-D kernel; 'adaptive': from the channels, k = |(log2 C + b) / gamma|_odd",
    )
    gamma: PositiveInt = 2
    beta: PositiveInt = 1

    @field_validator("kernel")
    @classmethod
    def _odd(cls, k: int | str) -> int | str:
        if isinstance(k, int) and k % 2 == 0:
            raise ValueError(f"kernel {k} must be odd (the 1-D convolution keeps the channel count)")
        return k


def eca_kernel(p: EcaParams, channels: int) -> int:
    """The paper's adaptive kernel, computed as timm and the authors' code compute it (at least 3)."""
    if isinstance(p.kernel, int):
        return p.kernel
    t = int(abs(math.log2(channels) + p.beta) / p.gamma)
    return max(t if t % 2 else t + 1, 3)


class EfficientChannelAttention(ShippedModuleKind):
    name = "eca"
    Params = EcaParams
    prefix = "eca"
    shorthand = "kernel"
    module_class_name = "EfficientChannelAttention"
    doc = "ECA channel attention: mean over H, W -> 1-D conv across channels -> sigmoid -> times the input."
    matmul = True  # its MACs are its 1-D convolution's (fvcore and FlopCounterMode count no mean)

    def infer(self, p: EcaParams, x: Shape) -> Shape:
        need_map(x, self.name)
        return x

    def cost(self, p: EcaParams, x: Shape, y: Shape) -> Cost:
        k = eca_kernel(p, x[0])
        macs = x[0] * k  # the 1-D convolution over C positions; fvcore counts neither mean nor gate
        return Cost(params=k, macs=macs, flops=2 * macs + numel(x) + 2 * x[0] + numel(y))

    def window(self, p: EcaParams, x: Shape) -> Window:
        return Window(is_global=True)  # the gate of every channel reads the whole map

    def scratch(self, p: EcaParams, x: Shape, y: Shape) -> int:
        # the mean, the conv's result and the sigmoid gate (C each) live together before the output
        # exists; then the gate alone stays beside it
        return max(x[0], 3 * x[0] - numel(y))

    def module_call(self, p: EcaParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call("EfficientChannelAttention", (Arg("kernel_size", eca_kernel(p, x[0]), field="kernel"),))
