"""Sequences of spec items, and what one item is: a primitive layer, an inline composite, or a use
of a block from `blocks:`. A block may use blocks (and itself, under a `when:` that turns false), up to
MAX_BLOCK_NESTING deep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import did_you_mean
from ..ir import LayerNode, Node
from ..layers import KINDS
from ..layers.composites import COMPOSITES
from .blocks import BlockUse, expand_block, lower_composite
from .context import BadValueError, Lowering
from .cursor import Cursor, Lowered, Src
from .graph import declare, lower_linked
from .inplace import can_run_inplace
from .primitive import bindings, lower_layer

MAX_BLOCK_NESTING = 32  # blocks used as layers inside blocks; a self-using block must stop by `when`
_SCALAR = "\0scalar"  # marks `kind: value` for a kind that takes no scalar


def split_item(item: Any) -> tuple[str, dict[str, Any]]:
    """`relu`, `{relu: null}`, `{dropout: 0.5}`, `{conv: {...}}` -> (kind, params)."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict | Mapping) and len(item) == 1:  # (dict first: an ABC check is slower)
        kind, value = next(iter(item.items()))
        if not isinstance(kind, str):
            raise ValueError("a layer kind must be a word such as `conv`")
        if value is None:
            return kind, {}
        if isinstance(value, dict | Mapping):
            return kind, dict(value)
        kind_def = KINDS.get(kind)
        if kind_def is not None and kind_def.shorthand:
            return kind, {kind_def.shorthand: value}
        return kind, {_SCALAR: value}  # an error unless `kind` is unknown (reported as such)
    if isinstance(item, Mapping):
        keys = ", ".join(map(str, item))
        raise ValueError(
            f"a layer is a one-key mapping such as `conv: {{out: 64}}`, found keys {keys}"
            " (is a parameter indented at the level of the layer kind?)"
        )
    raise ValueError(f"a layer is a mapping such as `relu: {{}}`, not {type(item).__name__}")


def lower_sequence(ctx: Lowering, items: Any, cur: Cursor) -> Lowered:
    """The items of a list in order, each fed the shape the previous one gives."""
    if not isinstance(items, list):
        ctx.problem("expected a list of layers", cur.src)
        return [], None
    declare(cur.names, items, cur.src, cur.shape)
    nodes: list[Node] = []
    x = cur.shape
    for i, item in enumerate(items):
        new, x = lower_linked(ctx, item, cur.at_item(i, x), lower_item)
        for node in new:
            prev = nodes[-1] if nodes else None
            # (an input read by name may be read again: finish_list also checks the previous output)
            if isinstance(node, LayerNode) and not node.inputs and can_run_inplace(node, prev):
                node.inplace = True
            nodes.append(node)
    return nodes, x


def lower_item(ctx: Lowering, item: Any, cur: Cursor) -> Lowered:
    """One item of a sequence (a layer, a composite or a block), unless its `when:` is false."""
    try:
        kind, params = split_item(item)
    except ValueError as exc:
        ctx.problem(str(exc), cur.src)
        return [], None
    ctx.budget.spend(1 + len(params), cur.src)
    at = cur if isinstance(item, str) else cur.at(kind)  # the item's parameters (split_item: str or mapping)
    if _SCALAR in params and (kind in KINDS or kind in COMPOSITES or kind in ctx.spec.blocks):
        ctx.problem(f"`{kind}` takes a mapping of parameters, e.g. `{kind}: {{...}}`", cur.src)
        return [], None
    try:
        if "when" in params and not ctx.condition(params.pop("when"), cur.scope, (*at.src, "when")):
            return [], cur.shape
        if kind in KINDS:
            # (only text and lists can hold expressions: other values need no call)
            values = {
                k: ctx.value(v, cur.scope, (*at.src, k)) if isinstance(v, str | list) else v
                for k, v in params.items()
            }
            return lower_layer(ctx, kind, values, at, bindings(params))
        if kind in COMPOSITES:
            return lower_composite(ctx, kind, params, at)
        if kind in ctx.spec.blocks:
            return _block_item(ctx, kind, params, at, cur.src)
    except BadValueError as bad:
        ctx.problem(bad.message, bad.src, bad.hint)
        return [], None
    known = [*KINDS, *COMPOSITES, *ctx.spec.blocks]
    hint = did_you_mean(kind, known) or "see `netspec kinds` for the list"
    ctx.problem(f"unknown layer kind '{kind}'", cur.src, hint)
    return [], None


def _block_item(ctx: Lowering, kind: str, params: dict[str, Any], at: Cursor, item_src: Src) -> Lowered:
    """`- bottleneck: {out: 256}`: a use of a block from `blocks:`, as a layer."""
    args = {k: ctx.value(v, at.scope, (*at.src, k)) for k, v in params.items()}
    name = args.pop("name", None)
    if not ctx.explicit_name(name, at.src):
        return [], None
    if len(ctx.expanding) >= MAX_BLOCK_NESTING:
        chain = " -> ".join(ctx.expanding[-3:])
        ctx.problem(
            f"blocks nest more than {MAX_BLOCK_NESTING} deep (... {chain} -> {kind}):"
            f" does block '{kind}' contain itself without end?",
            item_src,
            "a block may use itself only under a `when:` that turns false",
        )
        return [], None
    ctx.expanding.append(kind)
    try:
        return expand_block(ctx, BlockUse.of(ctx.spec, kind, args, name), at)
    finally:
        ctx.expanding.pop()
