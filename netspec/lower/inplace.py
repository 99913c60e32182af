"""Which activations may overwrite their input, as torchvision's `ReLU(inplace=True)` do: those whose
input is a fresh tensor no one else reads and whose backward does not need it (the layer kinds' traits
`inplace_ok` and `fresh_output` say which)."""

from __future__ import annotations

from ..ir import LayerNode, Node, ParallelNode, ResidualNode
from ..layers import KINDS


def can_run_inplace(node: LayerNode, prev: Node | None) -> bool:
    """An in-place activation right after `prev` in a sequence."""
    if not KINDS[node.kind].inplace_ok:
        return False
    if isinstance(prev, LayerNode):
        return KINDS[prev.kind].fresh_output
    return isinstance(prev, ResidualNode | ParallelNode)  # a merge's output is fresh


def can_follow_merge(node: LayerNode) -> bool:
    """An in-place activation as the first layer after a merge."""
    return KINDS[node.kind].inplace_ok
