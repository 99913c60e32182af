"""Writing a diagram file in the format the user asked for: SVG and Mermaid drawn by netspec, DOT as
Graphviz source, and PNG/PDF (or any other Graphviz output format) rendered by Graphviz's `dot` when it
is installed. Without `dot` those fail before anything is written, naming what works instead."""

from __future__ import annotations

from pathlib import Path

from ..diagram import dot_binary, render, to_dot
from ..spec import Spec
from . import spec_mermaid, spec_svg
from .mermaid import MAX_EDGES, MAX_TEXT, markdown

NETSPEC_FORMATS = ("svg", "dot", "mermaid")
SUFFIXES = {".svg": "svg", ".dot": "dot", ".gv": "dot", "": "dot", ".mmd": "mermaid", ".mermaid": "mermaid",
            ".md": "mermaid"}  # fmt: skip


class GraphvizNotFoundError(Exception):
    """A format only Graphviz renders was asked for, and its `dot` binary is not on PATH."""


def format_of(output: Path, asked: str | None) -> str:
    """The format to write: the one asked for, else the one the file's suffix names; an unknown
    suffix (png, pdf, jpg, ...) is a Graphviz output format."""
    if asked:
        return asked
    suffix = output.suffix.lower()
    return SUFFIXES.get(suffix, suffix.lstrip("."))


def write_diagram(spec: Spec, output: Path, fmt: str, *, depth: int | None = None, collapse: bool = False,
                  input_size: int | tuple[int, int] | None = None) -> list[str]:  # fmt: skip
    """Write the diagram of `spec` to `output` in `fmt`; notes for the user (may be empty)."""
    if fmt not in NETSPEC_FORMATS and dot_binary() is None:
        raise GraphvizNotFoundError(
            f"{output.name}: .{fmt} needs Graphviz's `dot`, which is not installed. netspec draws "
            f"`-o {output.with_suffix('.svg').name}` itself, and writes `.dot` (Graphviz source) and "
            "`-f mermaid` / `.mmd` / `.md` (a Mermaid flowchart, which GitHub renders in Markdown); or "
            "install Graphviz (apt-get install graphviz, brew install graphviz, conda install graphviz, "
            "https://graphviz.org/download/)"
        )
    notes: list[str] = []
    if fmt == "svg":
        output.write_text(
            spec_svg(spec, depth=depth, collapse=collapse, input_size=input_size), encoding="utf-8"
        )
    elif fmt == "mermaid":
        text = spec_mermaid(spec, depth=depth, collapse=collapse, input_size=input_size)
        edges = sum(1 for line in text.splitlines() if '>|"' in line)
        if len(text) > MAX_TEXT or edges > MAX_EDGES:
            notes.append(
                f"{len(text):,} characters, {edges} edges: GitHub draws Mermaid diagrams of up to "
                f"{MAX_TEXT:,} characters and {MAX_EDGES} edges; `--collapse` or `--depth N` make it smaller"
            )
        output.write_text(markdown(text) if output.suffix.lower() == ".md" else text, encoding="utf-8")
    elif fmt == "dot":
        output.write_text(
            to_dot(spec, depth=depth, collapse=collapse, input_size=input_size), encoding="utf-8"
        )
    else:
        render(to_dot(spec, depth=depth, collapse=collapse, input_size=input_size), output, fmt)
    return notes
