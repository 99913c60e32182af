"""Data-parallel training under torchrun: process group, device, samplers and reductions.

`torchrun --nproc_per_node N -m netspec.cli train SPEC ...` starts N copies of the run; each finds
RANK, WORLD_SIZE and LOCAL_RANK in its environment and joins a process group (NCCL on CUDA, gloo on
CPU). The model is wrapped in DistributedDataParallel, each process reads its own shard of the
training set (DistributedSampler, reshuffled every epoch with `set_epoch`), and the validation set is
split without padding (`ShardSampler`) so that the summed loss and hit counts (all-reduced) cover
every validation example exactly once. Only rank 0 writes the run directory, and it holds the
directory's lock for the run (every rank stops when it cannot); every rank reads it when resuming
(a directory all nodes can see). `batch_size` is per process: the global batch is
batch_size * WORLD_SIZE, and `linear_lr_scaling` scales by the global batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect() -> DistInfo:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or a single process without it."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return DistInfo()
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    return DistInfo(rank, world, int(env.get("LOCAL_RANK", rank)))


def restarted() -> bool:
    """True when torchrun restarted this worker group after a failure (TORCHELASTIC_RESTART_COUNT > 0)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    except ValueError:
        return False


def device_for(info: DistInfo, requested: str) -> str:
    """The device of this process: `auto` or `cuda` become cuda:LOCAL_RANK when CUDA is there."""
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{info.local_rank % torch.cuda.device_count()}"
    return requested if requested != "auto" else "cpu"


def init(info: DistInfo, dev: torch.device) -> bool:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns True when this call created it."""
    if not info.enabled or dist.is_initialized():
        return False
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"device_id": dev} if dev.type == "cuda" else {}
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size, **kwargs)
    return True


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(values: list[float], dev: torch.device) -> list[float]:
    """The element-wise sum of `values` over every process (float64)."""
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(obj: object) -> list[object]:
    """`obj` from every rank, in rank order (on every rank)."""
    if not active():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: object) -> object:
    """Rank 0's `obj`, on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) everywhere. DDP broadcasts them before each
    forward, but the last forward of an epoch leaves each rank with its own batch's update."""
    if active():
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier() -> None:
    if active():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, rank + 2 * world, ...: every index on exactly one rank, no padding
    (unlike DistributedSampler, which repeats examples so that every rank has as many)."""

    def __init__(self, n: int, rank: int, world_size: int):
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))
