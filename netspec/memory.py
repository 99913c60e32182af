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
from .ir import INPUT, AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode
from .layers import KINDS
from .layers.base import LayerKind, numel
from .layers.merge import MergeKind

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


# -- peak activation memory -------------------------------------------------------------------------
# The most activation memory one forward pass holds at once (inference, under torch.no_grad()), in
# elements: the input and every output from its producer until nothing reads it any more, as netspec's
# modules hold them. A module's input stays alive while it runs (its caller holds it); nn.Sequential
# drops each output after the next layer; a Residual block keeps its input (and its shortcut's output)
# until it returns, a Parallel block its branch outputs; a graph list frees each value after its last
# reader (torch.fx's generated code does). In-place layers and views (flatten, identity, dropout in
# eval: the kinds' `aliases_input`) allocate nothing. Training keeps every output for backward instead:
# that is the sum `Analysis.activations`.


def peak_activations(root: SeqNode) -> int:
    """The peak number of activation elements alive during one sample's forward pass, the input
    included (checked against a count of live tensors in tests/test_dag_memory.py)."""
    held = numel(root.in_shape)
    peak, _ = _run(root, held)
    return max(peak, held)


def _run(node: Node, held: int) -> tuple[int, int]:
    """(peak while `node` runs, elements its output newly allocates: 0 when it is its input or a view
    of it), `held` elements being alive already (its input among them)."""
    if isinstance(node, LayerNode):
        kind = KINDS[node.kind]
        if node.inplace or kind.aliases_input:
            return held, 0
        out = numel(node.out_shape)
        if type(kind).scratch is LayerKind.scratch:  # (most kinds compute their output in one op)
            return held + out, out
        return held + out + kind.scratch(node.params, node.in_shape, node.out_shape), out
    if isinstance(node, SeqNode) and node.graph:
        return _graph(node, held)
    if isinstance(node, AuxNode):
        return held, 0  # eval mode: the side head does not run
    if isinstance(node, SeqNode):
        return _chain(node.children, held)
    if isinstance(node, ResidualNode):
        return _residual(node, held)
    if isinstance(node, ParallelNode):
        return _parallel(node, held)
    raise TypeError(type(node).__name__)


def _chain(nodes: list[Node], held: int, current: int = 0) -> tuple[int, int]:
    """Layers in sequence (nn.Sequential): `current` elements of the value they start from are fresh
    (not in `held`); each output replaces the value before it."""
    peak = held + current
    for node in nodes:
        p, out = _run(node, held + current)
        if p > peak:
            peak = p
        if out:
            current = out
    return peak, current


def _residual(node: ResidualNode, held: int) -> tuple[int, int]:
    """modules.Residual: body, then the shortcut beside the body's output, the merge, then `after`
    while the shortcut's output is still held."""
    peak, body = _chain(node.body, held)
    short = 0
    if node.shortcut is not None:
        p, short = _run(node.shortcut, held + body)
        peak = max(peak, p)
    merged = 0 if node.merges_in_place else numel(node.after[0].in_shape if node.after else node.out_shape)
    peak = max(peak, held + body + short + merged)
    p, out = _chain(node.after, held + short, merged or body)
    return max(peak, p), out


def _parallel(node: ParallelNode, held: int) -> tuple[int, int]:
    """modules.Parallel: each branch on the input, their outputs held until the block returns."""
    peak, outs = held, 0
    for branch in node.branches:
        p, out = _run(branch, held + outs)
        peak, outs = max(peak, p), outs + out
    merged = numel(node.after[0].in_shape if node.after else node.out_shape)
    # a sum of n > 2 branches holds a partial sum beside the next one
    kind = KINDS[node.merge]
    assert isinstance(kind, MergeKind)
    shapes = [branch.out_shape for branch in node.branches]
    values = _Values()  # the branch outputs are in `outs`, held by the block until it returns
    names = [f"\0{i}" for i in range(len(shapes))]
    for name in names:
        values.add(name, 0, alias_of=INPUT)
    merge = _play(values, kind.ops(shapes, shapes[0]), names, [False] * len(names), "\0out", held + outs)
    peak = max(peak, merge)
    p, out = _chain(node.after, held + outs, merged)
    return max(peak, p), out


def _graph(node: SeqNode, held: int) -> tuple[int, int]:
    """A graph list (GraphNetwork): values are storages; one is freed when the last value on it has
    had its last reader (the list's outputs are read at the end), as the generated code's `x = None`
    lines do."""
    kids = node.children
    last: dict[str, int] = {}
    for i, child in enumerate(kids):
        for name in child.inputs or ((kids[i - 1].name if i else INPUT),):
            last[name] = i
    for name in node.outputs.values() if node.outputs is not None else [kids[-1].name] if kids else []:
        last[name] = len(kids)
    values = _Values()
    peak = held
    for i, child in enumerate(kids):
        inputs = child.inputs or ((kids[i - 1].name if i else INPUT),)
        kind = KINDS[child.kind] if isinstance(child, LayerNode) else None
        if isinstance(kind, MergeKind):
            ops = kind.ops(child.in_shapes, child.out_shape)
            ends = [last[n] <= i for n in inputs]
            peak = max(peak, _play(values, ops, list(inputs), ends, child.name, held))
        else:
            p, out = _run(child, held + values.live)
            peak = max(peak, p)
            values.add(child.name, out, alias_of=inputs[0])
        for name in {*inputs, child.name}:
            if last.get(name, -1) <= i:  # read for the last time (or never): drop the value
                values.drop(name)
    result = kids[-1].name if kids and node.outputs is None else None
    return peak, values.fresh(result) if result is not None else values.live


class _Values:
    """The values of a graph list and the storages they are on: a storage is freed with its last value."""

    def __init__(self) -> None:
        self.storage: dict[str, int] = {INPUT: 0}  # value -> storage (0: the input, held by the caller)
        self.size: dict[int, int] = {0: 0}
        self.readers: dict[int, set[str]] = {0: {INPUT}}
        self.live = 0

    def add(self, name: str, elements: int, alias_of: str) -> None:
        """A new value: `elements` fresh ones, or (0) the storage of `alias_of` (in place, a view)."""
        if elements:
            key = len(self.size)
            self.storage[name], self.size[key], self.readers[key] = key, elements, {name}
            self.live += elements
        else:
            key = self.storage[name] = self.storage[alias_of]
            self.readers[key].add(name)

    def drop(self, name: str) -> None:
        key = self.storage[name]
        if name in self.readers[key]:
            self.readers[key].discard(name)
            if not self.readers[key]:
                self.live -= self.size[key]

    def fresh(self, name: str) -> int:
        return self.size[self.storage[name]]


def _play(values: _Values, ops: list[tuple[int, tuple[int, ...]]], inputs: list[str], ends: list[bool],
          output: str, held: int) -> int:  # fmt: skip
    """A merge's ops (MergeKind.ops) in order, each result a value of its own (the last one `output`),
    each input dropped after the op that reads it last where the merge is its last reader (`ends`),
    each temporary after its last reading op. The peak while they run."""
    n = len(inputs)
    names = [*inputs, *(f"{output}\0{k}" for k in range(len(ops) - 1)), output]
    last_read = {value: k for k, (_, reads) in enumerate(ops) for value in reads}
    peak = 0
    for k, (elements, _) in enumerate(ops):
        values.add(names[n + k], elements, alias_of=INPUT)
        peak = max(peak, held + values.live)
        for value, at in last_read.items():
            if at == k and (value >= n or ends[value]) and names[value] not in inputs[value + 1 :]:
                values.drop(names[value])
    return peak
