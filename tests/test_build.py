"""The compiled module: initialisation as torchvision does it, determinism, and the plain-PyTorch
structure the compile issue asks for."""

from __future__ import annotations

import pytest
import torch
import torchvision

import netspec

from .conftest import SPECS


def _state_dicts_equal(a: dict, b: dict) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in b if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize(
    ("spec", "overrides", "reference", "kwargs"),
    [
        ("resnet50.yaml", ["tricks=[resnet_b]"], "resnet50", {}),
        ("resnet50.yaml", ["tricks=[resnet_b, zero_gamma]"], "resnet50", {"zero_init_residual": True}),
        ("resnet18.yaml", [], "resnet18", {"zero_init_residual": False}),
        ("vgg11_bn.yaml", [], "vgg11_bn", {}),
    ],
    ids=["resnet50", "resnet50-zero-gamma", "resnet18", "vgg11_bn"],
)
def test_seeded_build_reproduces_torchvision_initialisation_bit_for_bit(spec, overrides, reference, kwargs):
    # Kaiming-normal (fan_out) convs, BN gamma 1 / beta 0 (0 for zero-gamma), and the same random
    # stream consumed in the same order: the same seed gives the very same tensors as torchvision.
    model = netspec.build(netspec.load_spec(SPECS / spec, overrides), seed=0)
    torch.manual_seed(0)
    tv = getattr(torchvision.models, reference)(weights=None, **kwargs)
    assert _state_dicts_equal(model.state_dict(), tv.state_dict()) == []


def test_zero_gamma_zeroes_exactly_the_last_bn_of_each_residual_branch():
    spec = netspec.load_spec(SPECS / "resnet50.yaml", ["tricks=[resnet_b, zero_gamma]"])
    zeroed = {k for k, v in netspec.build(spec).state_dict().items() if k.endswith("weight") and not v.any()}
    tv = torchvision.models.resnet50(weights=None, zero_init_residual=True)
    expected = {k for k, v in tv.state_dict().items() if k.endswith("weight") and not v.any()}
    assert zeroed == expected
    assert len(zeroed) == 16  # one bn3 per bottleneck: 3 + 4 + 6 + 3


def test_a_seed_makes_construction_deterministic_and_leaves_the_global_rng_alone():
    spec = netspec.load_spec(SPECS / "resnet18.yaml")
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = netspec.build(spec, seed=7).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    b = netspec.build(spec, seed=7).state_dict()
    c = netspec.build(spec, seed=8).state_dict()
    assert _state_dicts_equal(a, b) == []
    assert _state_dicts_equal(a, c) != []


def test_per_layer_init_choice_is_applied():
    spec = netspec.loads_spec(
        """
name: inits
input: {channels: 3, size: 8}
classes: 4
stem:
  - conv: {out: 8, init: zeros}
  - conv: {out: 8, init: xavier_uniform}
head: [avgpool: global, flatten, linear: {out: 4, init: normal}]
"""
    )
    model = netspec.build(spec, seed=0)
    assert not model.conv1.weight.any()
    bound = (6 / (8 * 9 + 8 * 9)) ** 0.5  # xavier_uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
    assert model.conv2.weight.abs().max() <= bound
    assert model.conv2.weight.abs().max() > 0.8 * bound
    assert abs(model.fc1.weight.std().item() - 0.01) < 0.005  # normal(0, 0.01)


def test_built_model_is_plain_pytorch_that_prints_like_a_hand_written_one():
    model = netspec.build(netspec.load_spec(SPECS / "resnet50_b.yaml"))
    text = str(model)
    assert "(layer1): Sequential(" in text
    assert "(conv1): Conv2d(64, 64, kernel_size=(1, 1)" in text
    assert "(downsample): Sequential(" in text
    modules = {type(m).__module__.split(".")[0] for m in model.modules()}
    assert modules <= {"torch", "netspec"}
