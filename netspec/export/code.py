"""Values as Python code: literals of validated values, and the expressions a loop body uses."""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any

from ..layers.base import IDENTIFIER
from .errors import ExportError

_NUMBERED_NAME = re.compile(r"(.*?)(\d+)")


@dataclass(frozen=True)
class Code:
    """A value that is already code: an argument name such as `num_classes`."""

    text: str


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type (True is not 1, 1.0 is not 1)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def lit(v: Any) -> str:
    """A Python literal for a validated value; anything else is refused."""
    if isinstance(v, Code):
        return v.text
    if v is None or type(v) is bool:
        return repr(v)
    if type(v) is int:
        if abs(v) > 1 << 62:
            raise ExportError(f"integer {v} is out of range")
        return repr(v)
    if type(v) is float:
        if not math.isfinite(v):
            raise ExportError(f"value {v} is not finite")
        return repr(v)
    if type(v) is str:
        return ascii(v)
    if type(v) is tuple:
        inner = ", ".join(lit(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if type(v) is list:
        return "[" + ", ".join(lit(x) for x in v) + "]"
    if type(v) is dict and all(type(k) is str for k in v):
        return "{" + ", ".join(f"{lit(k)}: {lit(x)}" for k, x in v.items()) + "}"
    raise ExportError(f"cannot write a value of type {type(v).__name__} as source")


def _affine(a: int, b: int) -> str:
    term = "i" if abs(b) == 1 else f"{abs(b)} * i"
    if a == 0:
        return term if b > 0 else f"-{term}"
    return f"{a} + {term}" if b > 0 else f"{a} - {term}"


def index_expr(values: list[Any]) -> str:
    """Code for values[i] in a loop over i: a constant, first-vs-rest, arithmetic, or a tuple."""
    first = values[0]
    if all(same(v, first) for v in values):
        return lit(first)
    rest = values[1:]
    if all(same(v, rest[0]) for v in rest):
        if type(first) is bool and type(rest[0]) is bool:
            return "i == 0" if first else "i != 0"
        return f"{lit(first)} if i == 0 else {lit(rest[0])}"
    if len(values) >= 3 and all(type(v) is int for v in values):
        step = values[1] - values[0]
        if all(values[k] - values[k - 1] == step for k in range(1, len(values))):
            return _affine(values[0], step)
    return f"{lit(tuple(values))}[i]"


def name_expr(names: list[str]) -> str:
    """Code for the i-th child name of a loop: `f"denselayer{i + 1}"`, or a tuple of names."""
    matches = [_NUMBERED_NAME.fullmatch(n) for n in names]
    if all(matches):
        prefixes = {m.group(1) for m in matches if m}
        numbers = [int(m.group(2)) for m in matches if m]
        if len(prefixes) == 1 and all(
            str(n) == m.group(2) for n, m in zip(numbers, matches, strict=True) if m
        ):
            step = numbers[1] - numbers[0]
            if step > 0 and all(numbers[k] - numbers[k - 1] == step for k in range(1, len(numbers))):
                prefix = prefixes.pop()
                start = numbers[0]
                index = ("i" if step == 1 else f"{step} * i") + (f" + {start}" if start else "")
                if not prefix:
                    return f"str({index})"
                if IDENTIFIER.fullmatch(prefix):
                    return 'f"' + prefix + "{" + index + '}"'
    return f"{lit(tuple(names))}[i]"


def loop_variable(body: list[str]) -> str:
    """`i` where the loop's statements read it, else `_`."""
    names = {n.id for n in ast.walk(ast.parse("\n".join(body))) if isinstance(n, ast.Name)}
    return "i" if "i" in names else "_"
