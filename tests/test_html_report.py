"""`netspec report -f html`: one self-contained HTML file. Checked with a conforming HTML parser
(html5lib, strict: any parse error fails), against the JSON report's rows and torchvision's parameter
count, against the run's own metrics files, for hostile text, and (when Chromium is installed) in a
real browser."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import html5lib
import pytest
import yaml

import netspec
from netspec.report_html.chart import ticks
from netspec.run_record import read_run

from .conftest import SPECS, n_params, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)"> & </details></div>'


def parse(text: str):
    """The document as an ElementTree, parsed by html5lib in strict mode: a parse error raises."""
    return local_names(html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text))


def local_names(doc):
    """Inline SVG's elements come namespaced (`{http://www.w3.org/2000/svg}rect`): keep the local name."""
    for e in doc.iter():
        if isinstance(e.tag, str):
            e.tag = e.tag.rsplit("}", 1)[-1]
    return doc


def cli_html(tmp_path: Path, *args: str) -> str:
    out = tmp_path / "r.html"
    result = run_cli("report", *args, "-f", "html", "-o", str(out))
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def rows(doc) -> list:
    return [e for e in doc.iter() if "data-path" in e.attrib and "row" in e.get("class", "").split()]


def text_of(e) -> str:
    return "".join(e.itertext())


def test_html_report_is_conforming_html_with_every_section(tmp_path):
    text = cli_html(tmp_path, "resnet18")
    doc = parse(text)  # strict: raises on any parse error
    assert text.startswith("<!DOCTYPE html>")
    ids = {e.get("id") for e in doc.iter() if e.get("id")}
    assert {"diagram", "layers", "scaling"} <= ids
    assert doc.find(".//head/meta[@charset='utf-8']") is not None
    svgs = [e for e in doc.iter() if e.tag == "svg"]
    nodes = [e for e in svgs[0].iter("g") if "node" in e.get("class", "").split()]
    assert len(nodes) > 10  # the diagram netspec drew
    assert "training" not in ids  # no run given


def test_html_report_rows_are_the_json_reports_and_totals_match_torchvision(tmp_path):
    import torch
    import torchvision

    text = cli_html(tmp_path, "resnet18")
    data = json.loads(run_cli("report", "resnet18", "-f", "json").output)
    doc = parse(text)
    found = rows(doc)
    assert [r.get("data-path") for r in found] == [layer["path"] for layer in data["layers"]]
    for row, layer in zip(found, data["layers"], strict=True):
        cells = [text_of(s) for s in row.findall("span")]
        assert cells[1] == layer["kind"] and cells[3] == f"{layer['params']:,}", layer["path"]
        assert int(row.get("data-depth")) == layer["depth"]
    with torch.device("meta"):  # the count only: no memory, no init
        expected = n_params(torchvision.models.resnet18(weights=None))  # 11,689,512, the outside reference
    params = doc.find(".//div[@data-total='parameters']/dd")
    assert text_of(params) == f"{expected:,}" == f"{data['total']['params']:,}"


def test_stages_and_blocks_collapse_as_nested_details(tmp_path):
    doc = parse(cli_html(tmp_path, "resnet18"))
    parents = {child: parent for parent in doc.iter() for child in parent}

    def enclosing_details(e) -> int:
        n = 0
        while e in parents:
            e = parents[e]
            n += e.tag == "details"
        return n

    groups = [e for e in doc.iter() if e.tag == "details" and "group" in e.get("class", "")]
    # layer1..layer4, their two basic blocks each, and the projection shortcuts of layer2..4's first blocks
    assert len(groups) == 4 + 8 + 3
    assert sum("open" in g.attrib for g in groups) == 4  # stages open, blocks closed
    for row in rows(doc):
        own = 1 if row.tag == "summary" else 0  # a container's row is its <details>' summary
        assert enclosing_details(row) - own == int(row.get("data-depth")), row.get("data-path")


def test_depth_limits_the_rows_as_in_json(tmp_path):
    doc = parse(cli_html(tmp_path, "resnet18", "--depth", "0"))
    data = json.loads(run_cli("report", "resnet18", "-f", "json", "--depth", "0").output)
    assert [r.get("data-path") for r in rows(doc)] == [layer["path"] for layer in data["layers"]]


def test_nothing_is_fetched_from_outside_the_file(tmp_path):
    text = cli_html(tmp_path, "googlenet")
    doc = parse(text)
    assert not [e for e in doc.iter() if e.tag in ("script", "link", "iframe", "img", "object", "embed")]
    for e in doc.iter():
        for name, value in e.attrib.items():
            if name in ("src", "href", "xlink:href", "action", "poster"):
                raise AssertionError(f"<{e.tag} {name}={value!r}>")
    assert not re.search(r"url\(\s*['\"]?(?!#)", text)  # only url(#marker) references inside the file
    assert "@import" not in text


def test_a_hostile_description_cannot_inject_markup(tmp_path):
    lenet = (SPECS / "lenet5.yaml").read_text()
    spec_text = re.sub("^description: .*$", f"description: {json.dumps(HOSTILE)}", lenet, flags=re.M)
    assert HOSTILE.replace('"', '\\"') in spec_text
    spec = tmp_path / "hostile.yaml"
    spec.write_text(spec_text)
    doc = parse(cli_html(tmp_path, str(spec)))
    assert not [e for e in doc.iter() if e.tag in ("script", "img")]
    assert not [a for e in doc.iter() for a in e.attrib if a.lower().startswith("on")]
    description = doc.find(".//p[@class='description']")
    assert text_of(description) == HOSTILE  # shown as the text it is


def test_a_lenet5_runectory_adds_its_curves_and_final_metrics(tmp_path, lenet5_run):
    doc = parse(cli_html(tmp_path, str(lenet5_run)))
    history = [json.loads(line) for line in (lenet5_run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2
    training = doc.find(".//section[@id='training']")
    assert training is not None
    series = {p.get("data-label"): p for p in training.iter() if p.tag == "polyline"}
    assert {"train", "val", "val top-1", "val top-5", "lr"} <= set(series)
    points = [tuple(map(float, xy.split(","))) for xy in series["val top-1"].get("points").split()]
    assert len(points) == len(history)
    # a higher top-1 is drawn higher (smaller y), epochs left to right
    top1 = [row["val_top1"] for row in history]
    assert (points[1][1] < points[0][1]) == (top1[1] > top1[0]) and points[1][0] > points[0][0]
    final = {tr.get("data-metric"): text_of(tr.find("td")) for tr in training.iter("tr")}
    assert final["val_top1"] == f"{history[-1]['val_top1']:.2%}"
    assert final["val_loss"] == f"{history[-1]['val_loss']:.4g}"
    assert final["epoch"] == "2"
    recipe = text_of(training.find(".//pre"))
    assert yaml.safe_load(recipe) == yaml.safe_load((lenet5_run / "recipe.yaml").read_text())


def test_metrics_csv_is_read_when_there_is_no_jsonl(tmp_path, lenet5_run):
    copy = tmp_path / "run"
    shutil.copytree(lenet5_run, copy, ignore=shutil.ignore_patterns("checkpoints", "*.pt*"))
    (copy / "metrics.jsonl").unlink()
    from_csv, from_jsonl = read_run(copy), read_run(lenet5_run)
    for key in ("val_top1", "train_loss", "lr"):
        assert from_csv.series(key) == from_jsonl.series(key)  # 17 digits in both files
    assert from_csv.final is not None and from_csv.final["epoch"] == 2


def test_hostile_run_files_are_text_and_broken_ones_are_located_errors(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.yaml").write_text((SPECS / "lenet5.yaml").read_text())
    (run / "recipe.yaml").write_text(yaml.safe_dump({"data": HOSTILE, "epochs": 1}))
    rows_ = [{"epoch": 1, "val_top1": 0.5, "val_loss": HOSTILE}, {"epoch": 2, "val_top1": 0.75}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_))
    doc = parse(cli_html(tmp_path, str(run)))
    assert not [e for e in doc.iter() if e.tag in ("script", "img")]
    assert HOSTILE in text_of(doc.find(".//section[@id='training']//pre"))
    (run / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')
    result = run_cli("report", str(run), "-f", "html", "-o", str(tmp_path / "x.html"))
    assert result.exit_code == 2 and f"{run / 'metrics.jsonl'}:2:1: not JSON" in result.output
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (run / "spec.yaml").unlink()
    (run / "model.py").write_text("")
    result = run_cli("report", str(run), "-f", "html")
    assert result.exit_code == 2 and "holds no spec.yaml (it trained a model file" in result.output


def test_cli_options_that_do_not_go_together_are_usage_errors(tmp_path):
    result = run_cli("report", "lenet5", "--check", "-f", "html")
    assert result.exit_code == 2 and "not html" in result.output
    result = run_cli("report", "lenet5", "-o", str(tmp_path / "t.txt"))
    assert result.exit_code == 2 and "-o writes" in result.output
    assert not (tmp_path / "t.txt").exists()
    out = tmp_path / "r.json"
    assert run_cli("report", "lenet5", "-f", "json", "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text())["total"]["params"] == 61_706  # the spec's header: the paper's figure


@pytest.mark.parametrize(
    ("lo", "hi"), [(0.31, 0.97), (1, 2), (0.0, 2.5), (6.4e-5, 0.05), (7000, 7100), (3, 3)]
)
def test_chart_ticks_are_round_and_cover_the_data(lo, hi):
    t = ticks(lo, hi)
    assert t[0] <= lo and t[-1] >= hi and 2 <= len(t) <= 7
    step = t[1] - t[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6


def test_epoch_ticks_are_whole_epochs():
    assert ticks(1, 2, integer=True) == [1, 2] and ticks(1, 3, integer=True) == [1, 2, 3]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed")
def test_chromium_renders_the_report(tmp_path, lenet5_run):
    """A real browser parses the file into the same rows, diagram and charts (and runs no script)."""
    text = cli_html(tmp_path, str(lenet5_run))
    page = tmp_path / "r.html"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    rendered = local_names(html5lib.parse(dom, namespaceHTMLElements=False))  # the browser's DOM, serialised
    expected = netspec.analyze(netspec.load_spec(lenet5_run / "spec.yaml")).rows
    assert len(rows(rendered)) == len(rows(parse(text))) == len(expected)
    assert len([e for e in rendered.iter() if e.tag == "svg"]) == 1 + 4  # the diagram, four charts
