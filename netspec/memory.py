"""Memory a build, a forward pass or a training step would allocate, estimated from the static
analysis before any tensor exists, and the cap it must fit.

A spec that validates may still describe tensors no machine can hold (a 16M x 16M input is 6.7 PB
for an example batch of two). Every path that builds a module or runs a forward pass asks
`check_memory` first, so such a spec is refused with the estimate instead of an allocation that
fails deep inside torch, or the kernel's OOM killer.

The cap is `limits.max_memory` (bytes). Unset, it is half of this machine's memory (the smaller of
physical memory and the cgroup limit, so a container counts what it may use), or for a CUDA device
its total memory. A spec may lower the cap; only the caller raises it (`--allow-large`,
`load_spec(..., limits=Limits(max_memory=...))`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Location, Problem, SpecSizeError
from .layers.base import numel

if TYPE_CHECKING:
    from .analysis import Analysis
    from .spec import Limits, Spec

BYTES_PER_ELEMENT = 4  # float32, as the analysis counts
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def physical_memory() -> int:
    """Bytes of memory this process may use: physical memory, or less under a cgroup limit."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not POSIX: assume a modest machine
        total = 8 << 30
    for limit_file in _CGROUP_LIMITS:
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def default_memory_cap() -> int:
    """Half of this machine's memory: room for the interpreter, torch and everything else running."""
    return physical_memory() // 2


def device_memory(device: Any) -> int | None:
    """Total memory of a CUDA device, or None for the CPU (or when torch cannot tell)."""
    if getattr(device, "type", str(device).split(":")[0]) != "cuda":
        return None
    try:
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory)
    except Exception:  # no CUDA here after all: the CPU cap applies
        return None


def memory_cap(limits: Limits, device: Any = None) -> tuple[int, str]:
    """The cap in bytes, and where it comes from (for the message)."""
    if limits.max_memory is not None:
        return limits.max_memory, "limits.max_memory"
    on_device = device_memory(device) if device is not None else None
    if on_device is not None:
        return on_device, f"the memory of {device}"
    return default_memory_cap(), f"half of this machine's {human_bytes(physical_memory())}"


@dataclass(frozen=True)
class MemoryEstimate:
    """What an operation would allocate, in bytes, split as the message explains it."""

    what: str  # "building the module", "a forward pass of 2 samples", ...
    weights: int  # parameters, and for training their gradients, optimizer state and EMA copy
    tensors: int  # the batch's input and every layer output (for training, their gradients too)

    @property
    def total(self) -> int:
        return self.weights + self.tensors


def estimate(
    a: Analysis, what: str, *, batch: int = 0, weight_copies: int = 1, tensor_copies: int = 1
) -> MemoryEstimate:
    """`weight_copies` parameter-sized tensors and `tensor_copies` times the input and activations of
    `batch` samples (an upper bound: torch frees some outputs early, never keeps more)."""
    per_sample = a.activations + numel(a.input_shape)
    return MemoryEstimate(
        what,
        weights=a.params * BYTES_PER_ELEMENT * weight_copies,
        tensors=per_sample * batch * BYTES_PER_ELEMENT * tensor_copies,
    )


def training_estimate(a: Analysis, batch: int, optimizer: str, ema: bool) -> MemoryEstimate:
    """One training step: weights, gradients, optimizer state (SGD momentum 1, AdamW 2), the EMA copy;
    the batch's activations kept for backward and their gradients."""
    states = 2 if optimizer == "adamw" else 1
    copies = 2 + states + (1 if ema else 0)
    return estimate(
        a, f"training with a batch of {batch:,}", batch=batch, weight_copies=copies, tensor_copies=2
    )


def check_memory(spec: Spec, need: MemoryEstimate, device: Any = None) -> None:
    """Refuse (SpecSizeError, located at the input or the spec) what would exceed the memory cap."""
    cap, origin = memory_cap(spec.limits, device)
    if need.total <= cap:
        return
    from .source import locate

    at_input = need.tensors >= need.weights
    where = locate(spec.raw, ("input", "size") if at_input else ()) if spec.raw is not None else None
    if where is None:
        where = Location(spec.file or f"<spec {spec.name}>", 1, 1)
    parts = f"weights {human_bytes(need.weights)}" + (
        f", input and activations {human_bytes(need.tensors)}" if need.tensors else ""
    )
    raise SpecSizeError(
        Problem(
            f"{need.what} would allocate about {human_bytes(need.total)} ({parts}), more than the "
            f"memory cap of {human_bytes(cap)} ({origin})",
            ("input", "size") if at_input else (),
            where,
            "use a smaller input or network; or raise the cap on purpose: --allow-large, or "
            "limits=Limits(max_memory=...) in the API",
        )
    )


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB', up to EiB (a spec can describe far more than a machine holds)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} EiB"
