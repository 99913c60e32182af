"""Colours of a diagram, shared by the SVG and Mermaid writers: one hue per layer family, quiet boxes,
red shortcuts. Each entry: (fill, stroke, text)."""

from __future__ import annotations

from ..diagram import REFERENCE_COLOR  # one colour for references, in DOT too

NODE: dict[str, tuple[str, str, str]] = {
    "convolution": ("#e4eefb", "#4a7dc4", "#1b2a41"),
    "norm": ("#e3f3f1", "#3f9a8c", "#173a35"),
    "act": ("#fdf0e1", "#d08a3a", "#4a2f0e"),
    "pool": ("#e7f4e8", "#4e9a5e", "#183a20"),
    "dense": ("#f1e8f8", "#8a5bb5", "#2f1d40"),
    "other": ("#f1f2f4", "#8a909a", "#2b2f36"),
    "block": ("#fbf0d9", "#c29a3b", "#3d2e0c"),
    "merge": ("#ffffff", "#4b5563", "#1f2933"),
    "io": ("#334155", "#334155", "#ffffff"),
}

GROUP: dict[str, tuple[str, str, str]] = {  # fill, stroke, dash pattern ("" for solid)
    "stage": ("#f5f7fb", "#aab6c8", ""),
    "block": ("#ffffff", "#c3cad5", ""),
    "shortcut": ("#fff7f6", "#d99a94", "3 2"),
    "aux": ("#fafafa", "#9aa1ab", "6 3"),
}

EDGE: dict[str, tuple[str, str]] = {  # stroke, dash pattern
    "flow": ("#5b6472", ""),
    "skip": ("#c0392b", "5 3"),
    "projection": ("#c0392b", ""),
    "side": ("#8a909a", "4 3"),
    "reference": (REFERENCE_COLOR, ""),  # a graph list's `from:`: an earlier output, beside the column
}

TEXT = "#1f2933"
MUTED = "#52606d"
LABEL = "#6b7280"
