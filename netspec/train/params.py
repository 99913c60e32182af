"""Optimizer parameter groups, with "no bias decay" (Bag of Tricks, Sec. 3.1): weight decay applies to
the weights of convolutions and linear layers only, not to biases nor to BatchNorm's gamma and beta."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .recipe import Recipe

_DECAYED = (nn.modules.conv._ConvNd, nn.Linear)


def split_decay(model: nn.Module) -> tuple[list[str], list[str]]:
    """(names that get weight decay, names that do not): conv/linear `weight` vs everything else."""
    decay: list[str] = []
    no_decay: list[str] = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            (decay if isinstance(module, _DECAYED) and p_name == "weight" else no_decay).append(full)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float, no_bias_decay: bool) -> list[dict[str, Any]]:
    params = dict(model.named_parameters())
    if not no_bias_decay:
        return [{"params": [p for p in params.values() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = split_decay(model)
    return [
        {"params": [params[n] for n in decay], "weight_decay": weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    o = recipe.optimizer
    groups = param_groups(model, o.weight_decay, o.no_bias_decay)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=o.momentum, nesterov=o.nesterov)
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=o.betas)
