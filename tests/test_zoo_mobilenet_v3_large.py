"""specs/mobilenet_v3_large.yaml against torchvision's mobilenet_v3_large(weights=None) (issue 13 item 6).

References no one here wrote: torchvision's model (its parameters, state_dict, forward, its published
weights' metadata) and fvcore's FlopCountAnalysis of it, layer by layer."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

import netspec

from .conftest import SPECS, fvcore_analysis, fvcore_macs, n_params

SPEC = SPECS / "mobilenet_v3_large.yaml"


pytestmark = pytest.mark.usefixtures("one_thread_module")


@functools.cache
def compiled(width: float = 1.0):
    """(spec, static analysis) of the zoo spec at a width multiplier."""
    spec = netspec.load_spec(SPEC, overrides=[f"vars.width={width}"])
    return spec, netspec.analyze(spec)


def reference(width: float = 1.0) -> torch.nn.Module:
    import torchvision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.mobilenet_v3_large(weights=None, width_mult=width).eval()


def test_params_and_fvcore_macs_equal_torchvision():
    spec, analysis = compiled()
    ref = reference()
    assert analysis.params == n_params(netspec.build(spec, seed=0)) == n_params(ref) == 5_483_032
    assert analysis.macs == fvcore_macs(ref, (3, 224, 224))


def test_every_layers_macs_equal_fvcores_count_of_the_torchvision_module_of_that_name():
    _, analysis = compiled()
    by_module = fvcore_analysis(reference(), (3, 224, 224)).by_module()
    layers = [r for r in analysis.rows if r.is_layer]
    assert {r.path: r.macs for r in layers} == {r.path: by_module.get(r.path, 0) for r in layers}


def test_equals_torchvisions_published_metadata():
    # the weights' metadata (no download): parameters, and GMACs of convolutions and linear layers
    from torchvision.models import get_model_weights

    meta = get_model_weights("mobilenet_v3_large")["IMAGENET1K_V1"].meta
    _, analysis = compiled()
    matmul = sum(r.macs for r in analysis.rows if r.is_layer and r.kind in ("conv", "linear"))
    assert analysis.params == meta["num_params"]
    assert round(matmul / 1e9, 3) == meta["_ops"]


def test_leaf_output_shapes_equal_torchvisions_modules_of_the_same_name():
    _, analysis = compiled()
    ref = reference()
    shapes: dict[str, tuple[int, ...]] = {}

    def record(path: str):
        def hook(_module, _inputs, output) -> None:
            shapes.setdefault(path, tuple(output.shape[1:]))

        return hook

    hooks = [m.register_forward_hook(record(p)) for p, m in ref.named_modules() if not list(m.children())]
    try:
        with torch.no_grad():
            out = ref(torch.randn(1, *analysis.input_shape))
    finally:
        for h in hooks:
            h.remove()
    assert tuple(out.shape[1:]) == analysis.output_shape == (1000,)
    rows = {r.path: r.output_shape for r in analysis.rows if r.is_layer}
    assert rows.pop("flatten1") == (960,)  # torchvision calls torch.flatten, no module
    assert shapes == rows


def test_state_dict_loads_strictly_with_equal_logits():
    spec, analysis = compiled()
    ref = reference()
    # batch-norm statistics of real data flowing through it (a calibration forward in training mode) and
    # affine terms away from 1/0, as in a trained network: a misplaced residual, activation (hard vs
    # plain sigmoid) or BN setting (eps 1e-3) then changes the logits
    g = torch.Generator().manual_seed(0)
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # running statistics = the calibration batch's
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.5)
    with torch.no_grad():
        ref.train()(torch.randn(4, *analysis.input_shape, generator=g))
    ref.eval()
    model = netspec.build(spec, seed=1).eval()
    assert "features.4.block.2.fc1.weight" in model.state_dict()
    model.load_state_dict(ref.state_dict())  # strict: the same keys and shapes
    x = torch.randn(2, *analysis.input_shape, generator=g)
    with torch.no_grad():
        expected = ref(x)
        out = model(x)
    assert out.shape == expected.shape == (2, spec.classes)
    assert expected.std() > 1e-3  # the comparison is not between two near-constant outputs
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("width", [0.75, 1.25])
def test_set_vars_width_gives_torchvisions_width_mult(width):
    spec, analysis = compiled(width)
    ref = reference(width)
    model = netspec.build(spec, seed=0)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    assert analysis.params == n_params(ref)
    assert analysis.macs == fvcore_macs(ref, (3, 224, 224))
