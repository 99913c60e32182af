"""Training losses: label smoothing (two forms), mixup, and auxiliary-head weighting.

Bag of Tricks (He et al. 2018), Sec. 5.2 and 5.4:
- label smoothing, paper form: q_i = 1 - eps for the true class, eps / (K - 1) otherwise;
- uniform form: q = (1 - eps) * onehot + eps / K, i.e. torch's CrossEntropyLoss(label_smoothing=eps);
- mixup: x = lam * x_i + (1 - lam) * x_j, y likewise, lam ~ Beta(alpha, alpha); here x_j is the
  reversed batch, and the loss is lam * CE(y_i) + (1 - lam) * CE(y_j) (equal to CE of the mixed target).
GoogLeNet (Szegedy et al. 2014) adds each auxiliary classifier's loss with weight 0.3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .recipe import Recipe


def smooth_targets(targets: Tensor, classes: int, eps: float, form: str = "paper") -> Tensor:
    """The soft target distribution (N, K) for integer targets (N,)."""
    if form == "paper":
        off = eps / (classes - 1) if classes > 1 else 0.0
        on = 1.0 - eps
    elif form == "uniform":
        off = eps / classes
        on = 1.0 - eps + off
    else:
        raise ValueError(f"unknown label smoothing form '{form}'")
    q = torch.full((targets.shape[0], classes), off, dtype=torch.float32, device=targets.device)
    return q.scatter_(1, targets.long().unsqueeze(1), on)


def soft_cross_entropy(logits: Tensor, q: Tensor) -> Tensor:
    """Mean over the batch of -sum_k q_k log softmax(z)_k (computed in float32)."""
    return -(q * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def cross_entropy(logits: Tensor, targets: Tensor, eps: float = 0.0, form: str = "paper") -> Tensor:
    """Cross-entropy with optional label smoothing."""
    if eps == 0:
        return F.cross_entropy(logits.float(), targets)
    return soft_cross_entropy(logits, smooth_targets(targets, logits.shape[1], eps, form))


def sample_mixup(alpha: float, generator: torch.Generator | None = None) -> float:
    """lam ~ Beta(alpha, alpha), drawn from torch's CPU generator (its state is checkpointed), as
    X / (X + Y) with X, Y ~ Gamma(alpha, 1)."""
    a = torch.full((2,), float(alpha), dtype=torch.float64)
    g = torch._standard_gamma(a) if generator is None else torch._standard_gamma(a, generator=generator)
    total = float(g.sum())
    return float(g[0]) / total if total > 0 else 0.5


def mixup(x: Tensor, y: Tensor, lam: float) -> tuple[Tensor, Tensor, Tensor]:
    """Mix each example with the reversed batch: (lam * x + (1 - lam) * x.flip(0), y, y.flip(0))."""
    return x * lam + x.flip(0) * (1 - lam), y, y.flip(0)


class Criterion:
    """The training loss of a recipe: smoothing, mixup targets and auxiliary heads."""

    def __init__(self, recipe: Recipe):
        self.eps = recipe.label_smoothing.eps
        self.form = recipe.label_smoothing.form
        self.aux_weight = recipe.aux_weight

    def single(self, logits: Tensor, y: Tensor, y2: Tensor | None = None, lam: float = 1.0) -> Tensor:
        loss = cross_entropy(logits, y, self.eps, self.form)
        if y2 is not None and lam != 1.0:
            loss = lam * loss + (1 - lam) * cross_entropy(logits, y2, self.eps, self.form)
        return loss

    def __call__(
        self,
        output: Tensor | tuple[Tensor, list[Tensor]],
        y: Tensor,
        y2: Tensor | None = None,
        lam: float = 1.0,
    ) -> Tensor:
        """`output` is logits, or (logits, [aux logits]) from a network with side heads in training."""
        if isinstance(output, tuple):
            logits, aux = output
            loss = self.single(logits, y, y2, lam)
            for a in aux:
                loss = loss + self.aux_weight * self.single(a, y, y2, lam)
            return loss
        return self.single(output, y, y2, lam)


def main_logits(output: Tensor | tuple[Tensor, list[Tensor]]) -> Tensor:
    return output[0] if isinstance(output, tuple) else output
