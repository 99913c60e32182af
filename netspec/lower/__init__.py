"""Lowering: a validated spec becomes the IR, with every name and shape inferred on the way.

The package reads in pipeline order: `stages` (the model: stem, stages, head) -> `sequence` (items of a
list: layers, composites, block uses) -> `blocks` (one use of a block: bound parameters, body or
branches, merge) -> `shortcut` (the residual shortcut rule) -> `primitive` (one layer). A `Cursor`
(cursor.py) carries where lowering stands; `Lowering` (context.py) what it has found and spent;
`replay` copies a block use that repeats an earlier one instead of lowering it again.
"""

from __future__ import annotations

from ..ir import SeqNode
from ..spec import Spec
from .context import Lowering
from .sequence import COMPOSITES, lower_sequence, split_item
from .stages import lower_model


def lower(spec: Spec, input_size: tuple[int, int] | None = None) -> SeqNode:
    """The IR of a validated spec. Raises SpecError with every problem found."""
    return lower_model(Lowering(spec, input_size, lower_sequence))


__all__ = ["COMPOSITES", "lower", "split_item"]
