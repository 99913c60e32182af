"""The training runner (netspec.train): recipe validation, the schedule's exact formula, the losses
against torch's own, no-bias-decay groups, data sets, crash-safe checkpoints, exact resume (also
after a real SIGKILL), and LeNet-5 learning the embedded digits set."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import netspec
from netspec.train import (
    CheckpointError,
    DataSplit,
    LRSchedule,
    Recipe,
    TrainError,
    evaluate,
    evaluate_checkpoint,
    load_checkpoint,
    load_data,
    load_latest,
    recipe_from_spec,
    save_checkpoint,
    train,
    train_overrides,
)
from netspec.train import checkpoint as ckpt
from netspec.train.data import IMAGENET_EIGVAL, IMAGENET_EIGVEC, Lighting
from netspec.train.losses import Criterion, cross_entropy, mixup, sample_mixup, smooth_targets
from netspec.train.params import make_optimizer, split_decay

from .conftest import SPECS

ROOT = SPECS.parent
LENET = str(SPECS / "lenet5.yaml")


pytestmark = pytest.mark.usefixtures("one_thread")


def tensors_equal(a, b, path: str = "") -> int:
    """Assert two nested checkpoint structures are equal, tensors bitwise; returns the tensor count."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
        return 1
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        return sum(tensors_equal(a[k], b[k], f"{path}.{k}") for k in a)
    if isinstance(a, list | tuple):
        assert len(a) == len(b), path
        return sum(tensors_equal(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True)))
    assert a == b, (path, a, b)
    return 0


# ---------------------------------------------------------------- recipe


def test_recipe_defaults_and_shorthands():
    r = Recipe.model_validate({"label_smoothing": 0.1, "batch_size": 1024, "linear_lr_scaling": True})
    assert r.label_smoothing.eps == 0.1 and r.label_smoothing.form == "paper"
    assert r.lr == pytest.approx(0.1 * 1024 / 256)
    assert Recipe().lr == 0.1 and Recipe().data == "digits" and Recipe().aux_weight == 0.3
    assert recipe_from_spec(netspec.load_spec(LENET)).epochs == 15


def test_recipe_errors_point_at_the_yaml():
    text = """name: t
input: {channels: 1, size: 8}
classes: 10
head: [flatten, {linear: 10}]
train:
  epochs: 3
  optimizer: {name: sgd, lrr: 0.1}
  schedule:
    name: cosin
"""
    spec = netspec.loads_spec(text, name="t.yaml")
    with pytest.raises(netspec.SpecError) as err:
        recipe_from_spec(spec)
    lines = str(err.value).splitlines()
    assert any(
        line.startswith("t.yaml:7:") and "train.optimizer.lrr: unknown field 'lrr'" in line and "'lr'" in line
        for line in lines
    ), lines
    assert any(line.startswith("t.yaml:9:") and "train.schedule.name" in line for line in lines), lines


def test_recipe_overrides_use_set():
    spec = netspec.load_spec(
        LENET, [*train_overrides(epochs=2, lr=0.5, data="synthetic:64"), "train.amp=fp8"]
    )
    with pytest.raises(netspec.SpecError) as err:
        recipe_from_spec(spec)
    assert "<--set train.amp=fp8>" in str(err.value) and "train.amp" in str(err.value)
    r = recipe_from_spec(netspec.load_spec(LENET, train_overrides(epochs=2, lr=0.5, data="mnist:/x")))
    assert (r.epochs, r.optimizer.lr, r.data, r.optimizer.nesterov) == (2, 0.5, "mnist:/x", True)


# ---------------------------------------------------------------- schedule


def test_lr_warmup_then_cosine_exact():
    s = LRSchedule(base_lr=0.4, total_iters=1000, warmup_iters=100, name="cosine")
    for t in (0, 1, 49, 99):
        assert s(t) == pytest.approx(0.4 * (t + 1) / 100, abs=0, rel=1e-15)
    for t in (100, 101, 250, 550, 999):
        expected = 0.5 * (1 + math.cos(math.pi * (t - 100) / 900)) * 0.4
        assert s(t) == pytest.approx(expected, abs=0, rel=1e-15)
    assert s(100) == 0.4 and s(550) == pytest.approx(0.2)


def test_lr_step_and_constant():
    r = Recipe.model_validate(
        {
            "epochs": 10,
            "batch_size": 512,
            "linear_lr_scaling": True,
            "schedule": {"name": "step", "milestones": [3, 6], "gamma": 0.1, "warmup_epochs": 1},
        }
    )
    s = LRSchedule.from_recipe(r, iters_per_epoch=20)
    assert (s.total_iters, s.warmup_iters, s.milestones) == (200, 20, (60, 120))
    assert s(0) == pytest.approx(0.2 / 20) and s(19) == pytest.approx(0.2)
    assert s(59) == pytest.approx(0.2) and s(60) == pytest.approx(0.02) and s(120) == pytest.approx(0.002)
    assert LRSchedule(0.1, 50, name="constant")(49) == 0.1


# ---------------------------------------------------------------- losses


def test_label_smoothing_forms():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 7, generator=g), torch.randint(0, 7, (16,), generator=g)
    q = smooth_targets(y, 7, 0.1, "paper")
    assert torch.allclose(q.sum(1), torch.ones(16))
    assert q[0, y[0]] == pytest.approx(0.9) and q[0, (y[0] + 1) % 7] == pytest.approx(0.1 / 6)
    ref = nn.CrossEntropyLoss(label_smoothing=0.1)(logits, y)
    assert torch.allclose(cross_entropy(logits, y, 0.1, "uniform"), ref, atol=1e-6)
    assert not torch.allclose(cross_entropy(logits, y, 0.1, "paper"), ref, atol=1e-4)
    paper = -(q * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(cross_entropy(logits, y, 0.1, "paper"), paper)


def test_mixup_loss_is_the_mixture_of_two_losses():
    torch.manual_seed(0)
    lam = sample_mixup(0.2)
    assert 0.0 <= lam <= 1.0
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    x, y = torch.randn(8, 3, 2, 2), torch.randint(0, 5, (8,))
    xm, ya, yb = mixup(x, y, 0.3)
    assert torch.allclose(xm[0], 0.3 * x[0] + 0.7 * x[7]) and torch.equal(yb, y.flip(0))
    crit = Criterion(Recipe(label_smoothing={"eps": 0.1}))
    out = model(xm)
    expected = 0.3 * cross_entropy(out, y, 0.1) + 0.7 * cross_entropy(out, y.flip(0), 0.1)
    assert torch.allclose(crit(out, ya, yb, 0.3), expected)
    # equal to the cross-entropy of the mixed soft target
    q = 0.3 * smooth_targets(y, 5, 0.1) + 0.7 * smooth_targets(y.flip(0), 5, 0.1)
    assert torch.allclose(crit(out, ya, yb, 0.3), -(q * F.log_softmax(out, 1)).sum(1).mean(), atol=1e-6)
    draws = [sample_mixup(0.2) for _ in range(2000)]  # Beta(0.2, 0.2): mean 1/2, mass near 0 and 1
    assert abs(sum(draws) / len(draws) - 0.5) < 0.05
    assert sum(d < 0.1 or d > 0.9 for d in draws) > 1000


def test_aux_heads_weighted():
    logits, aux1, aux2 = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    crit = Criterion(Recipe())
    expected = F.cross_entropy(logits, y) + 0.3 * (F.cross_entropy(aux1, y) + F.cross_entropy(aux2, y))
    assert torch.allclose(crit((logits, [aux1, aux2]), y), expected)


# ---------------------------------------------------------------- parameter groups


def test_no_bias_decay_groups_resnet18():
    model = netspec.build(netspec.load_spec(SPECS / "resnet18.yaml"), seed=0)
    decay, no_decay = split_decay(model)
    modules = dict(model.named_modules())
    expected_no = {
        n
        for n, _ in model.named_parameters()
        if n.endswith(".bias") or isinstance(modules[n.rsplit(".", 1)[0]], nn.modules.batchnorm._BatchNorm)
    }
    assert set(no_decay) == expected_no
    assert {n.rsplit(".", 1)[-1] for n in decay} == {"weight"}
    assert all(isinstance(modules[n.rsplit(".", 1)[0]], nn.Conv2d | nn.Linear) for n in decay)
    assert len(decay) == 21 and "fc.bias" in no_decay and "bn1.weight" in no_decay  # 20 convs + fc
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    opt = make_optimizer(model, Recipe(optimizer={"no_bias_decay": True, "weight_decay": 5e-5}))
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-5, 0.0]
    assert [len(g["params"]) for g in opt.param_groups] == [len(decay), len(no_decay)]
    assert len(make_optimizer(model, Recipe()).param_groups) == 1


# ---------------------------------------------------------------- data


def test_digits_split_resize_channels():
    a = load_data("digits", (3, 16, 20), classes=10)
    b = load_data("digits", (3, 16, 20), classes=10, augment=False)
    assert (len(a.train), len(a.val), a.classes) == (1437, 360, 10)
    x, _ = a.val[0]
    assert x.shape == (3, 16, 20) and torch.equal(x[0], x[2])
    labels = torch.stack([a.val[i][1] for i in range(len(a.val))])
    assert labels.bincount().min() >= 35  # stratified: ~36 of each digit
    assert torch.equal(b.val.tensors[0], a.val.tensors[0])  # a fixed split
    torch.manual_seed(0)
    shifted = {tuple(a.train[0][0].flatten()[:64].tolist()) for _ in range(12)}
    assert len(shifted) > 1 and torch.equal(b.train[0][0], b.train[0][0])
    with pytest.raises(netspec.SpecError, match="10 classes but the network outputs 5"):
        load_data("digits", (1, 8, 8), classes=5)


def test_synthetic_and_unknown():
    s = load_data("synthetic:50", (3, 8, 8), classes=4)
    assert (len(s.train), len(s.val), s.train[0][0].shape) == (40, 10, (3, 8, 8))
    with pytest.raises(netspec.SpecError, match="unknown data set 'cifar100:/x'"):
        load_data("cifar100:/x", (3, 32, 32))


def test_missing_torchvision_sets_explain_the_layout(tmp_path):
    spec = netspec.load_spec(LENET, [f"train.data=mnist:{tmp_path}"])
    with pytest.raises(netspec.SpecError) as err:
        train(spec, out=tmp_path / "run", log="quiet")
    text = str(err.value)
    assert "<--set train.data=" in text and "train.data: MNIST not found" in text
    assert "train-images-idx3-ubyte" in text and "`--download`" in text
    assert not (tmp_path / "MNIST").exists()  # nothing downloaded
    with pytest.raises(netspec.SpecError, match="cifar-10-batches-py"):
        load_data(f"cifar10:{tmp_path}", (3, 32, 32))
    with pytest.raises(netspec.SpecError, match=r"/train/<class>/<image>"):
        load_data(f"imagefolder:{tmp_path}", (3, 32, 32))


def test_imagefolder_reads_a_tiny_set(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls, color in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 30), color).save(tmp_path / split / cls / f"{i}.png")
    s = load_data(f"imagefolder:{tmp_path}", (3, 24, 24), classes=2)
    assert (len(s.train), len(s.val), s.classes) == (6, 6, 2)
    assert s.train[0][0].shape == (3, 24, 24) and s.val[0][0].shape == (3, 24, 24)


def test_pca_lighting():
    light = Lighting(0.1)
    alpha = torch.tensor([0.5, -1.0, 2.0])
    v, lam = torch.tensor(IMAGENET_EIGVEC), torch.tensor(IMAGENET_EIGVAL)
    expected = torch.stack([sum(v[c, k] * alpha[k] * lam[k] for k in range(3)) for c in range(3)])
    assert torch.allclose(light.offset(alpha), expected)
    img = torch.rand(3, 5, 5)
    torch.manual_seed(0)
    out = light(img)
    delta = out - img
    assert torch.allclose(delta, delta[:, :1, :1].expand_as(delta), atol=1e-6)  # one RGB shift per image
    assert delta.abs().max() < 0.2
    assert torch.equal(Lighting(0.0)(img), img)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    state = {"model": {"w": torch.arange(6.0)}, "epoch": 3, "rng": ckpt.rng_state()}
    digest = save_checkpoint(tmp_path / "a.pt", state)
    assert (tmp_path / "a.pt.sha256").read_text().startswith(digest)
    loaded = load_checkpoint(tmp_path / "a.pt")
    tensors_equal(loaded, state)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "a.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(tmp_path / "a.pt")
    save_checkpoint(tmp_path / "b.pt", state)
    (tmp_path / "b.pt.sha256").unlink()
    with pytest.raises(CheckpointError, match="no checksum"):
        load_checkpoint(tmp_path / "b.pt")


def test_rng_state_roundtrip():
    import random

    import numpy as np

    g = torch.Generator().manual_seed(5)
    state = ckpt.rng_state(g)
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=g))
    ckpt.set_rng_state(state, g)
    second = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=g))
    assert torch.equal(first[0], second[0]) and (first[1] == second[1]).all()
    assert first[2] == second[2] and torch.equal(first[3], second[3])


def test_load_latest_falls_back(tmp_path):
    for epoch in (1, 2, 3):
        data = ckpt.serialize({"epoch": epoch})
        save_checkpoint(ckpt.epoch_path(tmp_path, epoch), data)
        if epoch < 3:  # a crash between the epoch file and `last`: last.pt is older
            save_checkpoint(tmp_path / ckpt.LAST, data)
    path, state, skipped = load_latest(tmp_path)
    assert (path.name, state["epoch"], skipped) == ("epoch_0003.pt", 3, [])
    ckpt.epoch_path(tmp_path, 3).write_bytes(b"garbage")
    path, state, skipped = load_latest(tmp_path)
    assert (path.name, state["epoch"], len(skipped)) == ("last.pt", 2, 1)
    (tmp_path / "last.pt").write_bytes(b"\0" * 10)
    path, state, skipped = load_latest(tmp_path)
    assert (path.name, state["epoch"], len(skipped)) == ("epoch_0002.pt", 2, 2)
    assert load_latest(tmp_path / "empty") is None


# ---------------------------------------------------------------- the runner


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """LeNet-5 trained on digits with the recipe in specs/lenet5.yaml (the acceptance run)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("lenet") / "run"
    events = []
    start = time.perf_counter()
    result = train(LENET, out=out, log=events.append)
    seconds = time.perf_counter() - start
    print(f"\nLeNet-5 on digits: val top-1 {100 * result.final['val_top1']:.2f}% in {seconds:.1f}s")
    return result, events, seconds


def test_lenet5_learns_digits(lenet_run):
    result, events, seconds = lenet_run
    assert result.final["val_top1"] >= 0.975, result.history
    assert result.final["val_top5"] >= 0.99
    assert len(result.history) == 15 and result.final["step"] == 15 * (1437 // 32)
    assert seconds < 240  # about 10 s on 2 idle cores; generous for a loaded CI machine
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("epoch") == 15
    assert "step" in kinds


def test_run_directory_contents(lenet_run):
    import yaml

    result, _, _ = lenet_run
    out = result.out
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 16))
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "epoch,step,lr,train_loss,val_loss,val_top1,val_top5,images_per_s,time"
    assert len(csv_lines) == 16
    assert yaml.safe_load((out / "spec.yaml").read_text())["name"] == "lenet5"
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["epochs"] == 15 and recipe["effective_lr"] == 0.05 and recipe["iters_per_epoch"] == 44
    assert len(ckpt.epoch_checkpoints(out)) == 15
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 15 and set(state["rng"]) == {"torch", "cuda", "numpy", "python", "loader"}


def test_evaluate_and_evaluate_checkpoint(lenet_run):
    result, _, _ = lenet_run
    metrics = evaluate_checkpoint(LENET, result.out / "last.pt")
    assert metrics["top1"] == pytest.approx(result.final["val_top1"])
    assert metrics["epoch"] == 15 and metrics["n"] == 360
    by_dir = evaluate_checkpoint(LENET, result.out)
    assert by_dir["checkpoint"].endswith("last.pt") and by_dir["top1"] == metrics["top1"]
    split = load_data("digits", (1, 32, 32))
    direct = evaluate(result.model, split)
    assert direct["top1"] == pytest.approx(metrics["top1"]) and direct["loss"] == pytest.approx(
        metrics["loss"]
    )
    assert result.model.training  # evaluate restores the mode


def test_existing_run_is_not_overwritten(lenet_run, tmp_path):
    result, _, _ = lenet_run
    with pytest.raises(TrainError, match="already holds a training run"):
        train(LENET, out=result.out, log="quiet")


def test_corrupt_last_resumes_from_previous(lenet_run, tmp_path):
    result, _, _ = lenet_run
    out = tmp_path / "run"
    shutil.copytree(result.out, out)
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 3])  # truncated
    (out / "checkpoints" / "epoch_0015.pt").unlink()
    notes = []
    res = train(LENET, out=out, resume=True, log=lambda e: notes.append(e), overrides=["train.epochs=15"])
    messages = [e["message"] for e in notes if e["event"] == "note"]
    assert any("checksum mismatch" in m for m in messages), messages
    assert any("resumed from" in m and "epoch_0014.pt" in m for m in messages), messages
    assert res.history[-1]["epoch"] == 15 and len(res.history) == 15
    # the redone last epoch is the original one, bit for bit
    tensors_equal(load_checkpoint(out / "last.pt")["model"], load_checkpoint(result.out / "last.pt")["model"])


RESUME_SETS = ["train.epochs=2", "train.mixup_alpha=0.2", "train.ema_decay=0.9", "train.grad_clip=5.0"]


def test_exact_resume(tmp_path):
    straight = train(LENET, out=tmp_path / "a", overrides=RESUME_SETS, log="quiet")
    first = train(LENET, out=tmp_path / "b", overrides=RESUME_SETS, log="quiet", stop_after=1)
    assert first.stopped_early and len(first.history) == 1
    resumed = train(LENET, out=tmp_path / "b", overrides=RESUME_SETS, log="quiet", resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    keys = ("model", "optimizer", "ema", "rng", "scheduler", "epoch", "step")
    n = tensors_equal({k: a[k] for k in keys}, {k: b[k] for k in keys})
    assert n > 20
    for ours, theirs in zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs)
    assert straight.final["val_loss"] == resumed.final["val_loss"]


class _DivergesAfter(nn.Module):
    """LeNet-sized stand-in whose output turns NaN after `n` training forwards."""

    def __init__(self, n: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.n, self.calls = n, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
        out = self.net(x)
        return out * float("nan") if self.calls > self.n else out


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    split = load_data("digits", (1, 8, 8))
    recipe = Recipe(epochs=3, batch_size=64, optimizer={"lr": 0.05})
    with pytest.raises(TrainError) as err:
        train(_DivergesAfter(30), recipe, data=split, out=tmp_path, log="quiet")  # 22 iterations/epoch
    text = str(err.value)
    assert "loss is nan at epoch 2, iteration 9 of 22" in text and "last.pt" in text, text
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(t).all() for t in state["model"].values())


def test_unwritable_output_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainError, match="cannot write to the output directory"):
        train(LENET, out=tmp_path / "file" / "run", log="quiet")


def test_module_and_json_log(tmp_path, capsys):
    split: DataSplit = load_data("synthetic:96", (3, 8, 8), classes=3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
    recipe = Recipe(
        epochs=2, batch_size=16, optimizer={"name": "adamw", "lr": 1e-3, "no_bias_decay": True}, ema_decay=0.5
    )
    res = train(model, recipe, data=split, out=tmp_path, log="json", log_every=2)
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events].count("step") == 2 * 2  # 4 iterations/epoch, every 2
    assert events[-1]["event"] == "end" and "ema_val_top1" in res.final
    assert "ema_val_top1" in (tmp_path / "metrics.csv").read_text().splitlines()[0]


def test_fp16_with_grad_scaler_resumes_exactly(tmp_path):
    """fp16 autocast with loss scaling (CPU autocast has fp16 too): the scaler's state is in the
    checkpoint and a resumed run is the uninterrupted one, bitwise, scale included."""
    sets = ["train.epochs=2", "train.amp=fp16", "train.grad_clip=5.0", "train.data=synthetic:96"]
    straight = train(LENET, out=tmp_path / "a", overrides=sets, device="cpu", log="quiet")
    train(LENET, out=tmp_path / "b", overrides=sets, device="cpu", log="quiet", stop_after=1)
    train(LENET, out=tmp_path / "b", overrides=sets, device="cpu", log="quiet", resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["scaler"]["scale"] > 0 and a["scaler"]["_growth_tracker"] > 0  # steps were taken
    tensors_equal(
        {k: a[k] for k in ("model", "optimizer", "scaler")},
        {k: b[k] for k in ("model", "optimizer", "scaler")},
    )
    assert math.isfinite(straight.final["val_loss"])


def test_fp16_overflow_skips_steps_instead_of_corrupting_weights(tmp_path):
    """Inputs of 1e3 make the first scaled fp16 gradients overflow (65536 x about 1e3 > 65504):
    the runner must let the scaler skip those steps and lower the scale (an optimizer step on
    them would write inf into the weights and the loss would turn NaN), then train on."""
    torch.manual_seed(0)
    x = torch.randn(64, 1, 4, 4) * 1e3
    y = torch.arange(64) % 2
    split = DataSplit(TensorDataset(x, y), TensorDataset(x, y), 2, "big", (1, 4, 4))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    recipe = Recipe(epochs=2, batch_size=16, amp="fp16", optimizer={"lr": 1e-4, "weight_decay": 0})
    res = train(model, recipe, data=split, out=tmp_path, device="cpu", log="quiet")
    scale = load_checkpoint(tmp_path / "last.pt")["scaler"]["scale"]
    assert scale < 65536.0  # halved at least once: a step was skipped
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    assert math.isfinite(res.final["train_loss"]) and math.isfinite(res.final["val_loss"])


# ---------------------------------------------------------------- a real SIGKILL

_CHILD = """
import sys, torch
torch.set_num_threads(1)
from netspec.train import train
train(sys.argv[1], out=sys.argv[2], overrides=sys.argv[3:], log="json", log_every=1)
"""
KILL_SETS = ["train.epochs=3", "train.batch_size=16", "train.mixup_alpha=0.2"]


def test_sigkill_mid_epoch_then_resume(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, LENET, str(out), *KILL_SETS],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    killed_at = None
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "step" and event["epoch"] == 2 and event["step_in_epoch"] >= 10:
                proc.send_signal(signal.SIGKILL)
                killed_at = event
                break
    finally:
        proc.wait(timeout=120)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # mid-epoch 2: epoch 1 is the last good one
    resumed = train(LENET, out=out, overrides=KILL_SETS, resume=True, log="quiet")
    straight = train(LENET, out=tmp_path / "straight", overrides=KILL_SETS, log="quiet")
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(tmp_path / "straight" / "last.pt")
    tensors_equal(
        {k: a[k] for k in ("model", "optimizer", "rng")}, {k: b[k] for k in ("model", "optimizer", "rng")}
    )


AUX_SPEC = """name: tinyaux
input: {channels: 1, size: 8}
classes: 10
stem:
  - conv: {out: 4, kernel: 3}
  - relu
  - aux: {name: aux1, layers: [flatten, {linear: 10}]}
head: [flatten, {linear: 10}]
train: {epochs: 2, batch_size: 64, aux_weight: 0.3, optimizer: {lr: 0.05}}
"""


def test_aux_network_trains_and_evaluates(tmp_path):
    spec = netspec.loads_spec(AUX_SPEC)
    res = train(spec, out=tmp_path, log="quiet")
    assert len(res.history) == 2 and res.final["val_top1"] > 0.5
    assert type(res.model).__name__ == "AuxNetwork"


def test_bf16_autocast_and_channels_last_on_cpu(tmp_path):
    split = load_data("synthetic:80", (3, 8, 8), classes=3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
    recipe = Recipe(epochs=1, batch_size=16, amp="bf16", channels_last=True, grad_clip=1.0)
    res = train(model, recipe, data=split, out=tmp_path, device="cpu", log="quiet")
    assert math.isfinite(res.final["train_loss"]) and math.isfinite(res.final["val_loss"])
    assert res.model[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_compile_trains_like_eager(tmp_path):
    sets = ["train.epochs=1", "train.compile=true"]
    res = train(LENET, out=tmp_path / "c", overrides=sets, log="quiet")
    eager = train(LENET, out=tmp_path / "e", overrides=["train.epochs=1"], log="quiet")
    assert abs(res.final["val_top1"] - eager.final["val_top1"]) < 0.05


def test_keep_checkpoints_and_rich_output(tmp_path, capsys):
    split = load_data("synthetic:40", (1, 4, 4), classes=2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    recipe = Recipe(epochs=4, batch_size=8)
    train(model, recipe, data=split, out=tmp_path, log="rich", log_every=1, keep_checkpoints=2)
    assert [e for e, _ in ckpt.epoch_checkpoints(tmp_path)] == [4, 3]
    assert len(list((tmp_path / "checkpoints").iterdir())) == 4  # two checkpoints, two checksums
    assert "epoch 4/4" in capsys.readouterr().out


def test_step_events_and_the_rich_bar_show_throughput(tmp_path, capsys):
    import io

    from rich.console import Console

    from netspec.train.progress import Reporter

    split = load_data("synthetic:40", (1, 4, 4), classes=2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    train(model, Recipe(epochs=1, batch_size=8), data=split, out=tmp_path, log="json", log_every=2)
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 2 and all(e["images_per_s"] > 0 for e in steps)
    reporter = Reporter("rich", stream=io.StringIO())
    reporter.emit({**steps[0], "images_per_s": 1234.4})
    screen = Console(file=io.StringIO(), record=True, width=160)
    screen.print(reporter._progress.get_renderable())
    reporter.close()
    text = screen.export_text()
    assert "1234 img/s" in text and f"loss {steps[0]['loss']:.4f}" in text and "2/4" in text


def test_the_package_is_the_runner(tmp_path):
    """`netspec.train(module, recipe)`, as the issue writes it, is netspec.train.train."""
    split = load_data("synthetic:40", (1, 4, 4), classes=2)
    torch.manual_seed(0)
    a = netspec.train(
        nn.Sequential(nn.Flatten(), nn.Linear(16, 2)),
        Recipe(epochs=1, batch_size=8),
        data=split,
        out=tmp_path / "a",
        log="quiet",
    )
    torch.manual_seed(0)
    b = train(
        nn.Sequential(nn.Flatten(), nn.Linear(16, 2)),
        Recipe(epochs=1, batch_size=8),
        data=split,
        out=tmp_path / "b",
        log="quiet",
    )
    assert netspec.train.train is train and torch.equal(a.model[1].weight, b.model[1].weight)


def test_command_line_flags_become_overrides():
    assert train_overrides(epochs=3, download=True) == ["train.epochs=3", "train.download=true"]
    assert train_overrides(data="mnist:/d", download=False) == ['train.data="mnist:/d"']


def test_zoo_train_sections_are_valid_recipes():
    for path in sorted(SPECS.glob("*.yaml")):
        spec = netspec.load_spec(path)
        if spec.train:
            recipe_from_spec(spec)
