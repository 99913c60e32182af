"""Issue 16 item 3: loggers and callbacks. TensorBoard's event files are read back with TensorBoard's
own reader (EventAccumulator) and compared with the run's metrics; a callback hears exactly what
`--json` prints, in order; a stop it asks for ends the run after the epoch, and the resumed run is
bitwise the uninterrupted one. A logger whose package is missing is a located error naming the extra."""

from __future__ import annotations

import json
import math

import pytest
import torch

from netspec.train import checkpoint as ckpt
from netspec.train import load_checkpoint, train
from netspec.train import loggers as loggers_module
from netspec.train.progress import StopTraining

from .conftest import SPECS, run_cli
from .test_train import tensors_equal

LENET = str(SPECS / "lenet5.yaml")
# 51 training images in batches of 16 (the last, partial one dropped): 3 iterations an epoch
SETS = ["train.data=synthetic:64", "train.batch_size=16", "train.plots=false", "train.epochs=3"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _accumulator(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_tensorboard_events_read_back_with_tensorboards_reader(tmp_path):
    out = tmp_path / "run"
    events = []
    result = train(
        LENET,
        out=out,
        overrides=[*SETS, "train.loggers=[csv, tensorboard]"],
        log="quiet",
        log_every=1,
        callbacks=[events.append],
    )
    acc = _accumulator(out / "tensorboard")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows == result.history
    for key, tag in [
        ("train_loss", "epoch/train_loss"),
        ("val_loss", "val/loss"),
        ("val_top1", "val/top1"),
        ("val_top5", "val/top5"),
        ("lr", "epoch/lr"),
        ("images_per_s", "epoch/images_per_s"),
    ]:
        logged = _scalars(acc, tag)
        assert [s for s, _ in logged] == [r["step"] for r in rows], tag  # the training step's axis
        assert [v for _, v in logged] == pytest.approx([r[key] for r in rows], rel=1e-6), tag
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 9
    for key, tag in [("loss", "train/loss"), ("lr", "train/lr"), ("images_per_s", "train/images_per_s")]:
        logged = _scalars(acc, tag)
        assert [s for s, _ in logged] == [e["step"] for e in steps] == list(range(1, 10))
        assert [v for _, v in logged] == pytest.approx([e[key] for e in steps], rel=1e-6)
    (text,) = acc.Tensors("spec/text_summary")
    shown = text.tensor_proto.string_val[0].decode()
    assert "name: lenet5" in shown and shown == "\n".join(
        "    " + line for line in (out / "spec.yaml").read_text().splitlines()
    )


def test_a_resumed_run_shows_each_step_once_in_tensorboard(tmp_path):
    """A run killed after it logged epoch 2's steps but before epoch 2's checkpoint: the resume redoes
    epoch 2 and TensorBoard's reader sees one value per step (the dead run's tail is purged)."""
    out = tmp_path / "run"
    sets = [*SETS, "train.epochs=2", "train.loggers=[tensorboard]"]
    train(LENET, out=out, overrides=sets, log="quiet", log_every=1)
    first = _scalars(_accumulator(out / "tensorboard"), "train/loss")
    for path in (out / ckpt.LAST, ckpt.epoch_path(out, 2)):  # as if killed before epoch 2's checkpoint
        path.unlink()
        ckpt.sidecar(path).unlink()
    train(LENET, out=out, overrides=sets, log="quiet", log_every=1, resume=True)
    acc = _accumulator(out / "tensorboard")
    assert len(list((out / "tensorboard").iterdir())) == 2  # one event file per process
    assert [s for s, _ in _scalars(acc, "train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in _scalars(acc, "val/top1")] == [3, 6]
    # a resumed run is the uninterrupted one (bitwise on CPU): the redone epoch logs the same losses
    assert _scalars(acc, "train/loss") == first


@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_a_missing_logger_package_is_a_located_error_naming_the_extra(tmp_path, monkeypatch, logger):
    """Exit 2 at the YAML line, before anything is written. mlflow is not installed here (it pulls
    ~50 packages); tensorboard is, and is hidden the way a missing one looks (find_spec is None)."""
    find_spec = loggers_module.importlib.util.find_spec
    monkeypatch.setattr(
        loggers_module.importlib.util, "find_spec", lambda name: None if name == logger else find_spec(name)
    )
    spec = tmp_path / "net.yaml"
    spec.write_text(f"name: net\nextends: zoo:lenet5\ntrain:\n  loggers:\n    - csv\n    - {logger}\n")
    monkeypatch.chdir(tmp_path)
    result = run_cli("train", str(spec), "--epochs", "1")
    assert result.exit_code == 2, result.output
    assert f"net.yaml:6:7: train.loggers.1: the {logger} logger needs" in result.output
    assert f'pip install "netspec[{logger}]"' in result.output
    assert not (tmp_path / "runs").exists()


def test_a_missing_mlflow_is_refused_at_the_override(tmp_path, monkeypatch):
    find_spec = loggers_module.importlib.util.find_spec
    monkeypatch.setattr(
        loggers_module.importlib.util, "find_spec", lambda name: None if name == "mlflow" else find_spec(name)
    )
    monkeypatch.chdir(tmp_path)
    result = run_cli("train", "lenet5", "--set", "train.loggers=[mlflow]")
    assert result.exit_code == 2 and 'pip install "netspec[mlflow]"' in result.output, result.output
    assert "<--set train.loggers=[mlflow]>" in result.output
    assert not (tmp_path / "runs").exists()


def test_mlflow_run_read_back_with_mlflows_client(tmp_path, monkeypatch):
    """The run's MLflow store (SQLite, in the run directory), read with MLflow's own client: the
    recipe as parameters, the spec as an artifact, every epoch's metrics equal to metrics.jsonl, and
    nothing written to the working directory (MLflow's default would be ./mlruns)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    train(LENET, out=out, overrides=["train.epochs=2", "train.loggers=[mlflow]"], log="quiet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    client = MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlflow.db').resolve()}")
    run = client.get_run((out / "mlflow_run_id").read_text().strip())
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.params["optimizer.name"] == "sgd"
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [h for h in history if "val_top1" in h]
    logged = client.get_metric_history(run.info.run_id, "val_top1")
    assert [m.value for m in logged] == pytest.approx([h["val_top1"] for h in epochs])
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "spec.yaml" in artifacts


class _Recorder:
    def __init__(self):
        self.events = []

    def on_event(self, event):
        self.events.append(event)


def test_a_callback_sees_every_event_in_order_as_json_prints_them(tmp_path, capsys):
    recorder, plain = _Recorder(), []
    train(
        LENET,
        out=tmp_path / "run",
        overrides=SETS,
        log="json",
        log_every=1,
        callbacks=[recorder, plain.append],
    )
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in printed]
    assert kinds == ["start", *(["step"] * 3 + ["epoch"]) * 3, "end"]
    # the same events, the same values (JSON writes no NaN: none here)
    assert json.loads(json.dumps(recorder.events)) == printed == json.loads(json.dumps(plain))
    assert recorder.events is not plain and recorder.events[0] is not plain[0]  # a copy each


def test_a_stop_request_ends_the_run_after_the_epoch_and_resume_is_bitwise(tmp_path):
    sets = [*SETS, "train.mixup_alpha=0.2", "train.ema_decay=0.9", "train.grad_clip=5.0"]
    straight = train(LENET, out=tmp_path / "a", overrides=sets, log="quiet")

    def stop_in_epoch_2(event):  # mid-epoch: the epoch still ends, with its checkpoint
        if event["event"] == "step" and event["epoch"] == 2:
            raise StopTraining("plateau")

    seen = []
    stopped = train(
        LENET,
        out=tmp_path / "b",
        overrides=sets,
        log=seen.append,
        log_every=1,
        callbacks=[stop_in_epoch_2],
    )
    assert stopped.stopped_early and [r["epoch"] for r in stopped.history] == [1, 2]
    assert seen[-1]["event"] == "end" and seen[-1]["stopped"] == "plateau"
    assert any(e["event"] == "note" and "stopped after epoch 2: plateau" in e["message"] for e in seen)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 2
    resumed = train(LENET, out=tmp_path / "b", overrides=sets, log="quiet", resume=True)
    assert not resumed.stopped_early and len(resumed.history) == 3
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    keys = ("model", "optimizer", "ema", "rng", "scheduler", "epoch", "step")
    assert tensors_equal({k: a[k] for k in keys}, {k: b[k] for k in keys}) > 20
    assert straight.final["val_loss"] == resumed.final["val_loss"]
    assert all(math.isfinite(r["train_loss"]) for r in resumed.history)


def test_a_stop_at_the_start_trains_nothing_and_a_bad_callback_is_refused(tmp_path):
    def stop_now(event):
        raise StopTraining

    result = train(LENET, out=tmp_path / "run", overrides=SETS, log="quiet", callbacks=[stop_now])
    assert result.history == [] and result.stopped_early
    assert not (tmp_path / "run" / "last.pt").exists()
    with pytest.raises(TypeError, match="on_event"):
        train(LENET, out=tmp_path / "other", overrides=SETS, log="quiet", callbacks=[42])


def test_loggers_and_checkpoint_pruning_may_change_on_resume(tmp_path):
    out = tmp_path / "run"
    train(LENET, out=out, overrides=[*SETS, "train.epochs=1"], log="quiet")
    more = [*SETS, "train.loggers=[tensorboard]", "train.keep_checkpoints=1"]
    notes = []
    train(LENET, out=out, overrides=more, log=notes.append, resume=True)
    assert [e for e, _ in ckpt.epoch_checkpoints(out)] == [3]
    assert any("recipe changed since the checkpoint" in e.get("message", "") for e in notes)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 3
