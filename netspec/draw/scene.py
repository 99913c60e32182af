"""What a diagram shows, whatever draws it (SVG, Mermaid): the IR cut at `depth`, a stage's repeated
blocks collapsed into one "xN" node, conv -> batch norm -> activation fused into one node, with the
same meanings as the DOT writer's (netspec/diagram.py). The result is a series-parallel tree:

- `Series`: parts stacked top to bottom, each feeding the next;
- `Fork`: parallel branches on one input, their merge node (concat, add) and the layers after it;
- `Residual`: a body beside its shortcut (identity when None), their merge node, the layers after it;
- `Group`: a stage or block drawn as a labelled box around its content;
- `Side`: a training-only auxiliary head that reads the main path, which passes by unchanged;
- `Graph`: a graph list (items that read earlier outputs by name, `from:`): its parts in list order,
  each with the names it reads; an edge that does not come from the part just above is a "reference".

Its leaves are `Item`s, the drawn nodes. Every item knows which IR paths it stands for (`covers`), so
a reader can check that each layer is drawn exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from ..diagram import _layer_desc, chained, drawn_runs, merge_kind  # one decision, shared with DOT
from ..ir import INPUT, AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode
from ..layers import KINDS
from ..layers.activation import Activation
from ..layers.base import Shape
from ..layers.conv import Conv
from ..layers.linear import Linear
from ..layers.norm import BatchNorm, LocalResponseNorm
from ..layers.pool import AdaptiveAvgPool, AvgPool, MaxPool

ItemKind = Literal["layer", "fused", "repeat", "opaque", "merge", "io"]
GroupStyle = Literal["stage", "block", "shortcut", "aux"]

# the colour family of a layer kind; plug-in kinds and the rest are "other"
_FAMILIES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (Conv, "convolution"),
    ((BatchNorm, LocalResponseNorm), "norm"),
    (Activation, "act"),
    ((MaxPool, AvgPool, AdaptiveAvgPool), "pool"),
    (Linear, "dense"),
)


def family(kind: str) -> str:
    layer_kind = KINDS.get(kind)
    return next((name for cls, name in _FAMILIES if isinstance(layer_kind, cls)), "other")


TIMES = "\N{MULTIPLICATION SIGN}"


def describe(node: LayerNode) -> str:
    """A layer's text in a diagram, the one place it comes from (the DOT writer's wording for now; the
    layer kinds will describe themselves)."""
    return _layer_desc(node)


def shape_text(shape: Shape) -> str:
    """A tensor shape as printed on edges: C, H and W joined by the multiplication sign."""
    return TIMES.join(map(str, shape))


@dataclass
class Item:
    """One drawn node."""

    id: str
    kind: ItemKind
    lines: list[str]  # text under the title
    family: str  # colour: a layer family (convolution, norm, act, pool, dense, other), block, merge, io
    path: str  # module path of the (first) node drawn; a merge: its block's path; input/output: ""
    covers: tuple[str, ...]  # IR paths drawn here: layers, or the containers a repeat/opaque node stands for
    out_shape: Shape
    title: str = ""  # set by `_name`: the path relative to the innermost box, or a fixed word
    title_suffix: str = ""  # a repeat node: " .. NAME" of its last block

    def text(self) -> list[str]:
        return [self.title, *self.lines]


@dataclass
class Series:
    parts: list[Part]
    in_shape: Shape

    @property
    def out_shape(self) -> Shape:
        main = [p for p in self.parts if not isinstance(p, Side)]
        return main[-1].out_shape if main else self.in_shape


@dataclass
class Fork:
    branches: list[Series | Graph]
    merge: Item
    after: Series
    in_shape: Shape

    @property
    def out_shape(self) -> Shape:
        return self.after.out_shape


@dataclass
class Residual:
    body: Series
    shortcut: Group | None  # None: identity
    merge: Item
    after: Series
    in_shape: Shape

    @property
    def out_shape(self) -> Shape:
        return self.after.out_shape


@dataclass
class Group:
    style: GroupStyle
    path: str
    content: Part
    kind: str = ""  # the block kind, for a block
    suffix: str = ""  # after the name in the label: ": bottleneck"
    label: str = ""  # set by `_name`: the name relative to the box around this one, and the suffix

    @property
    def out_shape(self) -> Shape:
        return self.content.out_shape


@dataclass
class Graph:
    """A graph list: `parts[k]` reads the outputs named `reads[k]` (earlier parts' `names`, or INPUT for
    the list's input); its output goes by `names[k]`. The last part's output leaves the graph."""

    parts: list[Part]
    reads: list[tuple[str, ...]]
    names: list[str]
    in_shape: Shape

    @property
    def out_shape(self) -> Shape:
        return self.parts[-1].out_shape if self.parts else self.in_shape


@dataclass
class Side:
    group: Group

    @property
    def out_shape(self) -> Shape:  # pragma: no cover - a side head has no output on the main path
        return self.group.out_shape


Part = Item | Series | Fork | Residual | Group | Side | Graph


@dataclass
class Scene:
    name: str
    description: str
    root: Series  # input item, the network, output item
    items: list[Item] = field(default_factory=list)


def _rel(path: str, prefix: str) -> str:
    """`path` inside the box of `prefix`: the box's label says the rest. A bare index keeps the box's
    own last name (layer1.0, not 0)."""
    if not prefix or not path.startswith(prefix + "."):
        return path
    rel = path[len(prefix) + 1 :]
    return f"{prefix.rpartition('.')[2]}.{rel}" if rel[:1].isdigit() else rel


def _container_kind(node: Node) -> str:
    if isinstance(node, AuxNode):
        return "aux"
    return getattr(node, "block", None) or getattr(node, "role", "") or type(node).__name__


class _Builder:
    def __init__(self, depth: int | None, collapse: bool) -> None:
        self.depth = depth
        self.collapse = collapse
        self.items: list[Item] = []

    def item(self, kind: ItemKind, lines: list[str], fam: str, path: str, covers: tuple[str, ...],
             out_shape: Shape, title: str = "") -> Item:  # fmt: skip
        item = Item(f"n{len(self.items) + 1}", kind, lines, fam, path, covers, out_shape, title)
        self.items.append(item)
        return item

    def seq(self, nodes: list[Node], depth: int, in_shape: Shape) -> Series:
        parts: list[Part] = []
        for run, group in drawn_runs(nodes, self.collapse):
            if run == "fused":
                parts.append(self.fused(group))  # type: ignore[arg-type]  # a fused run is layers
            elif run == "repeat":
                parts.append(self.repeat(group))
            else:
                part = self.node(group[0], depth)
                parts.extend(part.parts if isinstance(part, Series) else [part])
        inner = _plain_sequential(parts[0]) if len(parts) == 1 else None
        if inner is not None:  # a box that is all its parent holds repeats the parent's box
            return inner
        return Series(parts, in_shape)

    def fused(self, group: list[LayerNode]) -> Item:
        conv = group[0]
        rest = " + ".join(KINDS[n.kind].prefix for n in group[1:])  # bn + relu, as the DOT writer
        return self.item(
            "fused", [describe(conv), f"+ {rest}"], "convolution", conv.path, tuple(n.path for n in group),
            group[-1].out_shape,
        )  # fmt: skip

    def repeat(self, group: list[Node]) -> Item:
        first, last = group[0], group[-1]
        kind = getattr(first, "block", None) or "block"
        item = self.item(
            "repeat", [f"{kind} x{len(group)}"], "block", first.path, tuple(n.path for n in group),
            last.out_shape,
        )  # fmt: skip
        item.title_suffix = f" .. {last.name}"
        return item

    def node(self, node: Node, depth: int) -> Part:
        if isinstance(node, LayerNode):
            return self.item("layer", [describe(node)], family(node.kind), node.path, (node.path,),
                             node.out_shape)  # fmt: skip
        kind = _container_kind(node)
        if self.depth is not None and depth > self.depth:
            return self.item("opaque", [kind], "block", node.path, (node.path,), node.out_shape)
        if isinstance(node, AuxNode):
            side = self.seq(node.children, depth + 1, node.in_shape)
            return Side(Group("aux", node.path, side, suffix=" (aux, training only)"))
        if isinstance(node, SeqNode):
            content = self.contents(node, depth + 1)
            if node.role not in ("stage", "block"):
                return content
            if (
                node.role == "block"
                and kind == "sequential"
                and isinstance(content, Series)
                and _single_item(content)
            ):
                return content.parts[0]  # a box around one node says nothing the node does not
            if node.role == "stage":
                return Group("stage", node.path, content)
            return Group("block", node.path, content, kind, f": {kind}")
        if isinstance(node, ResidualNode):
            body = self.seq(node.body, depth + 1, node.in_shape)
            shortcut = None
            if node.shortcut is not None:
                sc = node.shortcut
                shortcut = Group("shortcut", sc.path, self.contents(sc, depth + 2))
            merged = node.after[0].in_shape if node.after else node.out_shape
            merge = self.item("merge", [], "merge", node.path, (), merged, title=node.merge)
            after = self.seq(node.after, depth + 1, merged)
            residual = Residual(body, shortcut, merge, after, node.in_shape)
            return Group("block", node.path, residual, kind, f": {kind}")
        if isinstance(node, ParallelNode):
            branches = [self.contents(b, depth + 2) for b in node.branches]
            merged = node.after[0].in_shape if node.after else node.out_shape
            merge = self.item("merge", [], "merge", node.path, (), merged, title=node.merge)
            after = self.seq(node.after, depth + 1, merged)
            fork = Fork(branches, merge, after, node.in_shape)
            return Group("block", node.path, fork, kind, f": {kind}")
        raise TypeError(type(node))  # pragma: no cover

    def contents(self, seq: SeqNode, depth: int) -> Series | Graph:
        """A list's parts: a graph where its items read each other by name, else a series."""
        return self.graph(seq, depth) if seq.graph else self.seq(seq.children, depth, seq.in_shape)

    def graph(self, seq: SeqNode, depth: int) -> Graph:
        """A graph list: its drawn runs in list order, each reading what its first node names."""
        g = Graph([], [], [], seq.in_shape)
        for run, group in drawn_runs(seq.children, self.collapse, chained(seq)):
            first = group[0]
            merge = merge_kind(first)
            part: Part
            if merge is not None:  # a graph list's merge: a circle, as a block's; a layer of the IR
                part = self.item("merge", [], "merge", first.path, (first.path,), first.out_shape, merge.name)
            elif run == "fused":
                part = self.fused(group)  # type: ignore[arg-type]  # a fused run is layers
            elif run == "repeat":
                part = self.repeat(group)
            else:
                part = self.node(first, depth)
            g.parts.append(part)
            g.reads.append(first.inputs or (g.names[-1] if g.names else INPUT,))
            g.names.append(group[-1].name)
        return g


def _single_item(series: Series) -> bool:
    return len(series.parts) == 1 and isinstance(series.parts[0], Item)


def _plain_sequential(part: Part) -> Series | None:
    """The content of an anonymous `sequential` block's box, else None."""
    if isinstance(part, Group) and part.kind == "sequential" and isinstance(part.content, Series):
        return part.content
    return None


def _name(part: Part, prefix: str) -> None:
    """Names: each node's and box's path relative to the innermost box around it."""
    if isinstance(part, Item):
        if part.kind not in ("merge", "io"):
            part.title = _rel(part.path, prefix) + part.title_suffix
    elif isinstance(part, Series):
        for p in part.parts:
            _name(p, prefix)
    elif isinstance(part, Group):
        part.label = _rel(part.path, prefix) + part.suffix
        _name(part.content, part.path)
    elif isinstance(part, Side):
        _name(part.group, prefix)
    elif isinstance(part, Graph):
        for p in part.parts:
            _name(p, prefix)
    elif isinstance(part, Fork):
        for b in part.branches:
            _name(b, prefix)
        _name(part.after, prefix)
    elif isinstance(part, Residual):
        _name(part.body, prefix)
        if part.shortcut is not None:
            _name(part.shortcut, prefix)
        _name(part.after, prefix)


def build_scene(root: SeqNode, name: str, description: str = "", *, depth: int | None = None,
                collapse: bool = False) -> Scene:  # fmt: skip
    """The scene of a lowered network (`lower(spec)`), cut at `depth`, blocks collapsed if asked."""
    b = _Builder(depth, collapse)
    inp = b.item("io", [shape_text(root.in_shape)], "io", "", (), root.in_shape, title="input")
    if root.graph:
        graph = b.graph(root, 0)
        if root.outputs:  # several named outputs: an output node each, reading its item
            shapes = {c.name: c.out_shape for c in root.children}
            for key, item in root.outputs.items():
                shape = shapes[item]
                graph.parts.append(
                    b.item("io", [shape_text(shape)], "io", "", (), shape, title=f"output {key}")
                )
                graph.reads.append((item,))
                graph.names.append(f"output {key}")  # not a name an item can have (a space)
            parts: list[Part] = [inp, graph]
        else:
            out = b.item("io", [shape_text(root.out_shape)], "io", "", (), root.out_shape, title="output")
            parts = [inp, graph, out]
    else:
        net = b.seq(root.children, 0, root.in_shape)
        out = b.item("io", [shape_text(root.out_shape)], "io", "", (), root.out_shape, title="output")
        parts = [inp, *net.parts, out]
    scene = Scene(name, description, Series(parts, root.in_shape), b.items)
    _name(scene.root, "")
    return scene


EdgeStyle = Literal["flow", "skip", "projection", "side", "reference"]


@dataclass(frozen=True)
class Connection:
    """An edge of the diagram: a tensor from one drawn node to one that reads it."""

    src: str
    dst: str
    shape: Shape
    # skip (identity) / projection: a residual's shortcut; side: into an auxiliary head; reference: a graph
    # list's item reading an output other than the one just above it
    style: EdgeStyle


Port = tuple[str, Shape, EdgeStyle]  # a node's output, and the style of the edges it starts


def _wire(part: Part, inputs: list[Port], out: list[Connection]) -> list[Port]:
    """Connect `inputs` to the nodes of `part` that read them; the ports `part` outputs."""
    if isinstance(part, Item):
        out.extend(Connection(src, part.id, shape, style) for src, shape, style in inputs)
        return [(part.id, part.out_shape, "flow")]
    if isinstance(part, Series):
        for p in part.parts:
            if isinstance(p, Side):
                _wire(p.group, [(src, shape, "side") for src, shape, _ in inputs], out)
            else:
                inputs = _wire(p, inputs, out)
        return inputs
    if isinstance(part, Group):
        return _wire(part.content, inputs, out)
    if isinstance(part, Graph):
        ports: dict[str, list[Port]] = {INPUT: inputs}
        for k, (p, reads, name) in enumerate(zip(part.parts, part.reads, part.names, strict=True)):
            feed: list[Port] = []
            for r in reads:
                straight = r == (part.names[k - 1] if k else INPUT)
                feed += [(src, shape, style if straight else "reference") for src, shape, style in ports[r]]
            ports[name] = _wire(p, feed, out)
        return ports[part.names[-1]] if part.names else inputs
    if isinstance(part, Fork):
        tails = [port for branch in part.branches for port in _wire(branch, inputs, out)]
        return _wire(part.after, _wire(part.merge, tails, out), out)
    if isinstance(part, Residual):
        body = _wire(part.body, inputs, out)
        short: list[Port]
        if part.shortcut is None:
            short = [(src, shape, "skip") for src, shape, _ in inputs]
        else:
            into: list[Port] = [(src, shape, "projection") for src, shape, _ in inputs]
            short = [(src, shape, "projection") for src, shape, _ in _wire(part.shortcut, into, out)]
        return _wire(part.after, _wire(part.merge, body + short, out), out)
    raise TypeError(type(part))  # pragma: no cover


def connections(scene: Scene) -> list[Connection]:
    """Every edge of the diagram, in drawing order; each writer draws exactly these."""
    out: list[Connection] = []
    _wire(scene.root, [], out)
    return out


def walk_parts(part: Part) -> Iterator[Part]:
    yield part
    if isinstance(part, Series):
        for p in part.parts:
            yield from walk_parts(p)
    elif isinstance(part, Group):
        yield from walk_parts(part.content)
    elif isinstance(part, Side):
        yield from walk_parts(part.group)
    elif isinstance(part, Graph):
        for p in part.parts:
            yield from walk_parts(p)
    elif isinstance(part, Fork):
        for b in part.branches:
            yield from walk_parts(b)
        yield part.merge
        yield from walk_parts(part.after)
    elif isinstance(part, Residual):
        yield from walk_parts(part.body)
        if part.shortcut is not None:
            yield from walk_parts(part.shortcut)
        yield part.merge
        yield from walk_parts(part.after)
