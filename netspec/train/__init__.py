"""The training runner: `train` a spec with the recipe in its `train:` section, `evaluate` a model.

    from netspec.train import train
    result = train("specs/lenet5.yaml", out="runs/lenet5")   # digits, the embedded default data set
    result.final["val_top1"]
    netspec.train(module, recipe, data=split)                # the package is the function too

Modules, one job each: recipe (the `train:` section), lr (the per-iteration schedule), losses
(label smoothing, mixup, auxiliary heads), params (no-bias-decay groups), data (data sets), loaders
(batches: tensor indexing for in-memory data, DataLoader workers for files), threads (intra-op
threads), amp (autocast and grad scaler), step (one optimisation step), state (what a checkpoint
restores), checkpoint (atomic, checksummed checkpoints and RNG states), ema, progress (output),
runner (arguments, run directory, set-up, resume), trainer (the loop: epochs, steps, evaluation,
checkpoints), evaluation, metrics (metrics files), weights (a checkpoint's weights into a network),
distributed (torchrun + DistributedDataParallel), distill (a teacher's soft targets), plots (PNG curves),
loggers/ (TensorBoard, MLflow), rundir (where a run goes, its lock).
Names are imported on first use: `netspec.train.recipe` (validating a `train:` section) needs no torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_EXPORTS = {
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_latest": "checkpoint",
    "save_checkpoint": "checkpoint",
    "DataSplit": "data",
    "load_data": "data",
    "LRSchedule": "lr",
    "Callback": "progress",
    "StopTraining": "progress",
    "Recipe": "recipe",
    "recipe_from_spec": "recipe",
    "train_overrides": "recipe",
    "validate_recipe": "recipe",
    "TrainError": "runner",
    "TrainResult": "runner",
    "evaluate": "runner",
    "evaluate_checkpoint": "runner",
    "train": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'netspec.train' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


class _Runner(types.ModuleType):
    """`netspec.train(model_or_spec, recipe, ...)` is `netspec.train.train(...)`: the package that
    holds the runner can be called as the runner."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return __getattr__("train")(*args, **kwargs)


sys.modules[__name__].__class__ = _Runner
