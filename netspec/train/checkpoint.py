"""Checkpoints that survive a crash at any instant, and the RNG states that make a resume exact.

A checkpoint FILE is an ordinary `torch.save` archive (`torch.load("last.pt", weights_only=True)`
reads it) with its sha256 beside it in FILE.sha256. Each is written atomically (a temporary file in
the same directory, fsync, os.replace, fsync of the directory), and in an order that never shows a
checkpoint file without the checksum of its own bytes: the old file is removed first, then the new
checksum is written, then the new file. A kill between two steps leaves either the previous file
with its checksum, or a checksum without a file (no checkpoint: it is ignored, and replaced by the
next write). So a FILE without its checksum, or with another one, is damage (a truncated copy, a
disk error), never an interrupted write; it is skipped for the previous checkpoint with a note.
Reading checks the checksum and loads with `weights_only=True` only (no pickled code runs); a file
that cannot be loaded is reported without torch's advice to load it with `weights_only=False`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..torch_load import load_failure

LAST = "last.pt"
BEST = "best.pt"  # the checkpoint of the epoch with the best validation top-1
EPOCH_DIR = "checkpoints"
SUFFIX = ".sha256"
_EPOCH_RE = re.compile(r"^epoch_(\d+)\.pt$")


class CheckpointError(Exception):
    """A checkpoint that cannot be used (missing, truncated, corrupted, or not a checkpoint)."""


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/file system can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask can only be read
    by setting it, which would race with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` so that a reader sees either the old file or the whole new one. The file
    gets the mode an ordinary `open` would give it (0o666 less the umask), not mkstemp's 0o600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def serialize(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any] | bytes) -> str:
    """Write a checkpoint (a state dict, or its `serialize`d bytes) and its checksum; returns the
    sha256. The order (old file out, checksum, file) is what makes every instant resumable."""
    path = Path(path)
    data = state if isinstance(state, bytes) else serialize(state)
    digest = hashlib.sha256(data).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # never the old file beside the new checksum
        _fsync_dir(path.parent)
    atomic_write_bytes(sidecar(path), f"{digest}  {path.name}\n".encode())
    atomic_write_bytes(path, data)
    return digest


def sidecar(path: Path) -> Path:
    """FILE.sha256, the checksum of checkpoint FILE."""
    return path.with_name(path.name + SUFFIX)


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint after checking its sha256; raises CheckpointError when it cannot be used."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    check = sidecar(path)
    try:
        expected = check.read_text().split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: no checksum file {check.name}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"{path}: checksum mismatch (truncated or corrupted)")
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # an unpickling error of any kind: the file is unusable
        raise CheckpointError(f"{path}: not a loadable checkpoint ({load_failure(exc)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a netspec checkpoint")
    return state


def epoch_path(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    return Path(run_dir) / EPOCH_DIR / f"epoch_{epoch:04d}.pt"


def epoch_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """(epoch, path) of the per-epoch checkpoints, newest first."""
    d = Path(run_dir) / EPOCH_DIR
    found = []
    if d.is_dir():
        for p in d.iterdir():
            m = _EPOCH_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def prune(run_dir: str | os.PathLike[str], keep: int) -> None:
    """Delete all but the newest `keep` per-epoch checkpoints (and their checksums)."""
    for _, path in epoch_checkpoints(run_dir)[keep:]:
        for p in (path, sidecar(path)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


# the temporary names `atomic_write_bytes` gives netspec's own run files (tempfile.mkstemp)
_PARTIAL_RE = re.compile(
    r"^\.(?:last\.pt|best\.pt|epoch_\d+\.pt|metrics\.jsonl|metrics\.csv|spec\.yaml|recipe\.yaml|model\.py"
    r"|loss\.png|accuracy\.png|lr\.png)(?:\.sha256)?\.[A-Za-z0-9_]+\.tmp$"
)
_CHECKSUM_RE = re.compile(r"^(?:last\.pt|best\.pt|epoch_\d+\.pt)\.sha256$")


def _unfinished(p: Path) -> bool:
    """A temporary file, or a checksum whose checkpoint was never written."""
    if _PARTIAL_RE.match(p.name):
        return True
    return bool(_CHECKSUM_RE.match(p.name)) and not p.with_name(p.name[: -len(SUFFIX)]).exists()


def remove_partial(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete what writes that never finished left (a SIGKILL or power loss): temporary files
    (between `mkstemp` and `os.replace`) and checksums whose checkpoint was never written. They are
    never read as checkpoints; this only tidies the directory. Returns the files removed."""
    removed = []
    for d in (Path(run_dir), Path(run_dir) / EPOCH_DIR):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if _unfinished(p) and p.is_file():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return sorted(removed)


def load_latest(
    run_dir: str | os.PathLike[str], map_location: Any = "cpu"
) -> tuple[Path, dict[str, Any], list[str]] | None:
    """The newest usable checkpoint of a run: `last.pt`, unless it is unusable or a per-epoch
    checkpoint is newer (a crash between the two writes); then the newest good per-epoch one.
    Returns (path, state, [why each newer file was skipped]), or None when the run has no checkpoint;
    raises CheckpointError when it has some but none is usable."""
    skipped: list[str] = []
    last_state, last_path = None, Path(run_dir) / LAST
    if last_path.exists():
        try:
            last_state = load_checkpoint(last_path, map_location)
        except CheckpointError as exc:
            skipped.append(str(exc))
    last_epoch = int(last_state.get("epoch", -1)) if last_state is not None else -1
    for epoch, path in epoch_checkpoints(run_dir):
        if epoch <= last_epoch:
            break
        try:
            return path, load_checkpoint(path, map_location), skipped
        except CheckpointError as exc:
            skipped.append(str(exc))
    if last_state is not None:
        return last_path, last_state, skipped
    if skipped:
        raise CheckpointError(f"no usable checkpoint in {run_dir}: " + "; ".join(skipped))
    return None


# ---------------------------------------------------------------- RNG states


def rng_state(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a training step reads, as tensors and plain values (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])
