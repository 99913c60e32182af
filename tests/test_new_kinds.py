"""The layer kinds of today's CNNs (issue 13 item 3), each compared with the module torchvision or timm
uses for it: equal outputs on random inputs with equal weights, the same state_dict keys and shapes.
Stochastic depth is tested statistically (a binomial bound on dropped samples) and against
torchvision.ops.stochastic_depth under the same seed; its per-block rate against torchvision's ConvNeXt.
The shape, cost (fvcore), receptive-field and export rules of every kind are tests/test_layer_contract.py's.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import netspec
from netspec.ir import layers

from .conftest import fvcore_analysis, run_cli


def build_layer(kind: str, params: dict[str, Any], shape: tuple[int, int, int]) -> nn.Module:
    """The module netspec builds for one layer of `kind` on an input of `shape`."""
    inp = {"channels": shape[0], "size": [shape[1], shape[2]]}
    text = f"name: one\ninput: {json.dumps(inp)}\nstem: {json.dumps([{kind: params}])}\n"
    spec = netspec.loads_spec(text)
    node = next(n for n in layers(netspec.lower(spec)) if n.kind == kind)
    return netspec.build(spec, seed=0).get_submodule(node.path)


def same_weights(ours: nn.Module, reference: nn.Module) -> None:
    """Random weights in `reference`, copied into `ours` under the same keys (strict)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in reference.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
    ours.load_state_dict(reference.state_dict(), strict=True)


def state_layout(m: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


# -- normalizations --------------------------------------------------------------------------------
def test_layernorm2d_is_torchvisions_convnext_layernorm2d():
    from torchvision.models.convnext import LayerNorm2d

    reference = LayerNorm2d(16, eps=1e-6).eval()
    ours = build_layer("layernorm2d", {}, (16, 7, 7)).eval()
    assert ours.eps == 1e-6 and state_layout(ours) == state_layout(reference)
    same_weights(ours, reference)
    x = torch.randn(2, 16, 7, 7)
    assert torch.equal(ours(x), reference(x))


def test_groupnorm_is_timms_groupnorm():
    from timm.layers import GroupNorm

    reference = GroupNorm(12, num_groups=4).eval()
    ours = build_layer("groupnorm", {"groups": 4}, (12, 5, 6)).eval()
    assert state_layout(ours) == state_layout(reference)
    same_weights(ours, reference)
    x = torch.randn(3, 12, 5, 6)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-6)


def test_frozen_batchnorm_is_torchvisions_and_loads_a_batchnorm_checkpoint():
    from torchvision.ops import FrozenBatchNorm2d

    reference = FrozenBatchNorm2d(8)
    ours = build_layer("frozen_batchnorm", {}, (8, 4, 4))
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert state_layout(ours) == state_layout(reference)
    assert list(ours.parameters()) == []  # frozen: buffers only, nothing an optimizer would touch
    same_weights(ours, reference)
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(ours.train()(x), reference(x))  # frozen in training mode too
    bn = nn.BatchNorm2d(8)  # a BatchNorm2d checkpoint (with num_batches_tracked) loads strictly
    same_weights(ours, bn)


# -- layer scale and stochastic depth ---------------------------------------------------------------
def test_layer_scale_has_torchvisions_cnblock_layout_and_init():
    from torchvision.models.convnext import CNBlock

    block = CNBlock(16, layer_scale=1e-6, stochastic_depth_prob=0.0)
    ours = build_layer("layer_scale", {}, (16, 5, 5))
    (gamma,) = ours.parameters()
    assert gamma.shape == block.layer_scale.shape == (16, 1, 1)
    assert torch.equal(gamma, block.layer_scale)
    x = torch.randn(2, 16, 5, 5)
    assert torch.equal(ours(x), block.layer_scale * x)  # CNBlock: `self.layer_scale * self.block(x)`


def test_layer_scale_timm_layout_is_timms_layerscale2d():
    from timm.layers import LayerScale2d

    reference = LayerScale2d(12, init_values=0.1)
    ours = build_layer("layer_scale", {"init_value": 0.1, "layout": "timm"}, (12, 3, 3))
    assert state_layout(ours) == state_layout(reference) == {"gamma": (12,)}
    assert torch.equal(ours.state_dict()["gamma"], reference.state_dict()["gamma"])
    same_weights(ours, reference)
    x = torch.randn(2, 12, 3, 3)
    assert torch.equal(ours(x), reference(x))


def test_drop_path_drops_whole_samples_at_rate_p_and_rescales_survivors():
    p, n = 0.3, 20000
    module = build_layer("drop_path", {"p": p}, (3, 2, 2)).train()
    torch.manual_seed(0)
    x = torch.rand(n, 3, 2, 2) + 1.0  # no zeros of its own
    y = module(x)
    dropped = (y == 0).flatten(1)
    assert torch.equal(dropped.all(1), dropped.any(1))  # a sample is dropped whole or not at all
    k = int(dropped.all(1).sum())
    # binomial(n, p): 5 standard deviations (a failure by chance has probability below 1e-6)
    assert abs(k - n * p) < 5 * math.sqrt(n * p * (1 - p)), k
    kept = ~dropped.all(1)
    assert torch.equal(y[kept], x[kept] * (1.0 / (1.0 - p)))  # survivors scaled exactly by 1/(1-p)


def test_drop_path_equals_torchvision_stochastic_depth_under_the_same_seed():
    from torchvision.ops import stochastic_depth

    module = build_layer("drop_path", {"p": 0.25}, (4, 3, 3))
    x = torch.randn(64, 4, 3, 3)
    for seed in range(3):
        torch.manual_seed(seed)
        ours = module.train()(x)
        torch.manual_seed(seed)
        assert torch.equal(ours, stochastic_depth(x, 0.25, "row", training=True))
    assert module.eval()(x) is x  # eval mode: the identity
    assert build_layer("drop_path", {"p": 1.0}, (4, 3, 3)).train()(x).eq(0).all()


CNBLOCK_SPEC = """
name: drop_path_rates
input: {channels: 8, size: 8}
vars: {rate: 0.1}
stages:
  - {block: scaled, depth: 3, p: "${rate * block_index / (num_blocks - 1.0)}"}
  - {block: scaled, depth: 3, p: "${rate * block_index / (num_blocks - 1.0)}"}
  - {block: scaled, depth: 9, p: "${rate * block_index / (num_blocks - 1.0)}"}
  - {block: scaled, depth: 3, p: "${rate * block_index / (num_blocks - 1.0)}"}
blocks:
  scaled:
    params: {p: float}
    body:
      - conv: {kernel: 3, groups: depthwise}
      - layer_scale: 1e-6
      - drop_path: ${p}
    merge: add
    shortcut: identity
"""


def test_drop_path_rate_from_block_index_follows_torchvisions_convnext():
    """torchvision's ConvNeXt: block i of all 18 (3, 3, 9, 3) drops with p = 0.1 * i / 17."""
    with torch.device("meta"):  # only the structure is read: no memory, no init
        reference = torchvision.models.convnext_tiny(stochastic_depth_prob=0.1)
    expected = [m.p for m in reference.modules() if isinstance(m, torchvision.ops.StochasticDepth)]
    model = netspec.build(netspec.loads_spec(CNBLOCK_SPEC))
    got = [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"]
    assert len(got) == len(expected) == 18
    assert got == pytest.approx(expected, rel=1e-12, abs=0)


def test_block_index_counts_stages_a_foreach_generates():
    text = CNBLOCK_SPEC.replace(
        """  - {block: scaled, depth: 3, p: "${rate * block_index / (num_blocks - 1.0)}"}
  - {block: scaled, depth: 3, p: "${rate * block_index / (num_blocks - 1.0)}"}
  - {block: scaled, depth: 9, p: "${rate * block_index / (num_blocks - 1.0)}"}
  - {block: scaled, depth: 3, p: "${rate * block_index / (num_blocks - 1.0)}"}""",
        """  - {block: scaled, depth: 2, p: "${block_index / 100 + num_blocks / 1000}"}
  - {foreach: {d: [1, 3]}, block: scaled, depth: "${d}", p: "${block_index / 100 + num_blocks / 1000}"}""",
    )
    model = netspec.build(netspec.loads_spec(text))
    got = [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"]
    # 2 + 1 + 3 blocks: block_index 0..5, num_blocks 6 in every stage, generated or not
    assert got == pytest.approx([i / 100 + 6 / 1000 for i in range(6)], rel=1e-12, abs=0)


# -- channels -----------------------------------------------------------------------------------------
def test_channel_split_is_shufflenet_v2s_chunk_and_channel_shuffle_its_shuffle():
    from torchvision.models.shufflenetv2 import channel_shuffle

    x = torch.randn(2, 12, 5, 5)
    for index in (0, 1):
        split = build_layer("channel_split", {"parts": 2, "index": index}, (12, 5, 5))
        assert torch.equal(split(x), x.chunk(2, dim=1)[index])  # torchvision's InvertedResidual
    shuffle = build_layer("channel_shuffle", {"groups": 3}, (12, 5, 5))
    assert torch.equal(shuffle(x), channel_shuffle(x, 3))


# -- resampling ---------------------------------------------------------------------------------------
def test_upsample_nearest_is_fpns_interpolate():
    """torchvision.ops.FeaturePyramidNetwork: F.interpolate(inner, size=lateral's, mode='nearest')."""
    x = torch.randn(2, 4, 5, 6)
    by_scale = build_layer("upsample", {"scale": 2}, (4, 5, 6))
    by_size = build_layer("upsample", {"size": [10, 12]}, (4, 5, 6))
    expected = nn.functional.interpolate(x, size=(10, 12), mode="nearest")
    assert torch.equal(by_scale(x), expected) and torch.equal(by_size(x), expected)
    bilinear = build_layer("upsample", {"size": [9, 7], "mode": "bilinear"}, (4, 5, 6))
    expected = nn.functional.interpolate(x, size=(9, 7), mode="bilinear", align_corners=False)
    assert torch.equal(bilinear(x), expected)


@pytest.mark.parametrize(
    "params",
    [
        {"out": 6, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1},
        {"out": 4, "kernel": [4, 3], "stride": [2, 3], "padding": [1, 0], "groups": 2, "bias": False},
        {"out": 3, "kernel": 3, "stride": 2, "dilation": 2, "output_padding": 1},
        {"kernel": 5, "stride": 1, "padding": 2},
    ],
    ids=str,
)
def test_conv_transpose_shape_rule_and_macs_match_torch_and_fvcore(params):
    """(H-1)S - 2P + D(K-1) + OP + 1, and MACs as fvcore counts a transposed convolution."""
    shape = (4, 7, 6)
    inp = {"channels": shape[0], "size": [shape[1], shape[2]]}
    spec = netspec.loads_spec(
        f"name: t\ninput: {json.dumps(inp)}\nstem: {json.dumps([{'conv_transpose': params}])}\n"
    )
    node = next(n for n in layers(netspec.lower(spec)) if n.kind == "conv_transpose")
    model = netspec.build(spec).eval()
    assert isinstance(model.get_submodule(node.path), nn.ConvTranspose2d)
    assert tuple(model(torch.randn(1, *shape)).shape[1:]) == node.out_shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert node.cost.macs == int(fvcore_analysis(model, shape).total())


# -- attention and means ------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [16, 64, 256, 1024])
def test_eca_is_timms_eca_module_with_its_adaptive_kernel(channels):
    from timm.layers import EcaModule

    reference = EcaModule(channels=channels).eval()
    ours = build_layer("eca", {}, (channels, 3, 3)).eval()
    assert state_layout(ours) == state_layout(reference)  # conv.weight [1, 1, k], k from C
    same_weights(ours, reference)
    x = torch.randn(2, channels, 3, 3)
    assert torch.equal(ours(x), reference(x))


def test_eca_given_kernel():
    from timm.layers import EcaModule

    reference = EcaModule(kernel_size=5)
    assert state_layout(build_layer("eca", {"kernel": 5}, (32, 3, 3))) == state_layout(reference)


def test_spatial_mean_costs_nothing_in_fvcore_unlike_global_average_pooling():
    shape = (8, 6, 5)

    def macs(item: Any) -> int:
        inp = {"channels": shape[0], "size": [shape[1], shape[2]]}
        spec = netspec.loads_spec(f"name: m\ninput: {json.dumps(inp)}\nstem: {json.dumps([item])}\n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            counted = int(fvcore_analysis(netspec.build(spec), shape).total())
        assert netspec.analyze(spec).macs == counted
        return counted

    assert macs({"spatial_mean": {}}) == 0
    assert macs({"avgpool": "global"}) == 8 * 6 * 5
    x = torch.randn(2, *shape)
    assert torch.equal(build_layer("spatial_mean", {}, shape)(x), x.mean((2, 3), keepdim=True))
    assert torch.equal(build_layer("spatial_mean", {"keepdim": False}, shape)(x), x.mean((2, 3)))


# -- user mistakes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "channels", "message"),
    [
        ({"channel_split": {"parts": 2, "index": 2}}, 8, "index 2 is not one of the 2 parts"),
        ({"channel_split": {"parts": 3}}, 8, "divisible by parts: 8 by 3"),
        ({"groupnorm": 3}, 8, "divisible by groups: 8 by 3"),
        ({"channel_shuffle": 3}, 8, "divisible by groups: 8 by 3"),
        ({"upsample": {"scale": 2, "size": 8}}, 8, "exactly one of `scale` and `size`"),
        ({"upsample": {"scale": 2, "align_corners": True}}, 8, "bilinear only"),
        ({"conv_transpose": {"stride": 2, "output_padding": 2}}, 8, "smaller than the stride"),
        ({"eca": 4}, 8, "must be odd"),
        ({"drop_path": 1.5}, 8, "less than or equal to 1"),
        ({"layernorm2d": {"eps": 0}}, 8, "greater than 0"),
    ],
)
def test_bad_parameters_are_located_errors(item, channels, message):
    text = f"name: bad\ninput: {{channels: {channels}, size: 8}}\nstem:\n  - {json.dumps(item)}\n"
    with pytest.raises(netspec.SpecError) as info:
        netspec.analyze(netspec.loads_spec(text))
    problem = info.value.problems[0]
    assert message in problem.message
    assert problem.location is not None and problem.location.line == 4


def test_kinds_lists_the_new_kinds():
    result = run_cli("kinds")
    assert result.exit_code == 0
    for kind in (
        "layernorm2d",
        "groupnorm",
        "frozen_batchnorm",
        "layer_scale",
        "drop_path",
        "channel_split",
        "channel_shuffle",
        "upsample",
        "conv_transpose",
        "eca",
        "spatial_mean",
    ):
        assert kind in result.output
