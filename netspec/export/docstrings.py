"""Docstrings: text from a spec, escaped so that it can only ever be text, and wrapped."""

from __future__ import annotations

import re
from collections.abc import Iterator


def _escape_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch == '"':
        return '\\"'
    if " " <= ch <= "~":
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str) -> str:
    """Text safe inside a triple-quoted docstring: printable ASCII, quotes and backslashes escaped."""
    return "".join(_escape_char(ch) for ch in text)


def _pieces(word: str, width: int) -> Iterator[str]:
    """A word escaped, cut into pieces of at most `width` characters, never inside an escape. One pass:
    a 300 KB word costs what its length costs."""
    piece: list[str] = []
    size = 0
    for ch in word:
        code = _escape_char(ch)
        if piece and size + len(code) > width:
            yield "".join(piece)
            piece, size = [], 0
        piece.append(code)
        size += len(code)
    if piece:
        yield "".join(piece)


def wrap(text: str, width: int) -> list[str]:
    """Escaped lines of at most `width` characters; paragraphs (blank lines) are kept."""
    lines: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        line = ""
        for word in paragraph.split():
            for piece in _pieces(word, width):
                if line and len(line) + 1 + len(piece) > width:
                    lines.append(line)
                    line = piece
                else:
                    line = f"{line} {piece}" if line else piece
        if line:
            lines.append(line)
        lines.append("")
    while lines and not lines[-1]:
        lines.pop()
    return lines


def docstring(lines: list[str], indent: str) -> str:
    """The inside of a docstring from already escaped lines (a one-liner when it fits)."""
    if len(lines) == 1:
        return lines[0]
    body = "\n".join(f"{indent}{line}" if line else "" for line in lines[1:])
    return f"{lines[0]}\n{body}\n{indent}"
