"""The model: stem, stages and head, in torchvision's naming. A stage (`{block: NAME, depth: N}`) is
N uses of one block in an nn.Sequential, read as torchvision's `_make_layer`: only the first block takes
the stride; each sees its `index`, and its place among all blocks of all stages (`block_index` of
`num_blocks`, see NetworkBlocks). A stage entry with `foreach: {i: LIST}` stands for one stage per
element (several names: zipped lists), each with its element in scope: a design space's stages
(RegNet's widths and depths) written once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from ..errors import did_you_mean
from ..expr import Scope
from ..ir import INPUT, Node, SeqNode
from ..layers.base import check_module_name
from ..spec import BlockDef, Spec, StageSpec
from .blocks import BlockUse, expand_block
from .context import BadValueError, Lowering
from .cursor import Cursor, Lowered, NameClashError, Namespace, Ref
from .graph import ItemLowerer, declare, finish_list, lower_linked, model_outputs
from .sequence import lower_item, lower_sequence
from .shapes import fmt

_STAGE_KEYS = ("block", "depth", "repeat", "name", "inline", "container")  # evaluated once, not per block
FOREACH = "foreach"
# names a stage's blocks see: a foreach variable of the same name would be hidden, so it is refused
_BLOCK_NAMES = ("index", "block_index", "num_blocks")


@dataclass
class NetworkBlocks:
    """Where a stage's block stands in the network: `block_index` (0-based, over the blocks of all
    stages in network order) of `num_blocks`, for rates that grow with depth: stochastic depth's
    `p = rate * block_index / (num_blocks - 1)` (Huang et al. 2016; torchvision's ConvNeXt)."""

    total: int
    done: int = 0

    def names(self, index: int) -> dict[str, Any]:
        """The names the next block sees (`index`: its place in its stage); counts it."""
        self.done += 1
        return {"index": index, "block_index": self.done - 1, "num_blocks": self.total}

    @classmethod
    def of(cls, ctx: Lowering, cur: Cursor) -> NetworkBlocks:
        """The blocks of every stage, `foreach` ones included, counted before any is lowered. A depth
        or list that cannot be read counts as 1 here: its problem is reported where its stage is."""
        since, total = len(ctx.problems), 0
        for i, item in enumerate(ctx.spec.stages):
            if not (isinstance(item, Mapping) and "block" in item):
                continue
            at = cur.located(("stages", i))
            each = _foreach(ctx, item, at) if FOREACH in item else [{}]
            for bound in each:
                try:
                    depth = ctx.value(
                        item.get("depth", item.get("repeat", 1)), _inner(bound, at.scope), at.src
                    )
                except BadValueError:
                    depth = 1
                total += depth if type(depth) is int and depth > 0 else 1
        del ctx.problems[since:]
        return cls(total)


def lower_model(ctx: Lowering) -> SeqNode:
    """The whole network: raises SpecError with every problem found."""
    spec, x = ctx.spec, ctx.input_shape
    root = SeqNode("", "", x, x, (), "model", role="model")
    top = Cursor(x, ctx.globals, (), "stem", names=Namespace("named", published=True))
    trunk, cur = root, top  # where stem and stages go: the model, or its `features`
    if spec.features:
        top.names.assign("features", spec.features)
        trunk = SeqNode(spec.features, spec.features, x, x, (), "stem", role="features")
        cur = top.child(spec.features)
        cur.names.published = True
    trunk_ns = cur.names
    # stem, stages and head are one list of the model's children (unless a wrapper takes the first two)
    top.names.graph = spec.outputs is not None
    declare(cur.names, spec.stem, ("stem",), x)
    if not spec.trunk:
        declare(cur.names, spec.stages, ("stages",), None)
    declare(top.names, spec.head, ("head",), x)
    nodes, y = lower_sequence(ctx, spec.stem, cur.at("stem"))
    trunk.children += nodes
    outer, stages = trunk, trunk  # the stages go into `trunk:` when it is set
    if spec.trunk:
        try:
            cur.names.assign("trunk", spec.trunk)
        except NameClashError:
            ctx.problem(f"module name '{spec.trunk}' is used twice in '{cur.where}'", ("trunk",))
        shape = y or ()
        stages = SeqNode(spec.trunk, cur.path(spec.trunk), shape, shape, (), "stem", role="sequential")
        cur = cur.child(spec.trunk)
        cur.names.published = True
        declare(cur.names, spec.stages, ("stages",), shape)
    number = 0  # of the stage, counting those a `foreach` generates
    blocks = NetworkBlocks.of(ctx, cur)
    for i, item in enumerate(spec.stages):
        at = cur.located(("stages", i))
        if not (isinstance(item, Mapping) and FOREACH in item):
            number += 1
            nodes, y = lower_linked(ctx, item, at.with_shape(y), _stage_lowerer(number, blocks))
            stages.children += nodes
            continue
        stage = {k: v for k, v in item.items() if k != FOREACH}
        for bound in _foreach(ctx, item, at):
            number += 1
            n_problems = len(ctx.problems)
            scoped = at.with_scope(_inner(bound, at.scope)).with_shape(y)
            nodes, y = lower_linked(ctx, stage, scoped, _stage_lowerer(number, blocks))
            stages.children += nodes
            if len(ctx.problems) > n_problems:
                _name_iteration(ctx, n_problems, bound)
                break  # the same mistake would repeat in every generated stage
    if stages is not outer:
        stages.out_shape = y or stages.in_shape
        outer.children.append(finish_list(ctx, stages))
        ctx.wrapped.update(dict.fromkeys(cur.names.refs.keys() - {INPUT}, spec.trunk or ""))
        trunk_ns.refs.setdefault(stages.name, Ref(stages.name, stages.out_shape, ()))
    if trunk is not root:
        trunk.out_shape = y or trunk.in_shape
        root.children.append(finish_list(ctx, trunk))
        ctx.wrapped.update(dict.fromkeys(trunk_ns.refs.keys() - {INPUT}, spec.features or ""))
        top.names.refs.setdefault(trunk.name, Ref(trunk.name, trunk.out_shape, ()))
    nodes, y = lower_sequence(ctx, spec.head, top.at("head").in_section("head").with_shape(y))
    root.children += nodes
    if y is not None:
        root.out_shape = y
        if spec.classes is not None and y != (spec.classes,):
            ctx.problem(
                f"the network outputs {fmt(y)} but `classes` is {spec.classes}",
                ("head",),
                hint="end the head with `flatten` and `linear: {out: ${classes}}`",
                shape=True,
            )
    if spec.outputs is not None:
        root.outputs = model_outputs(ctx, top.names, spec.outputs)
    finish_list(ctx, root)
    ctx.raise_problems()
    return root


def _stage_lowerer(number: int, blocks: NetworkBlocks) -> ItemLowerer:
    def lower(ctx: Lowering, item: Any, cur: Cursor) -> Lowered:
        return lower_stage(ctx, item, cur, number, blocks)

    return lower


def lower_stage(
    ctx: Lowering, item: Any, cur: Cursor, number: int | None = None, blocks: NetworkBlocks | None = None
) -> Lowered:
    """One entry of `stages` (the `number`th stage): a stage of blocks, or a plain layer item."""
    number = number or int(cur.src[-1]) + 1
    if not (isinstance(item, Mapping) and "block" in item):
        return lower_item(ctx, item, cur.in_section(f"stage{number}"))
    stage = _stage_spec(ctx, item, cur)
    block = _block_of(ctx, stage, cur) if stage is not None else None
    if stage is None or block is None:
        return [], None
    ctx.budget.check_depth(stage.depth, cur.src)
    cur = cur.in_section(stage.name or f"stage{number}")
    if stage.inline:
        return _repeat(ctx, stage, block, cur, blocks or NetworkBlocks(stage.depth))
    try:
        name = cur.names.assign("stage", stage.name)
    except NameClashError as clash:
        ctx.problem(f"module name '{clash}' is used twice", cur.at("name").src)
        return [], None
    x = cur.shape or ()
    container = SeqNode(name, cur.path(name), x, x, cur.src, cur.section, role="stage")
    container.children, y = _stage_body(
        ctx, stage, block, cur.child(name), blocks or NetworkBlocks(stage.depth)
    )
    container.out_shape = y or container.in_shape
    return [finish_list(ctx, container)], y


def _stage_body(
    ctx: Lowering, stage: StageSpec, block: BlockDef, inside: Cursor, blocks: NetworkBlocks
) -> Lowered:
    """A stage's children: its `before` layers, then its blocks, which a `container` holds in a child
    nn.Sequential of that name (timm's `stages.2.downsample` and `stages.2.blocks.1`)."""
    nodes: list[Node] = []
    y = inside.shape
    if stage.before:
        nodes, y = lower_sequence(ctx, stage.before, inside.at("before"))
        if y is None:
            return nodes, None
    if stage.container is None:
        new, y = _repeat(ctx, stage, block, inside.with_shape(y), blocks)
        return [*nodes, *new], y
    try:
        name = inside.names.assign("container", stage.container)
    except NameClashError as clash:
        ctx.problem(f"module name '{clash}' is used twice in '{inside.where}'", inside.at("container").src)
        return nodes, None
    shape = y or ()
    group = SeqNode(name, inside.path(name), shape, shape, inside.src, inside.section, role="sequential")
    group.children, y = _repeat(ctx, stage, block, inside.child(name).with_shape(y), blocks)
    group.out_shape = y or shape
    return [*nodes, group], y


def _stage_spec(ctx: Lowering, item: Mapping[str, Any], cur: Cursor) -> StageSpec | None:
    try:
        fixed = {k: ctx.value(v, cur.scope, (*cur.src, k)) for k, v in item.items() if k in _STAGE_KEYS}
        return StageSpec.model_validate({**item, **fixed})
    except BadValueError as bad:
        ctx.problem(bad.message, bad.src)
    except ValidationError as exc:
        ctx.pydantic(exc, cur.src, StageSpec)
    return None


def _block_of(ctx: Lowering, stage: StageSpec, cur: Cursor) -> BlockDef | None:
    spec: Spec = ctx.spec
    block = spec.blocks.get(stage.block)
    if block is None:
        defined = "defined blocks: " + (", ".join(spec.blocks) or "none; add a `blocks:` section")
        hint = did_you_mean(stage.block, spec.blocks) or defined
        ctx.problem(f"unknown block '{stage.block}'", cur.at("block").src, hint)
    return block


def _repeat(ctx: Lowering, stage: StageSpec, block: BlockDef, cur: Cursor, blocks: NetworkBlocks) -> Lowered:
    """`_make_layer`: `depth` uses of the block, each at the shape the previous one gives."""
    args_raw = dict(stage.model_extra or {})
    nodes: list[Node] = []
    y = cur.shape
    for index in range(stage.depth):
        scope = _inner(blocks.names(index), cur.scope)
        try:
            args = {k: ctx.value(v, scope, (*cur.src, k)) for k, v in args_raw.items()}
            if index > 0 and "stride" in args:
                args["stride"] = 1  # only a stage's first block downsamples
            name = _block_name(ctx, stage, scope, cur)
        except BadValueError as bad:
            ctx.problem(bad.message, bad.src)
            return nodes, None
        except ValueError as exc:
            ctx.problem(str(exc), cur.at("block_name").src)
            return nodes, None
        first = index == 0 and stage.depth > 1  # (what it takes tells what the stage will)
        before, n_problems = ctx.budget.tally() if first else None, len(ctx.problems)
        use = BlockUse.of(ctx.spec, stage.block, args, name, repeat=(index, stage.depth))
        new, y = expand_block(ctx, use, cur.with_shape(y))
        nodes += new
        if len(ctx.problems) > n_problems:
            break  # the same mistake would repeat in every block of the stage
        if before is not None:
            ctx.budget.check_stage(stage.depth, before, cur.src)
    return nodes, y


def _block_name(ctx: Lowering, stage: StageSpec, scope: Mapping[str, Any], cur: Cursor) -> str | None:
    """`block_name: "denselayer${index + 1}"`, evaluated for one block; None: numbered."""
    if stage.block_name is None:
        return None
    return check_module_name(str(ctx.value(stage.block_name, scope, (*cur.src, "block_name"))))


def _inner(names: dict[str, Any], scope: Mapping[str, Any]) -> Scope:
    """`scope` with `names` added in front (a chain: nothing is copied)."""
    return Scope(names, scope)


def _foreach(ctx: Lowering, item: Mapping[str, Any], cur: Cursor) -> list[dict[str, Any]]:
    """The names each generated stage sees: `foreach: {i: LIST, ...}`, the lists zipped; [] after a
    problem (reported)."""
    src = (*cur.src, FOREACH)
    loops = item[FOREACH]
    if "block" not in item:
        ctx.problem("`foreach` generates stages of blocks: this entry needs a `block:`", src)
        return []
    if not isinstance(loops, Mapping) or not loops:
        hint = 'e.g. `foreach: {i: "${range(len(widths))}"}`'
        ctx.problem("`foreach` maps a name to the list it runs over", src, hint)
        return []
    lists: dict[str, list[Any]] = {}
    for name, raw in loops.items():
        at = (*src, name)
        if not (isinstance(name, str) and name.isidentifier()):
            ctx.problem(f"'{name}' is not a name for expressions (letters, digits, '_')", at)
        elif name in cur.scope or name in _BLOCK_NAMES:
            hint = "a stage's blocks see `index`" if name in _BLOCK_NAMES else "it is already in `vars`"
            ctx.problem(f"the foreach name '{name}' would hide another name of the same spelling", at, hint)
        else:
            try:
                values = ctx.value(raw, cur.scope, at)
            except BadValueError as bad:
                ctx.problem(bad.message, bad.src)
                continue
            if not isinstance(values, list) or not all(isinstance(v, (int, float, str)) for v in values):
                ctx.problem(f"`foreach` runs over a list of numbers or text, got {values!r:.60}", at)
                continue
            ctx.budget.spend(len(values), at)
            lists[name] = values
    if len(lists) < len(loops):
        return []
    lengths = {len(v) for v in lists.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{name}: {len(v)}" for name, v in lists.items())
        ctx.problem(f"`foreach` zips its lists, which must have one length (got {sizes})", src)
        return []
    return [dict(zip(lists, values, strict=True)) for values in zip(*lists.values(), strict=True)]


def _name_iteration(ctx: Lowering, since: int, bound: Mapping[str, Any]) -> None:
    """Say in which generated stage the problems from `since` on happened: they share one YAML line."""
    where = ", ".join(f"{k} = {v!r}" for k, v in bound.items())
    ctx.problems[since:] = [
        (replace(p, message=f"{p.message} (foreach {where})"), shape) for p, shape in ctx.problems[since:]
    ]
