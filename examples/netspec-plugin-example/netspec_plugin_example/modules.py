"""The torch module of `channel_shuffle`. `netspec export` copies this class into the files it writes
(LayerKind.module_source), so it uses only torch, nn, F and Tensor, and keeps its constructor
argument as an attribute of the same name."""

from __future__ import annotations

from torch import Tensor, nn


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: (N, g*k, H, W) -> view (N, g, k, H, W) -> transpose -> flatten."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
