"""netspec: a declarative YAML architecture compiler for convolutional networks."""

from ._version import __version__ as __version__
from .analysis import Analysis, analyze
from .errors import Problem, SpecError, SpecShapeError, SpecSizeError, SpecSyntaxError
from .export import ExportError, export_source
from .lower import lower
from .resolve import load_spec, loads_spec
from .spec import Spec

from . import train  # isort: skip  (the runner's package, callable: netspec.train(model, recipe))


def build(spec: Spec, *, input_size: int | tuple[int, int] | None = None, seed: int | None = None):
    """A plain torch.nn.Module for a spec (imports torch on first use)."""
    from .torch_backend import build as _build

    return _build(spec, input_size=input_size, seed=seed)


__all__ = [
    "Analysis",
    "ExportError",
    "Problem",
    "Spec",
    "SpecError",
    "SpecShapeError",
    "SpecSizeError",
    "SpecSyntaxError",
    "analyze",
    "build",
    "export_source",
    "load_spec",
    "loads_spec",
    "lower",
    "train",
]
