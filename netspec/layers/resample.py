"""Layers that enlarge a feature map: upsampling (FPN's nearest, bilinear), upsampling to the size of
another output (`upsample_like`, written `upsample: {from: [top, lateral], size: like}`) and transposed
convolution.

Their receptive-field window is in input pixels: an output pixel of a nearest upsample reads one input
pixel, a bilinear one two per axis, a transposed convolution's at most ceil(extent / stride). Neighbouring
output pixels are 1/scale input pixels apart: an upsample's window says its whole factor (`upscale`), by
which the analysis divides the jump where it divides (FPN: 32 -> 16); the stride stays 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, model_validator

from .base import (
    Cost,
    LayerKind,
    LayerParams,
    NonNegInt,
    Pair,
    PositiveInt,
    Shape,
    ShapeError,
    UnitRole,
    Window,
    need_map,
    numel,
    pair,
    window_text,
)
from .call import Arg, Call, InitStep, collapse
from .conv import Init
from .init_schemes import DEFAULT_INIT, InitScheme, weight_init
from .merge import MergeKind, MergeParams, _fmt

if TYPE_CHECKING:
    from torch import Tensor

LIKE = "like"  # `size: like`: the size of the last `from:` output


class UpsampleParams(LayerParams):
    scale: Pair | None = Field(None, description="integer scale factor (FPN: 2); or give `size`")
    size: Pair | Literal["like"] | None = Field(
        None, description="output size (H, W), or `like`: the last of `from: [x, other]`; or give `scale`"
    )
    mode: Literal["nearest", "bilinear"] = "nearest"
    align_corners: bool | None = Field(None, description="bilinear only (torch's default: false)")

    @model_validator(mode="after")
    def _scale_or_size(self) -> UpsampleParams:
        if (self.scale is None) == (self.size is None):
            raise ValueError("give exactly one of `scale` and `size`")
        if self.align_corners is not None and self.mode != "bilinear":
            raise ValueError("`align_corners` applies to mode bilinear only")
        return self


class Upsample(LayerKind):
    name = "upsample"
    Params = UpsampleParams
    prefix = "upsample"
    shorthand = "scale"
    doc = "Upsampling by an integer `scale` or to a `size`, nearest or bilinear (torch.nn.Upsample)."

    # `from: [x, other]` (two outputs): the graph operation that upsamples x to other's size
    merge_form = "upsample_like"

    def infer(self, p: UpsampleParams, x: Shape) -> Shape:
        c, h, w = need_map(x, self.name)
        if p.size == LIKE:
            raise ShapeError("`size: like` takes the size of another output: give `from: [x, other]`")
        if isinstance(p.size, (int, tuple)):
            return (c, *pair(p.size))
        s = pair(p.scale or 1)
        return (c, h * s[0], w * s[1])

    def cost(self, p: UpsampleParams, x: Shape, y: Shape) -> Cost:
        # fvcore: upsample_nearest2d 1 per output element, upsample_bilinear2d 4
        per = 1 if p.mode == "nearest" else 4
        return Cost(macs=per * numel(y), flops=2 * per * numel(y))

    def window(self, p: UpsampleParams, x: Shape) -> Window:
        taps = 1 if p.mode == "nearest" else 2
        return Window((taps, taps), (1, 1), upscale=_upscale(x, self.infer(p, x)))

    def describe(self, p: UpsampleParams, x: Shape, y: Shape) -> str:
        if p.scale is not None:
            return f"upsample {p.mode} x{collapse(pair(p.scale))}"
        return f"upsample {p.mode} to {y[1]}x{y[2]}"

    def module_call(self, p: UpsampleParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        if isinstance(p.size, (int, tuple)):
            where = Arg("size", collapse(pair(p.size)), field="size")
        else:  # nn.Upsample keeps the factor as a float: write it so
            s = pair(p.scale or 1)
            where = Arg("scale_factor", collapse((float(s[0]), float(s[1]))), field="scale")
        return Call(
            "nn.Upsample",
            (
                where,
                Arg("mode", p.mode, default="nearest", field="mode"),
                Arg("align_corners", p.align_corners, default=None, field="align_corners"),
            ),
        )


def _upscale(x: Shape, y: Shape) -> tuple[int, int]:
    """The whole factor by which an upsampling from x to y divides the jump, per axis (1 where the sizes
    are not multiples: the jump stays an upper bound)."""
    return (y[1] // x[1] if y[1] % x[1] == 0 else 1, y[2] // x[2] if y[2] % x[2] == 0 else 1)


class UpsampleLikeParams(MergeParams):
    size: Literal["like"] = Field("like", description="the size of the last input (`from: [x, other]`)")
    mode: Literal["nearest"] = Field("nearest", description="nearest only (torchvision's FPN)")


class UpsampleLike(MergeKind):
    """torchvision's FPN top-down step, `F.interpolate(last_inner, size=inner_lateral.shape[-2:],
    mode="nearest")`: the first input upsampled to the second's H and W, at any input size (a factor
    of 2 holds only where each map is exactly half the next). A graph operation like the merges (the
    size is read from a tensor at run time; nn.Upsample fixes it at construction): no module, no
    state_dict entry. Its values come from the first input only: the second adds nothing to the
    receptive field."""

    name = "upsample_like"
    Params = UpsampleLikeParams
    prefix = "upsample"
    doc = (
        "Nearest upsampling of the first output to the H and W of the second (`from: [x, other]`; "
        "written `upsample: {from: [x, other], size: like}`), as torchvision's FPN interpolates."
    )
    elementwise = False
    shape_only_inputs: ClassVar[int] = 1
    verb = "upsample"

    def infer_merge(self, shapes: Sequence[Shape]) -> Shape:
        if len(shapes) != 2:
            raise ShapeError(
                f"`upsample` to another's size reads two outputs (`from: [x, other]`), got {len(shapes)}"
            )
        x, like = shapes
        if len(x) != 3 or len(like) != 3:
            raise ShapeError(f"cannot upsample {_fmt(x)} to the size of {_fmt(like)}: both must be maps")
        if like[1] < x[1] or like[2] < x[2]:
            raise ShapeError(f"cannot upsample {_fmt(x)} to the smaller size of {_fmt(like)}")
        return (x[0], like[1], like[2])

    def merge_cost(self, shapes: Sequence[Shape], y: Shape) -> Cost:
        # fvcore's upsample_nearest2d handle: 1 per output element (as `upsample`'s)
        return Cost(macs=numel(y), flops=2 * numel(y))

    def merge_window(self, shapes: Sequence[Shape], y: Shape) -> Window:
        return Window((1, 1), (1, 1), upscale=_upscale(shapes[0], y))

    def ops(self, shapes: Sequence[Shape], y: Shape) -> list[tuple[int, tuple[int, ...]]]:
        return [(numel(y), (0, 1))]  # reads the second input's shape: it stays alive until here

    def combine(self, xs: Sequence[Tensor]) -> Tensor:
        import torch

        x, like = xs
        return torch.nn.functional.interpolate(x, size=like.shape[-2:], mode="nearest")

    def source(self, args: Sequence[str]) -> str:
        x, like = args
        return f'torch.nn.functional.interpolate({x}, size={like}.shape[-2:], mode="nearest")'

    def describe(self, p: UpsampleLikeParams, x: Shape, y: Shape) -> str:
        return f"upsample nearest to {y[1]}x{y[2]}"


class ConvTransposeParams(LayerParams):
    out: PositiveInt | None = Field(None, description="output channels (default: input channels)")
    kernel: Pair = 2
    stride: Pair = 2
    padding: NonNegInt | tuple[NonNegInt, NonNegInt] = 0
    output_padding: NonNegInt | tuple[NonNegInt, NonNegInt] = 0
    dilation: Pair = 1
    groups: PositiveInt = 1
    bias: bool = True
    init: Init = DEFAULT_INIT

    @model_validator(mode="after")
    def _output_padding_fits(self) -> ConvTransposeParams:
        s, d, op = pair(self.stride), pair(self.dilation), pair(self.output_padding)
        for axis in range(2):
            if op[axis] >= s[axis] and op[axis] >= d[axis]:
                raise ValueError(
                    f"output_padding {op[axis]} must be smaller than the stride or the dilation "
                    "(PyTorch rule)"
                )
        return self


def _taps(k: int, s: int, d: int) -> int:
    """The most input pixels one output pixel of a transposed convolution reads along an axis: the kernel
    taps that reach it are those whose offset k*d has its residue mod s; they lie (max - min) * d / s
    input pixels apart."""
    by_residue: dict[int, list[int]] = {}
    for tap in range(k):
        by_residue.setdefault(tap * d % s, []).append(tap)
    return max((max(t) - min(t)) * d // s + 1 for t in by_residue.values())


class ConvTranspose(LayerKind):
    name = "conv_transpose"
    Params = ConvTransposeParams
    prefix = "deconv"
    shorthand = "out"
    doc = "Transposed 2-D convolution (torch.nn.ConvTranspose2d): H' = (H-1)S - 2P + D(K-1) + OP + 1."
    fresh_output = True
    overwritable_output = True
    matmul = True
    unit_role = UnitRole.CONV
    init_default = "conv"

    def infer(self, p: ConvTransposeParams, x: Shape) -> Shape:
        c, h, w = need_map(x, self.name)
        cout = p.out or c
        if c % p.groups or cout % p.groups:
            raise ShapeError(f"channels must be divisible by groups: in {c}, out {cout}, groups {p.groups}")
        k, s, d = pair(p.kernel), pair(p.stride), pair(p.dilation)
        pad, op = pair(p.padding), pair(p.output_padding)
        size = tuple(
            (n - 1) * s[i] - 2 * pad[i] + d[i] * (k[i] - 1) + op[i] + 1 for i, n in enumerate((h, w))
        )
        if min(size) < 1:
            raise ShapeError(f"padding {pad[0]}x{pad[1]} leaves no output from a {h}x{w} input")
        return (cout, size[0], size[1])

    def cost(self, p: ConvTransposeParams, x: Shape, y: Shape) -> Cost:
        # fvcore counts a transposed convolution over the input positions: Cin * Cout/g * K*K per pixel
        k = pair(p.kernel)
        weights = x[0] * (y[0] // p.groups) * k[0] * k[1]
        macs = weights * x[1] * x[2]
        bias = y[0] if p.bias else 0
        return Cost(params=weights + bias, macs=macs, flops=2 * macs + (numel(y) if p.bias else 0))

    def window(self, p: ConvTransposeParams, x: Shape) -> Window:
        k, s, d = pair(p.kernel), pair(p.stride), pair(p.dilation)
        return Window((_taps(k[0], s[0], d[0]), _taps(k[1], s[1], d[1])), (1, 1))

    def describe(self, p: ConvTransposeParams, x: Shape, y: Shape) -> str:
        k, d = pair(p.kernel), pair(p.dilation)
        ext = Window((d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), pair(p.stride))
        return f"conv_transpose {window_text(ext)}, {y[0]}"

    def module_call(self, p: ConvTransposeParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call(
            "nn.ConvTranspose2d",
            (
                Arg("in_channels", x[0], keyword=False),
                Arg("out_channels", y[0], keyword=False, field="out"),
                Arg("kernel_size", collapse(pair(p.kernel)), field="kernel"),
                Arg("stride", collapse(pair(p.stride)), default=1, field="stride"),
                Arg("padding", collapse(pair(p.padding)), default=0, field="padding"),
                Arg("output_padding", collapse(pair(p.output_padding)), default=0, field="output_padding"),
                Arg("groups", p.groups, default=1, field="groups"),
                Arg("bias", bool(p.bias), default=True, field="bias"),
                Arg("dilation", collapse(pair(p.dilation)), default=1, field="dilation"),
            ),
        )

    def init_steps(self, p: ConvTransposeParams, scheme: InitScheme, zero_init: bool) -> tuple[InitStep, ...]:
        return weight_init(scheme, p.bias)
