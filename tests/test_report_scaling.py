"""`netspec report` shows the totals at other input sizes; each equals fvcore's count of the
torchvision model at that size. The JSON report is versioned."""

from __future__ import annotations

import json

import torchvision
from typer.testing import CliRunner

from netspec.cli import app

from .conftest import fvcore_macs


def test_report_json_scaling_equals_fvcore_on_torchvision_at_each_size():
    result = CliRunner().invoke(app, ["report", "resnet50_b", "-f", "json", "--depth", "0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["format"] == "netspec-report/1"
    sizes = [tuple(p["size"]) for p in data["scaling"]]
    assert sizes == [(160, 160), (224, 224), (320, 320)]
    tv = torchvision.models.resnet50(weights=None)
    for point in data["scaling"]:
        h, w = point["size"]
        assert point["macs"] == fvcore_macs(tv, (3, h, w)), point["size"]
    assert data["scaling"][1]["macs"] == data["total"]["macs"]


def test_report_scaling_names_sizes_a_network_does_not_accept():
    result = CliRunner().invoke(app, ["report", "lenet5", "-f", "json", "--scaling", "16,32"])
    data = json.loads(result.output)
    too_small, natural = data["scaling"]
    assert too_small["macs"] is None and "larger than the padded input" in too_small["error"]
    assert natural["params"] == 61_706


def test_report_scaling_can_be_turned_off_and_rejects_garbage():
    runner = CliRunner()
    data = json.loads(runner.invoke(app, ["report", "lenet5", "-f", "json", "--scaling", "none"]).output)
    assert "scaling" not in data
    bad = runner.invoke(app, ["report", "lenet5", "--scaling", "12,x"])
    assert bad.exit_code == 2
