"""Rendering an Analysis: a rich table for people, markdown for papers, JSON for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from .analysis import Analysis, Row
from .errors import printable


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M'."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def human_bytes(n: int) -> str:
    for div, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= div:
            return f"{n / div:.1f} {suffix}"
    return f"{n} B"


def shape_text(s: tuple[int, ...]) -> str:
    """(3, 224, 224) -> '3x224x224'."""
    return "x".join(map(str, s))


def _rf(row: Row) -> str:
    if row.receptive_field is None:
        return "global"
    h, w = row.receptive_field
    return str(h) if h == w else f"{h}x{w}"


def _jump(row: Row) -> str:
    h, w = row.jump
    return str(h) if h == w else f"{h}x{w}"


def visible_rows(a: Analysis, depth: int | None) -> list[Row]:
    """Rows down to `depth` levels of nesting (0 = top-level stem layers, stages and head)."""
    return [r for r in a.rows if depth is None or r.depth <= depth]


REPORT_FORMAT = "netspec-report/1"  # bumped on any incompatible change of the JSON below


@dataclass
class ScalePoint:
    """The network's totals at one input size, or why it does not accept that size."""

    size: tuple[int, int]
    params: int | None = None
    macs: int | None = None
    flops: int | None = None
    output_shape: tuple[int, ...] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["output_shape"] = list(self.output_shape) if self.output_shape else None
        return d


def scaling_sizes(natural: tuple[int, ...]) -> list[tuple[int, int]]:
    """5/7, 1 and 10/7 of the natural size (H, W), rounded to multiples of 8: 160, 224, 320 for 224."""
    h, w = natural

    def at(n: int, f: float) -> int:
        return max(8, round(n * f / 8) * 8)

    return [(at(h, f), at(w, f)) if f != 1 else (h, w) for f in (5 / 7, 1, 10 / 7)]


def scaling(spec: Any, sizes: list[tuple[int, int]]) -> list[ScalePoint]:
    """MACs (and params, FLOPs) of the same spec at other input sizes."""
    from .analysis import analyze
    from .errors import SpecError

    points = []
    for size in sizes:
        try:
            a = analyze(spec, input_size=size)
            points.append(ScalePoint(size, a.params, a.macs, a.flops, a.output_shape))
        except SpecError as exc:
            points.append(ScalePoint(size, error=exc.problems[0].message))
    return points


def to_json(a: Analysis, depth: int | None = None, scale: list[ScalePoint] | None = None) -> str:
    data: dict[str, Any] = {"format": REPORT_FORMAT, **a.to_json()}
    if depth is not None:
        data["layers"] = [r.to_json() for r in visible_rows(a, depth)]
    if scale is not None:
        data["scaling"] = [p.to_json() for p in scale]
    return json.dumps(data, indent=2)


def _scale_lines(a: Analysis, scale: list[ScalePoint]) -> list[str]:
    lines = []
    for p in scale:
        size = shape_text(p.size)
        if p.macs is None:
            lines.append(f"{size}: not accepted ({p.error})")
        else:
            rel = f" ({p.macs / a.macs:.2f}x)" if a.macs else ""
            lines.append(
                f"{size}: {human(p.macs)} MACs{rel}, {human(p.flops or 0)} FLOPs, {p.params:,} params"
            )
    return lines


COLUMNS = ["layer", "kind", "output", "params", "MACs", "FLOPs", "memory", "RF", "jump"]


def row_names(rows: list[Row]) -> list[str]:
    """Each row's name inside the container row above it: the last part of its path in a tree; the
    whole dotted name where a graph list places a module under holders (`fpn.inner_blocks.1.0`)."""
    parents: dict[int, str] = {}
    names = []
    for r in rows:
        parent = parents.get(r.depth - 1, "") if r.depth else ""
        if not r.depth:
            names.append(r.path)
        elif parent and r.path.startswith(parent + "."):
            names.append(r.path[len(parent) + 1 :])
        else:
            names.append(r.path.rsplit(".", 1)[-1])
        parents[r.depth] = r.path
    return names


def reads(r: Row) -> str:
    """What a row of a graph list reads when it is not the row above (`from:`): ` <- a, b`."""
    return f" <- {', '.join(r.inputs)}" if r.inputs else ""


def _cells(r: Row, name: str) -> list[str]:
    return ["  " * r.depth + name + reads(r), *row_cells(r)[1:]]


def row_cells(r: Row, name: str | None = None) -> list[str]:
    """A row's figures as every report shows them, under COLUMNS (the layer as `name`, by default the
    last part of its path; `row_names` gives the names inside a graph list's holders), with what it
    reads where that is not the row above."""
    return [
        (name if name is not None else r.path.rsplit(".", 1)[-1]) + reads(r),
        r.kind,
        shape_text(r.output_shape),
        f"{r.params:,}",
        human(r.macs),
        human(r.flops),
        human_bytes(r.activations * 4),
        _rf(r),
        _jump(r),
    ]


def total_cells(a: Analysis) -> list[str]:
    """The totals line under COLUMNS."""
    rf = "global" if a.receptive_field is None else shape_text(a.receptive_field)
    return [
        "total",
        f"{a.layers} layers",
        shape_text(a.output_shape),
        f"{a.params:,}",
        human(a.macs),
        human(a.flops),
        human_bytes(a.activation_bytes),
        rf,
        shape_text(a.jump),
    ]


def to_markdown(a: Analysis, depth: int | None = None, scale: list[ScalePoint] | None = None) -> str:
    lines = [
        f"**{a.name}**: input {shape_text(a.input_shape)}, {a.params:,} params, "
        f"{human(a.macs)} MACs, {human(a.flops)} FLOPs (MACs as fvcore counts them; FLOPs = 2 x MACs "
        f"+ elementwise); peak activation memory {human_bytes(a.peak_activation_bytes)} (inference, "
        "float32, one sample)",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(COLUMNS) - 2)) + "|",
    ]
    rows = visible_rows(a, depth)
    for r, name in zip(rows, row_names(rows), strict=True):
        cells = _cells(r, name)
        cells[0] = (
            "&nbsp;" * 2 * r.depth + f"`{name}`" + (f" <- `{'`, `'.join(r.inputs)}`" if r.inputs else "")
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| " + " | ".join(f"**{c}**" for c in total_cells(a)) + " |")
    if scale:
        lines += ["", "Input-size scaling: " + "; ".join(_scale_lines(a, scale))]
    return "\n".join(lines)


def print_table(a: Analysis, depth: int | None = None, scale: list[ScalePoint] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=Text(f"{printable(a.name)}  (input {shape_text(a.input_shape)})"),  # Text: never markup
        caption="MACs: fvcore convention (multiply-add = 1). FLOPs = 2 x MACs + elementwise. "
        "Memory: float32 activations of one sample. RF: receptive field; jump: effective stride.",
        show_footer=True,
    )
    totals = total_cells(a)
    for i, col in enumerate(COLUMNS):
        table.add_column(col, footer=totals[i], justify="left" if i < 3 else "right")
    rows = visible_rows(a, depth)
    for r, name in zip(rows, row_names(rows), strict=True):
        style = None if r.is_layer else "bold"
        table.add_row(*_cells(r, name), style=style)
    console = Console()
    if not console.is_terminal:  # piped output: do not squeeze the table to 80 columns
        console = Console(width=160)
    console.print(table)
    console.print(
        f"peak activation memory: {human_bytes(a.peak_activation_bytes)} (inference: the most float32 "
        "activations of one sample alive at once; the memory column sums every output)"
    )
    if scale:
        console.print("input-size scaling of the totals:")
        for line in _scale_lines(a, scale):  # error texts quote the spec: shown as text, not markup
            console.print(f"  {printable(line)}", highlight=False, markup=False)
