"""2-D convolution, with optional `norm`/`act` sugar that lowering expands into sibling layers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .base import (
    Cost,
    LayerKind,
    LayerParams,
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
from .init_schemes import DEFAULT_INIT, InitScheme, weight_init

Init = InitScheme  # a layer's `init:`: a scheme name or `{name: {arguments}}` (layers/init_schemes.py)
# the norm layer a conv's `norm:` puts after it, as torchvision's `norm_layer=` (detection backbones:
# FrozenBatchNorm2d); a projection shortcut follows the spec's default (lower/shortcut.py)
Norm = Literal["none", "batchnorm", "frozen_batchnorm"]
Activation = Literal[
    "none", "relu", "relu6", "leaky_relu", "tanh", "sigmoid", "silu", "hardswish", "hardsigmoid", "gelu"
]


class ConvParams(LayerParams):
    out: PositiveInt | None = Field(None, description="output channels (default: input channels)")
    kernel: Pair = 3
    stride: Pair = 1
    padding: Literal["auto", "same", "valid"] | int | tuple[int, int] = Field(
        "auto", description="'auto' = dilation*(kernel-1)//2 per side; 'same' needs stride 1"
    )
    dilation: Pair = 1
    groups: PositiveInt | Literal["depthwise"] = 1
    bias: bool | None = Field(None, description="default: true unless `norm` is set")
    norm: Norm = Field("none", description="a norm after it; a projection shortcut has the default's")
    act: Activation = "none"
    init: Init = Field(DEFAULT_INIT, description="weight init: a scheme or {scheme: {arguments}}")

    @model_validator(mode="before")
    @classmethod
    def _bias_follows_norm(cls, data: Any) -> Any:
        # a conv followed by BN needs no bias (BN's beta takes its place), as in torchvision
        if isinstance(data, dict) and data.get("bias") is None:
            data = {**data, "bias": data.get("norm", "none") == "none"}
        return data

    @model_validator(mode="after")
    def _padding_non_negative(self) -> ConvParams:
        if isinstance(self.padding, int) and self.padding < 0:
            raise ValueError("padding must be >= 0")
        if isinstance(self.padding, tuple) and min(self.padding) < 0:
            raise ValueError("padding must be >= 0")
        return self


def conv_padding(
    p: ConvParams, k: tuple[int, int] | None = None, d: tuple[int, int] | None = None
) -> tuple[int, int] | str:
    """The padding a conv takes (`k`, `d`: its kernel and dilation pairs, where the caller has them)."""
    k, d = k or pair(p.kernel), d or pair(p.dilation)
    if p.padding == "auto":
        return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
    if p.padding == "valid":
        return (0, 0)
    if p.padding == "same":
        if all(di * (ki - 1) % 2 == 0 for ki, di in zip(k, d, strict=True)):
            # symmetric: written out, the same output, and tracers such as fvcore see an ordinary
            # convolution (they do not count PyTorch's 'same' overload)
            return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
        return "same"  # asymmetric (even kernel): PyTorch pads one more on the bottom/right
    return pair(p.padding)


def out_size(n: int, k: int, s: int, pad: int, d: int = 1, ceil: bool = False) -> int:
    span = n + 2 * pad - d * (k - 1) - 1
    if span < 0 and not ceil:
        return 0
    if ceil:  # PyTorch's rounding up also applies to a window wider than the padded input
        out = -(-span // s) + 1
        if (out - 1) * s >= n + pad:  # PyTorch: the last window must start inside the input
            out -= 1
        return out
    return span // s + 1


class Conv(LayerKind):
    name = "conv"
    Params = ConvParams
    prefix = "conv"
    shorthand = "out"
    doc = "2-D convolution (torch.nn.Conv2d)."
    fresh_output = True
    overwritable_output = True
    matmul = True
    unit_role = UnitRole.CONV
    init_default = "conv"

    def expand(self, p: ConvParams) -> tuple[ConvParams, tuple[str, ...]]:
        # `conv: {norm: batchnorm, act: relu}` is three sibling modules, as torchvision writes them
        followers = tuple(kind for kind in (p.norm, p.act) if kind != "none")
        if not followers:
            return p, ()
        return p.model_copy(update={"norm": "none", "act": "none"}), followers

    def groups(self, p: ConvParams, cin: int) -> int:
        return cin if p.groups == "depthwise" else p.groups

    def infer(self, p: ConvParams, x: Shape) -> Shape:
        c, h, w = need_map(x, "conv")
        cout = p.out or c
        g = self.groups(p, c)
        if c % g or cout % g:
            raise ShapeError(f"channels must be divisible by groups: in {c}, out {cout}, groups {g}")
        k, s, d = pair(p.kernel), pair(p.stride), pair(p.dilation)
        if p.padding == "same" and s != (1, 1):
            raise ShapeError("padding 'same' needs stride 1 (PyTorch rule)")
        pad = conv_padding(p, k, d)
        if isinstance(pad, str):  # "same"
            return (cout, h, w)
        ext = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        padded = (h + 2 * pad[0], w + 2 * pad[1])
        if ext[0] > padded[0] or ext[1] > padded[1]:
            raise ShapeError(
                f"kernel {ext[0]}x{ext[1]} is larger than the padded input "
                f"{padded[0]}x{padded[1]} (input {h}x{w}, padding {pad[0]}x{pad[1]})"
            )
        return (cout, out_size(h, k[0], s[0], pad[0], d[0]), out_size(w, k[1], s[1], pad[1], d[1]))

    def cost(self, p: ConvParams, x: Shape, y: Shape) -> Cost:
        k = pair(p.kernel)
        cin = x[0]
        g = self.groups(p, cin)
        per_out = (cin // g) * k[0] * k[1]
        bias = y[0] if p.bias else 0
        macs = numel(y) * per_out
        return Cost(params=y[0] * per_out + bias, macs=macs, flops=2 * macs + (numel(y) if p.bias else 0))

    def window(self, p: ConvParams, x: Shape) -> Window:
        k, d = pair(p.kernel), pair(p.dilation)
        return Window((d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), pair(p.stride))

    def describe(self, p: ConvParams, x: Shape, y: Shape) -> str:
        return f"conv {window_text(self.window(p, x))}, {y[0]}"

    def module_call(self, p: ConvParams, x: Shape, y: Shape, inplace: bool = False) -> Call:
        pad = conv_padding(p)
        return Call(
            "nn.Conv2d",
            (
                Arg("in_channels", x[0], keyword=False),
                Arg("out_channels", y[0], keyword=False, field="out"),
                Arg("kernel_size", collapse(pair(p.kernel)), field="kernel"),
                Arg("stride", collapse(pair(p.stride)), default=1, field="stride"),
                Arg("padding", pad if isinstance(pad, str) else collapse(pad), default=0, field="padding"),
                Arg("dilation", collapse(pair(p.dilation)), default=1, field="dilation"),
                Arg("groups", self.groups(p, x[0]), default=1, field="groups"),
                Arg("bias", bool(p.bias), default=True, field="bias"),
            ),
        )

    def init_steps(self, p: ConvParams, scheme: InitScheme, zero_init: bool) -> tuple[InitStep, ...]:
        return weight_init(scheme, bool(p.bias))
