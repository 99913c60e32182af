"""The layer kinds. This module imports no torch (netspec analyses specs without it): `build` does."""

from __future__ import annotations

import inspect
from typing import Any

from netspec.layers import Cost, LayerKind, LayerParams, Shape, ShapeError, Window
from netspec.layers.base import PositiveInt, need_map


class ShiftParams(LayerParams):
    kernel: PositiveInt = 3


class Shift(LayerKind):
    name = "shift"
    Params = ShiftParams
    prefix = "shift"
    shorthand = "kernel"
    doc = (
        "ShiftNet's shift (Wu et al. 2018): the channels in kernel x kernel groups, each group moved one "
        "way; a spatial mix with no parameters and no multiply-adds."
    )

    def infer(self, p: ShiftParams, x: Shape) -> Shape:
        c, _, _ = need_map(x, self.name)
        if p.kernel % 2 == 0:
            raise ShapeError(f"shift needs an odd kernel (a centre group that stays), got {p.kernel}")
        if c % (p.kernel * p.kernel):
            raise ShapeError(f"shift needs channels divisible by kernel x kernel: {c} by {p.kernel**2}")
        return x

    def cost(self, p: ShiftParams, x: Shape, y: Shape) -> Cost:
        return Cost()  # a padded copy: no parameters, no multiply-adds

    def window(self, p: ShiftParams, x: Shape) -> Window:
        return Window((p.kernel, p.kernel), (1, 1))  # the groups together reach a kernel x kernel window

    def build(self, p: ShiftParams, x: Shape, y: Shape) -> Any:
        from .modules import Shift as Module

        return Module(p.kernel)

    @property
    def module_source(self) -> str:  # read only by `netspec export`, which has torch imported already
        from .modules import Shift as Module

        return inspect.getsource(Module)


class Mish(LayerKind):
    name = "mish"
    Params = LayerParams
    prefix = "mish"
    doc = "torch.nn.Mish: x * tanh(softplus(x)) (Misra 2019)."

    def build(self, p: LayerParams, x: Shape, y: Shape) -> Any:
        from torch import nn

        return nn.Mish()  # a torch.nn module: `netspec export` reads its call back by itself
