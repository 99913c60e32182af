"""`import-weights` never guesses: tensors pair by name, then by structure, and a group that nothing
tells apart is an error naming it. `--verify REF` compares logits with torchvision's or timm's model.
References: torchvision models built with weights=None, timm models with pretrained=False, and small
torch modules written here that register a block's parts in another order than netspec does."""

from __future__ import annotations

import os
import struct
import time
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import netspec
from netspec.errors import SpecError
from netspec.weights import (
    VerificationError,
    import_weights,
    match_state_dicts,
    parallel_branches,
    read_checkpoint,
)

from .conftest import SPECS, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

# One residual block whose body (conv1x1 + BN + ReLU) and projection shortcut (conv1x1 + BN) have the
# same shapes but not the same function: only names can tell them apart, never registration order.
SWAP_SPEC = """
name: swapcase
input: {channels: 4, size: 6}
classes: 3
defaults:
  conv: {norm: batchnorm, act: relu}
stages:
  - {block: unit, depth: 1, out: 8, name: layer1}
head:
  - avgpool: {kernel: global}
  - flatten: {}
  - linear: {out: "${classes}", name: fc}
shortcut: projection
blocks:
  unit:
    params: {out: int}
    body:
      - conv: {out: "${out}", kernel: 1}
    merge: add
    after: [relu]
"""

# Two Inception-style branches of equal shapes, concatenated.
BRANCHES_SPEC = """
name: branchcase
input: {channels: 4, size: 6}
classes: 3
defaults:
  conv: {norm: batchnorm, act: relu}
stages:
  - {block: mix, depth: 1, name: layer1}
head:
  - avgpool: {kernel: global}
  - flatten: {}
  - linear: {out: "${classes}", name: fc}
blocks:
  mix:
    branches:
      - [conv: {out: 8, kernel: 1}]
      - [conv: {out: 8, kernel: 1}]
    merge: concat
"""

# RegNetX-400MF (Radosavovic et al. 2020, torchvision's regnet_x_400mf): the same tensor shapes as
# torchvision, but ResNet-style names and netspec's order (body, then shortcut), where torchvision
# registers the shortcut (`proj`) before the body (`f.a`, `f.b`, `f.c`).
REGNET_SPEC = """
name: regnet_x_400mf_resnet_names
input: {channels: 3, size: 64}
classes: 1000
defaults:
  conv: {norm: batchnorm, act: relu}
stem:
  - conv: {out: 32, kernel: 3, stride: 2, name: conv1}
stages:
  - {block: x_block, depth: 1, out: 32, stride: 2, name: layer1}
  - {block: x_block, depth: 2, out: 64, stride: 2, name: layer2}
  - {block: x_block, depth: 7, out: 160, stride: 2, name: layer3}
  - {block: x_block, depth: 12, out: 400, stride: 2, name: layer4}
head:
  - avgpool: {kernel: global, name: avgpool}
  - flatten: {}
  - linear: {out: "${classes}", name: fc}
shortcut: projection
blocks:
  x_block:
    params: {out: int, stride: 1}
    body:
      - conv: {out: "${out}", kernel: 1}
      - conv: {out: "${out}", kernel: 3, stride: "${stride}", groups: "${out // 16}"}
      - conv: {out: "${out}", kernel: 1, act: none}
    merge: add
    after: [relu]
"""

# The same network with torchvision's module names where netspec can give them (stem, a, b, c, proj).
REGNET_NAMED_SPEC = """
name: regnet_x_400mf_named
input: {channels: 3, size: 64}
classes: 1000
defaults:
  conv: {norm: batchnorm, act: relu}
stem:
  - sequential: {name: stem, layers: [conv: {out: 32, kernel: 3, stride: 2}]}
stages:
  - {block: x_block, depth: 1, out: 32, stride: 2, name: layer1}
  - {block: x_block, depth: 2, out: 64, stride: 2, name: layer2}
  - {block: x_block, depth: 7, out: 160, stride: 2, name: layer3}
  - {block: x_block, depth: 12, out: 400, stride: 2, name: layer4}
head:
  - avgpool: {kernel: global, name: avgpool}
  - flatten: {}
  - linear: {out: "${classes}", name: fc}
shortcut: projection
blocks:
  x_block:
    params: {out: int, stride: 1}
    shortcut_name: proj
    body:
      - sequential: {name: a, layers: [conv: {out: "${out}", kernel: 1}]}
      - sequential:
          name: b
          layers: [conv: {out: "${out}", kernel: 3, stride: "${stride}", groups: "${out // 16}"}]
      - sequential: {name: c, layers: [conv: {out: "${out}", kernel: 1, act: none}]}
    merge: add
    after: [relu]
"""


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so that a wrong pairing shows in the logits."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def _kaiming(model: nn.Module) -> nn.Module:
    """Convs and linears that keep activations alive through a deep network: torchvision's own init of
    GoogLeNet (N(0, 0.01)) leaves logits that hardly depend on the input, which verifies nothing."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    return _randomize_bn(model)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


class ShortcutFirstBlock(nn.Module):
    """A residual block that registers its shortcut before its body (as torchvision's RegNet does)."""

    def __init__(self, body: tuple[str, str], shortcut: str):
        super().__init__()
        self.body_names = body
        setattr(self, shortcut, nn.Sequential(nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8)))
        self.shortcut_name = shortcut
        setattr(self, body[0], nn.Conv2d(4, 8, 1, bias=False))
        setattr(self, body[1], nn.BatchNorm2d(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = (getattr(self, n) for n in self.body_names)
        return torch.relu(torch.relu(bn(conv(x))) + getattr(self, self.shortcut_name)(x))


class SwapNet(nn.Module):
    def __init__(self, stage: str, body: tuple[str, str], shortcut: str):
        super().__init__()
        self.stage = stage
        setattr(self, stage, nn.Sequential(ShortcutFirstBlock(body, shortcut)))
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(getattr(self, self.stage)(x).mean((2, 3)))


class RightFirstBranches(nn.Module):
    """Two branches concatenated as [left, right], the right one registered first."""

    def __init__(self):
        super().__init__()
        self.right = nn.Sequential(nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.left = nn.Sequential(nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.left(x), self.right(x)], 1).mean((2, 3)))


def _save(model: nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


# --------------------------------------------------------------------------- the swap case


def test_shortcut_registered_first_is_never_loaded_swapped(tmp_path):
    """The checkpoint's names say nothing (`proj`, `conv`, `bn` vs `downsample`, `conv1`, `bn1`) and
    its order is the other one: strict import fails naming the group, --partial leaves it alone."""
    torch.manual_seed(0)
    reference = _randomize_bn(SwapNet("blocks", ("conv", "bn"), "proj"))
    path = _save(reference, tmp_path / "swap.pth")
    spec = netspec.loads_spec(SWAP_SPEC)
    with pytest.raises(SpecError) as info:
        import_weights(spec, path)
    text = str(info.value)
    assert "ambiguous: 2 model and 2 checkpoint tensors of shape [8, 4, 1, 1] (weight)" in text
    assert "model layer1.0.conv1.weight, layer1.0.downsample.0.weight" in text
    assert "checkpoint blocks.0.proj.0.weight, blocks.0.conv.weight" in text
    assert "(weight, bias, running_mean, running_var)" in text  # the two batch norms, one group
    assert "'layer1.0' (body, downsample) runs them on parallel branches" in text

    model, report = import_weights(spec, path, strict=False)
    assert not report.complete and len(report.ambiguous) == 2
    assert report.remapped == [] and report.matched == ["fc.weight", "fc.bias"]
    for key in ("layer1.0.conv1.weight", "layer1.0.downsample.0.weight"):  # neither took a guess
        for src in ("blocks.0.proj.0.weight", "blocks.0.conv.weight"):
            assert not torch.equal(model.state_dict()[key], reference.state_dict()[src])


def test_shortcut_registered_first_pairs_by_name_where_names_tell(tmp_path):
    """Body named as in the spec (`conv1`, `bn1`) under another stage name: the body pairs by its name
    ending, the shortcut as the only candidate left, and the logits equal the module's."""
    torch.manual_seed(1)
    reference = _randomize_bn(SwapNet("stage1", ("conv1", "bn1"), "proj"))
    path = _save(reference, tmp_path / "swap.pth")
    model, report = import_weights(netspec.loads_spec(SWAP_SPEC), path)
    assert report.complete
    assert ("stage1.0.conv1.weight", "layer1.0.conv1.weight") in report.remapped
    assert ("stage1.0.proj.0.weight", "layer1.0.downsample.0.weight") in report.remapped
    assert report.evidence["layer1.0.conv1.weight"] == "name ending"
    assert report.evidence["layer1.0.downsample.0.weight"] == "only candidate"
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        assert _max_diff(model.eval()(x), reference(x)) < 1e-5


def test_parallel_branches_in_another_order_are_ambiguous(tmp_path):
    torch.manual_seed(2)
    path = _save(_randomize_bn(RightFirstBranches()), tmp_path / "branches.pth")
    with pytest.raises(SpecError, match=r"'layer1\.0' \(branch1, branch2\) runs them on parallel branches"):
        import_weights(netspec.loads_spec(BRANCHES_SPEC), path)


def test_order_is_still_trusted_along_one_chain():
    """Without parallel branches, tensors of one shape pair in order (as timm's MobileNetV2 needs)."""
    model = nn.Sequential(nn.Conv2d(3, 3, 1, bias=False), nn.Conv2d(3, 3, 1, bias=False))
    source = {f"blocks.{i}.conv.weight": torch.randn(3, 3, 1, 1) for i in range(2)}
    pairing = match_state_dicts(source, model.state_dict(), parallel_branches(model))
    assert pairing.mapping["0.weight"] == "blocks.0.conv.weight"
    assert pairing.mapping["1.weight"] == "blocks.1.conv.weight"
    assert {pairing.evidence["0.weight"], pairing.evidence["1.weight"]} == {"order"}


# --------------------------------------------------------------------------- torchvision's RegNet


@pytest.fixture(scope="module")
def regnet(tmp_path_factory):
    torch.manual_seed(3)
    reference = _randomize_bn(torchvision.models.regnet_x_400mf(weights=None))
    path = tmp_path_factory.mktemp("regnet") / "regnet_x_400mf.pth"
    return reference, _save(reference, path)


def test_regnet_in_another_registration_order_fails_naming_the_groups(regnet):
    _, path = regnet
    spec = netspec.loads_spec(REGNET_SPEC)
    with pytest.raises(SpecError) as info:
        import_weights(spec, path)
    text = str(info.value)
    assert "ambiguous: 3 model and 3 checkpoint tensors of shape [32, 32, 1, 1] (weight)" in text
    assert "layer1.0.downsample.0.weight" in text and "trunk_output.block1.block1-0.proj.0.weight" in text
    assert "'layer1.0' (body, downsample)" in text
    assert "their order cannot decide either" in text  # RegNet registers the shortcut first
    with pytest.raises(SpecError, match="ambiguous"):  # so even trusting order pairs nothing wrong
        import_weights(spec, path, trust_order=True)

    _, report = import_weights(spec, path, strict=False)  # what it does load, it loads right
    assert report.ambiguous and report.remapped
    for src, dst in report.remapped:
        assert (".proj." in src) == (".downsample." in dst), (src, dst)
        assert src.split(".")[-1] == dst.split(".")[-1]


def test_regnet_named_like_torchvision_loads_and_verifies(regnet):
    """Names where the spec can give them (a, b, c, proj) decide; the rest follows by structure, and
    the logits equal torchvision's (checked by the test and by verify=)."""
    reference, path = regnet
    model, report = import_weights(
        netspec.loads_spec(REGNET_NAMED_SPEC), path, verify="torchvision.models.regnet_x_400mf"
    )
    assert report.complete and len(report.remapped) + len(report.matched) == len(reference.state_dict())
    assert ("trunk_output.block1.block1-0.proj.0.weight", "layer1.0.proj.0.weight") in report.remapped
    assert report.verification is not None and report.verification.equal
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _max_diff(model.eval()(x), reference(x)) < 1e-4


def test_googlenet_aux_heads_pair_by_name_beginning(tmp_path):
    """specs/googlenet.yaml places the side classifiers where they branch off, torchvision registers
    them last, and inside them the names differ (`aux1.8` vs `aux1.fc2`): `aux1`/`aux2` decide."""
    torch.manual_seed(6)
    reference = _kaiming(torchvision.models.googlenet(weights=None, init_weights=False))
    path = _save(reference, tmp_path / "googlenet.pth")
    spec = netspec.load_spec(SPECS / "googlenet.yaml", ["input.size=64"])
    _, report = import_weights(spec, path, verify="torchvision.models.googlenet")
    assert report.complete and report.verification is not None and report.verification.equal
    assert ("aux1.fc2.weight", "aux1.8.weight") in report.remapped
    assert ("aux2.fc2.weight", "aux2.8.weight") in report.remapped
    assert report.evidence["aux1.8.weight"] == "name beginning"
    assert "order across branches" not in report.evidence.values()


def test_inception_v3_branches_pair_only_when_order_is_trusted(tmp_path):
    """torchvision's Inception3 blocks keep their branches' layers as flat children (branch1x1,
    branch5x5_1, ...), the spec as branch1..branch4: branch1 and branch_pool of Mixed_6b have equal
    shapes, so only order can pair them. Strict import refuses; trust_order pairs them, and torchvision
    itself, loaded with the same file, confirms."""
    torch.manual_seed(7)
    reference = torchvision.models.inception_v3(weights=None, init_weights=False)
    path = _save(_kaiming(reference), tmp_path / "inception_v3.pth")
    spec = netspec.load_spec(SPECS / "inception_v3.yaml")
    with pytest.raises(SpecError) as info:
        import_weights(spec, path)
    assert "ambiguous" in str(info.value) and "--trust-order" in str(info.value)
    _, report = import_weights(spec, path, trust_order=True, verify="torchvision.models.inception_v3")
    assert report.complete and report.verification is not None and report.verification.equal
    assert "order across branches" in report.evidence.values()
    _, report = import_weights(spec, path, trust_order=True)
    assert "nothing checked it: --verify REF would" in report.format()
    # a new 10-class head (--partial): the heads cannot pair, so they do not stop the rest from pairing
    small = netspec.load_spec(SPECS / "inception_v3.yaml", ["classes=10"])
    _, report = import_weights(small, path, strict=False, trust_order=True)
    assert not report.ambiguous and [k for k, _, _ in report.mis_shaped] == ["fc.weight", "fc.bias"]
    assert report.missing == ["AuxLogits.9.weight", "AuxLogits.9.bias"]


def test_cli_trust_order_on_identical_branches_is_caught_by_verify(tmp_path):
    """Trusting order is the caller's word: where it is wrong (branches registered in reverse), the
    import loads, says so, and only a reference can tell; without one, the report says so too."""
    torch.manual_seed(8)
    path = _save(_randomize_bn(RightFirstBranches()), tmp_path / "branches.pth")
    spec = tmp_path / "branches.yaml"
    spec.write_text(BRANCHES_SPEC)
    result = run_cli("import-weights", str(spec), str(path), "-o", str(tmp_path / "out.pt"))
    assert result.exit_code == 2 and "--trust-order" in result.output
    result = run_cli("import-weights", str(spec), str(path), "-o", str(tmp_path / "out.pt"), "--trust-order")
    assert result.exit_code == 0, result.output
    assert "by order across branches" in result.output and "nothing checked it" in result.output


def test_verify_is_inconclusive_on_flat_logits(torchvision_files, tmp_path):
    state = torch.load(torchvision_files["resnet18"], weights_only=True)
    state["fc.weight"] = torch.zeros_like(state["fc.weight"])  # every image gets the same logits
    path = tmp_path / "flat.pth"
    torch.save(state, path)
    spec = netspec.load_spec(SPECS / "resnet18.yaml", ["input.size=32"])
    with pytest.raises(VerificationError, match=r"inconclusive: .* logits .* are flat"):
        import_weights(spec, path, verify="torchvision.models.resnet18")


# --------------------------------------------------------------------------- --verify


@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory):
    torch.manual_seed(4)
    root = tmp_path_factory.mktemp("tv")
    return {
        "resnet18": _save(_randomize_bn(torchvision.models.resnet18(weights=None)), root / "r18.pth"),
        "resnet50": _save(torchvision.models.resnet50(weights=None), root / "r50.pth"),
    }


def test_cli_verify_resnet18_with_torchvision_is_equal(torchvision_files, tmp_path):
    out = tmp_path / "r18.pt"
    result = run_cli(
        "import-weights", str(SPECS / "resnet18.yaml"), str(torchvision_files["resnet18"]), "-o", str(out),
        "--verify", "torchvision.models.resnet18", "--set", "input.size=64",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "logits equal torchvision.models.resnet18's on a seeded random batch 2x3x64x64" in result.output
    assert out.exists()


def test_cli_verify_catches_resnet50_paper_layout(torchvision_files, tmp_path):
    """torchvision's ResNet-50 strides in the 3x3 conv; specs/resnet50.yaml is the paper's (1x1):
    every name and shape fits, the function does not. --verify says so, exit 1, nothing written."""
    out = tmp_path / "r50.pt"
    args = [str(torchvision_files["resnet50"]), "-o", str(out), "--verify", "torchvision.models.resnet50"]
    result = run_cli("import-weights", str(SPECS / "resnet50.yaml"), *args, "--set", "input.size=64")
    assert result.exit_code == 1, result.output
    assert "loaded 320 tensors" in result.output and "320 by name" in result.output
    assert "logits differ from torchvision.models.resnet50's" in result.output
    assert "max abs diff" in result.output and "nothing written" in result.output
    assert not out.exists()
    result = run_cli("import-weights", str(SPECS / "resnet50_b.yaml"), *args, "--set", "input.size=64")
    assert result.exit_code == 0, result.output
    assert "logits equal torchvision.models.resnet50's" in result.output and out.exists()


def test_api_verify_raises_with_the_numbers(torchvision_files):
    spec = netspec.load_spec(SPECS / "resnet50.yaml", ["input.size=64"])
    with pytest.raises(VerificationError) as info:
        import_weights(spec, torchvision_files["resnet50"], verify="timm:resnet50")
    result = info.value.verification
    assert not result.equal and result.max_abs_diff > 100 * result.tolerance
    assert result.input_shape == (2, 3, 64, 64) and result.reference == "timm:resnet50"
    assert info.value.report.complete  # a complete import: only the logits tell


def test_cli_verify_timm_mobilenet_v2_remapped_by_order(tmp_path):
    """timm's MobileNetV2 names nothing as torchvision does: all 314 tensors pair by structure, and
    timm itself, loaded with the same file, gives the same logits."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(5)
    path = _save(_randomize_bn(timm.create_model("mobilenetv2_100", pretrained=False)), tmp_path / "m.pth")
    result = run_cli(
        "import-weights", str(SPECS / "mobilenet_v2.yaml"), str(path), "--verify", "timm:mobilenetv2_100",
        "--set", "input.size=64",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "0 by name, 314 remapped" in result.output
    assert "logits equal timm:mobilenetv2_100's" in result.output
    # the same file against torchvision's MobileNetV2 does not load by name: said, exit 2
    result = run_cli(
        "import-weights", str(SPECS / "mobilenet_v2.yaml"), str(path), "--verify",
        "torchvision.models.mobilenet_v2", "--set", "input.size=64",
    )  # fmt: skip
    assert result.exit_code == 2 and "does not load into the reference by name" in result.output


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("os.system", "is not a reference model"),
        ("torchvision.models.resnet5", "did you mean 'torchvision.models.resnet50'"),
        ("torchvision.models.utils", "torchvision has no classification model 'utils'"),
        ("torchvision.models.__builtins__", "torchvision has no classification model"),
        ("timm:../../etc/passwd", "timm has no model"),
        ("timm:resnet_nope", "timm has no model"),
        ("builtins:eval", "is not a reference model"),
    ],
)
def test_cli_verify_names_only_known_models(torchvision_files, ref, message):
    spec = str(SPECS / "resnet18.yaml")
    result = run_cli("import-weights", spec, str(torchvision_files["resnet18"]), "--verify", ref)
    assert result.exit_code == 2 and message in result.output, result.output


def test_cli_needs_output_or_verify(torchvision_files):
    result = run_cli("import-weights", "resnet18", str(torchvision_files["resnet18"]))
    assert result.exit_code == 2 and "give -o OUT to save the weights, --verify REF" in result.output


# --------------------------------------------------------------------------- files that are not checkpoints


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A complete checkpoint for SWAP_SPEC under its own names (a spec's module, re-read)."""
    model = netspec.build(netspec.loads_spec(SWAP_SPEC), seed=0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    torch.save(model.state_dict(), path)
    return model, path


def _refused(path: str | Path, message: str, tmp_path: Path) -> str:
    """The API and the CLI both refuse `path` with `message`, in bounded time, with no advice to
    load with weights_only=False."""
    start = time.monotonic()
    with pytest.raises(SpecError) as info:
        import_weights(netspec.loads_spec(SWAP_SPEC), path)
    assert message in str(info.value), str(info.value)
    spec = tmp_path / "swap.yaml"
    spec.write_text(SWAP_SPEC)
    result = run_cli("import-weights", str(spec), str(path), "-o", str(tmp_path / "out.pt"))
    assert result.exit_code == 2 and message in result.output, result.output
    assert time.monotonic() - start < 60
    for text in (str(info.value), result.output):
        assert "weights_only" not in text and "trusted source" not in text
    return str(info.value)


def test_directory_is_named_as_such(tmp_path, tiny_file):
    folder = tmp_path / "model_dir"
    folder.mkdir()
    text = _refused(folder, "is a directory, not a checkpoint file", tmp_path)
    assert "give the weights file itself" in text
    (folder / "model.safetensors").write_bytes(b"x")
    text = _refused(folder, "is a directory, not a checkpoint file", tmp_path)
    assert "model.safetensors" in text


def test_devices_fifos_and_links_are_refused_without_reading(tmp_path):
    zero = tmp_path / "zero.pth"
    zero.symlink_to("/dev/zero")
    _refused(zero, "is a character device: only regular files are read", tmp_path)
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)  # opening it would block until a writer comes
    _refused(fifo, "is a named pipe (FIFO)", tmp_path)
    dangling = tmp_path / "gone.pth"
    dangling.symlink_to(tmp_path / "nowhere.pth")
    _refused(dangling, "is a symbolic link to", tmp_path)
    loop = tmp_path / "loop.pth"
    loop.symlink_to(loop)
    _refused(loop, "cannot be read", tmp_path)
    _refused(tmp_path / "missing.pth", "does not exist", tmp_path)
    with pytest.raises(SpecError, match="contains a NUL byte"):
        read_checkpoint(str(tmp_path / "a\0b.pth"))


def test_empty_and_foreign_files(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    _refused(empty, "is empty (0 bytes)", tmp_path)
    text = tmp_path / "model.safetensors"
    text.write_text("this is not a safetensors file")
    _refused(text, "neither a PyTorch (torch.save) nor a safetensors file", tmp_path)
    h5 = tmp_path / "weights.pth"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    _refused(h5, "an HDF5 file", tmp_path)
    npz = tmp_path / "arrays.pth"
    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY")
    _refused(npz, "a zip archive but not a PyTorch checkpoint", tmp_path)


def test_safetensors_header_claims_are_checked(tmp_path):
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 10**15) + b'{"w": {}}')
    _refused(
        huge, "truncated safetensors file: its header alone claims 1,000,000,000,000,000 bytes", tmp_path
    )
    lying = tmp_path / "lying.safetensors"
    header = b'{"w": {"dtype": "F32", "shape": [1000000000], "data_offsets": [0, 4000000000]}}'
    lying.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    _refused(lying, "is not a readable safetensors file", tmp_path)


def test_format_is_read_from_the_content_not_the_suffix(tmp_path, tiny_file):
    from safetensors.torch import save_file

    model, path = tiny_file
    renamed = tmp_path / "really_torch.safetensors"
    renamed.write_bytes(path.read_bytes())
    loaded, report = import_weights(netspec.loads_spec(SWAP_SPEC), renamed)
    assert report.complete and len(report.matched) == len(model.state_dict())
    st = tmp_path / "really_safetensors.pth"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    loaded, report = import_weights(netspec.loads_spec(SWAP_SPEC), st)
    assert report.complete and torch.equal(loaded.fc.weight, model.fc.weight)


def test_zip_bomb_is_refused_before_torch_allocates(tmp_path, tiny_file):
    _, path = tiny_file
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path) as original, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in original.infolist():
            out.writestr(info.filename, original.read(info.filename))
        out.writestr("tiny/data/99", bytes(80 << 20))  # 80 MB of zeros, some 80 KB compressed
    assert bomb.stat().st_size < 1 << 20
    _refused(bomb, "(a zip bomb?): refused", tmp_path)


def test_torchscript_and_pickles_never_advise_weights_only_false(tmp_path, tiny_file):
    model, path = tiny_file
    scripted = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, still written
        torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(scripted))
    _refused(scripted, "is a TorchScript archive (torch.jit.save), which holds code", tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": model.state_dict(), "extra": Evil()}, evil)
    _refused(evil, "contains a pickled Python object (posix.system)", tmp_path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x02" + b"\xff" * 32)
    _refused(garbage, "not a readable PyTorch checkpoint: the weights-only unpickler stopped", tmp_path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:300])
    _refused(truncated, "not a readable PyTorch checkpoint", tmp_path)


# --------------------------------------------------------------------------- what a checkpoint holds


def test_extra_nesting_and_non_tensor_entries(tmp_path, tiny_file):
    model, _ = tiny_file
    nested = {"epoch": 7, "model": {"state_dict": {"backbone": model.state_dict(), "version": 2}}}
    path = tmp_path / "nested.pth"
    torch.save(nested, path)
    loaded, report = import_weights(netspec.loads_spec(SWAP_SPEC), path)
    assert report.complete and report.nested_under == ["model", "state_dict"]
    assert report.ignored == ["version"] and "ignored (not tensors)" in report.format()
    assert ("backbone.layer1.0.downsample.0.weight", "layer1.0.downsample.0.weight") in report.remapped
    assert all(report.evidence[d] != "order" for _, d in report.remapped)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_duplicate_keys_after_flattening(tmp_path, tiny_file):
    model, _ = tiny_file
    state = dict(model.state_dict())
    path = tmp_path / "dup.pth"
    torch.save({"fc.weight": state["fc.weight"], "fc": {"weight": state["fc.weight"]}}, path)
    _refused(path, "has two tensors under the key 'fc.weight'", tmp_path)


def test_other_dtypes(tmp_path, tiny_file):
    model, _ = tiny_file
    half = tmp_path / "half.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, half)
    loaded, report = import_weights(netspec.loads_spec(SWAP_SPEC), half)
    floats = sum(v.is_floating_point() for v in model.state_dict().values())
    assert report.complete and report.converted == {"float16 -> float32": floats}
    assert torch.equal(loaded.fc.weight, model.fc.weight.half().float())
    for bad, name in ((torch.complex64, "complex64"), (torch.int64, "int64"), (torch.bool, "bool")):
        path = tmp_path / f"{name}.pth"
        state = dict(model.state_dict())
        state["fc.weight"] = state["fc.weight"].to(bad)
        torch.save(state, path)
        _refused(path, f"wrong dtype (checkpoint vs model) (1): fc.weight {name} vs float32", tmp_path)
    meta = tmp_path / "meta.pth"
    torch.save({k: v.to("meta") for k, v in model.state_dict().items()}, meta)
    _refused(meta, "holds no data (saved from the 'meta' device)", tmp_path)


def test_nan_weights_are_reported(tmp_path, tiny_file):
    model, _ = tiny_file
    state = dict(model.state_dict())
    state["fc.bias"] = torch.full_like(state["fc.bias"], float("nan"))
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    _, report = import_weights(netspec.loads_spec(SWAP_SPEC), path)
    assert report.non_finite == ["fc.bias"] and "holding NaN or Inf" in report.format()


def test_control_characters_in_keys_are_escaped(tmp_path, tiny_file):
    model, _ = tiny_file
    state = dict(model.state_dict())
    state["evil\x1b]0;owned\x07\nfile:1:1: ok.weight"] = torch.zeros(1)
    path = tmp_path / "ctrl.pth"
    torch.save(state, path)
    text = _refused(path, "unexpected in the checkpoint (1)", tmp_path)
    assert "\x1b" not in text and "\x07" not in text and "\\x1b]0;owned\\x07\\nfile:1:1" in text


def test_legacy_format_and_deep_nesting(tmp_path, tiny_file):
    model, _ = tiny_file
    legacy = tmp_path / "legacy.pth"
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    _, report = import_weights(netspec.loads_spec(SWAP_SPEC), legacy)
    assert report.complete and len(report.matched) == len(model.state_dict())
    deep: dict = dict(model.state_dict())
    for i in range(40):
        deep = {f"level{i}": deep}
    path = tmp_path / "deep.pth"
    torch.save(deep, path)
    _refused(path, "nests dicts more than 32 levels deep", tmp_path)


def test_odd_keys_are_reported_never_crash(tmp_path):
    """Keys made of empty parts, dots, digits, spaces and unicode: the import fails or reports, with
    a SpecError only."""
    import random

    rng = random.Random(0)
    parts = ["", ".", "0", "1", "weight", "bias", "conv1", "layer1", "fc", " ", "é", "\n", "running_var"]
    spec = netspec.loads_spec(SWAP_SPEC)
    target = netspec.build(spec, seed=0).state_dict()
    shapes = [tuple(v.shape) for v in target.values()] + [(), (1,), (8,)]
    for trial in range(40):
        state = {}
        for _ in range(rng.randint(1, 20)):
            key = ".".join(rng.choice(parts) for _ in range(rng.randint(1, 5)))
            state[key] = torch.zeros(rng.choice(shapes))
        path = tmp_path / f"odd{trial}.pth"
        torch.save(state, path)
        try:
            _, report = import_weights(spec, path, strict=False)
            assert report.format()
        except SpecError:
            pass
