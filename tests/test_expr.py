"""The `${...}` expression language: what it computes, and everything it refuses (without running it).

References: Python's own evaluation of the same arithmetic text (for the allowed subset), torchvision's
`_make_divisible`, and the math module.
"""

from __future__ import annotations

import builtins
import math
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from netspec import SpecError
from netspec.expr import MAX_ABS_INT, MAX_EXPR_CHARS, ExprError, evaluate, has_expression, substitute

SCOPE = {"width": 64, "index": 2, "ratio": 0.25, "in_channels": 32, "flag": True, "mode": "fast"}


@pytest.mark.parametrize(
    "expr, value",
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("7 / 2", 3.5),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("-2 ** 2", -4),
        ("+width", 64),
        ("width * 4", 256),
        ("width // 4 * index", 32),
        ("in_channels * ratio", 8.0),
        ("width if flag else 0", 64),
        ("0 if not flag else width", 64),
        ("index == 2", True),
        ("index != 2", False),
        ("1 < index <= 2", True),
        ("1 < index < 2", False),
        ("index > 0 and width", 64),
        ("index > 5 or 7", 7),
        ("mode == 'fast'", True),
        ("'fast'", "fast"),
        ("True", True),
        ("false", False),
        ("None", None),
        ("1e-3", 0.001),
        ("0x10", 16),
        ("1_000", 1000),
        ("  width  ", 64),
    ],
)
def test_arithmetic_and_logic(expr: str, value: object):
    result = evaluate(expr, SCOPE)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    "expr, value",
    [
        ("min(3, 1, 2)", 1),
        ("max(width, 100)", 100),
        ("abs(-5)", 5),
        ("int(7.9)", 7),
        ("int(-7.9)", -7),
        ("float(3)", 3.0),
        ("round(2.5)", 2),  # banker's rounding, as Python
        ("round(3.5)", 4),
        ("round(2.675, 2)", round(2.675, 2)),
        ("floor(-1.5)", -2),
        ("ceil(1.2)", 2),
        ("sqrt(16)", 4.0),
        ("int(sqrt(in_channels * 2))", 8),
        ("max(8, int(width * ratio))", 16),
        ("ceil(width / 3)", 22),
    ],
)
def test_functions(expr: str, value: object):
    result = evaluate(expr, SCOPE)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize("v", [3, 8, 12, 15.9, 16, 17, 20, 24.5, 32 * 0.75, 37.5, 96 * 1.1, 1000 / 3, 0.5])
@pytest.mark.parametrize("divisor", [4, 8, 16])
def test_make_divisible_matches_torchvision(v: float, divisor: int):
    from torchvision.models._utils import _make_divisible

    assert evaluate(f"make_divisible({v}, {divisor})", {}) == _make_divisible(v, divisor)
    assert evaluate(f"make_divisible({v}, {divisor}, 1)", {}) == _make_divisible(v, divisor, 1)
    if divisor == 8:
        assert evaluate(f"make_divisible({v})", {}) == _make_divisible(v, 8)


# -- ${} inside text ----------------------------------------------------------------------------


def test_substitute_whole_expression_keeps_its_type():
    assert substitute("${width * 2}", SCOPE) == 128
    assert substitute("  ${width * 2}  ", SCOPE) == 128
    assert substitute("${ratio}", SCOPE) == 0.25
    assert substitute("${flag}", SCOPE) is True


def test_substitute_inside_text_formats():
    assert substitute("layer${index + 1}", SCOPE) == "layer3"
    assert substitute("denselayer${index + 1}_${width}", SCOPE) == "denselayer3_64"
    assert substitute("${index}${index}", SCOPE) == "22"
    assert substitute("plain text", SCOPE) == "plain text"
    assert substitute("cost $5 {not an expr}", SCOPE) == "cost $5 {not an expr}"


@pytest.mark.parametrize("text", ["${width", "a ${b ${c}} d", "${${width}}", "x ${ y"])
def test_substitute_unterminated_or_nested(text: str):
    with pytest.raises(ExprError):
        substitute(text, SCOPE)


def test_has_expression():
    assert has_expression("${a}") and has_expression("x${a}y")
    assert not has_expression("a") and not has_expression(3) and not has_expression(None)


# -- unknown names ------------------------------------------------------------------------------


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ExprError, match=r"unknown name 'widht'; did you mean 'width'\?"):
        evaluate("widht * 2", SCOPE)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ExprError, match=r"unknown name 'zzz' \(known: a, b\)"):
        evaluate("zzz", {"a": 1, "b": 2})


@pytest.mark.parametrize(
    "name", ["open", "eval", "exec", "compile", "getattr", "globals", "locals", "type", "vars", "print"]
)
def test_builtins_are_not_in_scope(name: str):
    with pytest.raises(ExprError):
        evaluate(f"{name}('x')", SCOPE)
    with pytest.raises(ExprError, match="unknown name"):
        evaluate(name, SCOPE)


# -- rejected constructs: an error of the project's type, never execution ------------------------


REJECTED = [
    # attribute access and the classic sandbox escapes
    "width.bit_length()",
    "(1).__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "''.__class__.__mro__[1].__subclasses__()",
    "mode.upper",
    "min.__self__",
    "make_divisible.__globals__",
    # imports and calls of anything but the listed functions
    "__import__('os')",
    "__import__('os').system('echo NETSPEC_PWNED')",
    "__builtins__",
    "(lambda: 1)()",
    "lambda: 1",
    "max(*[1, 2])",
    "round(x=1)",
    "min(key=abs)",
    # subscripts and containers
    "mode[0]",
    "mode[::-1]",
    "[1, 'a']",  # lists hold numbers (issue 13: lists of numbers, indexing, comprehensions)
    "(1, 2)",
    "{1: 2}",
    "{1, 2}",
    "[x for x in 'ab']",
    "{x: 1 for x in 'ab'}",
    "(x for x in 'ab')",
    # other syntax
    "f'{width}'",
    "x := 3",
    "yield 1",
    "await width",
    "width if True",
    "import os",
    "del width",
    "width = 3",
    "1; 2",
    "...",
    "b'bytes'",
    "1j",
    "1 << 70",
    "~1",
    "1 & 3",
    "1 | 2",
    "1 ^ 3",
    "width @ width",
    "1 in (1, 2)",
    "width is None",
    # strings are values, not things to compute with
    "'a' * 1000000",
    "mode * 10**6",
    "mode + mode",
    "'%s' % width",
    "'a' < 1",
    # numbers with no bound
    "9 ** 9 ** 9",
    "10 ** 100",
    "2 ** 10000",
    "2 ** 63",
    "(2 ** 62) ** 64",
    "(2 ** 62) * 4",
    "-(2 ** 62) * 4",
    "10.0 ** 400",
    "1e308 * 10",
    "float('inf')",
    "float('nan')",
    "int('9' * 100)",
    "round(1e300)",
    "int(1e300)",
    "sqrt(-1)",
    "1 / 0",
    "1 // 0",
    "1 % 0",
    "max()",
    "abs('x')",
    "int(mode)",
    "",
    "   ",
    "1 +",
    "(",
]


@pytest.mark.parametrize("expr", REJECTED)
def test_rejected_constructs(expr: str, monkeypatch: pytest.MonkeyPatch):
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a) or 0)
    real_import = builtins.__import__

    def spy_import(name, *args, **kwargs):
        calls.append(name)
        return real_import(name, *args, **kwargs)

    error: Exception | None = None
    start = time.perf_counter()
    builtins.__import__ = spy_import
    try:
        evaluate(expr, SCOPE)
    except Exception as exc:  # checked below: it must be the project's error
        error = exc
    finally:
        builtins.__import__ = real_import
    assert time.perf_counter() - start < 0.5
    assert isinstance(error, ExprError), repr(error)
    assert isinstance(error, ValueError) and str(error)
    # the evaluator may import its own helpers (netspec.errors), nothing else
    own = ("errors", "netspec")
    assert not [c for c in calls if not (isinstance(c, str) and c.lstrip(".").startswith(own))]


@pytest.mark.parametrize(
    "expr, needle",
    [
        ("width.real", "'Attribute' is not allowed"),
        ("__import__('os')", "function '__import__' is not available"),
        ("lambda: 1", "'Lambda' is not allowed"),
        ("mode[0]", "indexing needs a list"),
        ("9 ** 9 ** 9", "exponent too large"),
        ("2 ** 63", "too large"),
        ("1 / 0", "division by zero"),
        ("1 << 2", "operator 'LShift' is not allowed"),
        ("round(x=1)", "keyword arguments are not allowed"),
    ],
)
def test_rejection_messages(expr: str, needle: str):
    with pytest.raises(ExprError, match=None) as info:
        evaluate(expr, SCOPE)
    assert needle in str(info.value)


def test_long_expressions_are_refused_before_parsing():
    expr = "1 + " * (MAX_EXPR_CHARS // 4) + "1"
    assert len(expr) > MAX_EXPR_CHARS
    with pytest.raises(ExprError, match=f"longer than {MAX_EXPR_CHARS}"):
        evaluate(expr, {})
    with pytest.raises(ExprError):
        substitute("${" + "9" * 10_000 + "}", {})


@pytest.mark.parametrize(
    "expr",
    ["-" * 499 + "1", "not " * 124 + "1", "(" * 240 + "1" + ")" * 240, "1+" * 249 + "1", "min(" * 99 + "1"],
)
def test_deep_expressions_raise_expr_error_not_recursion_error(expr: str):
    with pytest.raises(ExprError):
        evaluate(expr, {})


def test_bounds_are_inclusive_where_they_should_be():
    assert evaluate("2 ** 62", {}) == MAX_ABS_INT
    assert evaluate("-(2 ** 62)", {}) == -MAX_ABS_INT
    with pytest.raises(ExprError):  # every intermediate result is bounded, not only the final one
        evaluate("2 ** 64 // 2 ** 40", {})


# -- agreement with Python on the allowed subset (Python is the reference) -----------------------


def _leaf():
    return st.one_of(
        st.integers(-50, 50).map(lambda i: f"({i})" if i < 0 else str(i)),
        st.sampled_from(["width", "index", "in_channels"]),
    )


def _expr():
    ops = st.sampled_from(["+", "-", "*", "//", "%", "/", "<", "<=", "==", "!=", " and ", " or "])
    return st.recursive(
        _leaf(),
        lambda inner: st.one_of(
            st.tuples(inner, ops, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(inner).map(lambda t: f"-{t[0]}"),
            st.tuples(inner, inner).map(lambda t: f"max({t[0]}, {t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"min({t[0]}, {t[1]})"),
            st.tuples(inner).map(lambda t: f"abs({t[0]})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
            st.tuples(inner, st.integers(0, 3)).map(lambda t: f"({t[0]}) ** {t[1]}"),
        ),
        max_leaves=12,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expr())
def test_agrees_with_python(expr: str):
    scope = {"width": 64, "index": 2, "in_channels": 32}
    try:
        expected = eval(expr, {"__builtins__": {}, "max": max, "min": min, "abs": abs}, dict(scope))
    except ZeroDivisionError:
        with pytest.raises(ExprError, match="division by zero"):
            evaluate(expr, scope)
        return
    if isinstance(expected, int) and abs(expected) > MAX_ABS_INT:
        with pytest.raises(ExprError):
            evaluate(expr, scope)
        return
    got = evaluate(expr, scope)
    if isinstance(expected, float):
        assert math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-12)
    else:
        assert got == expected and type(got) is type(expected)


# -- expressions inside specs -------------------------------------------------------------------


def test_expressions_in_a_spec():
    spec = netspec.loads_spec(
        """
name: t
input: {channels: 3, size: 32}
vars: {base: 16, wide: "${base * 2}"}
classes: 10
stem:
  - conv: {out: "${wide}", kernel: 3, stride: "${1 + 1}", name: "stem${base // 8}"}
  - relu: {when: "${input_height > 16}"}
  - maxpool: {kernel: 2, when: "${input_height > 1000}"}
head:
  - avgpool: global
  - flatten
  - linear: "${classes}"
"""
    )
    a = netspec.analyze(spec)
    assert [r.path for r in a.rows] == ["stem2", "relu1", "avgpool1", "flatten1", "fc1"]
    assert a.rows[0].output_shape == (32, 16, 16)
    assert a.output_shape == (10,)


@pytest.mark.parametrize(
    "value, needle",
    [
        ("${__import__('os').system('echo NETSPEC_PWNED')}", "is not available"),
        ("${input_channels.__class__}", "'Attribute' is not allowed"),
        ("${9 ** 9 ** 9}", "exponent too large"),
        ("${widht}", "did you mean 'width'"),
        ("${1 / 0}", "division by zero"),
        ("${" + "-" * 400 + "1}", "nested"),
        ("${[8][1]}", "index 1 is out of range for a list of 1"),
    ],
)
def test_bad_expressions_in_a_spec_are_spec_errors(value: str, needle: str, monkeypatch: pytest.MonkeyPatch):
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a) or 0)
    head = "name: t\ninput: {channels: 3, size: 8}\nvars: {width: 8}\n"
    text = head + f'stem:\n  - conv: {{out: "{value}"}}\n'
    with pytest.raises(SpecError) as info:
        netspec.analyze(netspec.loads_spec(text, "spec.yaml"))
    assert needle in str(info.value)
    assert str(info.value).startswith("spec.yaml:5:")
    assert not calls


def test_bad_expression_in_spec_vars_is_a_spec_error():
    with pytest.raises(SpecError, match=r"vars\.f: 'Lambda' is not allowed"):
        netspec.analyze(netspec.loads_spec('name: t\nvars: {f: "${lambda: 8}"}\n'))


def test_python_syntax_warnings_do_not_reach_the_user(tmp_path):
    # `2if 1 else 3` is valid Python that its parser warns about ("invalid decimal literal"): a stray
    # SyntaxWarning line on stderr, not the spec's concern. The CLI prints nothing on stderr for it,
    # with warnings shown (-W default), and a bad expression is still one located error.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = "name: warns\ninput: {channels: 3, size: 8}\nclasses: 2\nhead:\n  - flatten: {}\n"
    good = tmp_path / "good.yaml"
    good.write_text(spec + '  - linear: {out: "${2if 1 else 3}"}\n')
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec + '  - linear: {out: "${2if 1 else}"}\n')
    runs = {}
    for path in (good, bad):
        runs[path] = subprocess.run(
            [sys.executable, "-W", "default", str(root / "cli.py"), "report", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert runs[good].returncode == 0, runs[good].stderr
    assert runs[good].stderr == ""
    assert runs[bad].returncode == 2
    assert runs[bad].stderr.startswith(f"{bad}:6:")
    assert "Warning" not in runs[bad].stderr and "Traceback" not in runs[bad].stderr
