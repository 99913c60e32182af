"""The layer kinds. This module imports no torch (netspec analyses specs without it): `build` does."""

from __future__ import annotations

import inspect
from typing import Any

from netspec.layers import Cost, LayerKind, LayerParams, Shape, ShapeError, Window
from netspec.layers.base import PositiveInt, need_map


class ChannelShuffleParams(LayerParams):
    groups: PositiveInt


class ChannelShuffle(LayerKind):
    name = "channel_shuffle"
    Params = ChannelShuffleParams
    prefix = "shuffle"
    shorthand = "groups"
    doc = "ShuffleNet's channel shuffle (Zhang et al. 2017): C = groups x k channels, transposed."

    def infer(self, p: ChannelShuffleParams, x: Shape) -> Shape:
        c, _, _ = need_map(x, self.name)
        if c % p.groups:
            raise ShapeError(f"channel_shuffle needs channels divisible by groups: {c} by {p.groups}")
        return x

    def cost(self, p: ChannelShuffleParams, x: Shape, y: Shape) -> Cost:
        return Cost()  # a reshape and a transpose: no parameters, no multiply-adds

    def window(self, p: ChannelShuffleParams, x: Shape) -> Window:
        return Window()  # position-wise

    def build(self, p: ChannelShuffleParams, x: Shape, y: Shape) -> Any:
        from .modules import ChannelShuffle as Module

        return Module(p.groups)

    @property
    def module_source(self) -> str:  # read only by `netspec export`, which has torch imported already
        from .modules import ChannelShuffle as Module

        return inspect.getsource(Module)


class Mish(LayerKind):
    name = "mish"
    Params = LayerParams
    prefix = "mish"
    doc = "torch.nn.Mish: x * tanh(softplus(x)) (Misra 2019)."

    def build(self, p: LayerParams, x: Shape, y: Shape) -> Any:
        from torch import nn

        return nn.Mish()  # a torch.nn module: `netspec export` reads its call back by itself
