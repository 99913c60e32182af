"""An exported file starts where the compiled module starts: `build_model(seed=s)` of the file gives, bit
for bit, the state_dict of `netspec.build(spec, seed=s)` (the spec's `init:`, zero-gamma and a layer's
own `init:` included), for every zoo spec and seeds 0 and 1. The reference is torch's own RNG and nn.init
run by `netspec.build`; the file is executed in a fresh module namespace and its tensors compared with
torch.equal."""

from __future__ import annotations

import functools
import time
import types
from pathlib import Path

import pytest
import torch

import netspec
from netspec.export import export_source

from .conftest import SPECS

ZOO = sorted(SPECS.glob("*.yaml"))
# the largest networks (VGG's 140M parameters) run in the slow suite: their init alone takes seconds
LARGE = {
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "alexnet",
    "zfnet",
}


pytestmark = pytest.mark.usefixtures("one_thread_module")


def exported_module(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(f"netspec_exported_{name}")
    exec(compile(source, f"<exported {name}>", "exec"), module.__dict__)
    return module


@functools.cache
def exported(path: Path) -> str:
    return export_source(netspec.load_spec(path), format=False)


def assert_same_start(spec: netspec.Spec, source: str, seed: int) -> None:
    ours = exported_module(source, spec.name.replace(".", "_")).build_model(seed=seed).state_dict()
    ref = netspec.build(spec, seed=seed).state_dict()
    assert list(ours) == list(ref)
    different = [k for k in ref if not torch.equal(ours[k], ref[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if p.stem in LARGE else p for p in ZOO],
    ids=lambda p: p.stem,
)
def test_zoo_export_starts_from_the_compiled_weights(path, seed):
    assert_same_start(netspec.load_spec(path), exported(path), seed)


INITS = """
name: inits
input: {channels: 3, size: 16}
classes: 5
defaults:
  conv: {norm: batchnorm, act: relu}
stem:
  - conv: {out: 8, name: stem}
  - conv: {out: 8, init: xavier_uniform}               # its own init: a random draw out of the loop
  - conv: {out: 8, norm: none, bias: true}             # a conv with a bias
  - batchnorm: {affine: false}                         # no tensors to fill
  - batchnorm: {zero_init: true}                       # a constant fill out of the loop
stages:
  - {block: basic, depth: 3, out: 16, stride: 2}
head:
  - avgpool: global
  - flatten
  - linear: {out: 12, init: kaiming_uniform}
  - batchnorm
  - linear: "${classes}"
shortcut: projection
tricks: [zero_gamma]
init: {conv: kaiming_uniform, linear: xavier_uniform, seed: 3}
blocks:
  basic:
    params: {out: int, stride: 1}
    body:
      - conv: {out: "${out}", stride: "${stride}"}
      - conv: {out: "${out}", act: none, init: normal}
    merge: add
    after: [relu]
"""


def test_every_kind_of_init_exception_starts_exactly():
    """Per-layer schemes (random draws, in the RNG's order), a BN without affine, a conv with a bias,
    zero-gamma in every block and a BN's own zero_init; `init.seed` is build_model's default seed."""
    spec = netspec.loads_spec(INITS)
    source = export_source(spec)
    assert "for m in self.modules():" in source and "isinstance(m, Basic)" in source  # zero-gamma
    assert "m is self." in source  # a layer's own random init, in order
    for seed in (0, 1):
        assert_same_start(spec, source, seed)
    module = exported_module(source, "inits_default_seed")
    default = module.build_model().state_dict()
    assert all(torch.equal(v, netspec.build(spec).state_dict()[k]) for k, v in default.items())


def test_build_model_keeps_the_callers_random_state():
    module = exported_module(exported(SPECS / "resnet20_cifar.yaml"), "resnet20_rng")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    module.build_model(seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_long_description_is_exported_in_linear_time():
    """A description that is one 300 KB word (issue 11: quadratic in the docstring wrapper before, minutes):
    the export takes about as long as with a short one (generous bound), and the word is all there."""
    base = "name: longword\ninput: {channels: 3, size: 8}\nstem: [conv: 4]\n"
    start = time.perf_counter()
    export_source(netspec.loads_spec(base), format=False, verify=False)
    short = time.perf_counter() - start
    word = "x" * 300_000
    start = time.perf_counter()
    source = export_source(netspec.loads_spec(base + f"description: {word}\n"), format=False, verify=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 10 * short + 5.0, elapsed
    assert "".join(line.strip() for line in source.splitlines()).count("x" * 1000) >= 290
