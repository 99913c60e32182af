"""Distributed training under torchrun (gloo on CPU, 2 processes): rank 0 alone writes the run, the
validation set is counted exactly once (81 examples, an odd number: no padding duplicates), DDP
keeps the weights identical on both ranks, the `netspec.cli` entry point works under torchrun, and a
restarted worker group (TORCHELASTIC_RESTART_COUNT > 0) resumes from the last checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from netspec.train import checkpoint as ckpt
from netspec.train import train
from netspec.train.distributed import ShardSampler

from .conftest import SPECS

ROOT = SPECS.parent
LENET = str(SPECS / "lenet5.yaml")
DATA = "synthetic:405"  # 324 train, 81 val (odd: a padding sampler would count one twice)
SETS = ["train.epochs=2", "train.batch_size=32", f"train.data={DATA}", "train.plots=false"]

WORKER = """
import os, sys, torch
from netspec.train import train
out = sys.argv[1]
stop = int(os.environ.get("STOP_AFTER", "0")) or None
resume = os.environ.get("RESUME") == "1"
result = train(
    sys.argv[2], out=out, log="quiet", device="cpu", overrides=sys.argv[3:], stop_after=stop, resume=resume
)
rank = int(os.environ["RANK"])
torch.save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, f"{out}/rank{rank}.weights")
print("history", len(result.history), result.history[-1].get("val_n"))
"""


def _torchrun(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_shard_sampler_covers_every_index_once():
    parts = [list(ShardSampler(181, r, 2)) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == list(range(181)) and len(parts[0]) == len(ShardSampler(181, 0, 2))
    assert [len(ShardSampler(5, r, 4)) for r in range(4)] == [2, 1, 1, 1]


def test_ddp_two_processes_gloo(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run"
    bn = "defaults.conv.norm=batchnorm"  # BatchNorm buffers too must end up equal on both ranks
    proc = _torchrun([str(script), str(out), LENET, *SETS, bn], tmp_path)
    assert proc.stdout.count("history 2 81") == 2, proc.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # written once, by rank 0
    assert all(r["val_n"] == 81 for r in rows)  # every validation example exactly once
    recipe = (out / "recipe.yaml").read_text()
    assert "world_size: 2" in recipe and "iters_per_epoch: 5" in recipe  # 324 // 2 // 32
    w0, w1 = torch.load(out / "rank0.weights"), torch.load(out / "rank1.weights")
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    assert any("running_mean" in k for k in w0)
    state = ckpt.load_checkpoint(out / ckpt.LAST)
    assert all(torch.equal(state["model"][k], w0[k]) for k in w0)
    assert len(state["rng_ranks"]) == 2 and not torch.equal(
        state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"]
    )
    # the val metrics of the distributed run are those of a single process on the whole val set
    from netspec.train import evaluate_checkpoint

    ev = evaluate_checkpoint(LENET, out, overrides=[f"train.data={DATA}", bn], device="cpu")
    assert ev["n"] == 81 and ev["top1"] == pytest.approx(rows[-1]["val_top1"])
    assert ev["loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-5)


def test_ddp_cli_entry_point(tmp_path):
    out = tmp_path / "cli"
    args = ["-m", "netspec.cli", "train", LENET, "--epochs", "1", "--out", str(out), "--json"]
    proc = _torchrun([*args, *(x for s in SETS[1:] for x in ("--set", s))], tmp_path)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("epoch") == 1  # rank 0 alone reports
    assert "x 2 processes" in next(e for e in events if e["event"] == "start")["device"]
    assert len(ckpt.epoch_checkpoints(out)) == 1


def test_torchrun_restart_resumes(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    sets = ["train.epochs=2", "train.batch_size=32", f"train.data={DATA}", "train.plots=false"]
    train(LENET, out=out, log="quiet", device="cpu", overrides=sets, stop_after=1)
    notes: list[str] = []
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    result = train(
        LENET,
        out=out,
        device="cpu",
        overrides=sets,
        log=lambda e: notes.append(e.get("message", "")) if e["event"] == "note" else None,
    )
    assert any("resumed from" in n for n in notes) and [r["epoch"] for r in result.history] == [1, 2]


@pytest.mark.slow
def test_ddp_resume_is_exact(tmp_path, monkeypatch):
    """Stopped after epoch 1 and resumed (every rank restores its own RNG state, the sampler its
    epoch): the same weights, bitwise, as the uninterrupted run, with augmentation (digits shifts)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    sets = ["train.epochs=2", "train.batch_size=64", "train.val_fraction=0.1006", "train.plots=false"]
    _torchrun([str(script), str(tmp_path / "full"), LENET, *sets], tmp_path)
    monkeypatch.setenv("STOP_AFTER", "1")
    _torchrun([str(script), str(tmp_path / "cut"), LENET, *sets], tmp_path)
    monkeypatch.delenv("STOP_AFTER")
    monkeypatch.setenv("RESUME", "1")
    _torchrun([str(script), str(tmp_path / "cut"), LENET, *sets], tmp_path)
    for rank in (0, 1):
        a = torch.load(tmp_path / "full" / f"rank{rank}.weights")
        b = torch.load(tmp_path / "cut" / f"rank{rank}.weights")
        assert all(torch.equal(a[k], b[k]) for k in a), rank
    full = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    cut = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(r).items() if k not in ("images_per_s", "time")} for r in full]
    assert strip == [
        {k: v for k, v in json.loads(r).items() if k not in ("images_per_s", "time")} for r in cut
    ]
