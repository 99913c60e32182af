"""The learning rate at every iteration (Bag of Tricks, He et al. 2018, Sec. 3.1 and 5.1).

With W warmup iterations, T iterations in all and peak rate eta, iteration t (0-based) uses
- warmup (t < W): eta * (t + 1) / W, rising linearly from 0 (the paper's "batch i: i * eta / m");
- cosine: eta_t = 0.5 * (1 + cos(pi * t' / T')) * eta with t' = t - W, T' = T - W (decays to 0);
- step: eta * gamma ** (number of milestones m with t >= m * iterations_per_epoch);
- constant: eta.
The schedule is a pure function of the iteration, so a checkpoint stores only the iteration.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

from .recipe import Recipe


@dataclass(frozen=True)
class LRSchedule:
    base_lr: float
    total_iters: int
    warmup_iters: int = 0
    name: str = "cosine"  # cosine | step | constant
    milestones: tuple[int, ...] = field(default=())  # in iterations
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.total_iters < 1 or not 0 <= self.warmup_iters <= self.total_iters:
            raise ValueError(f"bad schedule: {self.warmup_iters} warmup of {self.total_iters} iterations")
        if self.name not in ("cosine", "step", "constant"):
            raise ValueError(f"unknown schedule '{self.name}'")

    def __call__(self, t: int) -> float:
        if t < self.warmup_iters:
            return self.base_lr * (t + 1) / self.warmup_iters
        if self.name == "cosine":
            span = self.total_iters - self.warmup_iters
            return 0.5 * (1 + math.cos(math.pi * (t - self.warmup_iters) / span)) * self.base_lr
        if self.name == "step":
            return self.base_lr * self.gamma ** bisect_right(self.milestones, t)
        return self.base_lr

    @classmethod
    def from_recipe(cls, recipe: Recipe, iters_per_epoch: int) -> LRSchedule:
        s = recipe.schedule
        total = recipe.epochs * iters_per_epoch
        warmup = min(total, round(s.warmup_epochs * iters_per_epoch))
        return cls(
            base_lr=recipe.lr,
            total_iters=total,
            warmup_iters=warmup,
            name=s.name,
            milestones=tuple(m * iters_per_epoch for m in s.milestones),
            gamma=s.gamma,
        )
