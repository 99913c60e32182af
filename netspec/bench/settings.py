"""What `netspec bench` measures, checked whole before anything is built or allocated."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import Problem, SpecError

MAX_BATCH = 1 << 16  # a batch beyond this is a typo; the memory check refuses far smaller ones anyway
MAX_BATCH_SIZES = 16
MAX_THREADS = 1024
MAX_RUN_TIME = 600.0  # seconds per batch size: a measurement must end
_DEVICE = re.compile(r"(cpu|cuda)(:\d{1,3})?|auto")


class BenchError(SpecError):
    """A benchmark that cannot run as asked: a bad batch size, a device that is not there, a
    compiler that fails. A SpecError, so the CLI prints it without a traceback and exits 2."""


@dataclass(frozen=True)
class BenchSettings:
    """One benchmark: every batch size is measured with the same module and settings."""

    batch_sizes: tuple[int, ...] = (1, 8, 32)
    device: str = "auto"  # auto: cuda when there is one, else cpu; or cpu, cuda, cuda:N
    channels_last: bool = False
    compile: bool = False  # torch.compile the module (its first call, in the warm-up, compiles)
    threads: int | None = None  # torch's intra-op threads; None: torch's current setting
    min_run_time: float = 1.0  # seconds of measurement per batch size, at least (adaptive_autorange)
    train: bool = False  # a training step (forward, backward, SGD step) instead of inference
    warmup: int = 3  # untimed calls before the measurement (a compiled module compiles in the first)

    def check(self) -> None:
        """Raise BenchError naming every setting that cannot be measured."""
        problems = []
        if not self.batch_sizes:
            problems.append(Problem("no batch size given", hint="e.g. --batch-sizes 1,8,32"))
        elif len(self.batch_sizes) > MAX_BATCH_SIZES:
            problems.append(Problem(f"--batch-sizes: at most {MAX_BATCH_SIZES} batch sizes"))
        bad = [b for b in self.batch_sizes if not 1 <= b <= MAX_BATCH]
        if bad:
            problems.append(
                Problem(
                    f"--batch-sizes: {', '.join(map(str, bad))} out of range",
                    hint=f"each batch size is a whole number from 1 to {MAX_BATCH}",
                )
            )
        if _DEVICE.fullmatch(self.device) is None:
            problems.append(
                Problem(f"--device '{self.device}': not a device", hint="use cpu, cuda or cuda:N")
            )
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            problems.append(Problem(f"--threads {self.threads}: must be from 1 to {MAX_THREADS}"))
        if not 0 < self.min_run_time <= MAX_RUN_TIME:
            problems.append(
                Problem(f"--min-run-time {self.min_run_time}: must be above 0 and at most {MAX_RUN_TIME:g} s")
            )
        if not 0 <= self.warmup <= 1000:
            problems.append(Problem(f"warmup {self.warmup}: must be from 0 to 1000 calls"))
        if problems:
            raise BenchError(problems)


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """`1,8,32` -> (1, 8, 32); anything else is a BenchError quoting the text."""
    parts = [t for t in text.replace(" ", "").split(",") if t]
    if not parts or not all(p.isascii() and p.isdigit() and len(p) <= 9 for p in parts):
        raise BenchError(
            Problem(f"--batch-sizes '{text}': not a list of batch sizes", hint="e.g. --batch-sizes 1,8,32")
        )
    return tuple(int(p) for p in parts)
