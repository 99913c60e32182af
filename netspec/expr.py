"""A small, safe expression language for `${...}` in spec values.

Expressions are parsed with Python's `ast` and walked by hand: only literals, names from the scope,
arithmetic, comparisons, boolean logic, conditionals and a few pure functions are allowed. There is
no attribute access, no subscripting, no eval/exec. Every number is bounded, every function checks
the size of its arguments, and text built from expressions is bounded, so an expression can neither
run code nor eat memory or time. Every failure, whatever raised it, leaves `evaluate` as an
ExprError, which the lowering reports at the value's line.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_EXPR_CHARS = 500
MAX_ABS_INT = 1 << 62
MAX_EXPR_DEPTH = 64  # nesting of the syntax tree: deep enough for any real formula, far from the stack limit
MAX_POW_EXPONENT = 64
MAX_ROUND_DIGITS = 64  # round(x, n) computes 10 ** |n|: n must be small
MAX_NUMBER_TEXT = 40  # int('...') / float('...') read a number written as text, not a bigint
MAX_TEXT_CHARS = 4096  # text with `${...}` inside it is a name or a label, never a page
MAX_TEXT_EXPRESSIONS = 100  # `${...}` in one text

_EXPR = re.compile(r"\$\{([^{}]*)\}")


class ExprError(ValueError):
    """An expression is malformed, refers to something unknown, or cannot be computed."""


def _show(value: Any) -> str:
    """A value for a message: a long string from the scope must not become a long message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _is_number(value: Any) -> bool:
    # a bool counts as 0 or 1, as in Python, whose arithmetic this language follows
    return isinstance(value, (int, float))


def _number(value: Any, context: str) -> int | float:
    if not _is_number(value):
        raise ExprError(f"{context} needs numbers, got {_show(value)}")
    return value


def _integer(value: Any, context: str, low: int, high: int = MAX_ABS_INT) -> int:
    if not isinstance(value, int) or not low <= value <= high:
        bounds = f"from {low} to {high}" if high < MAX_ABS_INT else f"of at least {low}"
        raise ExprError(f"{context} must be an integer {bounds}, got {_show(value)}")
    return value


def _checked(value: Any) -> Any:
    """A computed value, refused when it is out of bounds (or not a plain real number)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_ABS_INT:
            raise ExprError("integer result is too large")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ExprError("result is not a finite number")
        return value
    raise ExprError(f"result {_show(value)} is not a real number")


# -- the functions: each checks its arguments before doing any work ------------------------------


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """MobileNet's channel rounding (as in torchvision's `_make_divisible`)."""
    _number(value, "make_divisible()")
    _integer(divisor, "make_divisible()'s divisor", 1)
    if min_value is not None:
        _integer(min_value, "make_divisible()'s min_value", -MAX_ABS_INT)
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _min(*args: Any) -> Any:
    return min(_number(a, "min()") for a in args)


def _max(*args: Any) -> Any:
    return max(_number(a, "max()") for a in args)


_INT_TEXT = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: int() would also read '٣' or '1_0'
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number_text(text: str, pattern: re.Pattern[str], context: str) -> str:
    stripped = text.strip()
    if len(stripped) > MAX_NUMBER_TEXT or not pattern.fullmatch(stripped):
        raise ExprError(f"{context} reads a number written in ASCII digits, got {_show(text)}")
    return stripped


def _int(x: Any) -> int:
    if isinstance(x, str):
        return int(_number_text(x, _INT_TEXT, "int()"))
    return int(_number(x, "int()"))


def _float(x: Any) -> float:
    if isinstance(x, str):
        return float(_number_text(x, _FLOAT_TEXT, "float()"))
    return float(_number(x, "float()"))


def _round(x: Any, ndigits: Any = None) -> int | float:
    _number(x, "round()")
    if ndigits is None:
        return round(x)
    return round(x, _integer(ndigits, "round()'s digits", -MAX_ROUND_DIGITS, MAX_ROUND_DIGITS))


def _sqrt(x: Any) -> float:
    if _number(x, "sqrt()") < 0:
        raise ExprError(f"sqrt() of a negative number ({_show(x)})")
    return math.sqrt(x)


@dataclass(frozen=True)
class Function:
    """A function expressions may call, and how many arguments it takes."""

    call: Callable[..., Any]
    min_args: int
    max_args: int


FUNCTIONS: dict[str, Function] = {
    "min": Function(_min, 1, 64),
    "max": Function(_max, 1, 64),
    "abs": Function(lambda x: abs(_number(x, "abs()")), 1, 1),
    "int": Function(_int, 1, 1),
    "float": Function(_float, 1, 1),
    "round": Function(_round, 1, 2),
    "floor": Function(lambda x: math.floor(_number(x, "floor()")), 1, 1),
    "ceil": Function(lambda x: math.ceil(_number(x, "ceil()")), 1, 1),
    "sqrt": Function(_sqrt, 1, 1),
    "make_divisible": Function(make_divisible, 1, 3),
}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_EQUALITY: dict[type, Callable[[Any, Any], bool]] = {ast.Eq: operator.eq, ast.NotEq: operator.ne}
_ORDER: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class _Evaluator:
    def __init__(self, scope: Mapping[str, Any]):
        self.scope = scope
        self.depth = 0

    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise ExprError(f"'{type(node).__name__}' is not allowed in an expression")
        self.depth += 1
        if self.depth > MAX_EXPR_DEPTH:
            raise ExprError(f"expression is nested more than {MAX_EXPR_DEPTH} levels deep")
        try:
            return method(node)
        finally:
            self.depth -= 1

    def _Expression(self, node: ast.Expression) -> Any:
        return self.eval(node.body)

    def _Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, (int, float, str, bool)) or node.value is None:
            return _checked(node.value)
        raise ExprError(f"literal {_show(node.value)} is not allowed")

    def _Name(self, node: ast.Name) -> Any:
        if node.id in ("true", "True"):
            return True
        if node.id in ("false", "False"):
            return False
        if node.id not in self.scope:
            from .errors import did_you_mean

            hint = did_you_mean(node.id, self.scope)
            names = sorted(self.scope)
            known = ", ".join(names[:20]) + (f", ... ({len(names)} names)" if len(names) > 20 else "")
            raise ExprError(
                f"unknown name '{node.id}'" + (f"; {hint}" if hint else f" (known: {known or 'none'})")
            )
        value = self.scope[node.id]
        # a variable read from YAML may be NaN, infinite or huge: it enters arithmetic bounded like a result
        if isinstance(value, float) and not math.isfinite(value):
            raise ExprError(f"'{node.id}' is {value}, not a finite number")
        if isinstance(value, int) and abs(value) > MAX_ABS_INT:
            raise ExprError(f"'{node.id}' is too large (more than 2 ** 62 in size)")
        return value

    def _BinOp(self, node: ast.BinOp) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExprError(f"operator '{type(node.op).__name__}' is not allowed")
        left = _number(self.eval(node.left), "arithmetic")
        right = _number(self.eval(node.right), "arithmetic")
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_POW_EXPONENT or abs(left) > MAX_ABS_INT:
                raise ExprError("exponent too large")
            if left < 0 and not float(right).is_integer():
                raise ExprError(f"a negative number to a fractional power: ({left}) ** {right}")
        return _checked(op(left, right))

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if isinstance(node.op, ast.USub):
            return _checked(-_number(value, "arithmetic"))
        if isinstance(node.op, ast.UAdd):
            return _number(value, "arithmetic")
        raise ExprError(f"operator '{type(node.op).__name__}' is not allowed")

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            result: Any = True
            for v in node.values:
                result = self.eval(v)
                if not result:
                    return result
            return result
        result = False
        for v in node.values:
            result = self.eval(v)
            if result:
                return result
        return result

    def _Compare(self, node: ast.Compare) -> bool:
        left = self.eval(node.left)
        for op_node, comp in zip(node.ops, node.comparators, strict=True):
            right = self.eval(comp)
            if type(op_node) in _EQUALITY:
                holds = _EQUALITY[type(op_node)](left, right)
            elif type(op_node) in _ORDER:
                if not (
                    (_is_number(left) and _is_number(right))
                    or (isinstance(left, str) and isinstance(right, str))
                ):
                    raise ExprError(
                        f"cannot compare {_show(left)} and {_show(right)}: order needs two numbers"
                    )
                holds = _ORDER[type(op_node)](left, right)
            else:
                raise ExprError(f"comparison '{type(op_node).__name__}' is not allowed")
            if not holds:
                return False
            left = right
        return True

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def _Call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)[:60]
            allowed = ", ".join(sorted(FUNCTIONS))
            raise ExprError(f"function '{name}' is not available (allowed: {allowed})")
        if node.keywords:
            raise ExprError("keyword arguments are not allowed")
        function = FUNCTIONS[node.func.id]
        if not function.min_args <= len(node.args) <= function.max_args:
            count = (
                str(function.min_args)
                if function.min_args == function.max_args
                else f"{function.min_args} to {function.max_args}"
            )
            plural = "" if function.max_args == 1 else "s"
            raise ExprError(f"{node.func.id}() takes {count} argument{plural}, got {len(node.args)}")
        args = [self.eval(a) for a in node.args]
        return _checked(function.call(*args))


def evaluate(source: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate one expression (the text inside `${...}`). Raises ExprError, and nothing else."""
    if len(source) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    text = source.strip()
    if "\0" in text:  # Python versions differ in how ast.parse refuses it
        raise ExprError("expression contains a NUL character")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"invalid expression '{text}': {exc.msg}") from None
    except ValueError as exc:  # whatever else ast.parse refuses outside SyntaxError
        raise ExprError(f"invalid expression: {exc}") from None
    except (RecursionError, MemoryError):
        raise ExprError("expression is nested too deeply") from None
    # The one place where evaluation failures become ExprError: the checks above name most of them
    # precisely; whatever they miss is still the user's expression failing, never a crash.
    try:
        return _Evaluator(scope).eval(tree)
    except ExprError:
        raise
    except ZeroDivisionError:
        raise ExprError("division by zero") from None
    except OverflowError:
        raise ExprError("numeric overflow") from None
    except (ArithmeticError, TypeError, ValueError, RecursionError) as exc:
        raise ExprError(f"cannot evaluate '{text}': {exc}") from None


def has_expression(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def substitute(value: str, scope: Mapping[str, Any]) -> Any:
    """`${e}` alone gives e's typed value; `${e}` inside text is formatted into the text."""
    whole = _EXPR.fullmatch(value.strip())
    if whole:
        return evaluate(whole.group(1), scope)
    if "${" in _EXPR.sub("", value):
        raise ExprError(f"unterminated or nested '${{' in {_show(value)}")
    pieces: list[str] = []
    size = 0
    last = 0
    # built piece by piece and measured on the way: `"${s}${s}"` of a long `s` must not double memory
    for count, m in enumerate(_EXPR.finditer(value), 1):
        if count > MAX_TEXT_EXPRESSIONS:
            raise ExprError(f"text holds more than {MAX_TEXT_EXPRESSIONS} expressions")
        result = evaluate(m.group(1), scope)
        if not isinstance(result, (str, int, float, bool)) and result is not None:
            raise ExprError(f"{_show(result)} cannot be written into text")
        pieces += [value[last : m.start()], str(result)]
        size += m.start() - last + len(pieces[-1])
        last = m.end()
        if size > MAX_TEXT_CHARS:
            raise ExprError(f"text built from expressions is longer than {MAX_TEXT_CHARS} characters")
    pieces.append(value[last:])
    if size + len(pieces[-1]) > MAX_TEXT_CHARS:
        raise ExprError(f"text built from expressions is longer than {MAX_TEXT_CHARS} characters")
    return "".join(pieces)
