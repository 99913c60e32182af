"""Any model, the same report: an nn.Module (torchvision, timm, the user's own) traced into netspec's
Analysis, so `netspec report` compares a spec with any model in one tool.

reference.py names and builds the model, trace.py traces it on the meta device (torch.fx, or forward
hooks where FX cannot), handles.py says what each operation costs (fvcore's MACs), analysis.py turns the
trace into the report's rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .analysis import analyze_module
from .reference import ForeignModel, input_shape, is_model_reference, load_model

if TYPE_CHECKING:
    from ..report import ScalePoint


def model_scaling(model: ForeignModel, channels: int, sizes: list[tuple[int, int]]) -> list[ScalePoint]:
    """The model's totals at other input sizes (each traced again), or why it does not take one."""
    from ..errors import SpecError
    from ..report import ScalePoint

    points = []
    for size in sizes:
        try:
            a, _ = analyze_module(model.module, (channels, *size), model.name)
            points.append(ScalePoint(size, a.params, a.macs, a.flops, a.output_shape))
        except SpecError as exc:
            points.append(ScalePoint(size, error=exc.problems[0].message))
    return points


__all__ = [
    "ForeignModel",
    "analyze_module",
    "input_shape",
    "is_model_reference",
    "load_model",
    "model_scaling",
]
