"""References and graphs (README "References and graphs"): `from:`, the merge kinds, dotted names and
`outputs:`. Lowering is checked for what the language promises (each item reads what it names, the
merged shapes, each mistake located at its YAML line); the built modules against torchvision's
ResNet-18 written with explicit merges, and against the arithmetic of torch itself."""

from __future__ import annotations

import copy
import textwrap

import pytest

import netspec
from netspec import SpecError
from netspec.ir import INPUT, LayerNode, SeqNode, walk
from netspec.lower import lower

from .conftest import SPECS


def spec_of(text: str) -> netspec.Spec:
    return netspec.loads_spec(textwrap.dedent(text), name="dag.yaml")


def lowered(text: str) -> SeqNode:
    return lower(spec_of(text))


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        lowered(text)
    return [p.format() for p in info.value.problems]


def node(root: SeqNode, path: str) -> LayerNode:
    found = next(n for n, _ in walk(root) if n.path == path)
    assert isinstance(found, LayerNode)
    return found


TINY = """\
name: tiny
input: {channels: 3, size: 16}
outputs: {fine: c2, both: cat}
stem:
  - conv: {out: 8, kernel: 3, padding: 1, name: c1}
  - relu: {name: r1}
stages:
  - conv: {out: 4, kernel: 3, padding: 1, name: c2}
  - conv: {out: 6, kernel: 3, stride: 2, padding: 1, name: c3, from: r1}
  - upsample: {scale: 2, name: up}
  - concat: {from: [c2, up, input], name: cat}
"""


def test_from_reads_the_named_output_and_merges_read_several():
    root = lowered(TINY)
    assert root.graph and root.outputs == {"fine": "c2", "both": "cat"}
    assert node(root, "c2").inputs == ()  # the previous output
    assert node(root, "c3").inputs == ("r1",) and node(root, "c3").in_shape == (8, 16, 16)
    cat = node(root, "cat")
    assert cat.inputs == ("c2", "up", INPUT)
    assert cat.in_shapes == ((4, 16, 16), (6, 16, 16), (3, 16, 16))
    assert cat.out_shape == (4 + 6 + 3, 16, 16)
    assert cat.cost.macs == 0 and cat.cost.params == 0


def test_a_tree_spec_is_no_graph():
    root = lower(netspec.load_spec(SPECS / "resnet50.yaml"))
    assert not any(isinstance(n, SeqNode) and n.graph for n, _ in walk(root))
    assert all(n.inputs == () for n, _ in walk(root))


def test_add_and_mul_count_one_flop_per_element_per_extra_input():
    root = lowered(
        """\
        name: merges
        input: {channels: 4, size: 8}
        outputs: [m]
        stem:
          - conv: {out: 4, kernel: 1, name: a}
          - conv: {out: 4, kernel: 1, name: b, from: input}
          - add: {from: [a, b, input], name: s}
          - avgpool: {kernel: 8, name: g}
          - mul: {from: [s, g], name: m}
        """
    )
    assert node(root, "s").cost.flops == 2 * 4 * 8 * 8
    assert node(root, "m").out_shape == (4, 8, 8) and node(root, "m").cost.flops == 4 * 8 * 8


def test_dotted_names_place_modules_under_holders():
    root = lowered(
        """\
        name: dotted
        input: {channels: 3, size: 8}
        outputs: {"0": fpn.inner.0, "1": fpn.layer.0}
        stem:
          - conv: {out: 4, kernel: 1, name: body.conv1}
          - conv: {out: 4, kernel: 1, name: fpn.inner.0, from: body.conv1}
          - conv: {out: 4, kernel: 3, padding: 1, name: fpn.layer.0}
        """
    )
    assert [c.path for c in root.children] == ["body.conv1", "fpn.inner.0", "fpn.layer.0"]
    assert node(root, "fpn.inner.0").inputs == ("body.conv1",)


C = "  - conv: {out: 4, kernel: 1"  # a conv item, its parameters to be continued
MISTAKES = [
    (f"{C}, from: nope}}\n", 6, "unknown name 'nope'"),
    (f"{C}, from: b}}\n  - relu: {{name: b}}\n", 6, "`b` is defined later, at line 7"),
    (f"{C}, name: z, from: z}}\n", 6, "`z` reads its own output"),
    (f"{C}, from: [a, input]}}\n", 6, "`conv` reads one output"),
    ("  - concat: {name: c}\n", 6, "`concat` merges several outputs"),
    (
        "  - conv: {out: 5, kernel: 1, name: b, from: input}\n  - add: {from: [a, b]}\n",
        7,
        "cannot add 4x8x8 and 5x8x8: shapes differ (inputs: a 4x8x8 at line 5, b 5x8x8 at line 6)",
    ),
    (f"{C}, from: input, name: x.__dict__}}\n", 6, "reserved by torch.nn.Module"),
    (f"{C}, from: input, name: x.class}}\n", 6, "a Python keyword"),
    (f"{C}, from: input, name: a.b}}\n", 6, "under a holder module 'a', which is a module of its own"),
    (f"{C}}}\n  - relu: {{name: b.c, from: a}}\n", 6, "`conv1` is computed but never used"),
    ("  - aux: {layers: [flatten, {linear: {out: 2}}]}\n  - relu: {from: a}\n", 6, "`aux` head cannot sit"),
]


@pytest.mark.parametrize(("body", "line", "message"), MISTAKES)
def test_reference_mistakes_are_located(body, line, message):
    text = "name: bad\ninput: {channels: 3, size: 8}\noutputs: [last]\nstem:\n"
    text += f"{C}, name: a}}\n" + body + "  - identity: {name: last}\n"
    found = problems_of(text)
    assert any(message in p and p.startswith(f"dag.yaml:{line}:") for p in found), found


def test_a_dotted_name_needs_a_graph_list():
    found = problems_of(
        "name: bad\ninput: {channels: 3, size: 8}\nstem:\n  - conv: {out: 4, kernel: 1, name: a.b}\n"
    )
    assert any("dag.yaml:4:" in p and "only a list that uses references" in p for p in found), found


def test_outputs_and_classes_are_exclusive():
    with pytest.raises(SpecError, match=r"`classes` .* or `outputs`, not both"):
        spec_of("name: bad\nclasses: 3\noutputs: [a]\nstem:\n  - conv: {out: 4, kernel: 1, name: a}\n")


def test_a_reference_cannot_reach_into_the_features_wrapper():
    found = problems_of(
        """\
        name: bad
        input: {channels: 3, size: 8}
        features: features
        stem:
          - conv: {out: 4, kernel: 1, name: a}
          - relu: {name: r}
        head:
          - conv: {out: 4, kernel: 1, from: a}
        """
    )
    assert any("dag.yaml:8:" in p and "inside the `features` wrapper" in p for p in found), found


# ResNet-18 with its basic block written out as a graph (torchvision's BasicBlock.forward, line by
# line): the shortcut reads the block's input by name, the merge is an explicit `add`
RESNET18_GRAPH = """\
name: resnet18_graph
input: {channels: 3, size: 64}
classes: 1000
stem:
  - conv: {out: 64, kernel: 7, stride: 2, padding: 3, bias: false, name: conv1}
  - batchnorm: {name: bn1}
  - relu: {name: relu}
  - maxpool: {kernel: 3, stride: 2, padding: 1, name: maxpool}
stages:
  - {block: basic, depth: 2, out: 64, name: layer1}
  - {block: basic, depth: 2, out: 128, stride: 2, name: layer2}
  - {block: basic, depth: 2, out: 256, stride: 2, name: layer3}
  - {block: basic, depth: 2, out: 512, stride: 2, name: layer4}
head:
  - avgpool: {kernel: global, name: avgpool}
  - flatten: {from: avgpool}
  - linear: {out: "${classes}", name: fc}
blocks:
  basic:
    params: {out: int, stride: 1}
    vars: {project: "${stride != 1 or in_channels != out}"}
    body:
      - conv: {out: "${out}", kernel: 3, stride: "${stride}", padding: 1, bias: false, name: conv1}
      - batchnorm: {name: bn1}
      - relu: {name: relu}
      - conv: {out: "${out}", kernel: 3, padding: 1, bias: false, name: conv2}
      - batchnorm: {name: bn2}
      - sequential:
          name: downsample
          from: input
          when: "${project}"
          layers:
            - conv: {out: "${out}", kernel: 1, stride: "${stride}", bias: false}
            - batchnorm: {}
      - add: {from: [bn2, "${'downsample' if project else 'input'}"], name: sum}
      - relu: {name: relu_out}
"""


@pytest.fixture(scope="module")
def resnet18_pair(one_thread_module):
    import torch
    import torchvision

    model = netspec.build(spec_of(RESNET18_GRAPH), seed=0).eval()
    reference = torchvision.models.resnet18(weights=None).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    return model, reference, torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_a_graph_block_equals_torchvisions_basic_block(resnet18_pair):
    import torch

    model, reference, x = resnet18_pair
    assert list(model.state_dict()) == list(reference.state_dict())  # the same keys, in the same order
    assert type(model.layer2[0]).__name__ == "basic"  # a GraphNetwork per graph block
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_graph_networks_compile(resnet18_pair, tmp_path):
    import torch

    model, _, x = resnet18_pair
    with torch.no_grad():
        expected = model(x)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), expected)
        exported = torch.export.export(model, (x,)).module()
        torch.testing.assert_close(exported(x), expected)
        # an EMA copy (timm's ModelEmaV3 deep-copies) keeps the class, its levels, and its outputs
        twin = copy.deepcopy(model)
        assert type(twin).__name__ == type(model).__name__ and twin.feature_info == model.feature_info
        torch.testing.assert_close(twin(x), expected)


@pytest.mark.parametrize("merge", ["concat", "add", "mul"])
def test_merge_kinds_keep_the_layer_contract(merge, one_thread_module):
    """Each merge's shape rule against the built module's output, its cost against fvcore (a merge
    is no multiply-add), its receptive field (the widest input's) against the input gradient."""
    import torch

    from .conftest import fvcore_macs

    spec = spec_of(
        f"""\
        name: merge_contract
        input: {{channels: 2, size: 9}}
        outputs: [m]
        stem:
          - conv: {{out: 3, kernel: 3, padding: 1, name: a}}
          - conv: {{out: 3, kernel: 1, name: b, from: input}}
          - {merge}: {{from: [a, b], name: m}}
        """
    )
    analysis = netspec.analyze(spec)
    model = netspec.build(spec, seed=0).eval()
    x = (torch.rand(1, 2, 9, 9, dtype=torch.float64) + 0.5).requires_grad_()
    for p in model.parameters():
        p.data = p.data.double().abs() + 0.1  # positive: nothing cancels in the gradient
    out = model(x)["m"]
    assert tuple(out.shape[1:]) == analysis.output_shape
    assert analysis.macs == fvcore_macs(netspec.build(spec, seed=0), (2, 9, 9))
    out[0, 0, 4, 4].backward()
    rows = torch.nonzero(x.grad[0].abs().sum(0).sum(1)).flatten()
    assert int(rows.max() - rows.min()) + 1 == analysis.receptive_field[0] == 3


def test_a_shortcut_whose_layers_are_all_left_out_is_the_identity(one_thread_module):
    import torch

    spec = spec_of(
        """\
        name: sc
        input: {channels: 4, size: 8}
        outputs: [s]
        stages:
          - {block: r, depth: 1, out: 4, name: s}
        blocks:
          r:
            params: {out: int}
            body: [{conv: {out: "${out}", name: conv1}}]
            merge: add
            shortcut:
              - conv: {out: "${out}", kernel: 1, when: "${in_channels != out}"}
        """
    )
    model = netspec.build(spec, seed=0).eval()
    assert [name for name, _ in model.named_modules()] == ["", "s", "s.0", "s.0.conv1"]
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["s"], model.s[0].conv1(x) + x)


def test_a_stage_reads_a_named_output_and_the_head_reads_a_stage():
    root = lowered(
        """\
        name: stages
        input: {channels: 3, size: 16}
        outputs: {low: layer1, both: cat}
        stem:
          - conv: {out: 8, name: conv1}
        stages:
          - {block: plain, depth: 2, out: 8, name: layer1}
          - {block: plain, depth: 1, out: 16, stride: 2, name: layer2, from: conv1}
        head:
          - upsample: {scale: 2, name: up}
          - concat: {from: [layer1, up], name: cat}
        blocks:
          plain:
            params: {out: int, stride: 1}
            body: [{conv: {out: "${out}", stride: "${stride}"}}]
        """
    )
    assert [c.name for c in root.children] == ["conv1", "layer1", "layer2", "up", "cat"]
    assert root.children[2].inputs == ("conv1",) and root.children[2].in_shape == (8, 16, 16)
    assert root.children[4].out_shape == (24, 16, 16)


def test_a_reference_to_an_item_left_out_says_so():
    found = problems_of(
        "name: bad\ninput: {channels: 3, size: 8}\noutputs: [b]\nstem:\n"
        "  - conv: {out: 4, name: a, when: false}\n  - relu: {name: b, from: a}\n"
    )
    assert any("dag.yaml:6:" in p and "`a` is left out (its `when:` is false)" in p for p in found), found


GRAPH_RESIDUAL = """\
name: graph_residual
input: {channels: 4, size: 8}
outputs: [s]
stages:
  - {block: fork, depth: 1, out: 6, stride: 2, name: s}
blocks:
  fork:   # two convs on the input, added, then the block's merge with its projection shortcut
    params: {out: int, stride: 1}
    body:
      - conv: {out: "${out}", stride: "${stride}", name: a}
      - conv: {out: "${out}", kernel: 1, stride: "${stride}", padding: 0, name: b, from: input}
      - add: {from: [a, b], name: ab}
    merge: add
    shortcut: projection
    after: [relu]
"""


def test_a_merged_block_whose_body_reads_names_merges_explicitly(one_thread_module):
    import torch

    spec = spec_of(GRAPH_RESIDUAL)
    block = lower(spec).children[0].children[0]
    assert isinstance(block, SeqNode) and block.graph
    assert [(c.name, c.inputs) for c in block.children] == [
        ("a", ()),
        ("b", (INPUT,)),
        ("ab", ("a", "b")),
        ("downsample", (INPUT,)),
        ("add1", ("ab", "downsample")),
        ("relu1", ("add1",)),
    ]
    model = netspec.build(spec, seed=0).eval()
    m = model.s[0]
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["s"], torch.relu(m.a(x) + m.b(x) + m.downsample(x)))


def test_a_groupnorm_of_single_values_is_refused_as_torch_refuses_it():
    """F.group_norm refuses groups of one value at batch 1 (its batch-size check): a located error."""
    import torch

    with pytest.raises(ValueError):
        torch.nn.GroupNorm(4, 4).eval()(torch.randn(1, 4, 1, 1))
    text = "name: gn\ninput: {channels: 4, size: 8}\nstem: [spatial_mean, {groupnorm: {groups: 4}}]\n"
    found = problems_of(text)
    assert any("dag.yaml:3:" in p and "holds a single value" in p for p in found), found


def test_a_spec_with_outputs_compiles_to_every_format(tmp_path, one_thread_module):
    """Each compiled file of a graph spec returns the same dict as the built module; ONNX names its
    outputs by the spec's keys; torch.compile takes it whole (fullgraph)."""
    import torch

    from netspec.compile import load_compiled, onnx_available, save_compiled

    spec = spec_of(TINY)
    model = netspec.build(spec, seed=0).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
        for suffix in (".pt", ".safetensors", ".ts", ".pt2"):
            loaded = load_compiled(save_compiled(spec, tmp_path / f"m{suffix}", seed=0))
            got = loaded(x)
            assert list(got) == ["fine", "both"], suffix
            torch.testing.assert_close(dict(got), expected)
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(x), expected)
    if onnx_available():
        import onnxruntime

        path = save_compiled(spec, tmp_path / "m.onnx", seed=0)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["fine", "both"]
        for got, key in zip(session.run(None, {"input": x.numpy()}), ["fine", "both"], strict=True):
            torch.testing.assert_close(torch.from_numpy(got), expected[key], atol=1e-5, rtol=1e-5)


def test_a_pool_padded_past_half_its_kernel_is_refused_as_torch_refuses_it():
    """torch compares a pool's padding with its kernel size, not the dilated extent (found by
    export's random specs): a located error, not a RuntimeError at run time."""
    import torch

    with pytest.raises(RuntimeError, match="pad should be"):
        torch.nn.MaxPool2d(3, 1, 2, 2)(torch.randn(1, 1, 9, 9))
    torch.nn.MaxPool2d(3, 1, 1, 2)(torch.randn(1, 1, 9, 9))  # padding 1 of a kernel of 3: accepted
    text = "name: mp\ninput: {channels: 1, size: 9}\nstem: [{maxpool: {kernel: 3, padding: %d, dilation: 2}}]"
    found = problems_of(text % 2)
    assert any("dag.yaml:3:" in p and "at most half the kernel (3, 3)" in p for p in found), found
    lowered(text % 1)


def test_features_of_a_graph_spec_equal_timms_features_only(one_thread_module):
    """timm's dla34 with `features_only=True` (its levels 1-5) against `features=[1, 2, 3, 4, 5]` of the
    graph spec: the same level names, channels and reductions, the same state_dict, equal outputs."""
    import timm
    import torch

    reference = timm.create_model("dla34", features_only=True, pretrained=False).eval()
    model = netspec.build(netspec.load_spec(SPECS / "dla34.yaml"), features=[1, 2, 3, 4, 5]).eval()
    for key in ("module_name", "channels", "reduction"):
        assert getattr(model.feature_info, key)() == getattr(reference.feature_info, key)(), key
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(model(x), reference(x), strict=True):
            torch.testing.assert_close(ours, theirs)
