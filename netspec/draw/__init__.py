"""Architecture diagrams drawn by netspec itself, with no system binary: a series-parallel layout of
the IR written as SVG, and Mermaid flowcharts (GitHub renders them in Markdown).

scene.py decides what is drawn (depth, collapsed repeats, fused conv-BN-activation), layout.py where
(pure geometry), svg.py and mermaid.py write it.
"""

from __future__ import annotations

from ..lower import lower
from ..spec import Spec
from .layout import layout
from .mermaid import to_mermaid
from .scene import Scene, build_scene
from .svg import to_svg

__all__ = ["scene_of", "spec_mermaid", "spec_svg"]


def scene_of(spec: Spec, *, depth: int | None = None, collapse: bool = False,
             input_size: int | tuple[int, int] | None = None) -> Scene:  # fmt: skip
    """What a diagram of `spec` shows: its IR cut at `depth`, repeats collapsed when asked."""
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    return build_scene(lower(spec, size), spec.name, spec.description, depth=depth, collapse=collapse)


def spec_svg(spec: Spec, *, depth: int | None = None, collapse: bool = False,
             input_size: int | tuple[int, int] | None = None) -> str:  # fmt: skip
    """The SVG diagram of a spec, laid out and written by netspec."""
    scene = scene_of(spec, depth=depth, collapse=collapse, input_size=input_size)
    return to_svg(layout(scene), scene.description)


def spec_mermaid(spec: Spec, *, depth: int | None = None, collapse: bool = False,
                 input_size: int | tuple[int, int] | None = None) -> str:  # fmt: skip
    """The Mermaid flowchart of a spec."""
    return to_mermaid(scene_of(spec, depth=depth, collapse=collapse, input_size=input_size))
