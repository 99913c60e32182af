"""Knowledge distillation (the loss against a hand computation, a student taught by a teacher
checkpoint from a first run) and the PNG training curves of a run directory."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from netspec.train import Recipe, train
from netspec.train.distill import Distiller, distill_loss, load_teacher
from netspec.train.plots import NAMES
from netspec.train.recipe import DistillConfig

from .conftest import SPECS

LENET = str(SPECS / "lenet5.yaml")
PNG = b"\x89PNG\r\n\x1a\n"
QUICK = ["train.epochs=1", "train.batch_size=64", "train.data=synthetic:256"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_distill_loss_formula():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 10, generator=g, requires_grad=True), torch.randn(6, 10, generator=g)
    temp = 20.0
    # by hand: T^2 * mean_i( -sum_k softmax(t_i / temp)_k * log softmax(s_i / temp)_k )
    p_teacher = torch.exp(t / temp) / torch.exp(t / temp).sum(1, keepdim=True)
    log_p_student = s / temp - torch.log(torch.exp(s / temp).sum(1, keepdim=True))
    hand = temp**2 * (-(p_teacher * log_p_student).sum(1)).mean()
    got = distill_loss(s, t, temp)
    assert got.item() == pytest.approx(hand.item(), rel=1e-5)
    # = T^2 * (KL(q || p) + H(q)) with torch's own kl_div and entropy
    q = F.softmax(t / temp, 1)
    kl = F.kl_div(F.log_softmax(s / temp, 1), q, reduction="batchmean")
    entropy = -(q * q.log()).sum(1).mean()
    assert got.item() == pytest.approx((temp**2 * (kl + entropy)).item(), rel=1e-5)
    # the gradient w.r.t. the student's logits is T * (softmax(s / temp) - softmax(t / temp)) / N
    got.backward()
    expected = temp * (F.softmax(s.detach() / temp, 1) - q) / s.shape[0]
    assert torch.allclose(s.grad, expected, atol=1e-6)
    # the teacher gets no gradient, and equal logits leave only the teacher's entropy
    assert distill_loss(t, t, 1.0).item() == pytest.approx(
        -(F.softmax(t, 1) * F.log_softmax(t, 1)).sum(1).mean()
    )


def test_distill_recipe_field():
    r = Recipe.model_validate({"distill": {"teacher": "resnet50_d", "checkpoint": "runs/t"}})
    assert r.distill.temperature == 20.0 and r.distill.weight == 1.0 and not r.distill.ema
    assert Recipe().distill is None and Recipe().plots is True
    with pytest.raises(Exception, match=r"temprature|unknown"):
        Recipe.model_validate({"distill": {"teacher": "a", "checkpoint": "b", "temprature": 2}})


def test_distill_end_to_end(tmp_path):
    teacher_run = train(LENET, out=tmp_path / "teacher", log="quiet", device="cpu", overrides=QUICK)
    cfg = DistillConfig(teacher=LENET, checkpoint=str(tmp_path / "teacher"), temperature=4.0, weight=2.0)
    teacher = load_teacher(cfg, torch.device("cpu"), classes=10)
    assert all(
        torch.equal(a, b)
        for a, b in zip(teacher.state_dict().values(), teacher_run.model.state_dict().values(), strict=True)
    )
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    # the distiller adds weight * distill_loss(student, teacher(x))
    x = torch.randn(3, 1, 32, 32)
    student = torch.randn(3, 10)
    d = Distiller(teacher, 4.0, 2.0, torch.device("cpu"), "none")
    with torch.no_grad():
        assert d(x, student).item() == pytest.approx(2.0 * distill_loss(student, teacher(x), 4.0).item())
    sets = [
        *QUICK,
        f"train.distill={{teacher: {LENET}, checkpoint: {tmp_path / 'teacher'}, temperature: 4, weight: 2}}",
    ]
    plain = train(LENET, out=tmp_path / "plain", log="quiet", device="cpu", overrides=QUICK)
    student_run = train(LENET, out=tmp_path / "student", log="quiet", device="cpu", overrides=sets)
    # same seed, same data: the distillation term is what makes the training loss larger
    assert student_run.final["train_loss"] > plain.final["train_loss"]
    assert (tmp_path / "student" / "recipe.yaml").read_text().count("temperature: 4.0") == 1
    bad = [*QUICK, "train.distill={teacher: resnet18, checkpoint: %s}" % (tmp_path / "teacher")]
    from netspec.train import TrainError

    with pytest.raises(TrainError, match=r"does not fit|classes"):
        train(LENET, out=tmp_path / "bad", log="quiet", device="cpu", overrides=bad)


def test_plots_are_pngs(tmp_path):
    sets = [*QUICK, "train.epochs=2", "train.ema_decay=0.9"]
    train(LENET, out=tmp_path / "run", log="quiet", device="cpu", overrides=sets)
    for name in NAMES:
        data = (tmp_path / "run" / name).read_bytes()
        assert data[:8] == PNG and len(data) > 1000, name


def test_no_matplotlib_no_plots_one_note(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    notes: list[str] = []
    result = train(
        LENET,
        out=tmp_path / "run",
        device="cpu",
        overrides=[*QUICK, "train.epochs=2"],
        log=lambda e: notes.append(e["message"]) if e["event"] == "note" else None,
    )
    assert len(result.history) == 2 and not any((tmp_path / "run" / n).exists() for n in NAMES)
    assert sum("matplotlib" in n for n in notes) == 1
