"""`netspec diff`, `report --check`, `diagram` and `new` (issue 6)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import netspec

from .conftest import fvcore_macs, n_params, run_cli

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


cli = run_cli


# -- diff ------------------------------------------------------------------------------------------


def test_diff_resnet50_to_b_same_params_more_macs_same_state_dict():
    result = cli("diff", "resnet50", "resnet50_b", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["totals"]["params"]["delta"] == 0
    assert data["totals"]["macs"]["delta"] == 4_111_512_576 - 3_879_247_872
    assert data["totals"]["macs"]["relative"] == pytest.approx(232_264_704 / 3_879_247_872)
    assert data["state_dict"] == {"same": True, "changes": []}
    changed = {r["path"] for r in data["layers"]}
    # the stride moves from the 1x1 to the 3x3 in each downsampling block's first conv
    assert {"layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"} <= changed
    assert all(r["change"] == "changed" for r in data["layers"])
    assert all(r["params_delta"] == 0 for r in data["layers"])


def test_diff_b_to_d_is_bag_of_tricks_table5_and_shifts_keys():
    result = cli("diff", "resnet50_b", "resnet50_d", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    totals = data["totals"]

    # independent reference: timm's resnet50d against torchvision's resnet50 (= ResNet-50-B)
    import timm
    import torchvision

    tv, tm = torchvision.models.resnet50(weights=None), timm.create_model("resnet50d", pretrained=False)
    params_delta = n_params(tm) - n_params(tv)
    macs_delta = fvcore_macs(tm, (3, 224, 224)) - fvcore_macs(tv, (3, 224, 224))
    assert params_delta == 19_232 and macs_delta == 241_246_208
    assert totals["params"]["delta"] == params_delta
    assert totals["macs"]["delta"] == macs_delta

    keys = {(c["change"], c["key"]): c for c in data["state_dict"]["changes"]}
    stem = keys["reshaped", "conv1.weight"]
    assert stem["a_shape"] == [64, 3, 7, 7] and stem["b_shape"] == [32, 3, 3, 3]
    assert ("reshaped", "bn1.weight") in keys
    assert ("added", "conv2.weight") in keys and ("added", "conv3.weight") in keys
    for stage, cin, cout in (("layer2", 256, 512), ("layer3", 512, 1024), ("layer4", 1024, 2048)):
        conv = keys["moved", f"{stage}.0.downsample.0.weight"]
        assert conv["new_key"] == f"{stage}.0.downsample.1.weight"
        assert conv["a_shape"] == conv["b_shape"] == [cout, cin, 1, 1]
        assert keys["moved", f"{stage}.0.downsample.1.running_var"]["new_key"] == (
            f"{stage}.0.downsample.2.running_var"
        )
    # layer1's shortcut does not downsample: untouched
    assert not any(k.startswith("layer1.") for _, k in keys)
    rows = {r["path"]: r for r in data["layers"]}
    assert rows["conv2"]["change"] == "added"
    assert rows["layer2.0.downsample.0"]["a"]["kind"] == "conv"
    assert rows["layer2.0.downsample.0"]["b"]["kind"] == "avgpool"


def test_diff_table_and_markdown():
    md = cli("diff", "resnet50", "resnet50_b", "-f", "markdown", "--depth", "1")
    assert md.exit_code == 0
    assert "| MACs | 3,879,247,872 | 4,111,512,576 | +232,264,704 | +5.99% |" in md.stdout
    assert "state_dict: same keys and shapes." in md.stdout
    table = cli("diff", "resnet18", "resnet34")
    assert table.exit_code == 0
    assert "layer3.5" in table.stdout and "added" in table.stdout
    assert cli("diff", "resnet18", "nosuch.yaml").exit_code == 2


# -- report --check --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_report_check_agrees_on_zoo_specs(name):
    result = cli("report", name, "--check")
    assert result.exit_code == 0, result.output
    assert "ok: all" in result.stdout and "disagree" not in result.stdout


EVEN_SAME = """\
name: even_same
input: {channels: 3, size: 32}
classes: 10
defaults:
  conv: {norm: batchnorm, act: relu}
stem:
  - conv: {out: 8, kernel: 3, name: conv1}
  - conv: {out: 8, kernel: 4, padding: same, name: conv2}
head:
  - avgpool: {kernel: global, name: avgpool}
  - flatten: {}
  - linear: {out: "${classes}", name: fc}
"""


def test_report_check_reports_the_even_kernel_same_padding_conv(tmp_path):
    spec = tmp_path / "even_same.yaml"
    spec.write_text(EVEN_SAME)
    result = cli("report", str(spec), "--check")
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("disagree")]
    assert len(lines) == 1 and lines[0].startswith("disagree  conv2 (conv): fvcore 0 MACs")
    assert "aten::_convolution_mode" in result.stdout
    data = json.loads(cli("report", str(spec), "--check", "-f", "json").stdout)
    (bad,) = data["disagreements"]
    assert bad["path"] == "conv2" and bad["macs"] == 8 * 8 * 4 * 4 * 32 * 32
    assert bad["torch_agrees"] and not bad["fvcore_agrees"]


# -- diagram ---------------------------------------------------------------------------------------

NODE = re.compile(r"^\s*(n\d+) \[label=", re.M)
EDGE = re.compile(r"^\s*(n\d+) -> (n\d+) \[(.*)\];$", re.M)


def parse_dot(text: str) -> tuple[set[str], list[tuple[str, str, str]]]:
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    stripped = re.sub(r'"(\\.|[^"\\])*"', '""', text)  # braces inside labels do not count
    depth = 0
    for ch in stripped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    nodes = set(NODE.findall(text))
    edges = EDGE.findall(text)
    assert edges and all(a in nodes and b in nodes for a, b, _ in edges)
    return nodes, edges


def dot_of(*args: str, tmp_path: Path) -> str:
    out = tmp_path / "net.dot"
    result = cli("diagram", *args, "-o", str(out))
    assert result.exit_code == 0, result.output
    return out.read_text()


def test_diagram_resnet50_clusters_and_shortcuts(tmp_path):
    text = dot_of("resnet50", tmp_path=tmp_path)
    _nodes, edges = parse_dot(text)
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        assert f'label="{stage}";' in text
    assert 'label="layer3.5: bottleneck"' in text
    identity = [e for e in edges if "dashed" in e[2]]
    projection = [e for e in edges if "firebrick" in e[2] and "dashed" not in e[2]]
    assert len(identity) == 16 - 4 and len(projection) == 4  # 16 blocks, 4 with a 1x1 projection
    assert all('label="256x56x56"' in e[2] for e in identity[:2])


def test_diagram_googlenet_inception_has_four_branches(tmp_path):
    text = dot_of("googlenet", tmp_path=tmp_path)
    _nodes, edges = parse_dot(text)
    concat = re.search(r'(n\d+) \[label="concat"', text.split('label="inception3a: inception"')[1])
    assert concat
    into = [e for e in edges if e[1] == concat.group(1)]
    assert len(into) == 4
    assert sorted(re.search(r'label="([^"]*)"', e[2]).group(1) for e in into) == sorted(
        ["64x28x28", "128x28x28", "32x28x28", "32x28x28"]
    )
    assert "aux1 (aux, training only)" in text


def test_diagram_collapse_and_depth_reduce_nodes(tmp_path):
    full, _ = parse_dot(dot_of("resnet50", tmp_path=tmp_path))
    collapsed_text = dot_of("resnet50", "--collapse", tmp_path=tmp_path)
    collapsed, _ = parse_dot(collapsed_text)
    shallow, _ = parse_dot(dot_of("resnet50", "--depth", "0", tmp_path=tmp_path))
    assert len(collapsed) < len(full) // 3 and len(shallow) < len(full) // 3
    assert "bottleneck x6" in collapsed_text


@pytest.mark.parametrize("name", ["net.png", "net.pdf"])
def test_diagram_png_pdf_without_graphviz_fail_naming_the_choices_writing_nothing(
    tmp_path, monkeypatch, name
):
    import netspec.draw.output

    monkeypatch.setattr(netspec.draw.output, "dot_binary", lambda: None)
    result = cli("diagram", "lenet5", "-o", str(tmp_path / name))
    assert result.exit_code == 2
    message = result.stderr
    assert "graphviz" in message.lower() and "install" in message
    assert all(choice in message for choice in (".svg", ".dot", "-f mermaid"))
    assert list(tmp_path.iterdir()) == []  # never a silent .dot instead


def test_diagram_svg_needs_no_graphviz(tmp_path, monkeypatch):
    import netspec.diagram
    import netspec.draw.output

    def no_dot() -> None:
        raise AssertionError("an .svg must not call Graphviz")

    monkeypatch.setattr(netspec.draw.output, "dot_binary", no_dot)
    monkeypatch.setattr(netspec.diagram, "dot_binary", no_dot)
    monkeypatch.setenv("PATH", "")
    result = cli("diagram", "lenet5", "-o", str(tmp_path / "net.svg"))
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["net.svg"]
    assert (tmp_path / "net.svg").read_text().startswith("<?xml")


# -- new -------------------------------------------------------------------------------------------


def test_new_extends_a_zoo_spec_and_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("new", "my_resnet", "--from", "resnet50")
    assert result.exit_code == 0, result.output
    path = tmp_path / "my_resnet.yaml"
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    assert "\nname: my_resnet\n" in text and "\nextends: " in text and "#   tricks:" in text
    spec = netspec.load_spec(path)
    assert spec.name == "my_resnet"
    assert netspec.analyze(spec).params == 25_557_032
    again = cli("new", "my_resnet", "--from", "resnet50")
    assert again.exit_code == 2 and "exists" in again.output
    assert path.read_text() == text
    other = tmp_path / "sub"
    other.mkdir()
    assert cli("new", "x", "--from", "vgg11", "-o", str(other / "x.yaml")).exit_code == 0
    assert netspec.analyze(netspec.load_spec(other / "x.yaml")).params > 0
    assert cli("new", "y", "--from", "nosuch").exit_code == 2
