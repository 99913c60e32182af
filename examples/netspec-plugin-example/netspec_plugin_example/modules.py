"""The torch module of `shift`. `netspec export` copies this class into the files it writes
(LayerKind.module_source), so it uses only torch, nn, F and Tensor, and keeps its constructor
argument as an attribute of the same name."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Shift(nn.Module):
    """ShiftNet's shift: channel group g = (i, j) of kernel x kernel groups reads the input moved by
    (i - kernel // 2, j - kernel // 2), zeros where it leaves the map."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        r = self.kernel // 2
        padded = F.pad(x, (r, r, r, r))
        parts = []
        for g, part in enumerate(padded.chunk(self.kernel * self.kernel, dim=1)):
            i, j = g // self.kernel, g % self.kernel
            parts.append(part[:, :, i : i + h, j : j + w])
        return torch.cat(parts, 1)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"
