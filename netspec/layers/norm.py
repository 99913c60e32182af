"""Normalization layers: batch norm (the fvcore count of eval-mode BN) and local response norm."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Cost, LayerKind, LayerParams, PositiveInt, Shape, need_map, numel


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

    def cost(self, p: BatchNormParams, x: Shape, y: Shape) -> Cost:
        # fvcore counts eval-mode BN as 2 per element with affine, 1 without
        macs = numel(x) * (2 if p.affine else 1)
        return Cost(params=2 * x[0] if p.affine else 0, macs=macs, flops=2 * macs)

    def build(self, p: BatchNormParams, x: Shape, y: Shape) -> Any:
        from torch import nn

        cls = nn.BatchNorm2d if len(x) == 3 else nn.BatchNorm1d
        return cls(x[0], eps=p.eps, momentum=p.momentum, affine=p.affine)


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

    def infer(self, p: LRNParams, x: Shape) -> Shape:
        need_map(x, "lrn")
        return x

    def cost(self, p: LRNParams, x: Shape, y: Shape) -> Cost:
        # fvcore has no LRN handle (0 MACs); FLOPs: a window sum of squares, a power and a divide
        return Cost(flops=numel(x) * (p.size + 3))

    def build(self, p: LRNParams, x: Shape, y: Shape) -> Any:
        from torch import nn

        return nn.LocalResponseNorm(p.size, alpha=p.alpha, beta=p.beta, k=p.k)
