"""A training run's state, everything a checkpoint restores: model, optimizer, grad scaler, EMA,
epoch, step, the metrics so far and every RNG state (torch, CUDA, numpy, python, the data loader's
generator), so that a resumed run is the run that was not interrupted (bitwise on CPU)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint as ckpt
from . import distributed
from .ema import EMA
from .errors import TrainError
from .recipe import Recipe

CHECKPOINT_FORMAT = "netspec-train"
CHECKPOINT_VERSION = 1


@dataclass
class RunState:
    """Everything a checkpoint restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any  # a torch.amp.GradScaler (disabled unless fp16), or None
    ema: EMA | None
    generator: torch.Generator
    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    teacher: Any = None  # a Distiller when the recipe has `distill`
    rank: int = 0

    @property
    def scaling(self) -> bool:
        return self.scaler is not None and self.scaler.is_enabled()


def checkpoint_state(run: RunState, recipe: Recipe, name: str) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "name": name,
        "recipe": recipe.model_dump(mode="json"),
        "epoch": run.epoch,
        "step": run.step,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": {"step": run.step},
        "scaler": run.scaler.state_dict() if run.scaling else None,
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "rng": ckpt.rng_state(run.generator),
        "history": run.history,
    }


def dist_checkpoint_state(run: RunState, recipe: Recipe, name: str) -> dict[str, Any]:
    """`checkpoint_state` plus every rank's RNG states (`rng_ranks`) under torchrun (a collective
    call: every rank makes it)."""
    state = checkpoint_state(run, recipe, name)
    if distributed.active():
        state["rng_ranks"] = distributed.gather_objects(state["rng"])
    return state


def restore(run: RunState, state: dict[str, Any], path: Path) -> None:
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path} is not a netspec training checkpoint")
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.scaling and state.get("scaler"):
            run.scaler.load_state_dict(state["scaler"])
        if run.ema is not None:
            run.ema.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise TrainError(f"{path} does not fit this model and recipe: {exc}") from None
    run.epoch, run.step = int(state["epoch"]), int(state["step"])
    run.history = [dict(row) for row in state.get("history", [])]
    ranks = state.get("rng_ranks")
    rng = ranks[run.rank] if isinstance(ranks, list) and len(ranks) > run.rank else state["rng"]
    ckpt.set_rng_state(rng, run.generator)


def checkpoint_bytes(run: RunState, recipe: Recipe) -> int:
    """An estimate of one checkpoint's size in bytes: the model's parameters and buffers, the
    optimizer's state (a momentum buffer per parameter for SGD with momentum, two moments for
    AdamW), the EMA copy, and 64 KiB for the RNG states, the recipe and the history."""

    def nbytes(tensors: Any) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    weights = nbytes(run.model.state_dict().values())  # parameters and buffers
    params = nbytes(p for p in run.model.parameters() if p.requires_grad)
    o = recipe.optimizer
    slots = (1 if o.momentum else 0) if o.name == "sgd" else 2
    ema = weights if run.ema is not None else 0
    return weights + slots * params + ema + 64 * 1024
