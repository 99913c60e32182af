"""Sequences of spec items, and what one item is: a primitive layer, an inline composite, or a use
of a block from `blocks:`. A block may use blocks (and itself, under a `when:` that turns false), up to
MAX_BLOCK_NESTING deep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import did_you_mean
from ..expr import has_expression, names_read, values_key
from ..ir import LayerNode, Node
from ..layers import KINDS
from ..layers.composites import COMPOSITES
from .blocks import BlockUse, expand_block, lower_composite
from .context import BadValueError, Lowering
from .cursor import Cursor, Lowered, Src
from .graph import FROM, declare, lower_linked, publish
from .inplace import can_run_inplace
from .primitive import Expansion, bindings, expansion, layer_nodes, lower_layer

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
    declare(cur.names, items, cur.src, cur.shape, ctx.memo)
    nodes: list[Node] = []
    x = cur.shape
    for i, item in enumerate(items):
        layer = LayerItem.of(ctx, item)
        if layer is not None and layer.plain:  # (what lower_linked does for it, shorter)
            src = (*cur.src, i)
            new, x = layer.lower_at(ctx, src, cur.moved(layer.part(src), x))
            publish(cur.names, layer.name, new, x, src)
        else:
            new, x = lower_linked(ctx, item, cur.at_item(i, x), lower_item)
        for node in new:
            prev = nodes[-1] if nodes else None
            # (an input read by name may be read again: finish_list also checks the previous output)
            if isinstance(node, LayerNode) and not node.inputs and can_run_inplace(node, prev):
                node.inplace = True
            nodes.append(node)
    return nodes, x


@dataclass(slots=True)
class LayerItem:
    """A primitive layer item without `when:`, read once per run (a block's body is lowered at every use
    of the block): its kind, its parameters as written and their `${name}` bindings, and, where no value
    holds an expression, the layers it stands for, validated at its first use."""

    item: Any  # (held: its id keys the memo, so it stays unique for the run)
    kind: str
    params: dict[str, Any]
    bound: dict[str, str]
    constant: bool
    name: Any  # its `name:` as written
    plain: bool  # no `from:`, and a name that is neither computed nor dotted: it reads the previous output
    reads: tuple[str, ...] | None  # the names its values' expressions read (None: not known)
    layers: Expansion | None = None  # a constant item's layers
    # the layers for the values of the names it reads, and the work their expressions took
    by_inputs: dict[tuple[Any, ...], tuple[Expansion, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: Lowering, item: Any) -> LayerItem | None:
        """The item's reading, remembered for the run; None where it is not such an item."""
        key = ("item", id(item))
        known = ctx.memo.get(key)
        if known is None:
            known = ctx.memo[key] = (item, cls._read(item))
        return known[1]

    @classmethod
    def _read(cls, item: Any) -> LayerItem | None:
        try:
            kind, params = split_item(item)
        except ValueError:
            return None
        if kind not in KINDS or "when" in params or _SCALAR in params:
            return None  # (lower_item's general path reads it, and reports what is wrong)
        constant = not any(isinstance(v, list) or has_expression(v) for v in params.values())
        name = params.get("name")
        plain = FROM not in params and not (isinstance(name, str) and (has_expression(name) or "." in name))
        return cls(item, kind, params, bindings(params), constant, name, plain, _reads(params))

    def lower(self, ctx: Lowering, cur: Cursor) -> Lowered:
        """lower_item's path for a layer: the same work counted, the same values, problems and nodes."""
        return self.lower_at(ctx, cur.src, cur.moved(self.part(cur.src), cur.shape))

    def part(self, src: Src) -> Src:
        """Where the parameters of the item written at `src` are (a bare word has none of its own)."""
        return src if isinstance(self.item, str) else (*src, self.kind)

    def lower_at(self, ctx: Lowering, src: Src, at: Cursor) -> Lowered:
        """The item written at `src`, its parameters at `at`."""
        ctx.budget.spend(1 + len(self.params), src)
        if self.layers is not None:
            return layer_nodes(ctx, self.layers, at)
        key = values_key(self.reads, at.scope) if self.reads is not None else None
        known = self.by_inputs.get(key) if key is not None else None
        if known is not None and ctx.budget.fits(known[1]):  # (else: stop where the work passes it)
            ctx.budget.spend(known[1], at.src)
            return layer_nodes(ctx, known[0], at)
        before = ctx.budget.work
        try:
            values = {
                k: ctx.value(v, at.scope, (*at.src, k)) if isinstance(v, str | list) else v
                for k, v in self.params.items()
            }
        except BadValueError as bad:
            ctx.problem(bad.message, bad.src, bad.hint)
            return [], None
        layers = expansion(ctx, self.kind, values, at.src, self.bound)
        if layers is None:
            return [], None
        if self.constant:  # the same layers at every use
            self.layers = layers
        elif key is not None:  # the same layers wherever the names it reads have these values
            self.by_inputs[key] = (layers, ctx.budget.work - before)
        return layer_nodes(ctx, layers, at)


def _reads(params: dict[str, Any]) -> tuple[str, ...] | None:
    """The names the expressions in a layer's values read; None where that is not known (a list)."""
    names: set[str] = set()
    for value in params.values():
        if isinstance(value, list):
            return None
        if has_expression(value):
            read = names_read(value)
            if read is None:
                return None
            names.update(read)
    return tuple(sorted(names))


def lower_item(ctx: Lowering, item: Any, cur: Cursor) -> Lowered:
    """One item of a sequence (a layer, a composite or a block), unless its `when:` is false."""
    layer = LayerItem.of(ctx, item)
    if layer is not None:
        return layer.lower(ctx, cur)
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
                k: ctx.value(v, at.scope, (*at.src, k)) if isinstance(v, str | list) else v
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
