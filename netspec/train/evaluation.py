"""Evaluating a classifier: top-1, top-5 and mean cross-entropy over a data set, summed on the
device and read once at the end; and the device a run asks for (`resolve_device`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .amp import autocast
from .data import DataSplit
from .errors import TrainError
from .loaders import batches
from .losses import main_logits

Batches = Iterable[tuple[Tensor, Tensor]]


def resolve_device(device: str | torch.device) -> torch.device:
    """`auto` (CUDA when there is one) or a torch device that is there; TrainError otherwise."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise TrainError(f"unknown device '{device}' ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device '{device}' was asked for, but CUDA is not available here")
    return dev


def as_batches(data: Batches | Dataset | DataSplit, batch_size: int) -> Batches:
    """A DataSplit's val set, a Dataset (in-memory ones by tensor indexing) or batches as they are."""
    if isinstance(data, DataSplit):
        data = data.val
    if isinstance(data, Dataset) and not isinstance(data, DataLoader):
        return batches(data, batch_size, train=False, workers=0)
    return data


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Batches | Dataset | DataSplit,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    amp: str = "none",
    channels_last: bool = False,
    distributed: bool = False,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy and mean cross-entropy of `model` (in eval mode) on `data` (a
    DataSplit's val set, a Dataset, a DataLoader or any iterable of (images, labels) batches). The
    model's training mode is restored. `distributed`: `data` is this rank's shard; the sums are
    all-reduced over the process group."""
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    loader = as_batches(data, batch_size)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    top1 = torch.zeros((), dtype=torch.long, device=dev)
    top5 = torch.zeros((), dtype=torch.long, device=dev)
    n = 0
    try:
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, amp):
                logits = main_logits(model(x))
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")  # summed in float64
            k = min(5, logits.shape[1])
            hit = logits.topk(k, dim=1).indices == y.unsqueeze(1)  # a row's k classes differ: one hit at most
            top1 += hit[:, 0].sum()
            top5 += hit.sum()
            n += y.shape[0]
    finally:
        model.train(was_training)
    sums = [float(loss_sum), int(top1), int(top5), n]
    if distributed:
        from .distributed import all_reduce_sum

        sums = all_reduce_sum(sums, dev)
    n = int(sums[3])
    if n == 0:
        return {"loss": float("nan"), "top1": 0.0, "top5": 0.0, "n": 0}
    return {"loss": sums[0] / n, "top1": int(sums[1]) / n, "top5": int(sums[2]) / n, "n": n}
