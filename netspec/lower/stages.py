"""The model: stem, stages and head, in torchvision's naming. A stage (`{block: NAME, depth: N}`) is
N uses of one block in an nn.Sequential, read as torchvision's `_make_layer`: only the first block takes
the stride; each sees its `index`."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..errors import did_you_mean
from ..ir import Node, SeqNode
from ..layers.base import check_module_name
from ..spec import BlockDef, Spec, StageSpec
from .blocks import BlockUse, expand_block
from .context import BadValueError, Lowering
from .cursor import Cursor, Lowered, NameClashError, Namespace
from .sequence import lower_item, lower_sequence
from .shapes import fmt

_STAGE_KEYS = ("block", "depth", "repeat", "name", "inline")  # evaluated once, not per block


def lower_model(ctx: Lowering) -> SeqNode:
    """The whole network: raises SpecError with every problem found."""
    spec, x = ctx.spec, ctx.input_shape
    root = SeqNode("", "", x, x, (), "model", role="model")
    top = Cursor(x, ctx.globals, (), "stem", names=Namespace("named"))
    trunk, cur = root, top  # where stem and stages go: the model, or its `features`
    if spec.features:
        top.names.assign("features", spec.features)
        trunk = SeqNode(spec.features, spec.features, x, x, (), "stem", role="features")
        cur = top.child(spec.features)
    nodes, y = lower_sequence(ctx, spec.stem, cur.at("stem"))
    trunk.children += nodes
    for i, item in enumerate(spec.stages):
        nodes, y = lower_stage(ctx, item, cur.located(("stages", i)).with_shape(y))
        trunk.children += nodes
    if trunk is not root:
        trunk.out_shape = y or trunk.in_shape
        root.children.append(trunk)
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
    ctx.raise_problems()
    return root


def lower_stage(ctx: Lowering, item: Any, cur: Cursor) -> Lowered:
    """One entry of `stages`: a stage of blocks, or a plain layer item."""
    number = int(cur.src[-1]) + 1
    if not (isinstance(item, Mapping) and "block" in item):
        return lower_item(ctx, item, cur.in_section(f"stage{number}"))
    stage = _stage_spec(ctx, item, cur)
    block = _block_of(ctx, stage, cur) if stage is not None else None
    if stage is None or block is None:
        return [], None
    ctx.budget.check_depth(stage.depth, cur.src)
    cur = cur.in_section(stage.name or f"stage{number}")
    if stage.inline:
        return _repeat(ctx, stage, block, cur)
    try:
        name = cur.names.assign("stage", stage.name)
    except NameClashError as clash:
        ctx.problem(f"module name '{clash}' is used twice", cur.at("name").src)
        return [], None
    x = cur.shape or ()
    container = SeqNode(name, cur.path(name), x, x, cur.src, cur.section, role="stage")
    container.children, y = _repeat(ctx, stage, block, cur.child(name))
    container.out_shape = y or container.in_shape
    return [container], y


def _stage_spec(ctx: Lowering, item: Mapping[str, Any], cur: Cursor) -> StageSpec | None:
    try:
        fixed = {k: ctx.value(v, ctx.globals, (*cur.src, k)) for k, v in item.items() if k in _STAGE_KEYS}
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


def _repeat(ctx: Lowering, stage: StageSpec, block: BlockDef, cur: Cursor) -> Lowered:
    """`_make_layer`: `depth` uses of the block, each at the shape the previous one gives."""
    args_raw = dict(stage.model_extra or {})
    nodes: list[Node] = []
    y = cur.shape
    for index in range(stage.depth):
        scope = ChainMap({"index": index}, ctx.globals)
        try:
            args = {k: ctx.value(v, scope, cur.at(k).src) for k, v in args_raw.items()}
            if index > 0 and "stride" in args:
                args["stride"] = 1  # only a stage's first block downsamples
            name = _block_name(ctx, stage, scope, cur)
        except BadValueError as bad:
            ctx.problem(bad.message, bad.src)
            return nodes, None
        except ValueError as exc:
            ctx.problem(str(exc), cur.at("block_name").src)
            return nodes, None
        before, n_problems = ctx.budget.tally(), len(ctx.problems)
        use = BlockUse.of(ctx.spec, stage.block, args, name, repeat=(index, stage.depth))
        new, y = expand_block(ctx, use, cur.with_shape(y))
        nodes += new
        if len(ctx.problems) > n_problems:
            break  # the same mistake would repeat in every block of the stage
        if index == 0 and stage.depth > 1:
            ctx.budget.check_stage(stage.depth, before, cur.src)
    return nodes, y


def _block_name(ctx: Lowering, stage: StageSpec, scope: Mapping[str, Any], cur: Cursor) -> str | None:
    """`block_name: "denselayer${index + 1}"`, evaluated for one block; None: numbered."""
    if stage.block_name is None:
        return None
    return check_module_name(str(ctx.value(stage.block_name, scope, cur.at("block_name").src)))
