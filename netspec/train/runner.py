"""The training loop: `train` a spec (or any classifier module) with a recipe, `evaluate` a model.

A run directory holds
- `spec.yaml` (the resolved spec; `model.py`, a copy of the file, for a model file) and
  `recipe.yaml` (the full recipe, with the effective lr);
- `metrics.jsonl` and `metrics.csv`: a row per epoch (epoch, step, lr, train loss, val loss,
  top-1, top-5, images/s, time; EMA metrics when EMA is on);
- `checkpoints/epoch_NNNN.pt` after every epoch (the newest `keep_checkpoints` of them), `last.pt`
  and `best.pt` (the epoch with the best validation top-1), each with a `.sha256` beside it;
- what the recipe's `loggers` write: `tensorboard/`, `mlflow.db` and `mlartifacts/` (loggers/);
- `.netspec-lock`, locked while a run holds the directory (rundir.py).
A checkpoint holds model, optimizer, schedule step, grad scaler, EMA, epoch, step, the metrics so
far and every RNG state (torch, CUDA, numpy, python, the data loader's generator), so a resumed run
is the run that was not interrupted: bitwise on CPU. A resume compares the spec (or model file) and
the recipe with the run's and refuses a different one unless forced (`force_resume`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import io
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import Problem, SpecError
from ..source import locate
from ..spec import Spec
from . import checkpoint as ckpt
from . import distributed, finetune, rundir
from .data import DataSplit, load_data, loaders
from .ema import EMA
from .errors import RunDirError, TrainError
from .loggers import Logger, RunInfo, check_loggers, open_loggers
from .losses import Criterion, main_logits, mixup, sample_mixup
from .lr import LRSchedule
from .params import make_optimizer
from .progress import Event, Listener, Reporter
from .pymodel import ModelFile, is_model_file, read_model_file
from .recipe import Recipe, check_training_memory, recipe_from_spec, validate_recipe

CHECKPOINT_FORMAT = "netspec-train"
CHECKPOINT_VERSION = 1
CSV_FIELDS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "val_top1",
    "val_top5",
    "images_per_s",
    "time",
]
EMA_FIELDS = ["ema_val_loss", "ema_val_top1", "ema_val_top5"]


@dataclass
class TrainResult:
    out: Path
    history: list[dict[str, Any]]
    model: nn.Module
    checkpoint: Path | None
    best_top1: float = 0.0
    best_epoch: int = 0
    time: float = 0.0
    stopped_early: bool = False  # `stop_after` ended the run before the recipe's last epoch

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


@dataclass
class _Run:
    """Everything a checkpoint restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any
    ema: EMA | None
    generator: torch.Generator
    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    teacher: Any = None  # a Distiller when the recipe has `distill`
    rank: int = 0


# ---------------------------------------------------------------- resolving the arguments


@dataclass
class _Subject:
    """What a run trains, and what the runner must know of it: a spec (built in the run, with its
    init seed), a model file (built from its build_model()) or a module given from Python."""

    name: str
    spec: Spec | None = None
    model: nn.Module | None = None
    input_shape: tuple[int, int, int] | None = None
    classes: int | None = None
    raw: Any = None  # the positioned tree holding `train:`, to locate data errors
    source: Path | None = None  # a model file: copied into the run directory


def _subject(
    model_or_spec: Any,
    recipe: Recipe | dict[str, Any] | None,
    overrides: list[str] | None,
    input_shape: tuple[int, int, int] | None,
) -> tuple[_Subject, Recipe]:
    if is_model_file(model_or_spec):
        mf = read_model_file(model_or_spec, overrides)
        resolved = _resolve_recipe(recipe, None) if recipe is not None else mf.recipe
        _seed_all(resolved.seed)  # build_model() draws its initial weights from the global RNGs
        built = mf.build()
        subject = _Subject(mf.name, None, built, mf.input_shape, mf.classes(built), mf.raw, mf.path.resolve())
        return subject, resolved
    spec, model = _resolve_spec(model_or_spec, overrides)
    resolved = _resolve_recipe(recipe, spec)
    if spec is not None and spec.outputs is not None:  # a dict of feature maps: no labels to fit
        where = ("outputs",)
        raise SpecError(
            Problem(
                "training fits a classifier, and this spec ends in `outputs:` (a dict of feature maps)",
                where,
                locate(spec.raw, where),
                "train a spec with `classes:`; a backbone's weights load from its classifier's checkpoint",
            )
        )
    if spec is not None:
        return _Subject(spec.name, spec, None, _input_shape(spec), spec.classes, spec.raw), resolved
    assert model is not None
    return _Subject(type(model).__name__.lower(), None, model, input_shape), resolved


def _data_split(subject: _Subject, recipe: Recipe, data: str | DataSplit | None) -> DataSplit:
    """`data` (default: the recipe's) shaped for the subject; errors located in its `train:`."""
    if isinstance(data, DataSplit):
        return data
    if subject.input_shape is None:
        raise TypeError("train(model, data=NAME) needs input_shape=(C, H, W) when given a module")
    return load_data(
        data or recipe.data,
        subject.input_shape,
        classes=subject.classes,
        val_fraction=recipe.val_fraction,
        download=recipe.download,
        augment=recipe.augment,
        where=locate(subject.raw, ("train", "data")),
        preset=recipe.preset,
        preset_where=locate(subject.raw, ("train", "preset")),
    )


def _resolve_spec(model_or_spec: Any, overrides: list[str] | None) -> tuple[Spec | None, nn.Module | None]:
    if isinstance(model_or_spec, nn.Module):
        return None, model_or_spec
    if isinstance(model_or_spec, Spec):
        if overrides:
            raise TypeError("overrides apply to a spec file; pass load_spec(path, overrides) instead")
        return model_or_spec, None
    if isinstance(model_or_spec, str | os.PathLike):
        from ..resolve import load_spec
        from ..zoo import find_spec

        return load_spec(find_spec(str(model_or_spec)), overrides), None
    raise TypeError(f"train() takes a Spec, a spec path or an nn.Module, not {type(model_or_spec).__name__}")


def _resolve_recipe(recipe: Recipe | dict[str, Any] | None, spec: Spec | None) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe is not None:
        return validate_recipe(recipe, None)
    return recipe_from_spec(spec) if spec is not None else Recipe()


def _input_shape(spec: Spec) -> tuple[int, int, int]:
    size = spec.input.size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return (spec.input.channels, int(h), int(w))


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise TrainError(f"unknown device '{device}' ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device '{device}' was asked for, but CUDA is not available here")
    return dev


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def checkpoint_bytes(run: _Run, recipe: Recipe) -> int:
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


def check_free_space(out: Path, checkpoint: int) -> None:
    """Refuse to start when `out` has not room for about three checkpoints (the new file, its
    temporary copy while it is written, and the previous one, kept until the new one is whole)."""
    need = 3 * checkpoint
    try:
        free = shutil.disk_usage(out).free
    except OSError:  # cannot tell here; a full disk is still reported when a write fails
        return
    if free < need:
        raise TrainError(
            f"not enough free space in the output directory '{out}': {_size(free)} free, but a"
            f" checkpoint of this run takes about {_size(checkpoint)} ({checkpoint} bytes) and"
            f" writing one safely needs about {_size(need)} (the new file, its temporary copy and the"
            " previous checkpoint); free some space or choose another output directory (--out)"
        )


def _write_text(path: Path, text: str) -> None:
    ckpt.atomic_write_bytes(path, text.encode())


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    _write_text(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    fields = CSV_FIELDS + (EMA_FIELDS if history and "ema_val_top1" in history[0] else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    _write_text(out / "metrics.csv", buf.getvalue())


def _clear_run(out: Path) -> None:
    """Remove what an earlier run wrote: netspec's own files only, by name (a file of the user's in
    `checkpoints/` stays, and so does the directory then)."""
    for _, path in ckpt.epoch_checkpoints(out):
        for p in (path, ckpt.sidecar(path)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    with contextlib.suppress(OSError):
        (out / ckpt.EPOCH_DIR).rmdir()  # only when nothing else is in it
    for name in sorted(rundir.RUN_FILES):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (out / name).unlink()
    events = out / "tensorboard"  # TensorBoard would draw the old run's curves beside the new one's
    for path in events.glob("events.out.tfevents.*") if events.is_dir() else []:
        path.unlink()
    with contextlib.suppress(OSError):
        events.rmdir()


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- evaluation


def _as_loader(data: DataLoader | Dataset | DataSplit, batch_size: int) -> DataLoader:
    if isinstance(data, DataSplit):
        data = data.val
    if isinstance(data, DataLoader):
        return data
    return DataLoader(data, batch_size=batch_size, shuffle=False)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DataLoader | Dataset | DataSplit,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    amp: str = "none",
    channels_last: bool = False,
    distributed: bool = False,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy and mean cross-entropy of `model` (in eval mode) on `data` (a
    DataSplit's val set, a Dataset or a DataLoader). The model's training mode is restored.
    `distributed`: `data` is this rank's shard; the sums are all-reduced over the process group."""
    dev = next(model.parameters()).device if device is None else _device(device)
    loader = _as_loader(data, batch_size)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    top1 = torch.zeros((), dtype=torch.long, device=dev)
    top5 = torch.zeros((), dtype=torch.long, device=dev)
    n = 0
    try:
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, amp):
                logits = main_logits(model(x))
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            k = min(5, logits.shape[1])
            best = logits.topk(k, dim=1).indices
            hit = best == y.unsqueeze(1)
            top1 += hit[:, 0].sum()
            top5 += hit.any(dim=1).sum()
            n += y.shape[0]
    finally:
        model.train(was_training)
    sums = [float(loss_sum), int(top1), int(top5), n]
    if distributed:
        from .distributed import all_reduce_sum

        sums = all_reduce_sum(sums, dev)
    n = int(sums[3])
    if n == 0:
        return {"loss": float("nan"), "top1": 0.0, "top5": 0.0, "n": 0}
    return {"loss": sums[0] / n, "top1": int(sums[1]) / n, "top5": int(sums[2]) / n, "n": n}


def _autocast(dev: torch.device, amp: str) -> Any:
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=dev.type, dtype=dtype)


# ---------------------------------------------------------------- checkpoints


def _state(run: _Run, recipe: Recipe, name: str) -> dict[str, Any]:
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
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "rng": ckpt.rng_state(run.generator),
        "history": run.history,
    }


def _dist_state(run: _Run, recipe: Recipe, name: str) -> dict[str, Any]:
    """`_state` plus every rank's RNG states (`rng_ranks`) under torchrun (a collective call)."""
    state = _state(run, recipe, name)
    if distributed.active():
        state["rng_ranks"] = distributed.gather_objects(state["rng"])
    return state


def _restore(run: _Run, state: dict[str, Any], path: Path) -> None:
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path} is not a netspec training checkpoint")
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.scaler is not None and state.get("scaler"):
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


# Recipe fields a resumed run may change: how long it runs and how it is run, not what it computes
# up to the checkpoint (a longer cosine schedule does change the rest of the run, as asked).
RESUMABLE_CHANGES = frozenset(
    [
        "epochs", "workers", "eval_batch_size", "plots", "download", "compile",
        "loggers", "mlflow", "keep_checkpoints",
    ]
)  # fmt: skip


# ---------------------------------------------------------------- training


def train(
    model_or_spec: Spec | str | os.PathLike[str] | nn.Module,
    recipe: Recipe | dict[str, Any] | None = None,
    *,
    data: str | DataSplit | None = None,
    out: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    resume: bool | str | os.PathLike[str] = False,
    log: str | Callable[[Event], None] = "auto",
    log_every: int = 10,
    overrides: list[str] | None = None,
    overwrite: bool = False,
    force_resume: bool = False,
    stop_after: int | None = None,
    keep_checkpoints: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    name: str | None = None,
    callbacks: Sequence[Listener] = (),
) -> TrainResult:
    """Train a spec (a Spec, a spec file or zoo name with `overrides`), a model file (a `.py` path
    defining build_model(), INPUT_SHAPE and RECIPE, as `netspec export` writes it; `overrides` then
    reach RECIPE only) or a built nn.Module (with `input_shape` when `data` is a name) with `recipe`
    (default: the spec's `train:` section, the file's RECIPE).

    data: a data set name (default: the recipe's `data`, `digits` unless set) or a DataSplit.
    out: the run directory: new, empty or a netspec run's; locked for the run's life (a second run
    on it is refused, naming the holder). Refused if it holds a run, unless `resume` (continue from
    its newest usable checkpoint; or a checkpoint file) or `overwrite` (start over: netspec's files
    there are removed). A resume compares the spec (or model file) and the recipe with the run's and
    refuses on a difference, unless `force_resume` (which resumes).
    name: without `out`, a new run takes runs/<name> (default: the spec's name), or runs/<name>-2,
    -3, ... when that holds a run (rundir.claim_new); `resume` continues the highest-numbered one,
    `overwrite` starts runs/<name> over.
    log: auto | plain | rich | json | final | quiet, or a callable receiving each event dict; step
    events come every `log_every` iterations. stop_after: end after this epoch (as an interruption
    would). keep_checkpoints: keep only the newest N per-epoch checkpoints (default: the recipe's
    `keep_checkpoints`, all unless set).
    callbacks: listeners (an object with `on_event(event)`, or a callable) that receive every event
    `log="json"` prints, in order; one raises progress.StopTraining to end the run after the
    current epoch (checkpoint written, `TrainResult.stopped_early`; `resume` continues it exactly).
    Raises SpecError for mistakes in the spec or recipe, TrainError when the run cannot go on, and
    RunDirError (both a SpecError and a TrainError) when the directory must not be used as asked.
    """
    started = time.perf_counter()
    resume = resume or force_resume
    if resume and overwrite:
        raise RunDirError(
            Problem(
                "resume and overwrite exclude each other: a run is either continued or started over",
                hint="--resume continues the run in --out, --overwrite replaces it",
            )
        )
    subject, recipe = _subject(model_or_spec, recipe, overrides, input_shape)
    check_loggers(recipe, subject.raw)  # a missing package is said now, not after the data is read
    if keep_checkpoints is None:
        keep_checkpoints = recipe.keep_checkpoints
    if out is not None and name is not None:
        raise RunDirError(
            Problem("--name and --out both choose the run directory", hint="give one of them, not both")
        )
    run_name = name if name is not None else subject.name
    info = distributed.detect()  # torchrun: RANK, WORLD_SIZE, LOCAL_RANK
    new_name = None  # a new run's directory is chosen when it is claimed (rundir.claim_new)
    if out is not None:
        out_dir = Path(out)
    elif overwrite:
        out_dir = rundir.default_run_dir(run_name)
    elif resume or distributed.restarted():
        out_dir = rundir.newest_run_dir(run_name)
    else:
        out_dir, new_name = rundir.default_run_dir(run_name), run_name
    if info.enabled:
        device = distributed.device_for(info, str(device))
    dev = _device(device)
    if subject.spec is not None:  # refused from the static estimate, before the run directory or data
        check_training_memory(subject.spec, recipe, dev)
    created_group = distributed.init(info, dev)
    lock = None
    try:
        out_dir, lock = _claim(out_dir, new_name, info)
        return _train(
            subject, recipe, info, dev, data, out_dir, resume, log, log_every, overwrite, force_resume,
            stop_after, keep_checkpoints, started, lock, callbacks,
        )  # fmt: skip
    finally:
        if lock is not None:
            lock.release()
        if created_group:
            distributed.shutdown()


def _claim(
    out_dir: Path, new_name: str | None, info: distributed.DistInfo
) -> tuple[Path, rundir.RunLock | None]:
    """Rank 0 claims the run directory (`out_dir`, or a new one for `new_name`: rundir.claim_new) and
    holds its lock for the run's life (rundir.claim); under torchrun every rank learns which it is,
    or that it could not, so that all stop with its message together."""
    lock, failure = None, None
    if info.is_main:
        try:
            if new_name is not None:
                out_dir, lock = rundir.claim_new(new_name)
            else:
                lock = rundir.claim(out_dir)
        except TrainError as exc:  # a RunDirError too
            failure = exc
    if info.enabled:
        told = distributed.broadcast_object((str(failure) if failure is not None else None, str(out_dir)))
        assert isinstance(told, tuple)
        message, out_dir = told[0], Path(told[1])
        if message is not None and failure is None:
            failure = TrainError(f"rank 0 could not take the run directory: {message}")
    if failure is not None:
        raise failure
    return out_dir, lock


def _train(
    subject: _Subject,
    recipe: Recipe,
    info: distributed.DistInfo,
    dev: torch.device,
    data: str | DataSplit | None,
    out_dir: Path,
    resume: bool | str | os.PathLike[str],
    log: str | Callable[[Event], None],
    log_every: int,
    overwrite: bool,
    force_resume: bool,
    stop_after: int | None,
    keep_checkpoints: int | None,
    started: float,
    lock: rundir.RunLock | None,
    callbacks: Sequence[Listener],
) -> TrainResult:
    spec, name = subject.spec, subject.name
    main = info.is_main
    if not resume and distributed.restarted() and rundir.holds_run(out_dir):
        resume = True  # torchrun restarted the workers after a failure: go on from the last checkpoint
    replace = rundir.holds_run(out_dir) and not resume
    if replace and not overwrite:
        epochs = [e for e, _ in ckpt.epoch_checkpoints(out_dir)]
        upto = f" (checkpoints up to epoch {epochs[0]})" if epochs else ""
        if lock is not None and lock.stale is not None:  # said now: the next run will not see it
            upto += f", whose last process ended without releasing it ({lock.stale})"
        raise RunDirError(
            Problem(
                f"'{out_dir}' already holds a training run{upto}",
                hint="resume it with --resume, start it over with --overwrite (which deletes its"
                " checkpoints and metrics), or choose another directory with --out",
            )
        )
    if resume is not True and resume:
        rundir.check_resume_target(out_dir, Path(resume))
    # a stop is decided on rank 0, where the callbacks run, and told to every rank at each epoch's end
    reporter = Reporter(log if main else "quiet", listeners=callbacks if main else ())
    if lock is not None and lock.stale is not None:
        reporter.emit(
            {
                "event": "note",
                "message": f"took over '{out_dir}' from a run that ended without releasing it: {lock.stale}",
            }
        )

    split = _data_split(subject, recipe, data)

    # model, optimizer, loaders: built identically for a fresh and a resumed run
    _seed_all(recipe.seed)
    if spec is not None:
        from ..torch_backend import build

        seed = spec.init.seed if spec.init.seed is not None else recipe.seed
        model = build(spec, seed=seed)
    else:
        assert subject.model is not None
        model = subject.model
    restoring = bool(resume) and (resume is not True or rundir.holds_run(out_dir))
    tuning = finetune.prepare(  # pretrained weights (only when starting) and frozen layers
        model,
        recipe,
        spec,
        start=not restoring,
        input_shape=subject.input_shape,
        raw=subject.raw,
        note=lambda message: reporter.emit({"event": "note", "message": message}),
    )
    if info.enabled:  # the same initial weights everywhere, then each rank its own random stream
        _seed_all(recipe.seed + 1_000_003 * info.rank)
    model = model.to(dev)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(recipe.seed)
    train_loader, val_loader = loaders(
        split,
        recipe.batch_size,
        eval_batch_size=recipe.eval_batch_size,
        workers=recipe.workers,
        generator=generator,
        pin_memory=dev.type == "cuda",
        rank=info.rank,
        world_size=info.world_size,
        seed=recipe.seed,
    )
    iters = len(train_loader)
    schedule = LRSchedule.from_recipe(recipe, iters)
    if info.enabled and recipe.linear_lr_scaling:  # scale by the global batch, batch_size * world
        schedule = dataclasses.replace(schedule, base_lr=schedule.base_lr * info.world_size)
    run = _Run(
        model=model,
        optimizer=make_optimizer(model, recipe),
        # fp16's narrow range needs loss scaling (bf16's does not); torch's CPU autocast has fp16 too
        scaler=torch.amp.GradScaler(dev.type) if recipe.amp == "fp16" else None,
        ema=EMA(model, recipe.ema_decay) if recipe.ema_decay else None,
        generator=generator,
        rank=info.rank,
    )
    if recipe.distill is not None:
        from .distill import Distiller

        run.teacher = Distiller.from_config(recipe.distill, dev, recipe.amp, subject.classes)
    if main:
        check_free_space(out_dir, checkpoint_bytes(run, recipe))
    last_good: Path | None = None
    archived: list[str] = []
    if resume:
        last_good, archived = _resume(run, subject, recipe, out_dir, resume, dev, reporter, force_resume)
    try:
        if main:  # a forced resume keeps the spec, model file and recipe the run had until now
            for kept in rundir.archive(out_dir, archived, run.epoch):
                reporter.emit({"event": "note", "message": f"kept the run's previous {kept}"})
        if main:  # what a killed write left: never read, only in the way
            for partial in ckpt.remove_partial(out_dir):
                reporter.emit(
                    {"event": "note", "message": f"removed {partial}, left by an interrupted write"}
                )
        if main and last_good is not None and last_good.parent == out_dir / ckpt.EPOCH_DIR:
            # a crash between the epoch file and last.pt left last.pt older: bring it up to date
            ckpt.save_checkpoint(out_dir / ckpt.LAST, last_good.read_bytes())
        if main and last_good is not None and _best_row(run.history)["epoch"] == run.epoch:
            # the checkpoint is the best epoch's, and a crash may have come before best.pt's write
            ckpt.save_checkpoint(out_dir / ckpt.BEST, last_good.read_bytes())
        if replace and main:  # only now that the spec, the data and the model are known to be good
            _clear_run(out_dir)
        spec_text = str(model)  # a module given from Python: its repr is what is known of it
        if spec is not None:
            spec_text = _yaml(rundir.spec_doc(spec))
            if main:
                _write_text(out_dir / "spec.yaml", spec_text)
        copy = out_dir / "model.py"
        if subject.source is not None:
            spec_text = subject.source.read_text(encoding="utf-8")
            if main and copy.resolve() != subject.source:
                _write_text(copy, spec_text)  # the code that was trained
        recipe_doc = {
            **recipe.model_dump(mode="json"),
            "effective_lr": schedule.base_lr,
            "iters_per_epoch": iters,
        }
        if (source := finetune.provenance(tuning, out_dir)) is not None:
            recipe_doc["init_weights"] = source  # where the weights came from: path and sha256
        if info.enabled:
            recipe_doc.update(
                world_size=info.world_size, global_batch_size=recipe.batch_size * info.world_size
            )
        if main:
            _write_text(out_dir / "recipe.yaml", _yaml(recipe_doc))
        if main and run.history:  # a kill between a checkpoint and the metrics left them behind it
            _write_metrics(out_dir, run.history)
    except OSError as exc:
        raise TrainError(f"writing the run to '{out_dir}' failed: {exc}") from None

    fwd: Callable[..., Any] = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        fwd = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if recipe.compile:
        fwd = torch.compile(fwd)
    criterion = Criterion(recipe)
    loggers: list[Logger] = []
    if main:
        resumed = run.step if last_good is not None else None
        try:
            loggers = open_loggers(RunInfo(out_dir, name, recipe, spec_text, resumed))
        except OSError as exc:
            raise TrainError(f"opening the run's loggers in '{out_dir}' failed: {exc}") from None
        reporter.listeners[:0] = [logger.on_event for logger in loggers]  # before the user's callbacks
    try:
        params = sum(p.numel() for p in model.parameters())
        reporter.emit(
            {
                "event": "start",
                "name": name,
                "data": split.name,
                "train_size": split.train_size,
                "val_size": split.val_size,
                "epochs": recipe.epochs,
                "start_epoch": run.epoch + 1,
                "iters_per_epoch": iters,
                "params": params,
                "device": str(dev) + (f" x {info.world_size} processes" if info.enabled else ""),
                "out": str(out_dir),
            }
        )
        sync_every = 1 if dev.type == "cpu" else max(1, log_every)
        end_epoch = recipe.epochs if stop_after is None else min(recipe.epochs, stop_after)
        saved = str(last_good) if last_good is not None else None  # the newest checkpoint on disk
        plotter = None
        stopped: str | None = None  # why a callback ended the run early (StopTraining)
        if recipe.plots and main:
            from .plots import Plotter

            plotter = Plotter()
        try:
            for epoch in range(run.epoch + 1, end_epoch + 1):
                stopped = _stop_requested(reporter, info)
                if stopped is not None:
                    break
                if isinstance(train_loader.sampler, DistributedSampler):  # load_data's, when distributed
                    train_loader.sampler.set_epoch(epoch)
                row = _train_epoch(
                    run,
                    fwd,
                    criterion,
                    schedule,
                    recipe,
                    train_loader,
                    epoch,
                    dev,
                    reporter,
                    sync_every,
                    log_every,
                    last_good,
                )
                if info.enabled:  # the mean loss over every rank, the images/s of all of them
                    distributed.sync_buffers(model)  # evaluate and save rank 0's model on every rank
                    loss_sum, ips = distributed.all_reduce_sum([row["train_loss"], row["images_per_s"]], dev)
                    row.update(train_loss=loss_sum / info.world_size, images_per_s=ips)
                t_eval = time.perf_counter()
                shard = info.enabled
                ev = evaluate(
                    model,
                    val_loader,
                    device=dev,
                    amp=recipe.amp,
                    channels_last=recipe.channels_last,
                    distributed=shard,
                )
                row.update(val_loss=ev["loss"], val_top1=ev["top1"], val_top5=ev["top5"])
                if info.enabled:
                    row["val_n"] = ev["n"]
                if run.ema is not None:
                    ee = evaluate(run.ema.module, val_loader, device=dev, amp=recipe.amp, distributed=shard)
                    row.update(ema_val_loss=ee["loss"], ema_val_top1=ee["top1"], ema_val_top5=ee["top5"])
                row["time"] = row["time"] + (time.perf_counter() - t_eval)
                run.epoch = epoch
                run.history.append(row)
                state = _dist_state(run, recipe, name)
                last_good = out_dir / ckpt.LAST
                if main:
                    data_bytes = ckpt.serialize(state)
                    ckpt.save_checkpoint(ckpt.epoch_path(out_dir, epoch), data_bytes)
                    ckpt.save_checkpoint(out_dir / ckpt.LAST, data_bytes)
                    saved = f"{out_dir / ckpt.LAST} (epoch {epoch})"
                    if _best_row(run.history) is row:  # the first epoch with the best val top-1
                        ckpt.save_checkpoint(out_dir / ckpt.BEST, data_bytes)
                    if keep_checkpoints is not None:  # last.pt and best.pt are whole copies: never needed
                        ckpt.prune(out_dir, max(0, keep_checkpoints))
                    _write_metrics(out_dir, run.history)
                    if plotter is not None:
                        lrs = [schedule(t) for t in range(run.step)]
                        missing = plotter(out_dir, run.history, lrs, last=epoch == end_epoch)
                        if missing:
                            reporter.emit({"event": "note", "message": missing})
                reporter.emit({"event": "epoch", "epochs": recipe.epochs, **row})
        except OSError as exc:
            reporter.close()
            what = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror or str(exc)
            kept = f"the last good checkpoint, {saved}, is kept" if saved else "no checkpoint was written"
            hint = "free some space, then " if exc.errno == errno.ENOSPC else ""
            raise TrainError(
                f"writing the run to '{out_dir}' failed: {what}; training stopped; {kept}"
                + (f" ({hint}resume with --resume)" if saved else "")
            ) from None
        finally:
            reporter.close()

        if stopped is not None:
            again = "resume with --resume to continue" if run.epoch < recipe.epochs else "the run is complete"
            message = f"stopped after epoch {run.epoch}: {stopped} ({again})"
            reporter.emit({"event": "note", "message": message})
        best = _best_row(run.history) if run.history else None
        result = TrainResult(
            out=out_dir,
            history=run.history,
            model=model,
            checkpoint=last_good,
            best_top1=best["val_top1"] if best else 0.0,
            best_epoch=best["epoch"] if best else 0,
            time=time.perf_counter() - started,
            stopped_early=run.epoch < recipe.epochs,
        )
        if run.history:
            reporter.emit(
                {
                    "event": "end",
                    "val_top1": run.history[-1]["val_top1"],
                    "best_top1": result.best_top1,
                    "best_epoch": result.best_epoch,
                    "epochs_done": run.epoch,
                    "time": result.time,
                    "out": str(out_dir),
                    "checkpoint": str(last_good) if last_good else None,
                    "stopped": stopped,
                }
            )
        return result
    finally:
        for logger in loggers:
            with contextlib.suppress(OSError):  # never in place of the error that ends the run
                logger.close()


def _best_row(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The first epoch with the best validation top-1 (best.pt's)."""
    return max(history, key=lambda row: row["val_top1"])


def _stop_requested(reporter: Reporter, info: distributed.DistInfo) -> str | None:
    """Why a callback asked the run to stop (on rank 0, where callbacks run), on every rank."""
    if not info.enabled:
        return reporter.stop
    told = distributed.broadcast_object(reporter.stop)
    return told if isinstance(told, str) else None


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, width=100)


def _resume(
    run: _Run,
    subject: _Subject,
    recipe: Recipe,
    out_dir: Path,
    resume: Literal[True] | str | os.PathLike[str],
    dev: torch.device,
    reporter: Reporter,
    force: bool,
) -> tuple[Path | None, list[str]]:
    """Restore the newest usable checkpoint of `out_dir` (or the file `resume`) into `run`, after
    checking that it is a checkpoint of this spec and recipe. Returns (the checkpoint, the run's
    files that a forced resume replaces: to keep under another name)."""
    try:
        if resume is True:
            found = ckpt.load_latest(out_dir, map_location=dev)
        else:
            path = Path(resume)
            found = (path, ckpt.load_checkpoint(path, map_location=dev), [])
    except ckpt.CheckpointError as exc:
        raise TrainError(
            f"{exc} (start over with --overwrite, or choose another directory with --out)"
        ) from None
    if found is None:
        reporter.emit({"event": "note", "message": f"no checkpoint in '{out_dir}': starting from scratch"})
        return None, []
    path, state, skipped = found
    for why in skipped:
        reporter.emit({"event": "note", "message": f"skipped {why}"})
    epoch = int(state.get("epoch", 0))
    newer = [e for e, _ in ckpt.epoch_checkpoints(out_dir) if e > epoch]
    if resume is not True and newer:
        raise RunDirError(
            Problem(
                f"'{path}' is the checkpoint of epoch {epoch}, but '{out_dir}' holds later ones (up to"
                f" epoch {newer[0]}): the resumed run would mix with them",
                hint="resume from a copy of it in a new directory (--out)",
            )
        )
    problems, benign, archived = _run_changes(subject, recipe, state, rundir.run_dir_of(path))
    if problems and not force:
        problems.append(
            Problem(
                f"'{out_dir}' holds a run of another spec or recipe than the one given: resuming it"
                " would mix the two",
                hint="resume with the run's own spec and recipe, start over with --overwrite, or"
                " resume anyway with --force-resume",
            )
        )
        raise RunDirError(problems)
    if problems:
        changed = "; ".join(p.format() for p in problems)
        reporter.emit({"event": "note", "message": f"resuming despite a different spec or recipe: {changed}"})
    if benign:
        message = "the recipe changed since the checkpoint: " + rundir.listed(benign)
        reporter.emit({"event": "note", "message": message})
    _restore(run, state, path)
    reporter.emit({"event": "note", "message": f"resumed from {path} (epoch {run.epoch}, step {run.step})"})
    return path, archived if problems else []


def _run_changes(
    subject: _Subject, recipe: Recipe, state: dict[str, Any], run_dir: Path
) -> tuple[list[Problem], list[rundir.Change], list[str]]:
    """How the network and recipe given now differ from the run's: (problems, located where they
    are given now; recipe changes a resume may make (RESUMABLE_CHANGES); the run's files that the
    differences leave out of date)."""
    problems, stale = rundir.network_changes(run_dir, subject.spec, subject.source)
    if subject.spec is None and subject.source is None and state.get("name") != subject.name:
        problems.append(Problem(f"the run is of '{state.get('name')}', not '{subject.name}'", ("name",)))
    changed, benign = rundir.recipe_changes(
        state.get("recipe", {}), recipe.model_dump(mode="json"), subject.raw, RESUMABLE_CHANGES
    )
    return problems + changed, benign, stale + (["recipe.yaml"] if changed else [])


def _train_epoch(
    run: _Run,
    fwd: Callable[..., Any],
    criterion: Criterion,
    schedule: LRSchedule,
    recipe: Recipe,
    loader: DataLoader,
    epoch: int,
    dev: torch.device,
    reporter: Reporter,
    sync_every: int,
    log_every: int,
    last_good: Path | None,
) -> dict[str, Any]:
    model, opt, scaler = run.model, run.optimizer, run.scaler
    model.train()
    t0 = time.perf_counter()
    total = torch.zeros((), dtype=torch.float64, device=dev)  # loss sum over the epoch
    window = torch.zeros((), dtype=torch.float64, device=dev)  # since the last step event
    n_window = n_images = window_images = 0
    t_window = t0
    steps = len(loader)
    lr = schedule(run.step)
    for i, (x, y) in enumerate(loader):
        lr = schedule(run.step)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if recipe.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y2, lam = None, 1.0
        if recipe.mixup_alpha > 0:
            lam = sample_mixup(recipe.mixup_alpha)
            x, y, y2 = mixup(x, y, lam)
        with _autocast(dev, recipe.amp):
            output = fwd(x)
        loss = criterion(output, y, y2, lam)
        if run.teacher is not None:
            loss = loss + run.teacher(x, main_logits(output))
        detached = loss.detach().double()
        if (i + 1) % sync_every == 0 or i + 1 == steps:
            _check_finite(float(detached), epoch, i, steps, last_good)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if recipe.grad_clip:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            if recipe.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
        if run.ema is not None:
            run.ema.update(model)
        run.step += 1
        total += detached
        window += detached
        n_window += 1
        n_images += y.shape[0]
        window_images += y.shape[0]
        if (i + 1) % log_every == 0:
            mean = float(window) / n_window  # waits for the device: the window's time is its own
            _check_finite(mean, epoch, i, steps, last_good)
            now = time.perf_counter()
            reporter.emit(
                {
                    "event": "step",
                    "epoch": epoch,
                    "step": run.step,
                    "step_in_epoch": i + 1,
                    "steps": steps,
                    "loss": mean,
                    "lr": lr,
                    "images_per_s": window_images / (now - t_window) if now > t_window else 0.0,
                }
            )
            window.zero_()
            n_window = window_images = 0
            t_window = now
    train_loss = float(total) / max(1, steps)
    _check_finite(train_loss, epoch, steps - 1, steps, last_good)
    elapsed = time.perf_counter() - t0
    return {
        "epoch": epoch,
        "step": run.step,
        "lr": lr,
        "train_loss": train_loss,
        "images_per_s": n_images / elapsed if elapsed > 0 else 0.0,
        "time": elapsed,
    }


def _check_finite(value: float, epoch: int, i: int, steps: int, last_good: Path | None) -> None:
    if math.isfinite(value):
        return
    kept = (
        f"the last good checkpoint, {last_good}, is kept"
        if last_good is not None
        else "no checkpoint was written yet"
    )
    raise TrainError(
        f"the training loss is {value} at epoch {epoch}, iteration {i + 1} of {steps}: training"
        f" stopped; {kept} (lower the learning rate, add warmup or `grad_clip`, then resume)"
    )


# ---------------------------------------------------------------- evaluating a checkpoint


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
    path, state = _load_weights(model, checkpoint, ema, map_location, what)
    if isinstance(spec, Spec) and not force:
        _check_run_spec(spec, path)
    return model, path, state


def _check_run_spec(spec: Spec, checkpoint: Path) -> None:
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


def _load_weights(
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


def evaluate_checkpoint(
    model_or_spec: Spec | str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    *,
    data: str | DataSplit | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    ema: bool = False,
    overrides: list[str] | None = None,
    force: bool = False,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Metrics (loss, top1, top5, n) of a checkpoint (a file, or a run directory: its newest usable
    checkpoint) of a spec or a model file (a `.py` path) on the validation split of `data` (default:
    the recipe's). `ema` evaluates the checkpoint's EMA weights. Adds `checkpoint` (the file used)
    and `epoch` to the metrics. The checkpoint of a spec's run is read only with that spec (its
    spec.yaml; the recipe may differ), unless `force`: a RunDirError names the fields that differ.
    A checkpoint file without its `.sha256` (shared alone) is read after `note` (default: a
    warning); a wrong checksum is refused."""
    if isinstance(model_or_spec, nn.Module):
        raise TypeError("evaluate_checkpoint takes a spec (a Spec or a spec file) or a model file")
    dev = _device(device)
    subject, recipe = _subject(model_or_spec, None, overrides, None)
    if subject.spec is not None:
        from ..torch_backend import build

        model, what = build(subject.spec, seed=0), f"the spec '{subject.name}'"
    else:
        assert subject.model is not None
        model, what = subject.model, f"the network of '{model_or_spec}'"
    path, state = _load_weights(model, checkpoint, ema, dev, what, note)
    if subject.spec is not None and not force:
        _check_run_spec(subject.spec, path)
    model = model.to(dev)
    split = _data_split(subject, recipe, data)
    val = _as_loader(split.val, batch_size or recipe.eval_batch_size or recipe.batch_size)
    metrics: dict[str, Any] = evaluate(model, val, device=dev, amp=recipe.amp)
    metrics.update(checkpoint=str(path), epoch=int(state.get("epoch", 0)))
    return metrics


__all__ = [
    "SpecError",
    "TrainError",
    "TrainResult",
    "evaluate",
    "evaluate_checkpoint",
    "model_from_checkpoint",
    "train",
]
