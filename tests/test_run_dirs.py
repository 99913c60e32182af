"""Issue 16 item 4: run directories as people expect them. New runs of a name take runs/NAME,
runs/NAME-2, ... (never a directory that holds a run, and two runs starting at once take two);
`--resume` without `--out` continues the newest; `keep_checkpoints` prunes per-epoch checkpoints
while `last.pt` and `best.pt` (the best validation top-1, checked by evaluating it again) stay; files
follow the umask; the command line ends a run with one summary line."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from netspec.train import checkpoint as ckpt
from netspec.train import evaluate_checkpoint, load_checkpoint, rundir, train

from .conftest import SPECS, run_cli

ROOT = SPECS.parent
LENET = str(SPECS / "lenet5.yaml")
SETS = ["train.data=synthetic:64", "train.batch_size=16", "train.plots=false", "train.epochs=1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _names(runs) -> list[str]:
    return sorted(p.name for p in runs.iterdir())


def test_new_runs_of_a_name_take_the_next_number_and_resume_takes_the_newest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outs = [train(LENET, overrides=SETS, log="quiet").out for _ in range(3)]
    assert [str(p) for p in outs] == ["runs/lenet5", "runs/lenet5-2", "runs/lenet5-3"]
    assert train(LENET, overrides=SETS, log="quiet", name="mine").out.name == "mine"
    # a stopped run in the newest directory: --resume (no --out) continues it, and only it
    newest = train(LENET, overrides=[*SETS, "train.epochs=2"], log="quiet", stop_after=1).out
    assert str(newest) == "runs/lenet5-4"
    before = {p: (p / "last.pt").read_bytes() for p in outs}
    resumed = train(LENET, overrides=[*SETS, "train.epochs=2"], log="quiet", resume=True)
    assert resumed.out == newest and [r["epoch"] for r in resumed.history] == [1, 2]
    assert all((p / "last.pt").read_bytes() == data for p, data in before.items())
    # --overwrite without --out starts runs/NAME itself over
    again = train(LENET, overrides=SETS, log="quiet", overwrite=True)
    assert str(again.out) == "runs/lenet5" and _names(tmp_path / "runs") == [
        "lenet5", "lenet5-2", "lenet5-3", "lenet5-4", "mine",
    ]  # fmt: skip


def test_a_directory_a_run_left_before_its_first_checkpoint_is_taken_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(LENET, overrides=SETS, log="quiet")
    with pytest.raises(Exception, match="synthetic"):  # fails after claiming runs/lenet5-2
        train(LENET, overrides=[*SETS, "train.data=synthetic:x"], log="quiet")
    assert rundir.is_run_dir(tmp_path / "runs" / "lenet5-2")
    assert not rundir.holds_run(tmp_path / "runs" / "lenet5-2")
    assert str(train(LENET, overrides=SETS, log="quiet").out) == "runs/lenet5-2"
    (tmp_path / "runs" / "lenet5-3").mkdir()
    (tmp_path / "runs" / "lenet5-3" / "notes.txt").write_text("mine")  # someone else's: skipped
    assert str(train(LENET, overrides=SETS, log="quiet").out) == "runs/lenet5-4"
    assert (tmp_path / "runs" / "lenet5-3" / "notes.txt").read_text() == "mine"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_two_runs_starting_at_once_take_two_directories(tmp_path):
    cmd = [sys.executable, "-m", "netspec.cli", "train", "lenet5", "--quiet", "--data", "synthetic:64"]
    cmd += ["--epochs", "1", "--set", "train.plots=false"]
    procs = [
        subprocess.Popen(
            cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert _names(tmp_path / "runs") == ["lenet5", "lenet5-2"]
    for name in ("lenet5", "lenet5-2"):
        assert load_checkpoint(tmp_path / "runs" / name / "last.pt")["epoch"] == 1
    # --quiet prints the one summary line, and only it
    lines = [out.strip() for out, _ in outputs]
    assert [line.count("done:") for line in lines] == [1, 1] and all("\n" not in x for x in lines)
    assert sorted(line.split(",")[0] for line in lines) == ["done: runs/lenet5", "done: runs/lenet5-2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "x", "--out", "somewhere"], "--name and --out both choose the run directory"),
        (["--name", "../up"], "cannot name the run directory"),
        (["--name", "-x"], "cannot name the run directory"),
    ],
)
def test_bad_names_are_refused_with_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run_cli("train", "lenet5", "--epochs", "1", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not any(tmp_path.iterdir())


def test_the_command_line_prints_one_summary_line(tmp_path):
    result = run_cli("train", "lenet5", "--out", str(tmp_path / "run"), *[f"--set={s}" for s in SETS])
    assert result.exit_code == 0, result.output
    assert result.output.count("done:") == 1 and result.output.rstrip().splitlines()[-1].startswith("done:")


def test_keep_checkpoints_and_best_pt_by_validation_top1(tmp_path):
    out = tmp_path / "run"
    sets = [*SETS, "train.epochs=5", "train.keep_checkpoints=2", "train.optimizer.lr=0.2"]
    result = train(LENET, out=out, overrides=sets, log="quiet")
    assert [e for e, _ in ckpt.epoch_checkpoints(out)] == [5, 4]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(rows, key=lambda r: r["val_top1"])  # the first of the best
    state = torch.load(out / "best.pt", weights_only=True)  # plain torch reads it
    assert state["epoch"] == best["epoch"] == result.best_epoch
    digest = hashlib.sha256((out / "best.pt").read_bytes()).hexdigest()
    assert (out / "best.pt.sha256").read_text().split()[0] == digest
    # its weights are the best epoch's: evaluated again, they score the best top-1 and loss
    metrics = evaluate_checkpoint(LENET, out / "best.pt", data="synthetic:64")
    assert metrics["top1"] == pytest.approx(best["val_top1"]) and metrics["loss"] == pytest.approx(
        best["val_loss"]
    )
    # keep_checkpoints: 0 keeps last.pt and best.pt only; a resume still works from last.pt
    train(
        LENET,
        out=out,
        overrides=[*sets, "train.epochs=6", "train.keep_checkpoints=0"],
        log="quiet",
        resume=True,
    )
    assert ckpt.epoch_checkpoints(out) == [] and load_checkpoint(out / "last.pt")["epoch"] == 6
    assert {"best.pt", "best.pt.sha256"} <= rundir.RUN_FILES


def test_a_crash_before_best_pt_is_written_is_repaired_on_resume(tmp_path):
    out = tmp_path / "run"
    train(LENET, out=out, overrides=SETS, log="quiet")
    (out / "best.pt").unlink()  # killed between last.pt and best.pt
    (out / "best.pt.sha256").unlink()
    train(LENET, out=out, overrides=[*SETS, "train.epochs=1"], log="quiet", resume=True)
    assert (out / "best.pt").read_bytes() == (out / "last.pt").read_bytes()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_run_files_follow_the_umask(tmp_path, umask):
    out = tmp_path / "run"
    old = os.umask(umask)
    try:
        train(
            LENET, out=out, overrides=[*SETS, "train.plots=true", "train.loggers=[tensorboard]"], log="quiet"
        )
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"last.pt", "best.pt", "metrics.csv", "spec.yaml", "loss.png"}
    for path in files:
        expected = (0o644 if path.name == rundir.LOCK else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))
