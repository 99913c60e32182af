"""The command line: formats, exit codes (0 ok, 2 user error), messages without tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import netspec

from .conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "cli.py"
RESNET50 = str(ROOT / "specs" / "resnet50.yaml")


cli = run_cli


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}
    env.pop("NETSPEC_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, str(CLI), *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def resnet50_json() -> dict:
    result = cli("report", RESNET50, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- report ----------------------------------------------------------------------------------------


def test_report_json_has_totals_shape_and_layers(resnet50_json: dict):
    data = resnet50_json
    a = netspec.analyze(netspec.load_spec(RESNET50))
    total = data["total"]
    assert total["params"] == a.params == 25_557_032
    assert total["macs"] == a.macs
    assert total["flops"] == a.flops > 2 * a.macs
    assert data["output_shape"] == [1000]
    assert data["input_shape"] == [3, 224, 224]
    assert total["layers"] == a.layers
    assert total["receptive_field"] == "global"
    layers = data["layers"]
    assert len(layers) == len(a.rows)
    first = layers[0]
    assert first["path"] == "conv1" and first["kind"] == "conv"
    assert first["output_shape"] == [64, 112, 112] and first["params"] == 64 * 3 * 49
    assert {"path", "kind", "params", "macs", "flops", "output_shape", "receptive_field"} <= set(first)
    # rows nest: the leaf layers add up to the totals
    leaves = [r for r in layers if r["is_layer"]]
    assert sum(r["params"] for r in leaves) == total["params"]
    assert sum(r["macs"] for r in leaves) == total["macs"]


def test_report_json_depth_keeps_top_level_rows():
    result = cli("report", RESNET50, "--format", "json", "--depth", "0")
    data = json.loads(result.stdout)
    paths = [r["path"] for r in data["layers"]]
    assert paths == ["conv1", "bn1", "relu1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool",
                     "flatten1", "fc"]  # fmt: skip
    assert sum(r["params"] for r in data["layers"]) == data["total"]["params"]


def test_report_markdown_is_a_table():
    result = cli("report", RESNET50, "--format", "markdown", "--depth", "1")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("**resnet50**") and "25,557,032 params" in lines[0]
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| layer | kind | output | params | MACs")
    assert re.fullmatch(r"\|(---:?\|)+", table[1].replace(" ", ""))
    assert all(row.count("|") == table[0].count("|") for row in table)
    assert any("`layer1`" in row for row in table)
    assert table[-1].startswith("| **total**") and "**25,557,032**" in table[-1]


def test_report_table():
    result = cli("report", RESNET50, "--depth", "0")
    assert result.exit_code == 0
    for word in ("conv1", "layer4", "total", "25,557,032", "1000"):
        assert word in result.stdout


def test_report_zoo_name():
    by_name = cli("report", "resnet50", "--format", "json")
    assert json.loads(by_name.stdout)["total"]["params"] == 25_557_032


@pytest.mark.parametrize(
    "size, hw", [("3x160x160", (160, 160)), ("160", (160, 160)), ("160x192", (160, 192))]
)
def test_report_input_changes_the_macs(resnet50_json: dict, size: str, hw: tuple[int, int]):
    result = cli("report", RESNET50, "--format", "json", "--input", size)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["input_shape"] == [3, *hw]
    assert data["total"]["params"] == resnet50_json["total"]["params"]
    assert data["total"]["macs"] < resnet50_json["total"]["macs"]
    a = netspec.analyze(netspec.load_spec(RESNET50), input_size=hw)
    assert data["total"]["macs"] == a.macs
    assert data["layers"][0]["output_shape"] == [64, hw[0] // 2, hw[1] // 2]


def test_report_input_channels():
    data = json.loads(cli("report", RESNET50, "--format", "json", "--input", "1x224x224").stdout)
    assert data["input_shape"] == [1, 224, 224]
    assert data["layers"][0]["params"] == 64 * 1 * 49


@pytest.mark.parametrize("bad", ["abc", "0", "3x0x5", "1x2x3x4", "99999999", "-5", "3x", "x", "3.5", "1e3"])
def test_report_input_garbage_exits_2_with_a_message(bad: str):
    result = cli("report", RESNET50, "--input", bad)
    assert result.exit_code == 2
    assert "--input" in result.output and "Traceback" not in result.output


def test_report_input_too_small_for_the_network(tmp_path: Path):
    path = tmp_path / "valid_convs.yaml"
    path.write_text(
        "name: v\ninput: {channels: 3, size: 32}\nstem:\n"
        "  - conv: {out: 8, kernel: 5, padding: 0}\n  - maxpool: 2\n"
        "  - conv: {out: 8, kernel: 5, padding: 0}\n"
    )
    assert cli("report", str(path), "--input", "14").exit_code == 0
    result = cli("report", str(path), "--input", "12")
    assert result.exit_code == 2
    assert result.output.startswith(f"{path}:6:")
    assert "conv2 (conv): kernel 5x5 is larger than the padded input 4x4" in result.output


def test_report_input_garbage_real_process():
    proc = run("report", RESNET50, "--input", "banana")
    assert proc.returncode == 2
    assert "--input 'banana' is not a size" in proc.stderr


def test_report_set_override():
    data = json.loads(cli("report", RESNET50, "--format", "json", "--set", "stages.3.depth=1").stdout)
    assert data["total"]["params"] < 25_557_032
    bad = cli("report", RESNET50, "--set", "stages.7.depth=1")
    assert bad.exit_code == 2 and "not an index of a list of 4" in bad.output


def test_report_bad_spec_points_at_the_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ninput: {channels: 3, size: 8}\nstem:\n  - conv: {out: 8, kernal: 3}\n")
    result = cli("report", str(path))
    assert result.exit_code == 2
    assert result.output.startswith(f"{path}:4:")
    assert "did you mean 'kernel'" in result.output


# -- validate ------------------------------------------------------------------------------------


def test_validate_ok_on_good_specs():
    specs = sorted((ROOT / "specs").glob("*.yaml"))
    result = cli("validate", *map(str, specs))
    assert result.exit_code == 0, result.output
    ok = [line for line in result.stdout.splitlines() if line.startswith("ok")]
    assert len(ok) == len(specs)
    assert f"ok  {RESNET50}: 25,557,032 params, output 1000" in result.stdout


def test_validate_mixed_good_and_bad(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nstem: [convv]\n")
    result = cli("validate", RESNET50, str(bad))
    assert result.exit_code == 2
    assert "ok  " in result.stdout
    assert f"{bad}:2:8: stem.0: unknown layer kind 'convv'" in result.output


def test_validate_real_process_ok_and_error(tmp_path: Path):
    proc = run("validate", "resnet50")
    assert proc.returncode == 0 and proc.stdout.startswith("ok  resnet50")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ninput: {channels: 3, size: 8}\nstem:\n  - conv: {out: 8, groups: 3}\n")
    proc = run("validate", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{bad}:4:") and "groups 3" in proc.stderr


# -- zoo, kinds, explain, usage errors -------------------------------------------------------------


def test_zoo_lists_resnet50():
    table = cli("zoo")
    assert table.exit_code == 0 and "resnet50" in table.stdout and "25,557,032" in table.stdout
    entries = json.loads(cli("zoo", "--format", "json").stdout)
    by_name = {e["name"]: e for e in entries}
    assert by_name["resnet50"]["params"] == 25_557_032
    assert by_name["resnet50"]["input"] == "3x224x224"
    assert not [e for e in entries if str(e["description"]).startswith("INVALID")]
    markdown = cli("zoo", "--format", "markdown").stdout
    assert "| resnet50 | 3x224x224 | 25,557,032 |" in markdown


def test_kinds_lists_layer_kinds():
    out = cli("kinds").stdout
    for kind in ("conv", "maxpool", "avgpool", "batchnorm", "linear", "dropout", "flatten", "sequential"):
        assert re.search(rf"^{kind}\s", out, re.M), kind


def test_explain_prints_the_resolved_spec():
    result = cli("explain", RESNET50, "--set", "stages.0.depth=2")
    assert result.exit_code == 0
    import yaml

    data = yaml.safe_load(result.stdout)
    assert data["name"] == "resnet50" and data["stages"][0]["depth"] == 2


@pytest.mark.parametrize(
    "args",
    [["nonsense"], ["report"], ["report", RESNET50, "--format", "pdf"], ["report", RESNET50, "--depth", "x"]],
)
def test_usage_errors_exit_2(args: list[str]):
    result = cli(*args)
    assert result.exit_code == 2


def test_usage_error_real_process():
    proc = run("report", RESNET50, "--format", "pdf")
    assert proc.returncode == 2
    assert "pdf" in proc.stderr
