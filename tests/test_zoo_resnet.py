"""The residual family of the zoo equals references no one here wrote: torchvision's ResNets, ResNeXt
and Wide ResNet (parameters, fvcore MACs, state_dict and logits), timm's resnet50c / resnet50d
(Bag of Tricks, arXiv:1812.01187), and the figures of the papers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import pytest
import torch
import torchvision
from torch import nn

import netspec
from netspec.modules import ChannelPad

from .conftest import SPECS, fvcore_macs, n_params

IMAGENET = (3, 224, 224)
# logits are compared on smaller images: the same layers and arithmetic at a third of the cost
SMALL = (3, 128, 128)


@dataclass
class Reference:
    """A zoo spec and the torchvision model it claims to equal; each part is made on first use."""

    spec_name: str
    torchvision_name: str
    overrides: list[str] = field(default_factory=list)

    @cached_property
    def spec(self) -> netspec.Spec:
        return netspec.load_spec(SPECS / f"{self.spec_name}.yaml", self.overrides)

    @cached_property
    def analysis(self) -> netspec.Analysis:
        return netspec.analyze(self.spec)

    @cached_property
    def torchvision(self) -> nn.Module:
        torch.manual_seed(0)
        return getattr(torchvision.models, self.torchvision_name)(weights=None).eval()

    @cached_property
    def built(self) -> nn.Module:
        return netspec.build(self.spec, seed=0).eval()


# torchvision's bottleneck ResNets stride in the 3x3 (ResNet-B); our resnet101/152 are the paper's
REFERENCES = {
    r.spec_name: r
    for r in [
        Reference("resnet18", "resnet18"),
        Reference("resnet34", "resnet34"),
        Reference("resnet50_b", "resnet50"),
        Reference("resnet101", "resnet101", ["tricks=[resnet_b]"]),
        Reference("resnet152", "resnet152", ["tricks=[resnet_b]"]),
        Reference("resnext50_32x4d", "resnext50_32x4d"),
        Reference("wide_resnet50_2", "wide_resnet50_2"),
    ]
}


@pytest.fixture(scope="module", params=list(REFERENCES))
def ref(request) -> Reference:
    # module scope with one parameter per model: pytest runs each model's tests together, and
    # drops a model (hundreds of MB for resnet152) before making the next
    return replace(REFERENCES[request.param])  # a fresh copy, nothing cached yet


def test_parameter_count_equals_torchvision(ref):
    assert ref.analysis.params == n_params(ref.torchvision)


def test_macs_equal_fvcores_count_of_torchvision(ref):
    assert ref.analysis.macs == fvcore_macs(ref.torchvision, IMAGENET)


def test_output_shape_equals_torchvision(ref):
    with torch.device("meta"):  # shapes only: no weights, no arithmetic
        model = getattr(torchvision.models, ref.torchvision_name)(weights=None).eval()
        out = model(torch.empty(2, *IMAGENET))
    assert ref.analysis.input_shape == IMAGENET
    assert (2, *ref.analysis.output_shape) == tuple(out.shape) == (2, 1000)


def test_torchvision_state_dict_has_the_same_keys_and_shapes_and_loads_strictly(ref):
    ours = {k: tuple(v.shape) for k, v in ref.built.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ref.torchvision.state_dict().items()}
    assert ours == theirs
    ref.built.load_state_dict(ref.torchvision.state_dict(), strict=True)


@pytest.mark.parametrize("ref", ["resnet18", "resnet50_b", "resnext50_32x4d"], indirect=True)
def test_logits_equal_torchvision_with_its_weights_loaded(ref):
    ref.built.load_state_dict(ref.torchvision.state_dict(), strict=True)
    x = torch.randn(2, *SMALL, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ref.built(x), ref.torchvision(x), atol=1e-5, rtol=1e-5)


# -- the paper's original ResNet-50 (ResNet-A: stride in the first 1x1) -----------------------------


@pytest.fixture(scope="module")
def resnet50_a_reference() -> nn.Module:
    """torchvision's resnet50 edited into the paper's form: every downsampling bottleneck strides in
    its first 1x1 conv and not in its 3x3."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    edited = 0
    for block in model.modules():
        if isinstance(block, torchvision.models.resnet.Bottleneck) and block.conv2.stride == (2, 2):
            block.conv1.stride, block.conv2.stride = (2, 2), (1, 1)
            edited += 1
    assert edited == 3  # the first blocks of layer2, layer3, layer4
    return model


def test_original_resnet50_has_the_papers_25_6M_params_and_3_88_GMACs():
    analysis = netspec.analyze(netspec.load_spec(SPECS / "resnet50.yaml"))
    assert analysis.params == 25_557_032
    assert abs(analysis.macs - 3.88e9) < 0.005 * 3.88e9


def test_original_resnet50_macs_equal_fvcore_on_torchvision_with_the_stride_moved_to_the_1x1(
    resnet50_a_reference,
):
    analysis = netspec.analyze(netspec.load_spec(SPECS / "resnet50.yaml"))
    assert analysis.macs == fvcore_macs(resnet50_a_reference, IMAGENET)


def test_original_resnet50_computes_the_edited_torchvision_model_with_its_weights(resnet50_a_reference):
    model = netspec.build(netspec.load_spec(SPECS / "resnet50.yaml")).eval()
    model.load_state_dict(resnet50_a_reference.state_dict(), strict=True)
    x = torch.randn(2, *SMALL, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), resnet50_a_reference(x), atol=1e-5, rtol=1e-5)


# -- Bag of Tricks: ResNet-C and ResNet-D against timm ----------------------------------------------


@pytest.fixture(
    scope="module", params=[("resnet50_c", "resnet50c"), ("resnet50_d", "resnet50d")], ids=lambda p: p[0]
)
def timm_pair(request) -> tuple[netspec.Spec, nn.Module]:
    import timm

    spec_name, timm_name = request.param
    torch.manual_seed(0)
    return netspec.load_spec(SPECS / f"{spec_name}.yaml"), timm.create_model(timm_name).eval()


def test_bag_of_tricks_resnet50_params_and_macs_equal_timm_and_the_paper(timm_pair):
    spec, reference = timm_pair
    analysis = netspec.analyze(spec)
    assert analysis.params == n_params(reference) == 25_576_264
    assert analysis.macs == fvcore_macs(reference, IMAGENET)
    assert round(analysis.macs / 1e9, 2) == 4.35  # paper Table 5: 4.3G FLOPs (multiply-adds)


def test_bag_of_tricks_resnet50_computes_timms_function_given_its_weights_in_order(timm_pair):
    # timm names its modules differently (conv1.0, ..., downsample.1) but registers the same
    # tensors in the same order: its weights, given in order, make our model compute its logits
    spec, reference = timm_pair
    model = netspec.build(spec).eval()
    ours, theirs = model.state_dict(), reference.state_dict()
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]
    model.load_state_dict(dict(zip(ours, theirs.values(), strict=True)), strict=True)
    x = torch.randn(2, *SMALL, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


# -- zero-gamma ----------------------------------------------------------------------------------------


def _zero_weights(model: nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if k.endswith("weight") and not v.any()}


@pytest.mark.parametrize(
    ("spec_name", "tricks", "torchvision_name"),
    [("resnet50", "[resnet_b, zero_gamma]", "resnet50"), ("resnet18", "[zero_gamma]", "resnet18")],
    ids=["resnet50", "resnet18"],
)
def test_zero_gamma_zeroes_exactly_the_bns_torchvision_zero_init_residual_zeroes(
    spec_name, tricks, torchvision_name
):
    model = netspec.build(netspec.load_spec(SPECS / f"{spec_name}.yaml", [f"tricks={tricks}"]))
    reference = getattr(torchvision.models, torchvision_name)(weights=None, zero_init_residual=True)
    zeroed = _zero_weights(model)
    assert zeroed == _zero_weights(reference)
    # the last BN of every residual branch: bn3 of the 16 bottlenecks, bn2 of the 8 basic blocks
    assert len(zeroed) == (16 if spec_name == "resnet50" else 8)


# -- ResNet-20 for CIFAR-10 -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet20() -> tuple[netspec.Spec, nn.Module]:
    spec = netspec.load_spec(SPECS / "resnet20_cifar.yaml")
    return spec, netspec.build(spec, seed=0).eval()


def test_resnet20_cifar_has_the_papers_0_27M_params(resnet20):
    spec, model = resnet20
    # conv1 3*16*9 + BN 2*16 = 464
    # layer1: 6 convs 16*16*9 + 6 BNs 2*16 = 6 * 2336 = 14,016
    # layer2: 16*32*9 + 5 * 32*32*9 + 6 BNs 2*32 = 4,608 + 46,080 + 384 = 51,072
    # layer3: 32*64*9 + 5 * 64*64*9 + 6 BNs 2*64 = 18,432 + 184,320 + 768 = 203,520
    # fc 64*10 + 10 = 650; option-A shortcuts 0
    expected = 464 + 14_016 + 51_072 + 203_520 + 650
    assert expected == 269_722
    assert netspec.analyze(spec).params == n_params(model) == expected
    assert round(expected / 1e6, 2) == 0.27  # Table 6


def test_resnet20_cifar_maps_a_batch_of_32x32_images_to_10_logits(resnet20):
    spec, model = resnet20
    assert netspec.analyze(spec).output_shape == (10,)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet20_cifar_option_a_shortcut_subsamples_and_zero_pads_without_parameters(resnet20):
    _, model = resnet20
    shortcuts = {name: m for name, m in model.named_modules() if name.endswith("downsample")}
    assert list(shortcuts) == ["layer2.0.downsample", "layer3.0.downsample"]  # where the shape changes
    x = torch.randn(2, 16, 32, 32)
    for name, shortcut in shortcuts.items():
        assert n_params(shortcut) == 0
        assert any(isinstance(m, ChannelPad) for m in shortcut.modules()), name
    y = shortcuts["layer2.0.downsample"](x)
    assert y.shape == (2, 32, 16, 16)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert not y[:, 16:].any()


# -- the built module agrees with the static analysis, layer by layer ------------------------------


@pytest.mark.parametrize("spec_name", ["resnet18", "resnet50_d"])
def test_built_module_params_and_every_layer_output_shape_equal_the_static_analysis(spec_name):
    analysis = netspec.analyze(netspec.load_spec(SPECS / f"{spec_name}.yaml"))
    model = netspec.build(netspec.load_spec(SPECS / f"{spec_name}.yaml")).eval()
    assert n_params(model) == analysis.params
    shapes: dict[str, list[tuple[int, ...]]] = {}
    leaves = {name: m for name, m in model.named_modules() if name and not list(m.children())}
    for name, m in leaves.items():
        m.register_forward_hook(lambda _m, _i, out, name=name: shapes.setdefault(name, []).append(out.shape))
    with torch.no_grad():
        model(torch.randn(1, *IMAGENET))
    rows = [r for r in analysis.rows if r.is_layer]
    assert {name: [tuple(s[1:]) for s in seen] for name, seen in shapes.items()} == {
        r.path: [r.output_shape] for r in rows
    }
    assert {name: n_params(m) for name, m in leaves.items()} == {r.path: r.params for r in rows}
