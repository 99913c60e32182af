"""Training curves as small inline SVG line charts: axes with round-number ticks, a light grid, one
polyline per series, a legend. No plotting library: the HTML report stays one self-contained file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from ..draw.text import SANS

WIDTH, HEIGHT = 460, 280
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 34, 44  # room for tick labels, title and the x label
COLOURS = ("#2563eb", "#dc2626", "#059669", "#d97706")


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]  # (x, y), x increasing


def ticks(lo: float, hi: float, want: int = 5, integer: bool = False) -> list[float]:
    """Round-number ticks covering [lo, hi]: steps of 1, 2 or 5 times a power of ten (at least 1 for
    `integer` data such as epochs)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        lo, hi = lo - (abs(lo) or 1) / 2, hi + (abs(hi) or 1) / 2
    raw = (hi - lo) / max(1, want - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if integer:
        step = max(step, 1)
    first = math.floor(lo / step) * step
    count = math.ceil((hi - first) / step - 1e-9) + 1
    return [first + i * step for i in range(count)]


def _label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.0e}"
    return f"{v:.4g}"


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def line_chart(title: str, xlabel: str, series: list[Series]) -> str:
    """An `<svg>` element (for inline use in HTML) plotting `series` against a shared x axis."""
    drawn = [s for s in series if s.points]
    xs = [x for s in drawn for x, _ in s.points] or [0.0, 1.0]
    ys = [y for s in drawn for _, y in s.points] or [0.0, 1.0]
    xt = ticks(min(xs), max(xs), integer=all(float(x).is_integer() for x in xs))
    yt = ticks(min(ys), max(ys))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return TOP + ph - (y - y0) / (y1 - y0) * ph

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{escape(SANS)}" font-size="11" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold" fill="#1f2933">{escape(title)}</text>',
    ]
    for y in yt:
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{_n(py(y))}" y2="{_n(py(y))}" stroke="#e5e7eb"/>')
        out.append(
            f'<text x="{LEFT - 6}" y="{_n(py(y) + 4)}" text-anchor="end" fill="#52606d">{_label(y)}</text>'
        )
    for x in xt:
        out.append(f'<line x1="{_n(px(x))}" x2="{_n(px(x))}" y1="{TOP}" y2="{TOP + ph}" stroke="#f1f5f9"/>')
        out.append(
            f'<text x="{_n(px(x))}" y="{TOP + ph + 16}" text-anchor="middle" fill="#52606d">'
            f"{_label(x)}</text>"
        )
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#9aa1ab"/>')
    out.append(
        f'<text x="{LEFT + pw / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" fill="#52606d">'
        f"{escape(xlabel)}</text>"
    )
    for i, s in enumerate(drawn):
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(f"{_n(px(x))},{_n(py(y))}" for x, y in s.points)
        out.append(
            f'<polyline class="series" data-label="{escape(s.label)}" points="{points}" fill="none" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        if len(s.points) < 40:  # markers while there are few epochs, as the PNG plots do
            out += [
                f'<circle cx="{_n(px(x))}" cy="{_n(py(y))}" r="2.5" fill="{colour}"/>' for x, y in s.points
            ]
    # the legend: one row above the plot, right-aligned, so it never covers a curve
    lx = WIDTH - RIGHT - sum(30 + 6.5 * len(s.label) for s in drawn)
    for i, s in enumerate(drawn):
        colour = COLOURS[i % len(COLOURS)]
        out.append(
            f'<line x1="{_n(lx)}" x2="{_n(lx + 18)}" y1="14" y2="14" stroke="{colour}" stroke-width="2"/>'
        )
        out.append(f'<text x="{_n(lx + 23)}" y="18" fill="#1f2933">{escape(s.label)}</text>')
        lx += 30 + 6.5 * len(s.label)
    out.append("</svg>")
    return "\n".join(out)
