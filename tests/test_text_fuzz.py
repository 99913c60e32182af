"""Fuzzing the YAML *text*: random character edits of real zoo specs (among them the graph specs
dla34 and resnet50_fpn: `from:` references, merges, dotted names, `outputs:`), of random graph specs
(tests/fuzz_graph.py), and arbitrary text, either load and analyse or fail with a SpecError, never any
other exception (no torch involved: fast)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec

from .conftest import SPECS
from .fuzz_graph import graph_spec

ZOO = ("resnet18", "googlenet", "mobilenet_v2", "lenet5", "dla34", "resnet50_fpn")
SOURCES = [(SPECS / f"{n}.yaml").read_text() for n in ZOO]
PIECES = st.sampled_from(
    [
        *" \n\t:-[]{},#&*!|>'\"%@`$0123456789abcxyz_.",
        "${",
        "<<: ",
        "!!python/",
        "&a ",
        "*a",
        "from: ",
        "input",
        "outputs: ",
        "h1.",
        ".0",
        "- add: {from: [",
        "concat",
        "select",
    ]
)


@st.composite
def edited_spec(draw, sources: st.SearchStrategy[str] = st.sampled_from(SOURCES)) -> str:
    """A spec with 1 to 8 random character-level insertions, deletions or replacements."""
    text = draw(sources)
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.integers(0, 2))
        piece = "".join(draw(st.lists(PIECES, min_size=1, max_size=3)))
        if op == 0:
            text = text[:i] + piece + text[i:]
        elif op == 1:
            text = text[:i] + text[i + len(piece) :]
        else:
            text = text[:i] + piece + text[i + len(piece) :]
    return text


def _load_and_analyze(text: str) -> None:
    try:
        netspec.analyze(netspec.loads_spec(text, "<fuzz>"))
    except netspec.SpecError as exc:
        assert exc.problems and all(p.message for p in exc.problems)


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(edited_spec())
def test_edited_zoo_specs_fail_only_with_spec_error(text):
    _load_and_analyze(text)


@FAST
@given(edited_spec(graph_spec().map(lambda g: g.text)))
def test_edited_graph_specs_fail_only_with_spec_error(text):
    _load_and_analyze(text)


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text_fails_only_with_spec_error(text):
    _load_and_analyze(text)


@pytest.mark.slow
@LONG
@given(edited_spec())
def test_edited_zoo_specs_fail_only_with_spec_error_long(text):
    _load_and_analyze(text)


@pytest.mark.slow
@LONG
@given(edited_spec(graph_spec().map(lambda g: g.text)))
def test_edited_graph_specs_fail_only_with_spec_error_long(text):
    _load_and_analyze(text)
