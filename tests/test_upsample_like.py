"""`upsample: {from: [x, other], size: like}` (the merge kind `upsample_like`): x upsampled (nearest) to
the H and W of another output, as torchvision's FPN does it (`F.interpolate(last_inner,
size=inner_lateral.shape[-2:], mode="nearest")`), so a pyramid runs at input sizes where each map is
not exactly half the next. Checked against torchvision's own `FeaturePyramidNetwork` (weights copied),
fvcore's MAC count, the gradient's support (the receptive field: the second input is read for its size
only), and the exported source, TorchScript and torch.export of the built module."""

from __future__ import annotations

import ast
from collections import OrderedDict

import pytest
import torch

import netspec
from netspec.errors import SpecError
from netspec.export import export_source

from .conftest import fvcore_macs
from .test_dag_export import load

pytestmark = pytest.mark.usefixtures("one_thread_module")

# torchvision's FeaturePyramidNetwork over two levels (in_channels_list=[4, 8], out_channels=6), fed by
# a stride-2 conv: its names (inner_blocks.i.0, layer_blocks.i.0) and its top-down step
TWO_LEVELS = """
name: two_level_fpn
input: {channels: 4, size: [13, 9]}
head:
  - conv: {name: c2, out: 8, kernel: 3, stride: 2}
  - conv: {name: fpn.inner_blocks.0.0, from: input, out: 6, kernel: 1}
  - conv: {name: fpn.inner_blocks.1.0, from: c2, out: 6, kernel: 1}
  - upsample: {name: top_down, from: [fpn.inner_blocks.1.0, fpn.inner_blocks.0.0], size: like}
  - add: {name: inner0, from: [fpn.inner_blocks.0.0, top_down]}
  - conv: {name: fpn.layer_blocks.0.0, from: inner0, out: 6}
  - conv: {name: fpn.layer_blocks.1.0, from: fpn.inner_blocks.1.0, out: 6}
outputs: {"0": fpn.layer_blocks.0.0, "1": fpn.layer_blocks.1.0}
"""


def spec_of(text: str, *overrides: str) -> netspec.Spec:
    return netspec.loads_spec(text, overrides=list(overrides))


@pytest.mark.parametrize("size", [[13, 9], [16, 16], [7, 30]])
def test_two_level_pyramid_equals_torchvisions_feature_pyramid_network(size):
    from torchvision.ops import FeaturePyramidNetwork

    spec = spec_of(TWO_LEVELS, f"input.size={size}")
    model = netspec.build(spec, seed=0).eval()
    ref = FeaturePyramidNetwork([4, 8], 6).eval()
    ref.load_state_dict({k[len("fpn.") :]: v for k, v in model.state_dict().items() if k.startswith("fpn.")})
    x = torch.randn(1, 4, *size)
    with torch.no_grad():
        ours = model(x)
        theirs = ref(OrderedDict([("0", x), ("1", model.c2(x))]))
    assert list(ours) == list(theirs)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], msg=key)
    assert netspec.analyze(spec).outputs == {k: tuple(v.shape[1:]) for k, v in theirs.items()}


def test_macs_equal_fvcore_at_a_size_that_halves_unevenly():
    # fvcore counts upsample_nearest2d as 1 per output element, whatever sets its size
    spec = spec_of(TWO_LEVELS)
    assert netspec.analyze(spec).macs == fvcore_macs(netspec.build(spec).eval(), (4, 13, 9))


def test_the_size_giving_input_adds_nothing_to_the_receptive_field():
    # top reads a 1x1 conv of the image; the 7x7 conv only gives its size. One output pixel's gradient
    # reaches one input pixel (nearest upsampling of a 1x1 field), as netspec's static field says.
    text = """
name: like_field
input: {channels: 1, size: 16}
head:
  - conv: {name: top, out: 1, kernel: 1, stride: 2, bias: false}
  - conv: {name: wide, from: input, out: 1, kernel: 7, bias: false}
  - upsample: {name: up, from: [top, wide], size: like}
outputs: [up, wide]
"""
    spec = spec_of(text)
    rows = {r.path: r for r in netspec.analyze(spec).rows}
    model = netspec.build(spec).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    x = torch.ones(1, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    up = model(x)["up"]
    (g,) = torch.autograd.grad(up[0, 0, 8, 8], x)
    rows_hit, cols_hit = (g[0, 0] != 0).nonzero(as_tuple=True)
    measured = (int(rows_hit.max() - rows_hit.min() + 1), int(cols_hit.max() - cols_hit.min() + 1))
    assert rows["up"].receptive_field == measured == (1, 1)
    assert rows["wide"].receptive_field == (7, 7)
    assert rows["up"].jump == (1, 1)  # stride 2, then upsampled by 2 (16 -> 8 -> 16)


def test_the_merge_kind_spelling_is_the_same_layer():
    spelled = TWO_LEVELS.replace(
        "upsample: {name: top_down, from: [fpn.inner_blocks.1.0, fpn.inner_blocks.0.0], size: like}",
        "upsample_like: {name: top_down, from: [fpn.inner_blocks.1.0, fpn.inner_blocks.0.0]}",
    )
    assert spelled != TWO_LEVELS
    a, b = netspec.analyze(spec_of(TWO_LEVELS)), netspec.analyze(spec_of(spelled))
    assert [(r.path, r.kind, r.output_shape, r.macs) for r in a.rows] == [
        (r.path, r.kind, r.output_shape, r.macs) for r in b.rows
    ]


def test_export_torchscript_and_torch_export_equal_the_built_module(tmp_path):
    spec = spec_of(TWO_LEVELS)
    model = netspec.build(spec, seed=1).eval()
    source = export_source(spec)
    # torchvision's call, over the names of the values
    calls = [ast.unparse(n) for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]
    assert (
        "torch.nn.functional.interpolate(fpn_inner_blocks_1_0, size=fpn_inner_blocks_0_0.shape[-2:], "
        "mode='nearest')"
    ) in calls
    module = load(source, "generated_like", tmp_path)
    exported = module.build_model().eval()
    exported.load_state_dict(model.state_dict())
    x = torch.randn(2, 4, 13, 9)
    y = torch.randn(1, 4, 21, 18)  # another size: scripted and exported code reads it from the tensor
    with torch.no_grad():
        ref = model(x)
        scripted = torch.jit.script(exported)
        program = torch.export.export(exported, (x,)).module()
        for got in (exported(x), scripted(x), program(x)):
            for key in ref:
                torch.testing.assert_close(got[key], ref[key], msg=key)
        for key, value in scripted(y).items():
            torch.testing.assert_close(value, model(y)[key], msg=key)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("upsample: {name: top_down, from: fpn.inner_blocks.1.0, size: like}", "give `from: [x, other]`"),
        (
            "upsample: {name: top_down, from: [fpn.inner_blocks.0.0, fpn.inner_blocks.1.0], size: like}",
            "cannot upsample 6x13x9 to the smaller size of 6x7x5",
        ),
        (
            "upsample: {name: top_down, from: [fpn.inner_blocks.1.0, fpn.inner_blocks.0.0], mode: bilinear}",
            "mode",
        ),
    ],
)
def test_misuse_is_a_located_error(item, message):
    text = TWO_LEVELS.replace(
        "upsample: {name: top_down, from: [fpn.inner_blocks.1.0, fpn.inner_blocks.0.0], size: like}", item
    )
    with pytest.raises(SpecError) as err:
        netspec.analyze(spec_of(text))
    problem = err.value.problems[0]
    assert message in str(err.value)
    assert problem.location is not None and problem.location.line == 8, problem
