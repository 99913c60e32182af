"""Pooling geometry the static analysis accepts is exactly what PyTorch runs: over a grid of kernels,
dilations, paddings and ceil modes on a small map, netspec's shape (or its located refusal) agrees
with F.max_pool2d / F.avg_pool2d run on a real tensor."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import netspec
from netspec.errors import SpecError


def _spec(kind: str, params: dict[str, object]) -> netspec.Spec:
    return netspec.Spec.model_validate(
        {"name": "pool", "input": {"channels": 1, "size": 7}, "stem": [{kind: params}]}
    )


def _netspec_shape(kind: str, params: dict[str, object]) -> tuple[int, ...] | None:
    try:
        return tuple(netspec.analyze(_spec(kind, params)).rows[-1].output_shape)
    except SpecError:
        return None


def _torch_shape(fn: object, **kw: object) -> tuple[int, ...] | None:
    try:
        return tuple(fn(torch.randn(1, 1, 7, 7), **kw).shape[1:])  # type: ignore[operator]
    except RuntimeError:
        return None


@pytest.mark.parametrize("ceil", [False, True])
def test_maxpool_geometry_agrees_with_torch(ceil: bool) -> None:
    for k, d, p in itertools.product(range(1, 5), range(1, 4), range(4)):
        params = {"kernel": k, "stride": 2, "padding": p, "dilation": d, "ceil_mode": ceil}
        expected = _torch_shape(F.max_pool2d, kernel_size=k, stride=2, padding=p, dilation=d, ceil_mode=ceil)
        assert _netspec_shape("maxpool", params) == expected, params


@pytest.mark.parametrize("ceil", [False, True])
def test_avgpool_geometry_agrees_with_torch(ceil: bool) -> None:
    for k, p in itertools.product(range(1, 6), range(4)):
        params = {"kernel": k, "stride": 2, "padding": p, "ceil_mode": ceil}
        expected = _torch_shape(F.avg_pool2d, kernel_size=k, stride=2, padding=p, ceil_mode=ceil)
        assert _netspec_shape("avgpool", params) == expected, params
