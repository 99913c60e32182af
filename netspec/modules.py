"""The few container modules the compiler needs beyond torch.nn. Their forwards are straight-line
over constant structure (no graph interpretation), so TorchScript, torch.compile(fullgraph=True),
torch.export and FX all see plain code.

Blocks subclass nn.Sequential so that their body layers are direct children: `layer1.0.conv1` as in
torchvision, and iteration over `self` is understood by TorchScript.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# merge codes (TorchScript reads module-level constants poorly, so forwards use the literals)
_MERGES = {"add": 0, "concat": 1, "mul": 2}


class Network(nn.Sequential):
    """A whole network compiled from a spec: its children run in order."""


class AuxNetwork(nn.Sequential):
    """A network with auxiliary classifiers (GoogLeNet, Inception v3).

    Eval mode: returns the logits, skipping the side heads. Training mode: returns
    `(logits, [aux logits in network order])`, which the training runner weighs into the loss.
    """

    __constants__ = ["aux_indices"]

    def __init__(self, layers: OrderedDict[str, nn.Module], aux_indices: list[int]):
        super().__init__(layers)
        self.aux_indices = list(aux_indices)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]] | Tensor:
        aux: list[Tensor] = []
        for i, layer in enumerate(self):
            if i in self.aux_indices:
                if self.training:
                    aux.append(layer(x))
            else:
                x = layer(x)
        if self.training:
            return x, aux
        return x


class Residual(nn.Sequential):
    """y = after(merge(body(x), shortcut(x))), the shortcut being identity when absent.

    Children, in order: the body layers, the shortcut (if any), the layers after the merge.
    `concat` puts the shortcut first (DenseNet's [x, new features]); `mul` gates (squeeze-excite).
    """

    __constants__ = ["n_body", "n_before_merge", "merge", "inplace_merge"]

    def __init__(
        self,
        body: list[tuple[str, nn.Module]],
        shortcut: tuple[str, nn.Module] | None,
        merge: str,
        after: list[tuple[str, nn.Module]],
        block: str = "",
        inplace_merge: bool = False,
    ):
        super().__init__(OrderedDict([*body, *([shortcut] if shortcut else []), *after]))
        self.n_body = len(body)
        self.n_before_merge = len(body) + (1 if shortcut else 0)
        self.merge = _MERGES[merge]
        self.inplace_merge = inplace_merge  # the body's last output is not needed by autograd
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        out = x
        shortcut = x
        for i, layer in enumerate(self):
            if i < self.n_body:
                out = layer(out)
            elif i < self.n_before_merge:
                shortcut = layer(x)
        if self.merge == 0:  # add
            out = out.add_(shortcut) if self.inplace_merge else out + shortcut
        elif self.merge == 1:  # concat
            out = torch.cat([shortcut, out], 1)
        else:
            out = out * shortcut
        for i, layer in enumerate(self):
            if i >= self.n_before_merge:
                out = layer(out)
        return out

    def extra_repr(self) -> str:
        return f"block={self.block!r}, merge={['add', 'concat', 'mul'][self.merge]!r}"


class Parallel(nn.Sequential):
    """Branches on the same input, concatenated on channels (Inception) or added, then `after`."""

    __constants__ = ["n_branches", "merge"]

    def __init__(
        self,
        branches: list[tuple[str, nn.Module]],
        merge: str,
        after: list[tuple[str, nn.Module]],
        block: str = "",
    ):
        super().__init__(OrderedDict([*branches, *after]))
        self.n_branches = len(branches)
        self.merge = _MERGES[merge]
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        outs: list[Tensor] = []
        for i, layer in enumerate(self):
            if i < self.n_branches:
                outs.append(layer(x))
        if self.merge == 1:  # concat
            out = torch.cat(outs, 1)
        else:
            out = outs[0]
            for o in outs[1:]:
                out = out + o
        for i, layer in enumerate(self):
            if i >= self.n_branches:
                out = layer(out)
        return out

    def extra_repr(self) -> str:
        return f"block={self.block!r}, merge={['add', 'concat', 'mul'][self.merge]!r}"


class ChannelPad(nn.Module):
    """ResNet's option-A shortcut: subsample spatially, append zero channels."""

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra_channels}, stride={self.stride}"
