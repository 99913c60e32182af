"""Training curves as PNG files in the run directory (matplotlib's Agg backend, no display needed):
`loss.png` (train and val loss per epoch), `accuracy.png` (val top-1 and top-5, and EMA top-1 when
EMA is on) and `lr.png` (the learning rate at every iteration). Without matplotlib there are no plots
(a note says so) and the run goes on. Drawing costs ~0.3 s: `Plotter` redraws after every epoch
unless plotting has already taken more than 5% of the run's time (short epochs), and always after the
run's last epoch."""

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
    """Redraws the plots after an epoch, keeping their share of the run's time under `budget`."""

    def __init__(self, budget: float = 0.05):
        self.budget = budget
        self.started = time.perf_counter()
        self.spent = 0.0
        self.note: str | None = None

    def __call__(self, out: Path, history: list[dict[str, Any]], lrs: list[float], last: bool) -> str | None:
        """Returns a note the first time matplotlib turns out to be missing."""
        elapsed = time.perf_counter() - self.started
        if self.note is not None or (not last and self.spent > self.budget * elapsed):
            return None
        t0 = time.perf_counter()
        self.note = write_plots(out, history, lrs)
        self.spent += time.perf_counter() - t0
        return self.note
