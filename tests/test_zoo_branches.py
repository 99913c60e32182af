"""The zoo's multi-branch and mobile networks (GoogLeNet, Inception v3, DenseNet-121, SqueezeNet 1.0,
MobileNet v2, MobileNet v1) equal their references: torchvision's models built with weights=None and
torchvision's defaults (auxiliary classifiers included), timm's mobilenetv1_100, and the MobileNet
paper's figures. Each model is built once per module (the caches below) to keep this file fast."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

import netspec

from .conftest import SPECS, batchnorm_calibrated, fvcore_macs, n_params

# spec name -> (torchvision builder, input size)
TORCHVISION = {
    "googlenet": ("googlenet", 224),
    "inception_v3": ("inception_v3", 299),
    "densenet121": ("densenet121", 224),
    "squeezenet1_0": ("squeezenet1_0", 224),
    "mobilenet_v2": ("mobilenet_v2", 224),
}
ZOO = [*TORCHVISION, "mobilenet_v1"]
AUX_HEADS = {"googlenet": ["aux1", "aux2"], "inception_v3": ["AuxLogits"]}


pytestmark = pytest.mark.usefixtures("one_thread_module")


@functools.cache
def compiled(name: str):
    """(spec, static analysis, built module in eval mode) of a zoo spec."""
    spec = netspec.load_spec(SPECS / f"{name}.yaml")
    return spec, netspec.analyze(spec), netspec.build(spec, seed=0).eval()


@functools.cache
def torchvision_reference(name: str):
    """(params, fvcore MACs in eval mode, output shape) of torchvision's model."""
    import torchvision

    builder, size = TORCHVISION[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet/inception_v3: the init_weights FutureWarning
        model = getattr(torchvision.models, builder)(weights=None).eval()
    with torch.no_grad():
        shape = tuple(model(torch.randn(1, 3, size, size)).shape)
    return n_params(model), fvcore_macs(model, (3, size, size)), shape


@functools.cache
def traced(name: str):
    """Output shape of every leaf module that runs in an eval-mode forward, and the logits' shape."""
    _, analysis, model = compiled(name)
    shapes: dict[str, tuple[int, ...]] = {}

    def record(path: str):
        def hook(_module, _inputs, output) -> None:
            shapes[path] = tuple(output.shape[1:])

        return hook

    hooks = [
        module.register_forward_hook(record(path))
        for path, module in model.named_modules()
        if not list(module.children())
    ]
    try:
        with torch.no_grad():
            out = model(torch.randn(1, *analysis.input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes, tuple(out.shape)


def _under_aux(path: str, name: str) -> bool:
    return any(path == a or path.startswith(a + ".") for a in AUX_HEADS.get(name, []))


# -- against torchvision ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_params_equal_torchvision_including_aux_heads(name):
    _, analysis, _ = compiled(name)
    params, _, _ = torchvision_reference(name)
    assert analysis.params == params


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_macs_equal_fvcore_count_of_torchvision_in_eval_mode(name):
    _, analysis, _ = compiled(name)
    _, macs, _ = torchvision_reference(name)
    assert analysis.macs == macs


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_output_shape_equals_torchvision(name):
    spec, analysis, _ = compiled(name)
    _, _, shape = torchvision_reference(name)
    _, out = traced(name)
    assert out == shape == (1, spec.classes)
    assert analysis.output_shape == shape[1:]


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v2"])
def test_torchvision_state_dict_loads_and_gives_the_same_logits(name):
    import torchvision

    _, analysis, _ = compiled(name)
    reference = getattr(torchvision.models, name)(weights=None)
    reference = batchnorm_calibrated(reference, torch.randn(4, *analysis.input_shape))
    model = netspec.build(netspec.load_spec(SPECS / f"{name}.yaml")).eval()
    model.load_state_dict(reference.state_dict())  # strict: the same keys and shapes
    x = torch.randn(2, *analysis.input_shape)
    with torch.no_grad():
        expected = reference(x)
        assert expected.std() > 1e-3  # not two near-constant outputs (fresh BN statistics give ~1e-9)
        torch.testing.assert_close(model(x), expected)


# -- the built module against netspec's static analysis ----------------------------------------------


@pytest.mark.parametrize("name", ZOO)
def test_built_module_has_the_analysed_param_count(name):
    _, analysis, model = compiled(name)
    assert n_params(model) == analysis.params


@pytest.mark.parametrize("name", ZOO)
def test_every_layer_row_is_a_leaf_module_of_the_built_model(name):
    _, analysis, model = compiled(name)
    leaves = {path for path, m in model.named_modules() if not list(m.children())}
    assert {row.path for row in analysis.rows if row.is_layer} == leaves


@pytest.mark.parametrize("name", ZOO)
def test_every_leaf_output_shape_in_eval_mode_equals_the_static_row(name):
    _, analysis, _ = compiled(name)
    shapes, _ = traced(name)
    expected = {
        row.path: row.output_shape
        for row in analysis.rows
        if row.is_layer and not _under_aux(row.path, name)  # side heads do not run in eval mode
    }
    assert shapes == expected


# -- auxiliary classifiers ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(AUX_HEADS))
def test_train_mode_returns_logits_and_one_output_per_aux_head(name):
    spec, analysis, _ = compiled(name)
    model = netspec.build(spec, seed=0).train()
    logits, aux = model(torch.randn(2, *analysis.input_shape))
    assert logits.shape == (2, spec.classes)
    assert [tuple(a.shape) for a in aux] == [(2, spec.classes)] * len(AUX_HEADS[name])


@pytest.mark.parametrize("name", list(AUX_HEADS))
def test_aux_heads_count_params_but_no_eval_macs(name):
    _, analysis, _ = compiled(name)
    rows = {row.path: row for row in analysis.rows}
    for head in AUX_HEADS[name]:
        assert rows[head].kind == "aux"
        assert rows[head].params > 0
        assert rows[head].macs == 0


def test_googlenet_five_var_restores_the_papers_5x5_branch():
    # Table 1's (#5x5 reduce, #5x5) per Inception module: a 5x5 instead of a 3x3 adds 16 weights per pair
    table1 = [(16, 32), (32, 96), (16, 48), (24, 64), (24, 64), (32, 64), (32, 128), (32, 128), (48, 128)]
    _, three, _ = compiled("googlenet")
    five = netspec.analyze(netspec.load_spec(SPECS / "googlenet.yaml", ["vars.five=5"]))
    assert five.params - three.params == 16 * sum(r * c for r, c in table1)


# -- MobileNet v1: timm and the paper -----------------------------------------------------------------


@functools.cache
def timm_mobilenetv1():
    import timm

    return timm.create_model("mobilenetv1_100", pretrained=False).eval()


def _conv_signature(model: torch.nn.Module) -> list[tuple]:
    return [
        (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.groups)
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]


def test_mobilenet_v1_has_the_convs_of_timm_mobilenetv1_100():
    _, _, model = compiled("mobilenet_v1")
    assert _conv_signature(model) == _conv_signature(timm_mobilenetv1())


def test_mobilenet_v1_equals_timm_mobilenetv1_100_in_params_and_fvcore_macs():
    _, analysis, _ = compiled("mobilenet_v1")
    reference = timm_mobilenetv1()
    assert analysis.params == n_params(reference) == 4_231_976
    assert analysis.macs == fvcore_macs(reference, (3, 224, 224))


def test_mobilenet_v1_differs_from_timm_only_in_relu_for_relu6():
    _, _, model = compiled("mobilenet_v1")
    ours = {type(m).__name__ for m in model.modules()}
    theirs = {type(m).__name__ for m in timm_mobilenetv1().modules()}
    assert "ReLU" in ours and "ReLU6" not in ours  # the paper's activation
    assert "ReLU6" in theirs


def test_mobilenet_v1_matches_the_papers_4_2m_params_and_569m_mult_adds():
    # Table 8, "1.0 MobileNet-224": the paper counts mult-adds of convs and the FC layer only
    _, analysis, _ = compiled("mobilenet_v1")
    mult_adds = sum(row.macs for row in analysis.rows if row.is_layer and row.kind in ("conv", "linear"))
    assert round(analysis.params / 1e5) == 42
    assert round(mult_adds / 1e6) == 569
