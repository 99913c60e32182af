"""Small things a user meets first: `--version`, shell completion of every SPEC argument, `kinds`,
`eval`'s table, zoo references (`extends: zoo:NAME`) and what `netspec new` writes, the schema's
`train:` section, and no warning from torch on the terminal."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
import yaml

import netspec
from netspec.cli import app
from netspec.data import SCHEMA_FILE
from netspec.errors import SpecError
from netspec.layers import KINDS
from netspec.layers.composites import TABLE
from netspec.schema import spec_schema
from netspec.zoo import complete_spec, zoo_names

from .conftest import ROOT, SPECS, run_cli

ZOO = sorted(p.stem for p in SPECS.glob("*.yaml"))


def test_version_is_the_installed_distributions():
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.output == f"netspec {importlib.metadata.version('netspec')}\n"


# -- shell completion ----------------------------------------------------------------------------


def _spec_parameters() -> list[tuple[str, Any]]:
    """(command, parameter) for every parameter that names a spec: SPEC arguments and `new --from`."""
    found = []
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            if param.name in ("spec", "specs", "spec_a", "spec_b", "from_"):
                found.append((name, param))
    return found


def test_every_spec_argument_completes_zoo_names():
    params = _spec_parameters()
    commands = {name for name, _ in params}
    assert {"validate", "report", "train", "eval", "diff", "diagram", "compile", "export", "new"} <= commands
    for name, param in params:
        ctx = typer.Context(typer.main.get_command(app))
        offered = [item.value for item in param.shell_complete(ctx, "resnet5")]
        assert offered[:4] == ["resnet50", "resnet50_b", "resnet50_c", "resnet50_d"], (name, offered)
        assert [i.value for i in param.shell_complete(ctx, "zoo:vgg11")] == ["zoo:vgg11", "zoo:vgg11_bn"]


def test_completion_through_the_shell_protocol(tmp_path: Path):
    """What bash's completion script asks (click's protocol through environment variables)."""
    env = {
        **os.environ,
        "_NETSPEC_COMPLETE": "complete_bash",
        "COMP_WORDS": "netspec report vgg1",
        "COMP_CWORD": "2",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "netspec")],  # the console script pip installed
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [n for n in ZOO if n.startswith("vgg1")]


def test_completion_offers_spec_files_and_folders(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.yaml").write_text("name: x\n")
    (tmp_path / "model.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a.yml").write_text("")
    offered = [value for value, _ in complete_spec("")]
    assert offered[: len(ZOO)] == ZOO
    assert offered[len(ZOO) :] == ["model.py", "net.yaml", "runs/"]
    assert [v for v, _ in complete_spec("runs/")] == ["runs/a.yml"]
    assert [v for v, _ in complete_spec("n")] == ["nin", "net.yaml"]
    assert complete_spec("nosuchdir/x") == []


# -- kinds, eval -------------------------------------------------------------------------------------


def test_kinds_lists_every_layer_kind_and_composite():
    result = run_cli("kinds")
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    assert listed == [*KINDS, *(c.name for c in TABLE)]
    assert len(TABLE) >= 4  # sequential, parallel, residual and GoogLeNet's auxiliary heads


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "lenet5"
    result = run_cli("train", "lenet5", "--epochs", "1", "--data", "synthetic:64", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    return out


def test_eval_prints_a_table_and_json_on_request(lenet_run: Path):
    data = ("--data", "synthetic:64")
    as_json = run_cli("eval", "lenet5", "-c", str(lenet_run), "--json", *data)
    assert as_json.exit_code == 0, as_json.output
    metrics = json.loads(as_json.output)
    table = run_cli("eval", "lenet5", "-c", str(lenet_run), *data)
    assert table.exit_code == 0, table.output
    rows = dict(line.split(None, 1) for line in table.output.splitlines())
    assert rows["top-1"] == f"{metrics['top1']:.2%}" and rows["top-5"] == f"{metrics['top5']:.2%}"
    assert rows["images"] == str(metrics["n"]) == "13" and rows["epoch"] == "1"
    assert float(rows["loss"]) == pytest.approx(metrics["loss"], abs=1e-4)
    # the same numbers the run itself recorded for its validation split
    last = json.loads((lenet_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["val_top1"] == metrics["top1"]


# -- zoo references ----------------------------------------------------------------------------------


def test_extends_zoo_name_resolves_from_any_folder(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nextends: zoo:resnet50\ntricks: [resnet_b, resnet_c, resnet_d]\n")
    mine = netspec.analyze(netspec.load_spec(path))
    zoo_d = netspec.analyze(netspec.load_spec(SPECS / "resnet50_d.yaml"))
    assert (mine.params, mine.macs) == (zoo_d.params, zoo_d.macs)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("zoo:resnt50", "no zoo spec 'resnt50' (did you mean 'zoo:resnet50'?)"),
        ("zoo:../specs/resnet50", "no zoo spec '../specs/resnet50'"),
        ("zoo:", "no zoo spec ''"),
        ("zoo:/etc/passwd", "no zoo spec '/etc/passwd'"),
    ],
)
def test_unknown_zoo_names_are_located_errors(tmp_path: Path, value: str, message: str):
    path = tmp_path / "mine.yaml"
    path.write_text(f"name: mine\nextends: '{value}'\n")
    with pytest.raises(SpecError) as info:
        netspec.load_spec(path)
    problem = info.value.problems[0]
    assert f"{problem.message} ({problem.hint})".startswith(message) and problem.path == ("extends",)
    assert (problem.location.file, problem.location.line, problem.location.col) == (str(path), 2, 10)
    result = run_cli("validate", str(path))
    assert result.exit_code == 2 and result.output.startswith(f"{path}:2:10: extends: no zoo spec")


def test_zoo_references_keep_the_file_checks(tmp_path: Path, monkeypatch):
    """A zoo entry is read like any spec file: a cycle through `zoo:` names is found, and an entry
    that is not a regular file (here a directory) is refused, at the `extends` that names it."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "a.yaml").write_text("name: a\nextends: zoo:b\n")
    (zoo / "b.yaml").write_text("name: b\nextends: zoo:a\n")
    (zoo / "odd.yaml").mkdir()
    monkeypatch.setattr("netspec.zoo.zoo_dir", lambda: zoo)
    with pytest.raises(SpecError, match=r"`extends` forms a cycle: a.yaml -> b.yaml -> a.yaml"):
        netspec.load_spec(zoo / "a.yaml")
    (tmp_path / "mine.yaml").write_text("name: mine\nextends: zoo:odd\n")
    with pytest.raises(SpecError, match="is a directory, not a spec file") as info:
        netspec.load_spec(tmp_path / "mine.yaml")
    assert info.value.problems[0].location.line == 2


def test_new_names_the_zoo_spec_and_points_at_the_packaged_schema(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    result = run_cli("new", "mine", "--from", "resnet50", "-o", "deep/er/mine.yaml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "deep" / "er" / "mine.yaml").read_text()
    assert "\nextends: zoo:resnet50\n" in text
    schema = text.splitlines()[0].removeprefix("# yaml-language-server: $schema=")
    assert not Path(schema).is_absolute()
    assert (tmp_path / "deep" / "er" / schema).resolve() == SCHEMA_FILE.resolve()
    jsonschema.validate(yaml.safe_load(text), json.loads(SCHEMA_FILE.read_text()))
    # a spec file of the user's own stays a relative path
    (tmp_path / "base.yaml").write_text((SPECS / "lenet5.yaml").read_text())
    assert run_cli("new", "child", "--from", "base.yaml", "-o", "deep/child.yaml").exit_code == 0
    assert "\nextends: ../base.yaml\n" in (tmp_path / "deep" / "child.yaml").read_text()
    assert netspec.load_spec(tmp_path / "deep" / "child.yaml").name == "child"


def test_zoo_names_are_the_spec_files():
    assert zoo_names() == ZOO


def test_zoo_prefix_names_a_spec_on_the_command_line_too():
    by_prefix = run_cli("report", "zoo:lenet5", "-f", "json")
    by_path = run_cli("report", str(SPECS / "lenet5.yaml"), "-f", "json")
    assert by_prefix.exit_code == 0 and json.loads(by_prefix.output) == json.loads(by_path.output)


# -- the schema's train: section -----------------------------------------------------------------


def _with_train(train: object) -> dict:
    spec = yaml.safe_load((SPECS / "lenet5.yaml").read_text())
    spec["train"] = train
    return spec


def test_schema_checks_the_train_recipe():
    schema = spec_schema()
    jsonschema.validate(_with_train({"epochs": 3, "label_smoothing": 0.1}), schema)
    jsonschema.validate(_with_train({"label_smoothing": {"eps": 0.1, "form": "uniform"}}), schema)
    jsonschema.validate(_with_train({"optimizer": {"name": "adamw", "lr": 1e-3}}), schema)
    for bad in ({"epochz": 3}, {"optimizer": {"lrr": 0.1}}, {"amp": "fp8"}, {"epochs": "three"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_with_train(bad), schema)
        with pytest.raises(SpecError):  # and netspec's own validation agrees
            netspec.train.recipe_from_spec(netspec.loads_spec(yaml.safe_dump(_with_train(bad))))


# -- warnings ------------------------------------------------------------------------------------

_COMMANDS = """
import sys
from netspec.cli import app
for args in {commands!r}:
    try:
        app(args, standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, (args, exc.code)
print("ran", len({commands!r}))
"""

# the commands whose work goes through torch (tracing, scripting, export, checkpoints, training)
FAST_COMMANDS = [
    ["report", "lenet5", "--check"],
    ["compile", "lenet5", "-o", "l5.pt"],
    ["compile", "lenet5", "-o", "l5.ts"],
    ["compile", "lenet5", "-o", "l5.pt2"],
    ["import-weights", "lenet5", "l5.pt", "-o", "l5b.pt"],
    ["train", "lenet5", "--epochs", "1", "--out", "run", "-q", "--data", "synthetic:64"],
    ["eval", "lenet5", "-c", "run", "--data", "synthetic:64"],
]
SLOW_COMMANDS = [
    ["validate", "resnet50", "lenet5"],
    ["report", "resnet50"],
    ["explain", "resnet50_d"],
    ["diff", "resnet18", "resnet34"],
    ["diagram", "lenet5", "-o", "l5.svg"],
    ["export", "lenet5", "-o", "l5.py"],
    ["train", "l5.py", "--epochs", "1", "--out", "run2", "-q", "--data", "synthetic:64"],
    ["compile", "lenet5", "-o", "l5.onnx"],
    ["report", "googlenet", "--check"],
    [
        "train",
        "lenet5",
        "--epochs",
        "1",
        "--out",
        "r16",
        "-q",
        "--set",
        "train.amp=fp16",
        "--data",
        "synthetic:64",
    ],
    [
        "train",
        "lenet5",
        "--epochs",
        "1",
        "--out",
        "rbf",
        "-q",
        "--set",
        "train.amp=bf16",
        "--data",
        "synthetic:64",
    ],
    ["import-weights", "resnet18", "r18.pth", "--verify", "torchvision.models.resnet18"],
]


def _no_warnings(commands: list[list[str]], cwd: Path) -> None:
    """The commands in one process started with `-W default` (every warning shown, as a user with
    PYTHONWARNINGS set or a debugging session sees them): stderr holds no warning at all."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    code = _COMMANDS.format(commands=commands)
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"ran {len(commands)}" in done.stdout
    assert "Warning" not in done.stderr, done.stderr[-3000:]


def test_no_warning_from_torch_reaches_the_terminal(tmp_path: Path):
    _no_warnings(FAST_COMMANDS, tmp_path)


@pytest.mark.slow
def test_no_warning_from_any_command_reaches_the_terminal(tmp_path: Path):
    import torch
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    _no_warnings(SLOW_COMMANDS, tmp_path)


def test_the_checkouts_schema_and_the_packaged_one_agree():
    assert (ROOT / "netspec.schema.json").read_text() == SCHEMA_FILE.read_text()
