"""Shared fixtures. Tests compare netspec with references no one here wrote: torchvision models built
with weights=None, fvcore's FlopCountAnalysis, timm, and figures from the papers."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def fvcore_analysis(model, input_shape: tuple[int, ...]):
    """fvcore's FlopCountAnalysis of one sample, the model in eval mode (how netspec counts), quiet."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    model = model.eval()
    analysis = FlopCountAnalysis(model, torch.randn(1, *input_shape))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def fvcore_macs(model, input_shape: tuple[int, ...]) -> int:
    """fvcore's total for one sample, with the model in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return int(fvcore_analysis(model, input_shape).total())


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def specs_dir() -> Path:
    return SPECS
