"""The registry of layer kinds: adding a kind is adding one entry here. Plug-in kinds (entry point group
`netspec.layers`, see plugins.py) join the same registry the first time it is read."""

from __future__ import annotations

from .activation import ACTIVATIONS
from .base import Cost, LayerKind, LayerParams, Shape, ShapeError, Window
from .branch_scaling import DropPath, LayerScale
from .channel_attention import EfficientChannelAttention
from .channel_ops import ChannelShuffle, ChannelSplit
from .conv import Conv
from .linear import Linear
from .merge import MERGES
from .misc import ChannelPad, Dropout, Flatten, Identity
from .norm import BatchNorm, LocalResponseNorm
from .norm_variants import FrozenBatchNorm, GroupNorm, LayerNorm2d
from .plugins import PluginError, PluginWarning, Registry
from .pool import AdaptiveAvgPool, AvgPool, MaxPool
from .resample import ConvTranspose, Upsample, UpsampleLike
from .select import Select
from .spatial_mean import SpatialMean

KINDS: dict[str, LayerKind] = Registry(
    [
        Conv(),
        BatchNorm(),
        LocalResponseNorm(),
        *ACTIVATIONS,
        MaxPool(),
        AvgPool(),
        AdaptiveAvgPool(),
        Linear(),
        Dropout(),
        Flatten(),
        Identity(),
        ChannelPad(),
        LayerNorm2d(),
        GroupNorm(),
        FrozenBatchNorm(),
        LayerScale(),
        DropPath(),
        ChannelSplit(),
        ChannelShuffle(),
        Upsample(),
        UpsampleLike(),
        ConvTranspose(),
        EfficientChannelAttention(),
        SpatialMean(),
        *MERGES,
        Select(),
    ]
)

__all__ = [
    "KINDS",
    "Cost",
    "LayerKind",
    "LayerParams",
    "PluginError",
    "PluginWarning",
    "Shape",
    "ShapeError",
    "Window",
]
