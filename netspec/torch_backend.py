"""The torch backend: IR -> plain nn.Module, then weight initialisation as the IR records it.

Every layer is its kind's `module_call` instantiated, and initialised by its kind's `init_steps`
(netspec/layers/call.py): the same descriptions `netspec export` writes as code, so an exported file
builds this module, weights included.

(Named torch_backend, not build, so that importing it never shadows the function `netspec.build`.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import nn

from .analysis import analyze_ir
from .extract import extract_features
from .features import FeatureRef, choose_levels, default_levels
from .ir import AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode, layers
from .layers import KINDS
from .lower import lower
from .memory import check_memory, estimate
from .modules import AuxNetwork, Network, Parallel, Residual
from .spec import Spec


def module_for(node: Node) -> nn.Module:
    if isinstance(node, LayerNode):
        kind = KINDS[node.kind]
        if (
            node.inplace
        ):  # only where lowering found the kind `inplace_ok` (a plug-in's build may not take it)
            return kind.build(node.params, node.in_shape, node.out_shape, inplace=True)
        return kind.build(node.params, node.in_shape, node.out_shape)
    if isinstance(node, ResidualNode):
        return Residual(
            _named(node.body),
            (node.shortcut.name, module_for(node.shortcut)) if node.shortcut else None,
            node.merge,
            _named(node.after),
            node.block,
            inplace_merge=node.merges_in_place,
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


def _named(nodes: Sequence[Node]) -> list[tuple[str, nn.Module]]:
    return [(n.name, module_for(n)) for n in nodes]


def init_weights(model: nn.Module, root: SeqNode) -> None:
    """Each layer's init steps, in network order (the order the RNG is drawn in)."""
    for node in layers(root):
        steps = KINDS[node.kind].init_steps(node.params, node.init, node.zero_init)
        if steps:
            module = model.get_submodule(node.path)
            for step in steps:
                step.apply(module)


def build(
    spec: Spec,
    *,
    input_size: int | tuple[int, int] | None = None,
    seed: int | None = None,
    features: Sequence[FeatureRef] | bool | None = None,
) -> nn.Module:
    """Compile a spec into a torch.nn.Module. A seed (argument or `init.seed`) makes it reproducible.

    The module's `feature_info` lists its feature levels (netspec/features.py). With `features`
    (module names or level indices; True: every level) the module returns those outputs instead
    (netspec/extract.py)."""
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    root = lower(spec, size)
    analysis = analyze_ir(root, spec.name)
    check_memory(spec, estimate(analysis, "building the module"))  # before allocating
    levels = default_levels(root, analysis)
    chosen = choose_levels(levels, analysis, features)  # before building: a misspelt name costs nothing
    model = build_ir(root, seed if seed is not None else spec.init.seed)
    if "feature_info" not in model._modules:  # a spec may give a module that name
        # timm's attribute, read by its FeatureListNet; plain data, so mypy's Module typing does not know it
        model.feature_info = levels  # type: ignore[assignment]
    return model if chosen is None else extract_features(model, chosen)


def build_ir(root: SeqNode, seed: int | None = None) -> nn.Module:
    """The module of a lowered spec, initialised; with a seed, from that seed (the global RNG is kept)."""
    rng = torch.random.fork_rng(devices=[]) if seed is not None else nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        model = module_for(root)
        init_weights(model, root)
    return model
