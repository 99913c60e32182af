"""The torch modules of the layer kinds that torch.nn lacks (layer norm over channels, frozen batch norm,
layer scale, stochastic depth, channel split, ECA, spatial mean).

Each kind ships its class's source to the files `netspec export` writes (`LayerKind.module_source`), so
every class here uses only torch, nn, F and Tensor, and keeps its constructor arguments as attributes
of the same name. The kinds import this module lazily: analysis runs without torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (torchvision's ConvNeXt LayerNorm2d): NHWC, normalise
    the last dimension, back to NCHW."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, all buffers (torchvision.ops.FrozenBatchNorm2d:
    the same state_dict keys, so detection backbones' checkpoints load as they are)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Buffer(torch.ones(num_features))
        self.bias = nn.Buffer(torch.zeros(num_features))
        self.running_mean = nn.Buffer(torch.zeros(num_features))
        self.running_var = nn.Buffer(torch.ones(num_features))

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        # a BatchNorm2d checkpoint loads too: its step counter means nothing once frozen
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + self.eps).rsqrt()
        bias = self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale
        return x * scale + bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class LayerScale(nn.Module):
    """A learnable per-channel scale (Touvron et al. 2021; ConvNeXt): `gamma` of shape [C, 1, 1] as
    torchvision's CNBlock stores `layer_scale`, or [C] as timm stores `gamma` (`flat`)."""

    def __init__(self, channels: int, init_value: float = 1e-6, flat: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.init_value = init_value
        self.flat = flat
        shape = (channels,) if flat else (channels, 1, 1)
        self.gamma = nn.Parameter(torch.full(shape, init_value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma.reshape(-1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, init_value={self.init_value}, flat={self.flat}"


class StochasticDepth(nn.Module):
    """Drop path (Huang et al. 2016; torchvision.ops.StochasticDepth(p, "row")): in training each sample
    is zeroed with probability p and the survivors scaled by 1/(1-p); the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.dim() - 1), dtype=x.dtype, device=x.device)
        noise = noise.bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ChannelSplit(nn.Module):
    """One of `parts` equal channel groups (ShuffleNet v2's `x.chunk(2, dim=1)`)."""

    def __init__(self, parts: int, index: int) -> None:
        super().__init__()
        self.parts = parts
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        return x.chunk(self.parts, dim=1)[self.index]

    def extra_repr(self) -> str:
        return f"parts={self.parts}, index={self.index}"


class EfficientChannelAttention(nn.Module):
    """ECA (Wang et al. 2020), as timm's EcaModule: the spatial mean of each channel, a 1-D convolution
    across channels (`conv.weight` [1, 1, k]), a sigmoid gate that scales the input."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = x.mean((2, 3)).view(x.shape[0], 1, -1)  # (N, 1, C)
        y = torch.sigmoid(self.conv(y)).view(x.shape[0], -1, 1, 1)  # (N, C, 1, 1)
        return x * y.expand_as(x)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class SpatialMean(nn.Module):
    """The mean over H and W (`x.mean((2, 3), keepdim)`), as timm's heads and SE modules write it."""

    def __init__(self, keepdim: bool = True) -> None:
        super().__init__()
        self.keepdim = keepdim

    def forward(self, x: Tensor) -> Tensor:
        return x.mean((2, 3), keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"keepdim={self.keepdim}"
