"""Training curves as PNG files in the run directory (matplotlib's Agg backend, no display needed):
`loss.png` (train and val loss per epoch), `accuracy.png` (val top-1 and top-5, and EMA top-1 when
EMA is on) and `lr.png` (the learning rate at every iteration). Without matplotlib there are no plots
(a note says so) and the run goes on. Drawing costs ~0.3 s (the first time, with matplotlib's import,
~1 s), done by the run's writer thread (writes.py) beside the training: `Plotter` draws after the run's
last epoch, and after an earlier one only while plotting stays within 2 % of the run's time so far (a
long run's curves are redrawn as it goes; a run of seconds gets them once, at its end)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt

NAMES = ("loss.png", "accuracy.png", "lr.png")


def write_plots(out: Path, history: list[dict[str, Any]], lrs: list[float]) -> str | None:
    """Write the three plots; returns a one-line note when matplotlib is missing, else None."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        return "matplotlib is not installed: no plots (pip install matplotlib)"
    epochs = [row["epoch"] for row in history]

    def save(name: str, title: str, xlabel: str, ylabel: str, curves: list[tuple[list, list, str]]) -> None:
        fig = Figure(figsize=(6, 4), dpi=100)
        ax = fig.subplots()
        for xs, ys, label in curves:
            ax.plot(xs, ys, label=label, marker="o" if len(xs) < 30 and xlabel == "epoch" else None)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, alpha=0.3)
        if len(curves) > 1:
            ax.legend()
        fig.subplots_adjust(left=0.14, right=0.97, top=0.92, bottom=0.13)
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        ckpt.atomic_write_bytes(out / name, buf.getvalue())

    def col(key: str) -> list[float]:
        return [float(row[key]) for row in history]

    save(
        "loss.png",
        "loss",
        "epoch",
        "cross-entropy",
        [(epochs, col("train_loss"), "train"), (epochs, col("val_loss"), "val")],
    )
    acc = [(epochs, col("val_top1"), "val top-1"), (epochs, col("val_top5"), "val top-5")]
    if history and history[0].get("ema_val_top1") is not None:
        acc.append((epochs, col("ema_val_top1"), "EMA val top-1"))
    save("accuracy.png", "accuracy", "epoch", "accuracy", acc)
    save("lr.png", "learning rate", "iteration", "lr", [(list(range(len(lrs))), lrs, "lr")])
    return None


class Plotter:
    """When to redraw the plots (`due`, asked on the training thread after each epoch) and the drawing
    (`draw`, on the writer thread), keeping the drawing's share of the run's time under `budget`."""

    FIRST_DRAW_S = 1.0  # the cost assumed before a draw was timed (matplotlib's import included)

    def __init__(self, budget: float = 0.02):
        self.budget = budget
        self.started = time.perf_counter()
        self.spent = 0.0
        self.last_cost = self.FIRST_DRAW_S
        self.note: str | None = None  # set when matplotlib is missing: nothing is drawn again

    def due(self, last: bool) -> bool:
        """Whether to draw after this epoch: always after the last, else when the draw fits the budget."""
        if self.note is not None:
            return False
        elapsed = time.perf_counter() - self.started
        return last or self.spent + self.last_cost <= self.budget * elapsed

    def draw(self, out: Path, history: list[dict[str, Any]], lrs: list[float]) -> None:
        t0 = time.perf_counter()
        self.note = write_plots(out, history, lrs)
        self.last_cost = time.perf_counter() - t0
        self.spent += self.last_cost
