"""A scene as a Mermaid flowchart, which GitHub, GitLab and many editors render inside Markdown with no
tool installed: stages and blocks as subgraphs, the tensor shape on every edge, shortcuts dotted and
red, a graph list's references (`from:`) blue, the same colours as the SVG.

Text is quoted and escaped the way Mermaid reads it: inside `"..."`, `#name;` is an HTML entity, so a
user's `"`, `<`, `>`, `&` and `#` are written `#quot;`, `#lt;`, `#gt;`, `#amp;`, `#35;` and can
neither end the label nor become markup. Edges come after every subgraph: an edge written inside a
subgraph would pull its nodes into it.
"""

from __future__ import annotations

import re

from . import palette
from .scene import Fork, Graph, Group, Item, Part, Residual, Scene, Series, Side, connections, shape_text

_ENTITIES = {"&": "#amp;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "#": "#35;"}

# Mermaid's defaults (maxTextSize, maxEdges): GitHub refuses a diagram above either
MAX_TEXT = 50_000
MAX_EDGES = 500

_SHAPES = {  # item kind -> (open, close) of its Mermaid node shape
    "layer": ('("', '")'),
    "fused": ('("', '")'),
    "repeat": ('[["', '"]]'),
    "opaque": ('[["', '"]]'),
    "merge": ('(("', '"))'),
    "io": ('(["', '"])'),
}

_ARROWS = {"flow": "-->", "skip": "-.->", "projection": "-->", "side": "-.->", "reference": "-->"}


def escape(text: str) -> str:
    """Text for inside a quoted Mermaid label."""
    text = text.replace("\r", " ").replace("\n", " ")
    return "".join(_ENTITIES.get(ch, "\ufffd" if ch < " " else ch) for ch in text)


def _label(item: Item) -> str:
    if item.kind == "merge":
        return escape(item.title)
    return "<br/>".join([f"<b>{escape(item.title)}</b>", *map(escape, item.lines)])


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.groups = 0
        self.styles: list[str] = []

    def out(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def part(self, part: Part, depth: int) -> None:
        if isinstance(part, Item):
            a, b = _SHAPES[part.kind]
            self.out(depth, f"{part.id}{a}{_label(part)}{b}")
        elif isinstance(part, Series):
            for p in part.parts:
                self.part(p, depth)
        elif isinstance(part, Side):
            self.part(part.group, depth)
        elif isinstance(part, Group):
            self.groups += 1
            gid = f"g{self.groups}"
            self.out(depth, f'subgraph {gid}["{escape(part.label)}"]')
            self.part(part.content, depth + 1)
            self.out(depth, "end")
            fill, stroke, dash = palette.GROUP[part.style]
            dashed = f",stroke-dasharray:{dash}" if dash else ""
            self.styles.append(f"style {gid} fill:{fill},stroke:{stroke}{dashed}")
        elif isinstance(part, Graph):
            for p in part.parts:
                self.part(p, depth)
        elif isinstance(part, Fork):
            for branch in part.branches:
                self.part(branch, depth)
            self.part(part.merge, depth)
            self.part(part.after, depth)
        elif isinstance(part, Residual):
            self.part(part.body, depth)
            if part.shortcut is not None:
                self.part(part.shortcut, depth)
            self.part(part.merge, depth)
            self.part(part.after, depth)


def to_mermaid(scene: Scene) -> str:
    """The Mermaid source (`flowchart TB ...`) of a scene."""
    w = _Writer()
    if re.fullmatch(
        r"[A-Za-z0-9_.\-]+", scene.name
    ):  # as spec names are; anything else would need YAML quoting
        w.lines += ["---", f"title: {scene.name}", "---"]
    w.out(0, "flowchart TB")
    for family, (fill, stroke, ink) in palette.NODE.items():
        w.out(1, f"classDef {family} fill:{fill},stroke:{stroke},color:{ink}")
    w.part(scene.root, 1)
    red: list[str] = []
    blue: list[str] = []  # a graph list's references (`from:`)
    for i, c in enumerate(connections(scene)):
        w.out(1, f'{c.src} {_ARROWS[c.style]}|"{shape_text(c.shape)}"| {c.dst}')
        if c.style in ("skip", "projection"):
            red.append(str(i))
        elif c.style == "reference":
            blue.append(str(i))
    for style in w.styles:
        w.out(1, style)
    by_family: dict[str, list[str]] = {}
    for item in scene.items:
        by_family.setdefault(item.family, []).append(item.id)
    for family, ids in by_family.items():
        w.out(1, f"class {','.join(ids)} {family}")
    if red:
        w.out(1, f"linkStyle {','.join(red)} stroke:{palette.EDGE['skip'][0]}")
    if blue:
        w.out(1, f"linkStyle {','.join(blue)} stroke:{palette.EDGE['reference'][0]}")
    return "\n".join(w.lines) + "\n"


def markdown(text: str) -> str:
    """Mermaid source in a fenced block, as Markdown renderers expect it."""
    return f"```mermaid\n{text}```\n"
