"""The registry of layer kinds: adding a kind is adding one entry here (plug-ins use the same dict)."""

from __future__ import annotations

from .activation import ACTIVATIONS
from .base import Cost, LayerKind, LayerParams, Shape, ShapeError, Window
from .conv import Conv
from .linear import Linear
from .misc import ChannelPad, Dropout, Flatten, Identity
from .norm import BatchNorm, LocalResponseNorm
from .pool import AdaptiveAvgPool, AvgPool, MaxPool

KINDS: dict[str, LayerKind] = {
    k.name: k
    for k in [
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
    ]
}

__all__ = ["KINDS", "Cost", "LayerKind", "LayerParams", "Shape", "ShapeError", "Window"]
