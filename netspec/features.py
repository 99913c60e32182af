"""Feature levels: which intermediate outputs of a network a dense-prediction head reads, and their
channels and reductions (strides), from the static analysis alone (no torch).

timm's convention (`features_only`, `feature_info`): a level is the last module at each reduction
along the trunk, so ResNet's levels are the stem's last activation (stride 2) and the four stages
(strides 4 to 32). Here the trunk is the network's top-level modules before the head, looking into
torchvision's `features` wrappers and containers of stages (RegNet's `trunk_output`); auxiliary
heads are not on it. Any module on the path an input takes in eval mode can also be chosen by its
name (`layer3.5`, `features.22`).

`FeatureInfo` is a list of timm's level dicts (`num_chs`, `reduction`, `module`, `index`) with timm's
accessors (`channels()`, `reduction()`, `module_name()`), so timm's own wrappers accept it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from .analysis import Analysis, Row, analyze_ir
from .errors import Problem, SpecError, did_you_mean
from .ir import AuxNode, Node, SeqNode
from .layers import KINDS
from .layers.merge import MergeKind
from .lower import lower
from .spec import Spec

# `features=[...]` takes module names (str) or indices into the default levels (int, negative from the end)
FeatureRef = str | int


class FeatureInfo(list[dict[str, Any]]):
    """The returned levels, in order: one dict per level, with timm's keys and accessors."""

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        """`key` of every level (idx None), of one level (an int) or of several (a sequence)."""
        if idx is None:
            return [level[key] for level in self]
        if isinstance(idx, int):
            return self[idx][key]
        return [self[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("module", idx)

    def shapes(self) -> list[tuple[int, ...]]:
        """Each level's output shape for one sample (C, H, W), as the analysis inferred it."""
        return [tuple(level["shape"]) for level in self]

    def get_dicts(self, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return [dict(level) if keys is None else {k: level[k] for k in keys} for level in self]


def _level(row: Row, index: int) -> dict[str, Any]:
    jump = row.jump
    return {
        "module": row.path,
        "num_chs": row.output_shape[0],
        # timm states one int; a network whose strides differ along H and W gets both
        "reduction": jump[0] if jump[0] == jump[1] else tuple(jump),
        "shape": tuple(row.output_shape),
        "index": index,
    }


def _opened(node: Node) -> bool:
    """A container of the trunk rather than a unit of it: torchvision's `features` wrapper, or a
    container of stages (RegNet's `trunk_output`)."""
    if not isinstance(node, SeqNode) or node.is_block:
        return False
    return node.role == "features" or any(isinstance(c, SeqNode) and c.role == "stage" for c in node.children)


def _trunk(nodes: Iterable[Node]) -> list[Node]:
    """The top-level modules an input runs through before the head, containers of stages opened."""
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, AuxNode) or node.section == "head":
            continue
        if _opened(node):
            out.extend(_trunk(cast(SeqNode, node).children))
        else:
            out.append(node)
    return out


def default_levels(root: SeqNode, analysis: Analysis) -> FeatureInfo:
    """The last spatial module at each reduction along the trunk (timm's `features_only` levels)."""
    rows = {row.path: row for row in analysis.rows}
    spatial = [rows[n.path] for n in _trunk(root.children) if len(n.out_shape) == 3]
    chosen = [
        row for i, row in enumerate(spatial) if i + 1 == len(spatial) or spatial[i + 1].jump != row.jump
    ]
    return FeatureInfo(_level(row, i) for i, row in enumerate(chosen))


def select_levels(levels: FeatureInfo, analysis: Analysis, features: Sequence[FeatureRef]) -> FeatureInfo:
    """The levels `features` names: module names, or indices into `levels` (negative from the end).
    A name that is no module of the network, or an index out of range, is a SpecError."""
    rows = {row.path: row for row in analysis.rows if row.path != "(model)"}
    if isinstance(features, (str, bytes)) or not features:
        raise SpecError(
            Problem(
                "features takes a non-empty list of module names or level indices",
                ("features",),
                hint=f"e.g. features={levels.module_name()!r} or features=[1, 2, 3]",
            )
        )
    chosen: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for i, ref in enumerate(features):
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            problems.append(
                Problem(f"a feature is a module name or a level index, not {ref!r}", ("features", i))
            )
        elif isinstance(ref, int):
            if -len(levels) <= ref < len(levels):
                chosen.append(dict(levels[ref]))
            else:
                problems.append(
                    Problem(
                        f"level {ref} is out of range: '{analysis.name}' has {len(levels)} levels",
                        ("features", i),
                        hint=", ".join(f"{k}: {m}" for k, m in enumerate(levels.module_name())),
                    )
                )
        elif ref in rows and isinstance(KINDS.get(rows[ref].kind), MergeKind):
            problems.append(
                Problem(
                    f"'{ref}' is a merge, an operation of the graph and not a module: its output cannot be"
                    " tapped",
                    ("features", i),
                    hint="choose the module that reads it (or add an `identity` after it and choose that)",
                )
            )
        elif ref in rows:
            chosen.append(_level(rows[ref], len(chosen)))
        else:
            problems.append(
                Problem(
                    f"'{analysis.name}' has no module '{ref}'",
                    ("features", i),
                    hint=did_you_mean(ref, rows) or "the module names are those of `netspec report`",
                )
            )
    if problems:
        raise SpecError(problems)
    for i, level in enumerate(chosen):
        level["index"] = i
    return FeatureInfo(chosen)


def feature_info(spec: Spec, input_size: int | tuple[int, int] | None = None) -> FeatureInfo:
    """A spec's default levels, from the analysis alone: nothing is built."""
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    root = lower(spec, size)
    return default_levels(root, analyze_ir(root, spec.name))


def choose_levels(
    levels: FeatureInfo, analysis: Analysis, features: Sequence[FeatureRef] | bool | None
) -> FeatureInfo | None:
    """`features` as `build` takes it: None or False none (the classifier), True every level."""
    if features is None or features is False:
        return None
    return levels if features is True else select_levels(levels, analysis, features)


__all__ = ["FeatureInfo", "FeatureRef", "choose_levels", "default_levels", "feature_info", "select_levels"]
