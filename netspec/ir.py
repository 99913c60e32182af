"""The intermediate representation: a tree of named nodes with inferred shapes; a graph list's
children form a DAG by their `inputs` (in topological order: every input is an earlier sibling).

Every backend (analysis, torch, source) reads this tree; none re-derives a shape or re-reads the spec:
what a backend needs beyond shapes (the `${name}` bindings of a layer's values, block boundaries, a
stage's repeats, each layer's weight init) is recorded here by lowering.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .layers import KINDS
from .layers.base import Cost, Shape, Window
from .layers.init_schemes import DEFAULT_INIT, InitScheme
from .layers.merge import Add, Concat


@dataclass(slots=True)
class Node:
    name: str  # name inside the parent module
    path: str  # dotted module path, as in state_dict keys
    in_shape: Shape
    out_shape: Shape
    src: tuple[str | int, ...]  # where in the spec it came from (for errors and reports)
    section: str  # "stem", a stage name, or "head"
    # (keyword-only fields: the positional constructors above stay as they are)
    # spec parameter -> the `${name}` the spec wrote for it, where the value was exactly `${name}`
    # (`conv: {out: "${width}"}` -> {"out": "width"}): the exporter's argument names
    bindings: dict[str, str] = field(default_factory=dict, kw_only=True)
    # a block written in place (an inline `residual`, `parallel` or `sequential`), not a `blocks:` entry
    inline: bool = field(default=False, kw_only=True)
    # (index, depth) of one block of a `{block: ..., depth: N}` stage
    repeat: tuple[int, int] | None = field(default=None, kw_only=True)
    # in a graph list (SeqNode.graph): the earlier siblings (their `name`s) or INPUT whose outputs this
    # node reads, in order; empty: the previous sibling's output (the list's input for the first)
    inputs: tuple[str, ...] = field(default=(), kw_only=True)
    # the shapes of all its inputs where it reads several (a merge); in_shape is the first's
    in_shapes: tuple[Shape, ...] = field(default=(), kw_only=True)

    @property
    def is_block(self) -> bool:
        """An instance of a block: a `blocks:` entry or an inline `residual`/`parallel`/`sequential`."""
        return False


@dataclass(slots=True)
class LayerNode(Node):
    kind: str = ""
    params: Any = None
    cost: Cost = field(default_factory=Cost)
    window: Window = field(default_factory=Window)
    inplace: bool = False  # safe to compute in place (its input is not read elsewhere)
    zero_init: bool = False  # BN that closes a residual branch (zero-gamma)
    # the weight-init scheme: the layer's own `init:`, else the spec's `init:` default for its kind
    # (LayerKind.init_default); "default" keeps PyTorch's own initialisation
    init: InitScheme = DEFAULT_INIT


@dataclass(slots=True)
class SeqNode(Node):
    children: list[Node] = field(default_factory=list)
    role: Literal["model", "features", "stage", "sequential", "branch", "block", "shortcut"] = "sequential"
    block: str | None = None  # the block kind when role == "block"
    # a graph list: its children read named outputs (`inputs`), may have dotted names (a module at a
    # path under plain holder modules) and may end in several `outputs`; run as a torch.fx graph
    graph: bool = field(default=False, kw_only=True)
    # output key -> the child whose output it is (the model's `outputs:`); None: the last child's
    outputs: dict[str, str] | None = field(default=None, kw_only=True)

    @property
    def is_block(self) -> bool:
        return self.role == "block"


@dataclass(slots=True)
class ResidualNode(Node):
    """body(x) merged with shortcut(x) (identity when None), then `after` layers."""

    block: str = ""
    body: list[Node] = field(default_factory=list)
    shortcut: SeqNode | None = None
    merge: Literal["add", "concat", "mul"] = Add.name  # type: ignore[assignment]  # a Literal's value
    after: list[Node] = field(default_factory=list)
    merge_flops: int = 0

    @property
    def is_block(self) -> bool:
        return True

    @property
    def merges_in_place(self) -> bool:
        """`out += shortcut`: an add after a body whose last layer's output autograd does not keep."""
        last = self.body[-1] if self.body else None
        accumulates = getattr(KINDS[self.merge], "accumulates", False)  # a merge kind's trait
        return accumulates and isinstance(last, LayerNode) and KINDS[last.kind].overwritable_output


@dataclass(slots=True)
class ParallelNode(Node):
    """Branches on the same input, merged by concat (Inception) or add, then `after` layers."""

    block: str = ""
    branches: list[SeqNode] = field(default_factory=list)
    merge: Literal["add", "concat"] = Concat.name  # type: ignore[assignment]  # a Literal's value
    after: list[Node] = field(default_factory=list)
    merge_flops: int = 0

    @property
    def is_block(self) -> bool:
        return True


@dataclass(slots=True)
class AuxNode(Node):
    """A side classifier (GoogLeNet, Inception v3): run on its input in training only; the main
    path passes through unchanged. `head_shape` is the side output's shape."""

    children: list[Node] = field(default_factory=list)
    head_shape: Shape = ()


INPUT = "input"  # the name a graph list's items give its input (`from: input`)


def children(node: Node) -> list[Node]:
    if isinstance(node, (SeqNode, AuxNode)):
        return node.children
    if isinstance(node, ResidualNode):
        return [*node.body, *([node.shortcut] if node.shortcut else []), *node.after]
    if isinstance(node, ParallelNode):
        return [*node.branches, *node.after]
    return []


def walk(node: Node, depth: int = 0) -> Iterator[tuple[Node, int]]:
    yield node, depth
    for child in children(node):
        yield from walk(child, depth + 1)


def layers(node: Node) -> Iterator[LayerNode]:
    for n, _ in walk(node):
        if isinstance(n, LayerNode):
            yield n
