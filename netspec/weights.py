"""Importing pretrained weights (torchvision, timm, or any state_dict) into a spec's module.

Checkpoints are read without unpickling code: `torch.load(weights_only=True)` for .pth/.pt/.bin and
`safetensors` for .safetensors. A checkpoint may be a raw state_dict or one nested under
'state_dict', 'model', 'model_state' or 'model_state_dict'; DDP's 'module.' (and torch.compile's
'_orig_mod.') prefixes are stripped.

Keys are matched by name first. The tensors left over are matched by order within each group of
equal role (the key's last part: weight, bias, running_mean, ...) and equal shape, both sides in
module order, which is how a spec whose module names differ from the checkpoint's (timm's MobileNet,
a renamed backbone) still loads. Every such mapping is reported. A strict import must account for
every tensor on both sides; otherwise SpecError names the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import pickle
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import Problem, SpecError
from .spec import Spec

NESTED_KEYS = ("state_dict", "model", "model_state", "model_state_dict")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")
OPTIONAL_SUFFIX = "num_batches_tracked"  # a BN counter: absent from old checkpoints, never required
SHOWN = 5  # keys named per category in an error


Shape = tuple[int, ...]


def _shape(t: Tensor) -> Shape:
    return tuple(int(d) for d in t.shape)


def _fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


@dataclass
class ImportReport:
    """What import_weights did. Keys are the model's unless said otherwise."""

    checkpoint: str
    matched: list[str] = field(default_factory=list)  # loaded under their own name
    remapped: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint key, model key)
    missing: list[str] = field(default_factory=list)  # model tensors left at their initial values
    unexpected: list[str] = field(default_factory=list)  # checkpoint tensors not used
    mis_shaped: list[tuple[str, Shape, Shape]] = field(default_factory=list)  # (key, ckpt, model)

    @property
    def loaded(self) -> int:
        return len(self.matched) + len(self.remapped)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped)

    def format(self, limit: int | None = None) -> str:
        """A summary for the command line; `limit` caps the lines per list (None: all)."""
        lines = [
            f"loaded {self.loaded} tensors from {self.checkpoint}: {len(self.matched)} by name, "
            f"{len(self.remapped)} remapped by order"
        ]

        def section(title: str, items: list[str]) -> None:
            if not items:
                return
            lines.append(f"{title} ({len(items)}):")
            shown = items if limit is None else items[:limit]
            lines.extend(f"  {item}" for item in shown)
            if len(shown) < len(items):
                lines.append(f"  ... and {len(items) - len(shown)} more")

        section("remapped (checkpoint -> model)", [f"{s} -> {d}" for s, d in self.remapped])
        section(
            "wrong shape (checkpoint vs model)",
            [f"{k} {_fmt_shape(a)} vs {_fmt_shape(b)}" for k, a, b in self.mis_shaped],
        )
        section("missing (kept their initial values)", self.missing)
        section("unexpected (not used)", self.unexpected)
        return "\n".join(lines)


def safe_torch_load(path: Path, what: str = "checkpoint") -> Any:
    """torch.load(weights_only=True), on CPU, with every failure turned into a SpecError that says
    why: a pickled Python object (refused, never unpickled) or a file that is not a checkpoint."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            raise SpecError(
                Problem(
                    f"{what} '{path}' contains a pickled Python object ({found.group(1)}), which netspec "
                    "refuses to unpickle: only tensors, numbers, strings and containers are read "
                    "(torch.load with weights_only=True)",
                    hint="re-save the weights alone, e.g. torch.save(model.state_dict(), path), "
                    "or convert them to .safetensors",
                )
            ) from None
        reason = re.search(r"WeightsUnpickler error: *(.+)", text)
        raise SpecError(
            f"{what} '{path}' is not a readable PyTorch checkpoint: the weights-only unpickler "
            f"stopped ({reason.group(1).strip() if reason else 'invalid pickle data'})"
        ) from None
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "empty or truncated file"
        raise SpecError(
            f"{what} '{path}' is not a readable PyTorch checkpoint: {type(exc).__name__}: {detail}"
        ) from None


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The flat {key: tensor} state_dict of a checkpoint file, unwrapped and with DDP prefixes gone."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"checkpoint '{path}' does not exist")
    obj: Any
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise SpecError(
                Problem(
                    f"reading '{path}' needs the safetensors package, which is not installed",
                    hint='pip install "netspec[safetensors]" (or: pip install safetensors)',
                )
            ) from None

        try:
            obj = load_file(str(path), device="cpu")
        except Exception as exc:
            raise SpecError(f"'{path}' is not a readable safetensors file: {exc}") from None
    else:
        obj = safe_torch_load(path)
    return _state_dict_of(obj, path)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _state_dict_of(obj: Any, path: Path) -> dict[str, Tensor]:
    for _ in range(4):  # {'model': {'state_dict': ...}} and the like
        if not isinstance(obj, dict) or _is_tensor_dict(obj):
            break
        inner = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise SpecError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a state_dict")
    tensors = {str(k): v.detach() for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        keys = ", ".join(map(str, list(obj)[:8])) or "none"
        raise SpecError(
            Problem(
                f"checkpoint '{path}' has no tensors at its top level (keys: {keys})",
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
    return tensors


def _role(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _optional(key: str) -> bool:
    return _role(key) == OPTIONAL_SUFFIX


def match_state_dicts(
    source: dict[str, Tensor], target: dict[str, Tensor]
) -> tuple[dict[str, str], list[tuple[str, Shape, Shape]]]:
    """{model key: checkpoint key} for every tensor that can be matched, and the keys present on
    both sides with different shapes. By name first, then by order within (role, shape) groups of
    equal size on both sides."""
    mapping: dict[str, str] = {}
    mis_shaped = []
    for key, t in target.items():
        if key in source:
            if _shape(source[key]) == _shape(t):
                mapping[key] = key
            else:
                mis_shaped.append((key, _shape(source[key]), _shape(t)))
    used = set(mapping.values())
    src_groups: dict[tuple[str, Shape], list[str]] = defaultdict(list)
    dst_groups: dict[tuple[str, Shape], list[str]] = defaultdict(list)
    for key, t in source.items():
        if key not in used:
            src_groups[(_role(key), _shape(t))].append(key)
    for key, t in target.items():
        if key not in mapping:
            dst_groups[(_role(key), _shape(t))].append(key)
    for group, dst_keys in dst_groups.items():
        src_keys = src_groups.get(group, [])
        if len(src_keys) == len(dst_keys):
            mapping.update(zip(dst_keys, src_keys, strict=True))
    return mapping, mis_shaped


def import_weights(
    spec_or_model: Spec | nn.Module | str | Path,
    checkpoint_path: str | Path,
    *,
    strict: bool = True,
) -> tuple[nn.Module, ImportReport]:
    """Load a checkpoint (torchvision, timm, ...) into a spec's module.

    `spec_or_model`: a Spec (built here), a module built from one, or a spec file / zoo name.
    Returns (model, report); the model's training mode is as it was (a fresh build trains).
    strict=True: every model tensor must be filled and every checkpoint tensor used, else SpecError
    naming the first missing, unexpected and mis-shaped keys with their shapes (the model is left
    untouched). strict=False loads what matches and reports the rest (fine-tuning a new head), but
    still fails if nothing matches.
    """
    from .torch_backend import build

    if isinstance(spec_or_model, (str, Path)):
        from .resolve import load_spec
        from .zoo import find_spec

        spec_or_model = load_spec(find_spec(str(spec_or_model)))
    if isinstance(spec_or_model, Spec):
        model = build(spec_or_model)
        name = spec_or_model.name
    elif isinstance(spec_or_model, nn.Module):
        model = spec_or_model
        name = type(model).__name__
    else:
        raise TypeError(f"import_weights takes a Spec or an nn.Module, not {type(spec_or_model).__name__}")

    source = read_checkpoint(checkpoint_path)
    target = model.state_dict()
    mapping, mis_shaped = match_state_dicts(source, target)
    used = set(mapping.values())
    # a name present on both sides with two shapes, neither side of which found another partner
    mis_shaped = [m for m in mis_shaped if m[0] not in mapping and m[0] not in used]
    bad_names = {k for k, _, _ in mis_shaped}
    report = ImportReport(
        checkpoint=str(checkpoint_path),
        matched=[k for k in target if mapping.get(k) == k],
        remapped=[(mapping[k], k) for k in target if k in mapping and mapping[k] != k],
        missing=[k for k in target if k not in mapping and k not in bad_names and not _optional(k)],
        unexpected=[k for k in source if k not in used and k not in bad_names and not _optional(k)],
        mis_shaped=mis_shaped,
    )
    required = [k for k in target if not _optional(k)]
    if not any(k in mapping for k in required):
        raise SpecError(_mismatch(report, source, target, name, "nothing in it fits"))
    if strict and not report.complete:
        raise SpecError(_mismatch(report, source, target, name, "it does not fit"))
    new_state = dict(target)
    for dst, src in mapping.items():
        new_state[dst] = source[src]
    model.load_state_dict(new_state, strict=True)
    return model, report


def _mismatch(
    report: ImportReport, source: dict[str, Tensor], target: dict[str, Tensor], name: str, what: str
) -> list[Problem]:
    problems = [
        Problem(
            f"checkpoint '{report.checkpoint}' ({len(source)} tensors) does not load into '{name}' "
            f"({len(target)} tensors): {what}",
            hint=None if not report.loaded else f"{report.loaded} tensors matched by name or by order",
        )
    ]

    def listing(title: str, items: list[str]) -> None:
        if items:
            more = f", and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
            problems.append(Problem(f"{title} ({len(items)}): {', '.join(items[:SHOWN])}{more}"))

    listing(
        "wrong shape (checkpoint vs model)",
        [f"{k} {_fmt_shape(a)} vs {_fmt_shape(b)}" for k, a, b in report.mis_shaped],
    )
    listing("missing from the checkpoint", [f"{k} {_fmt_shape(_shape(target[k]))}" for k in report.missing])
    listing(
        "unexpected in the checkpoint", [f"{k} {_fmt_shape(_shape(source[k]))}" for k in report.unexpected]
    )
    return problems


__all__ = ["ImportReport", "import_weights", "match_state_dicts", "read_checkpoint", "safe_torch_load"]
