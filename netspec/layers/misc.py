"""Shape-only and regularisation layers: dropout, flatten, identity and the zero-pad shortcut."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Cost, LayerKind, LayerParams, PositiveInt, Shape, ShapeError, Window, need_map, numel


class DropoutParams(LayerParams):
    p: float = Field(0.5, ge=0, lt=1, allow_inf_nan=False)


class Dropout(LayerKind):
    name = "dropout"
    Params = DropoutParams
    prefix = "dropout"
    shorthand = "p"
    doc = "Inverted dropout (identity at eval time, so no cost)."

    def build(self, p: DropoutParams, x: Shape, y: Shape) -> Any:
        from torch import nn

        return nn.Dropout(p.p)


class Flatten(LayerKind):
    name = "flatten"
    Params = LayerParams
    prefix = "flatten"
    doc = "Flatten (C, H, W) to a vector of C*H*W."

    def infer(self, p: LayerParams, x: Shape) -> Shape:
        return (numel(x),)

    def build(self, p: LayerParams, x: Shape, y: Shape) -> Any:
        from torch import nn

        return nn.Flatten(1)


class Identity(LayerKind):
    name = "identity"
    Params = LayerParams
    prefix = "identity"
    doc = "Passes its input through (a placeholder that keeps module indices stable)."

    def build(self, p: LayerParams, x: Shape, y: Shape) -> Any:
        from torch import nn

        return nn.Identity()


class ChannelPadParams(LayerParams):
    out: PositiveInt
    stride: PositiveInt = 1


class ChannelPad(LayerKind):
    name = "channel_pad"
    Params = ChannelPadParams
    prefix = "pad"
    doc = "ResNet option-A shortcut: subsample by `stride`, zero-pad channels up to `out`."

    def infer(self, p: ChannelPadParams, x: Shape) -> Shape:
        c, h, w = need_map(x, "channel_pad")
        if p.out < c:
            raise ShapeError(f"channel_pad cannot shrink {c} channels to {p.out}")
        return (p.out, -(-h // p.stride), -(-w // p.stride))

    def window(self, p: ChannelPadParams, x: Shape) -> Window:
        return Window((1, 1), (p.stride, p.stride))

    def cost(self, p: ChannelPadParams, x: Shape, y: Shape) -> Cost:
        return Cost()

    def build(self, p: ChannelPadParams, x: Shape, y: Shape) -> Any:
        from ..modules import ChannelPad as Module

        return Module(y[0] - x[0], p.stride)
