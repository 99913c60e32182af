"""Issue 14 item 1 (the whole run): an epoch's files are written by a background thread while the next
epoch trains (netspec/train/writes.py), in order, with failures raised on the training thread; plots of
a short run are drawn once, at its end. The write protocol itself, and a kill at every step of it, are
test_run_safety's."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from netspec.train import TrainError, load_checkpoint, train
from netspec.train import checkpoint as ckpt
from netspec.train import plots as plots_module
from netspec.train.writes import BackgroundWrites

from .conftest import SPECS

LENET = str(SPECS / "lenet5.yaml")
SETS = ["train.data=synthetic:64", "train.batch_size=16", "train.plots=false", "train.epochs=2"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_jobs_run_in_order_on_one_thread_that_is_not_the_callers():
    writes, seen = BackgroundWrites(), []
    for i in range(5):
        writes.submit(lambda i=i: seen.append((i, threading.current_thread())))
    writes.wait()
    writes.close()
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert len({t for _, t in seen}) == 1 and seen[0][1] is not threading.main_thread()


def test_a_failed_job_is_raised_on_the_callers_thread_before_the_next_job_is_given():
    writes, seen = BackgroundWrites(), []

    def full() -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "last.pt")

    writes.submit(full)
    with pytest.raises(OSError, match="No space left on device"):
        writes.submit(lambda: seen.append("next epoch"))
    writes.close()
    assert seen == []


def test_close_finishes_the_job_in_flight():
    writes, done = BackgroundWrites(), []
    writes.submit(lambda: (time.sleep(0.2), done.append(True)))
    writes.close()
    assert done == [True]
    writes.close()  # twice is harmless


def test_an_epochs_checkpoint_is_written_while_the_next_epoch_trains(tmp_path, monkeypatch):
    """Epoch 1's checkpoint write waits until epoch 2 has taken a step: on the training thread it would
    wait for ever (here: until the timeout, and the test fails)."""
    epoch_2_stepping, overlapped = threading.Event(), []
    real = ckpt.save_checkpoint

    def slow_disk(path, data):
        if os.path.basename(path) == "epoch_0001.pt":
            overlapped.append(epoch_2_stepping.wait(timeout=60))
        return real(path, data)

    def listener(event) -> None:
        if event["event"] == "step" and event["epoch"] == 2:
            epoch_2_stepping.set()

    monkeypatch.setattr(ckpt, "save_checkpoint", slow_disk)
    result = train(
        LENET, out=tmp_path / "run", overrides=SETS, log="quiet", log_every=1, callbacks=[listener]
    )
    assert overlapped == [True]
    # the run returned with every file whole: the last write was waited for
    assert load_checkpoint(tmp_path / "run" / ckpt.LAST)["epoch"] == 2 == result.history[-1]["epoch"]
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 3  # header and two epochs


def test_a_full_disk_during_a_background_write_stops_the_run_at_the_next_epoch(tmp_path, monkeypatch):
    real = ckpt.atomic_write_bytes

    def full(path, data):
        if os.path.basename(path) == "epoch_0001.pt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    out = tmp_path / "run"
    with pytest.raises(TrainError, match="No space left on device") as err:
        train(LENET, out=out, overrides=[*SETS, "train.epochs=4"], log="quiet")
    assert "no checkpoint was written" in str(err.value)
    assert ckpt.epoch_checkpoints(out) == [] and not (out / ckpt.LAST).exists()
    assert not (out / "metrics.csv").exists()  # epoch 1's metrics came after its checkpoint: dropped


def test_plots_of_a_short_run_are_drawn_once_at_its_end(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    drawn, real = [], plots_module.write_plots

    def counted(out, history, lrs):
        drawn.append(len(history))
        return real(out, history, lrs)

    monkeypatch.setattr(plots_module, "write_plots", counted)
    sets = [*SETS, "train.plots=true", "train.epochs=3"]
    train(LENET, out=tmp_path / "run", overrides=sets, log="quiet")
    assert drawn == [3]  # seconds of training: not worth a redraw within 2 % of the run's time
    assert all((tmp_path / "run" / name).stat().st_size > 0 for name in plots_module.NAMES)


def test_a_long_runs_plots_are_redrawn_within_their_budget(monkeypatch):
    """The budget rule on a clock: a draw after an earlier epoch when the time spent drawing, with the
    next draw, stays within 2 % of the run's time so far."""
    now = [0.0]
    monkeypatch.setattr(plots_module.time, "perf_counter", lambda: now[0])
    plotter = plots_module.Plotter()
    now[0] = 10.0
    assert not plotter.due(last=False) and plotter.due(last=True)  # 1 s assumed > 2 % of 10 s
    now[0] = 50.0
    assert plotter.due(last=False)  # 1 s <= 2 % of 50 s
    monkeypatch.setattr(
        plots_module, "write_plots", lambda out, history, lrs: now.__setitem__(0, now[0] + 0.5)
    )
    plotter.draw(None, [], [])
    assert plotter.spent == 0.5 and plotter.last_cost == 0.5
    now[0] = 60.0
    assert plotter.due(last=False)  # 0.5 + 0.5 <= 1.2
    plotter.spent = 1.0
    assert not plotter.due(last=False)  # 1.0 + 0.5 > 1.2
