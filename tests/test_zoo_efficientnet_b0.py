"""specs/efficientnet_b0.yaml against torchvision's efficientnet_b0..b7 (built with weights=None), fvcore's
count of them, torchvision's published weight metadata (no download) and the paper's Table 2 (Tan & Le
2019): none of which anyone here wrote."""

from __future__ import annotations

import functools
import json
import warnings

import pytest
import torch
import torchvision

import netspec

from .conftest import SPECS, batchnorm_calibrated, fvcore_macs, n_params, run_cli

SPEC = SPECS / "efficientnet_b0.yaml"


pytestmark = pytest.mark.usefixtures("one_thread_module")


def reference(variant: int = 0, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(torchvision.models, f"efficientnet_b{variant}")(weights=None, **kwargs).eval()


@functools.cache
def b0():
    spec = netspec.load_spec(SPEC)
    return spec, netspec.analyze(spec), netspec.build(spec, seed=0).eval(), reference()


def published(variant: int):
    from torchvision.models import get_model_weights

    return get_model_weights(f"efficientnet_b{variant}")["IMAGENET1K_V1"]


def matmul_macs(analysis) -> int:
    """MACs of convolutions and linear layers: what torchvision's metadata (`_ops`) and the paper count."""
    return sum(r.macs for r in analysis.rows if r.is_layer and r.kind in ("conv", "linear"))


def test_efficientnet_b0_params_and_fvcore_macs_equal_torchvision():
    _, analysis, model, ref = b0()
    assert analysis.params == n_params(model) == n_params(ref) == 5_288_548
    assert analysis.macs == fvcore_macs(ref, (3, 224, 224))


def test_efficientnet_b0_equals_the_papers_table_2():
    # Table 2: EfficientNet-B0 has 5.3M parameters and 0.39B FLOPS (multiply-adds of convs and the FC)
    _, analysis, _, _ = b0()
    assert round(analysis.params / 1e6, 1) == 5.3
    assert round(matmul_macs(analysis) / 1e9, 2) == 0.39


def test_efficientnet_b0_state_dict_loads_strictly_with_equal_logits():
    spec, analysis, _, _ = b0()
    ref = batchnorm_calibrated(reference(), torch.randn(4, *analysis.input_shape))
    model = netspec.build(spec, seed=1).eval()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert "features.2.1.block.2.fc1.weight" in ours  # torchvision's MBConv body is named `block`
    model.load_state_dict(ref.state_dict())  # strict
    x = torch.randn(2, *analysis.input_shape)
    with torch.no_grad():
        out = model(x)
        assert out.shape == ref(x).shape == (2, spec.classes)
        assert out.std() > 0.05  # logits of a size that makes their equality mean something
        torch.testing.assert_close(out, ref(x))


def test_efficientnet_b0_layer_output_shapes_equal_torchvisions():
    _, analysis, _, ref = b0()
    shapes: dict[str, tuple[int, ...]] = {}

    def record(path: str):
        def hook(_module, _inputs, output) -> None:
            shapes.setdefault(path, tuple(output.shape[1:]))

        return hook

    leaves = [(path, m) for path, m in ref.named_modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record(path)) for path, m in leaves]
    try:
        with torch.no_grad():
            ref(torch.randn(1, 3, 224, 224))
    finally:
        for h in hooks:
            h.remove()
    rows = {r.path: r.output_shape for r in analysis.rows if r.is_layer}
    # torchvision flattens with torch.flatten, a function, where the spec has a layer
    assert set(rows) - {path for path, _ in leaves} == {"flatten1"}
    assert {path: rows[path] for path in shapes} == shapes


def test_training_forward_equals_torchvisions_with_the_same_random_drops():
    # a high rate, so that whole residual branches are dropped: where and how often follows the RNG,
    # drawn block by block in the same order as torchvision, then the classifier's dropout
    rate = 0.8
    spec = netspec.load_spec(SPEC, overrides=[f"vars.stochastic_depth={rate}", "input.size=64"])
    ref = reference(stochastic_depth_prob=rate).train()
    model = netspec.build(spec, seed=0)
    model.load_state_dict(ref.state_dict())
    model.train()
    dropped = []

    def count(_module, _inputs, output) -> None:
        dropped.append(int((output.flatten(1).abs().sum(1) == 0).sum()))

    hooks = [
        m.register_forward_hook(count) for n, m in model.named_modules() if n.endswith("stochastic_depth")
    ]
    x = torch.randn(8, 3, 64, 64)
    try:
        for seed in range(2):
            torch.manual_seed(seed)
            theirs = ref(x)
            torch.manual_seed(seed)
            torch.testing.assert_close(model(x), theirs)
    finally:
        for h in hooks:
            h.remove()
    assert 0 < sum(dropped) < 8 * len(dropped)


@pytest.mark.parametrize("variant", range(8))
def test_set_variant_equals_torchvisions_published_params_and_ops(variant):
    # `_ops`: GMACs of convs and linear layers at the resolution torchvision evaluates the variant at
    weights = published(variant)
    size = weights.transforms().crop_size[0]
    spec = netspec.load_spec(SPEC, overrides=[f"vars.variant={variant}", f"input.size={size}"])
    analysis = netspec.analyze(spec)
    assert analysis.params == weights.meta["num_params"]
    assert round(matmul_macs(analysis) / 1e9, 3) == weights.meta["_ops"]


def hyperparameters(model: torch.nn.Module) -> dict[str, tuple[float | None, ...]]:
    """What the state_dict does not hold: BatchNorm's eps and momentum, dropout's rate."""
    found: dict[str, tuple[float | None, ...]] = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            found[name] = (m.eps, m.momentum)
        elif isinstance(m, torch.nn.Dropout):
            found[name] = (m.p,)
    return found


@pytest.mark.parametrize("variant", range(8))
def test_set_variant_builds_torchvisions_module_tensor_for_tensor(variant):
    # on the meta device: B7's 66M parameters cost no memory and no initialisation time
    spec = netspec.load_spec(SPEC, overrides=[f"vars.variant={variant}"])
    with torch.device("meta"):
        model = netspec.build(spec, seed=0)
        ref = reference(variant)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert hyperparameters(model) == hyperparameters(ref)
    for i in range(1, len(ref.features) - 1):  # the stages of MBConv blocks
        for j, theirs in enumerate(ref.features[i]):
            # torchvision keeps StochasticDepth(p) in every block but applies it only with the residual add
            rate = theirs.stochastic_depth.p if theirs.use_res_connect else 0.0
            assert model.features[i][j].stochastic_depth.p == pytest.approx(rate, abs=1e-12), (i, j)


@pytest.mark.parametrize("variant", [1, 5])  # B1: depths rounded up; B5: wider, BatchNorm eps 1e-3
def test_set_variant_loads_torchvisions_state_dict_with_equal_logits(variant):
    spec = netspec.load_spec(SPEC, overrides=[f"vars.variant={variant}", "input.size=64"])
    ref = batchnorm_calibrated(reference(variant), torch.randn(4, 3, 64, 64))
    model = netspec.build(spec, seed=0).eval()
    model.load_state_dict(ref.state_dict())  # strict
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert out.std() > 0.05
        torch.testing.assert_close(out, ref(x))


def test_set_variant_on_the_command_line_reports_efficientnet_b3():
    result = run_cli("report", str(SPEC), "--set", "vars.variant=3", "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"]["params"] == n_params(reference(3)) == 12_233_232
