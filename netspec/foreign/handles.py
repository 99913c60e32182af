"""What one traced operation costs, in netspec's conventions (analysis.py), and how it maps positions.

The registry has fvcore's shape (`fvcore.nn.flop_count._DEFAULT_SUPPORTED_OPS`): one table maps an
operation to its handle. MACs are exactly what fvcore's FlopCountAnalysis counts for the same call,
so the totals agree with fvcore on any model: convolutions (transposed too), linear layers and
matrix products (mm, bmm, matmul, addmm, einsum), batch norm (2 per element in eval mode, 1 without
affine; 5 or 4 where it uses batch statistics), layer, group and instance norm (5 per input element
with affine, 4 without), adaptive average pooling in 2-D (1 per input element), nearest and
bilinear upsampling (1 and 4 per output element) and grid sampling (4 per output element). Every
other operation counts 0 MACs, as in fvcore (additions, concatenation, pooling, activations, means).
FLOPs are 2 per MAC plus the elementwise work netspec's layer kinds count: bias adds, 1 per output of
an activation or an elementwise arithmetic op, window comparisons of max pooling, window adds of
average pooling, the adds of a mean.

An operation is either a torch.nn module that FX keeps whole (a leaf) or a function or Tensor method
called in some forward; functions and methods are named by `__name__`, as torch defines them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.base import Cost, Window

SizeT = tuple[int, ...]  # a tensor's shape with its batch dimension


@dataclass(frozen=True)
class TensorArg:
    """A tensor argument of a traced call: only its shape is known (the trace runs on the meta device)."""

    shape: SizeT


@dataclass
class OpCall:
    """One traced operation: a leaf module or a function/method, its arguments and its output."""

    target: nn.Module | str  # the module, or the function's / method's name
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    out: SizeT | None = None  # the output's shape (the first tensor of a tuple)

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        if name in self.kwargs:
            return self.kwargs[name]
        return self.args[index] if index < len(self.args) else default

    @property
    def x(self) -> SizeT | None:
        """The shape of the first tensor argument."""
        first = self.arg(0, "input")
        return first.shape if isinstance(first, TensorArg) else None


def _n(shape: SizeT | None) -> int:
    return math.prod(shape) if shape else 0


def _names(*fns: Callable[..., Any]) -> frozenset[str]:
    """Names as torch gives them, with the in-place variant (`relu`, `relu_`)."""
    return frozenset(n for f in fns for n in (f.__name__, f.__name__ + "_"))


def _pair(v: Any, default: Any = 1) -> tuple[int, int]:
    v = default if v is None else v
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) >= 2:
        return (int(v[-2]), int(v[-1]))
    if isinstance(v, (tuple, list)) and len(v) == 1:
        return (int(v[0]), int(v[0]))
    return (1, 1)


# ---- MACs of functions and methods (fvcore's supported ops as they appear in Python) -------------


def _conv(c: OpCall) -> int:
    w = c.arg(1, "weight")
    return c.out[0] * _n(w.shape) * _n(c.out[2:]) if c.out and isinstance(w, TensorArg) else 0


def _conv_transposed(c: OpCall) -> int:
    w = c.arg(1, "weight")
    return c.x[0] * _n(w.shape) * _n(c.x[2:]) if c.x and isinstance(w, TensorArg) else 0


def _linear(c: OpCall) -> int:
    w = c.arg(1, "weight")
    return _n(c.x) * w.shape[0] if isinstance(w, TensorArg) else 0


def _matmul(c: OpCall) -> int:
    a, b = c.arg(0, "input"), c.arg(1, "other")
    if not (isinstance(a, TensorArg) and isinstance(b, TensorArg)) or len(b.shape) < 2:
        return 0
    return _n(a.shape) * b.shape[-1]


def _addmm(c: OpCall) -> int:
    x, w = c.arg(1, "mat1"), c.arg(2, "mat2")
    return (
        x.shape[0] * x.shape[1] * w.shape[1] if isinstance(x, TensorArg) and isinstance(w, TensorArg) else 0
    )


def _einsum(c: OpCall) -> int:
    """fvcore's rule: numpy's optimal contraction path, its flop count halved (a MAC is two flops)."""
    import numpy as np

    equation = c.args[0] if c.args and isinstance(c.args[0], str) else None
    operands = c.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if equation is None or not all(isinstance(o, TensorArg) for o in operands):
        return 0
    arrays = [np.broadcast_to(np.zeros((), dtype=np.float32), o.shape) for o in operands]  # no memory
    path = np.einsum_path(equation.replace(" ", ""), *arrays, optimize="optimal")[1]
    for line in path.split("\n"):
        if "optimized flop" in line.lower():
            return math.floor(float(line.split(":")[-1]) / 2)
    return 0


def _norm(weight_index: int) -> Callable[[OpCall], int]:
    def count(c: OpCall) -> int:
        affine = isinstance(c.arg(weight_index, "weight"), TensorArg)
        return _n(c.x) * (5 if affine else 4)

    return count


def _batch_norm(c: OpCall) -> int:
    if c.arg(5, "training", False):
        return _norm(3)(c)
    return _n(c.x) * (2 if isinstance(c.arg(3, "weight"), TensorArg) else 1)


def _interpolate(c: OpCall) -> int:
    mode = c.arg(3, "mode", "nearest")
    return _n(c.out) * {"nearest": 1, "bilinear": 4}.get(mode, 0)


FUNCTION_MACS: dict[str, Callable[[OpCall], int]] = {
    **{n: _conv for n in _names(F.conv1d, F.conv2d, F.conv3d)},
    **{n: _conv_transposed for n in _names(F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)},
    **{n: _linear for n in _names(F.linear)},
    **{n: _matmul for n in _names(torch.matmul, torch.mm, torch.bmm, operator.matmul)},
    **{n: _addmm for n in _names(torch.addmm)},
    **{n: _einsum for n in _names(torch.einsum)},
    **{n: _batch_norm for n in _names(F.batch_norm)},
    **{n: _norm(2) for n in _names(F.layer_norm, F.group_norm)},
    **{n: _norm(3) for n in _names(F.instance_norm)},
    **{n: (lambda c: _n(c.x)) for n in _names(F.adaptive_avg_pool2d)},
    **{n: _interpolate for n in _names(F.interpolate, F.upsample)},
    **{n: (lambda c: 4 * _n(c.out)) for n in _names(F.grid_sample)},
}

# elementwise work: 1 FLOP per output element
ELEMENTWISE = _names(
    F.relu, F.relu6, F.gelu, F.silu, F.mish, F.elu, F.selu, F.leaky_relu, F.hardswish, F.hardsigmoid,
    F.hardtanh, F.softplus, torch.sigmoid, torch.tanh, F.softmax, F.log_softmax, torch.exp,
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul,
    torch.add, torch.sub, torch.mul, torch.div, torch.Tensor.add, torch.Tensor.mul, torch.Tensor.div,
    torch.Tensor.sub, torch.clamp,
)  # fmt: skip
# reductions over a tensor: 1 FLOP per input element (fvcore: 0 MACs)
REDUCTIONS = _names(torch.mean, torch.sum, torch.amax)
# operations that only re-index memory: no row of their own, no FLOPs, no activation memory
VIEWS = _names(
    operator.getitem, torch.Tensor.view, torch.reshape, torch.permute, torch.transpose,
    torch.Tensor.contiguous, torch.unsqueeze, torch.squeeze, torch.Tensor.expand, torch.chunk, torch.split,
    torch.Tensor.size, torch.Tensor.dim, torch.Tensor.type_as, torch.Tensor.to, torch.Tensor.float, getattr,
)  # fmt: skip
POOLS = _names(F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)
MAX_POOLS = _names(F.max_pool1d, F.max_pool2d, F.max_pool3d)
CONVS = _names(F.conv1d, F.conv2d, F.conv3d)
ADAPTIVE = _names(F.adaptive_avg_pool2d, F.adaptive_max_pool2d)
BIASED = CONVS | _names(F.linear)  # a bias argument adds one FLOP per output element


def function_cost(name: str, c: OpCall) -> Cost:
    macs = int(FUNCTION_MACS[name](c)) if name in FUNCTION_MACS else 0
    flops = 2 * macs
    if name in ELEMENTWISE:
        flops += _n(c.out)
    elif name in REDUCTIONS:
        flops += _n(c.x)
    elif name in ADAPTIVE:
        flops = _n(c.x) + (_n(c.out) if macs else 0)
    elif name in POOLS and c.out:
        k = _pair(c.arg(1, "kernel_size"))
        flops += _n(c.out) * (k[0] * k[1] - (1 if name in MAX_POOLS else 0))
    if name in BIASED and isinstance(c.arg(2, "bias"), TensorArg):
        flops += _n(c.out)
    return Cost(macs=macs, flops=flops)


def function_window(name: str, c: OpCall) -> Window | None:
    """Kernel extent and stride of a spatial function (a conv or a pool), or None for a pointwise one."""
    if name in CONVS:
        w = c.arg(1, "weight")
        k = _pair(w.shape[2:]) if isinstance(w, TensorArg) and len(w.shape) > 2 else (1, 1)
        d = _pair(c.arg(5, "dilation"))
        return Window((d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), _pair(c.arg(3, "stride")))
    if name in POOLS:
        k = _pair(c.arg(1, "kernel_size"))
        stride = c.arg(2, "stride")
        return Window(k, _pair(stride if stride not in (None, [], ()) else k))
    if name in ADAPTIVE:
        return _adaptive(c.x, c.out)
    if name in REDUCTIONS and c.x and c.out and len(c.x) == 4 and (len(c.out) < 4 or c.out[2:] == (1, 1)):
        return Window(is_global=True)  # a mean over the map: a global pool
    return None


# ---- leaf modules ------------------------------------------------------------------------------


def _module_macs(m: nn.Module, c: OpCall) -> int:
    """fvcore's count for the aten op each leaf module's forward records."""
    if isinstance(m, nn.modules.conv._ConvNd):
        w = TensorArg(tuple(m.weight.shape))
        return (_conv_transposed if m.transposed else _conv)(OpCall("", (c.arg(0, "input"), w), out=c.out))
    if isinstance(m, nn.Linear):
        return _n(c.x) * m.out_features
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.training or not m.track_running_stats:
            return _n(c.x) * (5 if m.affine else 4)
        return _n(c.x) * (2 if m.affine else 1)
    if isinstance(m, nn.modules.instancenorm._InstanceNorm):
        return _n(c.x) * (5 if m.affine else 4)
    if isinstance(m, nn.LayerNorm):
        return _n(c.x) * (5 if m.elementwise_affine else 4)
    if isinstance(m, nn.GroupNorm):
        return _n(c.x) * (5 if m.affine else 4)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _n(c.x)
    if isinstance(m, nn.Upsample):
        return _n(c.out) * {"nearest": 1, "bilinear": 4}.get(m.mode, 0)
    return 0


def module_cost(m: nn.Module, c: OpCall) -> Cost:
    macs = _module_macs(m, c)
    flops = 2 * macs
    bias = getattr(m, "bias", None)
    if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and bias is not None:
        flops += _n(c.out)
    elif type(m).__module__ == nn.ReLU.__module__ and not isinstance(m, nn.MultiheadAttention):
        flops += _n(c.out)  # an activation
    elif isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        k = _pair(m.kernel_size)
        flops += _n(c.out) * (k[0] * k[1] - 1)
    elif isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        k = _pair(m.kernel_size)
        flops += _n(c.out) * k[0] * k[1]
    elif isinstance(m, nn.AdaptiveAvgPool2d):
        flops = _n(c.x) + _n(c.out)  # its MAC is an add (netspec's adaptive_avgpool kind counts so)
    elif isinstance(m, nn.AdaptiveMaxPool2d):
        flops += _n(c.x)
    return Cost(params=sum(p.numel() for p in m.parameters()), macs=macs, flops=flops)


def module_window(m: nn.Module, c: OpCall) -> Window | None:
    if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed:
        k, d = _pair(m.kernel_size), _pair(m.dilation)
        return Window((d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), _pair(m.stride))
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(m.kernel_size)
        d = _pair(getattr(m, "dilation", 1))
        return Window((d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), _pair(m.stride or k))
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _adaptive(c.x, c.out)
    return None


def _adaptive(x: SizeT | None, y: SizeT | None) -> Window | None:
    """PyTorch's adaptive pooling: global to 1x1; otherwise its widest window and smallest step."""
    if not x or not y or len(x) != 4 or len(y) != 4:
        return None
    if y[2:] == (1, 1):
        return Window(is_global=True)
    k = tuple(_widest(i, o) for i, o in zip(x[2:], y[2:], strict=True))
    s = tuple(max(1, i // o) for i, o in zip(x[2:], y[2:], strict=True))
    return Window((k[0], k[1]), (s[0], s[1]))


def _widest(n: int, out: int) -> int:
    """The widest of PyTorch's adaptive windows [floor(i*n/out), ceil((i+1)*n/out)), i < out."""
    return max(-(-(i + 1) * n // out) - i * n // out for i in range(min(out, 1 << 16)))
