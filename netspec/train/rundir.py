"""The run directory: where it is by default, who holds it, what may be written into it, and whether
a resumed run is the run that was saved there.

- `default_run_dir(name)` is runs/<name>, the name one safe path component (a spec's name is checked
  when the spec is validated; a model file's name, its file name, here as well).
- `claim(out)` makes `out` the directory of a run: it must be a directory (or not exist yet) that
  holds a netspec run or nothing at all, so that a run never writes its files among someone else's;
  then it takes the directory's lock.
- `RunLock` is an exclusive `fcntl.flock` on `out/.netspec-lock`, kept open for the run's life. The
  kernel drops it when the process ends, however it ends, so a lock a killed run left behind is
  simply taken over; the holder writes its pid, host, start time and command into the file, which
  names it to a second run that is refused, and tells a run taking over whose lock was stale.
- `tree_changes(saved, now)` lists the fields in which two YAML trees differ (`stem.2: tanh -> relu`);
  `network_changes` and `recipe_changes` use it to say how the spec (or model file) and recipe given
  to a resume differ from the run's, located where they are given now.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Location, Problem, format_path
from ..source import locate
from ..spec import Spec, check_spec_name
from . import checkpoint as ckpt
from .errors import RunDirError, TrainError

LOCK = ".netspec-lock"
RUNS = Path("runs")

# The files a run writes at the top of its directory (besides `checkpoints/` and the lock).
RUN_FILES = frozenset(
    [
        "spec.yaml",
        "recipe.yaml",
        "model.py",
        "metrics.jsonl",
        "metrics.csv",
        "loss.png",
        "accuracy.png",
        "lr.png",
        ckpt.LAST,
        ckpt.LAST + ckpt.SUFFIX,
        ckpt.BEST,
        ckpt.BEST + ckpt.SUFFIX,
        "mlflow_run_id",  # loggers/mlflow.py: the MLflow run a resume continues
    ]
)
# The directories a run's loggers write into (loggers/): their own formats, theirs to name inside.
RUN_DIRS = frozenset(["tensorboard", "mlartifacts"])  # and the MLflow store, mlflow.db


def default_run_dir(name: str) -> Path:
    """runs/<name>; `name` must be one safe path component (never `..`, `/`, a leading `-`)."""
    try:
        check_spec_name(name)
    except ValueError as exc:
        raise RunDirError(
            Problem(
                f"'{name}' cannot name the run directory runs/<name>: {exc}", hint="choose one with --out"
            )
        ) from None
    return RUNS / name


def numbered_run_dirs(name: str) -> list[tuple[int, Path]]:
    """The run directories of `name` that exist, highest number first: runs/NAME is number 1,
    runs/NAME-2, runs/NAME-3, ... the next ones (auto-increment, as ultralytics' runs/train2)."""
    base = default_run_dir(name)
    found = []
    with contextlib.suppress(OSError):
        for p in base.parent.iterdir():
            suffix = p.name[len(name) + 1 :] if p.name.startswith(name + "-") else ""
            if p.name == name:
                found.append((1, p))
            elif suffix.isdigit() and suffix == str(int(suffix)) and int(suffix) >= 2:
                found.append((int(suffix), p))
    return sorted(found, reverse=True)


def newest_run_dir(name: str) -> Path:
    """The highest-numbered run directory of `name` (`--resume` without `--out` continues it);
    runs/NAME when there is none."""
    found = numbered_run_dirs(name)
    return found[0][1] if found else default_run_dir(name)


def claim_new(name: str, most: int = 10_000) -> tuple[Path, RunLock]:
    """Claim a directory for a new run of `name`: the highest-numbered one of runs/NAME, runs/NAME-2,
    ... when it holds no run (a run that stopped before its first checkpoint) and no process holds
    it, else the next number. Never a directory that holds a run, someone else's files, or another
    live run (two runs starting at once take two directories: the lock decides)."""
    base = default_run_dir(name)
    found = numbered_run_dirs(name)
    number = found[0][0] if found else 1
    for _ in range(most):
        path = base if number == 1 else base.with_name(f"{name}-{number}")
        number += 1
        if path.is_symlink() or (path.exists() and (not path.is_dir() or holds_run(path))):
            continue
        try:
            lock = claim(path)
        except RunDirError:  # held by a live run, or not netspec's: the next number
            continue
        if holds_run(path):  # a run ended there between the look and the lock
            lock.release()
            continue
        return path, lock
    raise RunDirError(
        Problem(f"no free run directory for '{name}' in {base.parent}/", hint="choose one with --out")
    )


def holds_run(out: Path) -> bool:
    """`out` holds checkpoints of a run (whole or not: a directory a new run must not reuse silently)."""
    return (out / ckpt.LAST).exists() or bool(ckpt.epoch_checkpoints(out))


def is_run_dir(out: Path) -> bool:
    """`out` is a netspec run's directory: a run has held it (its lock file) or left checkpoints."""
    return (out / LOCK).exists() or holds_run(out)


def _foreign_entries(out: Path) -> list[str]:
    """The visible entries of a directory that is no run's: a run would write its files among them."""
    if is_run_dir(out):
        return []
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def claim(out: Path) -> RunLock:
    """Create `out` (a new or empty directory, or a netspec run's), check it is writable, lock it.
    Raises RunDirError for a directory that must not be used, TrainError for one that cannot."""
    if out.is_symlink() and not out.exists():
        raise RunDirError(
            Problem(f"'{out}' is a symbolic link to nothing ({os.readlink(out)})", hint="choose --out")
        )
    if out.exists() and not out.is_dir():
        raise RunDirError(
            Problem(
                f"'{out}' is a file, not a directory: --out names the run's directory",
                hint="choose a new directory with --out",
            )
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        foreign = _foreign_entries(out)
    except OSError as exc:
        raise TrainError(f"cannot write to the output directory '{out}': {exc.strerror or exc}") from None
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise RunDirError(
            Problem(
                f"'{out}' is not empty and holds no netspec run ({shown}): a run would write its files"
                " (spec.yaml, metrics.csv, checkpoints/, ...) among these",
                hint="choose a new or empty directory with --out",
            )
        )
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise TrainError(f"cannot write to the output directory '{out}': {exc.strerror or exc}") from None
    lock = RunLock(out)
    lock.acquire()
    return lock


# ---------------------------------------------------------------- the lock

_HELD: set[int] = set()  # descriptors of the locks this process holds


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) must not keep the run's lock alive after its parent has
    died: close its copies of the descriptors (closing a copy never unlocks the parent's)."""
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


@dataclass(frozen=True)
class Holder:
    """The run holding (or that last held) a directory, as it wrote itself into the lock file."""

    pid: int
    host: str
    started: str
    command: str

    @classmethod
    def me(cls) -> Holder:
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
        return cls(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S %z"), command[:300])

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            doc = json.loads(text)
            return cls(int(doc["pid"]), str(doc["host"]), str(doc["started"]), str(doc.get("command", "")))
        except (ValueError, TypeError, KeyError):
            return None

    def __str__(self) -> str:
        command = f" ({self.command!r})" if self.command else ""
        return f"pid {self.pid} on host {self.host}, started {self.started}{command}"


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode("utf-8", "replace")


class RunLock:
    """An exclusive lock on a run directory for the life of a run (see the module's docstring)."""

    def __init__(self, out: Path):
        self.path = out / LOCK
        self.fd: int | None = None
        self.stale: Holder | None = None  # a holder that died holding the lock, taken over

    def acquire(self) -> None:
        try:  # O_NOFOLLOW: the lock file is truncated on release; never a file a link points at
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
            raise TrainError(f"cannot lock the run directory: '{self.path}': {why}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            who = f"another training run: {holder}" if holder else "another training run that is starting"
            raise RunDirError(
                Problem(
                    f"'{self.path.parent}' is in use by {who}",
                    hint="wait for it to end, stop it, or choose another directory with --out",
                )
            ) from None
        except OSError as exc:
            os.close(fd)
            raise TrainError(f"cannot lock the run directory '{self.path.parent}': {exc.strerror}") from None
        self.stale = Holder.parse(_read(fd))  # a clean end empties the file: this one did not end
        data = json.dumps(Holder.me().__dict__).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        self.fd = fd
        _HELD.add(fd)

    @staticmethod
    def _holder(fd: int) -> Holder | None:
        """The holder's note; it writes it just after taking the lock, so wait a moment for it."""
        for _ in range(50):
            holder = Holder.parse(_read(fd))
            if holder is not None:
                return holder
            time.sleep(0.01)
        return None

    def release(self) -> None:
        if self.fd is None or self.fd not in _HELD:  # a forked child's copy was closed at the fork
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)  # an empty lock file: the last holder ended cleanly
        _HELD.discard(self.fd)
        os.close(self.fd)  # closing the descriptor drops the flock
        self.fd = None


# ---------------------------------------------------------------- what changed since the run


_ABSENT = object()


@dataclass(frozen=True)
class Change:
    """A field whose value differs between the run's saved tree and the one given now."""

    path: tuple[str | int, ...]
    old: Any
    new: Any

    def values(self) -> str:
        return f"{_short(self.old)} -> {_short(self.new)}"

    def __str__(self) -> str:
        return f"{format_path(self.path) or '(the whole tree)'}: {self.values()}"


def _short(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    return text if len(text) <= 60 else text[:57] + "..."


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (type(a) in (int, float) and type(b) in (int, float) and a == b)


def tree_changes(old: Any, new: Any, path: tuple[str | int, ...] = ()) -> list[Change]:
    """The leaves in which two YAML trees (dicts, lists, scalars) differ, in document order.
    `True` and `1` differ; `1` and `1.0` do not (YAML writes both for one number). Two mappings
    without a key in common differ as wholes (`- tanh` -> `- relu`, `- avgpool: {..}` -> `- maxpool: {..}`:
    a layer of another kind, not a removed field and an added one)."""
    if isinstance(old, dict) and isinstance(new, dict) and (old.keys() & new.keys() or not old or not new):
        out: list[Change] = []
        for key in [*old, *(k for k in new if k not in old)]:
            out += tree_changes(old.get(key, _ABSENT), new.get(key, _ABSENT), (*path, key))
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for i in range(max(len(old), len(new))):
            a = old[i] if i < len(old) else _ABSENT
            b = new[i] if i < len(new) else _ABSENT
            out += tree_changes(a, b, (*path, i))
        return out
    if (old is _ABSENT and new is _ABSENT) or _same(old, new):
        return []
    return [Change(path, old, new)]


def listed(changes: Sequence[Change], most: int = 8) -> str:
    """`a: 1 -> 2; b: x -> y` (the first `most`, and how many more)."""
    text = "; ".join(str(c) for c in changes[:most])
    return text + (f"; and {len(changes) - most} more" if len(changes) > most else "")


# ---------------------------------------------------------------- is it the run that was saved?


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to (checkpoints/epoch_N.pt is two levels down)."""
    parent = checkpoint.parent
    return parent.parent if parent.name == ckpt.EPOCH_DIR else parent


def check_resume_target(out: Path, checkpoint: Path) -> None:
    """Resuming the checkpoint of one run into a directory that holds another run mixes the two."""
    source = run_dir_of(checkpoint)
    if holds_run(out) and source.resolve() != out.resolve():
        raise RunDirError(
            Problem(
                f"'{out}' holds a run, and the checkpoint to resume from, '{checkpoint}', is of"
                f" another ('{source}'): the two would mix",
                hint="resume it into a new directory (--out)",
            )
        )


def spec_doc(spec: Spec) -> dict[str, Any]:
    """The resolved spec as a plain tree: what a run's spec.yaml holds."""
    return spec.model_dump(mode="json", exclude_defaults=True, by_alias=False)


def network_changes(run_dir: Path, spec: Spec | None, source: Path | None) -> tuple[list[Problem], list[str]]:
    """How the network given now (a spec, or a model file's source) differs from the run's (its
    spec.yaml or model.py): (problems, located where the network is given now; the run's files that
    describe its network, which the differences leave out of date)."""
    saved_spec, saved_model = run_dir / "spec.yaml", run_dir / "model.py"
    problems: list[Problem] = []
    if spec is not None:
        if saved_spec.is_file():
            problems = spec_changes(spec, saved_spec)
        elif saved_model.is_file():
            problems = [Problem(f"the run trained the model file '{saved_model}', not a spec")]
    elif source is not None:
        if saved_model.is_file() and saved_model.resolve() != source.resolve():
            problems = _source_changes(saved_model, source)
        elif saved_spec.is_file():
            problems = [Problem(f"the run trained the spec '{saved_spec}', not a model file")]
    stale = [p.name for p in (saved_spec, saved_model) if p.is_file()] if problems else []
    return problems, stale


def spec_changes(spec: Spec, saved: Path) -> list[Problem]:
    """The fields of `spec` that differ from the run's spec.yaml (the `train:` section aside: the
    recipe is compared with the checkpoint's), each located where `spec` gives it."""
    import yaml

    try:
        doc = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return [Problem(f"the run's spec '{saved}' cannot be read to compare with: {exc}")]
    if not isinstance(doc, dict):
        return [Problem(f"the run's spec '{saved}' is not a spec to compare with")]
    now = {k: v for k, v in spec_doc(spec).items() if k != "train"}
    was = {k: v for k, v in doc.items() if k != "train"}
    return [
        Problem(f"differs from the run's spec.yaml: {c.values()}", c.path, locate(spec.raw, c.path))
        for c in tree_changes(was, now)
    ]


def recipe_changes(
    saved: dict[str, Any], now: dict[str, Any], raw: Any, resumable: frozenset[str]
) -> tuple[list[Problem], list[Change]]:
    """The recipe given now against the checkpoint's: (the changes a resume must not make silently,
    located in `raw`'s `train:`; the ones it may make: the fields in `resumable`)."""
    problems, benign = [], []
    for change in tree_changes(saved, now):
        if change.path[0] in resumable:
            benign.append(change)
            continue
        path = ("train", *change.path)
        where = locate(raw, path) if raw is not None else None
        problems.append(Problem(f"differs from the run's recipe: {change.values()}", path, where))
    return problems, benign


def _source_changes(saved: Path, source: Path) -> list[Problem]:
    """The lines of a model file that differ from the run's copy of it, located in the file."""
    import difflib

    try:
        was = saved.read_text(encoding="utf-8").splitlines()
        now = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(f"the run's model file '{saved}' cannot be read to compare with: {exc}")]
    problems = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, was, now, autojunk=False).get_opcodes():
        if tag != "equal":
            old = " / ".join(s.strip() for s in was[i1:i2])[:80] or "(nothing)"
            new = " / ".join(s.strip() for s in now[j1:j2])[:80] or "(nothing)"
            where = Location(str(source), min(j1 + 1, max(1, len(now))), 1)
            message = f"differs from the run's model.py (its line {i1 + 1}): {old} -> {new}"
            problems.append(Problem(message, (), where))
    return problems


def archive(out: Path, names: list[str], epoch: int) -> list[str]:
    """Keep the run's files that a forced resume replaces as NAME.until_epoch_NNNN.EXT: the spec,
    model file or recipe its checkpoints up to that epoch were trained with."""
    kept = []
    for name in names:
        stem, ext = os.path.splitext(name)
        target = out / f"{stem}.until_epoch_{epoch:04d}{ext}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(out / name, target)
            kept.append(f"{name} as {target.name}")
    return kept
