"""The `select` kind (SKNet's selection, Li et al. 2019) against timm's `SelectiveKernel`, written out
as a spec: split input, dilated 3x3 paths, their sum, a spatial mean, fc-reduce conv + bn + relu,
fc-select conv, `select`. The built module loads timm's state_dict strictly (timm's names) and gives
timm's output; its MACs are fvcore's count of timm's module. Then the kind's own contract: shape rule
(and its located errors), cost against fvcore, receptive field against the input gradient, export,
TorchScript and torch.export, and peak activation memory against what torch's dispatcher holds."""

from __future__ import annotations

import pytest
import torch
from timm.layers.selective_kernel import SelectiveKernel

import netspec
from netspec import SpecError

from .conftest import fvcore_macs, n_params
from .graph_check import check_graph_build_matches_analysis

pytestmark = pytest.mark.usefixtures("one_thread_module")


def sk_spec(channels: int, paths: int, attn: int, size: int) -> str:
    """timm's SelectiveKernel(channels, kernel_size=[3, 5, 7...][:paths]) (keep_3x3: 3x3 kernels with
    dilations 1, 2, 3..., split_input: each path reads its part of the input channels) as a spec."""
    lines = [
        "name: selective_kernel",
        f"input: {{channels: {channels}, size: {size}}}",
        "stem:",
    ]
    for i in range(paths):
        lines += [
            f"  - channel_split: {{parts: {paths}, index: {i}, name: split{i}, from: input}}",
            f"  - conv: {{out: {channels}, kernel: 3, dilation: {i + 1}, bias: false, name: paths.{i}.conv}}",
            f"  - batchnorm: {{name: paths.{i}.bn}}",
            f"  - relu: {{name: paths.{i}.act}}",
        ]
    branches = ", ".join(f"paths.{i}.act" for i in range(paths))
    lines += [
        f"  - add: {{from: [{branches}], name: paths_sum}}",  # timm: x.sum(1) over the stacked paths
        "  - spatial_mean: {name: attn.pool}",  # timm: .mean((2, 3), keepdim=True)
        f"  - conv: {{out: {attn}, kernel: 1, bias: false, name: attn.fc_reduce}}",
        "  - batchnorm: {name: attn.bn}",
        "  - relu: {name: attn.act}",
        f"  - conv: {{out: {paths * channels}, kernel: 1, bias: false, name: attn.fc_select}}",
        f"  - select: {{from: [{branches}, attn.fc_select]}}",
    ]
    return "\n".join(lines) + "\n"


def randomized(model: torch.nn.Module) -> None:
    """Weights and batch-norm statistics far from their initial values, so that every one matters."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                values = torch.rand(t.shape, generator=gen) + 0.5 if "running_var" in name else None
                t.copy_(values if values is not None else torch.randn(t.shape, generator=gen) * 0.5)


@pytest.mark.parametrize(("channels", "paths"), [(32, 2), (48, 3)])
def test_spec_equals_timms_selective_kernel(channels, paths):
    reference = SelectiveKernel(channels, channels, kernel_size=[3, 5, 7][:paths]).eval()
    randomized(reference)
    attn = reference.attn.fc_reduce.out_channels  # timm's make_divisible(channels / 16, 8)
    spec = netspec.loads_spec(sk_spec(channels, paths, attn, size=12), "sk.yaml")
    analysis = netspec.analyze(spec)
    built = check_graph_build_matches_analysis(spec, analysis).eval()  # hooks, params and fvcore per module
    assert list(built.state_dict()) == list(reference.state_dict())
    built.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, channels, 12, 12)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(built(x), expected, rtol=1e-5, atol=1e-5)
    assert analysis.output_shape == tuple(expected.shape[1:])
    assert analysis.params == n_params(reference)
    assert analysis.macs == fvcore_macs(reference, (channels, 12, 12))
    assert analysis.receptive_field is None  # the attention sees the whole image (a spatial mean)


def test_exported_scripted_and_exported_modules_select_alike():
    spec = netspec.loads_spec(sk_spec(16, 2, 8, size=8), "sk.yaml")
    model = netspec.build(spec, seed=0).eval()
    randomized(model)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        expected = model(x)
        namespace: dict = {"__name__": "exported_sk"}
        exec(compile(netspec.export_source(spec), "exported.py", "exec"), namespace)  # netspec's own file
        exported = namespace["build_model"]().eval()
        exported.load_state_dict(model.state_dict(), strict=True)
        torch.testing.assert_close(exported(x), expected)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), expected)


def selection_spec(logits_size: str) -> str:
    """Two branches of different reach and logits per position (`1`: a 1x1 conv on the input, so the
    receptive field is the widest branch's) or global (`global`: after a spatial mean)."""
    head = (
        "  - conv: {out: 6, kernel: 1, name: logits, from: input}\n"
        if logits_size == "1"
        else "  - spatial_mean: {name: pooled, from: input}\n  - conv: {out: 6, kernel: 1, name: logits}\n"
    )
    return (
        "name: select_contract\n"
        "input: {channels: 2, size: 11}\n"
        "stem:\n"
        "  - conv: {out: 3, kernel: 3, name: a}\n"
        "  - conv: {out: 3, kernel: 5, name: b, from: input}\n"
        + head
        + "  - select: {from: [a, b, logits]}\n"
    )


@pytest.mark.parametrize("logits_size", ["1", "global"])
def test_select_keeps_the_layer_contract(logits_size):
    """Shape against the module, MACs against fvcore (softmax, stack, mul and sum are no multiply-add),
    receptive field against the gradient of one output pixel in float64 with positive weights."""
    spec = netspec.loads_spec(selection_spec(logits_size), "contract.yaml")
    analysis = netspec.analyze(spec)
    check_graph_build_matches_analysis(spec, analysis)
    model = netspec.build(spec, seed=0).eval().double()
    for p in model.parameters():
        p.data = p.data.abs() + 0.1  # positive: nothing cancels in the gradient
    x = (torch.rand(1, 2, 11, 11, dtype=torch.float64) + 0.5).requires_grad_()
    out = model(x)
    assert tuple(out.shape[1:]) == analysis.output_shape == (3, 11, 11)
    out[0, 0, 5, 5].backward()
    rows = torch.nonzero(x.grad[0].abs().sum(0).sum(1)).flatten()
    extent = int(rows.max() - rows.min()) + 1
    if logits_size == "1":
        assert analysis.receptive_field == (extent, extent) == (5, 5)
    else:
        assert analysis.receptive_field is None and extent == 11
    rows = {r.path: r for r in analysis.rows}
    select = next(r for r in analysis.rows if r.kind == "select")
    assert select.macs == 0 and select.params == 0
    assert rows[select.path].flops == 3 * 6 * (11 * 11 if logits_size == "1" else 1) + 3 * 3 * 11 * 11


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{from: [a, logits], name: s}", "M >= 2 branch outputs and then their logits, got 2"),
        ("{from: [a, c, logits], name: s}", "branch shapes differ"),
        ("{from: [a, b, a], name: s}", "must be 6x1x1 or 6x11x11"),
        ("{name: s}", "merges several outputs"),
    ],
)
def test_select_mistakes_are_located(item, message):
    """Each mistake is a SpecError at the select's line, saying what the inputs must be."""
    text = (
        "name: select_errors\n"
        "input: {channels: 2, size: 11}\n"
        "outputs: [s, a, b, c, logits]\n"
        "stem:\n"
        "  - conv: {out: 3, kernel: 3, name: a}\n"
        "  - conv: {out: 3, kernel: 5, name: b, from: input}\n"
        "  - conv: {out: 4, kernel: 5, name: c, from: input}\n"
        "  - conv: {out: 6, kernel: 1, name: logits, from: input}\n"
        f"  - select: {item}\n"
    )
    with pytest.raises(SpecError) as err:
        netspec.analyze(netspec.loads_spec(text, "bad.yaml"))
    problem = err.value.problems[0]
    assert message in problem.message, problem.message
    assert problem.location is not None and problem.location.line == 9


@pytest.mark.parametrize(
    "text",
    [sk_spec(32, 2, 8, 12), sk_spec(48, 3, 8, 12), sk_spec(16, 4, 8, 6), selection_spec("1")],
    ids=["sk2", "sk3", "sk4", "per-position"],
)
def test_peak_activation_memory_of_a_selection_is_what_torch_holds(text):
    """The peak (the stack of the M branches made while they are alive) against torch's dispatcher:
    the live float32 storages during a forward of the built module (tests/test_dag_memory.py)."""
    from .test_dag_memory import measured_peak

    spec = netspec.loads_spec(text, "sk.yaml")
    analysis = netspec.analyze(spec)
    model = netspec.build(spec, seed=0).eval()
    assert analysis.peak_activation_bytes == measured_peak(model, analysis.input_shape)
