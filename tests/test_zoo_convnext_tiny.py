"""specs/convnext_tiny.yaml equals torchvision's convnext_tiny(weights=None) (Liu et al. 2022): its
parameter count, fvcore's MACs (eval mode), output shape, module names, stochastic-depth rates and
layer-scale init, and its function: with torchvision's weights, the logits agree in eval mode.

The weights go through two of import-weights' layout rules (netspec/weights/layouts.py), because the
language has no channels-last linear and no bare block parameter (see the spec's header): torchvision's
CNBlock runs its 1x1 layers as nn.Linear on a permuted map (weight [out, in]) where the spec has 1x1
convs ([out, in, 1, 1]: `linear_as_conv1x1`), and stores layer scale as the block's own parameter
`layer_scale` where the spec has a LayerScale module (`layer_scale.gamma`: `block_parameter`). Every
other tensor keeps its torchvision name and shape, and the load is strict. The spec starts as
torchvision's does: from one seed, the same tensors (trunc_normal(std=0.02) weights, zero biases)."""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

import pytest
import torch

import netspec
from netspec.weights import import_weights, match_state_dicts, parallel_branches

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


def test_names_pair_with_torchvision_by_name_up_to_the_two_layout_rules():
    _, model = compiled()
    theirs = reference().state_dict()
    pairing = match_state_dicts(theirs, model.state_dict(), parallel_branches(model))
    assert not pairing.ambiguous and len(pairing.mapping) == len(model.state_dict()) == len(theirs)
    assert set(pairing.evidence.values()) == {"name"}
    # the rules touch exactly the 18 blocks' layer scales and their two pointwise layers
    renamed = {f"{k}.gamma": ("block_parameter",) for k in theirs if k.endswith(".layer_scale")}
    reshaped = {k: ("linear_as_conv1x1",) for k in theirs if POINTWISE.search(k)}
    assert pairing.layouts == renamed | reshaped and (len(renamed), len(reshaped)) == (18, 36)
    assert {dst: src for dst, src in pairing.mapping.items() if dst != src} == {
        f"{k}.gamma": k for k in theirs if k.endswith(".layer_scale")
    }


def test_logits_equal_torchvision_with_its_weights_in_eval_mode(tmp_path: Path):
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.convnext_tiny(weights=None).eval()
    with torch.no_grad():  # random, not initial, layer scales: the blocks' branches must matter
        for name, p in ref.named_parameters():
            if name.endswith(".layer_scale"):
                p.uniform_(0.5, 1.5)
    torch.save(ref.state_dict(), tmp_path / "convnext_tiny.pth")
    model, report = import_weights(
        SPEC, tmp_path / "convnext_tiny.pth", verify="torchvision.models.convnext_tiny"
    )
    assert report.complete and report.loaded == len(ref.state_dict())
    assert report.verification is not None and report.verification.equal
    model.eval()
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


@pytest.mark.parametrize("seed", [0, 3])
def test_seeded_init_equals_torchvisions_bit_for_bit(seed):
    """The spec's `init: {conv: {trunc_normal: {std: 0.02}}, linear: ...}` is torchvision's
    `nn.init.trunc_normal_(m.weight, std=0.02)` and zero bias, drawn in the same order from one seed."""
    import torchvision

    ours = netspec.build(netspec.load_spec(SPEC), seed=seed).state_dict()
    torch.manual_seed(seed)
    theirs = torchvision.models.convnext_tiny(weights=None).state_dict()
    pairing = match_state_dicts(theirs, ours)
    assert len(pairing.mapping) == len(ours) == len(theirs)
    different = [
        k for k, src in pairing.mapping.items() if not torch.equal(ours[k].flatten(), theirs[src].flatten())
    ]
    assert not different, different[:5]


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
