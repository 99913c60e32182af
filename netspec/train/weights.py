"""A checkpoint's weights read into a network: the network of a spec or a model file
(`model_from_checkpoint`), or one already built (`load_weights`). A run's checkpoint is read only
with the run's spec; a file shared without its `.sha256` is read after a note, a wrong checksum is
refused."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import Problem
from ..spec import Spec
from . import checkpoint as ckpt
from . import finetune, rundir
from .errors import RunDirError, TrainError
from .pymodel import ModelFile, read_model_file


def model_from_checkpoint(
    spec: Spec | ModelFile | str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    *,
    ema: bool = False,
    map_location: Any = "cpu",
    force: bool = False,
) -> tuple[nn.Module, Path, dict[str, Any]]:
    """The network of a spec (or of a model file: a ModelFile or a `.py` path) with a checkpoint's
    weights (its EMA weights with `ema`): (model, the file used, the checkpoint). `checkpoint` is a
    file or a run directory (its newest usable checkpoint). A spec must be the run's (`force`: any)."""
    if isinstance(spec, Spec):
        from ..torch_backend import build

        model, what = build(spec, seed=0), f"the spec '{spec.name}'"
    else:
        mf = spec if isinstance(spec, ModelFile) else read_model_file(spec)
        model, what = mf.build(), f"the network of '{mf.path}'"
    path, state = load_weights(model, checkpoint, ema, map_location, what)
    if isinstance(spec, Spec) and not force:
        check_run_spec(spec, path)
    return model, path, state


def check_run_spec(spec: Spec, checkpoint: Path) -> None:
    """Weights of the same shapes read into other functions (tanh -> relu) load without an error:
    a checkpoint of a run is read only with the run's spec (its spec.yaml, the recipe aside)."""
    run_dir = rundir.run_dir_of(checkpoint)
    saved = run_dir / "spec.yaml"
    if not (saved.is_file() and rundir.is_run_dir(run_dir)):
        return
    problems = rundir.spec_changes(spec, saved)
    if problems:
        problems.append(
            Problem(
                f"'{checkpoint}' was trained with another network than the spec given (the run's is"
                f" '{saved}'): its weights would be read into the wrong layers",
                hint="give the run's spec.yaml, or --force to read them anyway",
            )
        )
        raise RunDirError(problems)


def load_weights(
    model: nn.Module,
    checkpoint: str | os.PathLike[str],
    ema: bool,
    map_location: Any,
    what: str,
    note: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Load a checkpoint's (EMA) weights into `model`: (the file used, the checkpoint)."""
    path, state = _read_checkpoint(checkpoint, map_location, note)
    weights = state.get("ema" if ema else "model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise TrainError(f"{path} has no {'EMA ' if ema else ''}model weights")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise TrainError(f"{path} does not fit {what}: {exc}") from None
    return path, state


def _read_checkpoint(
    checkpoint: str | os.PathLike[str], map_location: Any, note: Callable[[str], None] | None = None
) -> tuple[Path, dict[str, Any]]:
    """A run directory's newest usable checkpoint, or a checkpoint file; a file shared without its
    `.sha256` is read after a note (default: a warning), a wrong checksum is refused."""
    path = Path(checkpoint)
    try:
        if path.is_dir():
            found = ckpt.load_latest(path, map_location=map_location)
            if found is None:
                raise TrainError(f"'{path}' holds no checkpoint")
            path, state, _ = found
        else:
            state = finetune.read_training_checkpoint(path, note or _warn, map_location)
    except ckpt.CheckpointError as exc:
        raise TrainError(str(exc)) from None
    return path, state


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, UserWarning, stacklevel=4)
