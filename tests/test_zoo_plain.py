"""The plain (non-residual) classics of the zoo: LeNet-5, AlexNet, ZFNet, VGG-11/13/16/19 (+BN), NiN.

AlexNet and VGG are checked against torchvision (weights=None) and fvcore; the others against the
layer tables of their papers, with the expected parameter counts written out as arithmetic.

To keep the file fast on two cores, models whose weights a test does not read are built on the meta
device (shapes without storage or random init: VGG's 100M-weight fc6 takes seconds to initialise),
and only AlexNet, VGG-11, VGG-11-BN and VGG-16 run a full 224x224 forward against torchvision.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

import netspec

from .conftest import SPECS, fvcore_macs, n_params

VGGS = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
TORCHVISION = ["alexnet", *VGGS]
LOGITS_CHECKED = ["alexnet", "vgg11", "vgg11_bn", "vgg16"]
PLAIN = ["lenet5", "alexnet", "zfnet", "nin", *VGGS]
SCHEMA_LINE = "# yaml-language-server: $schema=../netspec.schema.json"


def spec(name: str, overrides: list[str] | None = None) -> netspec.Spec:
    return netspec.load_spec(SPECS / f"{name}.yaml", overrides)


def meta_torchvision(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return getattr(torchvision.models, name)(weights=None).eval()


def meta_netspec(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return netspec.build(spec(name)).eval()


def row(analysis: netspec.Analysis, path: str):
    return next(r for r in analysis.rows if r.path == path)


# -- against torchvision -------------------------------------------------------------------------


@pytest.mark.parametrize("name", TORCHVISION)
def test_params_macs_and_output_shape_equal_torchvision(name):
    analysis = netspec.analyze(spec(name))
    tv = meta_torchvision(name)
    assert analysis.params == n_params(tv)
    assert analysis.output_shape == tuple(tv(torch.empty(1, 3, 224, 224, device="meta")).shape[1:])
    tv.to_empty(device="cpu")  # fvcore runs a real forward; it counts, so zeros do as weights
    for tensor in [*tv.parameters(), *tv.buffers()]:
        tensor.detach().zero_()
    assert analysis.macs == fvcore_macs(tv, (3, 224, 224))


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_state_dict_has_the_same_keys_and_shapes_and_loads_strictly(name):
    ours, theirs = meta_netspec(name).state_dict(), meta_torchvision(name).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    meta_netspec(name).load_state_dict(theirs, strict=True)


@pytest.mark.parametrize("name", LOGITS_CHECKED)
def test_with_torchvision_weights_eval_logits_match_torchvision(name):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None).eval()
    if name.endswith("_bn"):  # give the BN layers statistics other than the identity's
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.data.uniform_(0.5, 1.5)
    ours = meta_netspec(name)  # no storage of its own: takes torchvision's tensors
    ours.load_state_dict(tv.state_dict(), strict=True, assign=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert got.shape == expected.shape == (2, 1000)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_vgg_initialises_like_torchvision():
    """Kaiming normal (fan_out) convs and N(0, 0.01) linears, zero biases, BN at 1 / 0. With the
    classifier shrunk by overrides (fc6 would otherwise draw 100M numbers); the init is per layer."""
    small = ["head.0.adaptive_avgpool.size=1", "head.2.sequential.layers.0.linear=512"]
    model = netspec.build(spec("vgg11_bn", small), seed=0)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            assert m.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)
            assert not m.bias.any()
        elif isinstance(m, torch.nn.Linear):
            assert m.weight.std().item() == pytest.approx(0.01, rel=0.1)
            assert not m.bias.any()
        elif isinstance(m, torch.nn.BatchNorm2d):
            assert (m.weight == 1).all() and not m.bias.any()


# -- netspec's own analysis against the module it builds -------------------------------------------


@pytest.mark.parametrize("name", PLAIN)
def test_built_module_has_the_analysed_params_and_every_layer_its_analysed_shapes(name):
    """Forward hooks on the leaf modules of the built network (on meta tensors: torch's own shape
    functions, no arithmetic) give each layer's input and output shape, found by module path."""
    s = spec(name)
    analysis = netspec.analyze(s)
    model = meta_netspec(name)
    assert n_params(model) == analysis.params
    seen = {}
    for path, m in model.named_modules():
        if not list(m.children()):
            m.register_forward_hook(
                lambda _m, args, out, path=path: seen.__setitem__(
                    path, (tuple(args[0].shape[1:]), tuple(out.shape[1:]))
                )
            )
    model(torch.empty(2, s.input.channels, *analysis.input_shape[1:], device="meta"))
    analysed = {r.path: (r.input_shape, r.output_shape) for r in analysis.rows if r.is_layer}
    assert seen == analysed


# -- against the papers ----------------------------------------------------------------------------


CITED = {
    "lenet5": "Gradient-Based Learning Applied to Document Recognition",
    "alexnet": "arXiv:1404.5997",
    "zfnet": "arXiv:1311.2901",
    "nin": "arXiv:1312.4400",
    **dict.fromkeys(VGGS, "arXiv:1409.1556"),
}


@pytest.mark.parametrize("name", PLAIN)
def test_spec_starts_with_the_schema_line_then_cites_its_paper_and_has_a_description(name):
    lines = (SPECS / f"{name}.yaml").read_text().splitlines()
    assert lines[0] == SCHEMA_LINE
    header = " ".join(ln for ln in lines[1:] if ln.startswith("#"))
    assert CITED[name] in header.replace("# ", "")
    assert spec(name).description


def test_lenet5_has_61706_params_with_a_fully_connected_c3_and_the_paper_fig2_map_sizes():
    """LeCun et al. 1998, Fig. 2 and Sec. II.B, with C3 connected to all six S2 maps."""
    expected = (
        (5 * 5 * 1 + 1) * 6  # C1: 6 maps, 5x5 on the 32x32 input        =    156
        + (5 * 5 * 6 + 1) * 16  # C3: 16 maps, 5x5 on all 6 S2 maps       =  2,416
        + (5 * 5 * 16 + 1) * 120  # C5: 120 maps, 5x5 on the 5x5 S4 maps  = 48,120
        + (120 + 1) * 84  # F6                                             = 10,164
        + (84 + 1) * 10  # output                                          =    850
    )
    assert expected == 61_706
    s = spec("lenet5")
    analysis = netspec.analyze(s)
    assert analysis.params == expected
    shapes = {p: row(analysis, p).output_shape for p in ("c1", "s2", "c3", "s4", "c5")}
    assert shapes == {
        "c1": (6, 28, 28),
        "s2": (6, 14, 14),
        "c3": (16, 10, 10),
        "s4": (16, 5, 5),
        "c5": (120, 1, 1),
    }
    model = netspec.build(s, seed=0).eval()
    assert n_params(model) == expected
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_vgg16_receptive_field_is_196_at_conv5_3_and_212_after_pool5():
    analysis = netspec.analyze(spec("vgg16"))
    conv5_3, pool5 = row(analysis, "features.28"), row(analysis, "features.30")
    assert (conv5_3.kind, conv5_3.output_shape) == ("conv", (512, 14, 14))
    assert (pool5.kind, pool5.output_shape) == ("maxpool", (512, 7, 7))
    assert conv5_3.receptive_field == (196, 196)
    assert pool5.receptive_field == (212, 212)


def test_zfnet_has_the_fig3_map_sizes_and_params_and_runs():
    """Zeiler & Fergus 2014, Fig. 3: maps 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 13 -> 6 (each
    conv and max pool), layers 3-5 dense (no two-GPU groups), and the parameters that follow."""
    expected = (
        (7 * 7 * 3 + 1) * 96  # layer 1: 96 filters 7x7/2          =     14,208
        + (5 * 5 * 96 + 1) * 256  # layer 2: 256 filters 5x5/2     =    614,656
        + (3 * 3 * 256 + 1) * 384  # layer 3: 384 filters 3x3      =    885,120
        + (3 * 3 * 384 + 1) * 384  # layer 4: 384 filters 3x3      =  1,327,488
        + (3 * 3 * 384 + 1) * 256  # layer 5: 256 filters 3x3      =    884,992
        + (6 * 6 * 256 + 1) * 4096  # layer 6: 4096 on 6x6x256     = 37,752,832
        + (4096 + 1) * 4096  # layer 7: 4096                       = 16,781,312
        + (4096 + 1) * 1000  # output: 1000 classes                =  4,097,000
    )
    assert expected == 62_357_608
    s = spec("zfnet")
    analysis = netspec.analyze(s)
    assert analysis.params == expected
    sizes = [r.output_shape[1:] for r in analysis.rows if r.kind in ("conv", "maxpool")]
    assert [h for h, _ in sizes] == [110, 55, 26, 13, 13, 13, 13, 6]
    assert analysis.output_shape == (1000,)
    model = netspec.build(s, seed=0).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 1000) and out.isfinite().all()


def test_nin_cifar10_has_the_released_configs_params_and_ends_in_a_global_average_pool():
    """Lin et al. 2014, Sec. 4.2, widths from the authors' released CIFAR-10 configuration."""
    mlpconv1 = (5 * 5 * 3 + 1) * 192 + (192 + 1) * 160 + (160 + 1) * 96  # 5x5 192, 1x1 160, 1x1 96
    mlpconv2 = (5 * 5 * 96 + 1) * 192 + (192 + 1) * 192 + (192 + 1) * 192  # 5x5 192, 1x1 192, 1x1 192
    mlpconv3 = (3 * 3 * 192 + 1) * 192 + (192 + 1) * 192 + (192 + 1) * 10  # 3x3 192, 1x1 192, 1x1 10
    assert (mlpconv1, mlpconv2, mlpconv3) == (60_928, 535_104, 370_954)
    expected = mlpconv1 + mlpconv2 + mlpconv3
    assert expected == 966_986
    s = spec("nin")
    analysis = netspec.analyze(s)
    assert analysis.params == expected
    maps = [row(analysis, f"mlpconv{i}").output_shape for i in (1, 2, 3)]
    assert maps == [(96, 32, 32), (192, 16, 16), (10, 8, 8)]
    assert not any(r.kind == "linear" for r in analysis.rows)  # no fully connected layer
    model = netspec.build(s, seed=0).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and out.isfinite().all()
