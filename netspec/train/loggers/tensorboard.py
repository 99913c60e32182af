"""TensorBoard: scalars in RUN/tensorboard/ (torch.utils.tensorboard.SummaryWriter), on one axis,
the training step, as Lightning and ultralytics log them:
- every log step (`step` event): train/loss (the mean since the last one), train/lr, train/images_per_s;
- every epoch: epoch/train_loss, epoch/lr, epoch/images_per_s, val/loss, val/top1, val/top5 (and
  val/ema_loss, val/ema_top1, val/ema_top5 with EMA), epoch/epoch;
- the spec (or model file) as text, `spec`.
A resumed run purges what a killed run logged after its checkpoint (purge_step), so each step keeps
one value. The model graph is not written: tracing it runs the model under torch.jit, slow for large
networks and refused by some; the spec text says more."""

from __future__ import annotations

from typing import Any

from ..progress import Event
from . import RunInfo

DIR = "tensorboard"

_EPOCH_SCALARS = {
    "train_loss": "epoch/train_loss",
    "lr": "epoch/lr",
    "images_per_s": "epoch/images_per_s",
    "val_loss": "val/loss",
    "val_top1": "val/top1",
    "val_top5": "val/top5",
    "ema_val_loss": "val/ema_loss",
    "ema_val_top1": "val/ema_top1",
    "ema_val_top5": "val/ema_top5",
    "epoch": "epoch/epoch",
}
_STEP_SCALARS = {"loss": "train/loss", "lr": "train/lr", "images_per_s": "train/images_per_s"}


class TensorBoardLogger:
    def __init__(self, run: RunInfo):
        from torch.utils.tensorboard import SummaryWriter

        # events at steps after the checkpoint's came from a run that died after it: purged
        purge = run.resumed_step + 1 if run.resumed_step is not None else None
        self.writer: Any = SummaryWriter(log_dir=str(run.out / DIR), purge_step=purge)
        self.spec_text = run.spec_text
        self.step = run.resumed_step or 0

    def on_event(self, event: Event) -> None:
        kind = event["event"]
        if kind == "start":
            # four spaces make TensorBoard's markdown show the YAML as it is written
            code = "\n".join("    " + line for line in self.spec_text.splitlines())
            self.writer.add_text("spec", code, self.step)
        elif kind == "step":
            self._scalars(_STEP_SCALARS, event, event["step"])
        elif kind == "epoch":
            self._scalars(_EPOCH_SCALARS, event, event["step"])
            self.writer.flush()

    def _scalars(self, tags: dict[str, str], event: Event, step: int) -> None:
        for key, tag in tags.items():
            value = event.get(key)
            if isinstance(value, int | float):
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()
