"""torch.hub entry points: one per zoo spec, generated from specs/ at import.

    model = torch.hub.load("path/to/netspec", "resnet50_d", source="local", num_classes=10)

Each entry is `netspec.create_model(NAME, **kwargs)`: `num_classes`, `pretrained` (a weights
file), `features_only`, `out_indices`, and `--set` overrides as keywords (`input_size=160`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from netspec.create import create_model as _create_model
from netspec.zoo import zoo_specs as _zoo_specs

if _TYPE_CHECKING:  # torch.hub lists every public callable of this module as an entry point
    from collections.abc import Callable

    from torch import nn

dependencies = ["torch", "torchvision", "yaml", "pydantic", "jinja2", "fvcore"]


def _entry(name: str, path: str) -> Callable[..., nn.Module]:
    def entry(**kwargs: _Any) -> nn.Module:
        return _create_model(path, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"netspec's zoo spec '{name}' (netspec.create_model; keywords as there)."
    return entry


for _path in _zoo_specs():
    if _path.stem.isidentifier() and not _path.stem.startswith("_"):
        globals()[_path.stem] = _entry(_path.stem, str(_path))
