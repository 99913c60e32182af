"""Primitive layers: a layer item's parameters validated by its kind, its sugar expanded into sibling
layers (conv's `norm`/`act`), each layer named, shaped, costed and counted against the limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..ir import LayerNode, Node
from ..layers import KINDS, ShapeError
from ..layers.base import Shape
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
        match = _BINDING.fullmatch(value.strip()) if isinstance(value, str) else None
        if match:
            found[key] = match.group(1)
    return found


def lower_layer(
    ctx: Lowering, kind: str, values: dict[str, Any], cur: Cursor, bound: dict[str, str]
) -> Lowered:
    """A primitive layer item: the layer, then the siblings its sugar adds, in order."""
    p = layer_params(ctx, kind, values, cur.src)
    if p is None:
        return [], None
    own, followers = KINDS[kind].expand(p)
    expanded: list[tuple[str, Any, dict[str, str]]] = [(kind, own, bound)]
    for follower in followers:
        fp = layer_params(ctx, follower, {}, cur.src)
        if fp is None:
            return [], None
        expanded.append((follower, fp, {}))
    nodes: list[Node] = []
    x = cur.shape
    for k, params, b in expanded:
        if x is None:
            return nodes, None
        node = layer_node(ctx, k, params, cur.with_shape(x), b)
        if node is None:
            return nodes, None
        nodes.append(node)
        x = node.out_shape
    return nodes, x


def layer_params(ctx: Lowering, kind: str, values: dict[str, Any], src: Src) -> Any:
    """The kind's parameter model over the spec's defaults for the kind and the item's values."""
    layer = KINDS[kind]
    merged = {**ctx.defaults.get(kind, {}), **values}
    try:
        return layer.Params.model_validate(merged)
    except ValidationError as exc:
        ctx.pydantic(exc, src, layer.Params)
        return None


def layer_node(ctx: Lowering, kind: str, p: Any, cur: Cursor, bound: dict[str, str]) -> LayerNode | None:
    """One layer at the cursor: named in its parent, its output shape inferred, its cost counted."""
    layer = KINDS[kind]
    src, x = cur.src, cur.shape
    assert x is not None
    try:
        name = cur.names.assign(layer.prefix, p.name)
    except NameClashError as clash:
        ctx.problem(f"module name '{clash}' is used twice in '{cur.where}'", src)
        return None
    path = cur.path(name)
    try:
        y = layer.infer(p, x)
    except ShapeError as exc:
        ctx.problem(f"{path} ({kind}): {exc}", src, shape=True)
        return None
    if any(d <= 0 for d in y):
        ctx.problem(
            f"{path} ({kind}): output size reaches 0 (input {fmt(x)} -> {fmt(y)})",
            src,
            "the input is too small for this many downsamplings; use a larger input size",
            shape=True,
        )
        return None
    cost = layer.cost(p, x, y)
    ctx.budget.add_layer(cost.params, path, src)
    window = layer.window(p, x)
    init = _init_scheme(ctx, kind, p)
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


def merge_node(
    ctx: Lowering,
    kind: MergeKind,
    p: Any,
    cur: Cursor,
    shapes: list[Shape],
    bound: dict[str, str],
    listed: str,
) -> LayerNode | None:
    """A merge of outputs of `shapes` (`listed` says which, for the message): named, shaped, costed."""
    try:
        name = cur.names.assign(kind.prefix, p.name)
    except NameClashError as clash:
        ctx.problem(f"module name '{clash}' is used twice in '{cur.where}'", cur.src)
        return None
    path = cur.path(name)
    try:
        y = kind.infer_merge(shapes)
    except ShapeError as exc:
        ctx.problem(f"{path} ({kind.name}): {exc} (inputs: {listed})", cur.src, shape=True)
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
        in_shapes=tuple(shapes),
        bindings=bound,
    )


def _init_scheme(ctx: Lowering, kind: str, p: Any) -> str:
    """The layer's own `init:`, else the spec's `init:` default for its kind, else PyTorch's own."""
    own = getattr(p, "init", "default")
    if own != "default":
        return str(own)
    section = KINDS[kind].init_default
    return str(getattr(ctx.spec.init, section)) if section else "default"
