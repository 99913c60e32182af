"""A small, safe expression language for `${...}` in spec values.

Expressions are parsed with Python's `ast` and walked by hand: only literals, names from the scope,
arithmetic, comparisons, boolean logic, conditionals, a few pure functions and lists of numbers
(literals, `xs[i]`, one-`for` comprehensions: enough to derive a design space such as RegNet's from
its parameters) are allowed. There is no attribute access, no slicing, no eval/exec. Every number is
bounded, lists hold at most MAX_LIST_LEN numbers, every evaluation counts its steps (each node, and
each list element a function reads or makes) up to MAX_EVAL_STEPS, and text built from expressions
is bounded, so an expression can neither run code nor eat memory or time. Every failure, whatever
raised it, leaves `evaluate` as an ExprError, which the lowering reports at the value's line.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import warnings
from collections import ChainMap
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MutableMapping,
    ValuesView,
)
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

MAX_EXPR_CHARS = 500
MAX_ABS_INT = 1 << 62
MAX_EXPR_DEPTH = 64  # nesting of the syntax tree: deep enough for any real formula, far from the stack limit
MAX_POW_EXPONENT = 64
MAX_ROUND_DIGITS = 64  # round(x, n) computes 10 ** |n|: n must be small
MAX_NUMBER_TEXT = 40  # int('...') / float('...') read a number written as text, not a bigint
MAX_TEXT_CHARS = 4096  # text with `${...}` inside it is a name or a label, never a page
MAX_TEXT_EXPRESSIONS = 100  # `${...}` in one text
MAX_LIST_LEN = 10_000  # a list is a design space's per-block or per-stage values, not a data set
MAX_EVAL_STEPS = 100_000  # nodes visited plus list elements handled, per evaluation: a fraction of a second
MAX_EXP_ARG = 709  # math.exp(710) overflows a float

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
    if isinstance(value, list):
        if len(value) > MAX_LIST_LEN:
            raise ExprError(f"a list of {len(value):,} elements: lists hold at most {MAX_LIST_LEN:,}")
        for x in value:
            if not _is_number(x):
                raise ExprError(f"lists hold numbers, not {_show(x)}")
            _checked(x)
        return value
    raise ExprError(f"result {_show(value)} is not a real number")


def _list(value: Any, context: str) -> list[Any]:
    if not isinstance(value, list):
        raise ExprError(f"{context} needs a list, got {_show(value)}")
    return value


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


def _extremum(pick: Callable[..., Any], name: str, args: tuple[Any, ...]) -> Any:
    """`min(a, b, ...)`, or as in Python `min(xs)` of one list."""
    values = _list(args[0], f"{name}() of one argument") if len(args) == 1 else args
    if not values:
        raise ExprError(f"{name}() of an empty list")
    return pick(_number(a, f"{name}()") for a in values)


def _min(*args: Any) -> Any:
    return _extremum(min, "min", args)


def _max(*args: Any) -> Any:
    return _extremum(max, "max", args)


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


def _log(x: Any) -> float:
    if _number(x, "log()") <= 0:
        raise ExprError(f"log() of a number that is not positive ({_show(x)})")
    return math.log(x)


def _log2(x: Any) -> float:
    if _number(x, "log2()") <= 0:
        raise ExprError(f"log2() of a number that is not positive ({_show(x)})")
    return math.log2(x)


def _exp(x: Any) -> float:
    if _number(x, "exp()") > MAX_EXP_ARG:
        raise ExprError(f"exp({_show(x)}) overflows: the argument must be at most {MAX_EXP_ARG}")
    return math.exp(x)


def _range(*args: Any) -> list[int]:
    """Python's range, as a list of at most MAX_LIST_LEN integers."""
    start, stop, step = 0, 0, 1
    bounds = [_integer(a, "range()'s arguments", -MAX_ABS_INT) for a in args]
    if len(bounds) == 1:
        stop = bounds[0]
    else:
        start, stop, step = (*bounds, 1)[:3]
    if step == 0:
        raise ExprError("range() step must not be zero")
    length = len(range(start, stop, step))  # computed, not built
    if length > MAX_LIST_LEN:
        raise ExprError(f"range() of {length:,} numbers: lists hold at most {MAX_LIST_LEN:,}")
    return list(range(start, stop, step))


def _len(xs: Any) -> int:
    return len(_list(xs, "len()"))


def _sum(xs: Any) -> int | float:
    return sum(_number(x, "sum()") for x in _list(xs, "sum()"))


def _unique(xs: Any) -> list[Any]:
    """The distinct values in ascending order (numpy's `unique`, as pycls groups RegNet's blocks)."""
    return sorted({_number(x, "unique()") for x in _list(xs, "unique()")})


def _count(xs: Any, value: Any) -> int:
    """How many elements equal `value` (Python's `list.count`)."""
    return sum(1 for x in _list(xs, "count()") if x == value)


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
    "log": Function(_log, 1, 1),
    "log2": Function(_log2, 1, 1),
    "exp": Function(_exp, 1, 1),
    "make_divisible": Function(make_divisible, 1, 3),
    "range": Function(_range, 1, 3),
    "len": Function(_len, 1, 1),
    "sum": Function(_sum, 1, 1),
    "unique": Function(_unique, 1, 1),
    "count": Function(_count, 2, 2),
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


class Scope(dict[str, Any]):
    """The names an expression may read: its own, in front of those of the scope it sits in, which are
    read there and never copied (a spec's vars are not copied again at every block use). What
    collections.ChainMap does, but reading one of its own names is a plain dict lookup, and an outer
    name costs one call (`__missing__`), where a ChainMap raises and catches a KeyError for every map
    it passes. It reads as a ChainMap of the two reads: `in`, `get`, iteration (outer names first)."""

    __slots__ = ("outer",)

    def __init__(self, own: Mapping[str, Any], outer: Mapping[str, Any]) -> None:
        super().__init__(own)
        self.outer = outer

    def __missing__(self, name: str) -> Any:  # (dict calls it for a name it does not hold itself)
        return self.outer[name]

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or name in self.outer

    def get(self, name: str, default: Any = None) -> Any:
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        return self.outer.get(name, default)

    def _names(self) -> dict[str, None]:
        return {**dict.fromkeys(self.outer), **dict.fromkeys(dict.keys(self))}

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        return self._names().keys()

    def items(self) -> ItemsView[str, Any]:  # type: ignore[override]
        return {name: self[name] for name in self._names()}.items()

    def values(self) -> ValuesView[Any]:  # type: ignore[override]
        return {name: self[name] for name in self._names()}.values()


@dataclass
class Steps:
    """The steps evaluations took (nodes visited, list elements handled): what a caller's work budget
    charges, so that many long list comprehensions cost more than many short formulas."""

    taken: int = 0


class _Evaluator:
    def __init__(self, scope: Mapping[str, Any]):
        self.scope = scope
        self.depth = 0
        self.steps = 0

    def spend(self, steps: int) -> None:
        self.steps += steps
        if self.steps > MAX_EVAL_STEPS:
            raise ExprError(f"expression takes more than {MAX_EVAL_STEPS:,} steps to evaluate")

    def eval(self, node: ast.AST) -> Any:
        method = _HANDLERS.get(type(node))
        if method is None:
            raise ExprError(f"'{type(node).__name__}' is not allowed in an expression")
        self.steps += 1  # spend(1), inline: this runs for every node
        if self.steps > MAX_EVAL_STEPS:
            self.spend(0)
        self.depth += 1
        if self.depth > MAX_EXPR_DEPTH:
            raise ExprError(f"expression is nested more than {MAX_EXPR_DEPTH} levels deep")
        try:
            return method(self, node)
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
        try:
            value = self.scope[node.id]  # one pass through a chain of scopes (`in`, then `[]`: two)
        except KeyError:
            from .errors import did_you_mean

            hint = did_you_mean(node.id, self.scope)
            names = sorted(self.scope)
            known = ", ".join(names[:20]) + (f", ... ({len(names)} names)" if len(names) > 20 else "")
            raise ExprError(
                f"unknown name '{node.id}'" + (f"; {hint}" if hint else f" (known: {known or 'none'})")
            ) from None
        # a variable read from YAML may be NaN, infinite or huge: it enters arithmetic bounded like a result
        if isinstance(value, float) and not math.isfinite(value):
            raise ExprError(f"'{node.id}' is {value}, not a finite number")
        if isinstance(value, int) and abs(value) > MAX_ABS_INT:
            raise ExprError(f"'{node.id}' is too large (more than 2 ** 62 in size)")
        if isinstance(value, list) and len(value) > MAX_LIST_LEN:
            raise ExprError(f"'{node.id}' has {len(value):,} elements: lists hold at most {MAX_LIST_LEN:,}")
        return value

    def _List(self, node: ast.List) -> list[Any]:
        return _checked([self.eval(e) for e in node.elts])

    def _Subscript(self, node: ast.Subscript) -> Any:
        """`xs[i]`: one element of a list, negative indices counting from the end as in Python."""
        if isinstance(node.slice, ast.Slice):
            raise ExprError("slices are not supported: index one element, `xs[i]`")
        xs = _list(self.eval(node.value), "indexing")
        index = self.eval(node.slice)
        if isinstance(index, bool) or not isinstance(index, int):
            raise ExprError(f"a list index is an integer, got {_show(index)}")
        if not -len(xs) <= index < len(xs):
            valid = f"-{len(xs)} to {len(xs) - 1}" if xs else "none: the list is empty"
            raise ExprError(f"index {index} is out of range for a list of {len(xs)} (indices {valid})")
        return xs[index]

    def _ListComp(self, node: ast.ListComp) -> list[Any]:
        """`[f(x) for x in xs if c(x)]`: one `for` over a list, its name seen only inside."""
        if len(node.generators) != 1:
            raise ExprError("a list comprehension takes one `for`")
        loop = node.generators[0]
        if not isinstance(loop.target, ast.Name):
            raise ExprError("a list comprehension's `for` names one variable (`for i in ...`)")
        xs = _list(self.eval(loop.iter), "a list comprehension's `for`")
        outer, out = self.scope, []
        try:
            for x in xs:
                self.scope = ChainMap({loop.target.id: x}, cast(MutableMapping[str, Any], outer))
                if all(self.eval(test) for test in loop.ifs):
                    out.append(self.eval(node.elt))
        finally:
            self.scope = outer
        return _checked(out)

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
        # a function's work is proportional to the lists it reads and makes
        self.spend(sum(len(a) for a in args if isinstance(a, list)))
        result = _checked(function.call(*args))
        if isinstance(result, list):
            self.spend(len(result))
        return result


# the evaluator's method for each syntax-tree node type it allows (`_BinOp` for ast.BinOp, ...)
_HANDLERS: dict[type, Callable[[_Evaluator, Any], Any]] = {
    getattr(ast, name[1:]): method
    for name, method in vars(_Evaluator).items()
    if name[:1] == "_" and name[1:2].isupper() and isinstance(getattr(ast, name[1:], None), type)
}


@lru_cache(maxsize=1024)
def _parse(text: str) -> ast.Expression | str:
    """The syntax tree of an expression, or why it has none. Cached, as `re` caches its patterns: a
    network's blocks evaluate the same few formulas at every use, and a sweep lowers one spec again and
    again. The trees are only read, never changed. Python's own warnings about the text (`1if x else
    2`: "invalid decimal literal") are about its source style, not the spec: they would reach the user
    as a stray line on stderr, so they are silenced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        return f"invalid expression '{text}': {exc.msg}"
    except ValueError as exc:  # whatever else ast.parse refuses outside SyntaxError
        return f"invalid expression: {exc}"
    except (RecursionError, MemoryError):
        return "expression is nested too deeply"


def evaluate(source: str, scope: Mapping[str, Any], steps: Steps | None = None) -> Any:
    """Evaluate one expression (the text inside `${...}`), adding the steps it took to `steps`.
    Raises ExprError, and nothing else."""
    if len(source) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    text = source.strip()
    if "\0" in text:  # Python versions differ in how ast.parse refuses it
        raise ExprError("expression contains a NUL character")
    tree = _parse(text)
    if isinstance(tree, str):
        raise ExprError(tree)
    # The one place where evaluation failures become ExprError: the checks above name most of them
    # precisely; whatever they miss is still the user's expression failing, never a crash.
    evaluator = _Evaluator(scope)
    try:
        if type(tree.body) is ast.Name:  # `${width}`, most expressions: two nodes, the second a name
            evaluator.steps = 2
            return evaluator._Name(tree.body)
        return evaluator.eval(tree)
    except ExprError:
        raise
    except ZeroDivisionError:
        raise ExprError("division by zero") from None
    except OverflowError:
        raise ExprError("numeric overflow") from None
    except (ArithmeticError, TypeError, ValueError, RecursionError) as exc:
        raise ExprError(f"cannot evaluate '{text}': {exc}") from None
    finally:
        if steps is not None:
            steps.taken += evaluator.steps


def has_expression(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


Memo = dict[tuple[Any, ...], Any]  # (value, the values of the names it reads) -> (result, steps)
_ABSENT = ("absent",)  # a name the scope does not hold, as part of a memo key


def substitute(
    value: str, scope: Mapping[str, Any], steps: Steps | None = None, memo: Memo | None = None
) -> Any:
    """`${e}` alone gives e's typed value; `${e}` inside text is formatted into the text.

    With a `memo` (one per lowering), a value computed before from the same values of the names it reads
    is reused, its steps counted again: an expression depends on nothing else. Failures are not kept."""
    name = _single_name(value) if len(value) <= MAX_TEXT_CHARS else None  # (caches hold short texts)
    if name is not None:  # `${width}`: most values read one name; anything unusual takes the long way
        try:
            v = scope[name]
        except KeyError:
            v = _ABSENT
        t = type(v)
        if (
            t is str
            or t is bool
            or (t is int and -MAX_ABS_INT <= v <= MAX_ABS_INT)
            or (t is float and math.isfinite(v))
        ):
            if steps is not None:
                steps.taken += 2  # as evaluated: the expression node and the name
            return v
    key = _memo_key(value, scope) if memo is not None else None
    if key is None or memo is None:
        return _substitute(value, scope, steps)
    known = memo.get(key)
    if known is None:
        own = Steps()
        try:
            known = memo[key] = (_substitute(value, scope, own), own.taken)
        finally:
            if steps is not None:
                steps.taken += own.taken
    elif steps is not None:
        steps.taken += known[1]
    return list(known[0]) if isinstance(known[0], list) else known[0]  # the memo's list stays as made


def _memo_key(value: str, scope: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """`value` with the values of the names it reads, or None where they are not plain values (a list
    could be long: a key must cost less than what it saves) or where there is nothing to save."""
    names = _names_read(value) if len(value) <= MAX_TEXT_CHARS else None  # (caches hold short texts)
    if names is None:
        return None
    values = values_key(names, scope)
    return None if values is None else ("expr", value, *values)


def values_key(names: Iterable[str], scope: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The values `names` have in `scope`, as part of a memo key (what a computation that reads only
    those names gives again for them); None where one is not a plain value."""
    key: list[Any] = []
    for name in names:
        try:
            v = scope[name]
        except KeyError:
            key.append(_ABSENT)
            continue
        plain = plain_key(v)
        if plain is None:
            return None
        key.append(plain)
    return tuple(key)


_PLAIN_TYPES = frozenset({int, str, bool, type(None)})


def plain_key(value: Any) -> tuple[Any, Any] | None:
    """A plain value as part of a memo key, with its type (1, 1.0 and True are equal in Python but give
    different results: a count is strict), a float by its repr (-0.0 and 0.0 stay apart); None for any
    other value (a list could be long: a key must cost less than what it saves)."""
    t = type(value)
    if t in _PLAIN_TYPES:
        return (t, value)
    if t is float:
        return (t, repr(value))
    return None


def names_read(value: str) -> tuple[str, ...] | None:
    """The names the expressions in text `value` read (sorted); None where that is not known: an
    expression that does not parse (its error is reported where it is evaluated), a text too long."""
    if len(value) > MAX_TEXT_CHARS:
        return None
    name = _single_name(value)
    return (name,) if name is not None else _names_read(value)


@lru_cache(maxsize=1024)
def _single_name(value: str) -> str | None:
    """The name `value` is, where it is exactly `${name}` of a name the scope may hold."""
    whole = _EXPR.fullmatch(value.strip())
    if whole is None or len(whole.group(1)) > MAX_EXPR_CHARS:
        return None
    text = whole.group(1).strip()
    tree = _parse(text) if "\0" not in text else None
    if isinstance(tree, ast.Expression) and type(tree.body) is ast.Name:
        name = tree.body.id
        return None if name in ("true", "True", "false", "False") else name
    return None


@lru_cache(maxsize=1024)
def _names_read(value: str) -> tuple[str, ...] | None:
    """The names the expressions in `value` read; None where one cannot be read (its error is not
    remembered) or where `value` is a single name (`${width}`: reading it is cheaper than a key)."""
    names: set[str] = set()
    for m in _EXPR.finditer(value):
        text = m.group(1).strip()
        if len(m.group(1)) > MAX_EXPR_CHARS or "\0" in text:
            return None
        tree = _parse(text)
        if isinstance(tree, str) or (m.group(0) == value.strip() and type(tree.body) is ast.Name):
            return None
        names.update(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))
    return tuple(sorted(names)) if names or "${" in value else None


def _substitute(value: str, scope: Mapping[str, Any], steps: Steps | None = None) -> Any:
    parts = _template(value) if len(value) <= MAX_TEXT_CHARS else _split(value)
    if isinstance(parts, str):
        raise ExprError(parts)
    if len(parts) == 2:  # `${e}` alone: e's typed value
        return evaluate(parts[1], scope, steps)
    pieces: list[str] = []
    size = 0
    # built piece by piece and measured on the way: `"${s}${s}"` of a long `s` must not double memory
    for i in range(1, len(parts), 2):
        if i // 2 + 1 > MAX_TEXT_EXPRESSIONS:
            raise ExprError(f"text holds more than {MAX_TEXT_EXPRESSIONS} expressions")
        result = evaluate(parts[i], scope, steps)
        if not isinstance(result, (str, int, float, bool)) and result is not None:
            raise ExprError(f"{_show(result)} cannot be written into text")
        pieces += [parts[i - 1], str(result)]
        size += len(parts[i - 1]) + len(pieces[-1])
        if size > MAX_TEXT_CHARS:
            raise ExprError(f"text built from expressions is longer than {MAX_TEXT_CHARS} characters")
    pieces.append(parts[-1])
    if size + len(pieces[-1]) > MAX_TEXT_CHARS:
        raise ExprError(f"text built from expressions is longer than {MAX_TEXT_CHARS} characters")
    return "".join(pieces)


@lru_cache(maxsize=1024)
def _template(value: str) -> tuple[str, ...] | str:
    """_split, cached for the short texts specs write again at every use of a block."""
    return _split(value)


def _split(value: str) -> tuple[str, ...] | str:
    """A text with expressions as ("", expression) where it is exactly `${e}` (spaces around it
    aside), else as (text, expression, text, ..., text), an odd count; or why it cannot be read."""
    whole = _EXPR.fullmatch(value.strip())
    if whole:
        return ("", whole.group(1))
    if "${" in _EXPR.sub("", value):
        return f"unterminated or nested '${{' in {_show(value)}"
    parts: list[str] = []
    last = 0
    for m in _EXPR.finditer(value):
        parts += [value[last : m.start()], m.group(1)]
        last = m.end()
    parts.append(value[last:])
    return tuple(parts)
