"""The layer contract, checked for every kind in the registry against references no one here wrote.

Each kind (the built-in ones and the plug-in example in examples/netspec-plugin-example) is compiled as
a one-layer spec, for a few parameter settings and input shapes, and its rules are compared with
what the built torch module does:

- shape rule (`infer`): the module's output shape on a random input;
- cost rule (`cost`): the module's parameter count, and fvcore's FlopCountAnalysis for MACs (torch's
  FlopCounterMode where fvcore cannot see the op);
- receptive-field rule (`window`): the gradient of output pixels with respect to the input, in float64,
  with positive weights and inputs so that nothing cancels; the nonzero extent of one output pixel is
  the kernel, the shift between neighbouring pixels' extents is the stride;
- export: the one-layer spec exported as source, executed, given the same weights, gives the same
  output as the built module.

And every name reserved by torch (RESERVED_NAMES, checked against torch in tests/test_names.py) is
refused at its YAML line.

`contract_failures` is reused by tests/test_new_kind.py for a kind a test writes itself.
"""

from __future__ import annotations

import copy
import importlib.metadata
import itertools
import json
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

import netspec
from netspec.ir import LayerNode, layers
from netspec.layers import KINDS
from netspec.layers.base import RESERVED_NAMES
from netspec.layers.merge import MergeKind

from .conftest import ROOT, fvcore_analysis, n_params

# torch notes that an even kernel with 'same' padding copies its input: the case is there on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

PLUGIN_DIR = ROOT / "examples" / "netspec-plugin-example"
PLUGIN_KINDS = {
    "shift": "netspec_plugin_example.layers:Shift",
    "mish": "netspec_plugin_example.layers:Mish",
}


@dataclass(frozen=True)
class Case:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] = (4, 11, 11)  # the layer's input, without the batch dimension
    fvcore_sees_it: bool = True  # False: fvcore skips the op (MACs are compared with FlopCounterMode)
    exact_stride: bool = True  # False: adaptive pooling of a size that does not divide (steps vary)
    # an upsampling layer: neighbouring output pixels are 1/scale input pixels apart, which the analysis
    # (whole-pixel jumps) bounds by the rule's stride 1: measured steps must not exceed it
    subpixel: bool = False

    @property
    def id(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}({args})-{'x'.join(map(str, self.shape))}"


_ACTIVATIONS = ["relu", "relu6", "tanh", "sigmoid", "silu", "hardswish", "hardsigmoid", "gelu", "mish"]

CASES = [
    Case("conv", {"out": 8}),
    Case(
        "conv", {"out": 6, "kernel": [3, 5], "stride": [2, 1], "padding": 0, "dilation": [1, 2]}, (4, 15, 17)
    ),
    Case("conv", {"out": 8, "kernel": 5, "stride": 2, "groups": 2, "bias": False}, (4, 16, 16)),
    Case("conv", {"kernel": 3, "stride": 2, "groups": "depthwise"}, (6, 13, 13)),
    Case("conv", {"out": 5, "kernel": 1, "stride": 2, "norm": "batchnorm", "act": "relu"}, (3, 9, 9)),
    # an even kernel with 'same' padding pads one more at the bottom/right: torch's conv overload
    # that fvcore does not count (see netspec/check.py)
    Case(
        "conv", {"out": 4, "kernel": 4, "padding": "same", "dilation": 1}, (3, 12, 12), fvcore_sees_it=False
    ),
    Case("batchnorm", {}, (4, 6, 6)),
    Case("batchnorm", {"affine": False, "eps": 1e-3}, (5, 7, 7)),
    Case("batchnorm", {}, (10,)),
    Case("lrn", {"size": 5}, (8, 6, 6)),
    Case("lrn", {"size": 3, "alpha": 2e-4, "beta": 0.5, "k": 2.0}, (4, 5, 5)),
    *[Case(kind, {}, (4, 7, 7)) for kind in _ACTIVATIONS],
    Case("leaky_relu", {"negative_slope": 0.2}, (4, 7, 7)),
    Case("relu", {}, (12,)),
    Case("maxpool", {"kernel": 3, "stride": 2, "padding": 1}, (4, 15, 15)),
    Case("maxpool", {"kernel": 2}, (3, 10, 10)),
    Case("maxpool", {"kernel": [3, 2], "stride": [2, 1], "dilation": 2, "ceil_mode": True}, (3, 16, 13)),
    Case("maxpool", {"kernel": "global"}, (4, 6, 5)),
    Case("avgpool", {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}, (4, 15, 15)),
    Case("avgpool", {"kernel": 2, "ceil_mode": True}, (3, 11, 11)),
    Case("avgpool", {"kernel": "global"}, (4, 7, 6)),
    Case("adaptive_avgpool", {"size": 1}, (4, 6, 6)),
    Case("adaptive_avgpool", {"size": [3, 2]}, (4, 9, 8)),
    Case("adaptive_avgpool", {"size": 3}, (2, 10, 11), exact_stride=False),
    Case("linear", {"out": 7}, (12,)),
    Case("linear", {"out": 3, "bias": False}, (20,)),
    Case("dropout", {"p": 0.3}, (4, 6, 6)),
    Case("dropout", {}, (9,)),
    Case("flatten", {}, (3, 4, 5)),
    Case("identity", {}, (4, 6, 6)),
    Case("channel_pad", {"out": 8, "stride": 2}, (4, 9, 9)),
    Case("channel_pad", {"out": 6}, (4, 7, 7)),
    Case("channel_shuffle", {"groups": 3}, (6, 5, 5)),
    Case("channel_shuffle", {"groups": 2}, (8, 6, 6)),
    Case("layernorm2d", {}, (4, 6, 6)),
    Case("layernorm2d", {"eps": 1e-5, "affine": False}, (5, 7, 7)),
    Case("groupnorm", {"groups": 2}, (4, 6, 6)),
    Case("groupnorm", {"groups": 1, "eps": 1e-3, "affine": False}, (3, 5, 5)),
    Case("frozen_batchnorm", {}, (4, 6, 6)),
    Case("frozen_batchnorm", {"eps": 1e-3}, (3, 5, 5)),
    Case("layer_scale", {}, (4, 6, 6)),
    Case("layer_scale", {"init_value": 0.5, "layout": "timm"}, (3, 5, 5)),
    Case("drop_path", {"p": 0.2}, (4, 6, 6)),
    Case("drop_path", {}, (9,)),
    Case("channel_split", {"parts": 2, "index": 1}, (4, 6, 6)),
    Case("channel_split", {"parts": 3, "index": 0}, (6, 5, 5)),
    Case("channel_split", {}, (8,)),
    Case("upsample", {"scale": 2}, (3, 5, 5), subpixel=True),
    Case("upsample", {"size": [9, 7], "mode": "bilinear"}, (3, 5, 4), subpixel=True),
    Case("upsample", {"scale": [2, 3], "mode": "bilinear", "align_corners": True}, (2, 4, 4), subpixel=True),
    Case(
        "conv_transpose",
        {"out": 6, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1},
        (4, 5, 5),
        subpixel=True,
    ),
    Case(
        "conv_transpose",
        {"out": 4, "kernel": 4, "stride": 2, "padding": 1, "groups": 2, "bias": False},
        (4, 6, 6),
        subpixel=True,
    ),
    Case("conv_transpose", {"kernel": 3, "stride": 1, "dilation": 2}, (3, 6, 6)),
    Case(
        "conv_transpose",
        {"out": 2, "kernel": [3, 2], "stride": [3, 2], "padding": [1, 0]},
        (2, 4, 5),
        subpixel=True,
    ),
    Case("eca", {}, (16, 5, 5)),
    Case("eca", {"kernel": 5}, (8, 4, 4)),
    Case("spatial_mean", {}, (4, 6, 5)),
    Case("spatial_mean", {"keepdim": False}, (4, 6, 5)),
    Case("shift", {"kernel": 3}, (9, 6, 6)),
    Case("shift", {"kernel": 1}, (2, 5, 5)),
]


@pytest.fixture(scope="module", autouse=True)
def example_plugins():
    """The plug-in example's kinds in the registry, loaded as the installed package would load them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(PLUGIN_DIR))
        mp.delenv("NETSPEC_PLUGINS", raising=False)
        KINDS.load(
            [
                importlib.metadata.EntryPoint(name=k, value=v, group="netspec.layers")
                for k, v in PLUGIN_KINDS.items()
            ]
        )
        yield
        KINDS.load([])
        KINDS._loaded = False  # the next reader discovers the real entry points again
        for name in [m for m in sys.modules if m.startswith("netspec_plugin_example")]:
            del sys.modules[name]


# -- one-layer specs --------------------------------------------------------------------------------
def one_layer_spec(kind: str, params: dict[str, Any], shape: tuple[int, ...]) -> netspec.Spec:
    """`kind` on an input of `shape`: a feature map is the network's input, a vector is a 1x1 map
    flattened first."""
    item = {kind: params}
    if len(shape) == 3:
        inp, stem = {"channels": shape[0], "size": [shape[1], shape[2]]}, [item]
    else:
        inp, stem = {"channels": shape[0], "size": 1}, ["flatten", item]
    text = f"name: contract_{kind}\ninput: {json.dumps(inp)}\nstem: {json.dumps(stem)}\n"  # JSON is YAML
    return netspec.loads_spec(text)


@dataclass
class Compiled:
    spec: netspec.Spec
    node: LayerNode  # the layer under test
    model: nn.Module  # the whole one-layer network (netspec.build)
    module: nn.Module  # the layer's module inside it
    input_shape: tuple[int, ...]  # the network's input


def compile_layer(kind: str, params: dict[str, Any], shape: tuple[int, ...]) -> Compiled:
    spec = one_layer_spec(kind, params, shape)
    root = netspec.lower(spec)
    nodes = [n for n in layers(root) if n.kind == kind and n.in_shape == shape]
    assert nodes, f"no {kind} layer on {shape} in {[n.kind for n in layers(root)]}"
    model = netspec.build(spec, seed=0).eval()
    return Compiled(spec, nodes[0], model, model.get_submodule(nodes[0].path), root.in_shape)


def randomized(model: nn.Module) -> nn.Module:
    """Every floating tensor of the state_dict (weights, BN statistics) random and positive."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.5)
    return model


# -- the four comparisons (each returns what disagrees, empty when the rule holds) ---------------------
def shape_failures(c: Compiled) -> list[str]:
    x = torch.randn(2, *c.node.in_shape)
    with torch.no_grad():
        y = c.module(x)
    got = tuple(y.shape[1:])
    return [] if got == c.node.out_shape else [f"infer says {c.node.out_shape}, the module gives {got}"]


def torch_counted_macs(module: nn.Module, shape: tuple[int, ...]) -> int:
    """MACs of convolutions and matrix products as torch's FlopCounterMode counts them (2 FLOPs each)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.randn(1, *shape))
    return counter.get_total_flops() // 2


def cost_failures(c: Compiled, fvcore_sees_it: bool = True) -> list[str]:
    problems = []
    if c.node.cost.params != n_params(c.module):
        problems.append(f"cost says {c.node.cost.params} params, the module has {n_params(c.module)}")
    if fvcore_sees_it:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = int(fvcore_analysis(c.model, c.input_shape).by_module()[c.node.path])
        source = "fvcore"
    else:
        reference, source = torch_counted_macs(c.module, c.node.in_shape), "FlopCounterMode"
    if c.node.cost.macs != reference:
        problems.append(f"cost says {c.node.cost.macs} MACs, {source} counts {reference}")
    return problems


def extents(module: nn.Module, shape: tuple[int, ...]) -> tuple[list[tuple[int, int]], ...]:
    """For each output row (at the centre column) the input rows its gradient reaches, [first, last],
    and for each output column (at the centre row) the input columns. Float64, positive weights and
    inputs; a batch of 64 random inputs so that a max pool's gradient (one argmax per window) covers
    the whole window."""
    module = randomized(copy.deepcopy(module)).double().eval()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(64, *shape, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    y = module(x.clone())  # a clone: an in-place activation must not write the leaf
    oh, ow = y.shape[-2:]

    def reach(i: int, j: int, axis: int) -> tuple[int, int]:
        (grad,) = torch.autograd.grad(y[..., i, j].sum(), x, retain_graph=True)
        hit = grad.ne(0).any(0).any(0).any(1 - axis).nonzero().flatten().tolist()
        return hit[0], hit[-1]

    rows = [reach(i, ow // 2, 0) for i in range(oh)]
    cols = [reach(oh // 2, j, 1) for j in range(ow)]
    return rows, cols


def window_failures(c: Compiled, exact_stride: bool = True, subpixel: bool = False) -> list[str]:
    """The analysis row of the one layer (receptive field, jump) against the measured windows."""
    if len(c.node.in_shape) != 3 or len(c.node.out_shape) != 3:
        return []  # a receptive field is a property of feature maps
    row = next(r for r in netspec.analyze(c.spec).rows if r.path == c.node.path)
    problems = []
    for axis, spans in enumerate(extents(c.module, c.node.in_shape)):
        size = c.node.in_shape[1 + axis]
        widths = [last - first + 1 for first, last in spans]
        if row.receptive_field is None:  # global: every output pixel sees the whole input
            if any(span != (0, size - 1) for span in spans):
                problems.append(f"axis {axis}: rule says global, measured windows {spans}")
            continue
        kernel, stride = row.receptive_field[axis], row.jump[axis]
        if max(widths) != kernel:
            problems.append(f"axis {axis}: rule says kernel {kernel}, widest measured window {max(widths)}")
        if subpixel:
            steps = {b[0] - a[0] for a, b in itertools.pairwise(spans)}
            if max(steps) > stride:
                problems.append(f"axis {axis}: rule's stride {stride} is below the measured steps {steps}")
        elif exact_stride:
            # windows that the border does not clip are `stride` apart
            whole = [first for (first, _), w in zip(spans, widths, strict=True) if w == max(widths)]
            steps = {b - a for a, b in itertools.pairwise(whole)}
            if len(whole) < 2 or steps != {stride}:
                problems.append(f"axis {axis}: rule says stride {stride}, measured steps {steps or 'none'}")
        else:
            step = min(b[0] - a[0] for a, b in itertools.pairwise(spans))
            if step != stride:
                problems.append(f"axis {axis}: rule says stride {stride}, smallest measured step {step}")
    return problems


def export_failures(c: Compiled) -> list[str]:
    source = netspec.export_source(c.spec)
    namespace: dict[str, Any] = {"__name__": f"exported_{c.node.kind}"}
    exec(compile(source, "exported.py", "exec"), namespace)  # the file netspec itself wrote
    exported = namespace["build_model"]().eval()
    randomized(c.model)
    exported.load_state_dict(c.model.state_dict(), strict=True)
    x = torch.randn(2, *c.input_shape)
    with torch.no_grad():
        ours, theirs = c.model(x), exported(x)
    return [] if torch.equal(ours, theirs) else [f"exported output differs by {(ours - theirs).abs().max()}"]


def contract_failures(kind: str, params: dict[str, Any], shape: tuple[int, ...]) -> list[str]:
    """Every disagreement between a kind's rules and its module, for one setting (tests/test_new_kind.py)."""
    c = compile_layer(kind, params, shape)
    return shape_failures(c) + cost_failures(c) + window_failures(c) + export_failures(c)


# -- the tests ---------------------------------------------------------------------------------------
def test_every_registered_kind_has_contract_cases():
    """A kind added to the registry without cases here fails this test, not silently nothing."""
    assert set(KINDS.plugins) == set(PLUGIN_KINDS)
    # merges read several inputs: their contract is checked in tests/test_dag.py (select: test_select.py)
    merges = {name for name, kind in KINDS.items() if isinstance(kind, MergeKind)}
    assert set(KINDS) - merges == {c.kind for c in CASES}


_compiled: dict[str, Compiled] = {}


def compiled(case: Case) -> Compiled:
    if case.id not in _compiled:
        _compiled[case.id] = compile_layer(case.kind, case.params, case.shape)
    return _compiled[case.id]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_shape_rule_matches_the_module(case):
    assert shape_failures(compiled(case)) == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cost_rule_matches_fvcore(case):
    assert cost_failures(compiled(case), case.fvcore_sees_it) == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_receptive_field_rule_matches_the_gradient(case):
    assert window_failures(compiled(case), case.exact_stride, case.subpixel) == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_export_round_trips(case):
    assert export_failures(compiled(case)) == []


def test_the_measurement_sees_a_wrong_rule():
    """The comparisons are not vacuous: a 3x3 conv whose rules claimed 5x5, stride 1, more MACs, a
    different shape, is caught by each of them."""
    c = compile_layer("conv", {"out": 8, "stride": 2}, (4, 11, 11))
    wrong = copy.copy(c.node)
    wrong.out_shape = (8, 5, 5)
    assert shape_failures(Compiled(c.spec, wrong, c.model, c.module, c.input_shape))
    wrong.cost = type(c.node.cost)(params=c.node.cost.params, macs=c.node.cost.macs + 1)
    assert cost_failures(Compiled(c.spec, wrong, c.model, c.module, c.input_shape))
    other = compile_layer("conv", {"out": 8, "kernel": 5}, (4, 11, 11))
    assert window_failures(Compiled(other.spec, other.node, other.model, c.module, c.input_shape))


# -- names a spec may not give a module --------------------------------------------------------------
# tests/test_names.py checks RESERVED_NAMES against the installed torch (exactly what
# nn.Sequential().add_module refuses); here every one of them is refused at its YAML line.
@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_a_reserved_name_is_a_located_error(name):
    text = f"name: t\ninput: {{channels: 3, size: 8}}\nstem:\n  - conv: {{out: 4, name: {name}}}\n"
    with pytest.raises(netspec.SpecError) as info:
        netspec.analyze(netspec.loads_spec(text))
    problem = info.value.problems[0]
    assert "reserved" in problem.message
    assert problem.location is not None and problem.location.line == 4
