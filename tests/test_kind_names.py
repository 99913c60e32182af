"""No code outside netspec/layers/ names a built-in layer kind by string.

Everything netspec knows about a kind lives in the kind's own file (a trait or a method of its
LayerKind); the compiler, the backends, the reports and the diagrams ask the registry. An
`if kind == "conv"` anywhere else is the leak that makes adding a kind touch five files, so this test
scans every module of the package outside layers/ for a string constant equal to a kind's name.
"""

from __future__ import annotations

import ast

from netspec.layers import KINDS

from .conftest import ROOT

PACKAGE = ROOT / "netspec"

# (file relative to netspec/, string): why that string there is not a layer kind. Keep it tiny.
ALLOWED: dict[tuple[str, str], str] = {
    ("export/names.py", "identity"): "the generated forward's name for the shortcut tensor (`identity = x`, "
    "as torchvision's Bottleneck writes it), not the layer kind",
}


def builtin_kinds() -> set[str]:
    return set(KINDS) - set(KINDS.plugins)


def in_literal_types(tree: ast.AST) -> set[int]:
    """ids of the constants inside `Literal[...]`: a field's vocabulary (a shortcut mode named
    "identity"), which a spec writes and validation checks, not a lookup of a kind."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            value = node.value
            name = value.attr if isinstance(value, ast.Attribute) else getattr(value, "id", None)
            if name == "Literal":
                found.update(id(c) for c in ast.walk(node.slice) if isinstance(c, ast.Constant))
    return found


def kind_names_by_string(kinds: set[str]) -> list[str]:
    """`file:line: 'kind'` for each string constant outside netspec/layers/ equal to a kind's name."""
    hits: list[tuple[str, int, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("layers/"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = in_literal_types(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in kinds
                and id(node) not in skip
                and (rel, node.value) not in ALLOWED
            ):
                hits.append((rel, node.lineno, node.value))
    return [f"netspec/{rel}:{line}: {text!r}" for rel, line, text in sorted(hits)]


def test_no_kind_name_as_a_string_outside_layers():
    assert kind_names_by_string(builtin_kinds()) == []


def test_the_allow_list_is_used():
    """An entry that no longer matches anything is removed, so the list stays the few real cases."""
    for (rel, text), why in ALLOWED.items():
        source = (PACKAGE / rel).read_text()
        constants = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)}
        assert text in constants, f"netspec/{rel} no longer has {text!r} ({why}): drop it from ALLOWED"


def test_the_scan_finds_a_kind_name(tmp_path, monkeypatch):
    """The scan is not vacuous: a comparison with a kind's name, in a module outside layers/, is found;
    the same word in a `Literal[...]` vocabulary is not."""
    package = tmp_path / "netspec"
    (package / "layers").mkdir(parents=True)
    (package / "layers" / "conv.py").write_text('name = "conv"\n')
    (package / "diagram.py").write_text(
        "from typing import Literal\n\n"
        'Mode = Literal["identity", "projection"]\n\n\n'
        'def is_conv(kind: str) -> bool:\n    return kind == "conv"\n'
    )
    monkeypatch.setattr(f"{__name__}.PACKAGE", package)
    assert kind_names_by_string({"conv", "identity"}) == ["netspec/diagram.py:7: 'conv'"]
