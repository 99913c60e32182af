"""Lowering as torchvision's `_make_layer` reads: the shortcut rule as a table from the papers and the
reference implementations, the cursor lowering moves, what the IR records for the backends, and
`when:` conditions that must be booleans."""

from __future__ import annotations

import dataclasses

import pytest

import netspec
from netspec import SpecError
from netspec.ir import LayerNode, ParallelNode, ResidualNode, SeqNode, walk
from netspec.lower.cursor import Cursor, NameClashError, Namespace
from netspec.lower.shortcut import Build, Mode, plan_shortcut

from .conftest import SPECS

ID, PROJ, POOL, PAD, NO, ERR = (
    Build.IDENTITY,
    Build.PROJECTION,
    Build.AVGPOOL_PROJECTION,
    Build.ZERO_PAD,
    Build.NONE,
    Build.ERROR,
)

# (mode, merge, block input, body output) -> (what to build, stride, channels); each row cites its source
SHORTCUTS = {
    # ResNet option B (He et al. 2016, Sec. 3.3; torchvision resnet50): projection where the shape changes
    "resnet50 layer1.0: channels x4": ("projection", "add", (64, 56, 56), (256, 56, 56), (PROJ, 1, 256)),
    "resnet50 layer2.0: stride 2": ("projection", "add", (256, 56, 56), (512, 28, 28), (PROJ, 2, 512)),
    "resnet50 layer2.1: same shape": ("projection", "add", (512, 28, 28), (512, 28, 28), (ID, 1, 0)),
    "resnet18 layer2.0: basic block": ("projection", "add", (64, 56, 56), (128, 28, 28), (PROJ, 2, 128)),
    # ResNet option A (He et al. 2016, Sec. 4.2, the CIFAR ResNets): subsample, pad channels with zeros
    "resnet20 stage 2: option A": ("zero_pad", "add", (16, 32, 32), (32, 16, 16), (PAD, 2, 32)),
    "resnet20 stage 1: option A, same": ("zero_pad", "add", (16, 32, 32), (16, 32, 32), (ID, 1, 0)),
    # ResNet-D (He et al. 2018, Fig. 2c; timm resnet50d `downsample_avg`): pool 2x2, then a 1x1 conv;
    # without downsampling timm's pool is nn.Identity: a plain projection
    "resnet50d layer2.0: pool then conv": (
        "avgpool_projection",
        "add",
        (256, 56, 56),
        (512, 28, 28),
        (POOL, 2, 512),
    ),
    "resnet50d layer1.0: nothing to pool": (
        "avgpool_projection",
        "add",
        (64, 56, 56),
        (256, 56, 56),
        (PROJ, 1, 256),
    ),
    # MobileNet v2 (Sandler et al. 2018, Fig. 3b; torchvision `use_res_connect = stride == 1 and inp == oup`)
    "mobilenet_v2 repeat: residual": ("identity_if_possible", "add", (24, 56, 56), (24, 56, 56), (ID, 1, 0)),
    "mobilenet_v2 stride 2: no residual": (
        "identity_if_possible",
        "add",
        (16, 112, 112),
        (24, 56, 56),
        (NO, 1, 0),
    ),
    "mobilenet_v2 widening: no residual": (
        "identity_if_possible",
        "add",
        (64, 14, 14),
        (96, 14, 14),
        (NO, 1, 0),
    ),
    # DenseNet (Huang et al. 2017, Eq. 2): the input concatenated with the new features
    "densenet dense layer: concat": ("identity", "concat", (64, 56, 56), (32, 56, 56), (ID, 1, 0)),
    # squeeze-and-excitation (Hu et al. 2018, Eq. 4): the input scaled by per-channel weights
    "squeeze-excitation: scale": ("identity", "mul", (64, 56, 56), (64, 1, 1), (ID, 1, 0)),
    # identity shortcuts need equal dimensions (He et al. 2016, Eq. 1)
    "identity across a shape change": ("identity", "add", (64, 56, 56), (128, 28, 28), (ERR, 1, 0)),
    "no shortcut at all": ("none", "add", (64, 56, 56), (128, 28, 28), (NO, 1, 0)),
    "projection of vectors": ("projection", "add", (512,), (256,), (ERR, 1, 0)),
    "body upsamples": ("projection", "add", (64, 28, 28), (64, 56, 56), (ERR, 1, 0)),
    "strides differ per axis": ("projection", "add", (64, 56, 56), (128, 28, 56), (ERR, 1, 0)),
    "option A cannot drop channels": ("zero_pad", "add", (64, 56, 56), (32, 28, 28), (ERR, 1, 0)),
    "no stride gives the body's size": ("projection", "add", (64, 10, 10), (64, 6, 6), (ERR, 1, 0)),
}


@pytest.mark.parametrize("row", SHORTCUTS.values(), ids=SHORTCUTS.keys())
def test_shortcut_rule(row):
    mode, merge, x, y, (build, stride, out) = row
    plan = plan_shortcut(mode, merge, x, y)
    assert plan.build == build, plan.reason
    if build in (Build.PROJECTION, Build.AVGPOOL_PROJECTION, Build.ZERO_PAD):
        assert (plan.stride, plan.out) == (stride, out)
    assert bool(plan.reason) == (build == Build.ERROR)


def test_shortcut_modes_are_the_spec_languages():
    from typing import get_args

    from netspec.spec import ShortcutMode

    assert {m.value for m in Mode} == set(get_args(ShortcutMode))


def _meta(build):
    """A reference model on the meta device: shapes propagate, no memory or initialisation is spent."""
    import torch

    with torch.device("meta"):
        return build()


def _blocks_with_shapes(model, blocks, size: int):
    """(block, input shape, output shape) of each block, from one forward pass (no batch dimension)."""
    import torch

    seen = []
    hooks = [
        b.register_forward_hook(lambda m, i, o: seen.append((m, i[0].shape[1:], o.shape[1:]))) for b in blocks
    ]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size, device="meta"))
    for h in hooks:
        h.remove()
    return [(m, tuple(x), tuple(y)) for m, x, y in seen]


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_projection_rule_equals_torchvision_resnet(arch: str):
    """Every torchvision block has a downsample exactly where the rule builds a projection, with its
    stride and width; elsewhere the rule gives the identity (torchvision's `downsample is None`)."""
    import torchvision
    from torchvision.models.resnet import BasicBlock, Bottleneck

    model = _meta(lambda: getattr(torchvision.models, arch)(weights=None))
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock | Bottleneck)]
    for block, x, y in _blocks_with_shapes(model, blocks, 64):
        plan = plan_shortcut("projection", "add", x, y)
        if block.downsample is None:
            assert plan.build == Build.IDENTITY
        else:
            conv = block.downsample[0]
            assert plan.build == Build.PROJECTION
            assert (plan.stride, plan.out) == (conv.stride[0], conv.out_channels)


def test_avgpool_projection_rule_equals_timm_resnet50d():
    """timm's resnet50d (ResNet-D): an average pool before the 1x1 conv where the block downsamples."""
    timm = pytest.importorskip("timm")
    from torch import nn

    model = _meta(lambda: timm.create_model("resnet50d", pretrained=False))
    blocks = [m for m in model.modules() if type(m).__name__ == "Bottleneck"]
    for block, x, y in _blocks_with_shapes(model, blocks, 64):
        plan = plan_shortcut("avgpool_projection", "add", x, y)
        if block.downsample is None:
            assert plan.build == Build.IDENTITY
            continue
        pool, conv = block.downsample[0], block.downsample[1]
        pooled = isinstance(pool, nn.AvgPool2d)
        assert plan.build == (Build.AVGPOOL_PROJECTION if pooled else Build.PROJECTION)
        assert plan.out == conv.out_channels
        assert plan.stride == (pool.stride if pooled else conv.stride[0])


def test_identity_if_possible_equals_torchvision_mobilenet_v2():
    import torchvision
    from torchvision.models.mobilenetv2 import InvertedResidual

    model = _meta(lambda: torchvision.models.mobilenet_v2(weights=None))
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    found = _blocks_with_shapes(model, blocks, 64)
    assert len(found) == 17
    for block, x, y in found:
        plan = plan_shortcut("identity_if_possible", "add", x, y)
        assert plan.build == (Build.IDENTITY if block.use_res_connect else Build.NONE)


# -- the cursor -------------------------------------------------------------------------------------
def test_cursor_is_immutable_and_moves_make_new_cursors():
    top = Cursor((3, 8, 8), {"classes": 10}, ("stages", 0), "layer1", "", Namespace("named"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        top.shape = (1,)  # type: ignore[misc]  # the point of the test
    stage = top.child("layer1")
    block = stage.child("0", style="named").at("body", 2).with_shape((64, 4, 4))
    # torchvision's key for the first conv of the first block of layer1
    assert block.path("conv1") == "layer1.0.conv1"
    assert block.src == ("stages", 0, "body", 2) and block.shape == (64, 4, 4)
    assert (top.parent, top.src, top.shape) == ("", ("stages", 0), (3, 8, 8))  # unchanged


def test_siblings_share_their_parents_names_and_children_get_their_own():
    top = Cursor((3, 8, 8), {}, (), "stem")
    assert top.names.assign("conv", None) == "conv1"
    assert top.at("x").names.assign("conv", None) == "conv2"  # the same module, further on
    numbered = top.child("features")
    assert [numbered.names.assign("conv", None) for _ in range(2)] == ["0", "1"]
    with pytest.raises(NameClashError):
        top.names.assign("relu", "conv1")


# -- what the IR records for the backends -----------------------------------------------------------
def _ir(text: str, **kw):
    return netspec.lower(netspec.loads_spec(text), **kw)


def _by_path(root):
    return {n.path: n for n, _ in walk(root)}


SMALL = """
name: t
input: {channels: 3, size: 8}
vars: {width: 8}
defaults: {conv: {norm: batchnorm, act: relu}}
stem:
  - conv: {out: "${width}", kernel: "${ 3 }", stride: 1, name: c}
  - conv: "${width * 2}"
  - plain: {w: "${width}"}
  - residual: {body: [conv: {act: none}], after: [relu]}
stages:
  - {block: plain, depth: 3, w: 16, name: layer1}
blocks:
  plain:
    params: {w: int}
    body:
      - conv: {out: "${w}", stride: 1}
"""


def test_layer_bindings_name_the_variable_a_value_was_written_as():
    nodes = _by_path(_ir(SMALL))
    c = nodes["c"]
    assert isinstance(c, LayerNode)
    # exactly `${name}` (spaces allowed) binds; an expression or a plain value does not
    assert c.bindings == {"out": "width"}
    assert nodes["conv1"].bindings == {}  # `conv: "${width * 2}"`: an expression
    assert nodes["plain1.conv1"].bindings == {"out": "w"}
    # conv's norm/act sugar: the BN and ReLU it adds bind nothing
    assert nodes["bn1"].bindings == {} and nodes["relu1"].bindings == {}


def test_block_nodes_record_inline_composites_and_stage_repeats():
    nodes = _by_path(_ir(SMALL))
    assert isinstance(nodes["residual1"], ResidualNode) and nodes["residual1"].inline
    assert isinstance(nodes["plain1"], SeqNode) and not nodes["plain1"].inline
    assert nodes["plain1"].repeat is None  # used as a layer, not by a stage
    assert [nodes[f"layer1.{i}"].repeat for i in range(3)] == [(0, 3), (1, 3), (2, 3)]


def test_stage_repeats_equal_torchvision_resnet50_layers():
    import torchvision

    tv = _meta(lambda: torchvision.models.resnet50(weights=None))
    root = netspec.lower(netspec.load_spec(SPECS / "resnet50.yaml"))
    nodes = _by_path(root)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        depth = len(getattr(tv, name))
        assert [nodes[f"{name}.{i}"].repeat for i in range(depth)] == [(i, depth) for i in range(depth)]


def test_layer_init_is_the_layers_own_else_the_specs_default_for_its_kind():
    text = """
name: t
input: {channels: 3, size: 8}
init: {conv: xavier_uniform, linear: normal}
stem: [conv: {out: 4, name: c, init: zeros}, conv: {out: 4, norm: batchnorm}]
head: [flatten, linear: 4]
"""
    nodes = _by_path(_ir(text))
    assert nodes["c"].init == "zeros"
    assert nodes["conv1"].init == "xavier_uniform"
    assert nodes["fc1"].init == "normal"
    assert nodes["bn1"].init == "default"  # no `init:` field for BN: PyTorch's own (gamma 1, beta 0)


def test_parallel_blocks_are_block_nodes():
    text = """
name: t
input: {channels: 3, size: 8}
stem:
  - parallel: {branches: [[conv: 4], [conv: 6]], merge: concat}
"""
    node = _ir(text).children[0]
    assert isinstance(node, ParallelNode) and node.inline and node.out_shape == (10, 8, 8)


# -- `when:` is a boolean -----------------------------------------------------------------------------
def _when(value: str) -> str:
    head = "name: t\ninput: {channels: 3, size: 8}\nvars: {t: 2}\n"
    return head + f"stem:\n  - conv: {{out: 4, when: {value}}}\n"


@pytest.mark.parametrize("value", ["'false'", "[0]", "1", "0", "'${t}'", "null"])
def test_a_condition_that_is_not_a_boolean_is_a_located_error(value: str):
    with pytest.raises(SpecError) as info:
        netspec.analyze(netspec.loads_spec(_when(value)))
    (problem,) = info.value.problems
    assert "a condition must be true or false" in problem.message
    assert problem.path == ("stem", 0, "conv", "when")
    assert (problem.location.line, problem.location.col) == (5, 26)


@pytest.mark.parametrize(
    ("value", "layers"), [("false", 0), ("true", 1), ("'${t > 1}'", 1), ("'${t != 2}'", 0)]
)
def test_a_boolean_condition_keeps_or_drops_the_item(value: str, layers: int):
    a = netspec.analyze(netspec.loads_spec(_when(value)))
    assert sum(r.is_layer for r in a.rows) == layers
