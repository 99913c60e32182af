"""Replaying a block: a use of a `blocks:` entry that repeats an earlier use of the same run (same
arguments, input shape, place in the spec and stage) gives the same modules under another name, so its
nodes are copied from the earlier use's rather than lowered again. Most blocks of most networks are
such repeats: ResNet-50's 8 bottlenecks of 16 (all but the first two of each stage: the first
strides, the second meets a new input width), most blocks of a RegNet stage. A copy costs a tenth of
a lowering or less.

What a use's lowering reads is exactly what the key holds: the block's definition, its evaluated
arguments (the block's scope is those over the spec's globals, which are fixed for the run), the input
shape, the stage (`section`), where the use is written (the block node's `src`), how its children are
named and how deeply blocks nest there. Its own name and module path, its place in the stage
(`repeat`) and the inputs a graph list gives it are set on the copy. The work, layers and parameters
the first lowering counted are counted again; where they would pass a limit, the block is lowered for
real, which stops at the exact layer. Nothing is replayed while a problem is pending: after a problem
lowering checks less (`finish_list`), so a first use lowered then is not a template.

A block whose lowering cannot read its input shape is replayed at *any* input shape of the same rank:
DenseNet's dense layers, each fed 32 channels more than the one before. That holds where no text of
its definition names `in_channels`, `in_height` or `in_width` (expressions read names only by writing
them), and its template is flat: layers only (no nested block or composite, whose own scope would see
their input shape), no references, no shortcut module. Such a copy also takes its stage and its `src`
from the cursor (only its own node is labelled with where it is used), so DenseNet's first dense
layer of a stage is a copy of the first stage's. The copy's shapes, costs and receptive-field
windows are inferred again along the chain, the merge's shape and the shortcut decision worked out
again; where any of that fails or differs, the block is lowered for real, which reports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..expr import plain_key
from ..ir import AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode
from ..layers.base import Shape
from .budget import Tally
from .context import Lowering
from .cursor import Cursor, Lowered, NameClashError
from .primitive import Shaped, ShapeProblem, shaped
from .shapes import merge_kind, merged_shape
from .shortcut import Build, plan_shortcut, shortcut_mode

if TYPE_CHECKING:
    from .blocks import BlockUse

_SHAPE_NAMES = ("in_channels", "in_height", "in_width")  # the names bind() gives a block's input shape
_SHAPE_AT = 6  # where replay_key puts the input shape


@dataclass(frozen=True, slots=True)
class BlockTemplate:
    """The first lowering of a block use: its node (never handed out again: replays copy it), the
    shape it gives, and what it counted against the limits."""

    node: Node
    out_shape: Shape
    work: int
    layers: int
    params: int


def replay_key(ctx: Lowering, use: BlockUse, cur: Cursor) -> tuple[Any, ...] | None:
    """What the lowering of this use reads, as a memo key; None where it is not replayed: an inline
    block or composite (their layers or scope are the caller's), arguments that are not plain values,
    a pending problem."""
    if use.outer is not None or use.definition.inline or ctx.problems or cur.shape is None:
        return None
    args: list[Any] = []
    for name, value in use.args.items():
        frozen = _frozen(value)
        if frozen is None:
            return None
        args += (name, frozen)
    return (
        "block",
        id(use.definition),  # (the spec holds the definition: its id stays unique for the run)
        use.kind,
        use.prefix,
        use.style,
        tuple(args),
        cur.shape,
        cur.section,
        cur.src,
        len(ctx.expanding),
    )


def _frozen(value: Any) -> Any:
    """A block argument as part of the key: a plain value as expr.plain_key keys it, a list of them
    (a block's arguments are few and short) as a tuple; None for anything else."""
    if type(value) is list:
        items = [_frozen(v) for v in value]
        return None if any(i is None for i in items) else (list, tuple(items))
    return plain_key(value)


def any_shape_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """The key of a flat block's use: its input shape does not matter, only its rank, nor where it is
    (its stage, where it is written: a flat template's copy takes both from the cursor)."""
    return (*key[:_SHAPE_AT], ("rank", len(key[_SHAPE_AT])), *key[_SHAPE_AT + 3 :])


def remember(
    ctx: Lowering, use: BlockUse, key: tuple[Any, ...], nodes: list[Node], y: Any, before: Tally
) -> None:
    """Keep a first lowering that found no problem as the template of its key (and, where the block
    does not read its input shape, of every input shape)."""
    if y is None or ctx.problems or len(nodes) != 1:
        return
    budget = ctx.budget
    template = BlockTemplate(
        nodes[0], y, budget.work - before.work, budget.layers - before.layers, budget.params - before.params
    )
    ctx.memo[key] = template
    if _flat(nodes[0], use) and not _reads_shape(ctx, use):
        shapeless = any_shape_key(key)
        if shapeless not in ctx.memo:
            ctx.memo[shapeless] = template


def _flat(node: Node, use: BlockUse) -> bool:
    """A block of layers only, that reads no names, and whose shortcut decision _reshaped can make
    again: a residual merged with the input itself under a shortcut mode (not a list of layers), or a
    plain sequence (`merge: none`; a sequence that a mode made of a merged block, such as
    `identity_if_possible` where the shapes differed, becomes a residual at another shape)."""
    block = use.definition
    if isinstance(node, ResidualNode):
        layers = [*node.body, *node.after]
        if node.shortcut is not None or isinstance(block.shortcut, list):
            return False
    elif isinstance(node, SeqNode) and node.role == "block" and not node.graph and block.merge == "none":
        layers = node.children
    else:
        return False
    return all(type(n) is LayerNode and not n.inputs and "." not in n.name for n in layers)


def _reads_shape(ctx: Lowering, use: BlockUse) -> bool:
    """Whether any text of the block's definition names an input shape name (once per run)."""
    key = ("reads shape", id(use.definition))
    known = ctx.memo.get(key)
    if known is None:
        block = use.definition
        texts = (block.body, block.after, block.vars, block.params, block.shortcut)
        known = ctx.memo[key] = (block, any(_names_shape(t) for t in texts))
    return bool(known[1])


def _names_shape(value: Any) -> bool:
    if isinstance(value, str):
        return any(name in value for name in _SHAPE_NAMES)
    if isinstance(value, dict):
        return any(_names_shape(k) or _names_shape(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_names_shape(v) for v in value)
    return False


def replayed(ctx: Lowering, key: tuple[Any, ...], use: BlockUse, cur: Cursor) -> Lowered | None:
    """The use as a copy of a template (named at the cursor, its counts counted again), or None where
    there is none that fits: the caller lowers it."""
    template: BlockTemplate | None = ctx.memo.get(key)
    reshape = None
    if template is None:
        template = ctx.memo.get(any_shape_key(key))
        reshape = _reshaped(ctx, template, use, cur) if template is not None else None
        if template is None or reshape is None:
            return None
    params = template.params if reshape is None else reshape.params
    budget, limits = ctx.budget, ctx.budget.limits
    if not (
        budget.fits(template.work)
        and budget.layers + template.layers <= limits.max_layers
        and budget.params + params <= limits.max_params
    ):
        return None  # (lowered for real, it stops at the layer that passes the limit)
    try:
        name = cur.names.assign(use.prefix or use.kind, use.name)
    except NameClashError as clash:
        ctx.problem(f"module name '{clash}' is used twice in '{cur.where}'", cur.src)
        return [], None
    budget.work += template.work
    budget.layers += template.layers
    budget.params += params
    old, path = template.node, cur.path(name)
    if reshape is None:
        copy, y = _copied(old, old.path, path), template.out_shape
    else:
        copy, y = _rebuilt(old, reshape, path, cur.section), reshape.out_shape
        copy.src = cur.src
    copy.name, copy.path = name, path
    copy.inputs = ()  # (what the caller's graph list gave the template's use is not this use's)
    copy.inline, copy.repeat = use.in_place, use.repeat
    return [copy], y


@dataclass(slots=True)
class _Reshape:
    """A flat template at another input shape: each layer's input and what it makes of it (the body's
    layers, then the `after` layers), the merge's FLOPs, the output shape and the parameter count."""

    in_shape: Shape
    layers: list[tuple[Shape, Shaped]]
    merge_flops: int
    out_shape: Shape
    params: int


def _reshaped(ctx: Lowering, template: BlockTemplate, use: BlockUse, cur: Cursor) -> _Reshape | None:
    """A flat template at the cursor's input shape; None where a layer cannot take its input or the
    merge or the shortcut decision differs (lowering it for real reports that)."""
    x, old = cur.shape, template.node
    assert x is not None
    layers: list[tuple[Shape, Shaped]] = []
    if isinstance(old, SeqNode):
        z = _chain(ctx, old.children, x, layers)
        if z is None:
            return None
        return _Reshape(x, layers, 0, z, _params(layers))
    assert isinstance(old, ResidualNode)
    y = _chain(ctx, old.body, x, layers)
    if y is None:
        return None
    out = merged_shape(old.merge, x, y)
    mode = shortcut_mode(ctx, use.definition)  # (a mode: _flat keeps lists of layers out)
    if isinstance(out, str) or plan_shortcut(mode, old.merge, x, y).build != Build.IDENTITY:
        return None
    z = _chain(ctx, old.after, out, layers)
    if z is None:
        return None
    flops = merge_kind(old.merge).merge_cost([x, y], out).flops
    return _Reshape(x, layers, flops, z, _params(layers))


def _chain(ctx: Lowering, nodes: list[Node], x: Shape, layers: list[tuple[Shape, Shaped]]) -> Shape | None:
    """What a chain of layers makes of `x`, each layer's input and outcome added to `layers`; None
    where one cannot take its input."""
    for node in nodes:
        layer: LayerNode = node  # type: ignore[assignment]  # (a flat template holds layers only)
        if x == layer.in_shape:  # (what the template's layer was fed: what it made then)
            known: Shaped = (layer.params, layer.out_shape, layer.cost, layer.window)
        else:
            found = shaped(ctx, layer.kind, layer.params, x)
            if isinstance(found, ShapeProblem):
                return None
            known = found
        layers.append((x, known))
        x = known[1]
    return x


def _params(layers: list[tuple[Shape, Shaped]]) -> int:
    total = 0
    for _, known in layers:
        total += known[2].params
    return total


def _rebuilt(old: Node, reshape: _Reshape, path: str, section: str) -> Node:
    """The flat template `old` as `reshape` says, at module path `path` in `section`."""
    cut = len(old.path)

    def layer(node: Node, at: tuple[Shape, Shaped]) -> Node:
        x, known = at
        copy: Any = _COPY[type(node)](node)  # (_changed's copy, spelled out: most copies)
        copy.in_shape, copy.out_shape, copy.cost, copy.window = x, *known[1:]
        copy.path, copy.section = path + node.path[cut:], section
        return copy

    top = _moved(old, reshape.in_shape, reshape.out_shape)
    top.section = section
    if isinstance(top, SeqNode):
        top.children = [layer(n, at) for n, at in zip(top.children, reshape.layers, strict=True)]
    else:
        assert isinstance(top, ResidualNode)
        split = len(top.body)
        top.body = [layer(n, at) for n, at in zip(top.body, reshape.layers[:split], strict=True)]
        top.after = [layer(n, at) for n, at in zip(top.after, reshape.layers[split:], strict=True)]
        top.merge_flops = reshape.merge_flops
    return top


_N = TypeVar("_N", bound=Node)


def _moved(node: _N, x: Shape, y: Shape) -> _N:
    """A shallow copy of `node` fed `x`, giving `y`."""
    return _changed(node, in_shape=x, out_shape=y)


def _changed(node: _N, **fields: Any) -> _N:
    """A shallow copy of `node` with `fields` changed."""
    copy = cast(_N, _COPY[type(node)](node))
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


def _copier(cls: type[Node]) -> Callable[[Node], Node]:
    """A function that copies a `cls` field by field. The IR's classes have slots (no instance
    dictionary: half the objects for the collector to follow), and copy.copy would take its reduce
    protocol, several times slower; the function is written as dataclasses writes `__init__`, from
    the class's own field names."""
    lines = "".join(f"    copy.{f.name} = node.{f.name}\n" for f in dataclasses.fields(cls))
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    exec(f"def copy_node(node):\n    copy = new(cls)\n{lines}    return copy\n", scope)
    return cast(Callable[[Node], Node], scope["copy_node"])


_COPY: dict[type[Node], Callable[[Node], Node]] = {
    cls: _copier(cls) for cls in (LayerNode, SeqNode, ResidualNode, ParallelNode, AuxNode)
}


def _copied(node: Node, old: str, new: str) -> Node:
    """A copy of `node` and everything under it, moved from module path `old` to `new`: new lists
    (lowering's callers and finish_list set flags on nodes), shared values (shapes, parameter models,
    costs: immutable)."""
    copy = _moved(node, node.in_shape, node.out_shape)
    copy.path = new + node.path[len(old) :]
    if isinstance(copy, SeqNode):
        copy.children = [_copied(c, old, new) for c in copy.children]
        if copy.outputs is not None:
            copy.outputs = dict(copy.outputs)
    elif isinstance(copy, ResidualNode):
        copy.body = [_copied(c, old, new) for c in copy.body]
        copy.after = [_copied(c, old, new) for c in copy.after]
        if copy.shortcut is not None:
            copy.shortcut = cast(SeqNode, _copied(copy.shortcut, old, new))
    elif isinstance(copy, ParallelNode):
        copy.branches = [cast(SeqNode, _copied(b, old, new)) for b in copy.branches]
        copy.after = [_copied(c, old, new) for c in copy.after]
    elif isinstance(copy, AuxNode):
        copy.children = [_copied(c, old, new) for c in copy.children]
    return copy
