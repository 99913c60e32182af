"""The torch backend: IR -> plain nn.Module, then weight initialisation as the spec says.

(Named torch_backend, not build, so that importing it never shadows the function `netspec.build`.)
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext

import torch
from torch import nn

from .analysis import analyze_ir
from .ir import AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode, layers
from .layers import KINDS
from .layers.activation import Activation
from .lower import lower
from .memory import check_memory, estimate
from .modules import AuxNetwork, Network, Parallel, Residual
from .spec import InitSpec, Spec

# layers whose output autograd does not keep: a residual add may then write into it
_SAFE_TO_OVERWRITE = {"batchnorm", "conv", "linear"}


def module_for(node: Node) -> nn.Module:
    if isinstance(node, LayerNode):
        kind = KINDS[node.kind]
        if isinstance(kind, Activation):
            return kind.build(node.params, node.in_shape, node.out_shape, inplace=node.inplace)
        return kind.build(node.params, node.in_shape, node.out_shape)
    if isinstance(node, ResidualNode):
        last = node.body[-1] if node.body else None
        inplace = isinstance(last, LayerNode) and last.kind in _SAFE_TO_OVERWRITE
        return Residual(
            _named(node.body),
            (node.shortcut.name, module_for(node.shortcut)) if node.shortcut else None,
            node.merge,
            _named(node.after),
            node.block,
            inplace_merge=inplace and node.merge == "add",
        )
    if isinstance(node, ParallelNode):
        return Parallel(_named(node.branches), node.merge, _named(node.after), node.block)
    if isinstance(node, AuxNode):
        return nn.Sequential(OrderedDict(_named(node.children)))
    if isinstance(node, SeqNode):
        if node.role != "model":
            return nn.Sequential(OrderedDict(_named(node.children)))
        aux = [i for i, c in enumerate(node.children) if isinstance(c, AuxNode)]
        if aux:
            return AuxNetwork(OrderedDict(_named(node.children)), aux)
        return Network(OrderedDict(_named(node.children)))
    raise TypeError(f"no module for {type(node).__name__}")


def _named(nodes: list[Node]) -> list[tuple[str, nn.Module]]:
    return [(n.name, module_for(n)) for n in nodes]


def init_weights(model: nn.Module, root: SeqNode, init: InitSpec) -> None:
    """torchvision's scheme by default: Kaiming-normal (fan_out) convs, BN gamma 1 / beta 0."""
    for node in layers(root):
        m = model.get_submodule(node.path)
        if isinstance(m, nn.Conv2d):
            scheme = node.params.init if node.params.init != "default" else init.conv
            _init_weight(m, scheme)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.constant_(m.weight, 0.0 if node.zero_init or node.params.zero_init else 1.0)
            nn.init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.Linear):
            scheme = node.params.init if node.params.init != "default" else init.linear
            _init_weight(m, scheme)


def _init_weight(m: nn.Conv2d | nn.Linear, scheme: str) -> None:
    if scheme == "default":
        return  # PyTorch's own reset_parameters()
    w = m.weight
    if scheme == "kaiming_normal":
        nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu")
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(w)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(w)
    elif scheme == "normal":
        nn.init.normal_(w, 0.0, 0.01)
    elif scheme == "zeros":
        nn.init.zeros_(w)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def build(
    spec: Spec, *, input_size: int | tuple[int, int] | None = None, seed: int | None = None
) -> nn.Module:
    """Compile a spec into a torch.nn.Module. A seed (argument or `init.seed`) makes it reproducible."""
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    root = lower(spec, size)
    check_memory(spec, estimate(analyze_ir(root, spec.name), "building the module"))  # before allocating
    seed = seed if seed is not None else spec.init.seed
    rng = torch.random.fork_rng(devices=[]) if seed is not None else nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        model = module_for(root)
        init_weights(model, root, spec.init)
    return model
