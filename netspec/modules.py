"""The few container modules the compiler needs beyond torch.nn. Their forwards are straight-line
over constant structure (no graph interpretation), so TorchScript, torch.compile(fullgraph=True),
torch.export and FX all see plain code.

Blocks subclass nn.Sequential so that their body layers are direct children: `layer1.0.conv1` as in
torchvision, and iteration over `self` is understood by TorchScript. Their own settings live in
`__dunder__` attributes: a spec may not name a module `__...` (layers/base.py), so every other
identifier (`merge`, `block`, `n_body`, ...) stays free for the user's layers.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from .layers.merge import MERGES

# merge codes (TorchScript reads module-level constants poorly, so forwards use the literals)
_MERGES = {kind.name: code for code, kind in enumerate(MERGES)}
_MERGE_NAMES = [kind.name for kind in MERGES]


class Network(nn.Sequential):
    """A whole network compiled from a spec: its children run in order."""


class GraphNetwork(fx.GraphModule):
    """A graph list (a spec whose items read named outputs): each child module at its path, under plain
    holder modules where the name is dotted, run by a torch.fx graph in the list's order. Children are
    the same modules a tree spec builds (a stage is an nn.Sequential called whole), so hooks on them
    fire and `model.layer2(x)` works; merges are the graph's torch.cat / + / * calls. Generated code,
    so TorchScript, torch.export and torch.compile(fullgraph=True) take it.

    `feature_info` (set by netspec.build) is plain data: TorchScript ignores it, and a deep copy (an
    EMA model) keeps it, which GraphModule's own copy, rebuilt from the code, would drop."""

    __jit_ignored_attributes__ = ["feature_info"]

    def __deepcopy__(self, memo: dict[int, Any]) -> GraphNetwork:
        copied = cast(GraphNetwork, super().__deepcopy__(memo))
        type(copied).__name__ = type(self).__name__  # GraphModule's copy names its class GraphModule
        if "feature_info" in self.__dict__:
            copied.feature_info = copy.deepcopy(self.__dict__["feature_info"], memo)
        return copied


class AuxNetwork(nn.Sequential):
    """A network with auxiliary classifiers (GoogLeNet, Inception v3).

    Eval mode: returns the logits, skipping the side heads. Training mode: returns
    `(logits, [aux logits in network order])`, which the training runner weighs into the loss.
    """

    __constants__ = ["__aux_indices__"]

    def __init__(self, layers: OrderedDict[str, nn.Module], aux_indices: list[int]):
        super().__init__(layers)
        self.__aux_indices__ = list(aux_indices)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]] | Tensor:
        aux: list[Tensor] = []
        for i, layer in enumerate(self):
            if i in self.__aux_indices__:
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

    __constants__ = ["__n_body__", "__n_before_merge__", "__merge__", "__inplace_merge__"]

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
        self.__n_body__ = len(body)
        self.__n_before_merge__ = len(body) + (1 if shortcut else 0)
        self.__merge__ = _MERGES[merge]
        self.__inplace_merge__ = inplace_merge  # the body's last output is not needed by autograd
        self.__block__ = block

    def forward(self, x: Tensor) -> Tensor:
        out = x
        shortcut = x
        for i, layer in enumerate(self):
            if i < self.__n_body__:
                out = layer(out)
            elif i < self.__n_before_merge__:
                shortcut = layer(x)
        if self.__merge__ == 0:  # add
            out = out.add_(shortcut) if self.__inplace_merge__ else out + shortcut
        elif self.__merge__ == 1:  # concat
            out = torch.cat([shortcut, out], 1)
        else:
            out = out * shortcut
        for i, layer in enumerate(self):
            if i >= self.__n_before_merge__:
                out = layer(out)
        return out

    def extra_repr(self) -> str:
        return f"block={self.__block__!r}, merge={_MERGE_NAMES[self.__merge__]!r}"


class Parallel(nn.Sequential):
    """Branches on the same input, concatenated on channels (Inception) or added, then `after`."""

    __constants__ = ["__n_branches__", "__merge__"]

    def __init__(
        self,
        branches: list[tuple[str, nn.Module]],
        merge: str,
        after: list[tuple[str, nn.Module]],
        block: str = "",
    ):
        super().__init__(OrderedDict([*branches, *after]))
        self.__n_branches__ = len(branches)
        self.__merge__ = _MERGES[merge]
        self.__block__ = block

    def forward(self, x: Tensor) -> Tensor:
        outs: list[Tensor] = []
        for i, layer in enumerate(self):
            if i < self.__n_branches__:
                outs.append(layer(x))
        if self.__merge__ == 1:  # concat
            out = torch.cat(outs, 1)
        else:
            out = outs[0]
            for o in outs[1:]:
                out = out + o
        for i, layer in enumerate(self):
            if i >= self.__n_branches__:
                out = layer(out)
        return out

    def extra_repr(self) -> str:
        return f"block={self.__block__!r}, merge={_MERGE_NAMES[self.__merge__]!r}"


# The module of the `channel_pad` kind (layers/misc.py), which ships this class's source to every
# exported file that uses it: so it uses only torch, nn, F and Tensor, and keeps its constructor
# arguments as attributes of the same name.
class ChannelPad(nn.Module):
    """ResNet's option-A shortcut: subsample spatially, append zero channels."""

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra_channels}, stride={self.stride}"
