"""Named architecture tricks: rewrites of the raw spec tree, applied before validation.

Each trick is one function from the Bag of Tricks (He et al. 2018, Fig. 2 and Sec. 3.1), so
`netspec explain` shows exactly what it changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import Problem, SpecError, did_you_mean
from .layers.conv import Conv
from .layers.merge import Add
from .source import PosDict, PosList, locate

# the tricks rewrite conv items of the raw tree (`- conv: {...}`), before any layer is validated
_CONV = Conv.name


def _conv_items(items: Any) -> list[tuple[int, dict[str, Any]]]:
    out = []
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict) and len(item) == 1 and isinstance(item.get(_CONV), dict):
                out.append((i, item[_CONV]))
    return out


def _kernel(conv: dict[str, Any]) -> int | None:
    k = conv.get("kernel", 3)
    if isinstance(k, int):
        return k
    if isinstance(k, list) and all(isinstance(v, int) for v in k):
        return max(k)
    return None  # an expression: unknown before lowering


def _residual_blocks(tree: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = tree.get("blocks")
    if not isinstance(blocks, dict):
        return []
    return [
        b
        for b in blocks.values()
        if isinstance(b, dict) and b.get("merge") == Add.name and isinstance(b.get("body"), list)
    ]


def resnet_b(tree: dict[str, Any]) -> str | None:
    """ResNet-B: the downsampling bottleneck strides in its 3x3 conv, not its first 1x1."""
    blocks = _residual_blocks(tree)
    if not blocks:
        return "resnet_b needs residual blocks (`merge: add`) in `blocks:`"
    for block in blocks:
        convs = _conv_items(block["body"])
        strided = next(((i, c) for i, c in convs if "stride" in c), None)
        if strided is None or _kernel(strided[1]) != 1:
            continue  # already strides in a spatial conv (the basic block)
        target = next(((i, c) for i, c in convs if i > strided[0] and (_kernel(c) or 0) > 1), None)
        if target is not None:
            target[1]["stride"] = strided[1].pop("stride")
    return None


def resnet_c(tree: dict[str, Any]) -> str | None:
    """ResNet-C: the 7x7 stem conv becomes three 3x3 convs (out/2, out/2, out; the first strided)."""
    stem = tree.get("stem")
    convs = _conv_items(stem)
    found = next(((i, c) for i, c in convs if _kernel(c) == 7), None)
    if found is None or not isinstance(stem, list):
        return "resnet_c needs a 7x7 conv in the stem"
    i, conv = found
    out = conv.get("out", 64)
    half = out // 2 if isinstance(out, int) else f"${{({str(out).strip()[2:-1]}) // 2}}"
    common = {k: v for k, v in conv.items() if k not in ("kernel", "stride", "padding", "out", "name")}
    replacement = []
    for width, stride in [(half, conv.get("stride", 1)), (half, 1), (out, 1)]:
        layer = PosDict({**common, "out": width, "kernel": 3, "stride": stride})
        replacement.append(PosDict({_CONV: layer}))
    old_positions = dict(getattr(stem, "positions", {}))
    stem[i : i + 1] = replacement
    if isinstance(stem, PosList):
        # items after the replaced conv moved down by two; the new convs point at the old one
        moved = {k: old_positions.get(k if k < i else (i if k < i + 3 else k - 2)) for k in range(len(stem))}
        stem.positions = {k: v for k, v in moved.items() if v is not None}
    return None


def resnet_d(tree: dict[str, Any]) -> str | None:
    """ResNet-D: projection shortcuts average-pool 2x2 first, then a stride-1 1x1 conv."""
    if not _residual_blocks(tree):
        return "resnet_d needs residual blocks (`merge: add`) in `blocks:`"
    tree["shortcut"] = "avgpool_projection"
    for block in _residual_blocks(tree):
        if block.get("shortcut") == "projection":
            block["shortcut"] = "avgpool_projection"
    return None


def zero_gamma(tree: dict[str, Any]) -> str | None:
    """Zero-gamma: the last BN of every residual branch is initialised to 0."""
    init = tree.get("init")
    if init is None:
        init = tree["init"] = PosDict()
    if not isinstance(init, dict):
        return "`init` must be a mapping"
    init["zero_gamma"] = True
    return None


TRICKS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "resnet_b": resnet_b,
    "resnet_c": resnet_c,
    "resnet_d": resnet_d,
    "zero_gamma": zero_gamma,
}


def apply_tricks(tree: Any) -> Any:
    tricks = tree.get("tricks") if isinstance(tree, dict) else None
    if not isinstance(tricks, list):
        return tree  # validation reports a malformed `tricks`
    problems = []
    for i, name in enumerate(tricks):
        if not isinstance(name, str) or name not in TRICKS:  # a list or mapping is not hashable
            hint = did_you_mean(str(name), TRICKS) or "known tricks: " + ", ".join(TRICKS)
            problems.append(
                Problem(f"unknown trick '{name}'", ("tricks", i), locate(tree, ("tricks", i)), hint)
            )
            continue
        if tricks.index(name) != i:
            continue  # applying a rewrite twice would be wrong; validation keeps the list as given
        error = TRICKS[name](tree)
        if error:
            problems.append(Problem(error, ("tricks", i), locate(tree, ("tricks", i))))
    if problems:
        raise SpecError(problems)
    return tree
