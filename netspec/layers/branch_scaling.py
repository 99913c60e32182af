"""What modern residual blocks do to their branch before the add: a learnable per-channel scale (layer
scale, Touvron et al. 2021; ConvNeXt) and stochastic depth (drop path, Huang et al. 2016). Neither is
counted by fvcore (a multiply; stochastic depth is the identity in eval mode)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Cost, LayerParams, Shape, need_map, numel
from .call import Arg, Call
from .shipped import ShippedModuleKind


class LayerScaleParams(LayerParams):
    init_value: float = Field(
        1e-6, allow_inf_nan=False, description="gamma's initial value (1e-6 in ConvNeXt)"
    )
    layout: Literal["torchvision", "timm"] = Field(
        "torchvision", description="gamma of shape [C, 1, 1] (torchvision's CNBlock) or [C] (timm)"
    )


class LayerScale(ShippedModuleKind):
    name = "layer_scale"
    Params = LayerScaleParams
    prefix = "layer_scale"
    shorthand = "init_value"
    module_class_name = "LayerScale"
    doc = "A learnable per-channel scale `gamma` (layer scale, ConvNeXt), initialised to `init_value`."

    def infer(self, p: LayerScaleParams, x: Shape) -> Shape:
        need_map(x, self.name)
        return x

    def cost(self, p: LayerScaleParams, x: Shape, y: Shape) -> Cost:
        return Cost(params=x[0], flops=numel(x))  # fvcore does not count the multiply

    def module_call(self, p: LayerScaleParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "LayerScale",
            (
                Arg("channels", x[0], keyword=False),
                Arg("init_value", float(p.init_value), default=1e-6, field="init_value"),
                Arg("flat", p.layout == "timm", default=False, field="layout"),
            ),
        )


class DropPathParams(LayerParams):
    p: float = Field(
        0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="drop probability; often `${rate * block_index / (num_blocks - 1)}` in a stage",
    )


class DropPath(ShippedModuleKind):
    name = "drop_path"
    aliases_input = True  # the identity in eval mode
    Params = DropPathParams
    prefix = "drop_path"
    shorthand = "p"
    module_class_name = "StochasticDepth"
    doc = (
        "Stochastic depth (torchvision.ops.StochasticDepth(p, 'row')): in training each sample is zeroed "
        "with probability p, survivors scaled by 1/(1-p); the identity in eval mode."
    )

    def module_call(self, p: DropPathParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call("StochasticDepth", (Arg("p", float(p.p), keyword=False, field="p"),))
