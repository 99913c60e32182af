"""Primitive layers: a layer item's parameters validated by its kind, its sugar expanded into sibling
layers (conv's `norm`/`act`), each layer named, shaped, costed and counted against the limits."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..expr import plain_key
from ..ir import LayerNode, Node
from ..layers import KINDS, ShapeError
from ..layers.base import Cost, Shape, Window
from ..layers.init_schemes import DEFAULT_INIT, InitScheme
from ..layers.merge import MergeKind
from .context import Lowering
from .cursor import Cursor, Lowered, NameClashError, Src
from .shapes import fmt

# a value that is exactly `${name}` binds a layer parameter to a spec name (fullmatch: no trailing newline)
_BINDING = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")


def bindings(params: Mapping[str, Any]) -> dict[str, str]:
    """Which `${name}` made each parameter value, where the spec wrote exactly that (for the exporter's
    argument names: `out: ${width}` becomes `width`)."""
    found = {}
    for key, value in params.items():
        match = _BINDING.fullmatch(value.strip()) if isinstance(value, str) and "${" in value else None
        if match:
            found[key] = match.group(1)
    return found


# the layers a layer item stands for: (kind, parameters, bindings) of the layer, then of the siblings its
# sugar adds (conv's `norm`/`act`)
Expansion = list[tuple[str, Any, dict[str, str]]]


def lower_layer(
    ctx: Lowering, kind: str, values: dict[str, Any], cur: Cursor, bound: dict[str, str]
) -> Lowered:
    """A primitive layer item: the layer, then the siblings its sugar adds, in order."""
    layers = expansion(ctx, kind, values, cur.src, bound)
    if layers is None:
        return [], None
    return layer_nodes(ctx, layers, cur)


def expansion(
    ctx: Lowering, kind: str, values: dict[str, Any], src: Src, bound: dict[str, str]
) -> Expansion | None:
    """The layers an item of `kind` with `values` stands for, validated; None after a problem."""
    p = layer_params(ctx, kind, values, src)
    if p is None:
        return None
    expand_key = ("expand", kind, id(p))  # (the entry holds p: its id stays unique for the run)
    known = ctx.memo.get(expand_key)
    if known is None:
        known = ctx.memo[expand_key] = (p, KINDS[kind].expand(p))
    own, followers = known[1]
    layers: Expansion = [(kind, own, bound)]
    for follower in followers:
        fp = layer_params(ctx, follower, {}, src)
        if fp is None:
            return None
        layers.append((follower, fp, {}))
    return layers


def layer_nodes(ctx: Lowering, layers: Expansion, cur: Cursor) -> Lowered:
    """The nodes of an item's layers at the cursor, each fed the shape the previous one gives."""
    nodes: list[Node] = []
    x = cur.shape
    for k, params, b in layers:
        if x is None:
            return nodes, None
        # the sugar's siblings of a module at a dotted path sit beside it, under its holder
        holder = nodes[0].name.rpartition(".")[0] if nodes else ""
        node = layer_node(ctx, k, params, cur, b, x, holder)
        if node is None:
            return nodes, None
        nodes.append(node)
        x = node.out_shape
    return nodes, x


def layer_params(ctx: Lowering, kind: str, values: dict[str, Any], src: Src) -> Any:
    """The kind's parameter model over the spec's defaults for the kind and the item's values (validated
    once per run for each set of plain values: the models are frozen, so layers can share one)."""
    key = _params_key(kind, values)
    if key is not None and key in ctx.memo:
        return ctx.memo[key]
    layer = KINDS[kind]
    merged = {**ctx.defaults.get(kind, {}), **values}
    try:
        p = layer.Params.model_validate(merged)
    except ValidationError as exc:
        ctx.pydantic(exc, src, layer.Params)
        return None
    if key is not None:
        ctx.memo[key] = p
    return p


def _params_key(kind: str, values: dict[str, Any]) -> tuple[Any, ...] | None:
    """A layer's written values as a memo key, or None where one is not plain (expr.plain_key)."""
    key: list[Any] = ["params", kind]
    for name, v in values.items():
        plain = plain_key(v)
        if plain is None:
            return None
        key += (name, plain)
    return tuple(key)


def layer_node(
    ctx: Lowering,
    kind: str,
    p: Any,
    cur: Cursor,
    bound: dict[str, str],
    x: Shape | None = None,
    holder: str = "",
) -> LayerNode | None:
    """One layer at the cursor, fed `x` (default: the cursor's shape): named in its parent (under
    `holder`, a dotted path's, where given), its output shape inferred, its cost counted."""
    layer = KINDS[kind]
    src = cur.src
    x = cur.shape if x is None else x
    assert x is not None
    try:
        name = cur.names.assign(layer.prefix, p.name, holder)
    except NameClashError as clash:
        ctx.problem(f"module name '{clash}' is used twice in '{cur.where}'", src)
        return None
    path = cur.path(name)
    known = shaped(ctx, kind, p, x)
    if isinstance(known, ShapeProblem):
        ctx.problem(f"{path} ({kind}): {known.message}", src, known.hint, shape=True)
        return None
    _, y, cost, window = known
    init = _init_scheme(ctx, kind, p)
    ctx.budget.add_layer(cost.params, path, src)
    return LayerNode(
        name,
        path,
        x,
        y,
        src,
        cur.section,
        kind=kind,
        params=p,
        cost=cost,
        window=window,
        init=init,
        bindings=bound,
    )


@dataclass(frozen=True, slots=True)
class ShapeProblem:
    """Why a layer cannot take its input (the message leaves out the layer, which the caller names)."""

    message: str
    hint: str | None = None


# (the parameters, the output shape, cost and receptive-field window) of a layer
Shaped = tuple[Any, Shape, Cost, Window]


def shaped(ctx: Lowering, kind: str, p: Any, x: Shape) -> Shaped | ShapeProblem:
    """What a layer of `kind` with parameters `p` makes of input `x`: a kind's rules are functions of
    (p, x), so each is asked once per run (the entry holds p: its id stays unique for the run)."""
    key = ("shape", kind, id(p), x)
    known = ctx.memo.get(key)
    if known is not None:
        return known
    layer = KINDS[kind]
    try:
        y = layer.infer(p, x)
    except ShapeError as exc:
        return ShapeProblem(str(exc))
    if min(y, default=1) <= 0:
        return ShapeProblem(
            f"output size reaches 0 (input {fmt(x)} -> {fmt(y)})",
            "the input is too small for this many downsamplings; use a larger input size",
        )
    known = ctx.memo[key] = (p, y, layer.cost(p, x, y), layer.window(p, x))
    return known


def merge_node(
    ctx: Lowering,
    kind: MergeKind,
    p: Any,
    cur: Cursor,
    shapes: list[Shape],
    bound: dict[str, str],
    listed: Callable[[], str],
) -> LayerNode | None:
    """A merge of outputs of `shapes` (`listed()` says which, for a message): named, shaped, costed."""
    try:
        name = cur.names.assign(kind.prefix, p.name)
    except NameClashError as clash:
        ctx.problem(f"module name '{clash}' is used twice in '{cur.where}'", cur.src)
        return None
    path = cur.path(name)
    try:
        y = kind.infer_merge(shapes)
    except ShapeError as exc:
        ctx.problem(f"{path} ({kind.name}): {exc} (inputs: {listed()})", cur.src, shape=True)
        return None
    ctx.budget.add_layer(0, path, cur.src)
    return LayerNode(
        name,
        path,
        shapes[0],
        y,
        cur.src,
        cur.section,
        kind=kind.name,
        params=p,
        cost=kind.merge_cost(shapes, y),
        window=kind.merge_window(shapes, y),
        in_shapes=tuple(shapes),
        bindings=bound,
    )


def _init_scheme(ctx: Lowering, kind: str, p: Any) -> InitScheme:
    """The layer's own `init:`, else the spec's `init:` default for its kind, else PyTorch's own (worked
    out once per run for each parameter model: a kind without `init` makes pydantic raise inside)."""
    key = ("init", kind, id(p))
    known = ctx.memo.get(key)
    if known is None:
        known = ctx.memo[key] = (p, _own_or_default_init(ctx, kind, p))  # holding p keeps its id unique
    return known[1]


def _own_or_default_init(ctx: Lowering, kind: str, p: Any) -> InitScheme:
    own = getattr(p, "init", DEFAULT_INIT)
    if not isinstance(own, InitScheme):  # a plug-in's `init` field may hold a name of its own
        own = InitScheme(str(own))
    if not own.is_default:
        return own
    section = KINDS[kind].init_default
    return getattr(ctx.spec.init, section) if section else DEFAULT_INIT
