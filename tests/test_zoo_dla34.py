"""`specs/dla34.yaml` equals timm's `dla34` (pretrained=False; Yu et al. 2018, "Deep Layer
Aggregation"): the same parameter count, fvcore's MAC count of the reference in eval mode, the same
module names (timm's nesting `level3.tree2.tree1.conv1`, written as dotted names in a graph list), so
the reference's state_dict loads strictly, and the same output at every level and in the logits;
`features_only` gives timm's feature extractor.

DLA is the zoo's first network that is not series-parallel: a tree's root concatenates the outputs of
its subtrees and of earlier levels (`children` in timm's `DlaTree.forward`), which this spec writes
with named references (`from:`) and `concat` merges."""

from __future__ import annotations

import functools

import pytest
import torch

import netspec

from .conftest import SPECS, fvcore_macs, n_params

SPEC = SPECS / "dla34.yaml"
LEVELS = ["base_layer", "level0", "level1", "level2", "level3", "level4", "level5"]

pytestmark = pytest.mark.usefixtures("one_thread_module")


@functools.cache
def reference() -> torch.nn.Module:
    import timm

    return timm.create_model("dla34", pretrained=False).eval()


@functools.cache
def compiled():
    spec = netspec.load_spec(SPEC)
    return spec, netspec.analyze(spec)


def trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Batch-norm statistics and affine terms as a trained network has them, not the fresh (0, 1, 1, 0):
    with those a swapped concatenation order or a missing shortcut shows in every output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def level_outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda m, a, out, name=name: seen.setdefault(name, out))
        for name in LEVELS
    ]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, seen


def test_params_equal_timm():
    _, analysis = compiled()
    assert analysis.params == n_params(reference()) == 15_742_104


def test_macs_equal_fvcore_count_of_timm_in_eval_mode():
    _, analysis = compiled()
    assert analysis.macs == fvcore_macs(reference(), (3, 224, 224))


def test_timm_state_dict_loads_strictly_and_every_level_and_the_logits_agree():
    spec, analysis = compiled()
    model = netspec.build(spec).eval()
    ref = trained_like(reference())
    model.load_state_dict(ref.state_dict())  # strict: the same keys and shapes
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    ours, our_levels = level_outputs(model, x)
    theirs, their_levels = level_outputs(ref, x)
    rows = {r.path: r for r in analysis.rows}
    for name in LEVELS:
        assert rows[name].output_shape == tuple(their_levels[name].shape[1:]), name
        torch.testing.assert_close(our_levels[name], their_levels[name], msg=name)
    assert ours.shape == theirs.shape == (2, spec.classes)
    assert analysis.output_shape == tuple(theirs.shape[1:])
    torch.testing.assert_close(ours, theirs)


def test_level_strides_equal_timm_feature_info():
    # timm's feature_info: the reduction (effective stride) of level0 .. level5 is 1, 2, 4, 8, 16, 32
    _, analysis = compiled()
    rows = {r.path: r for r in analysis.rows}
    for info in reference().feature_info:
        r = info["reduction"]
        assert rows[info["module"]].jump == (r, r), info["module"]
        assert rows[info["module"]].output_shape[0] == info["num_chs"], info["module"]


def test_features_only_equals_timms_features_only():
    # timm's dla34 feature extractor returns levels 1-5 (its default out_indices); netspec's, asked for
    # the same indices, names the same modules and gives the same maps with the same weights
    import timm

    theirs = trained_like(timm.create_model("dla34", pretrained=False, features_only=True)).eval()
    ours = netspec.create_model("dla34", features_only=True, out_indices=(1, 2, 3, 4, 5)).eval()
    assert ours.feature_info.module_name() == theirs.feature_info.module_name()
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            torch.testing.assert_close(a, b)
