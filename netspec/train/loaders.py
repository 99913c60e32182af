"""Batches for the training loop and for evaluation.

In-memory data sets (digits, synthetic, any two-tensor TensorDataset, and whatever has a
`batch(index)` method: `InMemory`) are served by tensor indexing: an epoch is one permutation drawn
from the loader's generator, a batch one `index_select` of it, and augmentation (the digits' random
shift) runs on the whole batch. On LeNet-5 and the digits (one thread, batch 32), per-example
`__getitem__` (each with its own pad and crop) and collation took 14-30 % of the training loop;
indexing makes a batch about 5x faster (2.6 ms -> 0.5 ms, measured side by side). On CUDA such a
data set, when small enough (DEVICE_RESIDENT_BYTES), is moved to the device once, so a batch never
crosses the bus.

Data sets read from files go through torch's DataLoader: worker processes (`workers`, by default
chosen from the cores: `default_workers`), persistent across epochs, each prefetching
PREFETCH_BATCHES batches, pinned memory on CUDA (the loop copies without blocking). Every training
example is drawn with its own seed (SeededSampler, SeededSamples), so a resumed run draws the
augmentations of the run that was not interrupted, whatever the workers.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sized
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler, TensorDataset

DEVICE_RESIDENT_BYTES = 2**30  # an in-memory data set up to 1 GiB lives on the GPU for the run
PREFETCH_BATCHES = 4  # batches each worker prepares ahead (DataLoader's prefetch_factor)
MAX_DEFAULT_WORKERS = 8

Batch = tuple[Tensor, Tensor]


@runtime_checkable
class InMemory(Protocol):
    """A data set whose examples are rows of tensors: a batch is one index into them."""

    def __len__(self) -> int: ...

    def batch(self, index: Tensor) -> Batch:
        """The examples `index` (a 1-D long tensor), as (images, labels)."""
        ...

    def to(self, device: torch.device) -> InMemory:
        """The same data set with its tensors on `device`."""
        ...


class Tensors:
    """An (images, labels) pair of tensors as an InMemory data set (a TensorDataset's)."""

    def __init__(self, x: Tensor, y: Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, index: Tensor) -> Batch:
        index = index.to(self.x.device)
        return self.x.index_select(0, index), self.y.index_select(0, index)

    def to(self, device: torch.device) -> Tensors:
        return Tensors(self.x.to(device), self.y.to(device))


def in_memory(data: object) -> InMemory | None:
    """`data` as an InMemory data set, or None when it is read example by example."""
    if isinstance(data, InMemory):
        return data
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        return Tensors(*data.tensors)
    return None


def nbytes(data: InMemory) -> int:
    tensors = [t for t in vars(data).values() if isinstance(t, Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


class TensorBatches:
    """Batches of an InMemory data set by indexing, as a DataLoader gives them: shuffled with
    `generator` (the permutation is drawn when an epoch starts, so the generator's state between
    epochs is all a resume needs), the last partial batch dropped with `drop_last`. With `world_size`
    > 1 the training order is DistributedSampler's (a permutation seeded with `seed` + the epoch:
    call `set_epoch`; each rank takes every world_size-th index), and an unshuffled set is split as
    ShardSampler splits it (every example on exactly one rank)."""

    def __init__(
        self,
        data: InMemory,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        pin_memory: bool = False,
    ):
        self.data, self.batch_size = data, batch_size
        self.shuffle, self.drop_last, self.generator = shuffle, drop_last, generator
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0
        self.pin_memory = pin_memory

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def to(self, device: torch.device) -> TensorBatches:
        """Keep the data set on `device` when it is a GPU with room for it (DEVICE_RESIDENT_BYTES)."""
        if device.type != "cpu" and nbytes(self.data) <= DEVICE_RESIDENT_BYTES:
            self.data, self.pin_memory = self.data.to(device), False
        return self

    def _order(self) -> Tensor:
        n = len(self.data)
        if self.world_size > 1 and self.shuffle:  # DistributedSampler(shuffle=True, drop_last=True)
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            total = n // self.world_size * self.world_size
            return torch.randperm(n, generator=g)[self.rank : total : self.world_size]
        if self.world_size > 1:
            return torch.arange(self.rank, n, self.world_size)
        if self.shuffle:
            return torch.randperm(n, generator=self.generator)
        return torch.arange(n)

    def __len__(self) -> int:
        n = len(range(self.rank, len(self.data), self.world_size))
        if self.world_size > 1 and self.shuffle:
            n = len(self.data) // self.world_size
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order, b = self._order(), self.batch_size
        for i in range(len(self)):
            x, y = self.data.batch(order[i * b : (i + 1) * b])
            if self.pin_memory:  # a page-locked copy goes to the GPU without blocking the loop
                x, y = x.pin_memory(), y.pin_memory()
            yield x, y


Loader = TensorBatches | DataLoader


def set_epoch(loader: Loader, epoch: int) -> None:
    """Tell the loader's order which epoch starts (DistributedSampler's per-epoch shuffle)."""
    order = loader if isinstance(loader, TensorBatches) else loader.sampler
    if hasattr(order, "set_epoch"):
        order.set_epoch(epoch)


def default_workers(cpus: int | None = None) -> int:
    """Worker processes for a data set read from files: of the cores this process may use (its share
    under torchrun, LOCAL_WORLD_SIZE processes on the machine), every one but the training loop's,
    up to MAX_DEFAULT_WORKERS."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    processes = os.environ.get("LOCAL_WORLD_SIZE", "1")
    share = cpus // int(processes) if processes.isdigit() and int(processes) > 0 else cpus
    return max(0, min(MAX_DEFAULT_WORKERS, share - 1))


def batches(
    data: Dataset,
    batch_size: int,
    *,
    train: bool,
    workers: int,
    generator: torch.Generator | None = None,
    sampler: Sampler[int] | None = None,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
) -> Loader:
    """The loader of one split: TensorBatches for an in-memory data set, else a DataLoader with
    `workers` processes (prefetching PREFETCH_BATCHES batches each) and pinned memory on CUDA.
    `train`: shuffled, the last partial batch dropped."""
    source = in_memory(data)
    if source is not None:
        return TensorBatches(
            source,
            batch_size,
            shuffle=train,
            drop_last=train,
            generator=generator,
            rank=rank,
            world_size=world_size,
            seed=seed,
            pin_memory=pin_memory,
        )
    if workers == 0:  # the main process draws augmentations from its own RNGs, as a checkpoint saves them
        return DataLoader(
            data,
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train,
            generator=generator if train else None,
            pin_memory=pin_memory,
        )
    if train:
        order = sampler if sampler is not None else RandomSampler(cast(Sized, data), generator=generator)
        seeded: Sampler[Any] = SeededSampler(order, generator)
        data = SeededSamples(data)
    else:
        seeded = sampler if sampler is not None else SequentialSampler(cast(Sized, data))
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=seeded,
        drop_last=train,
        num_workers=workers,
        # the workers' own base seed: never drawn from the run's RNGs, which a checkpoint restores
        generator=torch.Generator().manual_seed(0),
        pin_memory=pin_memory,
        persistent_workers=True,
        prefetch_factor=PREFETCH_BATCHES,
    )


class SeededSampler(Sampler[tuple[int, int]]):
    """`order`'s indices, each with a seed drawn from `generator` when an epoch starts (in the main
    process, whose generator a checkpoint saves)."""

    def __init__(self, order: Sampler[int], generator: torch.Generator | None):
        self.order, self.generator = order, generator

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(self.order)
        seeds = torch.randint(0, 2**62, (len(indices),), generator=self.generator).tolist()
        return iter(zip(indices, seeds, strict=True))

    def __len__(self) -> int:
        return len(self.order)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.order, "set_epoch"):  # DistributedSampler's per-epoch shuffle
            self.order.set_epoch(epoch)


class SeededSamples(Dataset):
    """A data set read in worker processes, each example drawn with torch's, numpy's and python's
    RNGs seeded by its own seed (SeededSampler): its augmentation depends on the run's seed and its
    place in the run, not on which worker made it nor on how long that worker has lived. So workers
    can be persistent (started once, not every epoch) and a resumed run still draws the
    augmentations of the run that was not interrupted, with any number of workers."""

    def __init__(self, data: Dataset):
        self.data = data

    def __len__(self) -> int:
        return len(cast(Sized, self.data))

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        return self.data[index]
