"""Graph lists as code: a list whose items read earlier outputs by name (`from:`) becomes a constructor
that places each module at its (dotted) name, and a forward that names every value. From resnet50_fpn:

    self.fpn = nn.Module()                               # a holder, made where a dotted name first needs it
    self.fpn.inner_blocks = nn.Module()
    self.fpn.inner_blocks.add_module("3", nn.Module())
    getattr(self.fpn.inner_blocks, "3").add_module("0", nn.Conv2d(2048, 256, kernel_size=1))
    ...
    fpn_inner_blocks_2_0 = getattr(getattr(self.fpn.inner_blocks, "2"), "0")(body_layer3)
    top_down2 = self.top_down2(fpn_inner_blocks_3_0)
    inner2 = fpn_inner_blocks_2_0 + top_down2

Holders are plain `nn.Module`s made when a dotted name first needs them, in list order, as torch.fx's
GraphModule makes them, so the state_dict keys come in the compiled module's order. A component that is
not a Python identifier (`3`, `block1-0`) is added with `add_module` and read with `getattr` and a string
literal, which TorchScript, torch.export and torch.compile all accept. Merges (concat, add, mul) are not
modules: their kind (a `MergeKind`) writes its own source (`torch.cat([a, b], 1)`, `a + b`, `a * b`).
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from ..ir import INPUT, LayerNode, Node, SeqNode
from ..layers import KINDS
from ..layers.merge import MergeKind
from .code import lit
from .errors import ExportError
from .names import RESERVED, assign, member


@dataclass(frozen=True)
class Step:
    """One item of a graph list: what it reads and how its value is computed."""

    name: str  # the item's name in the list (dotted where the module sits under holders)
    inputs: tuple[str, ...]  # names of earlier items, or INPUT; never empty
    merge: str | None  # a merge's kind (it writes the tensor operation); None: a call of the module


def is_graph(node: Node) -> bool:
    """A list whose items use references, dotted names or named outputs (SeqNode.graph)."""
    return isinstance(node, SeqNode) and node.graph


def merge_kind(node: Node) -> MergeKind | None:
    """The kind of a merge node (a graph operation, not a module), None for anything else."""
    if not isinstance(node, LayerNode):
        return None
    kind = KINDS[node.kind]
    return kind if isinstance(kind, MergeKind) else None


def merge_named(name: str) -> MergeKind:
    """The merge kind a block's `merge:` names (residual and parallel blocks merge with these too)."""
    kind = KINDS.get(name)
    if not isinstance(kind, MergeKind):
        raise ExportError(f"no merge kind named {name!r}")
    return kind


def steps(node: SeqNode) -> list[Step]:
    """The items of a graph list with their inputs made explicit (the previous item, or the input)."""
    out: list[Step] = []
    previous = INPUT
    for child in node.children:
        inputs = child.inputs or (previous,)
        merge = merge_kind(child)
        out.append(Step(child.name, inputs, merge.name if merge is not None else None))
        previous = child.name
    return out


def outputs(node: SeqNode) -> dict[str, str] | None:
    """Output key -> item name where the list returns several values (`outputs:`), else None."""
    return dict(node.outputs) if node.outputs else None


def structure(node: SeqNode) -> tuple[object, ...]:
    """What two instances of a block must share to be one class: every step and the outputs."""
    found = outputs(node)
    return (tuple(steps(node)), tuple(found.items()) if found else None)


def access(base: str, name: str) -> str:
    """Code for the module at a (dotted) name under `base`."""
    code = base
    for part in name.split("."):
        code = member(code, part)
    return code


class Placer:
    """Constructor lines that put modules at (dotted) names under `base`, making holders as needed."""

    def __init__(self, base: str = "self"):
        self.base = base
        self.made: set[str] = set()

    def place(self, name: str, code: str) -> list[str]:
        parts = name.split(".")
        lines = []
        holder = self.base
        for k, part in enumerate(parts[:-1]):
            key = ".".join(parts[: k + 1])
            if key not in self.made:
                self.made.add(key)
                lines.append(assign(holder, part, "nn.Module()"))
            holder = member(holder, part)
        lines.append(assign(holder, parts[-1], code))
        return lines


def value_names(items: list[Step], taken: set[str]) -> dict[str, str]:
    """A variable for each item's value: its name where that is a free identifier (`layer2`), else
    its name with `_` for dots and dashes (`inner_blocks_3`), made unique."""
    used = set(RESERVED) | set(taken)
    names: dict[str, str] = {}
    for step in items:
        base = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", step.name)).strip("_")[:60] or "value"
        if base[0].isdigit():
            base = f"x{base}"
        if keyword.iskeyword(base):
            base = f"{base}_value"
        name, k = base, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        names[step.name] = name
    return names


def forward_lines(items: list[Step], result: dict[str, str] | None, base: str = "self") -> list[str]:
    """The body of a graph list's forward (its input is `x`): one line per value, then the return."""
    names = value_names(items, {"x", "out"})
    names[INPUT] = "x"
    lines = []
    for step in items:
        args = [names[i] for i in step.inputs]
        if step.merge is not None:
            code = merge_named(step.merge).source(args)
        else:
            code = f"{access(base, step.name)}({args[0]})"
        lines.append(f"{names[step.name]} = {code}")
    if result is None:
        lines.append(f"return {names[items[-1].name] if items else 'x'}")
        return lines
    lines.append("out: dict[str, Tensor] = OrderedDict()")
    lines += [f"out[{lit(key)}] = {names[name]}" for key, name in result.items()]
    lines.append("return out")
    return lines
