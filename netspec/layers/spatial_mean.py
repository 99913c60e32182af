"""The spatial mean `x.mean((2, 3), keepdim)` as timm writes global pooling in heads and SE modules.
fvcore has no handle for `aten::mean`: 0 MACs, unlike the global average pool (`avgpool: global`,
adaptive_avg_pool2d), which fvcore counts as one per input element."""

from __future__ import annotations

from pydantic import Field

from .base import Cost, LayerParams, Shape, Window, need_map, numel
from .call import Arg, Call
from .shipped import ShippedModuleKind


class SpatialMeanParams(LayerParams):
    keepdim: bool = Field(True, description="keep a (C, 1, 1) map; false gives a vector of C")


class SpatialMean(ShippedModuleKind):
    name = "spatial_mean"
    Params = SpatialMeanParams
    prefix = "mean"
    shorthand = "keepdim"
    module_class_name = "SpatialMean"
    doc = "Mean over H and W (x.mean((2, 3), keepdim)); fvcore counts it as 0 MACs."
    fresh_output = True

    def infer(self, p: SpatialMeanParams, x: Shape) -> Shape:
        c, _, _ = need_map(x, self.name)
        return (c, 1, 1) if p.keepdim else (c,)

    def cost(self, p: SpatialMeanParams, x: Shape, y: Shape) -> Cost:
        return Cost(flops=numel(x))  # the sum; the division per channel is negligible

    def window(self, p: SpatialMeanParams, x: Shape) -> Window:
        return Window(is_global=True)

    def module_call(self, p: SpatialMeanParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call("SpatialMean", (Arg("keepdim", bool(p.keepdim), default=True, field="keepdim"),))
