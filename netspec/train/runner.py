"""The runner: `train` a spec (or any classifier module) with a recipe, `evaluate` a model.

`train` resolves its arguments, claims the run directory, sets the run up (threads, data, model,
optimizer: built identically for a fresh and a resumed run), resumes it, writes the run's files and
hands the epochs to the Trainer (trainer.py).

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
import dataclasses
import functools
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..errors import Problem, SpecError
from ..source import locate
from ..spec import Spec
from . import checkpoint as ckpt
from . import distributed, finetune, rundir
from .amp import grad_scaler
from .data import DataSplit, load_data, loaders
from .distill import Distiller
from .ema import EMA
from .errors import RunDirError, TrainError
from .evaluation import as_batches, evaluate, resolve_device
from .loaders import Loader, TensorBatches, default_workers
from .loggers import Logger, RunInfo, check_loggers, open_loggers
from .lr import LRSchedule
from .metrics import write_metrics, write_text
from .params import make_optimizer
from .progress import Event, Listener, Reporter
from .pymodel import is_model_file, read_model_file
from .recipe import Recipe, check_training_memory, recipe_from_spec, validate_recipe
from .state import RunState, checkpoint_bytes, restore
from .step import Optimization
from .threads import ThreadChoice, choose_threads
from .trainer import Setting, Trainer, best_row
from .weights import check_run_spec, load_weights, model_from_checkpoint
from .writes import BackgroundWrites

_Run = RunState  # the name earlier code and tests use


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


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


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


# Recipe fields a resumed run may change: how long it runs and how it is run, not what it computes
# up to the checkpoint (a longer cosine schedule does change the rest of the run, as asked).
RESUMABLE_CHANGES = frozenset(
    [
        "epochs", "workers", "threads", "eval_batch_size", "plots", "download", "compile",
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
    dev = resolve_device(device)
    if subject.spec is not None:  # refused from the static estimate, before the run directory or data
        check_training_memory(subject.spec, recipe, dev)
    created_group = distributed.init(info, dev)
    lock = None
    caller_threads = torch.get_num_threads()  # the run chooses its own; the caller's come back after
    try:
        out_dir, lock = _claim(out_dir, new_name, info)
        job = _Job(
            info, dev, out_dir, resume, overwrite, force_resume, stop_after, keep_checkpoints, log_every,
            started, lock,
        )  # fmt: skip
        return _train(subject, recipe, job, data, log, callbacks)
    finally:
        torch.set_num_threads(caller_threads)
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


@dataclass
class _Job:
    """What `train` was asked to do, beside the subject and the recipe."""

    info: distributed.DistInfo
    dev: torch.device
    out_dir: Path
    resume: bool | str | os.PathLike[str]
    overwrite: bool
    force_resume: bool
    stop_after: int | None
    keep_checkpoints: int | None
    log_every: int
    started: float
    lock: rundir.RunLock | None


def _train(
    subject: _Subject,
    recipe: Recipe,
    job: _Job,
    data: str | DataSplit | None,
    log: str | Callable[[Event], None],
    callbacks: Sequence[Listener],
) -> TrainResult:
    main = job.info.is_main
    replace = _check_out_dir(job)
    # a stop is decided on rank 0, where the callbacks run, and told to every rank at each epoch's end
    reporter = Reporter(log if main else "quiet", listeners=callbacks if main else ())
    if job.lock is not None and job.lock.stale is not None:
        message = f"took over '{job.out_dir}' from a run that ended without releasing it: {job.lock.stale}"
        reporter.emit({"event": "note", "message": message})
    split = _data_split(subject, recipe, data)
    built = _set_up(subject, recipe, job, split, reporter)
    if main:
        check_free_space(job.out_dir, checkpoint_bytes(built.run, recipe))
    last_good: Path | None = None
    archived: list[str] = []
    if job.resume:
        last_good, archived = _resume(
            built.run, subject, recipe, job.out_dir, job.resume, job.dev, reporter, job.force_resume
        )
    writes = BackgroundWrites()  # the run's files, written beside the training (writes.py)
    try:
        spec_text = _write_run_files(
            subject, recipe, job, built, last_good, archived, replace, reporter, writes
        )
        loggers: list[Logger] = []
        if main:
            resumed = built.run.step if last_good is not None else None
            try:
                loggers = open_loggers(RunInfo(job.out_dir, subject.name, recipe, spec_text, resumed))
            except OSError as exc:
                raise TrainError(f"opening the run's loggers in '{job.out_dir}' failed: {exc}") from None
            reporter.listeners[:0] = [logger.on_event for logger in loggers]  # before the user's callbacks
        try:
            return _fit(subject, recipe, job, split, built, last_good, reporter, writes)
        finally:
            for logger in loggers:
                with contextlib.suppress(OSError):  # never in place of the error that ends the run
                    logger.close()
    finally:
        writes.close()


def _check_out_dir(job: _Job) -> bool:
    """Whether the run replaces one in `out_dir` (refused unless `overwrite`); a torchrun restart
    resumes. Returns `replace`; sets `job.resume` for a restart."""
    out_dir, lock = job.out_dir, job.lock
    if not job.resume and distributed.restarted() and rundir.holds_run(out_dir):
        job.resume = True  # torchrun restarted the workers after a failure: go on from the last checkpoint
    replace = rundir.holds_run(out_dir) and not job.resume
    if replace and not job.overwrite:
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
    if job.resume is not True and job.resume:
        rundir.check_resume_target(out_dir, Path(job.resume))
    return replace


@dataclass
class _Built:
    """A run's pieces, built identically for a fresh and a resumed run."""

    run: RunState
    train_batches: Loader
    val_batches: Loader
    schedule: LRSchedule
    tuning: Any  # finetune.prepare's: where the initial weights came from
    threads: ThreadChoice


def _set_up(subject: _Subject, recipe: Recipe, job: _Job, split: DataSplit, reporter: Reporter) -> _Built:
    info, dev = job.info, job.dev
    _seed_all(recipe.seed)
    if subject.spec is not None:
        from ..torch_backend import build

        spec = subject.spec
        model = build(spec, seed=spec.init.seed if spec.init.seed is not None else recipe.seed)
    else:
        assert subject.model is not None
        model = subject.model
    restoring = bool(job.resume) and (job.resume is not True or rundir.holds_run(job.out_dir))
    tuning = finetune.prepare(  # pretrained weights (only when starting) and frozen layers
        model,
        recipe,
        subject.spec,
        start=not restoring,
        input_shape=subject.input_shape,
        raw=subject.raw,
        note=lambda message: reporter.emit({"event": "note", "message": message}),
    )
    threads = _choose_threads(subject, recipe, model, split.input_shape, dev)
    torch.set_num_threads(threads.threads)
    if info.enabled:  # the same initial weights everywhere, then each rank its own random stream
        _seed_all(recipe.seed + 1_000_003 * info.rank)
    model = model.to(dev)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(recipe.seed)
    train_batches, val_batches = _batches(split, recipe, job, generator)
    schedule = LRSchedule.from_recipe(recipe, len(train_batches))
    if info.enabled and recipe.linear_lr_scaling:  # scale by the global batch, batch_size * world
        schedule = dataclasses.replace(schedule, base_lr=schedule.base_lr * info.world_size)
    run = RunState(
        model=model,
        optimizer=make_optimizer(model, recipe),
        scaler=grad_scaler(dev, recipe.amp),
        ema=EMA(model, recipe.ema_decay) if recipe.ema_decay else None,
        generator=generator,
        rank=info.rank,
    )
    if recipe.distill is not None:
        run.teacher = Distiller.from_config(recipe.distill, dev, recipe.amp, subject.classes)
    return _Built(run, train_batches, val_batches, schedule, tuning, threads)


def _batches(
    split: DataSplit, recipe: Recipe, job: _Job, generator: torch.Generator
) -> tuple[Loader, Loader]:
    """The training and validation batches (loaders.py); a small in-memory data set lives on the GPU."""
    info, dev = job.info, job.dev
    train_batches, val_batches = loaders(
        split,
        recipe.batch_size,
        eval_batch_size=recipe.eval_batch_size,
        workers=default_workers() if recipe.workers is None else recipe.workers,
        generator=generator,
        pin_memory=dev.type == "cuda",
        rank=info.rank,
        world_size=info.world_size,
        seed=recipe.seed,
    )
    for batches in (train_batches, val_batches):
        if isinstance(batches, TensorBatches):
            batches.to(dev)
    return train_batches, val_batches


def _choose_threads(
    subject: _Subject, recipe: Recipe, model: nn.Module, input_shape: tuple[int, ...], dev: torch.device
) -> ThreadChoice:
    """The run's intra-op threads (threads.py): the recipe's, or chosen from a step's MACs."""
    if subject.spec is not None:
        from ..analysis import analyze

        macs = analyze(subject.spec).macs
    else:
        macs = _counted_macs(model, input_shape)
    return choose_threads(recipe.threads, macs_per_sample=macs, batch_size=recipe.batch_size, device=dev)


def _threads_note(choice: ThreadChoice) -> str:
    """How the threads were chosen, for the header and recipe.yaml: `auto: small steps (0.42M MACs)`,
    `4 requested`, `OMP_NUM_THREADS=1`."""
    return f"auto: {choice.reason}" if choice.source == "auto" else choice.reason


def _counted_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """A module's forward MACs for one example, counted by torch's FLOP counter (2 FLOPs a MAC) on a
    zero input in eval mode (BatchNorm takes a batch of one there); 0 when the forward fails, as
    training then says why."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    counter = FlopCounterMode(display=False)
    device = next(model.parameters(), torch.zeros(())).device  # a module given from Python may be on a GPU
    try:
        with torch.no_grad(), counter:
            model.eval()(torch.zeros(1, *input_shape, device=device))
    except Exception:  # any failure of the user's forward shows in the first step
        return 0
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def _write_run_files(
    subject: _Subject,
    recipe: Recipe,
    job: _Job,
    built: _Built,
    last_good: Path | None,
    archived: list[str],
    replace: bool,
    reporter: Reporter,
    writes: BackgroundWrites,
) -> str:
    """Bring the run directory up to date before the first epoch (rank 0): what a forced resume or a
    kill left, now; the spec (or model file), recipe.yaml and the metrics of a resumed run by the
    writer thread, before any checkpoint of this run and while its first epoch trains (a failure is
    raised at the first epoch's end). Returns the text of what is trained."""
    out_dir, run, main = job.out_dir, built.run, job.info.is_main
    note = lambda message: reporter.emit({"event": "note", "message": message})  # noqa: E731
    files: dict[Path, str] = {}
    try:
        if main:
            _repair(out_dir, run, archived, last_good, replace, note)
        spec_text = str(run.model)  # a module given from Python: its repr is what is known of it
        if subject.spec is not None:
            spec_text = files[out_dir / "spec.yaml"] = _yaml(rundir.spec_doc(subject.spec))
        copy = out_dir / "model.py"
        if subject.source is not None:
            spec_text = subject.source.read_text(encoding="utf-8")
            if copy.resolve() != subject.source:
                files[copy] = spec_text  # the code that was trained
        files[out_dir / "recipe.yaml"] = _yaml(_recipe_doc(recipe, job, built))
    except OSError as exc:
        raise TrainError(f"writing the run to '{out_dir}' failed: {exc}") from None
    if main:  # a kill between a checkpoint and the metrics left them behind it: run.history rewrites them
        writes.submit(functools.partial(_write_files, out_dir, files, list(run.history)))
    return spec_text


def _write_files(out_dir: Path, files: dict[Path, str], history: list[dict[str, Any]]) -> None:
    for path, text in files.items():
        write_text(path, text)
    if history:
        write_metrics(out_dir, history)


def _repair(
    out_dir: Path,
    run: RunState,
    archived: list[str],
    last_good: Path | None,
    replace: bool,
    note: Callable[[str], None],
) -> None:
    """What a forced resume keeps, what a killed write left, and what an overwrite removes."""
    for kept in rundir.archive(out_dir, archived, run.epoch):  # the spec and recipe the run had
        note(f"kept the run's previous {kept}")
    for partial in ckpt.remove_partial(out_dir):  # never read, only in the way
        note(f"removed {partial}, left by an interrupted write")
    if last_good is not None and last_good.parent == out_dir / ckpt.EPOCH_DIR:
        # a crash between the epoch file and last.pt left last.pt older: bring it up to date
        ckpt.save_checkpoint(out_dir / ckpt.LAST, last_good.read_bytes())
    if last_good is not None and best_row(run.history)["epoch"] == run.epoch:
        # the checkpoint is the best epoch's, and a crash may have come before best.pt's write
        ckpt.save_checkpoint(out_dir / ckpt.BEST, last_good.read_bytes())
    if replace:  # only now that the spec, the data and the model are known to be good
        _clear_run(out_dir)


def _recipe_doc(recipe: Recipe, job: _Job, built: _Built) -> dict[str, Any]:
    """recipe.yaml: the recipe with what the run made of it."""
    doc = {
        **recipe.model_dump(mode="json"),
        "effective_lr": built.schedule.base_lr,
        "iters_per_epoch": len(built.train_batches),
    }
    if (source := finetune.provenance(built.tuning, job.out_dir)) is not None:
        doc["init_weights"] = source  # where the weights came from: path and sha256
    if job.info.enabled:
        doc.update(world_size=job.info.world_size, global_batch_size=recipe.batch_size * job.info.world_size)
    doc["threads"] = built.threads.threads  # the number used, however it was chosen
    doc["threads_chosen"] = _threads_note(built.threads)
    return doc


def _fit(
    subject: _Subject,
    recipe: Recipe,
    job: _Job,
    split: DataSplit,
    built: _Built,
    last_good: Path | None,
    reporter: Reporter,
    writes: BackgroundWrites,
) -> TrainResult:
    """The epochs (Trainer), between the run's start and end events."""
    run, info, main = built.run, job.info, job.info.is_main
    forward: Callable[..., Any] = run.model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [job.dev.index] if job.dev.type == "cuda" else None
        forward = DistributedDataParallel(run.model, device_ids=device_ids)
    if recipe.compile:
        forward = torch.compile(forward)
    reporter.emit(_start_event(subject, recipe, job, split, built))
    plotter = None
    if recipe.plots and main:
        from .plots import Plotter

        plotter = Plotter()
    setting = Setting(
        subject.name, job.out_dir, job.dev, info, reporter, job.log_every, job.keep_checkpoints, plotter
    )
    optimization = Optimization(
        run.model, run.optimizer, run.scaler, built.schedule, grad_clip=recipe.grad_clip, ema=run.ema
    )
    trainer = Trainer(
        run,
        recipe,
        setting,
        forward=forward,
        optimization=optimization,
        train_batches=built.train_batches,
        val_batches=built.val_batches,
        last_good=last_good,
        writes=writes,
    )
    end_epoch = recipe.epochs if job.stop_after is None else min(recipe.epochs, job.stop_after)
    stopped = trainer.fit(end_epoch)
    return _finish(run, recipe, job, trainer.last_good, stopped, reporter)


def _start_event(subject: _Subject, recipe: Recipe, job: _Job, split: DataSplit, built: _Built) -> Event:
    info, run = job.info, built.run
    return {
        "event": "start",
        "name": subject.name,
        "data": split.name,
        "train_size": split.train_size,
        "val_size": split.val_size,
        "epochs": recipe.epochs,
        "start_epoch": run.epoch + 1,
        "iters_per_epoch": len(built.train_batches),
        "params": sum(p.numel() for p in run.model.parameters()),
        "device": str(job.dev) + (f" x {info.world_size} processes" if info.enabled else ""),
        "threads": built.threads.threads,
        "threads_chosen": _threads_note(built.threads),
        "out": str(job.out_dir),
    }


def _finish(
    run: RunState,
    recipe: Recipe,
    job: _Job,
    last_good: Path | None,
    stopped: str | None,
    reporter: Reporter,
) -> TrainResult:
    if stopped is not None:
        again = "resume with --resume to continue" if run.epoch < recipe.epochs else "the run is complete"
        reporter.emit({"event": "note", "message": f"stopped after epoch {run.epoch}: {stopped} ({again})"})
    best = best_row(run.history) if run.history else None
    result = TrainResult(
        out=job.out_dir,
        history=run.history,
        model=run.model,
        checkpoint=last_good,
        best_top1=best["val_top1"] if best else 0.0,
        best_epoch=best["epoch"] if best else 0,
        time=time.perf_counter() - job.started,
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
                "out": str(job.out_dir),
                "checkpoint": str(last_good) if last_good else None,
                "stopped": stopped,
            }
        )
    return result


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, width=100)


def _resume(
    run: RunState,
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
    found = _load_resume_checkpoint(out_dir, resume, dev)
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
    restore(run, state, path)
    reporter.emit({"event": "note", "message": f"resumed from {path} (epoch {run.epoch}, step {run.step})"})
    return path, archived if problems else []


def _load_resume_checkpoint(
    out_dir: Path, resume: Literal[True] | str | os.PathLike[str], dev: torch.device
) -> tuple[Path, dict[str, Any], list[str]] | None:
    """(the checkpoint, its state, why newer ones were skipped), or None when `out_dir` has none."""
    try:
        if resume is True:
            return ckpt.load_latest(out_dir, map_location=dev)
        path = Path(resume)
        return path, ckpt.load_checkpoint(path, map_location=dev), []
    except ckpt.CheckpointError as exc:
        raise TrainError(
            f"{exc} (start over with --overwrite, or choose another directory with --out)"
        ) from None


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


# ---------------------------------------------------------------- evaluating a checkpoint


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
    dev = resolve_device(device)
    subject, recipe = _subject(model_or_spec, None, overrides, None)
    if subject.spec is not None:
        from ..torch_backend import build

        model, what = build(subject.spec, seed=0), f"the spec '{subject.name}'"
    else:
        assert subject.model is not None
        model, what = subject.model, f"the network of '{model_or_spec}'"
    path, state = load_weights(model, checkpoint, ema, dev, what, note)
    if subject.spec is not None and not force:
        check_run_spec(subject.spec, path)
    model = model.to(dev)
    split = _data_split(subject, recipe, data)
    val = as_batches(split.val, batch_size or recipe.eval_batch_size or recipe.batch_size)
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
