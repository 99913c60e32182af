"""`netspec report` of any model (netspec/foreign): torchvision, timm and a user's factory, traced on the
meta device into the same analysis a spec gets. Totals against fvcore's FlopCountAnalysis and torch's
parameter count; per module against fvcore's by_module(); the receptive field against autograd; and
the report of a zoo spec's built module against the spec's own static report, row by row."""

from __future__ import annotations

import json
import textwrap
import warnings

import pytest
import torch
import torchvision

import netspec
from netspec.foreign import analyze_module, is_model_reference, load_model

from .conftest import SPECS, fvcore_analysis, fvcore_macs, n_params, run_cli

# (name, input side): small inputs keep fvcore's jit trace quick; fvcore is compared at the same size
TORCHVISION = [
    ("resnet18", 64),
    ("resnet50", 64),
    ("mobilenet_v2", 64),
    ("googlenet", 64),
    ("densenet121", 64),
    ("vgg11", 32),
    ("squeezenet1_0", 64),
    ("inception_v3", 75),
    ("mobilenet_v3_small", 64),
    ("efficientnet_b0", 64),
    ("convnext_tiny", 64),
]


@pytest.mark.parametrize(("name", "size"), TORCHVISION)
def test_totals_equal_fvcore_and_the_parameter_count_on_torchvision_classifiers(name, size, one_thread):
    shape = (3, size, size)
    a, notes = analyze_module(load_model(f"torchvision:{name}").module, shape, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = torchvision.models.get_model(name, weights=None)
    assert notes == []  # traced by FX: nothing left out
    assert a.params == n_params(reference)
    assert a.macs == fvcore_macs(reference, shape)
    assert a.output_shape == tuple(reference.eval()(torch.randn(1, *shape)).shape[1:])


def test_every_module_row_equals_fvcore_by_module_on_timm_convnext(one_thread):
    """timm's ConvNeXt runs functions inside its blocks (permute, layer norm, layer scale): each module's
    MACs, containers included, are fvcore's for that module."""
    timm = pytest.importorskip("timm")
    shape = (3, 64, 64)
    a, notes = analyze_module(load_model("timm:convnext_tiny").module, shape, "convnext_tiny")
    reference = timm.create_model("convnext_tiny", pretrained=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_module = fvcore_analysis(reference, shape).by_module()
    modules = dict(reference.named_modules())
    rows = [r for r in a.rows if r.path in modules]
    assert notes == [] and len(rows) > 200
    assert {r.path: r.macs for r in rows} == {r.path: by_module[r.path] for r in rows}
    assert a.macs == by_module[""] and a.params == n_params(reference)
    assert {r.path: r.params for r in rows} == {r.path: n_params(modules[r.path]) for r in rows}


def test_default_input_is_the_models_own():
    weights = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1
    assert load_model("torchvision:inception_v3").input_shape == (3, *weights.transforms().crop_size * 2)
    assert load_model("torchvision:resnet18").input_shape == (3, 224, 224)


@pytest.mark.parametrize(
    ("spec", "size"), [("resnet50_d", 64), ("googlenet", 64), ("densenet121", 64), ("vgg11", 64)]
)
def test_a_zoo_specs_built_module_reports_as_the_spec_does(spec, size, one_thread):
    """Two independent routes to one report: the spec's static analysis, and a trace of the module that
    netspec builds from it. Totals and every layer run in eval mode agree: shapes, params, MACs, FLOPs,
    memory, receptive field and jump."""
    s = netspec.load_spec(SPECS / f"{spec}.yaml")
    static = netspec.analyze(s, size)
    traced, _ = analyze_module(netspec.build(s, input_size=size), static.input_shape, spec)
    for key in ("params", "macs", "flops", "activations", "receptive_field", "jump", "output_shape"):
        assert getattr(traced, key) == getattr(static, key), key
    rows = {r.path: r for r in traced.rows if r.is_layer}
    aux = [r.path for r in static.rows if r.kind == "aux"]  # training-only heads do not run in eval mode
    leaves = [r for r in static.rows if r.is_layer and not any(r.path.startswith(p + ".") for p in aux)]

    def figures(r):
        return (r.output_shape, r.params, r.macs, r.flops, r.activations, r.receptive_field, r.jump)

    assert {r.path: figures(rows[r.path]) for r in leaves} == {r.path: figures(r) for r in leaves}


BRANCHES = """\
import torch
from torch import nn

INPUT_SHAPE = (3, 64, 64)


class Branches(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.wide = nn.Conv2d(4, 4, 5, dilation=2, padding=4)
        self.narrow = nn.Conv2d(4, 4, 1)
        self.head = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.wide(x) + torch.relu(self.narrow(x)))


def build():
    return Branches()
"""


def _module(tmp_path, monkeypatch, name: str, text: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.chdir(tmp_path)


def test_a_factory_reports_its_receptive_field_as_autograd_measures_it(tmp_path, monkeypatch, one_thread):
    """`pkg.module:factory` from the command line; the receptive field is the widest path where two
    branches merge, checked against the gradient of one output pixel (positive weights, float64); the
    MACs against fvcore (the functional add and relu count nothing)."""
    _module(tmp_path, monkeypatch, "branches_w5", BRANCHES)
    result = run_cli("report", "branches_w5:build", "-f", "json", "--scaling", "none")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    import branches_w5

    model = branches_w5.build().double()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.1)
    x = torch.ones(1, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    y = model(x)
    y[0, 0, 16, 16].backward()
    rows, cols = x.grad[0].abs().sum(0).nonzero(as_tuple=True)
    extent = [int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1]
    assert report["total"]["receptive_field"] == extent == [23, 23]
    assert report["total"]["jump"] == [2, 2]
    assert report["total"]["macs"] == fvcore_macs(branches_w5.build(), (3, 64, 64))
    assert report["input_shape"] == [3, 64, 64]  # the module's INPUT_SHAPE


LOOPED = """\
from torch import nn


class Looped(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3, 3, 3, padding=1) for _ in range(3))

    def forward(self, x):
        for i in range(x.shape[1]):  # FX cannot iterate over a traced size
            x = self.convs[i](x)
        return x


def build():
    return Looped()
"""


def test_a_model_fx_cannot_trace_is_traced_with_hooks_and_says_so(tmp_path, monkeypatch, one_thread):
    _module(tmp_path, monkeypatch, "looped_w5", LOOPED)
    result = run_cli("report", "looped_w5:build", "-f", "json", "--input", "3x32x32", "--scaling", "none")
    assert result.exit_code == 0, result.output
    assert "forward hooks" in result.stderr and "looped_w5.py:10" in result.stderr
    import looped_w5

    report = json.loads(result.stdout)
    assert report["total"]["macs"] == fvcore_macs(looped_w5.build(), (3, 32, 32))
    assert report["total"]["receptive_field"] == [7, 7]
    assert [r["path"] for r in report["layers"]] == ["convs", "convs.0", "convs.1", "convs.2"]


GATED = """\
from torch import nn


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return x


def build():
    return Gated()


def broken():
    return Gated(channels=3)
"""


def test_an_untraceable_model_is_a_located_error_naming_the_operation(tmp_path, monkeypatch):
    _module(tmp_path, monkeypatch, "gated_w5", GATED)
    result = run_cli("report", "gated_w5:build")
    assert result.exit_code == 2
    assert "gated_w5.py:10:1: cannot trace the model" in result.output
    assert "Tensor.item()" in result.output and "control flow" in result.output


def test_an_exception_in_the_factory_is_reported_at_the_users_line(tmp_path, monkeypatch):
    _module(tmp_path, monkeypatch, "gated_w5b", GATED)
    result = run_cli("report", "gated_w5b:broken")
    assert result.exit_code == 2
    assert "gated_w5b.py:20:1: broken() raised TypeError" in result.output
    missing = run_cli("report", "gated_w5b:biuld")
    assert missing.exit_code == 2 and "has no function 'biuld' (did you mean 'build'?)" in missing.output
    assert "no module named 'no_such_module_w5'" in run_cli("report", "no_such_module_w5:build").output


def test_reference_and_option_mistakes_exit_2_with_a_message():
    unknown = run_cli("report", "torchvision:resnt50")
    assert unknown.exit_code == 2 and "did you mean 'resnet50'?" in unknown.output
    small = run_cli("report", "torchvision:vgg11", "--input", "16")
    assert small.exit_code == 2
    assert "(MaxPool2d) raised RuntimeError" in small.output and "input 3x16x16" in small.output
    for extra in (["--check"], ["--set", "classes=10"], ["-f", "html"]):
        result = run_cli("report", "torchvision:resnet18", *extra)
        assert result.exit_code == 2 and "is a model, not a spec" in result.output
    bad = run_cli("report", "torchvision:resnet18", "--input", "3xx")
    assert bad.exit_code == 2 and "--input '3xx' is not a size" in bad.output


def test_markdown_and_json_of_a_torchvision_model(one_thread):
    md = run_cli("report", "torchvision:resnet18", "-f", "markdown", "--depth", "0", "--scaling", "none")
    assert md.exit_code == 0, md.output
    params = f"{n_params(torchvision.models.resnet18()):,}"
    assert "| `layer1` | Sequential | 64x56x56 |" in md.stdout and f"**{params}**" in md.stdout
    js = run_cli("report", "torchvision:squeezenet1_0", "-f", "json", "--input", "64", "--scaling", "48,64")
    assert js.exit_code == 0, js.output
    report = json.loads(js.stdout)
    assert report["format"] == "netspec-report/1" and report["input_shape"] == [3, 64, 64]
    macs = [fvcore_macs(torchvision.models.squeezenet1_0(), (3, s, s)) for s in (48, 64)]
    assert [p["macs"] for p in report["scaling"]] == macs == [macs[0], report["total"]["macs"]]


def test_what_counts_as_a_model_reference(tmp_path):
    assert is_model_reference("torchvision:resnet50") and is_model_reference("timm:convnext_tiny.fb_in1k")
    assert is_model_reference("my_pkg.models:build") and is_model_reference("lenet5.py")
    assert not is_model_reference("zoo:resnet50")  # a bundled spec
    assert not is_model_reference("resnet50") and not is_model_reference("specs/resnet50.yaml")


def test_a_model_file_reports_as_its_spec(tmp_path, one_thread):
    """`netspec export` writes the spec as plain PyTorch; its report, traced, is the spec's, row by row
    (the kind names the torch class instead of the spec's kind, the section the top-level module
    instead of the spec's stem / stage / head)."""
    path = tmp_path / "lenet5_w5.py"
    assert run_cli("export", "lenet5", "-o", str(path)).exit_code == 0
    traced = json.loads(run_cli("report", str(path), "-f", "json", "--scaling", "none").stdout)
    static = json.loads(run_cli("report", "lenet5", "-f", "json", "--scaling", "none").stdout)
    for layers in (traced["layers"], static["layers"]):
        for row in layers:
            row.pop("kind"), row.pop("section")
    traced.pop("name"), static.pop("name")
    assert traced == static
