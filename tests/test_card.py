"""`netspec card`: a model card in Hugging Face's format. The metadata block is read back by
huggingface_hub's own ModelCard parser; the Mermaid block is the file `netspec diagram -f mermaid`
writes; the parameter count is torchvision's; a run's results are its metrics.jsonl."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from huggingface_hub import ModelCard

import netspec
from netspec.analysis import analyze
from netspec.report import human, human_bytes
from netspec.train import recipe_from_spec

from .conftest import SPECS, n_params, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def cli_card(tmp_path: Path, *args: str) -> str:
    out = tmp_path / "card" / "README.md"
    out.parent.mkdir(exist_ok=True)
    result = run_cli("card", *args, "-o", str(out))
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def front_matter(text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, text[:200]
    return yaml.safe_load(match.group(1))


def fenced(text: str, lang: str) -> str:
    match = re.search(rf"^(`{{3,}}){lang}\n(.*?)\n\1$", text, re.S | re.M)
    assert match, f"no {lang} block"
    return match.group(2)


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_card_metadata_is_what_hugging_face_reads(tmp_path):
    text = cli_card(tmp_path, "resnet18")
    meta = front_matter(text)
    card = ModelCard(text)  # huggingface_hub's parser: the same metadata, validated
    assert card.data.library_name == "netspec" == meta["library_name"]
    assert card.data.pipeline_tag == "image-classification"
    assert {"netspec", "arxiv:1512.03385"} <= set(card.data.tags)  # He et al.'s paper on arXiv
    assert "model-index" not in meta and "datasets" not in meta  # no run: no results to claim
    assert card.text.lstrip().startswith("# resnet18")


def test_card_cites_the_paper_from_the_specs_header(tmp_path):
    text = cli_card(tmp_path, "resnet18")
    paper = section(text, "Paper")
    assert '"Deep Residual Learning for Image Recognition", CVPR 2016' in paper
    assert "[arXiv:1512.03385](https://arxiv.org/abs/1512.03385)" in paper
    lenet = section(cli_card(tmp_path, "lenet5"), "Paper")  # no arXiv id: the citation alone
    assert 'Gradient-Based Learning Applied to Document Recognition", Proc. IEEE 86(11), 1998' in lenet
    assert "arxiv.org" not in lenet


def test_card_parameters_are_torchvisions_and_costs_the_analysis(tmp_path):
    import torch
    import torchvision

    text = cli_card(tmp_path, "resnet18")
    table = section(text, "Size and cost")
    with torch.device("meta"):
        expected = n_params(torchvision.models.resnet18(weights=None))
    spec = netspec.load_spec(SPECS / "resnet18.yaml")
    for size in (160, 224, 320):
        a = analyze(spec, input_size=size)
        row = next(line for line in table.splitlines() if line.startswith(f"| 3x{size}x{size}"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:5] == [f"{expected:,}", human(a.macs), human(a.flops), human_bytes(a.activation_bytes)]
        assert a.params == expected
    assert "| 3x224x224 (the spec's) |" in table


def test_card_mermaid_block_is_the_file_netspec_diagram_writes(tmp_path):
    text = cli_card(tmp_path, "googlenet")
    mmd = tmp_path / "g.mmd"
    assert run_cli("diagram", "googlenet", "-f", "mermaid", "-o", str(mmd)).exit_code == 0
    assert fenced(text, "mermaid") == mmd.read_text().rstrip("\n")
    assert "`netspec diagram googlenet -f mermaid`" in text


def test_a_large_network_gets_the_collapsed_diagram(tmp_path):
    deep = ["--set", "stages.2.depth=80"]  # ResNet-152 with 80 blocks in layer3: past GitHub's limits
    text = cli_card(tmp_path, "resnet152", *deep)
    mmd = tmp_path / "r.mmd"
    result = run_cli("diagram", "resnet152", *deep, "-f", "mermaid", "--collapse", "-o", str(mmd))
    assert result.exit_code == 0
    assert fenced(text, "mermaid") == mmd.read_text().rstrip("\n")
    assert "-f mermaid --collapse`" in text
    full = tmp_path / "full.mmd"
    result = run_cli("diagram", "resnet152", *deep, "-f", "mermaid", "-o", str(full))
    assert "GitHub draws Mermaid diagrams of up to" in result.output  # the command's own verdict


def test_card_recipe_is_the_specs_train_section_resolved(tmp_path):
    recipe = yaml.safe_load(fenced(section(cli_card(tmp_path, "lenet5"), "Training recipe"), "yaml"))
    spec = netspec.load_spec(SPECS / "lenet5.yaml")
    assert recipe == recipe_from_spec(spec).model_dump(mode="json")
    assert recipe["epochs"] == 15 and recipe["optimizer"]["lr"] == 0.05  # as the spec's train: says


def test_card_of_a_run_reports_its_metrics_curves_and_recipe(tmp_path, lenet5_run):
    text = cli_card(tmp_path, "lenet5", str(lenet5_run))
    history = [json.loads(line) for line in (lenet5_run / "metrics.jsonl").read_text().splitlines()]
    final = history[-1]
    results = ModelCard(text).data.eval_results
    got = {r.metric_type: r.metric_value for r in results}
    assert got == {
        "accuracy": final["val_top1"],
        "top_5_accuracy": final["val_top5"],
        "loss": final["val_loss"],
    }
    assert {r.dataset_type for r in results} == {"digits"} and results[0].dataset_split == "validation"
    assert "datasets" not in front_matter(text)  # digits are not on the Hub
    recipe = yaml.safe_load(fenced(section(text, "Training recipe"), "yaml"))
    assert recipe == yaml.safe_load((lenet5_run / "recipe.yaml").read_text())
    body = section(text, "Results")
    assert f"| val top-1 | {final['val_top1']:.2%} |" in body
    card_dir = tmp_path / "card"
    plots = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", body)
    assert len(plots) == 3 and all((card_dir / unquote(p)).resolve().is_file() for p in plots)
    epochs = [line for line in body.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(line.split("|")[1]) for line in epochs] == [row["epoch"] for row in history]


def test_a_lenet5_runectory_alone_and_hub_datasets(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.yaml").write_text((SPECS / "lenet5.yaml").read_text())
    (run / "recipe.yaml").write_text(yaml.safe_dump({"data": "cifar10:/data/cifar", "epochs": 1}))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_top1": 0.5, "val_top5": 0.9}) + "\n")
    text = cli_card(tmp_path, str(run))
    meta = front_matter(text)
    assert meta["datasets"] == ["uoft-cs/cifar10"]  # CIFAR-10's id on the Hub
    assert ModelCard(text).data.eval_results[0].metric_value == 0.5
    assert "### Curves" in text and "![" not in text  # no PNGs in this run: the table only


def test_hostile_text_stays_text_and_bad_runs_are_located_errors(tmp_path, lenet5_run):
    hostile = "<script>alert(1)</script> | ``` --- "
    lenet = (SPECS / "lenet5.yaml").read_text()
    spec = tmp_path / "h.yaml"
    spec.write_text(re.sub("^description: .*$", f"description: {json.dumps(hostile)}", lenet, flags=re.M))
    text = cli_card(tmp_path, str(spec))
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert front_matter(text)["library_name"] == "netspec"
    result = run_cli("card", "resnet18", str(lenet5_run))  # a run of LeNet-5
    assert result.exit_code == 2 and f"not the network the run {lenet5_run} trained" in result.output
    assert "name: differs from the run's spec.yaml: lenet5 -> resnet18" in result.output
    assert re.search(r"resnet18\.yaml:\d+:\d+: ", result.output)  # located in the spec given
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("card", "lenet5", str(empty))
    assert result.exit_code == 2 and f"{empty}:1:1: not a run directory" in result.output
