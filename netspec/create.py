"""`create_model`: a spec as a ready module for other people's code, in timm's words.

    create_model("resnet50_d", num_classes=10, pretrained="r50d.pt", features_only=True)

`num_classes` sets `classes`; `pretrained` is a weights file loaded through
`netspec.weights.import_weights` (strictly, except the classifier head when `num_classes` changes
it); `features_only` returns the feature levels (netspec/features.py), `out_indices` choosing them
as timm does; every other keyword is a `--set` override (`input_size=160`, `vars={"width": 2}`,
`**{"stages.2.depth": 8}`): mappings set key by key, as `extends` merges them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from os import PathLike, fspath
from typing import Any, cast

import torch
from torch import nn

from .analysis import analyze
from .errors import Problem, SpecError
from .extract import extract_features
from .features import FeatureInfo, FeatureRef, choose_levels
from .resolve import load_spec
from .spec import Spec
from .torch_backend import build, build_ir
from .zoo import find_spec

# keyword -> spec path: the names timm's create_model passes, and one for the input size
ALIASES = {"input_size": "input.size", "img_size": "input.size", "in_chans": "input.channels"}


def override_texts(overrides: dict[str, Any]) -> list[str]:
    """Keywords as `--set` texts: `vars={"w": 2}` -> `vars.w=2`; values written as JSON (valid YAML)."""
    texts: list[str] = []

    def add(path: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                add(f"{path}.{key}", inner)
        else:
            texts.append(f"{path}={json.dumps(list(value) if isinstance(value, tuple) else value)}")

    for key, value in overrides.items():
        add(ALIASES.get(key, key), value)
    return texts


def level_indices(out_indices: int | Sequence[int] | None) -> Sequence[FeatureRef] | bool:
    """timm's `out_indices`: None every level, an int n the last n, a sequence those indices."""
    if out_indices is None:
        return True
    if isinstance(out_indices, int):
        if out_indices < 1:
            raise SpecError(
                Problem(f"out_indices={out_indices}: the last n levels need n >= 1", ("out_indices",))
            )
        return list(range(-out_indices, 0))
    return list(out_indices)


def create_model(
    name_or_path: str | PathLike[str],
    num_classes: int | None = None,
    pretrained: str | PathLike[str] | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    **overrides: Any,
) -> nn.Module:
    """A zoo spec's name or a spec file as a plain module (training mode, as a fresh build).

    With `features_only` it returns the list of its feature levels' outputs, `feature_info` naming
    their channels and reductions; otherwise the logits, with `feature_info` listing the levels."""
    if pretrained is not None and not isinstance(pretrained, (str, PathLike)):
        raise SpecError(
            Problem(
                f"pretrained takes a weights file, not {pretrained!r}: netspec's zoo ships no weights",
                ("pretrained",),
                hint="a torchvision/timm/netspec checkpoint path (netspec import-weights names the format)",
            )
        )
    path = find_spec(fspath(name_or_path))
    texts = override_texts(overrides)
    base = load_spec(path, texts)
    spec = base if num_classes is None else load_spec(path, [*texts, f"classes={json.dumps(num_classes)}"])
    features = level_indices(out_indices) if features_only else None
    if pretrained is None:
        return build(spec, features=features)
    model = build(spec)
    chosen = choose_levels(cast(FeatureInfo, model.feature_info), analyze(spec), features)
    _load_weights(model, base, spec, fspath(pretrained))
    return model if chosen is None else extract_features(model, chosen)


def _head_keys(base: Spec, spec: Spec) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """The tensors whose shapes `classes` decides: key -> (shape in the checkpoint's spec, new shape)."""
    from .lower import lower

    if base.classes == spec.classes:
        return {}
    with torch.device("meta"):  # shapes only: nothing allocated, nothing initialised for real
        old = build_ir(lower(base)).state_dict()
        new = build_ir(lower(spec)).state_dict()
    return {
        k: (tuple(old[k].shape), tuple(v.shape))
        for k, v in new.items()
        if k in old and old[k].shape != v.shape
    }


def _load_weights(model: nn.Module, base: Spec, spec: Spec, file: str) -> None:
    """Strictly, unless `num_classes` changed the head: then everything but the head must load."""
    from .weights import import_weights

    head = _head_keys(base, spec)
    if not head:
        import_weights(model, file, strict=True)
        return
    _, report = import_weights(model, file, strict=False)
    loaded_elsewhere = [k for k in report.missing if k not in head]
    unexpected = [k for k in report.unexpected if k not in head]
    misfit = [k for k, _, _ in report.mis_shaped if k not in head] + [k for k, _, _ in report.wrong_dtype]
    if loaded_elsewhere or misfit or report.ambiguous or unexpected:
        problems = [
            Problem(
                f"weights '{file}' do not fit '{spec.name}' outside its classifier head "
                f"({', '.join(head)}, re-initialised for {spec.classes} classes)",
                ("pretrained",),
                hint="netspec import-weights SPEC FILE lists how each tensor paired",
            )
        ]
        problems += [Problem(f"missing from the checkpoint: {k}") for k in loaded_elsewhere]
        problems += [Problem(f"unexpected in the checkpoint: {k}") for k in unexpected]
        problems += [Problem(f"wrong shape or dtype: {k}") for k in misfit]
        problems += [
            Problem(f"ambiguous: {len(a.model_keys)} tensors of shape {a.shape}") for a in report.ambiguous
        ]
        raise SpecError(problems)


__all__ = ["create_model", "level_indices", "override_texts"]
