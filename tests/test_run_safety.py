"""Issue 11: nothing a spec, a flag or a crash does may lose a run or mix two runs.

- A spec's name is one safe path component (`..`, `/`, a leading `-` are refused at the name's line),
  and a run writes nothing outside its directory.
- A run directory is locked while a run holds it (`fcntl.flock`): a second `train` process on it
  exits 2 naming the holder; a lock that a SIGKILLed holder left is taken over; under torchrun rank 0
  holds it and every rank stops when it cannot.
- A process killed before any step of the end-of-epoch write sequence (checkpoint, checksum, last.pt,
  metrics: every step, counted, not sampled) leaves a directory that a plain re-run refuses with the
  CLI's flags and that `--resume` finishes into the uninterrupted run, bit for bit.
- `--resume` with another spec (tanh -> relu: the same tensor shapes) or recipe is refused, naming
  the fields at their lines, unless `--force-resume`; spec.yaml is never rewritten silently.
- A corrupt or malicious checkpoint never prints torch's advice to load it with weights_only=False.
- And their neighbours: --out naming a file or someone's directory, --overwrite sparing user files,
  resuming another run's checkpoint into a run, a full disk while writing the metrics, links.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import netspec
from netspec.errors import SpecError
from netspec.train import TrainError, load_checkpoint, load_latest, rundir, save_checkpoint, train
from netspec.train import checkpoint as ckpt
from netspec.train.errors import RunDirError

from .conftest import SPECS, run_cli
from .test_train import tensors_equal

ROOT = SPECS.parent
LENET = str(SPECS / "lenet5.yaml")
SETS = [
    "train.epochs=2",
    "train.data=synthetic:64",
    "train.batch_size=32",
    "train.plots=false",
    "train.mixup_alpha=0.2",
]
CLI_SETS = [x for s in SETS for x in ("--set", s)]
TIMING = ("time", "images_per_s")

pytestmark = pytest.mark.usefixtures("one_thread")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _assert_same_run(out: Path, reference: Path) -> int:
    """The run in `out` is the one in `reference`: every tensor of last.pt bitwise (weights,
    optimizer, EMA, RNG states), the step, the history and the metrics files (but for timings)."""
    a, b = load_checkpoint(out / ckpt.LAST), load_checkpoint(reference / ckpt.LAST)
    keys = ("model", "optimizer", "rng", "scheduler", "scaler", "ema", "epoch", "step")
    n = tensors_equal({k: a[k] for k in keys}, {k: b[k] for k in keys})
    strip = [[{k: v for k, v in r.items() if k not in TIMING} for r in s["history"]] for s in (a, b)]
    assert strip[0] == strip[1]
    assert _rows(out) == _rows(reference)
    csv = [
        [line.split(",")[:7] for line in (d / "metrics.csv").read_text().splitlines()]
        for d in (out, reference)
    ]
    assert csv[0] == csv[1]
    return n


def _assert_whole(out: Path) -> None:
    """No checkpoint file without the checksum of its own bytes: never damage, whatever the instant."""
    for path in [out / ckpt.LAST, *(p for _, p in ckpt.epoch_checkpoints(out))]:
        if path.exists():
            load_checkpoint(path)  # raises CheckpointError on a missing or wrong checksum


def _leftovers(out: Path) -> list[str]:
    return sorted(
        p.name
        for d in (out, out / ckpt.EPOCH_DIR)
        if d.is_dir()
        for p in d.iterdir()
        if p.name.endswith(".tmp") or (p.name.endswith(ckpt.SUFFIX) and not p.with_suffix("").exists())
    )


# ---------------------------------------------------------------- 1. a name is a safe path component

UNSAFE_NAMES = ["..", ".", "../x", "a/b", "/abs", "a\\b", "-rf", ".hidden", "x.", "con", "a b", "ok\n", ""]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_an_unsafe_spec_name_is_refused_at_its_line(name):
    text = (
        f"# a spec\nname: {json.dumps(name)}\ninput: {{channels: 1, size: 8}}\nclasses: 2\nhead: [flatten]\n"
    )
    with pytest.raises(SpecError) as err:
        netspec.loads_spec(text, "net.yaml")
    first = err.value.problems[0]
    assert first.path == ("name",) and (first.location.line, first.location.col) == (2, 7), err.value
    assert "not a usable spec name" in first.message


def test_a_name_override_is_refused_at_the_override():
    with pytest.raises(SpecError) as err:
        netspec.load_spec(LENET, ["name=.."])
    assert str(err.value).startswith("<--set name=..>:1:6: name: not a usable spec name"), err.value


def test_train_of_a_spec_named_dotdot_writes_nothing(tmp_path, monkeypatch):
    """The issue's case: `name: ..` made `train` write spec.yaml and metrics into the current
    directory (runs/.. is .). Now validation refuses it (exit 2, the name's line) and nothing is written."""
    spec = tmp_path / "evil.yaml"
    spec.write_text(Path(LENET).read_text().replace("name: lenet5", "name: .."))
    (tmp_path / "metrics.csv").write_text("mine\n")
    monkeypatch.chdir(tmp_path)
    result = run_cli("train", str(spec), *CLI_SETS)
    assert result.exit_code == 2
    assert result.output.startswith(f"{spec}:12:7: name: not a usable spec name"), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.yaml", "metrics.csv"]
    assert (tmp_path / "metrics.csv").read_text() == "mine\n"


def test_a_model_file_whose_name_is_no_directory_needs_out(tmp_path, monkeypatch):
    """A model file's name (its file name without .py) is the default run directory's: `..py` is `.`."""
    source = tmp_path / "..py"
    source.write_text(
        "import torch\nINPUT_SHAPE = (1, 8, 8)\n"
        "RECIPE = {'epochs': 1, 'data': 'synthetic:32', 'plots': False}\n"
        "def build_model():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n"
    )
    monkeypatch.chdir(tmp_path)
    result = run_cli("train", str(source))
    assert result.exit_code == 2
    assert "'.' cannot name the run directory runs/<name>" in result.output and "--out" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["..py"]


def test_every_file_a_run_writes_is_in_its_directory(tmp_path, monkeypatch):
    """With plots on, the default directory: everything the run created is under runs/<name>."""
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    train(LENET, overrides=[*SETS[:-2], "train.plots=true"], log="quiet")
    assert set(tmp_path.iterdir()) - before == {tmp_path / "runs"}
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["lenet5"]
    written = sorted(p.name for p in (tmp_path / "runs" / "lenet5").iterdir())
    assert set(written) <= rundir.RUN_FILES | {ckpt.EPOCH_DIR, rundir.LOCK}, written


# ---------------------------------------------------------------- 2. the run directory's lock

# A real run that holds its directory for long: many epochs of a tiny data set, one checkpoint kept,
# a pause after each epoch (in its log callback) to leave the CPU to the other processes.
_HOLDER = """
import json, sys, time, torch
torch.set_num_threads(1)
from netspec.train import train

def log(event):
    print(json.dumps(event), flush=True)
    if event["event"] == "epoch":
        time.sleep(0.5)

train(sys.argv[1], out=sys.argv[2], overrides=sys.argv[3:], log=log, keep_checkpoints=1)
"""


def _start_holder(out: Path) -> subprocess.Popen:
    sets = ["train.epochs=100000", "train.data=synthetic:64", "train.batch_size=32", "train.plots=false"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, LENET, str(out), *sets], env=_env(), stdout=subprocess.PIPE, text=True
    )
    for line in proc.stdout:  # the start event comes after the lock is taken
        if json.loads(line)["event"] == "epoch":
            return proc
    raise AssertionError(f"the holder ended early (exit {proc.wait()})")


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "netspec.cli", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def test_two_train_processes_on_one_directory(tmp_path):
    """A second `train` process on a held directory exits 2 naming the holder (pid, host, start);
    after a SIGKILL of the holder, the next run takes the lock over and says whose it was."""
    out = tmp_path / "run"
    holder = _start_holder(out)
    try:
        second = _cli("train", LENET, "--out", str(out), "--epochs", "1", *CLI_SETS[2:])
        assert second.returncode == 2, second.stderr
        assert "Traceback" not in second.stderr
        first_line = second.stderr.splitlines()[0]
        assert first_line.startswith(f"'{out}' is in use by another training run: pid {holder.pid} on host ")
        assert "started 20" in first_line and "(wait for it to end" in first_line, first_line
        also = _cli("train", LENET, "--out", str(out), "--resume", *CLI_SETS)
        assert also.returncode == 2 and f"pid {holder.pid}" in also.stderr  # resume too
        assert holder.poll() is None  # and the holder ran on, untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    assert load_latest(out) is not None  # the killed run's newest checkpoint is whole
    third = _cli("train", LENET, "--out", str(out), "--overwrite", "--json", *CLI_SETS)
    assert third.returncode == 0, third.stderr
    notes = [json.loads(x).get("message", "") for x in third.stdout.splitlines() if x.startswith("{")]
    took = [n for n in notes if n.startswith(f"took over '{out}' from a run that ended without releasing")]
    assert took and f"pid {holder.pid} on host" in took[0], notes
    assert [r["epoch"] for r in _rows(out)] == [1, 2]
    assert (out / rundir.LOCK).read_text() == ""  # released cleanly: nothing stale for the next run


def test_a_lock_held_in_this_process_and_a_stale_one(tmp_path):
    out = tmp_path / "run"
    lock = rundir.claim(out)
    try:
        with pytest.raises(RunDirError, match=f"is in use by another training run: pid {os.getpid()} on"):
            train(LENET, out=out, overrides=SETS, log="quiet")
    finally:
        lock.release()
    stale = {"pid": 4242, "host": "elsewhere", "started": "2020-01-01 00:00:00 +0000", "command": "x"}
    (out / rundir.LOCK).write_text(json.dumps(stale))  # what a killed holder leaves: a note, no flock
    notes: list[str] = []
    train(LENET, out=out, overrides=SETS, log=lambda e: notes.append(e.get("message", "")))
    assert "pid 4242 on host elsewhere, started 2020-01-01 00:00:00 +0000 ('x')" in notes[0], notes


def test_the_lock_is_one_for_every_path_to_the_directory(tmp_path):
    real = tmp_path / "real"
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    lock = rundir.claim(real)
    try:
        with pytest.raises(RunDirError, match="is in use by another training run"):
            train(LENET, out=tmp_path / "link", overrides=SETS, log="quiet")
    finally:
        lock.release()


def test_a_linked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / rundir.LOCK).symlink_to(victim)
    with pytest.raises(TrainError, match="a symbolic link"):
        train(LENET, out=out, overrides=SETS, log="quiet")
    assert victim.read_text() == "precious"


# A process that holds a run directory and forks a child (as a DataLoader worker is forked), then
# waits to be killed: the child must not keep the lock alive after its parent is gone.
_FORKER = """
import os, sys, time
from pathlib import Path
from netspec.train import rundir
lock = rundir.claim(Path(sys.argv[1]))
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
time.sleep(60)
"""


def test_a_forked_child_does_not_keep_a_dead_runs_lock(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", _FORKER, str(out)], env=_env(), stdout=subprocess.PIPE, text=True
    )
    child = int(proc.stdout.readline())
    try:
        with pytest.raises(RunDirError, match=f"pid {proc.pid} on"):
            rundir.claim(out)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        os.kill(child, 0)  # the child lives on ...
        lock = rundir.claim(out)  # ... and the lock is free
        assert lock.stale is not None and lock.stale.pid == proc.pid
        lock.release()
    finally:
        for pid in (proc.pid, child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_under_torchrun_every_rank_stops_when_rank_0_cannot_take_the_directory(tmp_path):
    out = tmp_path / "run"
    lock = rundir.claim(out)
    try:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
        args = ["-m", "netspec.cli", "train", LENET, "--out", str(out), "--device", "cpu", *CLI_SETS]
        proc = subprocess.run(
            [*cmd, *args], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240
        )
    finally:
        lock.release()
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"'{out}' is in use by another training run: pid {os.getpid()}" in text, text[-3000:]
    assert "rank 0 could not take the run directory" in text, text[-3000:]  # rank 1 says why it stops
    assert not (out / ckpt.LAST).exists()


# ---------------------------------------------------------------- 3. a kill at every step of the writes

# The sweep server: trains the reference run once (its write steps traced), then, for each step k,
# forks a process that trains the same run into its own directory and os._exit()s just before step k
# (as a SIGKILL would: no finally, no flush, the lock left to the kernel). A step is every call that
# changes the directory or makes it durable: create, write, fsync, replace, unlink, from the first
# write of epoch 1's checkpoint to the last write of the run (epoch 2's metrics). fsync is counted
# but skipped (here and in the resumes): it only orders writes for a power loss.
_SWEEP = r"""
import json, os, stat, sys, tempfile
import torch
torch.set_num_threads(1)
from netspec.train import train

spec, base, sets = sys.argv[1], sys.argv[2], sys.argv[3:]
KILLED = 113
state = {"on": False, "n": 0, "stop": None, "trace": []}
real_replace, real_unlink, real_mkstemp, real_fdopen, real_fsync = (
    os.replace, os.unlink, tempfile.mkstemp, os.fdopen, os.fsync)
names = {}

def step(op, name):
    name = os.path.basename(str(name))
    state["on"] = state["on"] or name.startswith(("epoch_0001.pt", ".epoch_0001.pt"))
    if state["on"]:
        state["n"] += 1
        state["trace"].append(f"{op} {name}")
        if state["n"] == state["stop"]:
            os._exit(KILLED)

def replace(src, dst, *a, **k):
    step("replace", dst)
    return real_replace(src, dst, *a, **k)

def unlink(path, *a, **k):
    step("unlink", path)
    return real_unlink(path, *a, **k)

def mkstemp(*a, **k):
    step("create", k.get("prefix", "") + "XXXXXXXX" + k.get("suffix", ""))
    fd, path = real_mkstemp(*a, **k)
    names[fd] = os.path.basename(path)
    return fd, path

def fsync(fd):  # a step; not done: it matters for a power loss, not for a killed process
    step("fsync", "(directory)" if stat.S_ISDIR(os.fstat(fd).st_mode) else names.get(fd, "?"))

class Counted:
    def __init__(self, f, name):
        self.f, self.name = f, name
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.f.__exit__(*exc)
    def __getattr__(self, attr):
        return getattr(self.f, attr)
    def write(self, data):
        step("write", self.name)
        return self.f.write(data)

def fdopen(fd, *a, **k):
    f = real_fdopen(fd, *a, **k)
    return Counted(f, names[fd]) if fd in names else f

os.replace, os.unlink, tempfile.mkstemp, os.fdopen, os.fsync = replace, unlink, mkstemp, fdopen, fsync
train(spec, out=f"{base}/reference", overrides=sets, log="quiet")  # also warms up torch
trace, kills = list(state["trace"]), []
for k in range(1, len(trace) + 1):
    pid = os.fork()
    if pid == 0:
        state.update(on=False, n=0, stop=k, trace=[])
        train(spec, out=f"{base}/k{k:03d}", overrides=sets, log="quiet")
        os._exit(0)  # never reached: step k comes first
    kills.append((pid, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))
print(json.dumps({"trace": trace, "kills": kills}))
"""
KILLED = 113


@pytest.fixture(scope="module")
def kill_sweep(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep")
    proc = subprocess.run(
        [sys.executable, "-c", _SWEEP, LENET, str(base), *SETS],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    return base, result["trace"], result["kills"]


def test_the_sweep_covers_every_step_of_both_epochs_writes(kill_sweep):
    _, trace, kills = kill_sweep
    assert [code for _, code in kills] == [KILLED] * len(trace)
    for name in ("epoch_0001.pt", "epoch_0002.pt", "last.pt", "metrics.jsonl", "metrics.csv"):
        for op in ("replace", "write", "fsync"):
            assert any(s.startswith(f"{op} {name}") or s.startswith(f"{op} .{name}") for s in trace), (
                op,
                name,
            )
    assert "unlink last.pt" in trace and "replace epoch_0002.pt.sha256" in trace
    assert trace[-1].startswith("fsync")  # the last step is the metrics' directory fsync
    assert len(trace) >= 60, trace


def test_a_kill_at_every_step_leaves_a_run_that_resumes_bitwise(kill_sweep, monkeypatch):
    """For every k: no checkpoint file is ever without its own checksum; a plain re-run is refused
    (exit 2) with the CLI's flags when a checkpoint is there; --resume takes over the dead run's lock
    and ends as the uninterrupted run, bit for bit, and leaves no temporary file behind."""
    base, trace, kills = kill_sweep
    reference = base / "reference"
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability against power loss: not tested here
    refused = 0
    for k, (step, (pid, _)) in enumerate(zip(trace, kills, strict=True), start=1):
        out = base / f"k{k:03d}"
        where = f"killed before step {k}, {step!r}"
        _assert_whole(out)
        refused_now = rundir.holds_run(out)
        if refused_now:
            again = run_cli("train", LENET, "--out", str(out), *CLI_SETS)
            assert again.exit_code == 2, (where, again.output)
            assert "already holds a training run" in again.output and "--resume" in again.output, where
            assert "--overwrite" in again.output and "overwrite=True" not in again.output, where
            assert f"whose last process ended without releasing it (pid {pid} on" in again.output, where
            refused += 1
        events: list[dict] = []
        train(LENET, out=out, overrides=SETS, resume=True, log=events.append)
        notes = [e["message"] for e in events if e["event"] == "note"]
        if not refused_now:  # the refusal above told of the dead process; else the resume does
            assert any(n.startswith("took over") and f"pid {pid} on" in n for n in notes), (where, notes)
        assert _assert_same_run(out, reference) > 20, where
        assert _leftovers(out) == [], (where, _leftovers(out))
        _assert_whole(out)
    assert refused >= len(trace) - 12  # all but the kills before epoch 1's checkpoint existed


def test_a_plain_rerun_after_a_kill_names_the_cli_flags_and_overwrite_works(tmp_path, kill_sweep):
    base, trace, _ = kill_sweep
    k = trace.index("unlink last.pt", 20) + 1  # the issue's instant: epoch 2's file is whole, last.pt not
    out = tmp_path / "run"
    shutil.copytree(base / f"k{k:03d}", out)  # an untouched copy (the sweep's own dirs are resumed)
    again = run_cli("train", LENET, "--out", str(out), *CLI_SETS)
    assert again.exit_code == 2
    assert again.output.startswith(f"'{out}' already holds a training run (checkpoints up to epoch 2)")
    assert "(resume it with --resume, start it over with --overwrite" in again.output, again.output
    both = run_cli("train", LENET, "--out", str(out), "--resume", "--overwrite", *CLI_SETS)
    assert both.exit_code == 2 and "resume and overwrite exclude each other" in both.output
    fresh = run_cli("train", LENET, "--out", str(out), "--overwrite", "-q", *CLI_SETS)
    assert fresh.exit_code == 0, fresh.output
    _assert_same_run(out, base / "reference")


def test_a_checkpoint_write_never_shows_a_file_beside_an_old_checksum(tmp_path):
    """The order itself: when last.pt is replaced, the old file goes first, then the new checksum, then
    the new file; a reader between any two of them finds no last.pt, never a mismatched pair."""
    seen = []
    real = ckpt.atomic_write_bytes

    def spy(path, data):
        last = tmp_path / ckpt.LAST
        seen.append((Path(path).name, last.exists(), (tmp_path / "last.pt.sha256").exists()))
        real(path, data)

    save_checkpoint(tmp_path / ckpt.LAST, {"epoch": 1})
    ckpt.atomic_write_bytes = spy
    try:
        save_checkpoint(tmp_path / ckpt.LAST, {"epoch": 2})
    finally:
        ckpt.atomic_write_bytes = real
    assert seen == [("last.pt.sha256", False, True), ("last.pt", False, True)]
    assert load_checkpoint(tmp_path / ckpt.LAST)["epoch"] == 2


# ---------------------------------------------------------------- 4. resume with another spec or recipe


@pytest.fixture
def one_epoch(tmp_path):
    out = tmp_path / "run"
    train(LENET, out=out, overrides=[*SETS, "train.epochs=1"], log="quiet")
    return out


def test_resume_with_tanh_changed_to_relu_is_refused_naming_the_field(one_epoch):
    """The issue's case: the same tensor shapes, another function. Refused with the field, its
    place (the override), and the flags; spec.yaml untouched."""
    out = one_epoch
    spec_yaml = (out / "spec.yaml").read_bytes()
    result = run_cli("train", LENET, "--out", str(out), "--resume", *CLI_SETS, "--set", "stem.1=relu")
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0] == "<--set stem.1=relu>:1:8: stem.1: differs from the run's spec.yaml: tanh -> relu"
    assert "--force-resume" in lines[-1] and "--overwrite" in lines[-1]
    assert (out / "spec.yaml").read_bytes() == spec_yaml and load_checkpoint(out / ckpt.LAST)["epoch"] == 1


def test_a_changed_spec_file_is_located_in_the_file(one_epoch, tmp_path):
    edited = tmp_path / "lenet5.yaml"
    text = Path(LENET).read_text()
    edited.write_text(
        text.replace("  - avgpool: {kernel: 2, name: s4}", "  - maxpool: {kernel: 2, name: s4}")
    )
    line = next(i for i, s in enumerate(edited.read_text().splitlines(), 1) if "maxpool" in s)
    with pytest.raises(RunDirError) as err:
        train(str(edited), out=one_epoch, overrides=SETS, resume=True, log="quiet")
    first = err.value.problems[0]
    assert (first.location.file, first.location.line, first.path) == (str(edited), line, ("stem", 5))
    assert first.message.endswith(
        '{"avgpool": {"kernel": 2, "name": "s4"}} -> {"maxpool": {"kernel": 2, "name": "s4"}}'
    )


def test_resume_with_another_recipe_is_refused_but_more_epochs_are_not(one_epoch):
    out = one_epoch
    with pytest.raises(RunDirError) as err:
        train(
            LENET,
            out=out,
            overrides=[*SETS, "train.optimizer.lr=0.2", "train.seed=3"],
            resume=True,
            log="quiet",
        )
    got = [(p.path, p.message) for p in err.value.problems[:-1]]
    assert got == [
        (("train", "optimizer", "lr"), "differs from the run's recipe: 0.05 -> 0.2"),
        (("train", "seed"), "differs from the run's recipe: 0 -> 3"),
    ]
    assert str(err.value.problems[0].location) == "<--set train.optimizer.lr=0.2>:1:20"
    notes: list[str] = []
    res = train(LENET, out=out, overrides=SETS, resume=True, log=lambda e: notes.append(e.get("message", "")))
    assert "the recipe changed since the checkpoint: epochs: 1 -> 2" in notes and len(res.history) == 2


def test_force_resume_resumes_and_keeps_the_runs_spec(one_epoch):
    out = one_epoch
    before = (out / "spec.yaml").read_text()
    result = run_cli(
        "train", LENET, "--out", str(out), "--force-resume", "--json", *CLI_SETS, "--set", "stem.1=relu"
    )
    assert result.exit_code == 0, result.output
    notes = [json.loads(x).get("message", "") for x in result.output.splitlines() if x.startswith("{")]
    assert any("resuming despite a different spec or recipe" in n and "tanh -> relu" in n for n in notes), (
        notes
    )
    assert "kept the run's previous spec.yaml as spec.until_epoch_0001.yaml" in notes
    assert (out / "spec.until_epoch_0001.yaml").read_text() == before
    assert "- relu" in (out / "spec.yaml").read_text() and load_checkpoint(out / ckpt.LAST)["epoch"] == 2


_TINY = """import torch
from torch import nn

INPUT_SHAPE = (1, 32, 32)
RECIPE = {"epochs": 1, "batch_size": 32, "data": "synthetic:64", "plots": False}


def build_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(1024, 16), nn.Tanh(), nn.Linear(16, 10))
"""


def test_a_model_file_run_and_a_spec_run_are_not_mixed(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(_TINY)
    out = tmp_path / "run"
    train(str(model), out=out, log="quiet")
    with pytest.raises(RunDirError, match="the run trained the model file"):
        train(LENET, out=out, overrides=SETS, resume=True, log="quiet")
    model.write_text(_TINY.replace("nn.Tanh()", "nn.ReLU()"))
    with pytest.raises(RunDirError) as err:
        train(str(model), out=out, overrides=["train.epochs=2"], resume=True, log="quiet")
    first = err.value.problems[0]
    assert (first.location.file, first.location.line) == (str(model), 9)
    assert "nn.Tanh()" in first.message and "nn.ReLU()" in first.message
    spec_run = tmp_path / "spec_run"
    train(LENET, out=spec_run, overrides=[*SETS, "train.epochs=1"], log="quiet")
    with pytest.raises(RunDirError, match="the run trained the spec"):
        train(str(model), out=spec_run, overrides=["train.epochs=2"], resume=True, log="quiet")


# ---------------------------------------------------------------- 5. no advice to unpickle


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_malicious_or_corrupt_checkpoint_never_suggests_weights_only_false(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil"
    save_checkpoint(evil / ckpt.LAST, {"format": "netspec-train", "model": {}, "x": _Evil(marker)})
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / ckpt.LAST).write_bytes(b"\x80\x02garbage" * 100)
    (garbage / "last.pt.sha256").write_text(
        __import__("hashlib").sha256((garbage / ckpt.LAST).read_bytes()).hexdigest() + "  last.pt\n"
    )
    outputs = []
    for run in (evil, garbage):
        for args in (
            ("eval", LENET, "-c", str(run)),
            ("train", LENET, "--out", str(run), "--resume", *CLI_SETS),
        ):
            result = run_cli(*args)
            assert result.exit_code == 1, result.output
            assert "weights_only" not in result.output and "Re-running" not in result.output, result.output
            outputs.append(result.output)
    assert "a pickled Python object (posix.mkdir), which netspec never unpickles" in outputs[0], outputs[0]
    stopped = "the weights-only unpickler stopped: invalid pickle data (Unsupported operand"
    assert f"not a loadable checkpoint ({stopped}" in outputs[2], outputs[2]
    assert not marker.exists()


# ---------------------------------------------------------------- 6. the neighbours


def test_out_naming_a_file_is_refused(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = run_cli("train", LENET, "--out", str(target), *CLI_SETS)
    assert result.exit_code == 2 and result.output.startswith(f"'{target}' is a file, not a directory")
    assert target.read_text() == "mine"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    result = run_cli("train", LENET, "--out", str(dangling), *CLI_SETS)
    assert result.exit_code == 2 and "is a symbolic link to nothing" in result.output


def test_out_naming_someone_elses_directory_is_refused_untouched(tmp_path):
    """`--out .` in a project, `--out ~`: a directory with files and no run. Nothing is written
    there, not even the lock; --overwrite does not change that (it overwrites runs only)."""
    home = tmp_path / "project"
    home.mkdir()
    for name in ("metrics.csv", "spec.yaml", "notes.md"):
        (home / name).write_text("mine")
    for flags in ((), ("--overwrite",), ("--resume",)):
        result = run_cli("train", LENET, "--out", str(home), *flags, *CLI_SETS)
        assert result.exit_code == 2, result.output
        assert "is not empty and holds no netspec run (metrics.csv, notes.md, spec.yaml)" in result.output
    assert sorted(p.name for p in home.iterdir()) == ["metrics.csv", "notes.md", "spec.yaml"]
    assert all((home / n).read_text() == "mine" for n in ("metrics.csv", "spec.yaml", "notes.md"))


def test_overwrite_removes_only_netspecs_files(tmp_path):
    """--overwrite of a model-file run by a spec run: the old model.py goes (it would make the new run
    look like a model file's), the user's file in checkpoints/ stays, epochs do not mix."""
    model = tmp_path / "net.py"
    model.write_text(_TINY.replace('"epochs": 1', '"epochs": 3'))
    out = tmp_path / "run"
    train(str(model), out=out, log="quiet")
    (out / ckpt.EPOCH_DIR / "my_notes.txt").write_text("mine")
    train(LENET, out=out, overrides=[*SETS, "train.epochs=1"], overwrite=True, log="quiet")
    assert not (out / "model.py").exists() and (out / "spec.yaml").exists()
    assert [e for e, _ in ckpt.epoch_checkpoints(out)] == [1]
    assert (out / ckpt.EPOCH_DIR / "my_notes.txt").read_text() == "mine"
    res = train(LENET, out=out, overrides=SETS, resume=True, log="quiet")  # the spec's run, resumable
    assert [r["epoch"] for r in res.history] == [1, 2]


def test_resuming_another_runs_checkpoint_into_a_run_is_refused(tmp_path, one_epoch):
    other = tmp_path / "other"
    train(LENET, out=other, overrides=SETS, log="quiet")
    with pytest.raises(RunDirError, match="is of another"):
        train(LENET, out=one_epoch, overrides=SETS, resume=other / ckpt.LAST, log="quiet")
    older = ckpt.epoch_path(other, 1)
    with pytest.raises(RunDirError, match=r"holds later ones \(up to epoch 2\)"):
        train(LENET, out=other, overrides=SETS, resume=older, log="quiet")
    fresh = tmp_path / "fresh"  # a new directory: fine, the resumed run is the uninterrupted one
    train(LENET, out=fresh, overrides=SETS, resume=older, log="quiet")
    assert load_checkpoint(fresh / ckpt.LAST)["epoch"] == 2
    tensors_equal(load_checkpoint(fresh / ckpt.LAST)["model"], load_checkpoint(other / ckpt.LAST)["model"])


def test_a_full_disk_while_writing_the_metrics_loses_nothing(tmp_path, monkeypatch):
    """ENOSPC on epoch 2's metrics.jsonl: the checkpoint of epoch 2 is whole; resume (with nothing
    left to train) brings the metrics up to it, and the run is the uninterrupted one."""
    reference = tmp_path / "reference"
    train(LENET, out=reference, overrides=SETS, log="quiet")
    out = tmp_path / "run"
    real, calls = ckpt.atomic_write_bytes, []

    def full(path, data):
        if Path(path).name == "metrics.jsonl":
            calls.append(path)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    with pytest.raises(TrainError, match="No space left on device"):
        train(LENET, out=out, overrides=SETS, log="quiet")
    monkeypatch.undo()
    assert [r["epoch"] for r in _rows(out)] == [1] and load_checkpoint(out / ckpt.LAST)["epoch"] == 2
    train(LENET, out=out, overrides=SETS, resume=True, log="quiet")
    _assert_same_run(out, reference)


def test_the_lock_file_and_a_finished_run(tmp_path):
    """A finished run releases its directory (an empty lock file); resume of a finished run with
    nothing left to train takes nothing over and changes nothing."""
    out = tmp_path / "run"
    train(LENET, out=out, overrides=SETS, log="quiet")
    assert (out / rundir.LOCK).read_text() == ""
    before = (out / ckpt.LAST).read_bytes()
    notes: list[str] = []
    started = time.perf_counter()
    train(LENET, out=out, overrides=SETS, resume=True, log=lambda e: notes.append(e.get("message", "")))
    assert not any(n.startswith("took over") for n in notes) and (out / ckpt.LAST).read_bytes() == before
    assert time.perf_counter() - started < 60
    assert torch.load(out / ckpt.LAST, weights_only=True)["epoch"] == 2


def test_eval_reads_a_runs_weights_only_with_its_spec(one_epoch):
    """tanh -> relu keeps every tensor's shape: the weights would load into the wrong functions and
    evaluate to plausible, wrong numbers. The run's spec.yaml decides (the recipe may differ)."""
    data = ["--data", "synthetic:64"]
    wrong = run_cli("eval", LENET, "-c", str(one_epoch), "--set", "stem.1=relu", *data)
    assert wrong.exit_code == 2
    assert wrong.output.startswith(
        "<--set stem.1=relu>:1:8: stem.1: differs from the run's spec.yaml: tanh -> relu"
    )
    assert "--force" in wrong.output.splitlines()[-1]
    forced = run_cli("eval", LENET, "-c", str(one_epoch), "--set", "stem.1=relu", "--force", *data)
    assert forced.exit_code == 0, forced.output
    right = run_cli(
        "eval", LENET, "-c", str(ckpt.epoch_path(one_epoch, 1)), "--set", "train.epochs=9", "--json", *data
    )
    assert right.exit_code == 0 and json.loads(right.output)["epoch"] == 1, right.output
