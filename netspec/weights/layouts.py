"""Layout rules: a checkpoint tensor stored in another layout than the spec's parameter that holds it.

Some implementations store a tensor under another name or shape for the same numbers. torchvision's
ConvNeXt block runs its two pointwise layers as `nn.Linear` on a channels-last map (weight [out, in])
where a spec has 1x1 convolutions ([out, in, 1, 1]), and keeps its layer scale as a parameter of the
block itself (`features.1.0.layer_scale`, [C, 1, 1]) where a spec has a module (`layer_scale.gamma`);
timm keeps the same scale as a vector (`gamma`, [C]). Each rule below is one such correspondence,
named, and a rule only re-reads a tensor: the numbers are the same, in the same order (a reshape).

The rules apply after the pairing in the checkpoint's own layout (netspec/weights/matching.py), to the
tensors it left over on both sides (never to a group it found ambiguous): each left-over checkpoint
tensor is seen in the model's layout where a rule gives a name and a shape the model has left over,
and these views go through the same pairing (name, then structure, never a guess). Every tensor paired
so is reported with the rules that read it (`ImportReport.layouts`); nothing is converted silently.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from torch import Tensor

from .matching import Shape, module_of, optional, role, shape_of


@dataclass(frozen=True)
class LayoutRule:
    """A named correspondence between a checkpoint's layout and a spec's."""

    name: str
    description: str


LINEAR_AS_CONV1X1 = LayoutRule(
    "linear_as_conv1x1",
    "an nn.Linear weight [out, in] as a 1x1 convolution's [out, in, 1, 1] (a pointwise layer run "
    "channels-last: torchvision's and timm's ConvNeXt)",
)
BLOCK_PARAMETER = LayoutRule(
    "block_parameter",
    "a parameter a block holds itself (`<block>.layer_scale`) as the one tensor of the spec's module of "
    "that name (`<block>.layer_scale.gamma`: torchvision's ConvNeXt)",
)
CHANNEL_VECTOR = LayoutRule(
    "channel_vector",
    "a per-channel vector [C] as [C, 1, 1], or [C, 1, 1] as [C] (timm's layer-scale `gamma` and "
    "torchvision's `layer_scale`)",
)
RULES = (LINEAR_AS_CONV1X1, BLOCK_PARAMETER, CHANNEL_VECTOR)


def _reshaped(key: str, shape: Shape) -> tuple[LayoutRule, Shape] | None:
    """The shape a rule reads a tensor of `shape` as, if any (at most one rule fits a shape)."""
    if len(shape) == 2 and role(key) == "weight":
        return LINEAR_AS_CONV1X1, (*shape, 1, 1)
    if len(shape) == 1:
        return CHANNEL_VECTOR, (*shape, 1, 1)
    if len(shape) == 3 and shape[1:] == (1, 1):
        return CHANNEL_VECTOR, shape[:1]
    return None


@dataclass(frozen=True)
class View:
    """A checkpoint tensor read in the model's layout: under `key`, with `shape`, by `rules`."""

    source_key: str
    key: str
    shape: Shape
    rules: tuple[str, ...]


def layout_views(
    source: dict[str, Tensor], target: dict[str, Tensor], free_source: list[str], free_target: list[str]
) -> dict[str, View]:
    """{view key: view} of the left-over checkpoint tensors that some rule reads as a name and shape the
    model has left over. A tensor that two readings would fit is left out: which one is meant is a guess."""
    wanted = {(role(k), shape_of(target[k])) for k in free_target}
    # modules of the model holding one tensor (besides a counter): a block's parameter may be theirs
    held: dict[str, list[str]] = defaultdict(list)
    for key in target:
        if not optional(key):
            held[module_of(key)].append(key)
    single = {module: keys[0] for module, keys in held.items() if len(keys) == 1 and module}
    found: list[View] = []
    for key in free_source:
        shape = shape_of(source[key])
        names: list[tuple[str, tuple[str, ...]]] = [(key, ())]
        if key in single and single[key] in free_target:
            names.append((single[key], (BLOCK_PARAMETER.name,)))
        readings = []
        for name, rules in names:
            candidates = [(shape, rules)]
            reshaped = _reshaped(name, shape)
            if reshaped is not None:
                candidates.append((reshaped[1], (*rules, reshaped[0].name)))
            readings += [View(key, name, s, r) for s, r in candidates if r and (role(name), s) in wanted]
        if len(readings) == 1:
            found.append(readings[0])
    # two checkpoint tensors read under one name: neither is meant more than the other
    named: dict[str, int] = defaultdict(int)
    for view in found:
        named[view.key] += 1
    return {v.key: v for v in found if named[v.key] == 1}


__all__ = [
    "BLOCK_PARAMETER",
    "CHANNEL_VECTOR",
    "LINEAR_AS_CONV1X1",
    "RULES",
    "LayoutRule",
    "View",
    "layout_views",
]
