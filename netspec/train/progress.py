"""A training run's events (start, step, epoch, note, end): what the run prints, and who else hears
them. Print modes: `plain` (a line per epoch), `rich` (a progress bar, then a line per epoch), `auto`
(rich on a terminal, plain otherwise), `json` (one JSON object per line on stdout), `final` (only the
summary line at the end), `quiet` (nothing), or any callable taking each event dict.

Listeners (loggers, and the callbacks of people who embed the runner) receive every event too: an
object with `on_event(event)` or a plain callable. A listener asks the run to stop by raising
`StopTraining`; the run then ends at the end of the current epoch, with its checkpoint, as a run
that `stop_after` ends: `resume` continues it exactly.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TextIO, runtime_checkable

Event = dict[str, Any]
MODES = ("auto", "plain", "rich", "json", "final", "quiet")
BAR_INTERVAL = 0.25  # seconds between two drawings of the progress bar


class StopTraining(Exception):  # noqa: N818 (a request, not an error: `raise StopTraining("reason")`)
    """Raised by a callback to end the run after the current epoch (its checkpoint is written)."""


@runtime_checkable
class Callback(Protocol):
    """What a run tells a listener: each event dict, in order. May raise StopTraining."""

    def on_event(self, event: Event) -> None: ...


Listener = Callback | Callable[[Event], Any]


def _handler(listener: Listener) -> Callable[[Event], Any]:
    if isinstance(listener, Callback):
        return listener.on_event
    if callable(listener):
        return listener
    raise TypeError(
        f"a callback is an object with on_event(event) or a callable, not {type(listener).__name__}"
    )


def _fmt_epoch(e: Event) -> str:
    parts = [
        f"epoch {e['epoch']}/{e['epochs']}",
        f"lr {e['lr']:.4g}",
        f"train loss {e['train_loss']:.4f}",
        f"val loss {e['val_loss']:.4f}",
        f"top-1 {100 * e['val_top1']:.2f}%",
        f"top-5 {100 * e['val_top5']:.2f}%",
    ]
    if e.get("ema_val_top1") is not None:
        parts.append(f"EMA top-1 {100 * e['ema_val_top1']:.2f}%")
    parts += [f"{e['images_per_s']:.0f} img/s", f"{e['time']:.1f}s"]
    return "  ".join(parts)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


def summary(event: Event) -> str:
    """The one line that ends a run (its `end` event)."""
    stopped = f"; stopped: {event['stopped']}" if event.get("stopped") else ""
    return (
        f"done: {event['out']}, val top-1 {100 * event['val_top1']:.2f}%"
        f" (best {100 * event['best_top1']:.2f}% at epoch {event['best_epoch']})"
        f" in {event['time']:.1f}s{stopped}"
    )


class Reporter:
    def __init__(
        self,
        mode: str | Callable[[Event], None] = "auto",
        *,
        stream: TextIO | None = None,
        listeners: Sequence[Listener] = (),
    ):
        self.callback = mode if callable(mode) else None
        mode = "callback" if callable(mode) else mode
        if mode not in (*MODES, "callback"):
            raise ValueError(f"unknown log mode '{mode}' (one of {', '.join(MODES)})")
        self.stream = stream or sys.stdout
        if mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "plain"
        self.mode = mode
        self._progress: Any = None
        self._task: Any = None
        self._drawn = 0.0  # when the bar was last drawn (time.monotonic)
        self.listeners = [_handler(x) for x in listeners]
        self.stop: str | None = None  # why a listener asked the run to stop (StopTraining)

    def emit(self, event: Event) -> None:
        self._print(event)
        for listener in self.listeners:
            try:
                listener(dict(event))  # a copy each: one listener's edits never reach the next
            except StopTraining as request:
                if self.stop is None:
                    self.stop = str(request) or f"requested by {getattr(listener, '__qualname__', listener)}"

    def _print(self, event: Event) -> None:
        kind = event["event"]
        if self.callback is not None:  # mode "callback"
            self.callback(event)
        elif self.mode == "json":
            self.stream.write(json.dumps({k: _clean(v) for k, v in event.items()}) + "\n")
            self.stream.flush()
        elif self.mode == "final":
            if kind == "end":
                self._line(summary(event))
        elif self.mode == "quiet":
            return
        elif kind == "step":
            self._step(event)
        elif kind == "epoch":
            self._stop_bar()
            self._line(_fmt_epoch(event))
        elif kind == "start":
            self._line(
                f"training {event['name']} on {event['data']} ({event['train_size']:,} train,"
                f" {event['val_size']:,} val) for {event['epochs']} epoch{'s' * (event['epochs'] != 1)},"
                f" {event['params']:,} params,"
                f" {event['device']}, output {event['out']}"
            )
            if "threads" in event:
                self._line(f"threads: {event['threads']} ({event['threads_chosen']})")
        elif kind == "note":
            self._stop_bar()
            self._line(event["message"])
        elif kind == "end":
            self._stop_bar()
            self._line(summary(event))

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _step(self, e: Event) -> None:
        if self.mode != "rich":
            return
        now = time.monotonic()
        fresh = self._progress is None or e["step_in_epoch"] >= e["steps"]
        if not fresh and now - self._drawn < BAR_INTERVAL:
            return  # drawing is work the training loop waits for: a few times a second is enough
        self._drawn = now
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        fields = {"epoch": e["epoch"], "loss": e["loss"], "lr": e["lr"], "ips": e.get("images_per_s", 0.0)}
        if self._progress is None:
            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.4g}  {task.fields[ips]:.0f} img/s"
                ),
                TimeRemainingColumn(),
                transient=True,
                console=Console(file=self.stream),
                auto_refresh=False,  # no drawing thread beside a one-thread training loop
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=e["steps"], **fields)
        self._progress.update(self._task, completed=e["step_in_epoch"], refresh=True, **fields)

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._task = None, None

    def close(self) -> None:
        self._stop_bar()
