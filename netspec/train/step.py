"""One optimisation step, the same for every precision: zero the gradients, backward through the
(scaled) loss, clip, step, update the scale. With a disabled grad scaler (no fp16) `scale`,
`unscale_` and `update` do nothing and `step` is the optimizer's own."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .ema import EMA


class Optimization:
    """The optimizer of a run with its learning-rate schedule, clipping, loss scaling and EMA."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        schedule: Callable[[int], float],
        *,
        grad_clip: float | None = None,
        ema: EMA | None = None,
    ):
        self.model, self.optimizer, self.scaler, self.schedule = model, optimizer, scaler, schedule
        self.grad_clip, self.ema = grad_clip, ema
        self.params = [p for p in model.parameters() if p.requires_grad]

    def set_lr(self, step: int) -> float:
        lr = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
