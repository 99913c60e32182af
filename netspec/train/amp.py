"""Mixed precision, decided once per run: the autocast context of the recipe's `amp` (none, bf16,
fp16) and the grad scaler (loss scaling, which fp16's narrow range needs and bf16's does not; a
disabled scaler is a pass-through, so the training step has one path for every mode)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def autocast(dev: torch.device, amp: str) -> Any:
    """A fresh autocast context for `amp` on `dev` (a null context for `none`)."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=dev.type, dtype=dtype)


def grad_scaler(dev: torch.device, amp: str) -> torch.amp.GradScaler:
    """Enabled for fp16 only (torch's CPU autocast has fp16 too)."""
    return torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
