"""Blocks: a `blocks:` entry or an inline composite, expanded for one use at the shape that reaches it.

Blocks are expanded here rather than earlier because their structure can depend on that shape (a
projection shortcut only where the shape changes, MobileNet's `in_channels * t`). A block is a body
(merged with a shortcut: residual, dense, squeeze-and-excitation) or parallel branches (Inception),
then the `after` layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pydantic import ValidationError

from ..errors import did_you_mean
from ..expr import Scope
from ..ir import INPUT, AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode
from ..layers import KINDS
from ..layers.base import Shape
from ..layers.composites import TABLE
from ..layers.merge import MergeKind
from ..spec import BlockDef, NamedBranch, Spec
from .context import BadValueError, Lowering
from .cursor import Cursor, Lowered, NameClashError, NameStyle, Src
from .graph import finish_list
from .inplace import can_follow_merge
from .primitive import layer_params
from .replay import remember, replay_key, replayed
from .shapes import fmt, merge_hint, merge_kind, merged_shape
from .shortcut import lower_shortcut, shortcut_mode

_TYPE_NAMES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "bool": bool,
    "str": str,
}


@dataclass(slots=True)  # (not frozen: nothing changes a use, and a frozen one costs 3x as much to make)
class BlockUse:
    """One use of a block: its definition, the arguments it gets and how its module is named."""

    definition: BlockDef
    kind: str  # the block's name in `blocks:`, or the composite's keyword
    args: Mapping[str, Any]
    def_src: Src  # where the definition is written
    name: str | None = None  # the instance's explicit name
    prefix: str = ""  # of a generated name (default: the kind)
    style: NameStyle = "named"  # how its children are named
    body_key: str = "body"  # the key its layers are written under (an inline `sequential`: `layers`)
    outer: Mapping[str, Any] | None = field(default=None)  # an inline composite sees its caller's scope
    repeat: tuple[int, int] | None = None  # (index, depth) in a stage

    @classmethod
    def of(cls, spec: Spec, kind: str, args: Mapping[str, Any], name: str | None, **more: Any) -> BlockUse:
        """A use of `blocks.<kind>`."""
        return cls(spec.blocks[kind], kind, args, ("blocks", kind), name, **more)

    @property
    def in_place(self) -> bool:
        """Written where it is used (an inline composite), not in `blocks:`."""
        return self.outer is not None


def expand_block(ctx: Lowering, use: BlockUse, cur: Cursor) -> Lowered:
    """The block's module (or, for an `inline` block, its layers) at the cursor: a copy of an earlier
    use's where this use repeats it (replay.py)."""
    key = replay_key(ctx, use, cur)
    if key is None:
        return _expand(ctx, use, cur)
    replay = replayed(ctx, key, use, cur)
    if replay is not None:
        return replay
    before = ctx.budget.tally()
    nodes, y = _expand(ctx, use, cur)
    if key not in ctx.memo:
        remember(ctx, use, key, nodes, y, before)
    return nodes, y


def _expand(ctx: Lowering, use: BlockUse, cur: Cursor) -> Lowered:
    block = use.definition
    ctx.budget.spend(1 + len(use.args) + len(block.params) + len(block.vars), cur.src)
    scope = bind(ctx, use, cur)
    if scope is None or cur.shape is None:
        return [], None
    if block.inline:
        return ctx.lower_sequence(ctx, block.body, cur.with_scope(scope).located(_body_src(use)))
    try:
        name = cur.names.assign(use.prefix or use.kind, use.name)
    except NameClashError as clash:
        ctx.problem(f"module name '{clash}' is used twice in '{cur.where}'", cur.src)
        return [], None
    inside = cur.child(name, use.style).with_scope(scope).located(use.def_src)
    if block.branches is not None:
        return _parallel(ctx, use, inside, cur.src)
    return _body(ctx, use, inside, cur.src)


def _body_src(use: BlockUse) -> Src:
    return (*use.def_src, use.body_key)


def _recorded(node: Node, use: BlockUse) -> Node:
    """A block node with what the backends read about its use (written in place? which repeat?)."""
    node.inline, node.repeat = use.in_place, use.repeat
    return node


def _body(ctx: Lowering, use: BlockUse, inside: Cursor, src: Src) -> Lowered:
    """A body, merged with a shortcut unless `merge: none`, then the `after` layers."""
    block, x = use.definition, inside.shape
    assert x is not None
    body, y = ctx.lower_sequence(ctx, block.body, inside.located(_body_src(use)))
    if y is None:
        return [], None
    merge, shortcut = block.merge, None
    if merge != "none":
        try:
            merge, shortcut = lower_shortcut(ctx, inside, block, shortcut_mode(ctx, block), y)
        except BadValueError as bad:
            ctx.problem(f"{inside.parent} ({use.kind}): {bad.message}", bad.src, bad.hint, shape=True)
            return [], None
        except NameClashError as clash:
            hint = "the shortcut takes the block's `shortcut_name` (default `downsample`); rename one"
            ctx.problem(f"module name '{clash}' is used twice in '{inside.parent}'", src, hint)
            return [], None
    if merge == "none":
        after, z = _after(ctx, use, inside, y)
        nodes = [*body, *after]
        node = SeqNode(inside.name, inside.parent, x, z or y, src, inside.section, nodes, "block", use.kind)
        return [_recorded(finish_list(ctx, node), use)], z
    return _residual(ctx, use, inside, src, body, shortcut, merge, y)


def _residual(
    ctx: Lowering,
    use: BlockUse,
    inside: Cursor,
    src: Src,
    body: list[Node],
    shortcut: SeqNode | None,
    merge: Literal["add", "concat", "mul"],
    y: Shape,
) -> Lowered:
    """`merge(shortcut(x), body(x))`, then the `after` layers."""
    x = inside.shape
    assert x is not None
    out = merged_shape(merge, x if shortcut is None else shortcut.out_shape, y)
    if isinstance(out, str):
        ctx.problem(f"{inside.parent} ({use.kind}): {out}", src, merge_hint(merge), shape=True)
        return [], None
    kind = merge_kind(merge)
    if kind.zero_branch_is_identity and ctx.spec.init.zero_gamma:
        _mark_zero_gamma(body)
    after, z = _after(ctx, use, inside, out)
    if any(n.inputs or "." in n.name for n in [*body, *after]):
        return _graph_residual(ctx, use, inside, src, body, shortcut, kind, after, out)
    flops = kind.merge_cost([x, y], out).flops
    node = ResidualNode(
        inside.name,
        inside.parent,
        x,
        z or out,
        src,
        inside.section,
        block=use.kind,
        body=body,
        shortcut=shortcut,
        merge=merge,
        after=after,
        merge_flops=flops,
    )
    return [_recorded(node, use)], z


def _graph_residual(
    ctx: Lowering,
    use: BlockUse,
    inside: Cursor,
    src: Src,
    body: list[Node],
    shortcut: SeqNode | None,
    kind: MergeKind,
    after: list[Node],
    out: Shape,
) -> Lowered:
    """A residual block whose body or `after` reads named outputs: a graph list whose merge is an
    explicit merge node reading the shortcut (or the input) and the body's output (concat: shortcut
    first, as DenseNet's [x, new features])."""
    x = inside.shape
    assert x is not None and body
    last = body[-1]
    kids: list[Node] = list(body)
    short, short_shape = INPUT, x
    if shortcut is not None:
        shortcut.inputs = (INPUT,)
        kids.append(shortcut)
        short, short_shape = shortcut.name, shortcut.out_shape
    pairs = [(short, short_shape), (last.name, last.out_shape)]
    if kind.elementwise:
        pairs.reverse()  # body + shortcut, as the Residual module computes it
    name = inside.names.assign(kind.prefix, None)
    shapes = [shape for _, shape in pairs]
    merge = LayerNode(
        name,
        inside.path(name),
        shapes[0],
        out,
        src,
        inside.section,
        kind=kind.name,
        params=layer_params(ctx, kind.name, {}, src),
        cost=kind.merge_cost(shapes, out),
        inputs=tuple(n for n, _ in pairs),
        in_shapes=tuple(shapes),
    )
    if after and not after[0].inputs:
        after[0].inputs = (name,)
    z = after[-1].out_shape if after else out
    kids += [merge, *after]
    node = SeqNode(inside.name, inside.parent, x, z, src, inside.section, kids, "block", use.kind)
    return [_recorded(finish_list(ctx, node), use)], z


def _after(ctx: Lowering, use: BlockUse, inside: Cursor, shape: Shape) -> Lowered:
    """The layers after the merge; the first activation may run in place on the merged output."""
    cur = inside.located((*use.def_src, "after")).with_shape(shape)
    after, z = ctx.lower_sequence(ctx, use.definition.after, cur)
    first = after[0] if after else None
    if isinstance(first, LayerNode) and can_follow_merge(first):
        first.inplace = True
    return after, z


def _mark_zero_gamma(body: list[Node]) -> None:
    """Zero-gamma: the last BN of a residual branch starts at 0, so the block starts as identity."""
    for node in reversed(body):
        if isinstance(node, LayerNode) and KINDS[node.kind].zero_init_ok:
            node.zero_init = True
            return


def _parallel(ctx: Lowering, use: BlockUse, inside: Cursor, src: Src) -> Lowered:
    """Branches on the same input, merged (Inception's concat), then the `after` layers."""
    block, x = use.definition, inside.shape
    assert x is not None
    branches: list[SeqNode] = []
    for i, written in enumerate(block.branches or []):
        bsrc = (*use.def_src, "branches", i)
        named = written if isinstance(written, NamedBranch) else None
        try:
            bname = inside.names.assign("branch", named.name if named else None)
        except NameClashError as clash:
            ctx.problem(f"module name '{clash}' is used twice in '{inside.where}'", (*bsrc, "name"))
            return [], None
        items, at = (named.layers, (*bsrc, "layers")) if named else (written, bsrc)
        nodes, y = ctx.lower_sequence(ctx, items, inside.child(bname).located(at))
        if y is None:
            return [], None
        branch = SeqNode(bname, inside.path(bname), x, y, bsrc, inside.section, nodes, "branch")
        branches.append(finish_list(ctx, branch))
    shapes = [b.out_shape for b in branches]
    out: Shape | str = shapes[0] if shapes else "a parallel block needs at least one branch"
    for s in shapes[1:]:
        if isinstance(out, str):
            break
        out = merged_shape(block.merge, out, s)
    if isinstance(out, str):
        listed = ", ".join(fmt(s) for s in shapes)
        ctx.problem(f"{inside.parent} ({use.kind}): {out} (branch outputs: {listed})", src, shape=True)
        return [], None
    after, z = _after(ctx, use, inside, out)
    flops = merge_kind(block.merge).merge_cost(shapes, out).flops
    merge = cast(Literal["add", "concat"], block.merge)  # BlockDef allows parallel merges only
    node = ParallelNode(
        inside.name,
        inside.parent,
        x,
        z or out,
        src,
        inside.section,
        block=use.kind,
        branches=branches,
        merge=merge,
        after=after,
        merge_flops=flops,
    )
    return [_recorded(node, use)], z


# -- binding a block's parameters -----------------------------------------------------------------
def bind(ctx: Lowering, use: BlockUse, cur: Cursor) -> Scope | None:
    """The scope of one block instance: bound params, in_channels / in_height / in_width and computed
    vars, over the globals (or, for an inline composite, the caller's scope; chained, not copied: a
    spec's vars are not copied again at every use)."""
    outer = use.outer if use.outer is not None else ctx.globals
    scope = Scope({}, outer)  # (it writes only its own names: the outer scope is read, never changed)
    if not _bind_args(ctx, use, cur.src, scope):
        return None
    x = cur.shape
    if x is not None:
        scope["in_channels"] = x[0]
        if len(x) == 3:
            scope["in_height"], scope["in_width"] = x[1], x[2]
    for key, value in use.definition.vars.items():
        try:
            scope[key] = ctx.value(value, scope, (*use.def_src, "vars", key))
        except BadValueError as bad:
            ctx.problem(bad.message, bad.src)
            return None
    return scope


def _bind_args(ctx: Lowering, use: BlockUse, src: Src, scope: Scope) -> bool:
    """Check the arguments against the block's `params` (names, types, required) and bind them."""
    declared, kind, ok = use.definition.params, use.kind, True
    for key in use.args:
        if key not in declared:
            hint = did_you_mean(key, declared) or f"its parameters: {', '.join(declared) or 'none'}"
            ctx.problem(f"block '{kind}' has no parameter '{key}'", (*src, key), hint)
            ok = False
    for key, default in declared.items():
        if key in use.args:
            value = use.args[key]
            expected = _TYPE_NAMES.get(default) if isinstance(default, str) else None
            if expected and (
                not isinstance(value, expected) or (isinstance(value, bool) and default != "bool")
            ):
                ctx.problem(
                    f"parameter '{key}' of block '{kind}' must be {default}, got {value!r}", (*src, key)
                )
                ok = False
            scope[key] = value
        elif isinstance(default, str) and default in _TYPE_NAMES:
            ctx.problem(f"block '{kind}' needs parameter '{key}' ({default})", src)
            ok = False
        else:
            scope[key] = default
    return ok


# -- inline composites ----------------------------------------------------------------------------
def lower_composite(ctx: Lowering, kind: str, params: dict[str, Any], cur: Cursor) -> Lowered:
    """`sequential`, `parallel` and `residual` written inline: anonymous blocks; `aux` a side head."""
    params = dict(params)
    ctx.budget.spend(sum(_extent(v) for v in params.values()), cur.src)  # validation copies the lists
    name = ctx.value(params.pop("name", None), cur.scope, (*cur.src, "name"))
    if not ctx.explicit_name(name, cur.src):
        return [], None
    if kind == "aux":
        return _aux(ctx, params, name, cur)
    sequential = kind == "sequential"
    if sequential:
        if "layers" not in params:
            ctx.problem("`sequential` needs `layers`", cur.src)
            return [], None
        params["body"] = params.pop("layers")
    try:
        block = BlockDef.model_validate(params)
    except ValidationError as exc:
        ctx.pydantic(exc, cur.src, BlockDef)
        return [], None
    if kind == "parallel" and block.branches is None:
        ctx.problem("`parallel` needs `branches`", cur.src)
        return [], None
    if kind == "residual" and block.merge == "none":
        block = block.model_copy(update={"merge": _default_merge(kind)})
    use = BlockUse(
        block, kind, {}, cur.src, name, outer=cur.scope,
        prefix="block" if sequential else kind,
        style="numbered" if sequential else "named",
        body_key="layers" if sequential else "body",
    )  # fmt: skip
    return expand_block(ctx, use, cur)


def _default_merge(composite: str) -> str:
    return next(c for c in TABLE if c.name == composite).merges[0]


def _extent(value: Any) -> int:
    """The elements of a layer list, or of a list of them (`branches`)."""
    if isinstance(value, list):
        return len(value) + sum(_extent(v) for v in value if isinstance(v, list))
    return 0


def _aux(ctx: Lowering, params: dict[str, Any], name: str | None, cur: Cursor) -> Lowered:
    """An auxiliary classifier: only at the model's top level, where the runner can see it."""
    x, src = cur.shape, cur.src
    if set(params) - {"layers"} or "layers" not in params:
        ctx.problem("`aux` takes `layers` (and an optional `name`)", src)
        return [], x
    if cur.names.graph:
        ctx.problem("an `aux` head cannot sit in a list that uses references (`from:`)", src)
        return [], x
    if cur.parent or ctx.spec.features:
        ctx.problem("an `aux` head must sit at the model's top level (not inside `features` or a block)", src)
        return [], x
    if x is None:
        return [], None
    try:
        aname = cur.names.assign("aux", name)
    except NameClashError as clash:
        ctx.problem(f"module name '{clash}' is used twice", src)
        return [], x
    nodes, y = ctx.lower_sequence(ctx, params["layers"], cur.child(aname).at("layers"))
    if y is None:
        return [], x
    classes = ctx.spec.classes
    if classes is not None and y != (classes,):
        ctx.problem(f"aux head '{aname}' outputs {fmt(y)}, not ({classes},)", src, shape=True)
    return [AuxNode(aname, aname, x, x, src, cur.section, nodes, y)], x
