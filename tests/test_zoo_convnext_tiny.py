"""specs/convnext_tiny.yaml equals torchvision's convnext_tiny(weights=None) (Liu et al. 2022): its
parameter count, fvcore's MACs (eval mode), output shape, module names, stochastic-depth rates and
layer-scale init, and its function: with torchvision's weights, the logits agree in eval mode.

The weights go through two layout rules, because the language has no channels-last linear and no bare
block parameter (see the spec's header): torchvision's CNBlock runs its 1x1 layers as nn.Linear on a
permuted map (weight [out, in]) where the spec has 1x1 convs ([out, in, 1, 1]), and stores layer scale
as the block's own parameter `layer_scale` where the spec has a LayerScale module (`layer_scale.gamma`).
Every other tensor keeps its torchvision name and shape, and the load is strict."""

from __future__ import annotations

import functools
import re
import warnings

import pytest
import torch

import netspec

from .conftest import SPECS, fvcore_macs, n_params

SPEC = SPECS / "convnext_tiny.yaml"
POINTWISE = re.compile(r"\.block\.[35]\.weight$")  # CNBlock's two nn.Linear layers


pytestmark = pytest.mark.usefixtures("one_thread_module")


@functools.cache
def compiled():
    """(static analysis, built module in eval mode) of the spec."""
    spec = netspec.load_spec(SPEC)
    return netspec.analyze(spec), netspec.build(spec, seed=0).eval()


@functools.cache
def reference():
    import torchvision

    return torchvision.models.convnext_tiny(weights=None).eval()


def as_spec_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's ConvNeXt state_dict under the spec's names and layouts (the two rules above)."""
    out = {}
    for key, tensor in state.items():
        if key.endswith(".layer_scale"):
            out[f"{key}.gamma"] = tensor
        elif POINTWISE.search(key):
            out[key] = tensor[:, :, None, None]
        else:
            out[key] = tensor
    return out


def test_params_equal_torchvision():
    analysis, model = compiled()
    assert analysis.params == n_params(model) == n_params(reference()) == 28_589_128


def test_macs_equal_fvcores_count_of_torchvision():
    analysis, _ = compiled()
    assert analysis.macs == fvcore_macs(reference(), (3, 224, 224))


def test_params_and_matmul_gmacs_equal_torchvisions_published_metadata():
    # the weights' metadata (no download): its `_ops` counts convolutions and linear layers only
    from torchvision.models import ConvNeXt_Tiny_Weights

    meta = ConvNeXt_Tiny_Weights.IMAGENET1K_V1.meta
    analysis, _ = compiled()
    matmul = sum(r.macs for r in analysis.rows if r.is_layer and r.kind in ("conv", "linear"))
    assert analysis.params == meta["num_params"]
    assert round(matmul / 1e9, 3) == meta["_ops"]


def test_output_shape_equals_torchvision():
    analysis, model = compiled()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert tuple(model(x).shape) == tuple(reference()(x).shape) == (2, *analysis.output_shape)


def test_names_and_shapes_equal_torchvision_up_to_the_two_layout_rules():
    _, model = compiled()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in as_spec_layout(reference().state_dict()).items()}
    assert ours == theirs
    # the rules touch exactly the 18 blocks' layer scales and their two pointwise layers
    renamed = [k for k in reference().state_dict() if k.endswith(".layer_scale")]
    reshaped = [k for k in reference().state_dict() if POINTWISE.search(k)]
    assert (len(renamed), len(reshaped)) == (18, 36)


def test_logits_equal_torchvision_with_its_weights_in_eval_mode():
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.convnext_tiny(weights=None).eval()
    with torch.no_grad():  # random, not initial, layer scales: the blocks' branches must matter
        for name, p in ref.named_parameters():
            if name.endswith(".layer_scale"):
                p.uniform_(0.5, 1.5)
    model = netspec.build(netspec.load_spec(SPEC), seed=1).eval()
    model.load_state_dict(as_spec_layout(ref.state_dict()), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = ref(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert expected.std() > 0.1  # the comparison is not between two near-constant outputs


def test_stochastic_depth_rates_equal_torchvision():
    """0.1 * block_index / (num_blocks - 1), torchvision's stochastic_depth_prob for convnext_tiny."""
    _, model = compiled()

    def rates(m: torch.nn.Module) -> list[tuple[str, float]]:
        return [(n, float(s.p)) for n, s in m.named_modules() if n.endswith("stochastic_depth")]

    ours, theirs = rates(model), rates(reference())
    assert [n for n, _ in ours] == [n for n, _ in theirs]
    assert [p for _, p in ours] == pytest.approx([p for _, p in theirs], rel=1e-12, abs=0)
    assert theirs[-1][1] == pytest.approx(0.1)


def test_layer_scale_starts_as_torchvisions():
    _, model = compiled()
    theirs = {k: v for k, v in reference().state_dict().items() if k.endswith(".layer_scale")}
    for key, gamma in theirs.items():
        torch.testing.assert_close(model.get_parameter(f"{key}.gamma"), gamma, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("convnext_small", ["vars.depths=[3,3,27,3]"]),
        ("convnext_base", ["vars.depths=[3,3,27,3]", "vars.widths=[128,256,512,1024]"]),
    ],
)
def test_set_vars_gives_the_larger_torchvision_convnexts(name, overrides):
    import torchvision

    analysis = netspec.analyze(netspec.load_spec(SPEC, overrides=overrides))
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(torchvision.models, name)(weights=None)
    assert analysis.params == n_params(ref)
