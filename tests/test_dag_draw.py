"""Diagrams of graph specs (items that read earlier outputs by name, `from:`): DOT, SVG and Mermaid draw
every reference as an edge from the node that makes the tensor to the node that reads it.

The reference is the spec itself, read back through the IR's `inputs` (which lowering takes from the
`from:` lines) and, independently of netspec's drawing code, the shapes the built module's tensors
have; the geometry checks are test_draw's (nodes and texts do not overlap, edges cross no node and no
text, boxes enclose their content).
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from netspec.diagram import to_dot
from netspec.draw import scene_of
from netspec.draw.layout import layout
from netspec.draw.mermaid import to_mermaid
from netspec.draw.scene import connections, shape_text
from netspec.draw.svg import to_svg
from netspec.ir import INPUT, LayerNode, SeqNode, walk
from netspec.lower import lower
from netspec.resolve import loads_spec
from netspec.spec import Spec

from .test_cli_tools import parse_dot
from .test_dag_export import ALL, spec_of
from .test_draw import (
    SVG,
    Index,
    inside,
    node_boxes,
    overlap,
    segment_hits,
    svg_edges,
    svg_nodes,
    text_boxes,
)

CASES = [(name, depth, collapse) for name in ALL for depth in (None, 1) for collapse in (False, True)]


class Drawn:
    def __init__(self, spec: Spec, depth: int | None, collapse: bool) -> None:
        self.name, self.depth, self.collapse = spec.name, depth, collapse
        self.ir = lower(spec)
        self.scene = scene_of(spec, depth=depth, collapse=collapse)
        self.layout = layout(self.scene)
        self.svg = to_svg(self.layout, spec.description)
        self.mermaid = to_mermaid(self.scene)
        self.dot = to_dot(spec, depth=depth, collapse=collapse)


@functools.cache
def drawn(case: tuple[str, int | None, bool]) -> Drawn:
    name, depth, collapse = case
    return Drawn(spec_of(name), depth, collapse)


cases = pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{'collapse' if c[2] else 'all'}")


def references(root: SeqNode) -> list[tuple[str | None, str, bool, tuple[int, ...]]]:
    """(path read or None for the list's input, path reading it, whether it reads the item just above,
    the shape read) for every read in every graph list of the IR."""
    found = []
    for node, _ in walk(root):
        if isinstance(node, SeqNode) and node.graph:
            kids = {c.name: c for c in node.children}
            for k, child in enumerate(node.children):
                previous = node.children[k - 1].name if k else INPUT
                for name in child.inputs or (previous,):
                    src = None if name == INPUT else kids[name]
                    shape = node.in_shape if src is None else src.out_shape
                    found.append((src.path if src else None, child.path, name == previous, shape))
    return found


def within(paths: tuple[str, ...], path: str) -> bool:
    return any(p == path or p.startswith(path + ".") for p in paths)


@pytest.mark.parametrize("name", ALL)
def test_every_reference_is_an_edge_from_its_source_to_its_reader(name):
    """At full depth: each read of a graph list (`from:`, or the item just above) is an edge from the
    node that draws the source's output into a node of the reader, carrying the source's shape; a read
    of anything but the item just above is drawn as a reference."""
    d = drawn((name, None, False))
    assert any(not straight for *_, straight, _ in references(d.ir)), "the spec uses references"
    check_references(d)


def check_references(d: Drawn) -> None:
    items = {i.id: i for i in d.scene.items}
    conns = connections(d.scene)
    # the IR paths a node draws: its layers, or the block whose merge it is
    drawn_paths = {i.id: i.covers or ((i.path,) if i.kind == "merge" else ()) for i in items.values()}
    for src, dst, straight, shape in references(d.ir):
        if src is not None and any(within(i.covers, src) and within(i.covers, dst) for i in items.values()):
            continue  # conv -> norm -> act drawn as one node
        into = [c for c in conns if within(drawn_paths[c.dst], dst) and not within(drawn_paths[c.src], dst)]
        hits = [c for c in into if (c.shape == shape if src is None else within(drawn_paths[c.src], src))]
        assert hits, f"no edge {src or 'input'} -> {dst}"
        assert {c.shape for c in hits} == {shape}, (src, dst)
        if not straight:
            assert "reference" in {c.style for c in hits}, (src, dst)


@cases
def test_svg_dot_and_mermaid_draw_the_same_graph(case):
    check_same_graph(drawn(case))


def check_same_graph(d: Drawn) -> None:
    ET.fromstring(d.svg)
    dot_nodes, dot_edges = parse_dot(d.dot)
    assert len(svg_nodes(d.svg)) == len(dot_nodes) == len(d.scene.items)
    assert len(svg_edges(d.svg)) == len(dot_edges) == len(connections(d.scene))
    edges = Counter(
        (e.get("data-from"), e.get("data-to"), e.get("class").split()[1]) for e in svg_edges(d.svg)
    )
    assert edges == Counter((c.src, c.dst, c.style) for c in connections(d.scene))
    references = sum(c.style == "reference" for c in connections(d.scene))
    assert sum("#3b6fb6" in line for line in d.dot.splitlines() if " -> " in line) == references
    mermaid_edges = re.findall(r"^\s*(n\d+) -[-.]+>\|\"[^\"]*\"\| (n\d+)$", d.mermaid, re.M)
    assert Counter(mermaid_edges) == Counter((c.src, c.dst) for c in connections(d.scene))


@cases
def test_every_layer_and_merge_is_drawn_once(case):
    check_drawn_once(drawn(case))


def check_drawn_once(d: Drawn) -> None:
    depth, collapse = d.depth, d.collapse
    layers = {n.path for n, _ in walk(d.ir) if isinstance(n, LayerNode)}
    covered = Counter(p for i in d.scene.items for p in i.covers)
    for layer in layers:
        parts = layer.split(".")
        times = covered[layer] + sum(covered[".".join(parts[:k])] for k in range(1, len(parts)))
        assert times == 1, f"{layer} drawn {times} times"
    if depth is None and not collapse:
        assert set(covered) == layers


@cases
def test_graph_layout_is_clean(case):
    """Nodes and texts do not overlap; edges are orthogonal and cross no node and no text; boxes hold
    exactly their content; every edge's shape is printed."""
    check_layout(drawn(case))


def check_layout(d: Drawn) -> None:
    lay = d.layout
    things = node_boxes(lay) + text_boxes(lay)
    index = Index(things)
    for box, what in things:
        for other, other_what in index.near(box[1], box[3]):
            if other_what is not what and (other, other_what) != (box, what):
                assert not overlap(box, other), f"{what} overlaps {other_what}"
    for e in lay.edges:
        for p, q in zip(e.points, e.points[1:], strict=False):
            assert p[0] == q[0] or p[1] == q[1], "orthogonal"
            for box, what in index.near(min(p[1], q[1]), max(p[1], q[1])):
                assert not segment_hits(p, q, box), f"edge {e.src}->{e.dst} crosses {what}"
    for g in lay.groups:
        gbox = (g.x, g.y, g.x + g.w, g.y + g.h)
        for n in lay.nodes:
            paths = n.item.covers or ((n.item.path,) if n.item.kind == "merge" else ())
            mine = paths and all(p == g.group.path or p.startswith(g.group.path + ".") for p in paths)
            assert inside(n.extent, gbox) if mine else not overlap(n.extent, gbox), (n.item.id, g.group.path)
    assert {lb.text for lb in lay.labels} == {shape_text(c.shape) for c in connections(d.scene)}
    root = ET.fromstring(d.svg)
    w, h = float(root.get("width")), float(root.get("height"))
    assert all(n.x >= 0 and n.extent[2] <= w and n.y >= 0 and n.extent[3] <= h for n in lay.nodes)
    assert root.find(f"{SVG}title").text == d.name


def test_named_outputs_are_output_nodes():
    d = drawn(("tiny_fpn", None, False))
    outputs = [i for i in d.scene.items if i.kind == "io" and i.title.startswith("output")]
    assert [i.title for i in outputs] == ["output 0", "output 1", "output pool"]
    assert [i.lines for i in outputs] == [["8\u00d78\u00d78"], ["8\u00d74\u00d74"], ["8\u00d72\u00d72"]]
    dot_nodes, dot_edges = parse_dot(d.dot)
    assert (
        sum('"output ' in line for line in d.dot.splitlines() if "label=" in line and "->" not in line) == 3
    )
    assert dot_nodes and dot_edges


def test_random_graph_specs_draw_every_reference_cleanly():
    """The graph fuzzer's specs (references across stages and inside blocks, merges of 2-4 inputs,
    dotted names, named outputs), at every depth, with and without collapsing: every check above."""
    from hypothesis import given

    from .fuzz_graph import graph_spec, quick_settings

    @quick_settings(6)
    @given(graph_spec())
    def check(generated) -> None:
        spec = loads_spec(generated.text)
        for depth in (None, 1):
            for collapse in (False, True):
                d = Drawn(spec, depth, collapse)
                check_same_graph(d)
                check_drawn_once(d)
                check_layout(d)
        check_references(Drawn(spec, None, False))

    check()
