"""Architecture diagrams as Graphviz DOT, written by netspec itself (no graphviz Python package).

Stages and blocks are clusters; parallel branches fan out from one input and meet in a concat node;
residual shortcuts are edges (dashed for identity) into an add node; every edge carries the shape of
the tensor it moves (C x H x W). A conv followed by its batch norm and activation is one node (the
kinds say which: LayerKind.unit_role); each layer's label is its kind's `describe`.
`depth` draws containers deeper than that level as single nodes; `collapse` draws the repeated
blocks of a stage (consecutive blocks of one kind) as one node labelled "xN".
`render` calls the `dot` binary when it is installed. netspec/draw/ lays out and draws SVG and Mermaid
itself, with no binary.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .ir import INPUT, AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode
from .layers import KINDS
from .layers.base import UnitRole
from .layers.merge import MergeKind
from .lower import lower
from .spec import Spec

INSTALL_HINT = (
    "Graphviz's `dot` is not installed: netspec draws .svg itself (`netspec diagram SPEC -o net.svg`); "
    "for .png/.pdf install Graphviz (apt-get install graphviz, brew install graphviz, conda install "
    "graphviz, or https://graphviz.org/download/)"
)

Port = tuple[str, tuple[int, ...]]  # (node id, shape of the tensor it outputs)
REFERENCE_COLOR = "#3b6fb6"  # a graph list's reference edges (`from:`), in DOT, SVG and Mermaid


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(s: tuple[int, ...]) -> str:
    return "x".join(map(str, s))


def _role(node: Node) -> UnitRole | None:
    """The node's place in a conv -> norm -> act unit (LayerKind.unit_role), None for other nodes."""
    return KINDS[node.kind].unit_role if isinstance(node, LayerNode) else None


def merge_kind(node: Node) -> MergeKind | None:
    """The kind of a graph list's merge node (drawn as a circle, like a block's merge), else None."""
    kind = KINDS[node.kind] if isinstance(node, LayerNode) else None
    return kind if isinstance(kind, MergeKind) else None


def _block_key(node: Node) -> tuple:
    return (type(node).__name__, getattr(node, "block", None))


def _layer_desc(node: LayerNode) -> str:
    return KINDS[node.kind].describe(node.params, node.in_shape, node.out_shape)


def chained(seq: SeqNode) -> list[bool]:
    """For each child of a list: does it read only the previous child's output, which nothing else
    reads? Only such a child can be drawn in one node with the previous one. True throughout a list
    without references (a tree's); in a graph list, a `from:` or a second reader breaks the chain."""
    nodes = seq.children
    if not seq.graph:
        return [True] * len(nodes)
    readers: dict[str, int] = {name: 1 for name in (seq.outputs or {}).values()}
    reads = [n.inputs or ((nodes[k - 1].name,) if k else (INPUT,)) for k, n in enumerate(nodes)]
    for names in reads:
        for name in names:
            readers[name] = readers.get(name, 0) + 1
    return [k > 0 and reads[k] == (nodes[k - 1].name,) and readers[nodes[k - 1].name] == 1 for k in
            range(len(nodes))]  # fmt: skip


def drawn_runs(
    nodes: list[Node], collapse: bool, joins: list[bool] | None = None
) -> Iterator[tuple[str, list[Node]]]:
    """A sequence as a diagram draws it: ("fused", conv [+ norm] [+ act]), ("repeat", consecutive
    blocks of one kind, with `collapse`) or ("node", [one node]). The DOT writer and the SVG/Mermaid
    scene (netspec/draw/scene.py) both draw these runs. `joins` (`chained`): which nodes may join the
    run before them (in a graph list, only those that read nothing but it)."""
    joins = joins if joins is not None else [True] * len(nodes)
    i = 0
    while i < len(nodes):
        node = nodes[i]
        j = i + 1
        if _role(node) is UnitRole.CONV:
            if j < len(nodes) and joins[j] and _role(nodes[j]) is UnitRole.NORM:
                j += 1
            if j < len(nodes) and joins[j] and _role(nodes[j]) is UnitRole.ACT:
                j += 1
            if j > i + 1:
                yield "fused", nodes[i:j]
                i = j
                continue
        if collapse and node.is_block:
            while (
                j < len(nodes) and joins[j] and nodes[j].is_block and _block_key(nodes[j]) == _block_key(node)
            ):
                j += 1
            if j - i > 1:
                yield "repeat", nodes[i:j]
                i = j
                continue
        yield "node", [node]
        i += 1


class _Writer:
    def __init__(self, depth: int | None, collapse: bool) -> None:
        self.depth = depth
        self.collapse = collapse
        self.lines: list[str] = []
        self.edges: list[str] = []  # written after every cluster: an edge inside a subgraph would pull
        # its nodes into that cluster
        self.indent = 1
        self.count = 0
        self.clusters = 0
        self.references: set[str] = set()  # node ids whose edges being drawn are references (`from:`)

    def out(self, line: str) -> None:
        self.lines.append("  " * self.indent + line)

    def new_node(self, label: str, **attrs: str) -> str:
        self.count += 1
        nid = f"n{self.count}"
        extra = "".join(f", {k}={v}" for k, v in attrs.items())
        self.out(f"{nid} [label={_q(label)}{extra}];")
        return nid

    def edge(self, src: Port, dst: str, **attrs: str) -> None:
        if src[0] in self.references and "color" not in attrs:  # blue, as the SVG and Mermaid draw them
            attrs = {**attrs, "color": _q(REFERENCE_COLOR)}
        extra = "".join(f", {k}={v}" for k, v in attrs.items())
        self.edges.append(f"  {src[0]} -> {dst} [label={_q(_shape(src[1]))}{extra}];")

    def connect(self, inputs: list[Port], dst: str, **attrs: str) -> None:
        for p in inputs:
            self.edge(p, dst, **attrs)

    def open_cluster(self, label: str, style: str = "rounded", color: str = "gray50") -> None:
        self.clusters += 1
        self.out(f"subgraph cluster_{self.clusters} {{")
        self.indent += 1
        self.out(f"label={_q(label)}; style={_q(style)}; color={_q(color)}; fontname=Helvetica;")

    def close_cluster(self) -> None:
        self.indent -= 1
        self.out("}")

    # -- nodes ------------------------------------------------------------------------------------

    def seq(self, nodes: list[Node], inputs: list[Port], depth: int) -> list[Port]:
        for run, group in drawn_runs(nodes, self.collapse):
            if run == "fused":
                inputs = self.fused(group, inputs)
            elif run == "repeat":
                inputs = self.collapsed(group, inputs)
            else:
                inputs = self.node(group[0], inputs, depth)
        return inputs

    def contents(self, seq: SeqNode, inputs: list[Port], depth: int) -> list[Port]:
        if not seq.graph:
            return self.seq(seq.children, inputs, depth)
        ports = self.graph(seq, inputs, depth)
        return ports[seq.children[-1].name] if seq.children else inputs

    def graph(self, seq: SeqNode, inputs: list[Port], depth: int) -> dict[str, list[Port]]:
        """A graph list: each drawn run fed by the outputs its first node names (`from:`), or by the
        run before it. Returns every item's output ports by name."""
        ports: dict[str, list[Port]] = {INPUT: inputs}
        last = inputs
        previous = INPUT
        outer = self.references
        for run, group in drawn_runs(seq.children, self.collapse, chained(seq)):
            first = group[0]
            into = [p for name in first.inputs for p in ports[name]] if first.inputs else last
            # a read of anything but the item just above is a reference
            self.references = outer | {p[0] for name in first.inputs if name != previous for p in ports[name]}
            if merge_kind(first) is not None:
                last = self.merge(first, into)
            elif run == "fused":
                last = self.fused(group, into)
            elif run == "repeat":
                last = self.collapsed(group, into)
            else:
                last = self.node(first, into, depth)
            ports[group[-1].name] = last
            previous = group[-1].name
        self.references = outer
        return ports

    def merge(self, node: Node, inputs: list[Port]) -> list[Port]:
        """A merge node of a graph list (concat, add, mul): a circle, as a block's merge is drawn."""
        kind = merge_kind(node)
        assert kind is not None
        nid = self.new_node(kind.name, shape="circle", width="0.3", fontsize="10", tooltip=_q(node.path))
        self.connect(inputs, nid)
        return [(nid, node.out_shape)]

    def fused(self, group: list[Node], inputs: list[Port]) -> list[Port]:
        conv, *rest_nodes = group
        assert isinstance(conv, LayerNode)
        rest = " + ".join(KINDS[n.kind].prefix for n in rest_nodes if isinstance(n, LayerNode))  # bn + relu
        label = f"{conv.path}\n{_layer_desc(conv)}\n+ {rest}"
        nid = self.new_node(label, shape="box", style='"rounded,filled"', fillcolor='"#dbe8f7"')
        self.connect(inputs, nid)
        return [(nid, group[-1].out_shape)]

    def collapsed(self, group: list[Node], inputs: list[Port]) -> list[Port]:
        first, last = group[0], group[-1]
        kind = getattr(first, "block", None) or "block"
        name = f"{first.path} .. {last.name}"
        label = f"{name}\n{kind} x{len(group)}"
        nid = self.new_node(label, shape="box3d", style="filled", fillcolor='"#f3e3c3"')
        self.connect(inputs, nid)
        return [(nid, last.out_shape)]

    def opaque(self, node: Node, kind: str, inputs: list[Port]) -> list[Port]:
        nid = self.new_node(f"{node.path}\n{kind}", shape="box", style="filled", fillcolor='"#f3e3c3"')
        self.connect(inputs, nid)
        return [(nid, node.out_shape)]

    def node(self, node: Node, inputs: list[Port], depth: int) -> list[Port]:
        if isinstance(node, LayerNode):
            nid = self.new_node(f"{node.path}\n{_layer_desc(node)}", shape="box", style="rounded")
            self.connect(inputs, nid)
            return [(nid, node.out_shape)]
        kind = getattr(node, "block", None) or getattr(node, "role", "") or type(node).__name__
        if self.depth is not None and depth > self.depth:
            return self.opaque(node, kind, inputs)
        if isinstance(node, AuxNode):
            self.open_cluster(f"{node.path} (aux, training only)", style="dashed", color="gray60")
            self.seq(node.children, inputs, depth + 1)
            self.close_cluster()
            return inputs  # the main path passes through
        if isinstance(node, SeqNode):
            if node.role in ("stage", "block"):
                self.open_cluster(f"{node.path}: {kind}" if node.role == "block" else node.path)
                out = self.contents(node, inputs, depth + 1)
                self.close_cluster()
                return out
            return self.contents(node, inputs, depth + 1)
        if isinstance(node, ResidualNode):
            self.open_cluster(f"{node.path}: {kind}")
            body = self.seq(node.body, inputs, depth + 1)
            if node.shortcut is not None:
                self.open_cluster(node.shortcut.path, style="dotted")
                short = self.contents(node.shortcut, inputs, depth + 2)
                self.close_cluster()
                shortcut_style = {"color": "firebrick"}
            else:
                short = inputs
                shortcut_style = {"style": "dashed", "color": "firebrick"}
            merge = self.new_node(node.merge, shape="circle", width="0.3", fontsize="10")
            self.connect(body, merge)
            self.connect(short, merge, **shortcut_style)
            out = self.seq(
                node.after, [(merge, node.after[0].in_shape if node.after else node.out_shape)], depth + 1
            )
            self.close_cluster()
            return out
        if isinstance(node, ParallelNode):
            self.open_cluster(f"{node.path}: {kind}")
            tails: list[Port] = []
            for branch in node.branches:
                tails += self.contents(branch, inputs, depth + 2)
            merge = self.new_node(node.merge, shape="circle", width="0.3", fontsize="10")
            self.connect(tails, merge)
            out = self.seq(
                node.after, [(merge, node.after[0].in_shape if node.after else node.out_shape)], depth + 1
            )
            self.close_cluster()
            return out
        raise TypeError(type(node))  # pragma: no cover


def to_dot(spec: Spec, *, depth: int | None = None, collapse: bool = False,
           input_size: int | tuple[int, int] | None = None) -> str:  # fmt: skip
    """The DOT source of a spec's architecture diagram."""
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    root = lower(spec, size)
    w = _Writer(depth, collapse)
    inp = w.new_node(f"input\n{_shape(root.in_shape)}", shape="oval", style="filled", fillcolor='"#e0f0e0"')
    io = {"shape": "oval", "style": "filled", "fillcolor": '"#e0f0e0"'}
    if root.graph and root.outputs:  # several named outputs: an output node each
        ports = w.graph(root, [(inp, root.in_shape)], 0)
        shapes = {c.name: c.out_shape for c in root.children}
        previous = root.children[-1].name  # as the SVG: an output reads the last item straight, if any
        for key, name in root.outputs.items():
            w.references = {p[0] for p in ports[name]} if name != previous else set()
            w.connect(ports[name], w.new_node(f"output {key}\n{_shape(shapes[name])}", **io))
            previous = ""
        w.references = set()
    else:
        tails = w.contents(root, [(inp, root.in_shape)], 0)
        w.connect(tails, w.new_node(f"output\n{_shape(root.out_shape)}", **io))
    header = [
        f"digraph {_q(spec.name)} {{",
        "  graph [rankdir=TB, fontname=Helvetica, nodesep=0.25, ranksep=0.3, compound=true];",
        "  node [fontname=Helvetica, fontsize=11];",
        "  edge [fontname=Helvetica, fontsize=9, color=gray30];",
        f"  label={_q(f'{spec.name} (edges: output shape C x H x W)')}; labelloc=t;",
    ]
    return "\n".join([*header, *w.lines, *w.edges, "}"]) + "\n"


def dot_binary() -> str | None:
    return shutil.which("dot")


def render(dot_text: str, output: Path, fmt: str | None = None) -> Path:
    """Write `output`: the DOT text for .dot/.gv, else the `dot` binary's rendering in `fmt` (default:
    the suffix: png, pdf, svg, ...). Without `dot`, raises RuntimeError and writes nothing."""
    suffix = fmt or output.suffix.lower().lstrip(".")
    if suffix in ("dot", "gv", ""):
        output.write_text(dot_text)
        return output
    binary = dot_binary()
    if binary is None:
        raise RuntimeError(INSTALL_HINT)
    proc = subprocess.run(
        [binary, f"-T{suffix}", "-o", str(output)],
        input=dot_text,
        text=True,
        capture_output=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"dot exited with {proc.returncode}")
    return output
