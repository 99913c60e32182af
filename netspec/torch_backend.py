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
from typing import cast

import torch
from torch import fx, nn
from torch.fx.proxy import GraphAppendingTracer

from .analysis import analyze_ir
from .extract import extract_features
from .features import FeatureRef, choose_levels, default_levels
from .ir import INPUT, AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode, layers
from .layers import KINDS
from .layers.merge import MergeKind
from .lower import lower
from .memory import check_memory, estimate
from .modules import AuxNetwork, GraphNetwork, Network, Parallel, Residual
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
    if isinstance(node, SeqNode) and node.graph:
        return graph_module(node)
    if isinstance(node, SeqNode):
        if node.role != "model":
            return nn.Sequential(OrderedDict(_named(node.children)))
        aux = [i for i, c in enumerate(node.children) if isinstance(c, AuxNode)]
        if aux:
            return AuxNetwork(OrderedDict(_named(node.children)), aux)
        return Network(OrderedDict(_named(node.children)))
    raise TypeError(f"no module for {type(node).__name__}")


def graph_module(node: SeqNode) -> GraphNetwork:
    """A graph list as a GraphNetwork: a holder with each child module at its (maybe dotted) path, and
    the graph that calls them in order, each on the outputs its `inputs` name (else the previous one);
    merges are the merge kinds' own ops, recorded through fx proxies."""
    holder = nn.Module()
    graph = fx.Graph()
    tracer = GraphAppendingTracer(graph)
    prev = graph.placeholder("x")
    values = {INPUT: prev}
    for child in node.children:
        args = [values[name] for name in child.inputs] or [prev]
        kind = KINDS[child.kind] if isinstance(child, LayerNode) else None
        if isinstance(kind, MergeKind):
            # proxies stand in for tensors: the kind's own op records itself in the graph
            proxies = cast(list[torch.Tensor], [fx.Proxy(a, tracer) for a in args])
            prev = cast(fx.Proxy, kind.combine(proxies)).node
        else:
            _place(holder, child.name, module_for(child))
            prev = graph.call_module(child.name, tuple(args))
        values[child.name] = prev
    outputs = node.outputs
    graph.output({key: values[name] for key, name in outputs.items()} if outputs is not None else prev)
    name = "GraphNetwork" if node.role == "model" else node.block or "GraphSequential"
    module = GraphNetwork(holder, graph, class_name=name)
    # GraphModule registers modules in the order the graph calls them; the spec's order is the one a
    # tree spec's state_dict has (and torchvision's, for `body` before `fpn`)
    module._modules.clear()
    module._modules.update(holder._modules)
    return module


def _place(holder: nn.Module, path: str, module: nn.Module) -> None:
    """`module` at `path` under `holder`, creating plain holder modules for a dotted path."""
    *parents, name = path.split(".")
    for part in parents:
        if part not in holder._modules:
            holder.add_module(part, nn.Module())
        holder = cast(nn.Module, holder._modules[part])
    holder.add_module(name, module)


def _named(nodes: Sequence[Node]) -> list[tuple[str, nn.Module]]:
    return [(n.name, module_for(n)) for n in nodes]


def init_weights(model: nn.Module, root: SeqNode) -> None:
    """Each layer's init steps, in module order (the order the RNG is drawn in; an exported file's
    `for m in self.modules()` loop draws in the same order). For a tree spec it is the network order;
    dotted names group a graph list's modules under their holders."""
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    for node in sorted(layers(root), key=lambda n: order.get(n.path, -1)):
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
