"""import-weights' layout rules (netspec/weights/layouts.py): a tensor stored in another layout than the
spec's parameter is read through a named rule, only where names and shapes pair it as they pair any
tensor (never across parallel branches, never one of two readings), and every such tensor is reported
under its rule. References: torchvision's convnext_tiny (weights=None), timm's ConvNeXt
(pretrained=False), and small channels-last torch modules written here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import netspec
from netspec.errors import SpecError
from netspec.weights import import_weights, match_state_dicts

from .conftest import SPECS, run_cli

pytestmark = pytest.mark.usefixtures("one_thread_module")

SPEC = SPECS / "convnext_tiny.yaml"
SMALL = ["vars.depths=[1,1,1,1]", "input.size=64"]  # one block per stage: the same rules, 18x less work
TIMM_LAYOUT = "blocks.cnblock.body.1.layer_scale.layout=timm"  # the spec's layer scale as a vector [C]


def scaled(model: nn.Module, suffix: str) -> nn.Module:
    """`model` in eval mode with random layer scales (the initial 1e-6 would hide every block's branch)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(suffix):
                p.uniform_(0.5, 1.5)
    return model.eval()


def saved(model: nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def assert_same_logits(model: nn.Module, reference: nn.Module, size: int) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference.eval()(x)
        torch.testing.assert_close(model.eval()(x), expected, rtol=1e-5, atol=1e-5)
    assert expected.std() > 0.1  # not two near-constant outputs


def test_torchvision_convnext_tiny_imports_through_two_named_rules_with_equal_logits(tmp_path: Path):
    import torchvision

    ref = scaled(torchvision.models.convnext_tiny(weights=None), ".layer_scale")
    ckpt = saved(ref, tmp_path / "convnext_tiny.pth")
    out = tmp_path / "convnext_tiny.pt"
    result = run_cli(
        "import-weights", str(SPEC), str(ckpt), "-o", str(out), "--verify", "torchvision.models.convnext_tiny"
    )
    assert result.exit_code == 0, result.output
    assert "loaded 182 tensors" in result.output
    assert "layout rule linear_as_conv1x1: 36 tensors" in result.output
    assert "layout rule block_parameter: 18 tensors" in result.output
    assert "features.1.0.layer_scale -> features.1.0.layer_scale.gamma (block_parameter)" in result.output
    assert "logits equal torchvision.models.convnext_tiny's" in result.output
    from netspec.compile import load_compiled

    model = load_compiled(out)
    assert_same_logits(model, ref, 224)


def test_timm_convnext_imports_through_the_channel_vector_rule(tmp_path: Path):
    """timm's names differ everywhere (structure pairs them) and its layer scale is a vector `gamma` [C]."""
    timm = pytest.importorskip("timm")
    ref = scaled(timm.create_model("convnext_tiny", pretrained=False, depths=(1, 1, 1, 1)), ".gamma")
    model, report = import_weights(
        netspec.load_spec(SPEC, overrides=SMALL), saved(ref, tmp_path / "timm.pth")
    )
    assert report.complete and report.loaded == len(ref.state_dict()) == len(model.state_dict()) == 56
    rules = {rule: len(pairs) for rule, pairs in report.by_rule().items()}
    assert rules == {"linear_as_conv1x1": 8, "channel_vector": 4}
    assert report.layouts["features.1.0.layer_scale.gamma"] == ("channel_vector",)
    assert "stages.0.blocks.0.gamma -> features.1.0.layer_scale.gamma (channel_vector)" in report.format()
    assert_same_logits(model, ref, 64)


def test_rules_compose_a_block_parameter_read_as_a_vector(tmp_path: Path):
    """torchvision's `layer_scale` [C, 1, 1] into a spec whose layer scale is timm's vector [C]."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    stages = [CNBlockConfig(96, 192, 1), CNBlockConfig(192, 384, 1), CNBlockConfig(384, 768, 1)]
    ref = scaled(ConvNeXt([*stages, CNBlockConfig(768, None, 1)]), ".layer_scale")
    spec = netspec.load_spec(SPEC, overrides=[*SMALL, TIMM_LAYOUT])
    model, report = import_weights(spec, saved(ref, tmp_path / "tv.pth"))
    assert report.complete and tuple(model.get_parameter("features.1.0.layer_scale.gamma").shape) == (96,)
    assert report.layouts["features.1.0.layer_scale.gamma"] == ("block_parameter", "channel_vector")
    assert_same_logits(model, ref, 64)


TWIN = """
name: twin
input: {channels: 4, size: 6}
classes: 3
stages:
  - {block: twin, depth: 1, name: mix}
head:
  - avgpool: global
  - flatten
  - linear: {out: "${classes}", name: fc}
blocks:
  twin:
    branches:
      - [conv: {out: 8, kernel: 1, bias: false}]
      - [conv: {out: 8, kernel: 1, bias: false}]
    merge: concat
"""


class ChannelsLastTwin(nn.Module):
    """Two pointwise branches run as nn.Linear on channels-last maps, concatenated: TWIN's function,
    with its branches' weights [out, in] under names of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.ModuleDict({"right": nn.Linear(4, 8, bias=False), "left": nn.Linear(4, 8, bias=False)})
        self.fc = nn.Linear(16, 3)


def test_a_rule_never_pairs_across_parallel_branches(tmp_path: Path):
    """The two [8, 4] weights read as 1x1 convs fit both branches: which is which is a guess, so the
    import fails naming them (issue 11's rule holds through layout rules), and nothing is loaded."""
    ckpt = saved(ChannelsLastTwin(), tmp_path / "twin.pth")
    with pytest.raises(SpecError) as err:
        import_weights(netspec.loads_spec(TWIN), ckpt)
    text = err.value.format()
    assert "ambiguous" in text and "mix.right.weight" in text and "mix.left.weight" in text
    spec = tmp_path / "twin.yaml"
    spec.write_text(TWIN)
    out = tmp_path / "twin.pt"
    result = run_cli("import-weights", str(spec), str(ckpt), "-o", str(out))
    assert result.exit_code == 2 and "ambiguous" in result.output and not out.exists()


def test_a_linear_weight_never_fills_a_larger_kernel():
    """[out, in] reads as [out, in, 1, 1] only: a 3x3 convolution of those channels stays unpaired."""
    source = {"conv.weight": torch.zeros(8, 4)}
    target = {"conv.weight": torch.zeros(8, 4, 3, 3)}
    pairing = match_state_dicts(source, target)
    assert pairing.mapping == {} and pairing.mis_shaped == [("conv.weight", (8, 4), (8, 4, 3, 3))]


def test_a_tensor_read_two_ways_pairs_with_neither():
    """`blk.ls` [4] could be the model's `blk.ls.gamma` [4] as it is, or [4, 1, 1] as a vector (the
    model has a free `gamma` of each shape): two readings, so it is left unpaired, never guessed."""
    source = {"blk.ls": torch.ones(4)}
    target = {"blk.ls.gamma": torch.ones(4), "x.gamma": torch.ones(4, 1, 1)}
    pairing = match_state_dicts(source, target)
    assert pairing.mapping == {}


def test_two_tensors_read_as_one_pair_with_neither():
    """`blk.ls` [4, 1, 1] (a block's parameter) and `blk.ls.gamma` [4] (a vector) both read as the
    model's `blk.ls.gamma` [4, 1, 1]: neither is meant more than the other."""
    source = {"blk.ls": torch.ones(4, 1, 1), "blk.ls.gamma": torch.ones(4)}
    target = {"blk.ls.gamma": torch.ones(4, 1, 1)}
    assert match_state_dicts(source, target).mapping == {}
    alone = match_state_dicts({"blk.ls": torch.ones(4, 1, 1)}, target)
    assert alone.mapping == {"blk.ls.gamma": "blk.ls"} and alone.layouts == {
        "blk.ls.gamma": ("block_parameter",)
    }


def test_without_layout_rules_the_pairing_is_the_checkpoints_own_layout():
    source = {"pw.weight": torch.ones(8, 4)}
    target = {"pw.weight": torch.ones(8, 4, 1, 1)}
    assert match_state_dicts(source, target, layouts=False).mapping == {}
    pairing = match_state_dicts(source, target)
    assert pairing.mapping == {"pw.weight": "pw.weight"} and pairing.layouts == {
        "pw.weight": ("linear_as_conv1x1",)
    }
