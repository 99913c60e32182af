"""Issue 7: a training run under real failures. A SIGKILL while a checkpoint is being written (the
previous checkpoint stays whole, the partial temporary file is never read and is removed on resume),
a disk too small for the run (refused before training, from an estimate of a checkpoint's size), and
a disk that fills up mid-run (the last good checkpoint is kept; the CLI exits 1, no traceback)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import torch

import netspec
from netspec.train import (
    CheckpointError,
    TrainError,
    load_checkpoint,
    load_latest,
    runner,
    save_checkpoint,
    train,
)
from netspec.train import checkpoint as ckpt

from .conftest import SPECS, run_cli

ROOT = SPECS.parent
LENET = str(SPECS / "lenet5.yaml")
SETS = ["train.epochs=2", "train.mixup_alpha=0.2", "train.data=synthetic:320", "train.plots=false"]

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- SIGKILL during a checkpoint write

# The child trains LeNet-5 for 2 epochs through netspec's own checkpoint writer; only the file object
# under it is slowed (16 KiB per 20 ms, flushed) for the argv[4]-th write of the file named argv[3],
# so that the parent can see the partial file grow and kill the process in the middle of that write.
_CHILD = """
import os, sys, tempfile, time, torch
torch.set_num_threads(1)
from netspec.train import train

slow_name, nth, seen, slow_fds = sys.argv[3], int(sys.argv[4]), [], set()
real_mkstemp, real_fdopen = tempfile.mkstemp, os.fdopen

def mkstemp(*args, **kwargs):
    fd, path = real_mkstemp(*args, **kwargs)
    if os.path.basename(path).startswith("." + slow_name + ".") and ".sha256." not in path:
        seen.append(path)
        if len(seen) == nth:
            slow_fds.add(fd)
            print(path, flush=True)  # the parent watches this file grow
    return fd, path

class Slow:
    def __init__(self, f):
        self.f = f
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.f.__exit__(*exc)
    def __getattr__(self, name):
        return getattr(self.f, name)
    def write(self, data):
        view = memoryview(data)
        for i in range(0, len(view), 1 << 14):
            self.f.write(view[i : i + (1 << 14)])
            self.f.flush()
            time.sleep(0.02)
        return len(view)

def fdopen(fd, *args, **kwargs):
    f = real_fdopen(fd, *args, **kwargs)
    return Slow(f) if fd in slow_fds else f

tempfile.mkstemp, os.fdopen = mkstemp, fdopen
train(sys.argv[1], out=sys.argv[2], overrides=sys.argv[5:], log="quiet")
"""


def _partials(out: Path) -> list[Path]:
    return sorted(p for d in (out, out / ckpt.EPOCH_DIR) if d.is_dir() for p in d.glob(".*.tmp"))


def _kill_during_write(out: Path, name: str, nth: int) -> Path:
    """Run the child, wait for the temporary file of the `nth` write of `name` to hold at least
    64 KiB, SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", _CHILD, LENET, str(out), name, str(nth), *SETS]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    partial = None
    try:
        announced = proc.stdout.readline().strip()  # the slowed temporary file, once it is created
        deadline = time.monotonic() + 30
        while announced and proc.poll() is None and time.monotonic() < deadline:
            if os.path.getsize(announced) >= 1 << 16:
                proc.send_signal(signal.SIGKILL)
                partial = Path(announced)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None and partial is None:
            proc.kill()
        proc.wait(timeout=60)
    assert partial is not None, f"the write of {name} was never seen in progress (exit {proc.returncode})"
    assert proc.returncode == -signal.SIGKILL
    return partial


@pytest.mark.parametrize(("name", "nth"), [("epoch_0002.pt", 1), ("last.pt", 2)])
def test_sigkill_during_checkpoint_write(tmp_path, name, nth):
    out = tmp_path / "run"
    partial = _kill_during_write(out, name, nth)
    cut_at = partial.stat().st_size
    assert cut_at >= 1 << 16  # the write had begun ...
    assert [p.name for p in _partials(out)] == [partial.name]

    if name == "epoch_0002.pt":  # the previous last.pt (epoch 1) is whole: its sha256 matches, it loads
        data = (out / ckpt.LAST).read_bytes()
        assert (out / "last.pt.sha256").read_text().split()[0] == hashlib.sha256(data).hexdigest()
        assert load_checkpoint(out / ckpt.LAST)["epoch"] == 1
    else:  # last.pt goes before its new checksum and file are written (never beside another's checksum)
        data = ckpt.epoch_path(out, 2).read_bytes()
        assert not (out / ckpt.LAST).exists()
        assert (out / "last.pt.sha256").read_text().split()[0] == hashlib.sha256(data).hexdigest()
    # the partial file is never taken for a checkpoint
    epochs = [e for e, _ in ckpt.epoch_checkpoints(out)]
    if name == "epoch_0002.pt":  # killed in the first write of epoch 2: epoch 1 is the newest
        assert epochs == [1] and not ckpt.epoch_path(out, 2).exists()
        expected, expected_epoch = out / ckpt.LAST, 1
    else:  # killed writing last.pt: epoch_0002.pt was already whole and is newer than last.pt
        assert epochs == [2, 1]
        expected, expected_epoch = ckpt.epoch_path(out, 2), 2
    path, state, skipped = load_latest(out)
    assert (path, state["epoch"], skipped) == (expected, expected_epoch, [])

    # resume picks that checkpoint, removes the partial file and finishes the run
    events = []
    res = train(LENET, out=out, overrides=SETS, resume=True, log=events.append)
    notes = [e["message"] for e in events if e["event"] == "note"]
    assert any(f"resumed from {expected} (epoch {expected_epoch}" in m for m in notes), notes
    assert any(m.startswith(f"removed {partial}") for m in notes), notes
    assert _partials(out) == [] and not partial.exists()
    assert [r["epoch"] for r in res.history] == [1, 2]
    assert load_checkpoint(out / ckpt.LAST)["epoch"] == 2  # also when resume had nothing left to train
    assert cut_at < ckpt.epoch_path(out, 2).stat().st_size  # ... and was cut short


def test_remove_partial_touches_only_netspec_temp_files(tmp_path):
    (tmp_path / ckpt.EPOCH_DIR).mkdir()
    ours = [
        tmp_path / ".last.pt.abc123_x.tmp",
        tmp_path / ".last.pt.sha256.q1w2e3r4.tmp",
        tmp_path / ".metrics.jsonl.zzzzzzzz.tmp",
        tmp_path / ckpt.EPOCH_DIR / ".epoch_0007.pt.k9j8h7g6.tmp",
    ]
    others = [tmp_path / ".mine.tmp", tmp_path / "last.pt", tmp_path / ".last.pt.tmp", tmp_path / "notes.txt"]
    for p in ours + others:
        p.write_bytes(b"x")
    assert ckpt.remove_partial(tmp_path) == sorted(ours)
    assert all(p.exists() for p in others) and not any(p.exists() for p in ours)


# ---------------------------------------------------------------- a full disk

Usage = namedtuple("Usage", "total used free")


def test_too_little_space_is_refused_before_training(tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = []

    def disk_usage(path):
        calls.append(Path(path))
        return Usage(10**12, 10**12 - 100_000, 100_000)  # 97.7 KiB free

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    started = time.perf_counter()
    with pytest.raises(TrainError) as err:
        train(LENET, out=out, overrides=SETS, log="quiet")
    text = str(err.value)
    assert calls == [out]
    # LeNet-5 (61,706 parameters, fp32) with SGD momentum: 2 x 246,824 bytes + 64 KiB = 559,184
    assert "not enough free space in the output directory" in text and str(out) in text, text
    assert "97.7 KiB free" in text and "546.1 KiB (559184 bytes)" in text and "1.6 MiB" in text, text
    assert "--out" in text
    assert not (out / ckpt.LAST).exists() and not (out / "metrics.jsonl").exists()
    assert time.perf_counter() - started < 10  # no epoch was run


def test_checkpoint_size_estimate_is_close(tmp_path):
    sets = ["train.epochs=1", "train.ema_decay=0.9", "train.data=synthetic:64", "train.plots=false"]
    res = train(LENET, out=tmp_path, overrides=sets, log="quiet")
    recipe = runner.recipe_from_spec(netspec.load_spec(LENET, sets))
    run = runner._Run(
        model=res.model,
        optimizer=runner.make_optimizer(res.model, recipe),
        scaler=None,
        ema=runner.EMA(res.model, 0.9),
        generator=torch.Generator(),
    )
    estimate = runner.checkpoint_bytes(run, recipe)
    actual = (tmp_path / ckpt.LAST).stat().st_size
    assert actual <= estimate <= actual + 128 * 1024, (actual, estimate)


def test_enough_space_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 0, 2 * 2**20))  # 2 MiB
    sets = ["train.epochs=1", "train.data=synthetic:64", "train.plots=false"]
    res = train(LENET, out=tmp_path, overrides=sets, log="quiet")
    assert res.history and (tmp_path / ckpt.LAST).exists()


def _full_disk_at(monkeypatch, call: int) -> list[int]:
    """torch.save raises ENOSPC from its `call`-th call on (1-based)."""
    real, calls = torch.save, []

    def save(*args, **kwargs):
        calls.append(1)
        if len(calls) >= call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return calls


def test_disk_full_mid_run_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    _full_disk_at(monkeypatch, 2)  # epoch 1 is saved, epoch 2 is not
    with pytest.raises(TrainError) as err:
        train(LENET, out=tmp_path, overrides=SETS, log="quiet")
    text = str(err.value)
    assert "No space left on device" in text and "training stopped" in text, text
    assert f"the last good checkpoint, {tmp_path / ckpt.LAST} (epoch 1), is kept" in text, text
    assert "free some space, then resume with --resume" in text
    assert load_checkpoint(tmp_path / ckpt.LAST)["epoch"] == 1
    assert [e for e, _ in ckpt.epoch_checkpoints(tmp_path)] == [1] and _partials(tmp_path) == []
    monkeypatch.undo()
    res = train(LENET, out=tmp_path, overrides=SETS, resume=True, log="quiet")
    assert [r["epoch"] for r in res.history] == [1, 2]


def test_disk_full_mid_run_cli_exits_1_without_traceback(tmp_path, monkeypatch):
    _full_disk_at(monkeypatch, 2)
    out = tmp_path / "run"
    result = run_cli("train", LENET, "--epochs", "2", "--out", str(out), "--quiet")  # asserts no traceback
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output and "(epoch 1), is kept" in result.output
    assert load_checkpoint(out / ckpt.LAST)["epoch"] == 1


def test_disk_full_before_the_first_checkpoint(tmp_path, monkeypatch):
    _full_disk_at(monkeypatch, 1)
    with pytest.raises(
        TrainError, match="No space left on device; training stopped; no checkpoint was written"
    ):
        train(LENET, out=tmp_path, overrides=["train.epochs=1"], log="quiet")
    assert not (tmp_path / ckpt.LAST).exists() and _partials(tmp_path) == []


class _Evil:
    """Unpickling this runs os.mkdir: a stand-in for arbitrary code in a checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_training_checkpoint_with_a_valid_checksum_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    state = {"format": "netspec-train", "epoch": 1, "model": {"w": torch.zeros(1)}, "x": _Evil(marker)}
    save_checkpoint(tmp_path / ckpt.LAST, state)  # the checksum is right: only weights_only stops it
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / ckpt.LAST)
    with pytest.raises(TrainError, match="no usable checkpoint"):
        train(LENET, out=tmp_path, overrides=SETS, resume=True, log="quiet")
    assert not marker.exists()
