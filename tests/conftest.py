"""Shared fixtures. Tests compare netspec with references no one here wrote: torchvision models built
with weights=None, fvcore's FlopCountAnalysis, timm, and figures from the papers."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

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


def run_cli(*args: str):
    """Run the CLI in-process; a user-facing failure may exit, never raise or print a traceback."""
    from typer.testing import CliRunner

    from netspec.cli import app

    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture(scope="module")
def one_thread_module():
    """One intra-op thread for a whole module (`pytestmark = pytest.mark.usefixtures(...)`), for
    modules whose module-scoped fixtures build models: on a small shared machine several threads per
    forward mostly wait on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Training tests run on one thread: steadier on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def lenet5_run(tmp_path_factory) -> Path:
    """A real run directory, shared by the tests that read one: LeNet-5, two epochs on the digits."""
    import torch

    from netspec.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the one_thread fixture, which is per test
    out = tmp_path_factory.mktemp("run") / "lenet5"
    try:
        train(str(SPECS / "lenet5.yaml"), out=out, overrides=["train.epochs=2"], log="quiet")
    finally:
        torch.set_num_threads(threads)
    return out


def batchnorm_calibrated(model: Any, x: Any) -> Any:
    """The model in eval mode with its BatchNorm statistics taken from one batch. With the initial
    statistics (mean 0, variance 1) the activations of a freshly initialised EfficientNet or MobileNet
    shrink stage by stage, to logits near 1e-9 or less, which any two networks would give "equal"."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one batch, that batch's statistics
    with torch.no_grad():
        model.train()(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return model.eval()
