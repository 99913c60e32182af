"""Knowledge distillation from a teacher network (Hinton et al. 2015; Bag of Tricks Sec. 5.4).

The recipe's `distill: {teacher: SPEC, checkpoint: PATH, temperature: 20, weight: 1.0}` adds to the
student's loss (cross-entropy with its smoothing, mixup and auxiliary heads)

    weight * T^2 * CE(softmax(r / T), softmax(z / T))
      = -weight * T^2 * sum_k softmax(r / T)_k log softmax(z / T)_k

averaged over the batch, with r the teacher's logits and z the student's, on the same (mixed) input.
The teacher is built from its own spec, loaded from a netspec checkpoint (or a run directory: its
newest usable checkpoint), kept in eval mode and never updated.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .amp import autocast
from .errors import TrainError
from .losses import main_logits, soft_cross_entropy
from .recipe import DistillConfig
from .weights import model_from_checkpoint


def distill_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * mean over the batch of CE(softmax(teacher / T), softmax(student / T)) (float32)."""
    t = float(temperature)
    q = F.softmax(teacher_logits.detach().float() / t, dim=1)
    return t * t * soft_cross_entropy(student_logits.float() / t, q)


def load_teacher(cfg: DistillConfig, dev: torch.device, classes: int | None = None) -> nn.Module:
    """The teacher network of `cfg` (a spec, or a model file: a `.py` path) with its checkpoint's
    weights, on `dev`, in eval mode."""
    from ..resolve import load_spec
    from ..zoo import find_spec
    from .pymodel import ModelFile, is_model_file, read_model_file

    teacher: Any = (
        read_model_file(cfg.teacher) if is_model_file(cfg.teacher) else load_spec(find_spec(cfg.teacher))
    )
    try:
        model, _, _ = model_from_checkpoint(teacher, cfg.checkpoint, ema=cfg.ema)
    except TrainError as exc:
        raise TrainError(f"the teacher: {exc}") from None
    outputs = teacher.classes(model) if isinstance(teacher, ModelFile) else teacher.classes
    if classes is not None and outputs != classes:
        raise TrainError(f"the teacher '{cfg.teacher}' has {outputs} classes but the student has {classes}")
    model = model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Distiller:
    """Called with the student's input and logits, returns weight * distill_loss(student, teacher(x))."""

    def __init__(self, teacher: nn.Module, temperature: float, weight: float, dev: torch.device, amp: str):
        self.teacher, self.temperature, self.weight = teacher, temperature, weight
        self.dev, self.amp = dev, amp

    @classmethod
    def from_config(
        cls, cfg: DistillConfig, dev: torch.device, amp: str, classes: int | None = None
    ) -> Distiller:
        return cls(load_teacher(cfg, dev, classes), cfg.temperature, cfg.weight, dev, amp)

    def __call__(self, x: Tensor, student_logits: Tensor) -> Tensor:
        with torch.no_grad(), autocast(self.dev, self.amp):
            teacher_logits = main_logits(self.teacher(x))
        return self.weight * distill_loss(student_logits, teacher_logits, self.temperature)
