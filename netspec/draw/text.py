"""How wide a line of text will be, estimated without a font file: a layout that never measures can
still keep labels inside their boxes.

Widths are Helvetica's advance widths (Adobe's core-font metrics, in 1/1000 em), which Arial and
Liberation Sans share; `SLACK` covers the widest usual fallback, DejaVu Sans (Linux's `sans-serif`),
measured at up to 15% (regular) and 25% (bold) wider on netspec's labels. Monospaced text is about
0.6 em a character in every common monospace font (DejaVu Sans Mono: 0.602).
"""

from __future__ import annotations

import unicodedata

SANS = "'Helvetica Neue', Helvetica, Arial, 'Liberation Sans', 'DejaVu Sans', sans-serif"
MONO = "SFMono-Regular, Menlo, Consolas, 'Liberation Mono', 'DejaVu Sans Mono', monospace"

SLACK = {False: 1.16, True: 1.26}  # regular, bold

# ASCII 32..126, regular and bold
_REGULAR = (
    "278 278 355 556 556 889 667 191 333 333 389 584 278 333 278 278 556 556 556 556 556 556 556 556 "
    "556 556 278 278 584 584 584 556 1015 667 667 722 722 667 611 778 722 278 500 667 556 833 722 778 "
    "667 778 722 667 611 722 667 944 667 667 611 278 278 278 469 556 333 556 556 500 556 556 278 556 "
    "556 222 222 500 222 833 556 556 556 556 333 500 278 556 500 722 500 500 500 334 260 334 584"
)
_BOLD = (
    "278 333 474 556 556 889 722 238 333 333 389 584 278 333 278 278 556 556 556 556 556 556 556 556 "
    "556 556 333 333 584 584 584 611 975 722 722 722 722 667 611 778 722 278 556 722 611 833 722 778 "
    "667 778 722 667 611 722 667 944 667 667 611 333 278 333 584 556 333 556 611 556 611 556 333 611 "
    "611 278 278 556 278 889 611 611 611 611 389 556 333 611 556 778 556 556 500 389 280 389 584"
)
_WIDTHS = {
    False: dict(zip(map(chr, range(32, 127)), map(int, _REGULAR.split()), strict=True)),
    True: dict(zip(map(chr, range(32, 127)), map(int, _BOLD.split()), strict=True)),
}


def _em(ch: str, bold: bool) -> float:
    w = _WIDTHS[bold].get(ch)
    if w is not None:
        return w / 1000
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 1.0
    if unicodedata.combining(ch):
        return 0.0
    return 0.7  # other letters and symbols (the multiplication sign, accents): a little wider than average


def text_width(text: str, size: float, *, bold: bool = False, mono: bool = False) -> float:
    """Estimated width in px of `text` set at `size` px (never less than the real width in the fonts
    of SANS and MONO, by design)."""
    if mono:
        return 0.61 * size * sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)
    return SLACK[bold] * size * sum(_em(c, bold) for c in text)
