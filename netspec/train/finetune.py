"""Fine-tuning: start a run from pretrained weights (the recipe's `init:`), re-initialise the head when
the classes differ, and freeze module paths (`freeze:`).

- Where weights come from (`read_init`): a netspec run directory (its newest usable checkpoint) or
  training checkpoint (checksum checked; a missing `.sha256` is a note, a wrong one a refusal), a
  compiled netspec file (`.pt`, `.safetensors`), which pair by name; anything else (a torchvision or
  timm state_dict) goes through `netspec.weights.import_weights`, which pairs by name, then by
  structure, never by a guess, and can `verify` the pairing against the reference implementation.
- The head: the tensors whose shapes depend on `classes`, found by building the spec on the meta
  device with another class count (the final linear, a SqueezeNet's last conv, GoogLeNet's auxiliary
  classifiers too). A head the file cannot fill keeps the spec's own initialisation and is named.
- Freezing: a frozen parameter has requires_grad=False and never reaches the optimizer; a frozen
  batch norm keeps its statistics (eval mode at every forward, whatever `model.train()` says), as
  fine-tuning code does (torchvision's `FrozenBatchNorm2d`, detectron2's `freeze_at`).

The init applies only when a run starts: a resumed run restores its checkpoint instead, so resume
stays bitwise; freezing applies to both, before the optimizer is made.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import Problem, SpecError, did_you_mean, printable
from ..source import locate
from ..spec import Spec
from . import checkpoint as ckpt
from . import rundir
from .recipe import ALL_BUT_HEAD, InitConfig, Recipe

Note = Callable[[str], None]
SHOWN = 5  # keys named per list in a message


@dataclass
class InitSource:
    """The weights a run started from: the file read, its sha256, and what kind of file it is."""

    path: Path
    sha256: str
    kind: str  # "netspec run", "netspec compiled file", "state_dict"

    def record(self) -> dict[str, str]:
        return {"path": str(self.path.resolve()), "sha256": self.sha256, "kind": self.kind}


@dataclass
class FineTune:
    """What `prepare` did to the model."""

    source: InitSource | None = None
    loaded: int = 0  # tensors taken from the file
    head: list[str] = field(default_factory=list)  # modules re-initialised (their spec init kept)
    frozen: list[str] = field(default_factory=list)  # frozen module paths
    frozen_params: int = 0


# ---------------------------------------------------------------- the head


def head_keys(spec: Spec) -> list[str]:
    """The state_dict keys whose shapes depend on `classes`: the spec built on the meta device (no
    memory, no initialisation) with its classes and with one more, compared key by key."""
    from ..lower import lower
    from ..torch_backend import module_for

    if spec.classes is None:
        return []

    def shapes(s: Spec) -> dict[str, tuple[int, ...]]:
        with torch.device("meta"):
            module = module_for(lower(s))
        return {k: tuple(v.shape) for k, v in module.state_dict().items()}

    now = shapes(spec)
    other = shapes(spec.model_copy(update={"classes": spec.classes + 1}))
    return [k for k in now if now[k] != other.get(k)]


def _module_of(key: str) -> str:
    return key.rpartition(".")[0]


def _last_linear_keys(model: nn.Module) -> list[str]:
    """A module that is no spec's (a model file): its last nn.Linear is its head."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        return []
    return [k for k in model.state_dict() if _module_of(k) == last]


# ---------------------------------------------------------------- reading the weights


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 0


def _own_weights(state: dict[str, Any], path: Path, ema: bool) -> dict[str, Tensor]:
    weights = state.get("ema" if ema else "model")
    if not isinstance(weights, dict):
        raise SpecError(f"'{path}' has no {'EMA ' if ema else ''}model weights")
    return weights


def read_training_checkpoint(path: Path, note: Note, map_location: Any = "cpu") -> dict[str, Any]:
    """A netspec training checkpoint file that may have been shared alone: its checksum must match
    when its `.sha256` is there (a wrong one is damage: refused); without one it is read (still with
    `weights_only=True`) after a note. Raises CheckpointError."""
    sidecar = ckpt.sidecar(path)
    if sidecar.exists():
        return ckpt.load_checkpoint(path, map_location)
    from ..weights import safe_torch_load

    try:
        state = safe_torch_load(path)
    except SpecError as exc:
        raise ckpt.CheckpointError(exc.problems[0].message) from None
    if not isinstance(state, dict):
        raise ckpt.CheckpointError(f"{path}: not a netspec checkpoint")
    note(f"'{path}' has no checksum file ({sidecar.name}): read without checking its integrity")
    if map_location != "cpu":
        state = {k: _to(v, map_location) for k, v in state.items()}
    return state


def _to(value: Any, device: Any) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def read_init(where: str | Path, ema: bool, note: Note) -> tuple[dict[str, Tensor] | None, InitSource]:
    """The weights at `where`: (netspec's own tensors, to pair by name, or None for a foreign file that
    import_weights pairs; where they came from). SpecError when they cannot be read."""
    from ..compile import FORMAT_TAG, read_compiled, read_safetensors
    from .state import CHECKPOINT_FORMAT

    path = Path(where)
    if path.is_dir():
        if not rundir.is_run_dir(path):
            raise SpecError(
                Problem(
                    f"'{path}' is a directory but no netspec run",
                    hint="give a run directory, a checkpoint or a weights file",
                )
            )
        try:
            found = ckpt.load_latest(path)
        except ckpt.CheckpointError as exc:
            raise SpecError(str(exc)) from None
        if found is None:
            raise SpecError(f"the run '{path}' holds no checkpoint")
        used, state, skipped = found
        for why in skipped:
            note(f"skipped {why}")
        return _own_weights(state, used, ema), InitSource(used, _sha256(used), "netspec run")
    if not path.is_file():
        shown = printable(str(path), 300)
        raise SpecError(
            f"weights file '{shown}' does not exist"
            if not path.exists()
            else f"weights '{shown}' is not a regular file"
        )
    if is_safetensors(path):
        try:
            doc = read_safetensors(path)
        except SpecError:
            return None, InitSource(path, _sha256(path), "state_dict")
        return doc["state_dict"], InitSource(path, _sha256(path), "netspec compiled file")
    from ..weights import safe_torch_load

    obj = safe_torch_load(path)
    kind = obj.get("format") if isinstance(obj, dict) else None
    if kind == CHECKPOINT_FORMAT:
        try:
            state = read_training_checkpoint(path, note)
        except ckpt.CheckpointError as exc:
            raise SpecError(str(exc)) from None
        return _own_weights(state, path, ema), InitSource(path, _sha256(path), "netspec run")
    if kind == FORMAT_TAG:
        return read_compiled(path)["state_dict"], InitSource(path, _sha256(path), "netspec compiled file")
    return None, InitSource(path, _sha256(path), "state_dict")


# ---------------------------------------------------------------- loading


@dataclass
class _Fit:
    """How a file's tensors fit the model: loaded, and the model/file keys left over, by reason."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the file does not fill
    mis_shaped: list[str] = field(default_factory=list)  # model keys with another shape in the file
    unexpected: list[str] = field(default_factory=list)  # file keys nothing took
    other: list[str] = field(default_factory=list)  # ambiguous pairings, wrong dtypes (import_weights)


def _optional(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def _by_name(model: nn.Module, tensors: dict[str, Tensor]) -> _Fit:
    target = model.state_dict()
    fit = _Fit()
    new = {}
    for k, t in target.items():
        src = tensors.get(k)
        if not isinstance(src, Tensor):
            if not _optional(k):
                fit.missing.append(k)
        elif tuple(src.shape) != tuple(t.shape):
            fit.mis_shaped.append(k)
        elif src.is_floating_point() != t.is_floating_point():
            fit.other.append(f"{k} ({src.dtype} vs {t.dtype})")
        else:
            new[k] = src
            fit.loaded.append(k)
    fit.unexpected = [k for k in tensors if k not in target and not _optional(k)]
    model.load_state_dict(new, strict=False)
    return fit


def _imported(
    model: nn.Module, path: Path, config: InitConfig, input_shape: tuple[int, int, int] | None, note: Note
) -> _Fit:
    from ..weights import import_weights

    # pairs by name, then by structure, never by a guess; strict=False lets the head stay unfilled,
    # and `load_init` decides what else may (init.strict)
    _, report = import_weights(model, path, strict=False, verify=config.verify, input_shape=input_shape)
    note(report.format(limit=10))
    fit = _Fit(loaded=[*report.matched, *(dst for _, dst in report.remapped)])
    fit.missing = list(report.missing)
    fit.mis_shaped = [k for k, _, _ in report.mis_shaped]
    fit.unexpected = list(report.unexpected)
    for a in report.ambiguous:
        fit.other += [f"{k} (ambiguous)" for k in a.model_keys]
    fit.other += [f"{k} ({a} vs {b})" for k, a, b in report.wrong_dtype]
    return fit


def _listed(keys: list[str]) -> str:
    more = f", and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(printable(k) for k in keys[:SHOWN]) + more


def _located(exc: SpecError, where: Any) -> SpecError:
    """A problem with the weights file, located at the recipe's `init.weights` (or `--init`)."""
    path = ("train", "init", "weights")
    return SpecError([Problem(p.message, p.path or path, p.location or where, p.hint) for p in exc.problems])


def _check_verify(config: InitConfig, own: bool, source: Any, raw: Any) -> None:
    """`verify` checks how a torchvision/timm file pairs with the spec, with the file's own head."""
    where = locate(raw, ("train", "init", "verify")) if raw is not None else None
    if own and config.verify is not None:
        raise SpecError(
            Problem(
                f"'{source.path}' is netspec's own ({source.kind}): its tensors pair by name, there is no"
                " pairing to verify",
                ("train", "init", "verify"),
                where,
                hint="drop `verify` (it checks how a torchvision/timm file pairs with the spec)",
            )
        )
    if config.verify is not None and config.reinit_head is True:
        raise SpecError(
            Problem(
                "verify compares the model's logits with the reference's: a re-initialised head cannot agree",
                ("train", "init", "verify"),
                where,
                hint="verify with the file's classes and reinit_head: auto",
            )
        )


def _head_to_reinit(fit: _Fit, head: set[str], config: InitConfig, source: Any, raw: Any) -> list[str]:
    """The head tensors that keep the model's own values: all of them with `reinit_head: true`, else
    those the file cannot fill (an error with `reinit_head: false`)."""
    unfilled = [k for k in [*fit.mis_shaped, *fit.missing] if k in head]
    if unfilled and config.reinit_head is False:
        raise SpecError(
            Problem(
                f"the head does not fit '{source.path}': {_listed(unfilled)} (reinit_head: false)",
                ("train", "init", "reinit_head"),
                locate(raw, ("train", "init", "reinit_head")) if raw is not None else None,
                hint="set the spec's `classes` to the file's, or let the head be re-initialised",
            )
        )
    return sorted(head) if config.reinit_head is True else unfilled


def _check_beyond_head(
    fit: _Fit, head: set[str], config: InitConfig, source: Any, where: Any, note: Note
) -> None:
    """Outside the head, a strict init fills every model tensor and uses every file tensor."""
    left = [
        *(f"{k} (shape)" for k in fit.mis_shaped if k not in head),
        *(f"{k} (missing from the file)" for k in fit.missing if k not in head),
        *fit.other,
    ]
    unused = fit.unexpected
    if config.strict and (left or unused):
        problems = [
            Problem(
                f"'{source.path}' does not fit the model beyond its head (strict):"
                f" {len(fit.loaded)} tensors loaded",
                ("train", "init", "weights"),
                where,
                hint="fix the spec, or load what fits with `init: {strict: false}`",
            )
        ]
        if left:
            problems.append(Problem(f"model tensors not filled ({len(left)}): {_listed(left)}"))
        if unused:
            problems.append(Problem(f"file tensors not used ({len(unused)}): {_listed(unused)}"))
        raise SpecError(problems)
    if left or unused:
        kept_init = f"{len(left)} model tensors kept their initial values ({_listed(left)})"
        note(f"strict: false: {kept_init}, {len(unused)} file tensors unused")


def load_init(
    model: nn.Module,
    config: InitConfig,
    head: list[str],
    *,
    input_shape: tuple[int, int, int] | None = None,
    classes: int | None = None,
    raw: Any = None,
    note: Note = lambda _: None,
) -> FineTune:
    """Load `config.weights` into `model`; re-initialise the head (keep the model's own values for the
    `head` keys) where the file cannot fill it or `reinit_head` is true. Raises a located SpecError
    when the file does not fit (strict) or asks for what cannot be done."""
    where = locate(raw, ("train", "init", "weights")) if raw is not None else None
    try:
        own, source = read_init(config.weights, config.ema, note)
    except SpecError as exc:
        raise _located(exc, where) from None
    _check_verify(config, own is not None, source, raw)
    kept = {k: v.detach().clone() for k, v in model.state_dict().items() if k in set(head)}
    try:
        fit = (
            _by_name(model, own)
            if own is not None
            else _imported(model, source.path, config, input_shape, note)
        )
    except SpecError as exc:
        raise _located(exc, where) from None
    reinit = _head_to_reinit(fit, set(kept), config, source, raw)
    _check_beyond_head(fit, set(kept), config, source, where, note)
    if reinit:
        with torch.no_grad():
            state = model.state_dict()
            for k in reinit:
                state[k].copy_(kept[k])
    result = FineTune(source=source, loaded=len([k for k in fit.loaded if k not in reinit]))
    result.head = sorted({_module_of(k) for k in reinit})
    if result.head:
        shapes = ", ".join(f"{k} {list(kept[k].shape)}" for k in reinit if not _optional(k))
        why = "reinit_head: true" if config.reinit_head is True else f"classes: {classes}"
        note(f"re-initialised the head ({why}): {', '.join(result.head)} ({shapes})")
    origin = f"{source.path} ({source.kind}, sha256 {source.sha256[:12]}...)"
    note(f"started from {origin}: {result.loaded} tensors loaded")
    return result


# ---------------------------------------------------------------- freezing


def _frozen_statistics(module: nn.Module, args: Any) -> None:
    """A forward pre-hook: a frozen batch norm normalises with its running statistics and never
    updates them, even while the rest of the model trains."""
    module.training = False


def _paths_of(model: nn.Module, entry: str, sections: dict[str, list[str]]) -> list[str]:
    """The module paths a `freeze:` entry names: a spec's section, or one module path."""
    if entry in sections:
        return sections[entry]
    return [entry] if entry and any(n == entry for n, _ in model.named_modules()) else []


def freeze(
    model: nn.Module,
    entries: list[str] | str,
    head: list[str],
    *,
    sections: dict[str, list[str]] | None = None,
    raw: Any = None,
) -> tuple[list[str], int, int]:
    """Freeze module paths (or, for a spec, section names: `stem`, a stage's name, `head`), or
    everything but the head (`all_but_head`). Returns (the frozen modules that hold parameters, the
    parameters frozen, the batch norms whose statistics are frozen)."""
    sections = sections or {}
    head_modules = sorted({_module_of(k) for k in head})
    if entries == ALL_BUT_HEAD:
        if not head_modules:
            raise SpecError(
                Problem(
                    "freeze: all_but_head needs a head (the layers whose shapes depend on `classes`),"
                    " and this model has none",
                    ("train", "freeze"),
                    locate(raw, ("train", "freeze")) if raw is not None else None,
                )
            )
        paths = [
            n
            for n, m in model.named_children()
            if not any(h == n or h.startswith(n + ".") for h in head_modules)
        ]
        # a top-level container holding the head (a `classifier` Sequential): freeze its other children
        for n, _ in model.named_children():
            if n not in paths:
                paths += _outside(model, n, head_modules)
    else:
        paths = []
        problems = []
        for i, entry in enumerate(entries):
            found = _paths_of(model, entry, sections)
            if not found:
                top = [n for n, _ in model.named_children()] + list(sections)
                problems.append(
                    Problem(
                        f"freeze: no module or section named '{printable(entry)}'",
                        ("train", "freeze", i),
                        locate(raw, ("train", "freeze", i)) if raw is not None else None,
                        did_you_mean(entry, top) or "module paths such as " + ", ".join(top[:8]),
                    )
                )
            paths += found
        if problems:
            raise SpecError(problems)
    count, norms, seen = 0, 0, set()
    for p in paths:
        module = model.get_submodule(p)
        for param in module.parameters():
            if param.requires_grad:
                param.requires_grad_(False)
                count += param.numel()
        for m in module.modules():  # a module under two entries (layer1, layer1.0) is hooked once
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in seen:
                seen.add(id(m))
                m.register_forward_pre_hook(_frozen_statistics)
                norms += 1
    # the modules that hold what is frozen (parameter-free layers of a section are not named)
    holding = [p for p in paths if any(True for _ in model.get_submodule(p).parameters())]
    return sorted(set(holding)), count, norms


def _outside(model: nn.Module, container: str, head_modules: list[str]) -> list[str]:
    """The children of `container` (recursively) that hold no head module."""
    out = []
    for n, _ in model.get_submodule(container).named_children():
        path = f"{container}.{n}"
        holds = [h for h in head_modules if h == path or h.startswith(path + ".")]
        if not holds:
            out.append(path)
        elif path not in holds:
            out += _outside(model, path, head_modules)
    return out


def _sections(spec: Spec) -> dict[str, list[str]]:
    """Section name (`stem`, a stage's name, `head`) -> the top-most module paths of its layers."""
    from ..ir import walk
    from ..lower import lower

    found: dict[str, list[str]] = {}
    for node, depth in walk(lower(spec)):
        if depth == 0 or not node.path:
            continue
        paths = found.setdefault(node.section, [])
        if not any(node.path == p or node.path.startswith(p + ".") for p in paths):
            paths.append(node.path)
    return found


# ---------------------------------------------------------------- the runner's one call


def prepare(
    model: nn.Module,
    recipe: Recipe,
    spec: Spec | None,
    *,
    start: bool,
    input_shape: tuple[int, int, int] | None,
    raw: Any = None,
    note: Note = lambda _: None,
) -> FineTune | None:
    """Apply the recipe's `init` (only when the run `start`s: a resume restores its checkpoint) and
    `freeze` to a freshly built model, before its optimizer and EMA copy are made."""
    if recipe.init is None and not recipe.freeze:
        return None
    head = head_keys(spec) if spec is not None else _last_linear_keys(model)
    result = FineTune()
    if recipe.init is not None and start:
        classes = spec.classes if spec is not None else None
        result = load_init(
            model, recipe.init, head, input_shape=input_shape, classes=classes, raw=raw, note=note
        )
    if recipe.freeze:
        sections = _sections(spec) if spec is not None else {}
        result.frozen, result.frozen_params, norms = freeze(
            model, recipe.freeze, head, sections=sections, raw=raw
        )
        total = sum(p.numel() for p in model.parameters())
        what = "everything but the head" if recipe.freeze == ALL_BUT_HEAD else ", ".join(recipe.freeze)
        note(
            f"froze {what}: {result.frozen_params:,} of {total:,} parameters"
            f" ({', '.join(result.frozen[:8])}{', ...' if len(result.frozen) > 8 else ''})"
            + (f"; {norms} batch norms keep their statistics" if norms else "")
        )
        stuck = [h for h in result.head if any(h == p or h.startswith(p + ".") for p in result.frozen)]
        if stuck:
            note(f"the re-initialised head is frozen too ({', '.join(stuck)}): it keeps its initial weights")
    return result


def provenance(tuning: FineTune | None, out: Path) -> dict[str, Any] | None:
    """What recipe.yaml records as `init_weights`: the file a run started from (path, sha256, kind);
    a resumed run, which reads no weights, keeps the record its start wrote."""
    if tuning is None:
        return None
    if tuning.source is not None:
        return tuning.source.record()
    return _recorded(out)


def _recorded(out: Path) -> dict[str, Any] | None:
    import yaml

    try:
        doc = yaml.safe_load((out / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    value = doc.get("init_weights") if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else None
