"""Max, average, adaptive and global average pooling (PyTorch rounding; ceil_mode as in Caffe ports)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from .base import (
    Cost,
    LayerKind,
    LayerParams,
    NonNegInt,
    Pair,
    Shape,
    ShapeError,
    Window,
    need_map,
    numel,
    pair,
    window_text,
)
from .call import Arg, Call, collapse
from .conv import out_size


class PoolParams(LayerParams):
    kernel: Pair | Literal["global"] = 2
    stride: Pair | None = Field(None, description="default: the kernel size")
    padding: NonNegInt | tuple[NonNegInt, NonNegInt] = 0
    ceil_mode: bool = False


class MaxPoolParams(PoolParams):
    dilation: Pair = 1


class AvgPoolParams(PoolParams):
    count_include_pad: bool = True

    @model_validator(mode="after")
    def _global_takes_no_window(self) -> AvgPoolParams:
        if self.kernel == "global" and (self.stride is not None or self.padding != 0):
            raise ValueError("a global average pool takes no stride or padding")
        return self


def _kernel(p: PoolParams) -> tuple[int, int]:
    """The window of a pool that is not global (the kinds take `kernel: global` first)."""
    if p.kernel == "global":
        raise ValueError("a global pool has no kernel")
    return pair(p.kernel)


def _pool_shape(kind: str, p: PoolParams, x: Shape, dilation: tuple[int, int]) -> Shape:
    c, h, w = need_map(x, kind)
    k = _kernel(p)
    s = pair(p.stride) if p.stride is not None else k
    pad = pair(p.padding)
    ext = (dilation[0] * (k[0] - 1) + 1, dilation[1] * (k[1] - 1) + 1)
    if pad[0] > k[0] // 2 or pad[1] > k[1] // 2:  # torch compares the kernel size, not its dilated extent
        raise ShapeError(f"padding {pad} must be at most half the kernel {k} (PyTorch rule)")
    if not p.ceil_mode and (ext[0] > h + 2 * pad[0] or ext[1] > w + 2 * pad[1]):
        # with ceil_mode PyTorch keeps one window that starts inside the input (out_size decides)
        raise ShapeError(
            f"kernel {ext[0]}x{ext[1]} is larger than the padded input {h + 2 * pad[0]}x{w + 2 * pad[1]}"
            f" (input {h}x{w}, padding {pad[0]}x{pad[1]})"
        )
    return (
        c,
        out_size(h, k[0], s[0], pad[0], dilation[0], p.ceil_mode),
        out_size(w, k[1], s[1], pad[1], dilation[1], p.ceil_mode),
    )


def _window(p: PoolParams, dilation: tuple[int, int]) -> Window:
    k = _kernel(p)
    s = pair(p.stride) if p.stride is not None else k
    return Window((dilation[0] * (k[0] - 1) + 1, dilation[1] * (k[1] - 1) + 1), s)


def _window_args(p: PoolParams) -> tuple[Arg, ...]:
    kernel = collapse(_kernel(p))
    stride = collapse(pair(p.stride)) if p.stride is not None else kernel
    return (
        Arg("kernel_size", kernel, field="kernel"),
        Arg("stride", stride, default=kernel, field="stride"),
        Arg("padding", collapse(pair(p.padding)), default=0, field="padding"),
    )


class MaxPool(LayerKind):
    name = "maxpool"
    Params = MaxPoolParams
    prefix = "maxpool"
    shorthand = "kernel"
    doc = "Max pooling (torch.nn.MaxPool2d)."
    fresh_output = True

    def infer(self, p: MaxPoolParams, x: Shape) -> Shape:
        if p.kernel == "global":
            c, _, _ = need_map(x, "maxpool")
            return (c, 1, 1)
        return _pool_shape("maxpool", p, x, pair(p.dilation))

    def cost(self, p: MaxPoolParams, x: Shape, y: Shape) -> Cost:
        if p.kernel == "global":
            return Cost(flops=numel(x))
        k = pair(p.kernel)
        return Cost(flops=numel(y) * (k[0] * k[1] - 1))  # comparisons; fvcore counts none

    def window(self, p: MaxPoolParams, x: Shape) -> Window:
        if p.kernel == "global":
            return Window(is_global=True)
        return _window(p, pair(p.dilation))

    def describe(self, p: MaxPoolParams, x: Shape, y: Shape) -> str:
        w = self.window(p, x)
        return f"global {self.name}" if w.is_global else f"{self.name} {window_text(w)}"

    def module_call(self, p: MaxPoolParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        if p.kernel == "global":
            return Call("nn.AdaptiveMaxPool2d", (Arg("output_size", 1, keyword=False),))
        args = (*_window_args(p), Arg("dilation", collapse(pair(p.dilation)), default=1, field="dilation"))
        return Call(
            "nn.MaxPool2d", (*args, Arg("ceil_mode", bool(p.ceil_mode), default=False, field="ceil_mode"))
        )


class AvgPool(LayerKind):
    name = "avgpool"
    Params = AvgPoolParams
    prefix = "avgpool"
    shorthand = "kernel"
    doc = "Average pooling; `avgpool: global` is global average pooling (AdaptiveAvgPool2d(1))."
    fresh_output = True

    def infer(self, p: AvgPoolParams, x: Shape) -> Shape:
        if p.kernel == "global":
            c, _, _ = need_map(x, "avgpool")
            return (c, 1, 1)
        return _pool_shape("avgpool", p, x, (1, 1))

    def cost(self, p: AvgPoolParams, x: Shape, y: Shape) -> Cost:
        if p.kernel == "global":  # an adaptive average pool: fvcore counts one per input element
            return Cost(macs=numel(x), flops=numel(x) + numel(y))
        k = pair(p.kernel)
        return Cost(flops=numel(y) * k[0] * k[1])  # fvcore has no avg_pool2d handle

    def window(self, p: AvgPoolParams, x: Shape) -> Window:
        if p.kernel == "global":
            return Window(is_global=True)
        return _window(p, (1, 1))

    def describe(self, p: AvgPoolParams, x: Shape, y: Shape) -> str:
        w = self.window(p, x)
        return f"global {self.name}" if w.is_global else f"{self.name} {window_text(w)}"

    def module_call(self, p: AvgPoolParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        if p.kernel == "global":
            return Call("nn.AdaptiveAvgPool2d", (Arg("output_size", 1, keyword=False),))
        return Call(
            "nn.AvgPool2d",
            (
                *_window_args(p),
                Arg("ceil_mode", bool(p.ceil_mode), default=False, field="ceil_mode"),
                Arg("count_include_pad", bool(p.count_include_pad), default=True, field="count_include_pad"),
            ),
        )


class AdaptiveAvgPoolParams(LayerParams):
    size: Pair = 1


class AdaptiveAvgPool(LayerKind):
    name = "adaptive_avgpool"
    Params = AdaptiveAvgPoolParams
    prefix = "avgpool"
    shorthand = "size"
    doc = "Adaptive average pooling to a fixed output size (VGG's and AlexNet's 7x7 / 6x6)."
    fresh_output = True

    def infer(self, p: AdaptiveAvgPoolParams, x: Shape) -> Shape:
        c, _, _ = need_map(x, "adaptive_avgpool")
        return (c, *pair(p.size))

    def cost(self, p: AdaptiveAvgPoolParams, x: Shape, y: Shape) -> Cost:
        return Cost(macs=numel(x), flops=numel(x) + numel(y))

    def window(self, p: AdaptiveAvgPoolParams, x: Shape) -> Window:
        # exact when the input divides evenly; otherwise the widest window PyTorch uses and its
        # smallest step between windows
        (_, h, w), (oh, ow) = x, pair(p.size)
        if (oh, ow) == (1, 1):
            return Window(is_global=True)
        return Window((_widest_window(h, oh), _widest_window(w, ow)), (max(1, h // oh), max(1, w // ow)))

    def module_call(self, p: AdaptiveAvgPoolParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "nn.AdaptiveAvgPool2d", (Arg("output_size", collapse(pair(p.size)), keyword=False, field="size"),)
        )


def _widest_window(n: int, out: int) -> int:
    """The widest of PyTorch's adaptive windows [floor(i*n/out), ceil((i+1)*n/out)), i < out.

    With n = q*out + r, window i is q + 1 wide, or q + 2 where i*r mod out > out - r; the residues
    i*r mod out are the multiples of gcd(r, out), so a q + 2 window exists iff gcd(r, out) < r
    (11 into 3: widths 4, 5, 4; 10 into 4: 3, 3, 3, 3)."""
    q, r = divmod(n, out)
    if r == 0:
        return q
    return q + 2 if math.gcd(r, out) < r else q + 1
