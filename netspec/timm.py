"""`import netspec.timm` registers every zoo spec with timm as `netspec_<name>`:

    import netspec.timm, timm
    timm.create_model("netspec_resnet50_d", num_classes=10, features_only=True, out_indices=(1, 2, 3, 4))

Each entry point is a function returning the module (timm's `register_model` contract, without
`build_model_with_cfg`): `num_classes`, `features_only`, `out_indices`, `in_chans` and `img_size`
mean what they mean in timm, other keywords are `--set` overrides (netspec/create.py). Weights come
from a file, the way timm loads local weights:
`pretrained=True, pretrained_cfg_overlay={"file": "r50d.pth"}`. Each model carries its
`pretrained_cfg` (input size, classes, the normalisation netspec's ImageNet pipeline uses), so
`timm.data.resolve_data_config(model=m)` and timm's transforms work as for timm's own models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import timm  # the real timm: absolute imports never find this module
from timm.models import register_model
from torch import nn

from .create import create_model
from .errors import Problem, SpecError
from .resolve import load_spec
from .spec import Spec
from .zoo import zoo_specs

PREFIX = "netspec_"
# netspec's ImageNet normalisation (netspec.train.data.BOT_MEAN_255 / 255), stated here so that
# registering the zoo never imports the data pipeline
MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)
STD = (58.393 / 255, 57.12 / 255, 57.375 / 255)
CROP_PCT = 224 / 256  # validation resizes to size * 256 / 224, then center-crops

default_cfgs: dict[str, dict[str, Any]] = {}  # timm's register_model reads it from this module


def pretrained_cfg(spec: Spec) -> dict[str, Any]:
    """timm's pretrained_cfg for a spec: what its data config and transforms read."""
    size = spec.input.size
    h, w = (size, size) if isinstance(size, int) else size
    c = spec.input.channels
    mean, std = (MEAN, STD) if c == 3 else ((sum(MEAN) / 3,) * c, (sum(STD) / 3,) * c)
    return {
        "url": "",
        "num_classes": spec.classes or 0,
        "input_size": (c, h, w),
        "interpolation": "bilinear",
        "crop_pct": CROP_PCT,
        "mean": mean,
        "std": std,
        "license": "mit",
        "description": spec.description or spec.name,
    }


def _weights_file(pretrained: bool, kwargs: dict[str, Any]) -> str | None:
    if not pretrained:
        return None
    for cfg in (kwargs.get("pretrained_cfg_overlay"), kwargs.get("pretrained_cfg")):
        file = cfg.get("file") if isinstance(cfg, dict) else getattr(cfg, "file", None)
        if file:
            return str(file)
    raise SpecError(
        Problem(
            "netspec's zoo ships no weights: pretrained=True needs a file",
            ("pretrained",),
            hint='timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay={"file": "weights.pth"})',
        )
    )


def entrypoint(name: str, spec_path: str) -> Callable[..., nn.Module]:
    def create(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        file = _weights_file(pretrained, kwargs)
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's own bookkeeping
            kwargs.pop(key, None)
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        model = create_model(spec_path, pretrained=file, **kwargs)
        if device is not None or dtype is not None:
            model.to(device=device, dtype=dtype)
        cfg = dict(default_cfgs[create.__name__], architecture=create.__name__)
        if kwargs.get("num_classes") is not None:
            cfg["num_classes"] = kwargs["num_classes"]
        # what timm's own models carry (plain data: mypy's Module typing does not know it)
        model.pretrained_cfg = model.default_cfg = cfg  # type: ignore[assignment]
        return model

    create.__name__ = create.__qualname__ = PREFIX + name
    create.__module__ = __name__
    create.__doc__ = f"netspec's zoo spec '{name}' (netspec/create.py's create_model)."
    return create


def register_zoo() -> list[str]:
    """Registers every zoo spec with timm (again: the last registration wins); returns the names."""
    names = []
    for path in zoo_specs():
        fn = entrypoint(path.stem, str(path))
        default_cfgs[fn.__name__] = pretrained_cfg(load_spec(path))
        globals()[fn.__name__] = fn  # register_model looks the module up; timm lists it in __all__
        if fn.__name__ not in timm.list_models(fn.__name__):
            register_model(fn)
        names.append(fn.__name__)
    return names


__all__ = ["MODELS", "default_cfgs", "pretrained_cfg", "register_zoo"]  # timm appends each model

MODELS = register_zoo()
