"""Compiled artefacts (state_dict / TorchScript / torch.export / ONNX) and pretrained-weight import.

References: the module netspec builds, reloaded through torch's own readers (torch.load with
weights_only=True, torch.jit.load, torch.export.load, onnxruntime), and torchvision's resnet18."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torchvision

import netspec
from netspec import SpecError
from netspec.compile import (
    CompileError,
    format_for,
    load_compiled,
    onnx_available,
    resolved_spec_text,
    save_compiled,
)
from netspec.weights import ImportReport, import_weights, read_checkpoint

from .conftest import SPECS

# A 2-stage ResNet at 32x32 with resnet_c (not idempotent: the resolved text must drop `tricks`),
# an Inception-style parallel block and a projection shortcut.
TINY = """
name: tiny_resnet
input: {channels: 3, size: 32}
classes: 10
defaults:
  conv: {norm: batchnorm, act: relu}
stem:
  - conv: {out: 8, kernel: 7, name: conv1}
stages:
  - {block: basic, depth: 2, out: 8, name: layer1}
  - {block: basic, depth: 1, out: 16, stride: 2, name: layer2}
  - mixed: {c1: 8, c3: 8}
head:
  - avgpool: {kernel: global, name: avgpool}
  - flatten: {}
  - linear: {out: "${classes}", name: fc}
tricks: [resnet_c]
blocks:
  basic:
    params: {out: int, stride: 1}
    body:
      - conv: {out: "${out}", stride: "${stride}"}
      - conv: {out: "${out}", act: none}
    merge: add
    after: [relu]
  mixed:
    params: {c1: int, c3: int}
    branches:
      - [conv: {out: "${c1}", kernel: 1}]
      - [conv: {out: "${c3}", kernel: 3}]
    merge: concat
"""

AUX = """
name: tiny_aux
input: {channels: 3, size: 32}
classes: 10
stem:
  - conv: {out: 8, norm: batchnorm, act: relu}
stages:
  - aux: {name: aux1, layers: [{avgpool: global}, flatten, {linear: 10}]}
  - conv: {out: 16, stride: 2}
head: [{avgpool: global}, flatten, {linear: 10}]
"""

# used when specs/resnet18.yaml is not there: torchvision's resnet18, module names and all
RESNET18 = """
name: resnet18
input: {channels: 3, size: 224}
classes: 1000
defaults:
  conv: {norm: batchnorm, act: relu}
stem:
  - conv: {out: 64, kernel: 7, stride: 2, name: conv1}
  - maxpool: {kernel: 3, stride: 2, padding: 1, name: maxpool}
stages:
  - {block: basic, depth: 2, out: 64, name: layer1}
  - {block: basic, depth: 2, out: 128, stride: 2, name: layer2}
  - {block: basic, depth: 2, out: 256, stride: 2, name: layer3}
  - {block: basic, depth: 2, out: 512, stride: 2, name: layer4}
head:
  - avgpool: {kernel: global, name: avgpool}
  - flatten: {}
  - linear: {out: "${classes}", name: fc}
blocks:
  basic:
    params: {out: int, stride: 1}
    body:
      - conv: {out: "${out}", stride: "${stride}"}
      - conv: {out: "${out}", act: none}
    merge: add
    after: [relu]
"""

TOL = 1e-6


@pytest.fixture(scope="module")
def tiny():
    return netspec.loads_spec(TINY)


@pytest.fixture(scope="module")
def x():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _reference(spec, seed, x):
    model = netspec.build(spec, seed=seed).eval()
    with torch.no_grad():
        return model(x)


def _resnet18_spec():
    path = SPECS / "resnet18.yaml"
    return netspec.load_spec(path) if path.exists() else netspec.loads_spec(RESNET18)


def _close(a, b, tol=TOL):
    return torch.allclose(a, b, atol=tol, rtol=0), (a - b).abs().max().item()


# --------------------------------------------------------------------------- resolved spec text


def test_resolved_text_reloads_to_the_same_network(tiny):
    text = resolved_spec_text(tiny)
    assert "tricks already applied: resnet_c" in text
    again = netspec.loads_spec(text)
    assert again.tricks == []
    assert netspec.analyze(again).to_json() == netspec.analyze(tiny).to_json()
    resized = netspec.loads_spec(resolved_spec_text(tiny, input_size=(40, 48)))
    assert netspec.analyze(resized).input_shape == (3, 40, 48)


def test_format_by_suffix():
    assert [format_for(f"m{s}") for s in (".pt", ".pth", ".ts", ".pt2", ".onnx")] == [
        "state_dict",
        "state_dict",
        "torchscript",
        "export",
        "onnx",
    ]
    assert format_for("m.bin", "export") == "export"
    with pytest.raises(CompileError, match="suffix"):
        format_for("model.bin")
    with pytest.raises(CompileError, match="unknown format 'tflite'"):
        format_for("m.pt", "tflite")


# --------------------------------------------------------------------------- the four formats


def test_state_dict_round_trip(tiny, x, tmp_path):
    path = save_compiled(tiny, tmp_path / "m.pt", seed=1)
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == "netspec/1" and obj["spec_name"] == "tiny_resnet"
    assert obj["input_shape"] == [3, 32, 32]
    assert set(obj["state_dict"]) == set(netspec.build(tiny).state_dict())
    model = load_compiled(path)
    assert not model.training
    ok, err = _close(model(x), _reference(tiny, 1, x))
    assert ok, err


def test_state_dict_round_trip_resnet50(tmp_path):
    spec = netspec.load_spec(SPECS / "resnet50.yaml")
    original = netspec.build(spec, input_size=64, seed=3).eval()
    path = save_compiled(spec, tmp_path / "r50.pth", input_size=64, model=original)
    obj = torch.load(path, weights_only=True)
    assert obj["input_shape"] == [3, 64, 64]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ok, err = _close(load_compiled(path)(x), original(x))
    assert ok, err
    assert original.training is False  # save_compiled leaves the given module's mode alone


def test_state_dict_refuses_a_module_of_another_spec(tiny, tmp_path):
    other = netspec.build(netspec.loads_spec(AUX))
    with pytest.raises(CompileError, match="does not match spec 'tiny_resnet'"):
        save_compiled(tiny, tmp_path / "m.pt", model=other)


def test_torchscript_round_trip(tiny, x, tmp_path):
    path = save_compiled(tiny, tmp_path / "m.ts", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path))
    ok, err = _close(loaded(x), _reference(tiny, 1, x))
    assert ok, err


def test_export_round_trip_with_dynamic_batch(tiny, x, tmp_path):
    path = save_compiled(tiny, tmp_path / "m.pt2", seed=1)
    module = torch.export.load(str(path)).module()
    ref = _reference(tiny, 1, x)
    ok, err = _close(module(x), ref)
    assert ok, err
    ok, err = _close(module(x[:1]), ref[:1])  # exported with batch 2: batch is dynamic
    assert ok, err
    ok, err = _close(load_compiled(path)(x), ref)
    assert ok, err


def test_onnx_round_trip(tiny, x, tmp_path):
    if not onnx_available():
        with pytest.raises(CompileError, match="onnxscript"):
            save_compiled(tiny, tmp_path / "m.onnx")
        pytest.skip("onnx/onnxscript not installed: checked the error instead")
    path = save_compiled(tiny, tmp_path / "m.onnx", seed=1)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # weights inline: one file
    import onnx

    onnx.checker.check_model(str(path))
    try:
        import onnxruntime
    except ImportError:
        return
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, 32, 32]
    ref = _reference(tiny, 1, x)
    for batch in (x, x[:1]):
        (out,) = session.run(None, {"input": batch.numpy()})
        ok, err = _close(torch.from_numpy(out), ref[: len(batch)], 1e-5)
        assert ok, err
    with pytest.raises(CompileError, match="onnxruntime"):
        load_compiled(path)


def test_aux_heads_are_exported_in_eval_mode(x, tmp_path):
    spec = netspec.loads_spec(AUX)
    model = netspec.build(spec, seed=0)
    assert model.training and isinstance(model(x), tuple)
    save_compiled(spec, tmp_path / "aux.ts", model=model)
    assert model.training  # left as it was
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(tmp_path / "aux.ts"))
    out = loaded(x)
    assert isinstance(out, torch.Tensor)
    ok, err = _close(out, model.eval()(x))
    assert ok, err


def test_load_compiled_refuses_other_files(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    with pytest.raises(CompileError, match="not a netspec state_dict file"):
        load_compiled(plain)
    with pytest.raises(CompileError, match="does not exist"):
        load_compiled(tmp_path / "none.pt")


# --------------------------------------------------------------------------- import_weights


class Evil:
    """Unpickling this runs os.mkdir: a stand-in for arbitrary code in a checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def resnet18_pair():
    torch.manual_seed(0)
    tv = torchvision.models.resnet18().eval()
    with torch.no_grad():  # non-trivial BN statistics, so that a wrong mapping shows in the logits
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    spec = _resnet18_spec()
    return spec, tv, torch.randn(2, 3, 64, 64)


def test_import_torchvision_resnet18(resnet18_pair, tmp_path):
    spec, tv, x = resnet18_pair
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    model, report = import_weights(spec, path)
    assert isinstance(report, ImportReport) and report.complete
    assert not report.remapped and len(report.matched) == len(tv.state_dict())
    with torch.no_grad():
        ok, err = _close(model.eval()(x), tv(x), 1e-5)
    assert ok, err
    assert "0 remapped" in report.format()


def test_import_remaps_renamed_keys_by_order(resnet18_pair, tmp_path):
    spec, tv, x = resnet18_pair
    renamed = {
        "module.backbone." + k.replace("layer", "stage").replace("downsample", "proj"): v
        for k, v in tv.state_dict().items()
    }
    path = tmp_path / "renamed.pth"
    torch.save({"epoch": 3, "model": renamed}, path)  # nested, with DDP's prefix
    model, report = import_weights(spec, path)
    assert report.complete
    assert ("backbone.stage1.0.conv1.weight", "layer1.0.conv1.weight") in report.remapped
    assert ("backbone.stage2.0.proj.0.weight", "layer2.0.downsample.0.weight") in report.remapped
    assert "backbone.conv1.weight -> conv1.weight" in report.format()
    with torch.no_grad():
        ok, err = _close(model.eval()(x), tv(x), 1e-5)
    assert ok, err


def test_import_timm_mobilenet_v2_by_order(tmp_path):
    """timm names every module differently from torchvision (conv_stem, blocks.0.0.conv_dw, ...):
    the spec, named after torchvision, still takes the checkpoint, by order."""
    timm = pytest.importorskip("timm")
    path = SPECS / "mobilenet_v2.yaml"
    if not path.exists():
        pytest.skip("specs/mobilenet_v2.yaml not written yet")
    torch.manual_seed(0)
    reference = timm.create_model("mobilenetv2_100", pretrained=False).eval()
    checkpoint = tmp_path / "mobilenetv2_100.pth"
    torch.save(reference.state_dict(), checkpoint)
    model, report = import_weights(path, checkpoint)
    assert report.complete and not report.matched and len(report.remapped) == 314
    assert ("conv_stem.weight", "features.0.0.weight") in report.remapped
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ok, err = _close(model.eval()(x), reference(x), 1e-5)
    assert ok, err


def test_import_safetensors(resnet18_pair, tmp_path):
    from safetensors.torch import save_file

    spec, tv, x = resnet18_pair
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(path))
    model, report = import_weights(netspec.build(spec), path)
    assert report.complete
    with torch.no_grad():
        ok, err = _close(model.eval()(x), tv(x), 1e-5)
    assert ok, err


def test_import_a_new_head_with_strict_false(resnet18_pair, tmp_path):
    spec, tv, _ = resnet18_pair
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": tv.state_dict()}, path)
    small = netspec.loads_spec(resolved_spec_text(spec).replace("classes: 1000", "classes: 10"))
    with pytest.raises(SpecError, match=r"fc\.weight \[1000, 512\] vs \[10, 512\]"):
        import_weights(small, path)
    model, report = import_weights(small, path, strict=False)
    assert [k for k, _, _ in report.mis_shaped] == ["fc.weight", "fc.bias"]
    assert report.loaded == len(tv.state_dict()) - 2
    assert torch.equal(model.conv1.weight, tv.conv1.weight)


def test_wrong_checkpoint_names_keys(tmp_path):
    vgg = torchvision.models.vgg11().features  # vgg11's conv weights, under their real names
    path = tmp_path / "vgg11.pth"
    torch.save({f"features.{k}": v for k, v in vgg.state_dict().items()}, path)
    with pytest.raises(SpecError) as info:
        import_weights(SPECS / "resnet50.yaml", path)
    text = str(info.value)
    assert "does not load into 'resnet50'" in text
    assert "missing from the checkpoint" in text and "conv1.weight [64, 3, 7, 7]" in text
    assert "unexpected in the checkpoint" in text and "features.0.weight [64, 3, 3, 3]" in text


def test_wrong_resnet_names_mis_shaped_keys(resnet18_pair, tmp_path):
    _, tv, _ = resnet18_pair
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    with pytest.raises(SpecError, match=r"wrong shape.*layer1\.0\.conv1\.weight \[64, 64, 3, 3\] vs"):
        import_weights(SPECS / "resnet50.yaml", path)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Evil(marker)}, path)
    with pytest.raises(SpecError, match=r"pickled Python object \(posix\.mkdir\)"):
        read_checkpoint(path)
    with pytest.raises(CompileError, match="refuses to unpickle"):
        load_compiled(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(SpecError, match=r"neither a PyTorch \(torch\.save\) nor a safetensors file"):
        read_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(SpecError, match=r"is empty \(0 bytes\)"):
        read_checkpoint(path)
    torch.save({"epoch": 1}, path)
    with pytest.raises(SpecError, match="no tensors"):
        read_checkpoint(path)


# --------------------------------------------------------------------------- torch tooling


def test_module_under_torch_tooling(tiny, x):
    model = netspec.build(tiny, seed=0).eval()
    with torch.no_grad():
        ref = model(x)
        traced = torch.fx.symbolic_trace(model)
        assert _close(traced(x), ref)[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(model)
        assert _close(scripted(x), ref)[0]
    exported = torch.export.export(model, (x,)).module()
    assert _close(exported(x), ref)[0]


def test_channels_last_and_bf16_autocast(tiny, x):
    model = netspec.build(tiny, seed=0)
    ref = model.eval()(x).detach()
    model = model.to(memory_format=torch.channels_last)
    xc = x.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(xc)
        assert out.dtype == torch.bfloat16
        assert torch.allclose(out.float(), ref, atol=0.1, rtol=0.1)
        # batch 4, not 3: torch 2.14.1's oneDNN weight gradient of a channels_last 1x1 stride-2 conv
        # with 8 input channels corrupts the heap at odd batch sizes (fp32 too; plain torch reproduces
        # it: nn.Conv2d(8, 16, 1, 2) on a (3, 8, 32, 32) channels_last input, then backward)
        model.train()
        loss = model(torch.cat([xc, xc[:1]]).contiguous(memory_format=torch.channels_last))
        loss = loss.float().square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.slow
def test_torch_compile_fullgraph(tiny, x):
    model = netspec.build(tiny, seed=0).eval()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        ok, err = _close(compiled(x), model(x), 1e-5)
    assert ok, err
