"""A run's metrics files: `metrics.jsonl` (a JSON object per epoch) and `metrics.csv` (the same rows,
the columns of CSV_FIELDS, and EMA_FIELDS when EMA is on), each written whole and atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt

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


def write_text(path: Path, text: str) -> None:
    ckpt.atomic_write_bytes(path, text.encode())


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    write_text(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    fields = CSV_FIELDS + (EMA_FIELDS if history and "ema_val_top1" in history[0] else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text(out / "metrics.csv", buf.getvalue())
