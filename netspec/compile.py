"""Compiled artefacts: a spec's module written as a weights file, TorchScript, torch.export or ONNX.

Formats (chosen by `fmt`, else by the file's suffix):
- state_dict (.pt, .pth): `torch.save` of a plain dict, readable with `torch.load(weights_only=True)`:
  {"format": "netspec/1", "spec": resolved spec as YAML text, "spec_name", "input_shape" [C, H, W],
  "state_dict"}. `load_compiled` rebuilds the module from the embedded spec, so no pickled code
  is ever needed to read it back.
- torchscript (.ts): `torch.jit.script` of the module in eval mode (`torch.jit.load` reads it).
- export (.pt2): `torch.export.export` in eval mode with a dynamic batch dimension, then
  `torch.export.save` (`torch.export.load(path).module()` runs it).
- onnx (.onnx): `torch.onnx.export(dynamo=True)` in eval mode, dynamic batch, one self-contained file.
  Needs the `onnx` and `onnxscript` packages (`pip install "netspec[onnx]"`).
- safetensors (.safetensors): the state_dict as a safetensors file whose metadata (str -> str) holds
  the same entries as the .pt file's: `format`, `spec` (resolved YAML), `spec_name`, `input_shape`
  (JSON), `netspec_version`. `safetensors.torch.load_file` reads the weights; `load_compiled` rebuilds.

What is compiled may be a spec (fresh weights) or a trained one (`trained_model`: a run directory,
with its spec.yaml and newest usable checkpoint, a training checkpoint, or a compiled file).

Every exported graph is the eval-mode network: models with `aux` heads return their logits only.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .analysis import analyze
from .errors import Location, Problem, SpecError
from .memory import check_memory, estimate
from .resolve import loads_spec, resolved_spec_text
from .spec import Limits, Spec
from .torch_backend import build

FORMAT_TAG = "netspec/1"
FORMATS = ("state_dict", "torchscript", "export", "onnx", "safetensors")
SUFFIX_FORMATS = {
    ".pt": "state_dict",
    ".pth": "state_dict",
    ".ts": "torchscript",
    ".pt2": "export",
    ".onnx": "onnx",
    ".safetensors": "safetensors",
}
_ONNX_INLINE_LIMIT = 1_800_000_000  # bytes of weights; protobuf files stop at 2 GiB
_TRACED = ("export", "onnx")  # the formats that run the module on an example batch
_EXAMPLE_BATCH = 2  # a batch of 2, so a dynamic batch dimension is not specialised to 1


class CompileError(SpecError):
    """A module that cannot be written or read back in the asked format."""


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The format to write `path` in: `fmt` if given, else the one its suffix stands for."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise CompileError(f"unknown format '{fmt}': use one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        known = ", ".join(f"{s} ({f})" for s, f in SUFFIX_FORMATS.items())
        raise CompileError(
            f"cannot tell the format of '{path}' from its suffix: use {known}, or give a format"
        )
    return SUFFIX_FORMATS[suffix]


def _size(input_size: int | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return (input_size, input_size)
    h, w = input_size
    return (int(h), int(w))


def save_compiled(
    spec: Spec,
    path: str | Path,
    fmt: str | None = None,
    *,
    input_size: int | tuple[int, int] | None = None,
    seed: int | None = None,
    model: nn.Module | None = None,
) -> Path:
    """Build `spec` (or take `model`, e.g. with imported weights) and write it to `path` in `fmt`
    (default: by suffix, .pt/.pth state_dict, .ts torchscript, .pt2 export, .onnx onnx).

    `input_size` (H = W, or (H, W)) replaces the spec's input size, both for the build and for the
    example input of the traced formats; `seed` makes the initial weights reproducible. A given
    `model` must be the spec's module (its state_dict must load into a fresh build); its training
    mode is left as it was. Returns the path written. Raises CompileError (a SpecError).
    """
    fmt = format_for(path, fmt)
    path = Path(path)
    size = _size(input_size)
    if fmt == "onnx":
        _require_onnx()
    if fmt == "safetensors":
        _require_safetensors()
    given = model is not None
    a = analyze(spec, size)
    shape = tuple(a.input_shape)
    if fmt in _TRACED:  # refused from the static estimate before the example batch exists
        what = f"tracing for {fmt} (a forward pass of {_EXAMPLE_BATCH} samples)"
        check_memory(spec, estimate(a, what, batch=_EXAMPLE_BATCH))
    if model is None:
        model = build(spec, input_size=size, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    try:
        if fmt in ("state_dict", "safetensors"):
            _save_state_dict(spec, model, path, size, shape, check=given, fmt=fmt)
        elif fmt == "torchscript":
            model.eval()
            _save_torchscript(model, path)
        else:
            model.eval()
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            # a private generator: the caller's random state is left alone
            example = torch.randn(_EXAMPLE_BATCH, *shape, generator=torch.Generator().manual_seed(0))
            example = example.to(device)
            if fmt == "export":
                _save_export(model, example, path)
            else:
                _save_onnx(model, example, path, _output_names(spec))
    finally:
        model.train(was_training)
    return path


def _save_state_dict(
    spec: Spec,
    model: nn.Module,
    path: Path,
    size: tuple[int, int] | None,
    shape: tuple[int, ...],
    check: bool,
    fmt: str = "state_dict",
) -> None:
    text = resolved_spec_text(spec, size)
    state = model.state_dict()
    if check:  # a module from elsewhere must be this spec's, or load_compiled would fail later
        # (seed=0: a fork of the RNG, so the caller's random state is left alone)
        expected = build(loads_spec(text, f"<resolved {spec.name}>"), seed=0).state_dict()
        wrong = [
            k for k in expected if k not in state or tuple(state[k].shape) != tuple(expected[k].shape)
        ] + [k for k in state if k not in expected]
    else:
        wrong = []
    if wrong:
        raise CompileError(
            f"the module given does not match spec '{spec.name}': {len(wrong)} keys differ, "
            f"first {', '.join(wrong[:5])}"
        )
    payload = {
        "format": FORMAT_TAG,
        "netspec_version": __version__,
        "spec": text,
        "spec_name": spec.name,
        "input_shape": list(shape),
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
    }
    if fmt == "safetensors":
        _save_safetensors(payload, path)
    else:
        torch.save(payload, path)


def _save_safetensors(payload: dict[str, Any], path: Path) -> None:
    import json

    from safetensors.torch import save_file

    # safetensors metadata is str -> str: the input shape as JSON, everything else already text
    metadata = {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items() if k != "state_dict"
    }
    # one contiguous copy per tensor: safetensors refuses views and tensors sharing memory
    tensors = {k: v.contiguous().clone() for k, v in payload["state_dict"].items()}
    save_file(tensors, str(path), metadata=metadata)


def _require_safetensors() -> None:
    if importlib.util.find_spec("safetensors") is None:
        raise CompileError(
            Problem(
                "writing .safetensors needs the `safetensors` package, which is not installed",
                hint='pip install "netspec[safetensors]" (or: pip install safetensors)',
            )
        )


def read_safetensors(path: str | Path) -> dict[str, Any]:
    """The entries of a .safetensors file `save_compiled` wrote (as `read_compiled` returns them for a
    .pt file): its metadata, the input shape parsed, and its tensors as `state_dict`."""
    import json

    path = Path(path)
    _require_safetensors()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as exc:
        raise CompileError(f"'{path}' is not a readable safetensors file: {_first_line(exc)}") from None
    if metadata.get("format") != FORMAT_TAG or "spec" not in metadata:
        raise CompileError(
            Problem(
                f"'{path}' is a safetensors file without netspec's metadata (no format {FORMAT_TAG!r}"
                " and spec)",
                hint="to load a torchvision/timm checkpoint into a spec, use import_weights",
            )
        )
    doc: dict[str, Any] = {**metadata, "state_dict": tensors}
    try:
        doc["input_shape"] = json.loads(metadata.get("input_shape", "null"))
    except ValueError:
        doc["input_shape"] = None
    return doc


def _save_torchscript(model: nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
        # torch.fx's GraphModule (graph specs, feature extractors) trips TorchScript's own lint of
        # GraphModule.__init__; the module scripts correctly
        warnings.filterwarnings("ignore", "The TorchScript type system doesn't support", UserWarning)
        try:
            scripted = torch.jit.script(model)
        except Exception as exc:
            raise CompileError(f"TorchScript could not compile the module: {_first_line(exc)}") from exc
        scripted.save(str(path))


def _export(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    except Exception:
        pass  # a model that fixes its batch size (e.g. a reshape to a constant): export it static
    try:
        return torch.export.export(model, (example[:1],))
    except Exception as exc:
        raise CompileError(f"torch.export could not capture the module: {_first_line(exc)}") from exc


def _save_export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.export.save(_export(model, example), str(path))


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def _require_onnx() -> None:
    if not onnx_available():
        raise CompileError(
            Problem(
                "ONNX export needs the `onnx` and `onnxscript` packages, which are not installed",
                hint='pip install "netspec[onnx]" (or: pip install onnx onnxscript)',
            )
        )


def _output_names(spec: Spec) -> list[str]:
    """The graph's outputs: the spec's `outputs:` keys (in order), else its one tensor of logits."""
    if spec.outputs is None:
        return ["logits"]
    return list(spec.outputs)  # a list's names, or a mapping's keys


def _save_onnx(model: nn.Module, example: torch.Tensor, path: Path, outputs: list[str]) -> None:
    n_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    common: dict[str, Any] = {
        "dynamo": True,
        "input_names": ["input"],
        "output_names": outputs,
        "external_data": n_bytes > _ONNX_INLINE_LIMIT,
        "verbose": False,
    }
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    attempts: list[tuple[tuple[torch.Tensor], dict[str, Any]]] = [
        ((example,), {"dynamic_shapes": ({0: batch},)}),
        ((example[:1],), {}),  # then static
    ]
    for i, (args, extra) in enumerate(attempts):
        try:
            with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, args, str(path), **common, **extra)
            return
        except Exception as exc:
            if i == len(attempts) - 1:
                raise CompileError(f"ONNX export failed: {_first_line(exc)}") from exc


def _load_program(path: Path, fmt: str) -> nn.Module:
    """torch.jit.load or torch.export.load, quietly: a failure is one CompileError line, without the
    tracebacks torch.export logs or the loaders' advice to retry with `weights_only=False`."""
    import logging

    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # torch.export.load logs a traceback per attempt before raising
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
            if fmt == "torchscript":
                return torch.jit.load(str(path), map_location="cpu").eval()
            return torch.export.load(str(path)).module()
    except Exception as exc:
        what = "TorchScript" if fmt == "torchscript" else "torch.export (.pt2)"
        from .torch_load import torch_reason  # one place strips torch's advice from its errors

        raise CompileError(f"'{path}' is not a readable {what} file: {torch_reason(exc)}") from None
    finally:
        logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def read_compiled(path: str | Path) -> dict[str, Any]:
    """The dict of a state_dict-format file, read with `torch.load(weights_only=True)` and checked."""
    path = Path(path)
    if not path.is_file():
        raise CompileError(f"'{path}' does not exist")
    from .weights import safe_torch_load

    try:
        obj = safe_torch_load(path, "file")
    except SpecError as exc:
        raise CompileError(exc.problems) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_TAG:
        raise CompileError(
            Problem(
                f'\'{path}\' is not a netspec state_dict file (no "format": "{FORMAT_TAG}")',
                hint="to load a torchvision/timm checkpoint into a spec, use import_weights",
            )
        )
    for key in ("spec", "state_dict"):
        if key not in obj:
            raise CompileError(f"'{path}' has no '{key}' entry")
    return obj


def trained_model(
    source: str | Path, *, ema: bool = False, note: Any = None, limits: Limits | None = None
) -> tuple[Spec, nn.Module, Path]:
    """A trained network to compile: (its spec, the module with the trained weights, the weights file).

    `source` is a run directory (its spec.yaml and newest usable checkpoint; `ema`: the EMA weights),
    a training checkpoint (its run directory's spec.yaml; one shared without its `.sha256` is read
    after a `note`, one with a wrong checksum refused), or a compiled .pt/.safetensors file (its
    embedded spec). A model file's run (model.py, no spec.yaml) is not a spec to compile."""
    from .train import rundir
    from .train.finetune import read_init

    path = Path(source)
    if path.is_file() and format_for(path, None) in ("state_dict", "safetensors"):
        obj = read_safetensors(path) if format_for(path, None) == "safetensors" else _compiled_or_none(path)
        if obj is not None:
            spec = loads_spec(str(obj["spec"]), f"{path}:spec", limits=limits)
            return spec, _loaded(spec, obj["state_dict"], path), path
    run_dir = path if path.is_dir() else rundir.run_dir_of(path)
    saved = run_dir / "spec.yaml"
    if not saved.is_file():
        why = (
            "a model file's run (model.py): compile the model file's network in Python"
            if (run_dir / "model.py").is_file()
            else "no spec.yaml"
        )
        raise CompileError(
            Problem(
                f"'{run_dir}' is not a run of a spec ({why})",
                location=Location(str(run_dir), 1, 1),
                hint="give a spec file, a zoo name, a run directory or a compiled file",
            )
        )
    from .resolve import load_spec

    spec = load_spec(saved, limits=limits)
    tensors, used = read_init(path, ema, note or (lambda _: None))
    if tensors is None:
        raise CompileError(f"'{path}' is not a netspec checkpoint")
    return spec, _loaded(spec, tensors, used.path), used.path


def _compiled_or_none(path: Path) -> dict[str, Any] | None:
    """A compiled state_dict file's entries; None for another torch file (a training checkpoint)."""
    from .weights import safe_torch_load

    obj = safe_torch_load(path, "file")
    return read_compiled(path) if isinstance(obj, dict) and obj.get("format") == FORMAT_TAG else None


def _loaded(spec: Spec, state_dict: dict[str, Any], path: Path) -> nn.Module:
    model = build(spec, seed=0)  # a forked RNG: the caller's random state is left alone
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CompileError(f"the weights in '{path}' do not fit its spec: {_first_line(exc)}") from None
    return model.eval()


def load_compiled(path: str | Path, fmt: str | None = None, *, limits: Limits | None = None) -> nn.Module:
    """Read back a file `save_compiled` wrote, as a module in eval mode.

    state_dict: the module is rebuilt from the embedded spec text (netspec.loads_spec, under the caps
    `limits`, default Limits(): the file may come from anyone) and its weights loaded, with nothing
    unpickled but tensors. torchscript: `torch.jit.load`. export: `torch.export.load(path).module()`.
    An ONNX file is not a torch module: run it with onnxruntime. A file that cannot be read is a
    CompileError that says why (never torch's advice to load it with `weights_only=False`).
    """
    fmt = format_for(path, fmt)
    path = Path(path)
    if fmt == "onnx":
        raise CompileError(f"'{path}' is an ONNX file: run it with onnxruntime, not torch")
    if not path.is_file():
        raise CompileError(f"'{path}' does not exist" if not path.exists() else f"'{path}' is not a file")
    if fmt in ("torchscript", "export"):
        return _load_program(path, fmt)
    obj = read_safetensors(path) if fmt == "safetensors" else read_compiled(path)
    if not isinstance(obj["spec"], str):
        raise CompileError(f"'{path}' has no spec text in its 'spec' entry")
    spec = loads_spec(obj["spec"], f"{path}:spec", limits=limits)
    model = build(spec, seed=0)  # a forked RNG: the caller's random state is left alone
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise CompileError(f"the weights in '{path}' do not fit its spec: {_first_line(exc)}") from None
    return model.eval()


__all__ = [
    "FORMATS",
    "FORMAT_TAG",
    "SUFFIX_FORMATS",
    "CompileError",
    "format_for",
    "load_compiled",
    "onnx_available",
    "read_compiled",
    "read_safetensors",
    "resolved_spec_text",
    "save_compiled",
    "trained_model",
]
