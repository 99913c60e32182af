"""The training loop of a run whose pieces are built (runner.py sets them up and resumes): epochs of
steps, an evaluation and a checkpoint after each.

Per-step work is what a hand-written loop does and no more: the batch (tensor indexing for
in-memory data, loaders.py), the learning rate, forward under the autocast chosen once, the loss, one
backward/clip/step path (step.py). The loss is summed on the device and read once per log interval
(every step on CPU, where reading it costs nothing and a NaN is caught at its own iteration).

After each epoch the checkpoint is serialized on this thread (a snapshot of the state) and written, with
the metrics and plots, by a background thread while the next epoch trains (writes.py).
"""

from __future__ import annotations

import errno
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import checkpoint as ckpt
from . import distributed
from .amp import autocast
from .errors import TrainError
from .evaluation import evaluate
from .loaders import Loader, set_epoch
from .losses import Criterion, main_logits, mixup, sample_mixup
from .metrics import write_metrics
from .progress import Reporter
from .recipe import Recipe
from .state import RunState, dist_checkpoint_state
from .step import Optimization
from .writes import BackgroundWrites


@dataclass
class Setting:
    """Where and how a run goes: what the loop needs besides the run's state and its data."""

    name: str
    out_dir: Path
    dev: torch.device
    info: distributed.DistInfo
    reporter: Reporter
    log_every: int = 10
    keep_checkpoints: int | None = None
    plotter: Any = None  # plots.Plotter on rank 0 when the recipe has `plots`


class Trainer:
    def __init__(
        self,
        run: RunState,
        recipe: Recipe,
        setting: Setting,
        *,
        forward: Callable[..., Any],
        optimization: Optimization,
        train_batches: Loader,
        val_batches: Loader,
        last_good: Path | None = None,
        writes: BackgroundWrites | None = None,
    ):
        self.run, self.recipe, self.setting = run, recipe, setting
        self.forward, self.optimization = forward, optimization
        self.train_batches, self.val_batches = train_batches, val_batches
        self.criterion = Criterion(recipe)
        self.last_good = last_good
        self.saved = str(last_good) if last_good is not None else None  # the newest checkpoint on disk
        self.writes = writes or BackgroundWrites()  # the epochs' files, written while the next epoch trains
        self.told_plots = False  # the plotter's note (no matplotlib) is said once
        dev = setting.dev
        self.sync_every = 1 if dev.type == "cpu" else max(1, setting.log_every)

    # ------------------------------------------------------------ the epochs

    def fit(self, end_epoch: int) -> str | None:
        """Train up to `end_epoch`; returns why a callback stopped the run early, or None."""
        reporter = self.setting.reporter
        stopped = None  # why a callback ended the run early (one asking during the last epoch is too late)
        try:
            for epoch in range(self.run.epoch + 1, end_epoch + 1):
                stopped = _stop_requested(reporter, self.setting.info)
                if stopped is not None:
                    break
                row = self.train_epoch(epoch)
                t_eval = time.perf_counter()
                row.update(self.evaluate())
                row["time"] += time.perf_counter() - t_eval
                self.run.epoch = epoch
                self.run.history.append(row)
                self.checkpoint(epoch, row, last=epoch == end_epoch)
                reporter.emit({"event": "epoch", "epochs": self.recipe.epochs, **row})
            self.writes.wait()  # the run ends with its files whole on disk
            self._tell_plot_note()
        except OSError as exc:
            raise self._write_failure(exc) from None
        finally:
            self.writes.close()  # on the way out with another error too: the write in flight finishes
            reporter.close()
        return stopped

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        run, dev = self.run, self.setting.dev
        run.model.train()
        set_epoch(self.train_batches, epoch)
        meter = _Meter(dev, len(self.train_batches))
        lr = self.optimization.schedule(run.step)
        for i, (x, y) in enumerate(self.train_batches):
            lr = self.optimization.set_lr(run.step)
            loss = self.step(x.to(dev, non_blocking=True), y.to(dev, non_blocking=True))
            run.step += 1
            meter.add(loss, y.shape[0])
            if (i + 1) % self.sync_every == 0 or i + 1 == meter.steps:
                self._check_finite(meter.last(), epoch, i, meter.steps)
            if (i + 1) % self.setting.log_every == 0:
                self._log_step(meter, epoch, i, lr)
        train_loss = meter.epoch_loss()
        self._check_finite(train_loss, epoch, meter.steps - 1, meter.steps)
        elapsed = time.perf_counter() - meter.t0
        row = {
            "epoch": epoch,
            "step": run.step,
            "lr": lr,
            "train_loss": train_loss,
            "images_per_s": meter.images / elapsed if elapsed > 0 else 0.0,
            "time": elapsed,
        }
        if self.setting.info.enabled:  # the mean loss over every rank, the images/s of all of them
            distributed.sync_buffers(run.model)  # evaluate and save rank 0's model on every rank
            loss_sum, ips = distributed.all_reduce_sum([row["train_loss"], row["images_per_s"]], dev)
            row.update(train_loss=loss_sum / self.setting.info.world_size, images_per_s=ips)
        return row

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One optimisation step on the batch (x, y); returns its loss, detached, as float64."""
        recipe, run = self.recipe, self.run
        if recipe.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y2, lam = None, 1.0
        if recipe.mixup_alpha > 0:
            lam = sample_mixup(recipe.mixup_alpha)
            x, y, y2 = mixup(x, y, lam)
        with autocast(self.setting.dev, recipe.amp):
            output = self.forward(x)
        loss = self.criterion(output, y, y2, lam)
        if run.teacher is not None:
            loss = loss + run.teacher(x, main_logits(output))
        self.optimization.step(loss)
        return loss.detach().double()

    # ------------------------------------------------------------ evaluation and checkpoints

    def evaluate(self) -> dict[str, Any]:
        recipe, run, dev, shard = self.recipe, self.run, self.setting.dev, self.setting.info.enabled
        ev = evaluate(
            run.model,
            self.val_batches,
            device=dev,
            amp=recipe.amp,
            channels_last=recipe.channels_last,
            distributed=shard,
        )
        row: dict[str, Any] = {"val_loss": ev["loss"], "val_top1": ev["top1"], "val_top5": ev["top5"]}
        if shard:
            row["val_n"] = ev["n"]
        if run.ema is not None:
            ee = evaluate(run.ema.module, self.val_batches, device=dev, amp=recipe.amp, distributed=shard)
            row.update(ema_val_loss=ee["loss"], ema_val_top1=ee["top1"], ema_val_top5=ee["top5"])
        return row

    def checkpoint(self, epoch: int, row: dict[str, Any], last: bool) -> None:
        """The epoch's checkpoint (and last.pt, best.pt), the metrics files and the plots: rank 0.
        The state is serialized now; the files are written in the background (writes.py)."""
        run, out_dir = self.run, self.setting.out_dir
        state = dist_checkpoint_state(run, self.recipe, self.setting.name)  # every rank: a collective
        self.last_good = out_dir / ckpt.LAST
        if not self.setting.info.is_main:
            return
        data = ckpt.serialize(state)  # the snapshot: the next epoch changes the tensors in `state`
        best = best_row(run.history) is row  # the first epoch with the best val top-1
        plotter, lrs = self.setting.plotter, None
        if plotter is not None and plotter.due(last):
            lrs = [self.optimization.schedule(t) for t in range(run.step)]
        job = functools.partial(self._write_epoch, epoch, data, best, list(run.history), lrs)
        self.writes.submit(job)  # after the previous epoch's files, whose failure it raises
        self._tell_plot_note()

    def _write_epoch(
        self, epoch: int, data: bytes, best: bool, history: list[dict[str, Any]], lrs: list[float] | None
    ) -> None:
        """The writer thread's job for one epoch, in the order a kill at any instant can resume from."""
        out_dir = self.setting.out_dir
        ckpt.save_checkpoint(ckpt.epoch_path(out_dir, epoch), data)
        ckpt.save_checkpoint(out_dir / ckpt.LAST, data)
        self.saved = f"{out_dir / ckpt.LAST} (epoch {epoch})"
        if best:
            ckpt.save_checkpoint(out_dir / ckpt.BEST, data)
        if self.setting.keep_checkpoints is not None:  # last.pt and best.pt are whole copies
            ckpt.prune(out_dir, max(0, self.setting.keep_checkpoints))
        write_metrics(out_dir, history)
        if lrs is not None:
            self.setting.plotter.draw(out_dir, history, lrs)

    def _tell_plot_note(self) -> None:
        """The plotter's note (matplotlib missing), once, from this thread (listeners run here)."""
        plotter = self.setting.plotter
        if plotter is not None and plotter.note and not self.told_plots:
            self.told_plots = True
            self.setting.reporter.emit({"event": "note", "message": plotter.note})

    # ------------------------------------------------------------ reporting

    def _log_step(self, meter: _Meter, epoch: int, i: int, lr: float) -> None:
        mean, ips = meter.window()  # reads the device: the window's time is its own
        self._check_finite(mean, epoch, i, meter.steps)
        event = {"event": "step", "epoch": epoch, "step": self.run.step, "step_in_epoch": i + 1}
        self.setting.reporter.emit(
            {**event, "steps": meter.steps, "loss": mean, "lr": lr, "images_per_s": ips}
        )

    def _check_finite(self, value: float, epoch: int, i: int, steps: int) -> None:
        if math.isfinite(value):
            return
        self.writes.wait()  # the checkpoint the message names is whole on disk
        kept = (
            f"the last good checkpoint, {self.last_good}, is kept"
            if self.last_good is not None
            else "no checkpoint was written yet"
        )
        raise TrainError(
            f"the training loss is {value} at epoch {epoch}, iteration {i + 1} of {steps}: training"
            f" stopped; {kept} (lower the learning rate, add warmup or `grad_clip`, then resume)"
        )

    def _write_failure(self, exc: OSError) -> TrainError:
        what = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror or str(exc)
        saved = self.saved
        kept = f"the last good checkpoint, {saved}, is kept" if saved else "no checkpoint was written"
        hint = "free some space, then " if exc.errno == errno.ENOSPC else ""
        return TrainError(
            f"writing the run to '{self.setting.out_dir}' failed: {what}; training stopped; {kept}"
            + (f" ({hint}resume with --resume)" if saved else "")
        )


class _Meter:
    """The epoch's loss, summed on the device (no sync per step), and its log window's."""

    def __init__(self, dev: torch.device, steps: int):
        self.steps, self.t0 = steps, time.perf_counter()
        self.total = torch.zeros((), dtype=torch.float64, device=dev)
        self.window_sum = torch.zeros((), dtype=torch.float64, device=dev)
        self.loss: Tensor = self.total
        self.images = self.window_steps = self.window_images = 0
        self.t_window = self.t0

    def add(self, loss: Tensor, images: int) -> None:
        self.total += loss
        self.window_sum += loss
        self.loss = loss
        self.images += images
        self.window_steps += 1
        self.window_images += images

    def last(self) -> float:
        return float(self.loss)

    def window(self) -> tuple[float, float]:
        """The window's mean loss and images/s; starts the next window."""
        mean = float(self.window_sum) / max(1, self.window_steps)
        now = time.perf_counter()
        ips = self.window_images / (now - self.t_window) if now > self.t_window else 0.0
        self.window_sum.zero_()
        self.window_steps = self.window_images = 0
        self.t_window = now
        return mean, ips

    def epoch_loss(self) -> float:
        return float(self.total) / max(1, self.steps)


def best_row(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The first epoch with the best validation top-1 (best.pt's)."""
    return max(history, key=lambda row: row["val_top1"])


def _stop_requested(reporter: Reporter, info: distributed.DistInfo) -> str | None:
    """Why a callback asked the run to stop (on rank 0, where callbacks run), on every rank."""
    if not info.enabled:
        return reporter.stop
    told = distributed.broadcast_object(reporter.stop)
    return told if isinstance(told, str) else None
