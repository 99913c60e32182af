"""Static analysis against references no one here wrote: small models written directly in torch
(sum(p.numel()), fvcore's FlopCountAnalysis, the real forward pass, gradients for the receptive field).

Each torch model below is written by hand, independently of netspec; the spec next to it describes the
same network in YAML. Where the spec's module names match the torch model's, the torch weights are
loaded into the compiled model and the two outputs must agree numerically.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

import netspec
from netspec.analysis import Analysis

from .conftest import fvcore_analysis, fvcore_macs, n_params


def fvcore_by_module(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """fvcore's per-module MAC counts (eval mode, one sample)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {k: int(v) for k, v in fvcore_analysis(model, input_shape).by_module().items()}


def forward_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[dict[str, tuple], tuple]:
    """Output shape (without batch) of every leaf module, by module path, from a real forward pass."""
    shapes: dict[str, tuple] = {}
    hooks = []
    for path, module in model.named_modules():
        if path and not list(module.children()):

            def hook(_m, _inp, out, path=path):
                assert path not in shapes, f"{path} ran twice"
                shapes[path] = tuple(out.shape[1:])

            hooks.append(module.register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(2, *input_shape))
    for h in hooks:
        h.remove()
    return shapes, tuple(y.shape[1:])


def check_build_matches_analysis(
    spec: netspec.Spec, a: Analysis | None = None, macs: bool = True
) -> nn.Module:
    """netspec.build(spec) agrees with netspec.analyze(spec) layer by layer: shapes from forward hooks,
    parameters from the modules, MACs from fvcore (in total and per module)."""
    a = a or netspec.analyze(spec)
    model = netspec.build(spec, seed=0)
    shapes, out = forward_shapes(model, a.input_shape)
    assert out == a.output_shape
    layer_rows = {r.path: r for r in a.rows if r.is_layer}
    assert set(shapes) == set(layer_rows), (sorted(shapes), sorted(layer_rows))
    for path, row in layer_rows.items():
        assert shapes[path] == row.output_shape, (path, shapes[path], row.output_shape)
        module = model.get_submodule(path)
        assert n_params(module) == row.params, path
    assert n_params(model) == a.params
    for row in a.rows:  # containers too: every row's parameters are those of its module
        if row.path != "(model)":
            assert n_params(model.get_submodule(row.path)) == row.params, row.path
    if macs:
        by_module = fvcore_by_module(model, a.input_shape)
        assert by_module[""] == a.macs
        for path, row in layer_rows.items():
            assert by_module.get(path, 0) == row.macs, (path, by_module.get(path, 0), row.macs)
    return model


def compare(
    reference: nn.Module, spec_text: str, same_names: bool = False, build_macs: bool = True
) -> Analysis:
    """The spec's analysis equals the hand-written torch model: params, fvcore MACs, output shape."""
    spec = netspec.loads_spec(spec_text)
    a = netspec.analyze(spec)
    reference.eval()
    with torch.no_grad():
        y = reference(torch.randn(2, *a.input_shape))
    assert a.output_shape == tuple(y.shape[1:])
    assert a.params == n_params(reference)
    assert a.macs == fvcore_macs(reference, a.input_shape)
    built = check_build_matches_analysis(spec, a, macs=build_macs)
    if same_names:
        built.load_state_dict(reference.state_dict())
        built.eval()
        x = torch.randn(2, *a.input_shape)
        with torch.no_grad():
            torch.testing.assert_close(built(x), reference(x), rtol=1e-5, atol=1e-5)
    return a


# -- hand-written torch references ---------------------------------------------------------------


def test_plain_convnet_with_ceil_mode_dilation_groups():
    torch.manual_seed(0)
    ref = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 16, 3, padding=1),
            bn1=nn.BatchNorm2d(16),
            relu1=nn.ReLU(),
            maxpool1=nn.MaxPool2d(3, stride=2, ceil_mode=True),
            conv2=nn.Conv2d(16, 32, 3, padding=2, dilation=2),
            relu2=nn.ReLU(),
            conv3=nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=4, bias=False),
            avgpool1=nn.AvgPool2d(2, ceil_mode=True),
            avgpool2=nn.AdaptiveAvgPool2d(1),
            flatten1=nn.Flatten(),
            fc1=nn.Linear(32, 10),
        )
    )
    a = compare(
        ref,
        """
name: plain
input: {channels: 3, size: 37}
classes: 10
stem:
  - conv: {out: 16, kernel: 3, padding: 1}
  - batchnorm
  - relu
  - maxpool: {kernel: 3, stride: 2, ceil_mode: true}
  - conv: {out: 32, kernel: 3, padding: 2, dilation: 2}
  - relu
  - conv: {out: 32, kernel: 3, stride: 2, padding: 1, groups: 4, bias: false}
  - avgpool: {kernel: 2, ceil_mode: true}
head:
  - adaptive_avgpool: 1
  - flatten
  - linear: "${classes}"
""",
        same_names=True,
    )
    # sizes by hand: 37 -> maxpool(3, 2, ceil) -> ceil(34/2)+1 = 18 -> conv s2 -> 9 -> avgpool ceil -> 5
    shapes = {r.path: r.output_shape for r in a.rows}
    assert shapes["maxpool1"] == (16, 18, 18)
    assert shapes["conv3"] == (32, 9, 9)
    assert shapes["avgpool1"] == (32, 5, 5)


def test_ceil_mode_last_window_must_start_inside_the_input():
    # PyTorch drops a last window that would start in the right padding: 6 -> k2 s2 p1 ceil -> 4, not 5
    ref = nn.Sequential(nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True), nn.Flatten())
    a = compare(
        ref,
        "name: c\ninput: {channels: 2, size: 6}\nstem:\n  - maxpool: {kernel: 2, stride: 2, padding: 1,"
        " ceil_mode: true}\nhead: [flatten]\n",
    )
    assert a.rows[0].output_shape == (2, 4, 4)


def test_depthwise_separable_and_dilated_pool():
    ref = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
            bn1=nn.BatchNorm2d(8),
            relu1=nn.ReLU6(),
            conv2=nn.Conv2d(8, 24, 1, bias=False),
            bn2=nn.BatchNorm2d(24, affine=False),
            hardswish1=nn.Hardswish(),
            maxpool1=nn.MaxPool2d(3, stride=2, dilation=2, padding=1),
            conv3=nn.Conv2d(24, 24, 5, stride=2, padding=2, groups=24),
            sigmoid1=nn.Sigmoid(),
        )
    )
    compare(
        ref,
        """
name: dw
input: {channels: 8, size: [23, 31]}
stem:
  - conv: {kernel: 3, groups: depthwise, norm: batchnorm, act: relu6}
  - conv: {out: 24, kernel: 1, bias: false}
  - batchnorm: {affine: false}
  - hardswish
  - maxpool: {kernel: 3, stride: 2, dilation: 2, padding: 1}
  - conv: {kernel: 5, stride: 2, groups: depthwise}
  - sigmoid
""",
        same_names=True,
    )


def test_rectangular_kernels_strides_and_paddings():
    ref = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 12, (1, 7), stride=(2, 1), padding=(0, 3)),
            conv2=nn.Conv2d(12, 12, (7, 1), padding=(3, 0), dilation=(2, 1)),
            conv3=nn.Conv2d(12, 6, (3, 5), stride=(1, 2), padding=0),
            maxpool1=nn.MaxPool2d((3, 2), stride=(1, 2), ceil_mode=True),
            avgpool1=nn.AvgPool2d((2, 3), stride=(2, 1), padding=(1, 1), count_include_pad=False),
            leaky_relu1=nn.LeakyReLU(0.2),
            flatten1=nn.Flatten(),
            fc1=nn.Linear(6 * 4 * 7, 7, bias=False),
        )
    )
    compare(
        ref,
        """
name: rect
input: {channels: 3, size: [31, 29]}
stem:
  - conv: {out: 12, kernel: [1, 7], stride: [2, 1], padding: [0, 3]}
  - conv: {out: 12, kernel: [7, 1], padding: [3, 0], dilation: [2, 1]}
  - conv: {out: 6, kernel: [3, 5], stride: [1, 2], padding: 0}
  - maxpool: {kernel: [3, 2], stride: [1, 2], ceil_mode: true}
  - avgpool: {kernel: [2, 3], stride: [2, 1], padding: [1, 1], count_include_pad: false}
  - leaky_relu: {negative_slope: 0.2}
head:
  - flatten
  - linear: {out: 7, bias: false}
""",
        same_names=True,
    )


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_padding_with_an_even_kernel():
    # PyTorch pads 'same' asymmetrically for an even kernel: total d * (k - 1) = 3, left 1, right 2.
    # fvcore has no handle for the 'same' convolution op (it counts 0), so the reference spells the
    # padding out, which fvcore does count.
    pad, conv = nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(4, 4, 4)
    ref = nn.Sequential(pad, conv, nn.Tanh())
    a = compare(
        ref,
        "name: same\ninput: {channels: 4, size: 10}\nstem:\n  - conv: {kernel: 4, padding: same}\n  - tanh\n",
        build_macs=False,  # the compiled model keeps padding='same', which fvcore cannot count
    )
    assert a.output_shape == (4, 10, 10)
    text = (
        "name: same\ninput: {channels: 4, size: 10}\nstem:\n  - conv: {kernel: 4, padding: same}\n  - tanh\n"
    )
    built = netspec.build(netspec.loads_spec(text)).eval()
    with torch.no_grad():
        built.conv1.weight.copy_(conv.weight)
        built.conv1.bias.copy_(conv.bias)
        x = torch.randn(2, 4, 10, 10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.testing.assert_close(built(x), ref(x), rtol=1e-5, atol=1e-5)


def test_classifier_with_lrn_dropout_and_bn1d():
    ref = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 10, 5, stride=3),
            relu1=nn.ReLU(),
            lrn1=nn.LocalResponseNorm(3, alpha=1e-3, beta=0.5, k=2.0),
            maxpool1=nn.MaxPool2d(3, stride=2),
            avgpool1=nn.AdaptiveAvgPool2d((3, 2)),
            flatten1=nn.Flatten(),
            dropout1=nn.Dropout(0.3),
            fc1=nn.Linear(60, 50),
            bn1=nn.BatchNorm1d(50),
            gelu1=nn.GELU(),
            fc2=nn.Linear(50, 5),
        )
    )
    compare(
        ref,
        """
name: clf
input: {channels: 3, size: 50}
classes: 5
stem:
  - conv: {out: 10, kernel: 5, stride: 3, padding: 0}
  - relu
  - lrn: {size: 3, alpha: 0.001, beta: 0.5, k: 2.0}
  - maxpool: {kernel: 3, stride: 2}
head:
  - adaptive_avgpool: [3, 2]
  - flatten
  - dropout: 0.3
  - linear: 50
  - batchnorm
  - gelu
  - linear: "${classes}"
""",
        same_names=True,
    )


class _Basic(nn.Module):
    """A ResNet basic block with a projection shortcut, written out by hand."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        short = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + short)


class _Inception(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch1 = nn.Sequential(nn.Conv2d(cin, 8, 1))
        self.branch2 = nn.Sequential(nn.Conv2d(cin, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1))
        self.branch3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, 4, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x)], 1)


def test_residual_and_parallel_blocks():
    ref = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 16, 3, padding=1, bias=False),
            bn1=nn.BatchNorm2d(16),
            relu1=nn.ReLU(),
            layer1=nn.Sequential(_Basic(16, 16, 1), _Basic(16, 16, 1)),
            layer2=nn.Sequential(_Basic(16, 32, 2), _Basic(32, 32, 1)),
            mixed=_Inception(32),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten1=nn.Flatten(),
            fc=nn.Linear(20, 10),
        )
    )
    a = compare(
        ref,
        """
name: resnet_tiny
input: {channels: 3, size: 20}
classes: 10
stem:
  - conv: {out: 16, kernel: 3, bias: false}
  - batchnorm
  - relu
stages:
  - {block: basic, depth: 2, out: 16, name: layer1}
  - {block: basic, depth: 2, out: 32, stride: 2, name: layer2}
  - inception: {name: mixed}
shortcut: projection
head:
  - avgpool: {kernel: global, name: avgpool}
  - flatten
  - linear: {out: "${classes}", name: fc}
blocks:
  basic:
    params: {out: int, stride: 1}
    body:
      - conv: {out: "${out}", kernel: 3, stride: "${stride}", bias: false}
      - batchnorm
      - relu
      - conv: {out: "${out}", kernel: 3, bias: false}
      - batchnorm
    merge: add
    after: [relu]
  inception:
    branches:
      - [conv: {out: 8, kernel: 1}]
      - [conv: {out: 4, kernel: 1}, relu, conv: {out: 8, kernel: 3}]
      - [maxpool: {kernel: 3, stride: 1, padding: 1}, conv: {out: 4, kernel: 1}]
    merge: concat
""",
        same_names=True,
    )
    rows = {r.path: r for r in a.rows}
    assert rows["layer2.0.downsample.0"].output_shape == (32, 10, 10)
    assert "layer1.0.downsample" not in rows  # same shape: identity shortcut
    assert rows["mixed"].output_shape == (20, 10, 10)


# -- counting conventions, by hand -----------------------------------------------------------------


def test_counts_by_hand():
    a = netspec.analyze(
        netspec.loads_spec(
            """
name: hand
input: {channels: 3, size: 8}
stem:
  - conv: {out: 4, kernel: 3}
  - batchnorm
  - relu
  - maxpool: 2
head:
  - avgpool: global
  - flatten
  - linear: 10
"""
        )
    )
    conv, bn, relu, pool, gap, flat, fc = a.rows
    assert (conv.params, conv.macs) == (4 * 27 + 4, 4 * 8 * 8 * 27)
    assert conv.flops == 2 * conv.macs + 4 * 8 * 8  # bias adds
    assert (bn.params, bn.macs, bn.flops) == (8, 2 * 256, 4 * 256)
    assert (relu.params, relu.macs, relu.flops) == (0, 0, 256)
    assert (pool.macs, pool.flops) == (0, 4 * 4 * 4 * 3)  # 3 comparisons per 2x2 window
    assert (gap.macs, gap.flops) == (64, 64 + 4)
    assert flat.output_shape == (4,)
    assert (fc.params, fc.macs, fc.flops) == (50, 40, 90)
    assert a.params == sum(r.params for r in a.rows)
    assert a.macs == sum(r.macs for r in a.rows)
    assert a.flops == sum(r.flops for r in a.rows)
    assert a.activations == 256 * 3 + 64 + 4 + 4 + 10
    assert a.activation_bytes == 4 * a.activations
    assert a.layers == 7


def test_activations_match_the_forward_pass():
    spec = netspec.loads_spec(
        "name: act\ninput: {channels: 3, size: 12}\nstem:\n  - conv: {out: 5, stride: 2}\n  - relu\n"
        "  - maxpool: 2\nhead:\n  - flatten\n  - linear: 3\n"
    )
    a = netspec.analyze(spec)
    shapes, _ = forward_shapes(netspec.build(spec), a.input_shape)
    assert a.activations == sum(torch.Size(s).numel() for s in shapes.values())


def test_input_size_argument_changes_the_analysis():
    spec = netspec.loads_spec(
        "name: s\ninput: {channels: 3, size: 32}\nstem:\n  - conv: {out: 8, stride: 2}\n  - avgpool: global\n"
    )
    small, big = netspec.analyze(spec), netspec.analyze(spec, input_size=64)
    rect = netspec.analyze(spec, input_size=(32, 64))
    assert big.macs == 4 * small.macs and rect.macs == 2 * small.macs
    assert big.params == small.params
    assert big.rows[0].output_shape == (8, 32, 32)
    assert rect.rows[0].output_shape == (8, 16, 32)


# -- receptive field ----------------------------------------------------------------------------

RF_SPEC = """
name: rf
input: {channels: 1, size: 96}
stem:
  - conv: {out: 2, kernel: 3, bias: false}
  - conv: {out: 2, kernel: 3, dilation: 2, bias: false}
  - conv: {out: 2, kernel: 3, stride: 2, bias: false}
  - avgpool: {kernel: 2, stride: 2}
  - conv: {out: 2, kernel: 3, dilation: 3, bias: false}
  - conv: {out: 2, kernel: [5, 1], stride: [1, 3], bias: false}
  - conv: {out: 1, kernel: 1, bias: false}
"""


def test_receptive_field_recurrence_by_hand():
    a = netspec.analyze(netspec.loads_spec(RF_SPEC))
    # r <- r + (k_eff - 1) * j ; j <- j * s ; k_eff = d * (k - 1) + 1
    r, j = 1, 1
    r, j = r + (3 - 1) * j, j * 1  # conv k3: 3, 1
    assert (r, j) == (3, 1)
    r, j = r + (5 - 1) * j, j * 1  # conv k3 d2 (k_eff 5): 7, 1
    assert (r, j) == (7, 1)
    r, j = r + (3 - 1) * j, j * 2  # conv k3 s2: 9, 2
    assert (r, j) == (9, 2)
    r, j = r + (2 - 1) * j, j * 2  # avgpool k2 s2: 11, 4
    assert (r, j) == (11, 4)
    r, j = r + (7 - 1) * j, j * 1  # conv k3 d3 (k_eff 7): 35, 4
    assert (r, j) == (35, 4)
    # conv [5, 1] stride [1, 3]: height 35 + 4 * 4 = 51 (jump 4); width unchanged 35 (jump 12)
    expected_rf = [(3, 3), (7, 7), (9, 9), (11, 11), (35, 35), (51, 35), (51, 35)]
    expected_jump = [(1, 1), (1, 1), (2, 2), (4, 4), (4, 4), (4, 12), (4, 12)]
    assert [r.receptive_field for r in a.rows] == expected_rf
    assert [r.jump for r in a.rows] == expected_jump
    assert a.receptive_field == (51, 35) and a.jump == (4, 12)


def test_receptive_field_equals_the_gradient_support():
    """Reference: which input pixels one output pixel's value depends on, by autograd."""
    spec = netspec.loads_spec(RF_SPEC)
    a = netspec.analyze(spec)
    model = netspec.build(spec, seed=0).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0)  # positive weights: no cancellation hides a dependency
    x = torch.ones(1, *a.input_shape, requires_grad=True)
    y = model(x)
    h, w = y.shape[-2] // 2, y.shape[-1] // 2
    y[0, 0, h, w].backward()
    support = x.grad[0, 0].abs() > 0
    rows = support.any(1).nonzero().flatten()
    cols = support.any(0).nonzero().flatten()
    assert rows.min() > 0 and cols.min() > 0  # the window lies inside the input: no clipping
    assert rows.max() < a.input_shape[1] - 1 and cols.max() < a.input_shape[2] - 1
    assert (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)) == a.receptive_field


def test_receptive_field_through_branches_and_global_pool():
    a = netspec.analyze(
        netspec.loads_spec(
            """
name: rfb
input: {channels: 3, size: 32}
stem:
  - parallel:
      name: mix
      merge: concat
      branches:
        - [conv: {out: 4, kernel: 1}]
        - [conv: {out: 4, kernel: 5}]
        - [conv: {out: 4, kernel: 3}, conv: {out: 4, kernel: 3, dilation: 2}]
  - conv: {out: 4, kernel: 3}
head:
  - avgpool: global
  - flatten
"""
        )
    )
    rows = {r.path: r for r in a.rows}
    assert rows["mix.branch1.0"].receptive_field == (1, 1)
    assert rows["mix.branch2.0"].receptive_field == (5, 5)
    assert rows["mix.branch3.1"].receptive_field == (3 + 4, 3 + 4)
    assert rows["mix"].receptive_field == (7, 7)  # the widest branch
    assert rows["conv1"].receptive_field == (9, 9)
    assert rows["avgpool1"].receptive_field is None and a.receptive_field is None  # "global"


# -- the same spec, built, checked layer by layer ---------------------------------------------------


@pytest.mark.parametrize(
    "shortcut", ["projection", "avgpool_projection", "zero_pad", "identity_if_possible", "none"]
)
def test_shortcut_modes_build_as_analyzed(shortcut: str):
    spec = netspec.loads_spec(
        f"""
name: sc
input: {{channels: 3, size: 15}}
shortcut: {shortcut}
stem:
  - conv: {{out: 8, kernel: 3}}
stages:
  - {{block: b, depth: 2, out: 8}}
  - {{block: b, depth: 2, out: 16, stride: 2}}
blocks:
  b:
    params: {{out: int, stride: 1}}
    body:
      - conv: {{out: "${{out}}", kernel: 3, stride: "${{stride}}", norm: batchnorm, act: relu}}
      - conv: {{out: "${{out}}", kernel: 3, norm: batchnorm}}
    merge: add
    after: [relu]
"""
    )
    check_build_matches_analysis(spec)


def test_dense_and_squeeze_excite_merges_build_as_analyzed():
    spec = netspec.loads_spec(
        """
name: dense_se
input: {channels: 3, size: 12}
stem:
  - conv: {out: 8}
stages:
  - {block: dense, depth: 3}
  - se
blocks:
  dense:
    body:
      - batchnorm
      - relu
      - conv: {out: 4, kernel: 3}
    merge: concat
    shortcut: identity
  se:
    body:
      - avgpool: global
      - conv: {out: 5, kernel: 1}
      - relu
      - conv: {out: "${in_channels}", kernel: 1}
      - sigmoid
    merge: mul
    shortcut: identity
"""
    )
    a = netspec.analyze(spec)
    assert a.output_shape == (8 + 3 * 4, 12, 12)
    check_build_matches_analysis(spec, a)
