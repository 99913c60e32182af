"""Channel rearrangements of ShuffleNet v2 and CSP networks: keep one of equal channel parts
(`x.chunk(parts, 1)[index]`) and the channel shuffle (Zhang et al. 2017). No parameters, no MACs."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import LayerKind, LayerParams, NonNegInt, PositiveInt, Shape, ShapeError, need_map
from .call import Arg, Call
from .shipped import ShippedModuleKind


class ChannelSplitParams(LayerParams):
    parts: PositiveInt = Field(2, description="equal channel parts (2 in ShuffleNet v2)")
    index: NonNegInt = Field(0, description="the part kept, 0-based")

    @model_validator(mode="after")
    def _index_in_range(self) -> ChannelSplitParams:
        if self.index >= self.parts:
            raise ValueError(f"index {self.index} is not one of the {self.parts} parts (0..{self.parts - 1})")
        return self


class ChannelSplit(ShippedModuleKind):
    name = "channel_split"
    aliases_input = True  # a view: x.chunk(parts, 1)[index]
    Params = ChannelSplitParams
    prefix = "split"
    shorthand = "index"
    module_class_name = "ChannelSplit"
    doc = "Keep part `index` of `parts` equal channel groups (ShuffleNet v2's x.chunk(2, dim=1))."

    def infer(self, p: ChannelSplitParams, x: Shape) -> Shape:
        c = x[0]
        if c % p.parts:
            raise ShapeError(f"channel_split needs channels divisible by parts: {c} by {p.parts}")
        return (c // p.parts, *x[1:])

    def module_call(self, p: ChannelSplitParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "ChannelSplit",
            (
                Arg("parts", p.parts, keyword=False, field="parts"),
                Arg("index", p.index, keyword=False, field="index"),
            ),
        )


class ChannelShuffleParams(LayerParams):
    groups: PositiveInt = 2


class ChannelShuffle(LayerKind):
    name = "channel_shuffle"
    Params = ChannelShuffleParams
    prefix = "shuffle"
    shorthand = "groups"
    doc = "ShuffleNet's channel shuffle (torch.nn.ChannelShuffle): C = groups x k channels, transposed."

    def infer(self, p: ChannelShuffleParams, x: Shape) -> Shape:
        c, _, _ = need_map(x, self.name)
        if c % p.groups:
            raise ShapeError(f"channel_shuffle needs channels divisible by groups: {c} by {p.groups}")
        return x

    def module_call(self, p: ChannelShuffleParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call("nn.ChannelShuffle", (Arg("groups", p.groups, keyword=False, field="groups"),))
