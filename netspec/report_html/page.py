"""The HTML report: one self-contained file (inline CSS and SVG, no script, no external reference)
that opens anywhere without a network: header with the totals, the diagram, the per-layer table with
collapsible stages and blocks (`<details>`), scaling with input size, and a run's curves and metrics.

Every text that comes from a spec or a run (names, descriptions, paths, recipe values) goes through
`_t`, which escapes HTML's special characters and replaces characters HTML does not allow.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

import yaml

from .._version import __version__
from ..analysis import Analysis, Row
from ..report import (
    COLUMNS,
    ScalePoint,
    human,
    human_bytes,
    row_cells,
    row_names,
    shape_text,
    total_cells,
    visible_rows,
)
from ..run_record import RunRecord
from .chart import Series, line_chart

# C0/C1 controls (tab, newline and carriage return aside), surrogates and non-characters: HTML's parser
# flags them, so they are shown as U+FFFD
_NOT_HTML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")

CSS = """
:root { --ink: #1f2933; --muted: #52606d; --line: #e5e7eb; --accent: #2563eb; }
body { font: 14px/1.45 'Helvetica Neue', Helvetica, Arial, 'Liberation Sans', sans-serif; color: var(--ink);
  margin: 0 auto; padding: 24px; max-width: 1180px; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { margin: 32px 0 10px; font-size: 19px;
  border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.description { color: var(--muted); margin: 0 0 14px; }
.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 8px; margin: 0; }
.totals div { background: #f5f7fb; border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
.totals dt { color: var(--muted); font-size: 12px; }
.totals dd { margin: 0; font-size: 16px; font-weight: 600; }
.note { color: var(--muted); font-size: 12px; }
.diagram { overflow: auto; max-height: 900px; border: 1px solid var(--line); border-radius: 6px; }
.diagram svg { display: block; margin: 0 auto; }
.layers { font-size: 13px; border: 1px solid var(--line); border-radius: 6px; }
.row { display: grid; grid-template-columns: minmax(220px, 2.2fr) 1.2fr 1.1fr 1fr .8fr .8fr .9fr .7fr .6fr;
  gap: 8px; padding: 3px 10px; border-top: 1px solid #f1f3f5; }
.row span:nth-child(n+4) { text-align: right; font-variant-numeric: tabular-nums; }
.row.head { font-weight: 600; background: #f5f7fb; border-top: none; }
.row.total { font-weight: 600; background: #f5f7fb; }
.name { padding-left: calc(var(--depth, 0) * 16px); overflow-wrap: anywhere; }
summary.row { cursor: pointer; list-style: none; font-weight: 600; background: #fbfcfe; }
summary.row::-webkit-details-marker { display: none; }
summary .name::before { content: "\\25B8\\00A0"; color: var(--muted); }
details[open] > summary .name::before { content: "\\25BE\\00A0"; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; }
th:first-child, td:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
pre { background: #f5f7fb; padding: 10px; border-radius: 6px; overflow: auto; font-size: 12px; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"""


def _t(text: Any) -> str:
    """User text as HTML text or attribute value."""
    return escape(_NOT_HTML.sub("\ufffd", str(text)), quote=True)


def _header(a: Analysis, description: str) -> list[str]:
    rf = "global" if a.receptive_field is None else shape_text(a.receptive_field)
    totals = [
        ("input", shape_text(a.input_shape)),
        ("output", shape_text(a.output_shape)),
        ("parameters", f"{a.params:,}"),
        ("MACs", human(a.macs)),
        ("FLOPs", human(a.flops)),
        ("activation memory", human_bytes(a.activation_bytes)),
        ("peak activation memory", human_bytes(a.peak_activation_bytes)),
        ("parameter memory", human_bytes(a.param_bytes)),
        ("receptive field", rf),
        ("layers", str(a.layers)),
    ]
    out = ["<header>", f"<h1>{_t(a.name)}</h1>"]
    if description:
        out.append(f'<p class="description">{_t(description)}</p>')
    out.append('<dl class="totals">')
    out += [f'<div data-total="{_t(k)}"><dt>{_t(k)}</dt><dd>{_t(v)}</dd></div>' for k, v in totals]
    out.append("</dl>")
    out.append(
        '<p class="note">MACs as fvcore counts them (one multiply-add = 1); FLOPs = 2 x MACs + elementwise '
        "work; memory: float32 activations of one sample; receptive field: theoretical, in input pixels.</p>"
    )
    out.append("</header>")
    return out


def _diagram(svg: str) -> list[str]:
    body = svg.split("?>", 1)[1] if svg.startswith("<?xml") else svg  # inline: no XML declaration
    return [
        '<section id="diagram">',
        "<h2>Diagram</h2>",
        f'<div class="diagram">{body.strip()}</div>',
        "</section>",
    ]


def _cells(r: Row, name: str) -> str:
    cells = row_cells(r, name)
    name = f'<span class="name" style="--depth: {r.depth}" title="{_t(r.path)}">{_t(cells[0])}</span>'
    return name + "".join(f"<span>{_t(c)}</span>" for c in cells[1:])


def _layers(a: Analysis, depth: int | None) -> list[str]:
    """The per-layer rows, each container a `<details>` holding its rows (open at the top level)."""
    rows = visible_rows(a, depth)
    out = ['<section id="layers">', "<h2>Layers</h2>", '<div class="layers" role="table">']
    out.append('<div class="row head" role="row">' + "".join(f"<span>{c}</span>" for c in COLUMNS) + "</div>")
    open_depths: list[int] = []  # depths of the <details> still open around the next row
    names = row_names(rows)
    for i, r in enumerate(rows):
        while open_depths and open_depths[-1] >= r.depth:
            out.append("</details>")
            open_depths.pop()
        has_children = i + 1 < len(rows) and rows[i + 1].depth > r.depth
        attrs = f'data-path="{_t(r.path)}" data-depth="{r.depth}"'
        if has_children:
            is_open = " open" if r.depth == 0 else ""
            out.append(f'<details class="group"{is_open}><summary class="row" role="row" {attrs}>')
            out.append(_cells(r, names[i]) + "</summary>")
            open_depths.append(r.depth)
        else:
            kind = "layer" if r.is_layer else "container"
            out.append(f'<div class="row {kind}" role="row" {attrs}>{_cells(r, names[i])}</div>')
    out += ["</details>"] * len(open_depths)
    totals = total_cells(a)
    out.append(
        '<div class="row total" role="row">' + "".join(f"<span>{_t(c)}</span>" for c in totals) + "</div>"
    )
    out += ["</div>", "</section>"]
    return out


def _scaling(a: Analysis, scale: list[ScalePoint]) -> list[str]:
    out = ['<section id="scaling">', "<h2>Scaling with input size</h2>", "<table>"]
    heads = ("input", "params", "MACs", "vs. this input", "FLOPs", "output")
    out.append("<tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>")
    for p in scale:
        size = shape_text(p.size)
        if p.macs is None:
            out.append(
                f'<tr class="refused"><td>{size}</td><td colspan="5">not accepted: {_t(p.error)}</td></tr>'
            )
            continue
        rel = f"{p.macs / a.macs:.2f}x" if a.macs else "-"
        shape = shape_text(p.output_shape) if p.output_shape else "-"
        out.append(
            f"<tr><td>{size}</td><td>{p.params or 0:,}</td><td>{human(p.macs)}</td><td>{rel}</td>"
            f"<td>{human(p.flops or 0)}</td><td>{shape}</td></tr>"
        )
    out += ["</table>", "</section>"]
    return out


CURVES = (  # chart title, x label, (metrics key, legend)...
    ("loss", "epoch", (("train_loss", "train"), ("val_loss", "val"), ("ema_val_loss", "EMA val"))),
    (
        "accuracy",
        "epoch",
        (("val_top1", "val top-1"), ("val_top5", "val top-5"), ("ema_val_top1", "EMA top-1")),
    ),
    ("learning rate (end of epoch)", "epoch", (("lr", "lr"),)),
    ("throughput (images/s)", "epoch", (("images_per_s", "train"),)),
)

FINAL = (  # metrics key, label
    ("epoch", "epoch"),
    ("train_loss", "train loss"),
    ("val_loss", "val loss"),
    ("val_top1", "val top-1"),
    ("val_top5", "val top-5"),
    ("ema_val_top1", "EMA val top-1"),
    ("images_per_s", "images/s"),
)


def metric_text(key: str, value: Any) -> str:
    """A metric as people read it: accuracies in percent, losses to 4 digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if "top" in key:
        return f"{value:.2%}"
    if isinstance(value, int):
        return str(value)
    return f"{value:,.0f}" if key == "images_per_s" else f"{value:.4g}"


def _training(run: RunRecord) -> list[str]:
    out = [
        '<section id="training">',
        "<h2>Training</h2>",
        f'<p class="note">run directory: {_t(run.path)}</p>',
    ]
    if not run.history:
        out.append("<p>No epoch has finished yet: no metrics.</p>")
    charts = []
    for title, xlabel, keys in CURVES:
        series = [Series(label, run.series(key)) for key, label in keys if run.series(key)]
        if series:
            charts.append(line_chart(title, xlabel, series))
    if charts:
        out += ['<div class="charts">', *charts, "</div>"]
    final, best = run.final, run.best
    if final is not None:
        out += ["<h3>Final metrics</h3>", '<table class="final">']
        for key, label in FINAL:
            if key in final and final[key] is not None:
                value = _t(metric_text(key, final[key]))
                out.append(f'<tr data-metric="{key}"><th>{label}</th><td>{value}</td></tr>')
        if best is not None:
            value = _t(metric_text("val_top1", best["val_top1"]))
            out.append(
                f'<tr data-metric="best_val_top1"><th>best val top-1</th><td>{value}'
                f" (epoch {_t(best.get('epoch'))})</td></tr>"
            )
        out.append("</table>")
    if run.recipe is not None:
        recipe = yaml.safe_dump(run.recipe, sort_keys=False, allow_unicode=True)
        out += ["<details><summary>Recipe (recipe.yaml)</summary>", f"<pre>{_t(recipe)}</pre>", "</details>"]
    out.append("</section>")
    return out


def html_report(a: Analysis, *, description: str = "", svg: str | None = None,
                scale: list[ScalePoint] | None = None, run: RunRecord | None = None,
                depth: int | None = None) -> str:  # fmt: skip
    """The whole report as one HTML document."""
    title = f"{a.name}: netspec report"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="netspec {__version__}">',
        f"<title>{_t(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        *_header(a, description),
    ]
    if svg:
        out += _diagram(svg)
    out += _layers(a, depth)
    if scale:
        out += _scaling(a, scale)
    if run is not None:
        out += _training(run)
    out += [f"<footer>Written by netspec {__version__}.</footer>", "</body>", "</html>"]
    return "\n".join(out) + "\n"
