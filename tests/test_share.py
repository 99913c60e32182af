"""Checkpoints people can share (issue 15 item 6): `compile` from a run directory or checkpoint writes
the trained weights (ONNX checked with onnxruntime, safetensors with plain `safetensors`), and `eval`
takes a run directory alone and a checkpoint shared without its `.sha256`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from netspec.resolve import load_spec, loads_spec
from netspec.torch_backend import build
from netspec.train import train
from tests.conftest import SPECS, run_cli

LENET = SPECS / "lenet5.yaml"
SETS = ["train.epochs=1", "train.data=synthetic:96", "train.batch_size=32", "train.plots=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("share") / "lenet5"
    torch.set_num_threads(1)
    train(LENET, out=out, overrides=[*SETS, "train.ema_decay=0.5"], device="cpu", log="quiet")
    return out


def _checkpoint(run: Path) -> dict:
    """The run's last checkpoint, read with plain torch.load (not netspec's reader)."""
    return torch.load(run / "last.pt", weights_only=True)


def _trained(run: Path, key: str = "model") -> torch.nn.Module:
    model = build(load_spec(LENET), seed=0)
    model.load_state_dict(_checkpoint(run)[key])
    return model.eval()


def test_compile_a_run_directory_to_onnx_carries_the_trained_weights(run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "lenet5.onnx"
    result = run_cli("compile", str(run), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"weights from {run / 'last.pt'}" in result.output
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = _trained(run)(x)
        fresh = build(load_spec(LENET), seed=0).eval()(x)
    assert torch.allclose(torch.from_numpy(logits), expected, atol=1e-5)
    assert not torch.allclose(torch.from_numpy(logits), fresh, atol=1e-3)  # not an untrained build


def test_safetensors_holds_the_weights_and_the_resolved_spec(run, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from netspec.compile import FORMAT_TAG, load_compiled

    out = tmp_path / "lenet5.safetensors"
    assert run_cli("compile", str(run / "last.pt"), "-o", str(out)).exit_code == 0
    tensors = load_file(str(out))  # plain safetensors
    state = _checkpoint(run)["model"]
    assert tensors.keys() == state.keys() and all(torch.equal(tensors[k], state[k]) for k in state)
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT_TAG and meta["spec_name"] == "lenet5"
    assert json.loads(meta["input_shape"]) == [1, 32, 32]
    assert loads_spec(meta["spec"]).name == "lenet5"
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_compiled(out)(x), _trained(run)(x))


def test_compile_ema_writes_the_ema_weights(run, tmp_path):
    from netspec.compile import read_compiled

    out = tmp_path / "ema.pt"
    assert run_cli("compile", str(run), "--ema", "-o", str(out)).exit_code == 0
    written = read_compiled(out)["state_dict"]
    ema, model = _checkpoint(run)["ema"], _checkpoint(run)["model"]
    assert all(torch.equal(written[k], ema[k]) for k in ema)
    assert any(not torch.equal(ema[k], model[k]) for k in ema)


def test_compile_of_trained_weights_refuses_spec_changes(run, tmp_path):
    result = run_cli("compile", str(run), "-o", str(tmp_path / "x.pt"), "--set", "classes=5")
    assert result.exit_code == 2 and "compiled as trained" in result.output


def test_eval_takes_a_run_directory_alone(run):
    alone = run_cli("eval", str(run), "--json")
    named = run_cli("eval", str(LENET), "-c", str(run), "--set", "train.data=synthetic:96", "--json")
    assert alone.exit_code == 0 and named.exit_code == 0, alone.output + named.output
    a, b = json.loads(alone.output), json.loads(named.output)
    assert a == b and a["checkpoint"] == str(run / "last.pt")


def test_eval_reads_a_checkpoint_without_its_checksum_after_a_warning(run, tmp_path):
    shared = tmp_path / "shared.pt"
    shutil.copy(run / "last.pt", shared)  # the file alone, as people send it
    result = run_cli("eval", str(LENET), "-c", str(shared), "--set", "train.data=synthetic:96", "--json")
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "no checksum file" in result.output


def test_eval_refuses_a_checkpoint_whose_checksum_is_wrong(run, tmp_path):
    bad = tmp_path / "bad.pt"
    shutil.copy(run / "last.pt", bad)
    (tmp_path / "bad.pt.sha256").write_text("0" * 64 + "  bad.pt\n")
    result = run_cli("eval", str(LENET), "-c", str(bad), "--set", "train.data=synthetic:96")
    assert result.exit_code == 1 and "checksum mismatch" in result.output


def test_init_from_a_run_directory_starts_from_its_weights(run, tmp_path):
    """Fine-tuning from a netspec run: its newest checkpoint pairs by name, with the head kept."""
    notes: list[str] = []
    sets = [*SETS, f"train.init.weights={run}", "train.init.reinit_head=true"]
    result = train(
        LENET,
        out=tmp_path / "ft",
        overrides=sets,
        device="cpu",
        log=lambda e: notes.append(str(e)),
        stop_after=0,
    )
    start, state = result.model.state_dict(), _checkpoint(run)["model"]
    for k, v in state.items():
        assert torch.equal(start[k], v) != k.startswith("output."), k
    assert any("re-initialised the head (reinit_head: true): output" in n for n in notes)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (__import__("os").mkdir, (self.marker,))


def test_a_shared_checkpoint_holding_code_is_refused_without_its_checksum_too(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "netspec-train", "model": {}, "x": _Evil(marker)}, evil)
    for args in (("eval", str(LENET), "-c", str(evil)), ("train", str(LENET), "--init", str(evil))):
        result = run_cli(*args, "--out", str(tmp_path / "r")) if args[0] == "train" else run_cli(*args)
        assert result.exit_code in (1, 2) and "pickled" in result.output, result.output
    assert not marker.exists()
