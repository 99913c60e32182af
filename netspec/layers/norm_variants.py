"""Normalizations beyond batch norm: layer norm over channels (ConvNeXt), group norm (Wu & He 2018) and
frozen batch norm (detection backbones). Costs as fvcore counts them: its layer_norm and group_norm
handles count 5 per element with affine terms, 4 without; frozen batch norm is a multiply and an add,
which fvcore does not count."""

from __future__ import annotations

from pydantic import Field

from .base import (
    Cost,
    LayerKind,
    LayerParams,
    PositiveInt,
    Shape,
    ShapeError,
    UnitRole,
    Window,
    need_map,
    numel,
)
from .call import Arg, Call, InitStep
from .init_schemes import InitScheme
from .shipped import ShippedModuleKind


def _norm_cost(x: Shape, affine: bool) -> Cost:
    macs = numel(x) * (5 if affine else 4)
    return Cost(params=2 * x[0] if affine else 0, macs=macs, flops=2 * macs)


class LayerNorm2dParams(LayerParams):
    eps: float = Field(1e-6, gt=0, lt=1, description="1e-6 as in ConvNeXt")
    affine: bool = True


class LayerNorm2d(ShippedModuleKind):
    name = "layernorm2d"
    Params = LayerNorm2dParams
    prefix = "norm"
    module_class_name = "LayerNorm2d"
    doc = "LayerNorm over the channels of each position (torchvision's ConvNeXt LayerNorm2d)."
    fresh_output = True
    unit_role = UnitRole.NORM

    def infer(self, p: LayerNorm2dParams, x: Shape) -> Shape:
        need_map(x, self.name)
        return x

    def scratch(self, p: LayerNorm2dParams, x: Shape, y: Shape) -> int:
        return 2 * y[1] * y[2]  # F.layer_norm's mean and rstd, one each per position

    def cost(self, p: LayerNorm2dParams, x: Shape, y: Shape) -> Cost:
        return _norm_cost(x, p.affine)

    def module_call(self, p: LayerNorm2dParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "LayerNorm2d",
            (
                Arg("normalized_shape", x[0], keyword=False),
                Arg("eps", float(p.eps), default=1e-5, field="eps"),
                Arg("elementwise_affine", bool(p.affine), default=True, field="affine"),
            ),
        )


class GroupNormParams(LayerParams):
    groups: PositiveInt = Field(32, description="channel groups (32 in Wu & He 2018)")
    eps: float = Field(1e-5, gt=0, lt=1)
    affine: bool = True
    zero_init: bool = Field(False, description="start gamma at 0 (set by the zero_gamma trick)")


class GroupNorm(LayerKind):
    name = "groupnorm"
    Params = GroupNormParams
    prefix = "gn"
    shorthand = "groups"
    doc = "Group normalization (torch.nn.GroupNorm): statistics over groups of channels per sample."
    fresh_output = True
    unit_role = UnitRole.NORM
    zero_init_ok = True

    def infer(self, p: GroupNormParams, x: Shape) -> Shape:
        c, h, w = need_map(x, self.name)
        if c % p.groups:
            raise ShapeError(f"groupnorm needs channels divisible by groups: {c} by {p.groups}")
        if c // p.groups * h * w == 1:  # torch refuses it (F.group_norm's batch-size check) at batch 1
            raise ShapeError(
                f"each of the {p.groups} groups of a {c}x{h}x{w} map holds a single value:"
                " nothing to normalise"
            )
        return x

    def scratch(self, p: GroupNormParams, x: Shape, y: Shape) -> int:
        return 2 * p.groups  # native_group_norm's mean and rstd, one each per group

    def cost(self, p: GroupNormParams, x: Shape, y: Shape) -> Cost:
        return _norm_cost(x, p.affine)

    def window(self, p: GroupNormParams, x: Shape) -> Window:
        # unlike eval-mode batch norm, its statistics are the sample's own, over the whole map: every
        # output pixel depends on every input pixel of its group
        return Window(is_global=True)

    def describe(self, p: GroupNormParams, x: Shape, y: Shape) -> str:
        return self.name

    def module_call(self, p: GroupNormParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "nn.GroupNorm",
            (
                Arg("num_groups", p.groups, keyword=False, field="groups"),
                Arg("num_channels", x[0], keyword=False),
                Arg("eps", float(p.eps), default=1e-5, field="eps"),
                Arg("affine", bool(p.affine), default=True, field="affine"),
            ),
        )

    def init_steps(self, p: GroupNormParams, scheme: InitScheme, zero_init: bool) -> tuple[InitStep, ...]:
        if not p.affine or not (zero_init or p.zero_init):
            return ()  # torch's own init: gamma 1, beta 0
        return (InitStep("zeros_", "weight"),)  # zero-gamma: the residual block starts as identity


class FrozenBatchNormParams(LayerParams):
    eps: float = Field(1e-5, gt=0, lt=1)


class FrozenBatchNorm(ShippedModuleKind):
    name = "frozen_batchnorm"
    Params = FrozenBatchNormParams
    prefix = "bn"
    module_class_name = "FrozenBatchNorm2d"
    doc = (
        "Batch norm with fixed statistics and affine terms, all buffers, no parameters "
        "(torchvision.ops.FrozenBatchNorm2d; its state_dict keys)."
    )
    fresh_output = True
    unit_role = UnitRole.NORM

    def infer(self, p: FrozenBatchNormParams, x: Shape) -> Shape:
        need_map(x, self.name)
        return x

    def cost(self, p: FrozenBatchNormParams, x: Shape, y: Shape) -> Cost:
        return Cost(flops=2 * numel(x))  # x * scale + bias: fvcore counts neither mul nor add

    def scratch(self, p: FrozenBatchNormParams, x: Shape, y: Shape) -> int:
        return numel(y) + 2 * y[0]  # `x * scale + bias`: the product, beside per-channel scale and bias

    def module_call(self, p: FrozenBatchNormParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "FrozenBatchNorm2d",
            (Arg("num_features", x[0], keyword=False), Arg("eps", float(p.eps), default=1e-5, field="eps")),
        )
