"""`specs/shufflenet_v2_x1_0.yaml` equals torchvision's `shufflenet_v2_x1_0(weights=None)` (Ma et al.
2018): the same parameter count, fvcore's MAC count of the reference in eval mode, the same output
shape, and the same module names, so the reference's state_dict loads strictly and the logits agree.
Its `vars.widths` gives the other widths torchvision ships (x0_5, x1_5, x2_0)."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

import netspec

from .conftest import SPECS, fvcore_macs, n_params

SPEC = SPECS / "shufflenet_v2_x1_0.yaml"
# torchvision's stages_out_channels per builder (torchvision/models/shufflenetv2.py)
WIDTHS = {
    "shufflenet_v2_x0_5": [24, 48, 96, 192, 1024],
    "shufflenet_v2_x1_5": [24, 176, 352, 704, 1024],
    "shufflenet_v2_x2_0": [24, 244, 488, 976, 2048],
}


pytestmark = pytest.mark.usefixtures("one_thread_module")


@functools.cache
def reference(builder: str = "shufflenet_v2_x1_0") -> torch.nn.Module:
    import torchvision

    return getattr(torchvision.models, builder)(weights=None).eval()


@functools.cache
def compiled():
    spec = netspec.load_spec(SPEC)
    return spec, netspec.analyze(spec)


def test_params_equal_torchvision():
    _, analysis = compiled()
    assert analysis.params == n_params(reference()) == 2_278_604


def test_macs_equal_fvcore_count_of_torchvision_in_eval_mode():
    _, analysis = compiled()
    assert analysis.macs == fvcore_macs(reference(), (3, 224, 224))


def test_torchvision_state_dict_loads_strictly_and_the_logits_agree():
    spec, analysis = compiled()
    model = netspec.build(spec).eval()
    ref = reference()
    model.load_state_dict(ref.state_dict())  # strict: the same keys and shapes
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert ours.shape == theirs.shape == (2, spec.classes)
    assert analysis.output_shape == tuple(theirs.shape[1:])
    torch.testing.assert_close(ours, theirs)


def test_the_stride_1_unit_keeps_the_first_half_and_transforms_the_second():
    # torchvision's stride-1 unit: cat(x1, branch2(x2)) of x.chunk(2, dim=1), then a shuffle of 2 groups;
    # trained-like BN statistics make a swapped half or a missing shuffle visible in the output
    spec, _ = compiled()
    model = netspec.build(spec).eval()
    ref = reference()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.load_state_dict(ref.state_dict())
    x = torch.randn(1, 116, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model.stage2[1](x), ref.stage2[1](x))
        torch.testing.assert_close(model.stage3[0](model.stage2[3](x)), ref.stage3[0](ref.stage2[3](x)))


@pytest.mark.parametrize("builder", list(WIDTHS))
def test_other_widths_by_vars_equal_torchvision(builder):
    widths = ", ".join(str(w) for w in WIDTHS[builder])
    analysis = netspec.analyze(netspec.load_spec(SPEC, [f"vars.widths=[{widths}]"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = reference(builder)
    assert analysis.params == n_params(ref)
    if builder == "shufflenet_v2_x0_5":  # one fvcore count is enough to show the MACs follow the widths
        assert analysis.macs == fvcore_macs(ref, (3, 224, 224))
