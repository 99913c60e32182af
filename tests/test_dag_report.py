"""`diff` and `report` on graph specs: a diff names the edges that change (what an item reads), and the
commands that read a spec work on graph specs (`report` in every format, `explain`, `diagram`).

The references are the specs' own text: the second FPN below differs from the first in exactly two
`from:` lines (the order of a merge's inputs, and the level the extra pooled output reads).
"""

from __future__ import annotations

import json

import pytest

from netspec.diff import diff_specs, to_markdown
from netspec.resolve import loads_spec

from .conftest import run_cli
from .test_dag_export import FPN

pytestmark = pytest.mark.usefixtures("one_thread_module")

FPN_B = FPN.replace(
    "add: {name: inner0, from: [fpn.inner_blocks.0.0, top_down]}",
    "add: {name: inner0, from: [top_down, fpn.inner_blocks.0.0]}",
).replace(
    "maxpool: {name: pool, from: fpn.layer_blocks.1.0,",
    "maxpool: {name: pool, from: fpn.layer_blocks.0.0,",
)


def test_diff_names_the_changed_edges():
    assert FPN_B.count("from:") == FPN.count("from:") and FPN_B != FPN
    d = diff_specs(loads_spec(FPN), loads_spec(FPN_B))
    edges = {e.path: (e.a, e.b) for e in d.edges}
    assert edges == {
        "inner0": (("fpn.inner_blocks.0.0", "top_down"), ("top_down", "fpn.inner_blocks.0.0")),
        "pool": (("fpn.layer_blocks.1.0",), ("fpn.layer_blocks.0.0",)),
    }
    assert d.same_state_dict, "rewiring moves no weight"
    assert [(r.path, r.fields) for r in d.rows] == [("pool", ["output_shape"])]
    assert "| pool | fpn.layer_blocks.1.0 | fpn.layer_blocks.0.0 |" in to_markdown(d)


def test_diff_of_a_spec_with_itself_has_no_edges():
    d = diff_specs(loads_spec(FPN), loads_spec(FPN))
    assert d.edges == [] and d.rows == [] and d.same_state_dict


def test_cli_diff_json_lists_edges(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(FPN)
    b.write_text(FPN_B)
    result = run_cli("diff", str(a), str(b), "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {e["path"] for e in data["edges"]} == {"inner0", "pool"}
    result = run_cli("diff", str(a), str(b))
    assert result.exit_code == 0 and "2 items read other outputs" in result.stdout


@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_report_of_a_graph_spec_names_holders_and_references(fmt, tmp_path):
    """Rows of a graph list carry their whole dotted name (not the holder's last `0`) and what they read
    where it is not the row above, as the spec's `from:` lines say; the peak activation memory is shown."""
    spec = tmp_path / "fpn.yaml"
    spec.write_text(FPN)
    result = run_cli("report", str(spec), "-f", fmt)
    assert result.exit_code == 0, result.output
    out = result.stdout
    if fmt == "json":
        data = json.loads(out)
        rows = {r["path"]: r for r in data["layers"]}
        assert rows["inner0"]["inputs"] == ["fpn.inner_blocks.0.0", "top_down"]
        assert rows["fpn.layer_blocks.0.0"]["inputs"] == []
        assert data["total"]["peak_activation_bytes"] > 0
    elif fmt == "markdown":
        assert "`fpn.inner_blocks.1.0` <- `body.layer2`" in out
        assert "`inner0` <- `fpn.inner_blocks.0.0`, `top_down`" in out
        assert "| `0` |" not in out, "a holder's last component alone says nothing"
        assert "peak activation memory" in out
    else:
        assert "fpn.inner_blocks.1.0 <- body.layer2" in out
        assert "peak activation memory:" in out


def test_html_report_and_card_of_a_graph_spec(tmp_path):
    spec = tmp_path / "fpn.yaml"
    spec.write_text(FPN)
    result = run_cli("report", str(spec), "-f", "html", "-o", str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text()
    assert "peak activation memory" in html and "inner0 &lt;- fpn.inner_blocks.0.0, top_down" in html
    assert html.count('class="edge reference"') == 7, "the diagram draws the seven references"
    result = run_cli("card", str(spec), "-o", str(tmp_path / "README.md"))
    assert result.exit_code == 0, result.output
    card = (tmp_path / "README.md").read_text()
    assert "| peak activation memory |" in card and "linkStyle" in card
