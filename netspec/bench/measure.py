"""Build the module, warm it up and time it with torch.utils.benchmark, one batch size at a time.

Inference is a forward of the batch in eval mode under `torch.inference_mode`; `train` is one
training step in train mode (forward, cross-entropy on random labels, backward, SGD step), as timm's
benchmark.py measures its two modes. Each batch size is warmed up first (a compiled module compiles
in its first call), then measured by `Timer.adaptive_autorange`: it picks how many calls one
measurement holds (reading the clock, and on CUDA synchronising, costs under 0.01% of it), then
measures for at least `min_run_time` seconds and four measurements, until the interquartile range is
within 10% of the median or 10 x `min_run_time` has passed.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..analysis import Analysis, analyze
from ..errors import Problem
from ..memory import MemoryEstimate, check_memory, estimate, training_estimate
from ..spec import Spec
from .result import NOISY, TRAIN_MAC_FACTOR, BenchPoint, BenchResult
from .settings import BenchError, BenchSettings

MAX_RUN_FACTOR = 10  # a noisy measurement stops after 10 x min_run_time, its IQR reported as it is
TRAIN_LR = 1e-3  # small: random labels must not drive the weights to inf within a measurement


def benchmark(
    spec: Spec | str | os.PathLike[str],
    settings: BenchSettings | None = None,
    *,
    overrides: list[str] | None = None,
    **options: Any,
) -> BenchResult:
    """Measure `spec` (a Spec, or a spec file or zoo name with `overrides`) at every batch size of
    `settings` (or of BenchSettings(**options): `batch_sizes=(1, 8)`, `device="cuda"`, ...).
    Raises SpecError for the spec, BenchError for settings that cannot be measured."""
    settings = settings if settings is not None else BenchSettings(**options)
    settings.check()
    dev = resolve_device(settings.device)
    if not isinstance(spec, Spec):
        from ..resolve import load_spec
        from ..zoo import find_spec

        spec = load_spec(find_spec(str(spec)), overrides)
    a = analyze(spec)
    check_memory(spec, _memory_need(a, max(settings.batch_sizes), settings.train), dev)
    threads = settings.threads or torch.get_num_threads()
    with _threads(threads), _cudnn_autotune(dev):
        model = _prepare(spec, dev, settings)
        points = tuple(_measure(model, a, b, dev, settings, threads) for b in settings.batch_sizes)
    return BenchResult(
        name=a.name,
        input_shape=a.input_shape,
        params=a.params,
        macs_per_image=a.macs,
        flops_per_image=a.flops,
        mode="train" if settings.train else "inference",
        device=str(dev),
        device_name=_device_name(dev),
        torch_version=torch.__version__,
        threads=threads,
        channels_last=settings.channels_last,
        compiled=settings.compile,
        min_run_time=settings.min_run_time,
        points=points,
    )


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when there is one, else the CPU; asking for CUDA without one is a BenchError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise BenchError(
                Problem(f"--device {name}: {built} (torch {torch.__version__})", hint="use --device cpu")
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BenchError(
                Problem(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices (0 to n-1)")
            )
    return dev


def _memory_need(a: Analysis, batch: int, train: bool) -> MemoryEstimate:
    if train:
        return training_estimate(a, batch, "sgd", ema=False)
    return estimate(a, f"a forward pass of {batch:,} samples", batch=batch)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _cudnn_autotune(dev: torch.device) -> Iterator[None]:
    """cuDNN picks the fastest algorithm for each shape in the warm-up, as timm's benchmark lets it."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or dev.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _prepare(spec: Spec, dev: torch.device, settings: BenchSettings) -> nn.Module:
    from ..torch_backend import build

    model = build(spec, seed=0).to(dev)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train(settings.train)
    if not settings.compile:
        return model
    try:
        return torch.compile(model)  # type: ignore[return-value]  # an OptimizedModule: still a Module
    except Exception as exc:  # a platform without dynamo: say so, not a traceback
        raise _compile_failed(exc) from None


def _compile_failed(exc: Exception) -> BenchError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BenchError(
        Problem(
            f"--compile: torch.compile failed: {type(exc).__name__}: {first}",
            hint="run without --compile; TorchInductor needs a C++ compiler on the CPU and Triton on CUDA",
        )
    )


def _measure(
    model: nn.Module, a: Analysis, batch: int, dev: torch.device, settings: BenchSettings, threads: int
) -> BenchPoint:
    x = torch.randn(batch, *a.input_shape, device=dev)
    if settings.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    step = _train_step(model, x, a) if settings.train else _forward(model, x)
    _warm_up(step, batch, dev, settings)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    timer = _timer_class()(stmt="step()", globals={"step": step}, num_threads=threads, label=a.name)
    m = timer.adaptive_autorange(
        NOISY, min_run_time=settings.min_run_time, max_run_time=MAX_RUN_FACTOR * settings.min_run_time
    )
    peak = int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else None
    factor = TRAIN_MAC_FACTOR if settings.train else 1
    return BenchPoint(
        batch_size=batch,
        median=float(m.median),
        iqr=float(m.iqr),
        mean=float(m.mean),
        times=tuple(float(t) for t in m.times),
        calls_per_measurement=int(m.number_per_run),
        macs_per_call=a.macs * batch * factor,
        peak_memory_bytes=peak,
    )


def _timer_class() -> Any:
    """torch.utils.benchmark's Timer. Importing it imports torch.utils.cpp_extension, which on a CUDA
    build without a GPU logs "No CUDA runtime is found" on the terminal: nothing a user should act on."""
    import logging

    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils.benchmark import Timer
    finally:
        logger.setLevel(level)
    return Timer


def _forward(model: nn.Module, x: Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode():
            model(x)

    return step


def _train_step(model: nn.Module, x: Tensor, a: Analysis) -> Callable[[], None]:
    """One SGD step on random labels: cross-entropy of every logits output (auxiliary heads too, as
    training computes them), the mean of any other output."""
    classes = a.output_shape[0] if len(a.output_shape) == 1 else 1
    y = torch.randint(0, classes, (x.shape[0],), device=x.device)
    opt = torch.optim.SGD(model.parameters(), lr=TRAIN_LR, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = sum((_loss(t, y) for t in _tensors(model(x))), torch.zeros((), device=x.device))
        loss.backward()
        opt.step()

    return step


def _tensors(output: Any) -> Iterator[Tensor]:
    if isinstance(output, Tensor):
        yield output
    elif isinstance(output, list | tuple):
        for item in output:
            yield from _tensors(item)


def _loss(t: Tensor, y: Tensor) -> Tensor:
    if t.dim() == 2 and t.shape[0] == y.shape[0]:
        return F.cross_entropy(t.float(), y)
    return t.float().mean()


def _warm_up(step: Callable[[], None], batch: int, dev: torch.device, settings: BenchSettings) -> None:
    """The untimed calls; the first is where a step fails, if it fails (a compile, memory, a batch
    norm given one value per channel in training), and where it is reported."""
    for _ in range(max(1, settings.warmup)):
        try:
            step()
        except torch.OutOfMemoryError:
            raise BenchError(
                Problem(f"batch size {batch}: out of memory on {dev}", hint="use smaller --batch-sizes")
            ) from None
        except Exception as exc:
            if settings.compile:
                raise _compile_failed(exc) from None
            mode = "training step" if settings.train else "forward"
            raise BenchError(
                Problem(f"batch size {batch}: the {mode} failed: {type(exc).__name__}: {exc}")
            ) from None


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return _cpu_name() or platform.machine() or "cpu"


def _cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None
