"""`netspec report -f html`: the report as one self-contained HTML file (page.py), with the diagram
netspec draws (netspec/draw) and, for a run directory, the training curves as inline SVG (chart.py)."""

from __future__ import annotations

from ..analysis import analyze
from ..draw import spec_svg
from ..report import ScalePoint
from ..run_record import RunRecord
from ..spec import Spec
from .page import html_report

__all__ = ["html_report", "spec_html_report"]

# Above this many layers the diagram draws a stage's repeated blocks once, `xN` (`diagram --collapse`):
# the table below it has every layer
COLLAPSE_ABOVE = 60


def spec_html_report(spec: Spec, *, depth: int | None = None, scale: list[ScalePoint] | None = None,
                     run: RunRecord | None = None) -> str:  # fmt: skip
    """The HTML report of a spec (and of a run of it)."""
    a = analyze(spec)
    svg = spec_svg(spec, collapse=a.layers > COLLAPSE_ABOVE)
    return html_report(a, description=spec.description, svg=svg, scale=scale, run=run, depth=depth)
