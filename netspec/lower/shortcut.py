"""Residual shortcuts: what to build is a pure function of the mode and the shapes (`plan_shortcut`);
`lower_shortcut` then builds it as layers, like any other.

The modes are the papers': ResNet's option A (`zero_pad`: subsample and pad channels with zeros) and
option B (`projection`: a strided 1x1 conv + BN where the shape changes, identity elsewhere; He et al.
2016, Sec. 3.3), ResNet-D (`avgpool_projection`: a 2x2 average pool before a stride-1 projection; He et
al. 2018, Fig. 2c), MobileNet v2's residual only where input and output shapes agree
(`identity_if_possible`), and DenseNet's `concat` with the input itself (`identity`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum, auto
from typing import Any, get_args

from ..ir import SeqNode
from ..layers.base import Shape
from ..layers.conv import Conv, Norm
from ..layers.misc import ChannelPad
from ..layers.norm import BatchNorm
from ..layers.pool import AvgPool
from ..spec import BlockDef, Merge
from .context import BadValueError, Lowering
from .cursor import Cursor
from .graph import finish_list
from .shapes import broadcasts, fmt, merge_kind


class Mode(StrEnum):
    """The spec's `shortcut:` modes (spec.ShortcutMode)."""

    IDENTITY = auto()
    PROJECTION = auto()
    AVGPOOL_PROJECTION = auto()
    ZERO_PAD = auto()
    IDENTITY_IF_POSSIBLE = auto()
    NONE = auto()


class Build(StrEnum):
    """What a shortcut is, once the shapes are known."""

    IDENTITY = auto()  # the input itself
    PROJECTION = auto()  # strided 1x1 conv + BN
    AVGPOOL_PROJECTION = auto()  # average pool, then 1x1 conv + BN
    ZERO_PAD = auto()  # subsample, then zero channels
    NONE = auto()  # no shortcut and no merge: the block is a plain sequence
    ERROR = auto()  # no shortcut of this mode fits: `reason` says why


@dataclass(frozen=True)
class ShortcutPlan:
    build: Build
    stride: int = 1  # of a built shortcut
    out: int = 0  # its output channels
    reason: str = ""  # for Build.ERROR
    hint: str | None = None


def plan_shortcut(mode: str, merge: str, x: Shape, y: Shape) -> ShortcutPlan:
    """The shortcut a block of this mode and merge needs, from its input shape `x` to the body's `y`."""
    if mode == Mode.NONE:
        return _NO_SHORTCUT
    kind = merge_kind(merge)
    fits = x == y or (kind.broadcasts and broadcasts(x, y)) or (not kind.elementwise and x[1:] == y[1:])
    if fits:
        return _IDENTITY
    if mode == Mode.IDENTITY:
        return _refuse(
            f"identity shortcut cannot {merge} input {fmt(x)} with body output {fmt(y)}",
            "use `shortcut: projection` (1x1 conv + BN where the shape changes)",
        )
    if mode == Mode.IDENTITY_IF_POSSIBLE:
        return _NO_SHORTCUT
    if len(x) != 3 or len(y) != 3:
        return _refuse(f"a {mode} shortcut needs feature maps, got {fmt(x)} and {fmt(y)}")
    stride = -(-x[1] // y[1])
    if -(-x[2] // y[2]) != stride or y[1] > x[1]:
        return _refuse(f"the body changes {fmt(x)} to {fmt(y)}: no strided shortcut can follow")
    z = (y[0], -(-x[1] // stride), -(-x[2] // stride))  # what every strided shortcut below gives
    if kind.elementwise and z != y:
        return _refuse(f"{mode} shortcut gives {fmt(z)} but the body gives {fmt(y)}")
    if mode == Mode.ZERO_PAD:
        if y[0] < x[0]:
            return _refuse(
                f"a zero_pad shortcut cannot shrink {x[0]} channels to {y[0]}",
                "use `shortcut: projection` (1x1 conv + BN where the shape changes)",
            )
        return ShortcutPlan(Build.ZERO_PAD, stride, y[0])
    if mode == Mode.AVGPOOL_PROJECTION and stride > 1:
        return ShortcutPlan(Build.AVGPOOL_PROJECTION, stride, y[0])
    return ShortcutPlan(Build.PROJECTION, stride, y[0])  # also avgpool_projection with nothing to pool


_IDENTITY = ShortcutPlan(Build.IDENTITY)  # (most blocks: made once)
_NO_SHORTCUT = ShortcutPlan(Build.NONE)


def _refuse(reason: str, hint: str | None = None) -> ShortcutPlan:
    return ShortcutPlan(Build.ERROR, reason=reason, hint=hint)


# generated shortcut convs ignore the spec's conv defaults: they are conv + norm by definition (the norm's
# kind is the default conv norm's, projection_norm)
_PLAIN_CONV = {"bias": False, "norm": "none", "act": "none", "padding": 0, "dilation": 1, "groups": 1}


def projection_norm(defaults: Mapping[str, Mapping[str, Any]]) -> str:
    """The norm kind after a projection's 1x1 conv: the spec's default conv `norm:` (`defaults: conv:
    {norm: frozen_batchnorm}`), as torchvision's `norm_layer=` sets the norm of a ResNet's downsample
    too; batch norm where the default has none (the paper's projection is conv + BN)."""
    norm = defaults.get(Conv.name, {}).get("norm")
    return norm if isinstance(norm, str) and norm in get_args(Norm) and norm != "none" else BatchNorm.name


def shortcut_layers(plan: ShortcutPlan, norm: str = BatchNorm.name) -> list[dict[str, Any]]:
    """A built shortcut as spec layer items (`norm`: the kind of a projection's norm)."""
    s, c = plan.stride, plan.out
    if plan.build == Build.ZERO_PAD:
        return [{ChannelPad.name: {"out": c, "stride": s}}]
    if plan.build == Build.AVGPOOL_PROJECTION:
        pool = {"kernel": s, "stride": s, "ceil_mode": True, "count_include_pad": False}
        conv = {"out": c, "kernel": 1, **_PLAIN_CONV}
        return [{AvgPool.name: pool}, {Conv.name: conv}, {norm: {}}]
    conv = {"out": c, "kernel": 1, "stride": s, **_PLAIN_CONV}
    return [{Conv.name: conv}, {norm: {}}]


def shortcut_mode(ctx: Lowering, block: BlockDef) -> Any:
    """The block's `shortcut:` (a mode, or a list of layers), else the spec's."""
    return block.shortcut if block.shortcut is not None else ctx.spec.shortcut


def lower_shortcut(
    ctx: Lowering, inside: Cursor, block: BlockDef, mode: Any, y: Shape
) -> tuple[Merge, SeqNode | None]:
    """The merge that remains and the shortcut module (None: identity), for a block whose cursor is
    `inside` (at its definition, with its input shape) and whose body gives `y`."""
    x = inside.shape
    assert x is not None  # the body was lowered from it
    src = (*inside.src, "shortcut")
    if isinstance(mode, list):  # an explicit list of layers
        node = _module(ctx, inside, block, mode, "the shortcut layers are invalid")
        if not node.children:  # every layer left out by its `when:`: the identity, as a mode's would be
            inside.names.names.discard(node.name)
            return block.merge, None
        return block.merge, node
    plan = plan_shortcut(mode, block.merge, x, y)
    if plan.build == Build.ERROR:
        raise BadValueError(plan.reason, src, plan.hint)
    if plan.build == Build.NONE:
        return "none", None
    if plan.build == Build.IDENTITY:
        return block.merge, None
    items = shortcut_layers(plan, projection_norm(ctx.defaults))
    node = _module(ctx, inside, block, items, f"{mode} shortcut failed for input {fmt(x)}")
    if merge_kind(block.merge).elementwise and node.out_shape != y:  # the spec's defaults changed a layer
        raise BadValueError(f"{mode} shortcut gives {fmt(node.out_shape)} but the body gives {fmt(y)}", src)
    return block.merge, node


def _module(ctx: Lowering, inside: Cursor, block: BlockDef, items: list[Any], failed: str) -> SeqNode:
    """The shortcut as a numbered submodule `shortcut_name` of the block (torchvision's `downsample`)."""
    src = (*inside.src, "shortcut")
    name = block.shortcut_name
    inside.names.assign("shortcut", name)
    nodes, z = ctx.lower_sequence(ctx, items, inside.child(name).located(src))
    if z is None:
        raise BadValueError(failed, src)
    assert inside.shape is not None
    node = SeqNode(name, inside.path(name), inside.shape, z, src, inside.section, nodes, "shortcut")
    return finish_list(ctx, node)
