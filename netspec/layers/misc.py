"""Shape-only and regularisation layers: dropout, flatten, identity and the zero-pad shortcut."""

from __future__ import annotations

import inspect

from pydantic import Field

from .base import Cost, LayerKind, LayerParams, PositiveInt, Shape, ShapeError, Window, need_map, numel
from .call import Arg, Call


class DropoutParams(LayerParams):
    p: float = Field(0.5, ge=0, lt=1, allow_inf_nan=False)


class Dropout(LayerKind):
    name = "dropout"
    aliases_input = True
    Params = DropoutParams
    prefix = "dropout"
    shorthand = "p"
    doc = "Inverted dropout (identity at eval time, so no cost)."

    def module_call(self, p: DropoutParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call("nn.Dropout", (Arg("p", float(p.p), field="p"),))


class Flatten(LayerKind):
    name = "flatten"
    aliases_input = True
    Params = LayerParams
    prefix = "flatten"
    doc = "Flatten (C, H, W) to a vector of C*H*W."

    def infer(self, p: LayerParams, x: Shape) -> Shape:
        return (numel(x),)

    def module_call(self, p: LayerParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call("nn.Flatten")  # start_dim=1: the batch dimension stays


class Identity(LayerKind):
    name = "identity"
    aliases_input = True
    Params = LayerParams
    prefix = "identity"
    doc = "Passes its input through (a placeholder that keeps module indices stable)."

    def module_call(self, p: LayerParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call("nn.Identity")


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

    def module_call(self, p: ChannelPadParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "ChannelPad",
            (Arg("extra_channels", y[0] - x[0], widening=True), Arg("stride", p.stride, field="stride")),
        )

    def module_class(self) -> type:
        from ..modules import ChannelPad as Module

        return Module

    @property
    def module_source(self) -> str:  # type: ignore[override]  # a property, as plug-ins may write it
        return inspect.getsource(self.module_class())
