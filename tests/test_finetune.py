"""Fine-tuning (issue 15 item 3): `init:` / `--init` start a run from pretrained weights, the head for
other classes is re-initialised and named, `freeze:` keeps module paths (and their batch-norm
statistics) bitwise as they were. The weights come from torchvision's resnet18 (weights=None, seeded),
saved as a plain state_dict: a file netspec did not write."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml

from netspec.errors import SpecError
from netspec.resolve import load_spec
from netspec.train import runner as runner_module
from netspec.train import train
from tests.conftest import SPECS, run_cli

RESNET18 = SPECS / "resnet18.yaml"
LENET = SPECS / "lenet5.yaml"
FROZEN = ("conv1.", "bn1.", "layer1.")
# resnet18 at 16x16 (layer3 and layer4 see 1x1 maps), 10 classes: the digits, one epoch
SMALL = ["classes=10", "input.size=16", "train.epochs=1", "train.batch_size=64", "train.plots=false"]


@pytest.fixture(scope="module")
def torchvision_resnet18(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """torchvision's resnet18 (1000 classes, random weights from seed 0), as `torch.save(state_dict)`."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # BN statistics that are not the init's (0, 1): a copy would show
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "resnet18_torchvision.pth"
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def finetuned(torchvision_resnet18, tmp_path_factory):
    """One epoch of resnet18 on the digits from the torchvision file, conv1/bn1/layer1 frozen; the
    weights the optimizer started from are captured where the runner makes the optimizer."""
    path, _ = torchvision_resnet18
    out = tmp_path_factory.mktemp("runs") / "ft"
    started: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    make = runner_module.make_optimizer

    def capture(model, recipe):
        started.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return make(model, recipe)

    spec = load_spec(RESNET18, [*SMALL, f"train.init.weights={path}", "train.freeze=[conv1, bn1, layer1]"])
    mp = pytest.MonkeyPatch()
    mp.setattr(runner_module, "make_optimizer", capture)
    torch.set_num_threads(1)
    try:
        result = train(spec, out=out, device="cpu", log=lambda e: notes.append(str(e.get("message", ""))))
    finally:
        mp.undo()
    return result, started, notes, out


def test_finetune_starts_from_the_torchvision_file_with_a_new_head(torchvision_resnet18, finetuned):
    _, file_state = torchvision_resnet18
    _, started, notes, _ = finetuned
    assert set(started) == set(file_state)
    for k, v in file_state.items():
        if k.startswith("fc."):
            assert started[k].shape[0] == 10 and v.shape[0] == 1000
        else:
            assert torch.equal(started[k], v), k
    head_notes = [n for n in notes if "re-initialised the head" in n]
    assert len(head_notes) == 1 and "fc (" in head_notes[0] and "[10, 512]" in head_notes[0]


def test_frozen_layers_and_their_bn_statistics_are_bitwise_unchanged(torchvision_resnet18, finetuned):
    _, file_state = torchvision_resnet18
    result, started, _, _ = finetuned
    final = result.model.state_dict()
    frozen = [k for k in file_state if k.startswith(FROZEN)]
    assert any(k.endswith("running_mean") for k in frozen) and any(k.endswith("running_var") for k in frozen)
    for k in frozen:
        assert torch.equal(final[k].cpu(), file_state[k]), k
    # the rest trained: weights and the BN statistics of the stages that are not frozen moved
    for k in ("layer2.0.conv1.weight", "layer4.1.bn2.running_mean", "fc.weight"):
        assert not torch.equal(final[k].cpu(), started[k]), k
    trainable = {n for n, p in result.model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(FROZEN) for n in trainable)


def test_the_run_records_where_the_weights_came_from(torchvision_resnet18, finetuned):
    path, _ = torchvision_resnet18
    _, _, _, out = finetuned
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["init_weights"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert Path(recipe["init_weights"]["path"]) == path.resolve()
    assert recipe["init"]["weights"] == str(path) and recipe["freeze"] == ["conv1", "bn1", "layer1"]


def test_the_frozen_parameters_never_reach_the_optimizer(torchvision_resnet18, tmp_path):
    from netspec.torch_backend import build
    from netspec.train.finetune import prepare
    from netspec.train.params import make_optimizer
    from netspec.train.recipe import recipe_from_spec

    path, _ = torchvision_resnet18
    spec = load_spec(RESNET18, [*SMALL, f"train.init={path}", "train.freeze=[stem, layer1]"])
    model = build(spec, seed=0)
    recipe = recipe_from_spec(spec)
    prepare(model, recipe, spec, start=True, input_shape=(3, 16, 16))
    in_optimizer = {id(p) for g in make_optimizer(model, recipe).param_groups for p in g["params"]}
    for name, p in model.named_parameters():  # `stem` is the spec's section: conv1 and bn1
        assert (id(p) in in_optimizer) != name.startswith(FROZEN), name


def test_resume_of_a_finetuning_run_is_bitwise_and_does_not_reload_the_weights(tmp_path):
    """An init from a compiled file with a frozen layer: two epochs straight equal one epoch, then a
    resume (for which the weights file is gone: the init applies only at the start)."""
    from netspec.compile import save_compiled

    weights = tmp_path / "lenet5_init.pt"
    save_compiled(load_spec(LENET), weights, seed=7)
    sets = [f"train.init.weights={weights}", "train.freeze=[c1]", "train.epochs=2", "train.plots=false"]
    sets += ["train.data=synthetic:128", "train.batch_size=32"]
    torch.set_num_threads(1)
    whole = train(LENET, out=tmp_path / "a", overrides=sets, device="cpu", log="quiet")
    train(LENET, out=tmp_path / "b", overrides=sets, device="cpu", log="quiet", stop_after=1)
    recorded = yaml.safe_load((tmp_path / "b" / "recipe.yaml").read_text())["init_weights"]
    weights.rename(tmp_path / "moved.pt")
    resumed = train(LENET, out=tmp_path / "b", overrides=sets, device="cpu", log="quiet", resume=True)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert yaml.safe_load((tmp_path / "b" / "recipe.yaml").read_text())["init_weights"] == recorded


def test_linear_probe_trains_only_the_head(tmp_path):
    from netspec.compile import read_compiled, save_compiled

    weights = tmp_path / "lenet5.pt"
    save_compiled(load_spec(LENET), weights, seed=3)
    file_state = read_compiled(weights)["state_dict"]
    sets = [f"train.init={weights}", "train.freeze=all_but_head", "train.epochs=1", "train.plots=false"]
    sets += ["train.data=synthetic:64", "train.batch_size=32"]
    result = train(LENET, out=tmp_path / "run", overrides=sets, device="cpu", log="quiet")
    final = result.model.state_dict()
    for k, v in file_state.items():
        assert torch.equal(final[k], v) != k.startswith("output."), k


def _problems(overrides: list[str], tmp_path: Path, spec: Path = LENET) -> list[str]:
    with pytest.raises(SpecError) as info:
        train(spec, out=tmp_path / "run", overrides=overrides, device="cpu", log="quiet")
    return [p.format() for p in info.value.problems]


def test_a_freeze_entry_naming_nothing_is_located_with_a_suggestion(tmp_path):
    (text,) = _problems(["train.freeze=[c1, stme]"], tmp_path)
    assert (
        "train.freeze.1: freeze: no module or section named 'stme'" in text and "did you mean 'stem'" in text
    )


def test_freeze_takes_paths_or_all_but_head_and_says_so(tmp_path):
    (text,) = _problems(["train.freeze=all"], tmp_path)
    assert "train.freeze: a list of module paths or sections" in text and "all_but_head" in text


def test_weights_that_do_not_fit_beyond_the_head_are_refused(torchvision_resnet18, tmp_path):
    path, _ = torchvision_resnet18
    problems = _problems([*SMALL, f"train.init={path}"], tmp_path, SPECS / "resnet34.yaml")
    assert "does not fit the model beyond its head" in problems[0] and "train.init.weights" in problems[0]
    assert any("layer1.2." in p for p in problems)  # resnet34's third block has no counterpart
    with_head = _problems(
        [*SMALL, f"train.init.weights={path}", "train.init.reinit_head=false"], tmp_path, RESNET18
    )
    assert "the head does not fit" in with_head[0] and "fc.weight" in with_head[0]


def test_cli_init_missing_file_is_a_located_error(tmp_path):
    result = run_cli("train", str(LENET), "--init", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "train.init.weights:" in result.output and "does not exist" in result.output


def test_cli_init_verifies_a_torchvision_file(tmp_path):
    """--verify: the torchvision file (10 classes) loads into resnet18 and its logits equal
    torchvision's; then one epoch trains."""
    import torchvision

    torch.manual_seed(1)
    path = tmp_path / "r18_10.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    args = ["train", str(RESNET18), *(a for s in SMALL for a in ("--set", s)), "--data", "synthetic:160"]
    ok = run_cli(
        *args, "--init", str(path), "--verify", "torchvision.models.resnet18", "--out", str(tmp_path / "a")
    )
    assert ok.exit_code == 0, ok.output
    assert "logits equal" in ok.output


def test_strict_false_loads_what_fits_and_lists_the_rest(torchvision_resnet18, tmp_path):
    """resnet34 from resnet18's file: the blocks both have start from it, the others keep their init."""
    path, file_state = torchvision_resnet18
    notes: list[str] = []
    sets = [*SMALL, f"train.init.weights={path}", "train.init.strict=false"]
    log = lambda e: notes.append(str(e.get("message", "")))  # noqa: E731
    result = train(
        SPECS / "resnet34.yaml", out=tmp_path / "r", overrides=sets, device="cpu", stop_after=0, log=log
    )
    start = result.model.state_dict()
    assert torch.equal(start["layer1.1.conv2.weight"], file_state["layer1.1.conv2.weight"])
    assert "layer1.2.conv1.weight" not in file_state and start["layer1.2.conv1.weight"].shape == (
        64,
        64,
        3,
        3,
    )
    assert any(n.startswith("strict: false: ") and "layer1.2." in n for n in notes)
