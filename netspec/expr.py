"""A small, safe expression language for `${...}` in spec values.

Expressions are parsed with Python's `ast` and walked by hand: only literals, names from the scope,
arithmetic, comparisons, boolean logic, conditionals and a few pure functions are allowed. There is
no attribute access, no subscripting, no eval/exec, and every integer is bounded, so an expression can
neither run code nor eat memory or time.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

MAX_EXPR_CHARS = 500
MAX_ABS_INT = 1 << 62
MAX_EXPR_DEPTH = 64  # nesting of the syntax tree: deep enough for any real formula, far from the stack limit

_EXPR = re.compile(r"\$\{([^{}]*)\}")


class ExprError(ValueError):
    """An expression is malformed or refers to something unknown."""


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """MobileNet's channel rounding (as in torchvision's `_make_divisible`)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,
    "float": float,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "sqrt": math.sqrt,
    "make_divisible": make_divisible,
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
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _check_number(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > MAX_ABS_INT:
        raise ExprError("integer result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError("result is not a finite number")
    return value


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
            return _check_number(node.value)
        raise ExprError(f"literal {node.value!r} is not allowed")

    def _Name(self, node: ast.Name) -> Any:
        if node.id in ("true", "True"):
            return True
        if node.id in ("false", "False"):
            return False
        if node.id not in self.scope:
            from .errors import did_you_mean

            hint = did_you_mean(node.id, self.scope)
            known = ", ".join(sorted(self.scope)) or "none"
            raise ExprError(f"unknown name '{node.id}'" + (f"; {hint}" if hint else f" (known: {known})"))
        return self.scope[node.id]

    def _BinOp(self, node: ast.BinOp) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExprError(f"operator '{type(node.op).__name__}' is not allowed")
        left, right = self.eval(node.left), self.eval(node.right)
        for v in (left, right):
            if not isinstance(v, (int, float)):
                raise ExprError(f"arithmetic needs numbers, got {v!r}")
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > MAX_ABS_INT):
            raise ExprError("exponent too large")
        try:
            return _check_number(op(left, right))
        except ZeroDivisionError:
            raise ExprError("division by zero") from None
        except OverflowError:
            raise ExprError("numeric overflow") from None

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if isinstance(node.op, ast.USub):
            return _check_number(-value)
        if isinstance(node.op, ast.UAdd):
            return value
        raise ExprError("operator not allowed")

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
            op = _CMPOPS.get(type(op_node))
            if op is None:
                raise ExprError(f"comparison '{type(op_node).__name__}' is not allowed")
            right = self.eval(comp)
            try:
                if not op(left, right):
                    return False
            except TypeError:
                raise ExprError(f"cannot compare {left!r} and {right!r}") from None
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
        args = [self.eval(a) for a in node.args]
        try:
            return _check_number(FUNCTIONS[node.func.id](*args))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ExprError(f"{node.func.id}(): {exc}") from None


def evaluate(source: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate one expression (the text inside `${...}`)."""
    if len(source) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"invalid expression '{source.strip()}': {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ExprError("expression is nested too deeply") from None
    return _Evaluator(scope).eval(tree)


def has_expression(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def substitute(value: str, scope: Mapping[str, Any]) -> Any:
    """`${e}` alone gives e's typed value; `${e}` inside text is formatted into the text."""
    whole = _EXPR.fullmatch(value.strip())
    if whole:
        return evaluate(whole.group(1), scope)
    if "${" in _EXPR.sub("", value):
        raise ExprError(f"unterminated or nested '${{' in '{value}'")
    return _EXPR.sub(lambda m: str(evaluate(m.group(1), scope)), value)
