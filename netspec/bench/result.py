"""A benchmark's figures: per batch size the measured latency (median and spread of
torch.utils.benchmark's measurements) beside the static MACs, as a table, markdown and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import printable
from ..report import human, shape_text

BENCH_FORMAT = "netspec-bench/1"  # bumped on any incompatible change of the JSON below
TRAIN_MAC_FACTOR = 3  # a training step: the forward, and a backward of about twice its work
NOISY = 0.1  # an interquartile range above 10% of the median: the machine was busy

CONVENTIONS = {
    "macs": "fvcore: one multiply-add = 1; netspec's static count of one image's forward",
    "latency": "seconds per call (inference: a forward of the whole batch; train: forward, backward and"
    " SGD step), median and interquartile range of torch.utils.benchmark's adaptive_autorange"
    " measurements, each the mean of `calls_per_measurement` calls",
    "images_per_s": "batch_size / median latency",
    "gmacs_per_s": "macs_per_call / median latency / 1e9; macs_per_call = macs_per_image x batch_size"
    f" (train: x {TRAIN_MAC_FACTOR}, the backward counted as twice the forward)",
}


@dataclass(frozen=True)
class BenchPoint:
    """One batch size: torch.utils.benchmark's Measurement of one call, in seconds."""

    batch_size: int
    median: float  # Measurement.median
    iqr: float  # Measurement.iqr: the 75th less the 25th percentile
    mean: float
    times: tuple[float, ...]  # Measurement.times: each measurement's seconds per call
    calls_per_measurement: int  # Measurement.number_per_run
    macs_per_call: int
    peak_memory_bytes: int | None = None  # CUDA's max_memory_allocated during the measurement

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.median

    @property
    def gmacs_per_s(self) -> float:
        return self.macs_per_call / self.median / 1e9

    @property
    def noisy(self) -> bool:
        return self.iqr > NOISY * self.median

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "latency_s": {
                "median": self.median,
                "iqr": self.iqr,
                "mean": self.mean,
            },
            "images_per_s": self.images_per_s,
            "macs_per_call": self.macs_per_call,
            "gmacs_per_s": self.gmacs_per_s,
            "measurements": list(self.times),
            "calls_per_measurement": self.calls_per_measurement,
            "noisy": self.noisy,
            "peak_memory_bytes": self.peak_memory_bytes,
        }


@dataclass(frozen=True)
class BenchResult:
    """What was measured, where, and the figures of every batch size."""

    name: str
    input_shape: tuple[int, ...]
    params: int
    macs_per_image: int
    flops_per_image: int
    mode: str  # inference | train
    device: str
    device_name: str
    torch_version: str
    threads: int
    channels_last: bool
    compiled: bool
    min_run_time: float
    points: tuple[BenchPoint, ...]

    def to_json(self) -> str:
        data = {
            "format": BENCH_FORMAT,
            "name": self.name,
            "input_shape": list(self.input_shape),
            "mode": self.mode,
            "device": self.device,
            "device_name": self.device_name,
            "torch": self.torch_version,
            "threads": self.threads,
            "dtype": "float32",
            "channels_last": self.channels_last,
            "compile": self.compiled,
            "min_run_time": self.min_run_time,
            "params": self.params,
            "macs_per_image": self.macs_per_image,
            "flops_per_image": self.flops_per_image,
            "conventions": CONVENTIONS,
            "results": [p.to_json() for p in self.points],
        }
        return json.dumps(data, indent=2)

    @property
    def title(self) -> str:
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        options = "".join(
            [", channels_last" if self.channels_last else "", ", compiled" if self.compiled else ""]
        )
        return (
            f"{printable(self.name)} (input {shape_text(self.input_shape)}): {self.mode} on {self.device}"
            f" ({printable(self.device_name)}, {threads}{options}), float32; {self.params:,} params,"
            f" {human(self.macs_per_image)} MACs per image"
        )

    @property
    def caption(self) -> str:
        per_call = "forward of the batch" if self.mode == "inference" else "training step"
        extra = ", backward = 2 x forward MACs" if self.mode == "train" else ""
        return (
            f"latency: one {per_call}, median (IQR) of torch.utils.benchmark's measurements;"
            f" * marks an IQR above {NOISY:.0%} of the median (a busy machine). MACs: fvcore convention"
            f" (multiply-add = 1){extra}."
        )


COLUMNS = ["batch", "latency ms", "IQR ms", "images/s", "GMAC/s", "runs"]


def _cells(p: BenchPoint) -> list[str]:
    cells = [
        str(p.batch_size),
        f"{p.median * 1e3:.3f}" + ("*" if p.noisy else ""),
        f"{p.iqr * 1e3:.3f}",
        f"{p.images_per_s:,.1f}",
        f"{p.gmacs_per_s:,.2f}",
        f"{len(p.times)} x {p.calls_per_measurement}",
    ]
    if p.peak_memory_bytes is not None:
        cells.append(f"{p.peak_memory_bytes / (1 << 20):,.0f}")
    return cells


def _columns(r: BenchResult) -> list[str]:
    return COLUMNS + (["peak MiB"] if any(p.peak_memory_bytes is not None for p in r.points) else [])


def to_markdown(r: BenchResult) -> str:
    lines = [f"**{r.title}**", "", "| " + " | ".join(_columns(r)) + " |"]
    lines.append("|" + "---:|" * len(_columns(r)))
    lines += ["| " + " | ".join(_cells(p)) + " |" for p in r.points]
    return "\n".join([*lines, "", r.caption])


def print_table(r: BenchResult) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(r.title), caption=Text(r.caption))  # Text: a spec's name is never markup
    for col in _columns(r):
        table.add_column(col, justify="right")
    for p in r.points:
        table.add_row(*_cells(p))
    console = Console()
    if not console.is_terminal:  # piped output: do not squeeze the table to 80 columns
        console = Console(width=160)
    console.print(table)
