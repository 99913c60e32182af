"""Loggers: where a run's events go besides the console. metrics.csv and metrics.jsonl are always
written (by the runner, beside its checkpoints); the recipe's `loggers:` adds others, each an
optional extra (`pip install "netspec[tensorboard]"`). A logger is a listener like a user's callback
(progress.Callback: `on_event(event)`), opened by the run's main process, closed when the run ends.
A logger whose package is missing is a located error before the run starts (`check_loggers`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...errors import Problem, SpecError
from ...source import locate
from ..progress import Event
from ..recipe import Recipe


@dataclass(frozen=True)
class RunInfo:
    """What a logger knows of the run it follows."""

    out: Path  # the run directory
    name: str  # the spec's (or model file's) name
    recipe: Recipe
    spec_text: str  # spec.yaml, or the model file's source
    resumed_step: int | None  # the checkpoint's step when the run resumes one; None when it starts


class Logger(Protocol):
    def on_event(self, event: Event) -> None: ...

    def close(self) -> None: ...


def _tensorboard(run: RunInfo) -> Logger:
    from .tensorboard import TensorBoardLogger

    return TensorBoardLogger(run)


def _mlflow(run: RunInfo) -> Logger:
    from .mlflow import MlflowLogger

    return MlflowLogger(run)


@dataclass(frozen=True)
class _Kind:
    module: str  # the package it needs (found without importing it)
    extra: str  # netspec's optional extra that installs it
    open: Callable[[RunInfo], Logger]


# csv and jsonl are the runner's own files: naming them in `loggers:` is allowed and changes nothing
KINDS: dict[str, _Kind] = {
    "tensorboard": _Kind("tensorboard", "tensorboard", _tensorboard),
    "mlflow": _Kind("mlflow", "mlflow", _mlflow),
}


def check_loggers(recipe: Recipe, raw: Any = None) -> None:
    """Refuse, before anything runs, a logger whose package is not installed (located in `raw`'s
    `train.loggers`), naming the extra that installs it."""
    problems = []
    for i, name in enumerate(recipe.loggers):
        kind = KINDS.get(name)
        if kind is None or importlib.util.find_spec(kind.module) is not None:
            continue
        path = ("train", "loggers", i)
        problems.append(
            Problem(
                f"the {name} logger needs the '{kind.module}' package, which is not installed",
                path,
                locate(raw, path) if raw is not None else None,
                f'pip install "netspec[{kind.extra}]", or remove {name} from train.loggers',
            )
        )
    if problems:
        raise SpecError(problems)


def open_loggers(run: RunInfo) -> list[Logger]:
    """The recipe's loggers, each named once, opened for `run`."""
    names = dict.fromkeys(run.recipe.loggers)  # in order, without repeats
    return [KINDS[name].open(run) for name in names if name in KINDS]
