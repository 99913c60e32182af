"""A laid-out diagram as SVG text: standard SVG 1.1 with presentation attributes only (no CSS, no
scripts, no external references), so browsers, GitHub, Inkscape and librsvg all show the same picture.
It scales: a viewBox with the natural size as width/height.

Every node is a `<g class="node" id="nK" data-covers="PATH ...">` holding its shape(s) and text, with a
`<title>` tooltip; every edge a `<path class="edge STYLE" data-from="nI" data-to="nJ">`; every box a
`<g class="group" data-path="PATH">`; every user text is escaped.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from . import palette
from .layout import (
    GROUP_SIZE,
    HEADING_SIZE,
    LINE,
    MARGIN,
    NODE_PAD_Y,
    SHAPE_SIZE,
    STACK,
    TEXT_SIZE,
    TITLE_SIZE,
    Layout,
    NodeBox,
)
from .scene import shape_text
from .text import MONO, SANS

NS = "http://www.w3.org/2000/svg"

# characters XML 1.0 does not allow, even escaped
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _t(text: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", text))


def _a(text: str) -> str:
    return quoteattr(_NOT_XML.sub("\ufffd", text))


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _node(box: NodeBox) -> list[str]:
    item = box.item
    fill, stroke, ink = palette.NODE[item.family]
    tip = "\n".join(
        filter(None, [item.path or item.title, *item.lines, f"out: {shape_text(item.out_shape)}"])
    )
    out = [f'<g class="node {item.kind}" id="{item.id}" data-covers={_a(" ".join(item.covers))}>',
           f"<title>{_t(tip)}</title>"]  # fmt: skip
    x, y, w, h = box.x, box.y, box.w, box.h
    if item.kind == "repeat":  # a stack of boxes: the block, repeated
        for k in (2, 1):
            out.append(
                f'<rect x="{_n(x + k * STACK)}" y="{_n(y + k * STACK)}" width="{_n(w)}" height="{_n(h)}" '
                f'rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1"/>'
            )
    rx = h / 2 if item.kind in ("merge", "io") else 6
    out.append(
        f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="{_n(rx)}" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="{1.4 if item.kind == "opaque" else 1}"/>'
    )
    cx = x + w / 2
    if item.kind == "merge":
        out.append(
            f'<text x="{_n(cx)}" y="{_n(y + h / 2 + 0.35 * TEXT_SIZE)}" text-anchor="middle" '
            f'font-size="{TEXT_SIZE}" font-weight="bold" fill="{ink}">{_t(item.title)}</text>'
        )
    else:
        base = y + NODE_PAD_Y + LINE * 0.75
        out.append(
            f'<text x="{_n(cx)}" y="{_n(base)}" text-anchor="middle" font-size="{TITLE_SIZE}" '
            f'font-weight="bold" fill="{ink}">{_t(item.title)}</text>'
        )
        for i, line in enumerate(item.lines, 1):
            out.append(
                f'<text x="{_n(cx)}" y="{_n(base + i * LINE)}" text-anchor="middle" font-size="{TEXT_SIZE}" '
                f'fill="{ink}">{_t(line)}</text>'
            )
    out.append("</g>")
    return out


def to_svg(lay: Layout, description: str = "") -> str:
    """The SVG document of a layout."""
    w, h = _n(lay.width), _n(lay.height)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="{NS}" version="1.1" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'font-family={_a(SANS)} role="img" aria-labelledby="ns-title">',
        f'<title id="ns-title">{_t(lay.title)}</title>',
    ]
    if description:
        out.append(f"<desc>{_t(description)}</desc>")
    out.append("<defs>")
    for style, (stroke, _dash) in palette.EDGE.items():
        out.append(
            f'<marker id="ns-arrow-{style}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,1 L9,5 L0,9 z" fill="{stroke}"/></marker>'
        )
    out.append("</defs>")
    out.append(f'<rect width="{w}" height="{h}" fill="#ffffff"/>')
    out.append(
        f'<text x="{_n(MARGIN)}" y="{_n(MARGIN + HEADING_SIZE * 0.8)}" font-size="{HEADING_SIZE}" '
        f'font-weight="bold" fill="{palette.TEXT}">{_t(lay.title)}</text>'
    )
    for i, note in enumerate(lay.notes):
        out.append(
            f'<text x="{_n(MARGIN)}" y="{_n(MARGIN + HEADING_SIZE + 8 + TEXT_SIZE * 0.8 + i * LINE)}" '
            f'font-size="{TEXT_SIZE}" fill="{palette.MUTED}">{_t(note)}</text>'
        )
    # outer boxes first, so inner ones lie on top
    for g in sorted(lay.groups, key=lambda g: -g.w * g.h):
        fill, stroke, dash = palette.GROUP[g.group.style]
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<g class="group {g.group.style}" data-path={_a(g.group.path)}>')
        out.append(
            f'<rect x="{_n(g.x)}" y="{_n(g.y)}" width="{_n(g.w)}" height="{_n(g.h)}" rx="8" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1"{dashed}/>'
        )
        out.append(
            f'<text x="{_n(g.label_x)}" y="{_n(g.label_y)}" font-size="{GROUP_SIZE}" font-weight="bold" '
            f'fill="{palette.MUTED}">{_t(g.group.label)}</text>'
        )
        out.append("</g>")
    # shortcuts and side edges under the main flow, which they share their first stretch with
    order = {"side": 0, "skip": 1, "projection": 2, "reference": 3, "flow": 4}
    out.append('<g fill="none" stroke-width="1.3" stroke-linejoin="round">')
    for e in sorted(lay.edges, key=lambda e: order[e.style]):
        stroke, dash = palette.EDGE[e.style]
        points = e.points[e.points.index(e.fork) :] if e.fork in e.points else e.points
        d = "M" + " L".join(f"{_n(x)},{_n(y)}" for x, y in points)
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<path class="edge {e.style}" data-from="{e.src}" data-to="{e.dst}" d="{d}" stroke="{stroke}"'
            f'{dashed} marker-end="url(#ns-arrow-{e.style})"/>'
        )
    out.append("</g>")
    for x, y in lay.dots:
        out.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2.6" fill="{palette.EDGE["flow"][0]}"/>')
    for box in lay.nodes:
        out += _node(box)
    out.append(f'<g font-family={_a(MONO)} font-size="{SHAPE_SIZE}" fill="{palette.LABEL}">')
    for lb in lay.labels:
        out.append(f'<text class="shape" x="{_n(lb.x)}" y="{_n(lb.y)}">{_t(lb.text)}</text>')
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
