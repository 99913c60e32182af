"""Reading a checkpoint file into a flat {key: tensor} state_dict, refusing anything unsafe or unclear.

Nothing is unpickled as code: PyTorch files go through `torch.load(weights_only=True)`, safetensors
files through `safetensors`. The format is read from the file's first bytes, not its suffix, so a
renamed file still loads. Only regular files are opened (a directory, a device such as /dev/zero, a
FIFO or a socket is named as such), and a zip archive may not declare more contents than its size
makes plausible (a zip bomb would allocate them). No message repeats torch's advice to retry with
`weights_only=False`: netspec never does.
"""

from __future__ import annotations

import os
import pickle
import stat
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import Problem, SpecError
from ..errors import printable as escape_controls
from ..torch_load import load_failure, pickled_object, torch_reason

# Where trainers nest a state_dict, most specific first: plain PyTorch and Lightning ('state_dict'),
# timm ('state_dict_ema', 'model_ema'), DeepSpeed ('module'), torchvision's and netspec's own
# training scripts ('model', 'model_state', ...). A model's EMA is taken only when nothing else is there.
NESTED_KEYS = (
    "state_dict",
    "model",
    "model_state",
    "model_state_dict",
    "module",
    "net",
    "network",
    "state_dict_ema",
    "model_ema",
    "ema",
)
STRIPPED_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers
MAX_UNWRAP = 8  # {'model': {'state_dict': ...}} and the like, at most this deep
MAX_NESTING = 32  # dicts of dicts of tensors below the state_dict level
ZIP_EXPANSION = 16  # a zip checkpoint may declare at most this many times its size (+ ZIP_SLACK) ...
ZIP_SLACK = 64 << 20  # ... of contents: torch stores records uncompressed
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".pth.tar")
SHOWN_KEY = 120  # characters of a checkpoint key shown in a message


def printable(text: str, limit: int = SHOWN_KEY) -> str:
    """Text from a file, safe to print and cut to `limit` characters."""
    return escape_controls(text, limit)


@dataclass
class Checkpoint:
    """A checkpoint's tensors under their (unwrapped, prefix-stripped) state_dict keys."""

    path: Path
    format: str  # "pytorch" or "safetensors"
    tensors: dict[str, Tensor]
    ignored: list[str] = field(default_factory=list)  # entries that are not tensors (epoch, config, ...)
    nested_under: list[str] = field(default_factory=list)  # the keys unwrapped to reach the state_dict


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The flat {key: tensor} state_dict of a checkpoint file, unwrapped and with DDP prefixes gone."""
    return load_checkpoint(path).tensors


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file (a .pth/.pt/.bin torch.save archive or a .safetensors file)."""
    path = Path(path)
    size = _regular_file_size(path, "checkpoint")
    fmt = _sniff(path, size)
    if fmt == "safetensors":
        obj: Any = _load_safetensors(path)
    else:
        obj = safe_torch_load(path)
    return _state_dict_of(obj, path, fmt)


def _regular_file_size(path: Path, what: str) -> int:
    """The size of `path` if it is a readable regular file (symbolic links followed), else SpecError."""
    shown = printable(str(path), 300)
    try:
        info = os.stat(path)
    except ValueError:  # a NUL byte in the path
        raise SpecError(f"{what} path '{shown}' contains a NUL byte") from None
    except FileNotFoundError:
        if os.path.lexists(path):
            target = printable(os.readlink(path), 300) if os.path.islink(path) else "?"
            raise SpecError(
                f"{what} '{shown}' is a symbolic link to '{target}', which does not exist"
            ) from None
        raise SpecError(f"{what} '{shown}' does not exist") from None
    except OSError as exc:  # a symlink loop, a path too long, a directory that cannot be searched
        raise SpecError(f"{what} '{shown}' cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError(
            Problem(
                f"{what} '{shown}' is a directory, not a checkpoint file",
                hint=_directory_hint(path),
            )
        )
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a character device"
            if stat.S_ISCHR(info.st_mode)
            else "a block device"
            if stat.S_ISBLK(info.st_mode)
            else "a named pipe (FIFO)"
            if stat.S_ISFIFO(info.st_mode)
            else "a socket"
            if stat.S_ISSOCK(info.st_mode)
            else "not a regular file"
        )
        raise SpecError(f"{what} '{shown}' is {kind}: only regular files are read as checkpoints")
    if not os.access(path, os.R_OK):
        raise SpecError(f"{what} '{shown}' cannot be read: permission denied")
    if info.st_size == 0:
        raise SpecError(f"{what} '{shown}' is empty (0 bytes)")
    return info.st_size


def _directory_hint(path: Path) -> str:
    try:
        names = sorted(
            p.name
            for p, _ in zip(path.iterdir(), range(10_000), strict=False)
            if p.name.lower().endswith(CHECKPOINT_SUFFIXES) and p.is_file()
        )
    except OSError:
        names = []
    if names:
        listed = ", ".join(printable(n, 80) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        return f"give one weights file from it, e.g. '{path / names[0]}' (it holds: {listed})"
    return "give the weights file itself: a .pth, .pt, .bin or .safetensors file"


def _sniff(path: Path, size: int) -> str:
    """'pytorch' or 'safetensors', from the first bytes; SpecError for anything else."""
    with open(path, "rb") as f:
        head = f.read(16)
    shown = printable(str(path), 300)
    if head.startswith(b"PK\x03\x04"):
        _check_zip(path, size)
        return "pytorch"
    if head[:1] == b"\x80":  # a pickle: torch.save's legacy format
        return "pytorch"
    if len(head) >= 9 and head[8:9] == b"{":
        (header,) = struct.unpack("<Q", head[:8])
        if 8 + header <= size:
            return "safetensors"
        raise SpecError(
            f"checkpoint '{shown}' is a truncated safetensors file: its header alone claims "
            f"{header:,} bytes, the file has {size:,}"
        )
    if head.startswith(b"\x89HDF"):
        what = "an HDF5 file (Keras or TensorFlow weights?)"
    elif head.startswith(b"GGUF"):
        what = "a GGUF file (llama.cpp weights)"
    elif head.startswith(b"\x93NUMPY"):
        what = "a NumPy .npy array"
    else:
        what = f"neither a PyTorch (torch.save) nor a safetensors file: it starts with {head[:8]!r}"
    raise SpecError(
        Problem(
            f"checkpoint '{shown}' is {what}",
            hint="netspec reads torch.save files (.pth, .pt, .bin) and .safetensors files",
        )
    )


def _check_zip(path: Path, size: int) -> None:
    """Refuse a zip whose declared contents are implausibly large for its size: torch.load allocates
    each record at its declared size before decompressing it."""
    shown = printable(str(path), 300)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise SpecError(
            f"checkpoint '{shown}' is not a readable PyTorch checkpoint: a damaged zip archive ({exc})"
        ) from None
    if declared > ZIP_EXPANSION * size + ZIP_SLACK:
        raise SpecError(
            f"checkpoint '{shown}' declares {declared:,} bytes of contents in a {size:,}-byte file "
            "(a zip bomb?): refused"
        )
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise SpecError(
            Problem(
                f"checkpoint '{shown}' is a TorchScript archive (torch.jit.save), which holds code, "
                "not a state_dict",
                hint="save the weights alone: torch.save(torch.jit.load(path).state_dict(), 'weights.pth') "
                "where you trust the file",
            )
        )
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        listed = ", ".join(printable(n, 60) for n in names[:3])
        raise SpecError(
            f"checkpoint '{shown}' is a zip archive but not a PyTorch checkpoint "
            f"(no data.pkl; it holds {listed or 'nothing'})"
        )


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    shown = printable(str(path), 300)
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise SpecError(
            Problem(
                f"reading '{shown}' (a safetensors file) needs the safetensors package, "
                "which is not installed",
                hint='pip install "netspec[safetensors]" (or: pip install safetensors)',
            )
        ) from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise SpecError(f"'{shown}' is not a readable safetensors file: {torch_reason(exc)}") from None


def safe_torch_load(path: Path, what: str = "checkpoint") -> Any:
    """torch.load(weights_only=True), on CPU, with every failure turned into a SpecError that says
    why: a pickled Python object (refused, never unpickled) or a file that is not a checkpoint."""
    shown = printable(str(path), 300)
    try:
        # an open file, not a path: torch.load picks safetensors for a path named *.safetensors,
        # and here the content decides. Its notes (pickle protocol, TorchScript) are not the user's.
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = pickled_object(exc)
        if found:
            raise SpecError(
                Problem(
                    f"{what} '{shown}' contains a pickled Python object ({found}), which "
                    "netspec refuses to unpickle: only tensors, numbers, strings and containers are read",
                    hint="re-save the weights alone, e.g. torch.save(model.state_dict(), path), "
                    "or convert them to .safetensors",
                )
            ) from None
        reason = load_failure(exc)
        raise SpecError(f"{what} '{shown}' is not a readable PyTorch checkpoint: {reason}") from None
    except Exception as exc:
        raise SpecError(
            f"{what} '{shown}' is not a readable PyTorch checkpoint: {torch_reason(exc)}"
        ) from None


def _state_dict_of(obj: Any, path: Path, fmt: str) -> Checkpoint:
    shown = printable(str(path), 300)
    trail: list[str] = []
    for _ in range(MAX_UNWRAP):
        if not isinstance(obj, dict) or (obj and all(isinstance(v, Tensor) for v in obj.values())):
            break
        key = next((k for k in NESTED_KEYS if isinstance(obj.get(k), dict)), None)
        if key is None:
            break
        trail.append(key)
        obj = obj[key]
    if not isinstance(obj, dict):
        raise SpecError(f"checkpoint '{shown}' holds a {type(obj).__name__}, not a state_dict")
    tensors: dict[str, Tensor] = {}
    ignored: list[str] = []
    _flatten(obj, "", tensors, ignored, path, 0)
    if not tensors:
        keys = ", ".join(printable(str(k), 40) for k in list(obj)[:8]) or "none"
        raise SpecError(
            Problem(
                f"checkpoint '{shown}' holds no tensors (keys: {keys})",
                hint=f"state_dicts are looked for under {', '.join(repr(k) for k in NESTED_KEYS)}",
            )
        )
    changed = True
    while changed:
        changed = False
        for prefix in STRIPPED_PREFIXES:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
                changed = True
    return Checkpoint(path, fmt, tensors, ignored, trail)


def _flatten(
    obj: dict[Any, Any], prefix: str, out: dict[str, Tensor], ignored: list[str], path: Path, depth: int
) -> None:
    """A state_dict's entries under dotted keys: a dict of tensors nested in it is a submodule's."""
    if depth > MAX_NESTING:
        raise SpecError(
            f"checkpoint '{printable(str(path), 300)}' nests dicts more than {MAX_NESTING} levels deep "
            f"(at '{printable(prefix)}')"
        )
    for k, value in obj.items():
        key = f"{prefix}{k}"
        if isinstance(value, Tensor):
            if key in out:
                raise SpecError(
                    f"checkpoint '{printable(str(path), 300)}' has two tensors under the key "
                    f"'{printable(key)}' (once as a dotted name, once nested)"
                )
            _check_tensor(value, key, path)
            out[key] = value.detach()
        elif isinstance(value, dict) and value:
            _flatten(value, f"{key}.", out, ignored, path, depth + 1)
        else:
            ignored.append(key)


def _check_tensor(t: Tensor, key: str, path: Path) -> None:
    """A tensor netspec can copy into a module: dense, with data, not quantized."""
    why = (
        "holds no data (saved from the 'meta' device)"
        if t.is_meta
        else "is quantized"
        if t.is_quantized
        else f"has a {str(t.layout).removeprefix('torch.')} layout"
        if t.layout != torch.strided
        else None
    )
    if why:
        raise SpecError(
            Problem(
                f"checkpoint '{printable(str(path), 300)}': tensor '{printable(key)}' {why}",
                hint="save dense, real weights: torch.save(model.state_dict(), path) after loading them",
            )
        )
