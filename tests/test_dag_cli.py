"""The commands on a small graph classifier (a residual add and a concat written with `from:`):
validate, report --check (every layer against fvcore and FlopCounterMode), explain (its YAML loads
back to the same network), train (a run directory whose checkpoint loads into the built module),
compile (TorchScript equal to the built module), and features=[...] on a graph spec."""

from __future__ import annotations

import json

import pytest
import torch

import netspec

from .conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_thread_module")

GRAPHNET = """\
name: graphnet
input: {channels: 1, size: 8}
classes: 10
stem:
  - conv: {out: 8, kernel: 3, padding: 1, name: c1}
  - relu: {name: r1}
stages:
  - conv: {out: 8, kernel: 3, padding: 1, name: c2}
  - relu: {name: r2}
  - add: {from: [r1, r2], name: skip}
  - conv: {out: 8, kernel: 1, name: side, from: r1}
  - concat: {from: [skip, side], name: both}
head:
  - avgpool: {kernel: global, name: pool}
  - flatten: {}
  - linear: {out: "${classes}", name: fc}
train: {epochs: 1, batch_size: 32, optimizer: {name: sgd, lr: 0.05}}
"""


@pytest.fixture
def graphnet(tmp_path):
    path = tmp_path / "graphnet.yaml"
    path.write_text(GRAPHNET)
    return path


def test_validate_and_check_a_graph_spec(graphnet):
    assert run_cli("validate", str(graphnet)).exit_code == 0
    result = run_cli("report", str(graphnet), "--check")
    assert result.exit_code == 0, result.output
    assert "agree with fvcore" in result.output


def test_the_json_report_names_each_rows_inputs(graphnet):
    result = run_cli("report", str(graphnet), "-f", "json")
    rows = {row["path"]: row for row in json.loads(result.output)["layers"]}
    assert rows["both"]["inputs"] == ["skip", "side"] and rows["side"]["inputs"] == ["r1"]
    assert rows["both"]["output_shape"] == [16, 8, 8]


def test_explain_writes_yaml_that_loads_back_to_the_same_network(graphnet, tmp_path):
    result = run_cli("explain", str(graphnet))
    again = tmp_path / "again.yaml"
    again.write_text(result.output)
    a, b = netspec.build(netspec.load_spec(graphnet), seed=0), netspec.build(netspec.load_spec(again), seed=0)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_train_a_graph_classifier(graphnet, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", str(graphnet), "--out", str(out), "--data", "synthetic:64", "--epochs", "1")
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(next(out.glob("**/last*.pt")), weights_only=True)
    state = checkpoint.get("model", checkpoint.get("state_dict", checkpoint))
    netspec.build(netspec.load_spec(graphnet)).load_state_dict(state, strict=True)


def test_compile_a_graph_classifier_to_torchscript(graphnet, tmp_path):
    target = tmp_path / "g.ts"
    assert run_cli("compile", str(graphnet), "-o", str(target), "--seed", "0").exit_code == 0
    model = netspec.build(netspec.load_spec(graphnet), seed=0).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(target))(x), model(x))


def test_features_of_a_graph_spec(graphnet):
    spec = netspec.load_spec(graphnet)
    model = netspec.build(spec, seed=0, features=["side", "r2"]).eval()
    full = netspec.build(spec, seed=0).eval()
    x = torch.randn(1, 1, 8, 8)
    side, r2 = model(x)
    r1 = full.r1(full.c1(x))
    torch.testing.assert_close(side, full.side(r1))
    torch.testing.assert_close(r2, full.r2(full.c2(r1)))
    assert model.feature_info.module_name() == ["side", "r2"]
    with pytest.raises(netspec.SpecError, match="'both' is a merge"):
        netspec.build(spec, features=["both"])
