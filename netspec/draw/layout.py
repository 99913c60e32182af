"""Where everything in a diagram goes, in px: node boxes, group boxes, edges, shape labels. Pure
geometry, no drawing, so it is testable on its own.

A scene is series-parallel, so a recursive layout suffices. Every part becomes a `Frame` whose input
enters at the top and whose output leaves at the bottom on one vertical line, its spine:
- a series stacks its frames on one spine, a shape label in each gap;
- a fork puts its branches side by side, fans the input out on a bus below its top and gathers the
  branch outputs on a bus above the merge node, which sits on the spine;
- a residual keeps its body on the spine and runs the shortcut beside it on the right: a dashed lane
  for an identity, the shortcut's own column for a projection; both enter the merge node from the right;
- a group draws a labelled box around its content, the label clear of the edge that enters it;
- a side head (auxiliary classifier) hangs in a lane to the right of the series it reads from;
- a graph list stacks its parts on one spine like a series; an item that reads the part just above
  it is fed down the spine, every other read (a reference, `from:`) leaves its source's spine in the
  gap below it, runs down a lane of its own right of everything, and rejoins the spine in the gap
  above its reader.
Edges are orthogonal polylines that run in the gaps between frames and beside columns, so none
crosses a node; each goes from the node that produces a tensor to one that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import INPUT
from .scene import TIMES, EdgeStyle, Fork, Graph, Group, Item, Part, Residual, Scene, Series, Side, shape_text
from .text import text_width

Pt = tuple[float, float]

TITLE_SIZE = 11.5  # bold: a node's name
TEXT_SIZE = 10.5  # a node's other lines
LINE = 14.0  # line pitch inside nodes
SHAPE_SIZE = 9.5  # monospaced: shapes on edges
GROUP_SIZE = 11.0  # bold: a box's label
HEADING_SIZE = 16.0

NODE_PAD_X = 12.0
NODE_PAD_Y = 6.0
NODE_MIN_W = 132.0
MERGE_H = 20.0
STACK = 4.0  # offset of each shadow outline behind a repeat node
GAP_Y = 28.0  # between frames stacked in a series: room for a shape label
GAP_X = 24.0  # between columns
LANE_GAP = 14.0  # an identity lane's distance from the body
PAD = 10.0  # inside a group box
HEADER = 22.0  # a group box's label band
JUNCTION = 10.0  # where a fork or shortcut splits off, below the top of its frame
SIDE_ROOM = 14.0  # extra gap where a side head branches off
MARGIN = 16.0
REF_STEP = 8.0  # between the horizontal runs of references that cross one gap of a graph list
LANE_STEP = 10.0  # between the lanes of references


@dataclass
class NodeBox:
    item: Item
    x: float
    y: float
    w: float  # the node itself; a repeat node's shadows lie up to 2 * STACK beyond, right and down
    h: float

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 of everything drawn for the node, shadows included."""
        extra = 2 * STACK if self.item.kind == "repeat" else 0.0
        return self.x, self.y, self.x + self.w + extra, self.y + self.h + extra


@dataclass
class GroupBox:
    group: Group
    x: float
    y: float
    w: float
    h: float
    label_x: float
    label_y: float  # baseline
    label_w: float


@dataclass
class Edge:
    src: str  # node ids
    dst: str
    points: list[Pt]  # from the source node's bottom to the target node's border
    style: EdgeStyle
    fork: Pt | None = None  # a shortcut or side edge: where it leaves the main flow it shares its start with


@dataclass
class Label:
    """A shape on an edge: text starting at x, baseline y."""

    text: str
    x: float
    y: float
    w: float

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return self.x, self.y - 0.8 * SHAPE_SIZE, self.x + self.w, self.y + 0.25 * SHAPE_SIZE


@dataclass
class Leg:
    """Part of an edge inside a frame: from the frame's entry point to a node that reads the input."""

    dst: str
    points: list[Pt]
    style: EdgeStyle = "flow"
    fork: Pt | None = None


@dataclass
class Route:
    """The start of edges not yet drawn: from a node (src), or from the frame's entry (src None)."""

    src: str | None
    points: list[Pt]
    style: EdgeStyle = "flow"
    fork: Pt | None = None


@dataclass
class Frame:
    w: float = 0.0
    h: float = 0.0
    spine: float = 0.0  # x of the entry and the exit
    entry_y: float = 0.0  # where an incoming edge ends: a node's top or a junction
    legs: list[Leg] = field(default_factory=list)
    exit: Route | None = None  # from the node that outputs to the exit point; None: passes through
    through: list[Pt] = field(default_factory=list)  # a pass-through: entry point to exit point
    out_shape: tuple[int, ...] = ()
    nodes: list[NodeBox] = field(default_factory=list)
    groups: list[GroupBox] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    dots: list[Pt] = field(default_factory=list)

    def shift(self, dx: float, dy: float) -> Frame:
        def mv(points: list[Pt]) -> list[Pt]:
            return [(x + dx, y + dy) for x, y in points]

        def mv_pt(p: Pt | None) -> Pt | None:
            return None if p is None else (p[0] + dx, p[1] + dy)

        self.spine += dx
        self.entry_y += dy
        for leg in self.legs:
            leg.points, leg.fork = mv(leg.points), mv_pt(leg.fork)
        if self.exit is not None:
            self.exit.points, self.exit.fork = mv(self.exit.points), mv_pt(self.exit.fork)
        self.through = mv(self.through)
        for n in self.nodes:
            n.x, n.y = n.x + dx, n.y + dy
        for g in self.groups:
            g.x, g.y, g.label_x, g.label_y = g.x + dx, g.y + dy, g.label_x + dx, g.label_y + dy
        for e in self.edges:
            e.points, e.fork = mv(e.points), mv_pt(e.fork)
        for lb in self.labels:
            lb.x, lb.y = lb.x + dx, lb.y + dy
        self.dots = mv(self.dots)
        return self

    def take(self, other: Frame) -> None:
        """Adopt the drawables of `other` (already shifted into place)."""
        self.nodes += other.nodes
        self.groups += other.groups
        self.edges += other.edges
        self.labels += other.labels
        self.dots += other.dots

    def entry(self) -> Pt:
        return (self.spine, self.entry_y)

    def bounds(self) -> tuple[float, float, float, float]:
        xs: list[float] = [self.spine]
        ys: list[float] = [0.0]
        for n in self.nodes:
            x0, y0, x1, y1 = n.extent
            xs += [x0, x1]
            ys += [y0, y1]
        for g in self.groups:
            xs += [g.x, g.x + g.w]
            ys += [g.y, g.y + g.h]
        for lb in self.labels:
            x0, y0, x1, y1 = lb.extent
            xs += [x0, x1]
            ys += [y0, y1]
        for pts in [e.points for e in self.edges] + [leg.points for leg in self.legs] + [self.through]:
            xs += [p[0] for p in pts]
            ys += [p[1] for p in pts]
        return min(xs), min(ys), max(xs), max(ys)

    def fit(self) -> Frame:
        """Move the content so its left edge is at x = 0, and set the width and height."""
        x0, _y0, x1, y1 = self.bounds()
        self.shift(-x0, 0)
        self.w, self.h = max(self.w, x1 - x0), max(self.h, y1)
        return self


def _simplify(points: list[Pt]) -> list[Pt]:
    """Drop repeated points and the middle one of three on a line. Coordinates are snapped to a
    1e-6 grid first: two ends of one vertical run, reached by different sums, must be equal."""
    out: list[Pt] = []
    for x, y in points:
        p = (round(x, 6), round(y, 6))
        if out and abs(out[-1][0] - p[0]) < 1e-6 and abs(out[-1][1] - p[1]) < 1e-6:
            continue
        if len(out) >= 2:
            (ax, ay), (bx, by) = out[-2], out[-1]
            if (abs(ax - bx) < 1e-6 and abs(bx - p[0]) < 1e-6) or (
                abs(ay - by) < 1e-6 and abs(by - p[1]) < 1e-6
            ):
                out[-1] = p
                continue
        out.append(p)
    return out


def _emit(out: Frame, route: Route, leg: Leg) -> None:
    points = _simplify(route.points + leg.points)
    style, fork = (route.style, route.fork) if route.style != "flow" else (leg.style, leg.fork)
    if route.src is None:
        out.legs.append(Leg(leg.dst, points, style, fork))
    else:
        out.edges.append(Edge(route.src, leg.dst, points, style, fork))


def _connect(out: Frame, route: Route, frame: Frame) -> Route:
    """Draw the edges from `route` into `frame` (already in place in `out`); the route leaving it."""
    for leg in frame.legs:
        _emit(out, route, leg)
    if frame.exit is None:
        return Route(route.src, [*route.points, frame.entry(), *frame.through], route.style, route.fork)
    return Route(frame.exit.src, list(frame.exit.points))


def _label(out: Frame, shape: tuple[int, ...], x: float, y_mid: float) -> None:
    text = shape_text(shape)
    out.labels.append(Label(text, x + 5, y_mid + 0.3 * SHAPE_SIZE, text_width(text, SHAPE_SIZE, mono=True)))


# -- leaves ------------------------------------------------------------------------------------------


def item_size(item: Item) -> tuple[float, float]:
    """The natural size of a node's box (without a repeat node's shadows)."""
    if item.kind == "merge":
        return text_width(item.title, TEXT_SIZE, bold=True) + 20, MERGE_H
    widths = [text_width(item.title, TITLE_SIZE, bold=True)]
    widths += [text_width(line, TEXT_SIZE) for line in item.lines]
    pad = 2 * NODE_PAD_X + (8 if item.kind == "io" else 0)  # pills round off their ends
    h = 2 * NODE_PAD_Y + LINE * (1 + len(item.lines))
    return (max(widths) + pad if item.kind == "io" else max(NODE_MIN_W, max(widths) + pad)), h


def _item(item: Item, width: float) -> Frame:
    w, h = item_size(item)
    w = max(w, width) if item.kind not in ("merge", "io") else w
    extra = 2 * STACK if item.kind == "repeat" else 0.0
    f = Frame(w + extra, h + extra, w / 2, 0.0, out_shape=item.out_shape)
    f.nodes.append(NodeBox(item, 0.0, 0.0, w, h))
    f.legs.append(Leg(item.id, [(w / 2, 0.0)]))
    f.exit = Route(item.id, [(w / 2, h + extra)])
    return f


# -- containers --------------------------------------------------------------------------------------


def _layout(part: Part, width: float = 0.0) -> Frame:
    if isinstance(part, Item):
        return _item(part, width)
    if isinstance(part, Series):
        return _series(part)
    if isinstance(part, Group):
        return _group(part)
    if isinstance(part, Fork):
        return _fork(part)
    if isinstance(part, Residual):
        return _residual(part)
    if isinstance(part, Graph):
        return _graph(part)
    raise TypeError(type(part))  # pragma: no cover - a Side is laid out by its series


def _series(s: Series) -> Frame:
    sized = [item_size(p)[0] for p in s.parts if isinstance(p, Item) and p.kind not in ("merge", "io")]
    width = max(sized, default=0.0)  # the nodes of one column share a width: a tidy column
    out = Frame(out_shape=s.out_shape)
    main = [p for p in s.parts if not isinstance(p, Side)]
    if not main:  # nothing drawn: the input passes straight through a column wide enough for its shape
        out.spine = GAP_X / 2
        out.w = out.spine + 5 + text_width(shape_text(s.in_shape), SHAPE_SIZE, mono=True) + GAP_X / 2
        return out
    frames = {id(p): _layout(p, width) for p in main}
    spine = max(f.spine for f in frames.values())
    route = Route(None, [])
    sides: list[tuple[Side, float, Route]] = []  # a side head, the y it branches at, the route it reads
    waiting: list[Side] = []
    bottom: float | None = None  # of the last frame placed
    shape = s.in_shape
    for part in s.parts:
        if isinstance(part, Side):
            waiting.append(part)
            continue
        f = frames[id(part)]
        if bottom is None:
            top = SIDE_ROOM + 4 if waiting else 0.0
            dot_y = 4.0
        else:
            top = bottom + GAP_Y + (SIDE_ROOM if waiting else 0.0)
            dot_y = bottom + 8
            _label(out, shape, spine, top - GAP_Y / 2)
        if not route.points:
            out.entry_y = 0.0 if waiting else top + f.entry_y
            route.points = [(spine, out.entry_y)]
        for side in waiting:
            sides.append(
                (side, dot_y, Route(route.src, [*route.points, (spine, dot_y)], "side", (spine, dot_y)))
            )
            out.dots.append((spine, dot_y))
        waiting = []
        f.shift(spine - f.spine, top)
        out.take(f)
        route = _connect(out, route, f)
        bottom = top + f.h
        shape = f.out_shape
    assert bottom is not None
    for side in waiting:  # side heads after the last frame
        fork = (spine, bottom + 8)
        sides.append((side, bottom + 8, Route(route.src, [*route.points, fork], "side", fork)))
        out.dots.append((spine, bottom + 8))
    if waiting:
        bottom += SIDE_ROOM
    out.spine = spine
    if route.src is None:
        out.through = [*route.points[1:], (spine, bottom)]
    else:
        out.exit = route
    out.h = bottom
    out.fit()
    if sides:
        _place_sides(out, sides)
    return out


def _place_sides(out: Frame, sides: list[tuple[Side, float, Route]]) -> None:
    """Side heads stack in one lane right of everything on the main column; an edge reaches each from
    its branch point through the gap below it, or down the channel beside the lane when the head must
    start lower because an earlier one is still there."""
    _x0, _y0, right, _y1 = out.bounds()
    lane = right + 1.5 * GAP_X
    channel = right + 0.75 * GAP_X
    free_from = 0.0  # the lane is taken above this y
    for side, dot_y, route in sides:
        f = _group(side.group)
        top = max(dot_y + SIDE_ROOM, free_from + GAP_Y)
        f.shift(lane, top)
        sx = f.spine
        if top == dot_y + SIDE_ROOM:
            route.points += [(sx, dot_y)]
        else:
            route.points += [(channel, dot_y), (channel, top - GAP_Y / 2), (sx, top - GAP_Y / 2)]
        out.take(f)
        _connect(out, route, f)  # the head's output leaves the diagram: nothing reads it
        free_from = top + f.h
        out.h = max(out.h, free_from)
    out.w = max(out.w, out.bounds()[2])


def _group(g: Group) -> Frame:
    c = _layout(g.content)
    out = Frame(out_shape=c.out_shape)
    c.shift(PAD, HEADER)
    out.take(c)
    out.spine, out.entry_y, out.legs, out.exit, out.through = c.spine, c.entry_y, c.legs, c.exit, c.through
    w = c.w + 2 * PAD
    label_w = text_width(g.label, GROUP_SIZE, bold=True)
    if PAD + label_w <= c.spine - 8:  # top left, clear of the edge that enters at the spine
        label_x = PAD
    else:
        label_x = c.spine + 8
        w = max(w, label_x + label_w + PAD)
    h = HEADER + c.h + PAD
    out.w, out.h = w, h
    out.groups.append(GroupBox(g, 0.0, 0.0, w, h, label_x, HEADER - 7, label_w))
    return out


def _merge_into(out: Frame, merge: Item, x: float, top: float) -> tuple[Frame, Pt]:
    """Place a merge node centred on x at `top`; the point where a shortcut enters it, from the right."""
    m = _item(merge, 0.0)
    m.shift(x - m.spine, top)
    out.take(m)
    box = m.nodes[0]
    return m, (box.x + box.w, box.y + box.h / 2)


def _after(out: Frame, merge: Frame, after: Series, x: float) -> None:
    """The layers after a merge, below it on the spine; the frame's exit."""
    route = Route(merge.exit.src, list(merge.exit.points)) if merge.exit else Route(None, [])
    if after.parts:
        a = _series(after)
        top = merge.entry_y + MERGE_H + GAP_Y
        _label(out, merge.out_shape, x, top - GAP_Y / 2)
        a.shift(x - a.spine, top)
        out.take(a)
        route = _connect(out, route, a)
    out.exit = route
    out.out_shape = after.out_shape


def _residual(r: Residual) -> Frame:
    out = Frame()
    body = _series(r.body)
    bx = body.spine
    top = JUNCTION + 14
    body.shift(0, top)
    out.take(body)
    entry = Route(None, [(bx, 0.0), (bx, JUNCTION)])
    body_exit = _connect(out, entry, body)
    body_bottom = top + body.h
    bottom = body_bottom
    # clear of the body and of the shape printed under it
    beside = max(body.w, bx + 5 + text_width(shape_text(body.out_shape), SHAPE_SIZE, mono=True))
    if r.shortcut is None:
        lane = beside + LANE_GAP
        sc_exit = Route(None, [(bx, 0.0), (bx, JUNCTION), (lane, JUNCTION)], "skip", (bx, JUNCTION))
        _label(out, r.in_shape, lane, top + body.h / 2)
        sc_x = lane
    else:
        sc = _group(r.shortcut)
        sc.shift(beside + GAP_X, top)
        out.take(sc)
        sc_x = sc.spine
        into = Route(None, [(bx, 0.0), (bx, JUNCTION), (sc_x, JUNCTION)], "projection", (bx, JUNCTION))
        sc_exit = _connect(out, into, sc)
        sc_exit.style = "projection"
        bottom = max(bottom, top + sc.h)
        _label(out, sc.out_shape, sc_x, top + sc.h + 12)
    merge_top = bottom + GAP_Y
    merge, side_in = _merge_into(out, r.merge, bx, merge_top)
    _label(out, body.out_shape, bx, body_bottom + GAP_Y / 2)
    for leg in merge.legs:
        _emit(out, body_exit, leg)
    _emit(out, sc_exit, Leg(r.merge.id, [(sc_x, side_in[1]), side_in], "flow"))
    out.dots.append((bx, JUNCTION))
    out.spine, out.entry_y = bx, 0.0
    _after(out, merge, r.after, bx)
    return out.fit()


def _fork(fk: Fork) -> Frame:
    out = Frame()
    frames = [_layout(b) for b in fk.branches]
    top = JUNCTION + 16
    x = 0.0
    spines: list[float] = []
    for f in frames:
        f.shift(x, top)
        spines.append(f.spine)
        x += f.w + GAP_X
        out.take(f)
    cx = (spines[0] + spines[-1]) / 2
    bus_in = max(top + f.h for f in frames) + 26
    merge, _ = _merge_into(out, fk.merge, cx, bus_in + 10)
    for f, s in zip(frames, spines, strict=True):
        fan_out = Route(None, [(cx, 0.0), (cx, JUNCTION), (s, JUNCTION)])
        leaving = _connect(out, fan_out, f)
        _label(out, f.out_shape, s, top + f.h + 12)
        for leg in merge.legs:
            _emit(out, leaving, Leg(leg.dst, [(s, bus_in), (cx, bus_in), *leg.points]))
    if len(frames) > 1:
        out.dots.append((cx, JUNCTION))
    out.spine, out.entry_y = cx, 0.0
    _after(out, merge, fk.after, cx)
    return out.fit()


@dataclass
class _Reference:
    src: int  # the part read (-1: the graph's input)
    dst: int  # the part reading it
    leave: float = 0.0  # y of the run from the source's spine to the lane
    join: float = 0.0  # y of the run from the lane back to the spine, above the reader
    lane: int = 0


def _graph(g: Graph) -> Frame:
    """A graph list: its parts on one spine in list order, as a series; reads of the part just above
    go straight down, every other read (a reference) runs in a lane right of everything (see above)."""
    sized = [item_size(p)[0] for p in g.parts if isinstance(p, Item) and p.kind not in ("merge", "io")]
    width = max(sized, default=0.0)
    frames = [_layout(p, width) for p in g.parts]
    out = Frame(out_shape=g.out_shape)
    if not frames:  # pragma: no cover - lowering refuses an empty list that reads by name
        return out
    spine = max(f.spine for f in frames)
    index = {name: k for k, name in enumerate(g.names)}
    refs = [
        _Reference(index[r] if r != INPUT else -1, j)
        for j, reads in enumerate(g.reads)
        for r in reads
        if (index[r] if r != INPUT else -1) != j - 1
    ]
    read = {index[r] if r != INPUT else -1 for reads in g.reads for r in reads}
    # the gap above part k holds the runs leaving part k - 1 (the input for k = 0), then those joining k
    leaving = [[r for r in refs if r.src == k - 1] for k in range(len(frames))]
    joining = [[r for r in refs if r.dst == k] for k in range(len(frames))]
    routes: dict[int, Route] = {-1: Route(None, [(spine, 0.0)])}
    bottom = 0.0
    for k, f in enumerate(frames):
        y = bottom + (GAP_Y / 2 + 12 if k else 4.0)  # below the shape printed under the part above
        if k and (k - 1) in read:
            _label(out, frames[k - 1].out_shape, spine, bottom + GAP_Y / 2)
        for r in leaving[k]:
            r.leave, y = y, y + REF_STEP
        for r in joining[k]:
            r.join, y = y + 2, y + REF_STEP
        runs = bool(leaving[k] or joining[k])
        top = (y + 8 if runs else bottom + GAP_Y) if k else (y + 8 if runs else 0.0)
        f.shift(spine - f.spine, top)
        out.take(f)
        source = routes[k - 1]
        passed = None  # where the straight input leaves a part that draws nothing (an empty list)
        for name in g.reads[k]:
            if (index[name] if name != INPUT else -1) == k - 1:
                passed = _connect(out, Route(source.src, list(source.points), source.style, source.fork), f)
        if f.exit is not None:
            routes[k] = Route(f.exit.src, list(f.exit.points))
        else:
            routes[k] = passed or Route(None, [(spine, top + f.h)])
        bottom = top + f.h
    # lanes right of everything drawn, one per reference, shared where their runs do not overlap
    right = out.bounds()[2] if out.nodes or out.groups else spine
    ends: list[float] = []
    for r in sorted(refs, key=lambda r: r.leave):
        r.lane = next((n for n, end in enumerate(ends) if end < r.leave - 1), len(ends))
        if r.lane == len(ends):
            ends.append(0.0)
        ends[r.lane] = r.join
    for r in refs:
        x = right + GAP_X / 2 + r.lane * LANE_STEP
        source = routes[r.src]
        path = [*source.points, (spine, r.leave), (x, r.leave), (x, r.join), (spine, r.join)]
        _connect(out, Route(source.src, path, "reference", (spine, r.leave)), frames[r.dst])
        out.dots.append((spine, r.leave))
    out.spine, out.entry_y = spine, 0.0
    out.exit = routes[len(frames) - 1]
    out.h = bottom
    return out.fit()


# -- the whole diagram -------------------------------------------------------------------------------


@dataclass
class Layout:
    width: float
    height: float
    title: str
    notes: list[str]  # lines under the title: the spec's description, wrapped, and how to read edges
    nodes: list[NodeBox]
    groups: list[GroupBox]
    edges: list[Edge]
    labels: list[Label]
    dots: list[Pt]


def layout(scene: Scene) -> Layout:
    """The geometry of a scene (see `scene.build_scene`)."""
    root = _series(scene.root)
    root.legs.clear()  # nothing feeds the input node
    legend = f"edges: tensor shape C{TIMES}H{TIMES}W"
    text_w = max(
        root.w, text_width(scene.name, HEADING_SIZE, bold=True), text_width(legend, TEXT_SIZE), 320.0
    )
    notes = [*wrap(" ".join(scene.description.split()), text_w, TEXT_SIZE), legend]
    head = MARGIN + HEADING_SIZE + 8 + LINE * len(notes) + 6
    width = max(root.w, *(text_width(n, TEXT_SIZE) for n in notes)) + 2 * MARGIN
    root.shift((width - root.w) / 2, head)  # the network centred under its title
    return Layout(
        width, head + root.h + MARGIN, scene.name, notes,
        root.nodes, root.groups, root.edges, root.labels, root.dots,
    )  # fmt: skip


def wrap(text: str, width: float, size: float) -> list[str]:
    """Words in lines no wider than `width` (a longer word gets a line of its own)."""
    lines: list[str] = []
    for word in text.split(" ") if text else []:
        if lines and text_width(f"{lines[-1]} {word}", size) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines
