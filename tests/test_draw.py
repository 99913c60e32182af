"""Diagrams netspec draws itself (issue 16): SVG and Mermaid for every zoo spec, at full depth and at
depth 1, with and without collapsed repeats.

The references are outside netspec's drawing code: the IR (which layers exist, where, with which
shapes), XML parsing by the standard library, plain geometry (boxes that must not overlap, boxes that
must enclose their content, edges that must not cross nodes or text), the DOT writer (same nodes for
the same depth and collapse) and, when it is installed, Mermaid's own parser.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from netspec.diagram import to_dot
from netspec.draw import scene_of
from netspec.draw.layout import Layout, layout
from netspec.draw.mermaid import escape as mermaid_escape
from netspec.draw.mermaid import to_mermaid
from netspec.draw.scene import Item, Scene, Series, connections, shape_text
from netspec.draw.svg import to_svg
from netspec.ir import AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode, children, walk
from netspec.lower import lower
from netspec.resolve import load_spec, loads_spec

from .conftest import run_cli
from .test_cli_tools import parse_dot

SPECS = Path(__file__).resolve().parent.parent / "specs"
ZOO = sorted(p.stem for p in SPECS.glob("*.yaml"))
# degenerate shapes no zoo network has: an identity branch, a residual with an empty body, a residual
# inside a branch, side heads first, last and two at one point
ODD_GRAPH = """
name: odd_graph
input: {channels: 8, size: 16}
stem:
  - aux: {name: early, layers: [{conv: {out: 4, kernel: 1}}, flatten]}
  - fork: {}
  - res: {}
  - aux: {name: late, layers: [flatten, {linear: 10}]}
head:
  - aux: {name: last, layers: [flatten]}
blocks:
  fork:
    branches: [[], [{conv: {out: 8, kernel: 3, padding: 1}}], [{res: {}}]]
    merge: add
  res: {body: [], merge: add, shortcut: identity}
"""
CASES = [
    (name, depth, collapse)
    for name in [*ZOO, "odd_graph"]
    for depth in (None, 1)
    for collapse in (False, True)
]
SVG = "{http://www.w3.org/2000/svg}"


def case_id(case: tuple[str, int | None, bool]) -> str:
    name, depth, collapse = case
    return f"{name}-depth{depth if depth is not None else 'all'}{'-collapse' if collapse else ''}"


class Drawn:
    """One diagram: the IR it comes from, its scene, layout, SVG and Mermaid text."""

    def __init__(self, name: str, depth: int | None, collapse: bool) -> None:
        spec = loads_spec(ODD_GRAPH) if name == "odd_graph" else load_spec(SPECS / f"{name}.yaml")
        self.depth, self.collapse = depth, collapse
        self.ir: SeqNode = lower(spec)
        self.scene: Scene = scene_of(spec, depth=depth, collapse=collapse)
        self.layout: Layout = layout(self.scene)
        self.svg = to_svg(self.layout, spec.description)
        self.mermaid = to_mermaid(self.scene)
        self.dot = to_dot(spec, depth=depth, collapse=collapse)


@functools.cache
def drawn(case: tuple[str, int | None, bool]) -> Drawn:
    return Drawn(*case)


cases = pytest.mark.parametrize("case", CASES, ids=case_id)


# -- the IR, read independently of netspec/draw --------------------------------------------------------


def dot_depths(root: SeqNode) -> dict[str, int]:
    """The level of every container, as `--depth` counts it (the DOT writer's rule): the network's
    own children are level 0; a residual's body and after, a sequence's children, one deeper; a
    shortcut's and a branch's children two deeper."""
    out: dict[str, int] = {}

    def visit(nodes: list[Node], level: int) -> None:
        for node in nodes:
            out[node.path] = level
            if isinstance(node, (SeqNode, AuxNode)):
                visit(node.children, level + 1)
            elif isinstance(node, ResidualNode):
                visit(node.body + node.after, level + 1)
                if node.shortcut is not None:
                    visit(node.shortcut.children, level + 2)
            elif isinstance(node, ParallelNode):
                for branch in node.branches:
                    visit(branch.children, level + 2)
                visit(node.after, level + 1)

    visit(root.children, 0)
    return out


def is_block(node: Node) -> bool:
    return isinstance(node, (ResidualNode, ParallelNode)) or (
        isinstance(node, SeqNode) and node.role == "block"
    )


def block_kind(node: Node) -> tuple[str, str | None]:
    return type(node).__name__, getattr(node, "block", None)


def ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


# -- reading the SVG -------------------------------------------------------------------------------------


def svg_nodes(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if "node" in g.get("class", "").split()]


def svg_edges(svg: str) -> list[ET.Element]:
    return [p for p in ET.fromstring(svg).iter(f"{SVG}path") if "edge" in p.get("class", "").split()]


# -- geometry --------------------------------------------------------------------------------------------

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def overlap(a: Box, b: Box, tol: float = 0.5) -> bool:
    return a[0] < b[2] - tol and b[0] < a[2] - tol and a[1] < b[3] - tol and b[1] < a[3] - tol


def inside(inner: Box, outer: Box, tol: float = 0.01) -> bool:
    return (
        outer[0] - tol <= inner[0] and inner[2] <= outer[2] + tol and outer[1] - tol <= inner[1]
        and inner[3] <= outer[3] + tol
    )  # fmt: skip


def segment_hits(p: tuple[float, float], q: tuple[float, float], box: Box, tol: float = 1.0) -> bool:
    """Does the axis-parallel segment pq enter the box's interior (the box shrunk by tol)?"""
    x0, y0, x1, y1 = box[0] + tol, box[1] + tol, box[2] - tol, box[3] - tol
    (sx0, sx1), (sy0, sy1) = sorted((p[0], q[0])), sorted((p[1], q[1]))
    if sx0 == sx1:  # vertical
        return x0 < sx0 < x1 and sy0 < y1 and sy1 > y0
    return y0 < sy0 < y1 and sx0 < x1 and sx1 > x0


class Index:
    """Boxes sorted by top, to find those a y-range can meet without comparing all pairs."""

    def __init__(self, boxes: list[tuple[Box, object]]) -> None:
        self.boxes = sorted(boxes, key=lambda b: b[0][1])
        self.tops = [b[0][1] for b in self.boxes]
        self.tallest = max((b[0][3] - b[0][1] for b in self.boxes), default=0.0)

    def near(self, y0: float, y1: float) -> list[tuple[Box, object]]:
        lo = bisect.bisect_left(self.tops, y0 - self.tallest)
        hi = bisect.bisect_right(self.tops, y1)
        return [b for b in self.boxes[lo:hi] if b[0][3] >= y0 and b[0][1] <= y1]


def node_boxes(lay: Layout) -> list[tuple[Box, object]]:
    return [(n.extent, n.item.id) for n in lay.nodes]


def text_boxes(lay: Layout) -> list[tuple[Box, object]]:
    out: list[tuple[Box, object]] = [(lb.extent, f"shape {lb.text}") for lb in lay.labels]
    for g in lay.groups:
        out.append(
            ((g.label_x, g.label_y - 9.5, g.label_x + g.label_w, g.label_y + 3), f"label {g.group.label}")
        )
    return out


# -- SVG: valid, complete, and drawn cleanly ---------------------------------------------------------------


@cases
def test_svg_parses_with_svg_root_and_viewbox(case):
    d = drawn(case)
    root = ET.fromstring(d.svg)
    assert root.tag == f"{SVG}svg"
    w, h = float(root.get("width")), float(root.get("height"))
    assert w > 0 and h > 0
    assert [float(v) for v in root.get("viewBox").split()] == [0, 0, w, h]
    assert root.find(f"{SVG}title").text == case[0]
    for n in d.layout.nodes:  # everything lies inside the picture
        x0, y0, x1, y1 = n.extent
        assert x0 >= 0 and x1 <= w and y0 >= 0 and y1 <= h


@cases
def test_svg_draws_every_layer_exactly_once_at_its_depth(case):
    d = drawn(case)
    _name, depth, collapse = case
    layers = {n.path for n, _ in walk(d.ir) if isinstance(n, LayerNode)}
    containers = {n.path: n for n, _ in walk(d.ir) if not isinstance(n, LayerNode)}
    levels = dot_depths(d.ir)
    drawn_paths: Counter[str] = Counter()
    kinds: dict[str, str] = {}
    for g in svg_nodes(d.svg):
        covers = g.get("data-covers").split()
        kind = g.get("class").split()[1]
        if kind == "io" or (kind == "merge" and not covers):  # a graph list's merge covers its layer
            assert covers == []
            continue
        assert covers, g.get("id")
        for p in covers:
            drawn_paths[p] += 1
            kinds[p] = kind
    assert set(drawn_paths) <= layers | set(containers), "only paths of the IR"
    for layer in layers:  # each layer: drawn itself or inside exactly one container drawn as one node
        times = drawn_paths[layer] + sum(drawn_paths[a] for a in ancestors(layer))
        assert times == 1, f"{layer} drawn {times} times"
    for path, kind in kinds.items():
        if kind == "opaque":  # a container is one node only below the depth asked for
            assert depth is not None and levels[path] > depth, path
        if kind == "repeat":
            assert collapse
    if depth is None and not collapse:
        assert set(drawn_paths) == layers
    # collapsing: consecutive blocks of one kind are never drawn separately
    if collapse:
        owner = {p: g.get("id") for g in svg_nodes(d.svg) for p in g.get("data-covers").split()}
        for node, _ in walk(d.ir):
            kids = children(node)
            for a, b in itertools.pairwise(kids):
                # (in a graph list, only where b reads a and nothing else reads a)
                read_elsewhere = b.inputs or any(a.name in k.inputs for k in kids)
                read_elsewhere = read_elsewhere or a.name in (getattr(node, "outputs", None) or {}).values()
                if is_block(a) and is_block(b) and block_kind(a) == block_kind(b) and a.path in owner:
                    if read_elsewhere:
                        continue
                    assert owner[a.path] == owner.get(b.path), f"{a.path} and {b.path} not collapsed"


@cases
def test_svg_has_the_same_nodes_as_the_dot_writer(case):
    d = drawn(case)
    dot_nodes, dot_edges = parse_dot(d.dot)
    assert len(svg_nodes(d.svg)) == len(dot_nodes)
    assert len(svg_edges(d.svg)) == len(dot_edges)


@cases
def test_svg_edges_join_drawn_nodes_and_carry_ir_shapes(case):
    d = drawn(case)
    ids = {g.get("id"): g for g in svg_nodes(d.svg)}
    assert len(ids) == len(svg_nodes(d.svg)), "node ids are unique"
    edges = [(e.get("data-from"), e.get("data-to"), e.get("class").split()[1]) for e in svg_edges(d.svg)]
    assert all(a in ids and b in ids for a, b, _ in edges)
    conns = connections(d.scene)
    assert Counter(edges) == Counter((c.src, c.dst, c.style) for c in conns)
    into = Counter(b for _, b, _ in edges)
    out_of = Counter(a for a, _, _ in edges)
    for nid, g in ids.items():
        first = "input" in g.find(f"{SVG}title").text.split("\n")[0]
        assert (into[nid] == 0) == first, nid
    assert sum(out_of[i] == 0 for i in ids) >= 1  # the output node, and side heads' last nodes
    # the shapes: an edge into a node that draws IR layer or container X carries X's input shape
    by_path = {n.path: n for n, _ in walk(d.ir)}
    items = {i.id: i for i in d.scene.items}
    labels = {lb.text for lb in d.layout.labels}
    for c in conns:
        item = items[c.dst]
        if item.kind == "merge" and isinstance(by_path[item.path], LayerNode):  # a graph list's merge
            assert sorted(x.shape for x in conns if x.dst == c.dst) == sorted(by_path[item.path].in_shapes)
            continue
        if item.covers:
            assert c.shape == by_path[item.covers[0]].in_shape, (c, item.covers[0])
        if item.kind == "merge":
            node = by_path[item.path]
            merged = node.after[0].in_shape if node.after else node.out_shape
            ins = [x.shape for x in conns if x.dst == c.dst]
            if node.merge == "concat":
                assert sum(s[0] for s in ins) == merged[0]
            else:  # add; mul may broadcast a gate (squeeze-excitation's C x 1 x 1) over the map
                assert merged in ins
                assert all(a in (1, b) for s in ins for a, b in zip(s, merged, strict=True))
    assert labels == {shape_text(c.shape) for c in conns}  # every edge's shape is printed, nothing else


@cases
def test_svg_branches_and_shortcuts_match_the_ir(case):
    d = drawn(case)
    merges = {g.get("data-path"): g.get("id") for g in svg_nodes(d.svg) if "merge" in g.get("class")}
    edges = [(e.get("data-to"), e.get("class").split()[1]) for e in svg_edges(d.svg)]
    for node, _ in walk(d.ir):
        if node.path not in merges:
            continue
        into = [style for dst, style in edges if dst == merges[node.path]]
        if isinstance(node, ParallelNode):
            assert len(into) == len(node.branches) and set(into) == {"flow"}
        elif isinstance(node, ResidualNode):
            shortcut = "skip" if node.shortcut is None else "projection"
            assert sorted(into) == sorted(["flow", shortcut]), node.path


@cases
def test_layout_nodes_and_labels_do_not_overlap(case):
    lay = drawn(case).layout
    things = node_boxes(lay) + text_boxes(lay)
    index = Index(things)
    for box, what in things:
        for other, other_what in index.near(box[1], box[3]):
            if other_what is not what and (other, other_what) != (box, what):
                assert not overlap(box, other), f"{what} overlaps {other_what}"


@cases
def test_layout_edges_cross_no_node_and_no_text(case):
    lay = drawn(case).layout
    index = Index(node_boxes(lay) + text_boxes(lay))
    for e in lay.edges:
        for p, q in zip(e.points, e.points[1:], strict=False):
            assert p[0] == q[0] or p[1] == q[1], "orthogonal"
            for box, what in index.near(min(p[1], q[1]), max(p[1], q[1])):
                assert not segment_hits(p, q, box), f"edge {e.src}->{e.dst} crosses {what}"


@cases
def test_layout_boxes_enclose_their_content_and_nothing_else(case):
    lay = drawn(case).layout

    def within(path: str, group: str) -> bool:
        return path == group or path.startswith(group + ".")

    for g in lay.groups:
        gbox = (g.x, g.y, g.x + g.w, g.y + g.h)
        for n in lay.nodes:
            paths = n.item.covers or ((n.item.path,) if n.item.kind == "merge" else ())
            if paths and all(within(p, g.group.path) for p in paths):
                assert inside(n.extent, gbox), f"{n.item.id} {paths} outside {g.group.label}"
            else:
                assert not overlap(n.extent, gbox), f"{n.item.id} {paths} inside {g.group.label}"
        for other in lay.groups:
            if other is not g and within(other.group.path, g.group.path) and other.group.path != g.group.path:
                assert inside((other.x, other.y, other.x + other.w, other.y + other.h), gbox)
        assert inside((g.label_x, g.label_y - 9, g.label_x + g.label_w, g.label_y), gbox)


# -- text is escaped --------------------------------------------------------------------------------------

NASTY = "a <b> & \"c\" 'd' #e; ]]> \x01 end"


def test_svg_and_mermaid_escape_user_text(tmp_path):
    spec = loads_spec(
        "name: nasty\n"
        f"description: {json_str(NASTY)}\n"
        "input: {channels: 1, size: 8}\n"
        "stem: [{conv: {out: 4, kernel: 3}}, relu, flatten, {linear: {out: 2}}]\n"
    )
    scene = scene_of(spec)
    scene.root.parts[1].title = NASTY  # as if a layer's name could hold anything
    svg = to_svg(layout(scene), spec.description)
    root = ET.fromstring(svg)  # parses
    assert root.find(f"{SVG}desc").text == NASTY.replace("\x01", "\ufffd")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert NASTY.replace("\x01", "\ufffd") in texts
    mermaid = to_mermaid(scene)
    label = re.search(r'n2\("(.*)"\)', mermaid).group(1)
    assert '"' not in label and "<b>" in label and "<b>" not in mermaid_escape("<b>")
    assert mermaid_escape(NASTY) == "a #lt;b#gt; #amp; #quot;c#quot; 'd' #35;e; ]]#gt; \ufffd end"


def json_str(text: str) -> str:
    import json

    return json.dumps(text)


# -- Mermaid ---------------------------------------------------------------------------------------------

MERMAID_NODE = re.compile(r"^\s*(n\d+)(\(\[|\(\(|\[\[|\()\"")
MERMAID_EDGE = re.compile(r'^\s*(n\d+) (-->|-\.->)\|"([^"]*)"\| (n\d+)$')


@cases
def test_mermaid_defines_each_node_once_and_balances_subgraphs(case):
    d = drawn(case)
    lines = d.mermaid.splitlines()
    assert lines[:3] == ["---", f"title: {case[0]}", "---"] and lines[3] == "flowchart TB"
    defined = Counter(m.group(1) for line in lines if (m := MERMAID_NODE.match(line)))
    assert set(defined.values()) == {1}
    assert set(defined) == {i.id for i in d.scene.items}
    edges = [m.groups() for line in lines if (m := MERMAID_EDGE.match(line))]
    assert all(a in defined and b in defined for a, _, _, b in edges)
    assert len(edges) == len(connections(d.scene))
    open_ = 0
    for line in lines:
        if line.strip().startswith("subgraph "):
            open_ += 1
        elif line.strip() == "end":
            open_ -= 1
            assert open_ >= 0
    assert open_ == 0
    assert sum(line.strip().startswith("subgraph ") for line in lines) == len(
        [p for p in walk_groups(d.scene.root)]
    )


def walk_groups(part):
    from netspec.draw.scene import Group, walk_parts

    return [p for p in walk_parts(part) if isinstance(p, Group)]


def mermaid_parser() -> tuple[str, Path] | None:
    """Mermaid's own parser (the npm package `mermaid`, with `jsdom`), when NETSPEC_MERMAID_NODE_MODULES
    names a node_modules folder that holds both: `npm install mermaid jsdom` in any folder."""
    folder = os.environ.get("NETSPEC_MERMAID_NODE_MODULES")
    node = shutil.which("node")
    if (
        not folder
        or not node
        or not (Path(folder) / "mermaid").is_dir()
        or not (Path(folder) / "jsdom").is_dir()
    ):
        return None
    return node, Path(folder)


PARSE_JS = """
import { JSDOM } from "jsdom";
import fs from "fs";
const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window; globalThis.document = dom.window.document;
const mermaid = (await import("mermaid")).default;
mermaid.initialize({ startOnLoad: false });
let bad = 0;
for (const f of process.argv.slice(2)) {
  try { await mermaid.parse(fs.readFileSync(f, "utf8")); }
  catch (e) { bad++; console.log("FAIL " + f + ": " + String(e.message || e).slice(0, 300)); }
}
process.exit(bad ? 1 : 0);
"""


@pytest.mark.slow
@pytest.mark.skipif(
    mermaid_parser() is None, reason="Mermaid's parser is optional: set NETSPEC_MERMAID_NODE_MODULES"
)
def test_mermaid_parses_with_mermaids_own_parser(tmp_path):
    node, modules = mermaid_parser()  # type: ignore[misc]
    files = []
    for case in CASES:
        path = tmp_path / f"{case_id(case)}.mmd"
        path.write_text(drawn(case).mermaid)
        files.append(str(path))
    script = modules.parent / "netspec_parse_mermaid.mjs"
    script.write_text(PARSE_JS)
    proc = subprocess.run([node, str(script), *files], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the command -------------------------------------------------------------------------------------------


def test_cli_writes_svg_mermaid_and_markdown(tmp_path):
    for name, args in [("r.svg", []), ("r.mmd", []), ("r.md", []), ("r.txt", ["-f", "mermaid"])]:
        result = run_cli("diagram", "resnet18", "-o", str(tmp_path / name), "--collapse", *args)
        assert result.exit_code == 0, result.output
    ET.fromstring((tmp_path / "r.svg").read_text())
    mmd = (tmp_path / "r.mmd").read_text()
    assert (tmp_path / "r.txt").read_text() == mmd
    assert (tmp_path / "r.md").read_text() == f"```mermaid\n{mmd}```\n"
    assert "basic x2" in mmd


def test_cli_diagram_bad_spec_is_a_located_error_and_writes_nothing(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ninput: {channels: 1, size: 8}\nstem:\n  - conv: {out: 4}\n  - maxpol: 2\n")
    result = run_cli("diagram", str(spec), "-o", str(tmp_path / "bad.svg"))
    assert result.exit_code == 2
    assert re.match(r".*bad\.yaml:\d+:\d+: ", result.stderr)
    assert not (tmp_path / "bad.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is optional; without it see test_cli_tools")
def test_cli_png_with_graphviz(tmp_path):
    result = run_cli("diagram", "lenet5", "-o", str(tmp_path / "net.png"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "net.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scene_items_are_the_drawn_nodes():
    d = drawn(("googlenet", None, False))
    assert {n.item.id for n in d.layout.nodes} == {i.id for i in d.scene.items}
    assert isinstance(d.scene.root, Series) and isinstance(d.scene.root.parts[0], Item)
