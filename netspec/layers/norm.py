"""Normalization layers: batch norm (the fvcore count of eval-mode BN) and local response norm."""

from __future__ import annotations

from pydantic import Field

from .base import Cost, LayerKind, LayerParams, PositiveInt, Shape, UnitRole, need_map, numel
from .call import Arg, Call, InitStep
from .init_schemes import InitScheme


class BatchNormParams(LayerParams):
    eps: float = Field(1e-5, gt=0, lt=1)
    momentum: float = Field(0.1, ge=0, le=1)
    affine: bool = True
    zero_init: bool = Field(False, description="start gamma at 0 (set by the zero_gamma trick)")


class BatchNorm(LayerKind):
    name = "batchnorm"
    Params = BatchNormParams
    prefix = "bn"
    doc = "Batch normalization (BatchNorm2d on maps, BatchNorm1d on vectors)."
    fresh_output = True
    overwritable_output = True
    unit_role = UnitRole.NORM
    zero_init_ok = True

    def cost(self, p: BatchNormParams, x: Shape, y: Shape) -> Cost:
        # fvcore counts eval-mode BN as 2 per element with affine, 1 without
        macs = numel(x) * (2 if p.affine else 1)
        return Cost(params=2 * x[0] if p.affine else 0, macs=macs, flops=2 * macs)

    def module_call(self, p: BatchNormParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "nn.BatchNorm2d" if len(x) == 3 else "nn.BatchNorm1d",
            (
                Arg("num_features", x[0], keyword=False),
                Arg("eps", float(p.eps), default=1e-5, field="eps"),
                Arg("momentum", float(p.momentum), default=0.1, field="momentum"),
                Arg("affine", bool(p.affine), default=True, field="affine"),
            ),
        )

    def init_steps(self, p: BatchNormParams, scheme: InitScheme, zero_init: bool) -> tuple[InitStep, ...]:
        if not p.affine:
            return ()
        gamma = 0.0 if zero_init or p.zero_init else 1.0  # zero-gamma: the block starts as identity
        return (
            InitStep("constant_", "weight", (Arg("val", gamma, keyword=False),)),
            InitStep("constant_", "bias", (Arg("val", 0.0, keyword=False),)),
        )


class LRNParams(LayerParams):
    size: PositiveInt = 5
    alpha: float = Field(1e-4, ge=0)
    beta: float = Field(0.75, ge=0)
    k: float = Field(1.0, ge=0)


class LocalResponseNorm(LayerKind):
    name = "lrn"
    Params = LRNParams
    prefix = "lrn"
    shorthand = "size"
    doc = "Local response normalization across channels (AlexNet, GoogLeNet)."
    fresh_output = True

    def infer(self, p: LRNParams, x: Shape) -> Shape:
        need_map(x, "lrn")
        return x

    def cost(self, p: LRNParams, x: Shape, y: Shape) -> Cost:
        # fvcore has no LRN handle (0 MACs); FLOPs: a window sum of squares, a power and a divide
        return Cost(flops=numel(x) * (p.size + 3))

    def module_call(self, p: LRNParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "nn.LocalResponseNorm",
            (
                Arg("size", p.size, keyword=False, field="size"),
                Arg("alpha", float(p.alpha), default=1e-4, field="alpha"),
                Arg("beta", float(p.beta), default=0.75, field="beta"),
                Arg("k", float(p.k), default=1.0, field="k"),
            ),
        )
