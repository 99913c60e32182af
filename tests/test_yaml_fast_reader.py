"""The fast YAML reader (libyaml's C parser and composer, netspec/source.py) against the reference, PyYAML's
pure-Python reader: for every text the fast reader answers, the tree, each value's type and every
position (line, column of each value and key) equal the reference's; every other text is read again by
the reference, so errors and their messages are PyYAML's."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from netspec import source
from netspec.errors import SpecError, SpecSyntaxError

ROOT = Path(__file__).resolve().parent.parent
ZOO = sorted((ROOT / "specs").glob("*.yaml"))
TEST_SPECS = sorted((ROOT / "tests" / "bad_specs").glob("*.yaml")) + sorted(ROOT.glob("examples/**/*.yaml"))

needs_libyaml = pytest.mark.skipif(
    not yaml.__with_libyaml__, reason="PyYAML without libyaml: one reader only"
)


def reference(text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str | None]:
    """PyYAML's pure-Python reader alone: (tree, None) or (None, the error)."""
    with monkeypatch.context() as m:
        m.setattr(source, "_read_fast", lambda *args: source._UNREAD)
        try:
            return source.parse_yaml(text, "spec.yaml"), None
        except SpecError as exc:
            return None, str(exc)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types, at equal positions, all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return (
            list(a) == list(b)
            and (a.location, a.positions, a.key_positions) == (b.location, b.positions, b.key_positions)
            and all(same(a[k], b[k]) for k in a)
        )
    if isinstance(a, list):
        return (
            len(a) == len(b)
            and (a.location, a.positions) == (b.location, b.positions)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and a != a:  # NaN
        return b != b
    return bool(a == b)


def agrees(text: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    """The fast reader declines `text`, or reads what the reference reads."""
    fast = source._read_fast(text, "spec.yaml", None)
    if fast is source._UNREAD:
        return True
    tree, error = reference(text, monkeypatch)
    return error is None and same(fast, tree)


@needs_libyaml
@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_fast_reader_reads_every_zoo_spec_as_pyyaml_does(path: Path, monkeypatch: pytest.MonkeyPatch):
    text = path.read_text()
    fast = source._read_fast(text, "spec.yaml", None)
    assert fast is not source._UNREAD  # the zoo is read fast, or the speed is gone
    tree, error = reference(text, monkeypatch)
    assert error is None and same(fast, tree)


@needs_libyaml
def test_fast_reader_agrees_with_pyyaml_on_every_test_spec(monkeypatch: pytest.MonkeyPatch):
    disagree = [p.name for p in TEST_SPECS if not agrees(p.read_text(errors="replace"), monkeypatch)]
    assert disagree == []


MUTATIONS = [
    *":-[]{}#&*!|>'\"\t \n?,%@`\r\\<=~.0xeé",
    "\u2028", "\x85", "\ufeff", "<<: *a", "&a ", "*a", "!!int ", "!!str ", "!!float ", "\n  ", "---\n",
    "...\n", "- ", ": ", ":x", "x:", "::", '""', "''", "|-\n  ", ">\n ", "~", "null", "0x1F", "0o17",
    "1_000", "1e3", ".5", "-.inf", ".NaN", "2001-12-14", "yes", "on", "<<",
]  # fmt: skip


def mutated(texts: list[str], count: int, seed: int) -> list[str]:
    """`count` texts, each a spec with one to three random edits: YAML's own characters inserted,
    characters deleted, lines repeated elsewhere."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        t = rng.choice(texts)[:1500]
        for _ in range(rng.randint(1, 3)):
            pos, op = rng.randrange(len(t) + 1), rng.random()
            if op < 0.45:
                t = t[:pos] + rng.choice(MUTATIONS) + t[pos:]
            elif op < 0.75:
                t = t[:pos] + t[pos + 1 :]
            else:
                lines = t.split("\n")
                lines.insert(rng.randrange(len(lines)), rng.choice(lines))
                t = "\n".join(lines)
        out.append(t)
    return out


def _corpus() -> list[str]:
    return [p.read_text(errors="replace") for p in [*ZOO[:8], *TEST_SPECS]]


@needs_libyaml
def test_fast_reader_agrees_with_pyyaml_on_mutated_specs(monkeypatch: pytest.MonkeyPatch):
    texts = mutated(_corpus(), 300, seed=0)
    disagree = [t for t in texts if not agrees(t, monkeypatch)]
    assert disagree == []
    answered = sum(source._read_fast(t, "spec.yaml", None) is not source._UNREAD for t in texts)
    assert answered > 50  # the comparison covered texts the fast reader did read


@needs_libyaml
@pytest.mark.slow
def test_fast_reader_agrees_with_pyyaml_on_many_mutated_specs(monkeypatch: pytest.MonkeyPatch):
    for seed in range(1, 6):
        texts = mutated(_corpus(), 1500, seed)
        assert [t for t in texts if not agrees(t, monkeypatch)] == []


@needs_libyaml
@pytest.mark.parametrize(
    "text",
    [
        "name: t\nstem:\t\n  - relu\n",  # a tab libyaml takes as a separator, PyYAML refuses
        "\ufeffname: t\n",  # a byte-order mark
        "name: t\ninput: {channels: 3, size: }\n",  # a value left out in a flow mapping
        "name: t\nstem:\n  - conv: {out?: 8}\n",  # '?' in a flow mapping's key
        "a: " + "[" * 63 + "1" + "]" * 63,  # nested one level deeper than allowed
        "a: &x 1\nb: &x 2\n",  # an anchor defined twice
        "a: !!int ''\n",
    ],
    ids=["tab", "bom", "left-out", "question-mark", "too-deep", "anchor-twice", "int-tag"],
)
def test_texts_libyaml_reads_unlike_pyyaml_go_to_pyyaml(text: str, monkeypatch: pytest.MonkeyPatch):
    assert source._read_fast(text, "spec.yaml", None) is source._UNREAD
    tree, error = reference(text, monkeypatch)
    try:
        got, got_error = source.parse_yaml(text, "spec.yaml"), None
    except SpecError as exc:
        got, got_error = None, str(exc)
    assert got_error == error and (error is not None or same(got, tree))


@needs_libyaml
@pytest.mark.parametrize("levels", range(60, 65))
def test_nesting_limit_is_the_same_for_both_readers(levels: int, monkeypatch: pytest.MonkeyPatch):
    for text in (
        "a: " + "[" * levels + "1" + "]" * levels,
        "x: &a [1]\na: " + "[" * levels + "*a" + "]" * levels,  # an alias at the deepest level
    ):
        fast = source._read_fast(text, "spec.yaml", None)
        _, error = reference(text, monkeypatch)
        assert (fast is not source._UNREAD) == (error is None)


def test_an_int_tag_on_empty_text_is_a_located_error():
    # PyYAML's int constructor indexes the empty text: an IndexError (a traceback) before
    with pytest.raises(SpecSyntaxError, match=r"'' is not a valid !!int value") as info:
        source.parse_yaml('name: t\nclasses: !!int ""\n', "spec.yaml")
    where = info.value.problems[0].location
    assert (where.line, where.col) == (2, 10)


def test_the_ascii_check_refuses_what_the_full_check_does():
    # ASCII text (most specs) takes a shorter character check: the same answer for every character
    for code in range(128):
        text = f"name: a{chr(code)}b\n"
        assert source._fast_readable(text) == (source._NOT_FAST.search(text) is None), code
    assert not source._fast_readable("name: a\tb\n") and not source._fast_readable("name: \ufeffx\n")
    assert source._fast_readable("name: caf\u00e9\n")
