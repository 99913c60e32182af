"""netspec: a declarative YAML architecture compiler for convolutional networks."""

from collections.abc import Sequence
from os import PathLike
from typing import Any

from ._version import __version__ as __version__
from .analysis import Analysis, analyze
from .errors import Problem, SpecError, SpecShapeError, SpecSizeError, SpecSyntaxError
from .export import ExportError, export_source
from .features import FeatureInfo, FeatureRef
from .lower import lower
from .resolve import load_spec, loads_spec
from .spec import Spec

from . import train  # isort: skip  (the runner's package, callable: netspec.train(model, recipe))


def build(
    spec: Spec,
    *,
    input_size: int | tuple[int, int] | None = None,
    seed: int | None = None,
    features: Sequence[FeatureRef] | bool | None = None,
):
    """A plain torch.nn.Module for a spec (imports torch on first use). With `features` (module
    names, indices into `feature_info`'s levels, or True for every level) it returns those
    intermediate outputs, a list, instead of the logits."""
    from .torch_backend import build as _build

    return _build(spec, input_size=input_size, seed=seed, features=features)


def create_model(
    name_or_path: str | PathLike[str],
    num_classes: int | None = None,
    pretrained: str | PathLike[str] | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    **overrides: Any,
):
    """A zoo spec or spec file as a ready module, timm-style (netspec/create.py): `num_classes`,
    `pretrained` (a weights file), `features_only`, `out_indices`, and `--set` overrides as keywords."""
    from .create import create_model as _create_model

    return _create_model(name_or_path, num_classes, pretrained, features_only, out_indices, **overrides)


__all__ = [
    "Analysis",
    "ExportError",
    "FeatureInfo",
    "Problem",
    "Spec",
    "SpecError",
    "SpecShapeError",
    "SpecSizeError",
    "SpecSyntaxError",
    "analyze",
    "build",
    "create_model",
    "export_source",
    "load_spec",
    "loads_spec",
    "lower",
    "train",
]
