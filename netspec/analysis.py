"""Static analysis of the IR: shapes, parameters, MACs, FLOPs, activation memory, receptive field.

Conventions (stated once, as fvcore states its own):
- MACs: one multiply-add = 1, counted exactly as fvcore's FlopCountAnalysis counts a model in eval
  mode: conv and linear (no bias), batch norm 2 per element (1 without affine), adaptive/global average
  pooling 1 per input element; max/avg pooling, activations, dropout and merges count 0.
- FLOPs: 2 per MAC plus elementwise work: bias adds, 1 per activation output, window comparisons of
  max pooling, the adds of average pooling, the adds and multiplies of residual/SE merges.
- Activation memory: every layer output of one sample, at 4 bytes per element (float32): what training
  keeps for backward. Peak activation memory: the most that one inference holds at once (liveness:
  each output from its producer to its last reader, the input included; memory.py).
- Receptive field: the theoretical one, r <- r + (k - 1) * j, j <- j * s, along the path that
  maximises it; after a global pool it is the whole input ("global").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .ir import INPUT, AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode, children
from .layers import KINDS
from .layers.base import IDENTITY_WINDOW, Shape, numel
from .layers.merge import MergeKind
from .lower import lower
from .memory import peak_activations
from .spec import Spec

BYTES_PER_ELEMENT = 4


@dataclass
class Field:
    """Receptive field (per spatial dim) and jump (effective stride) at a point in the network."""

    rf: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)
    is_global: bool = False

    def through(
        self,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        is_global: bool,
        upscale: tuple[int, int] = (1, 1),
    ) -> Field:
        if is_global:  # a global pool: one output pixel, no grid to step along
            return Field(self.rf, self.jump, True)
        if kernel == (1, 1) and stride == (1, 1) and upscale == (1, 1):  # most layers (1x1 convs, norms, ...)
            return self
        jump = (self.jump[0] * stride[0], self.jump[1] * stride[1])
        # an upsampling divides the jump where it divides (whole pixels; elsewhere an upper bound)
        jump = (
            jump[0] // upscale[0] if jump[0] % upscale[0] == 0 else jump[0],
            jump[1] // upscale[1] if jump[1] % upscale[1] == 0 else jump[1],
        )
        if self.is_global:  # the field already covers the input (an SE gate); the grid still strides
            return Field(self.rf, jump, True)
        rf = (self.rf[0] + (kernel[0] - 1) * self.jump[0], self.rf[1] + (kernel[1] - 1) * self.jump[1])
        return Field(rf, jump)

    @staticmethod
    def widest(fields: list[Field]) -> Field:
        if any(f.is_global for f in fields):  # the grid of the widest map (a gate is 1x1, broadcast)
            jump = (max(f.jump[0] for f in fields), max(f.jump[1] for f in fields))
            return Field(next(f for f in fields if f.is_global).rf, jump, True)
        widest = fields[0]  # (the first of the widest, as max() gives it)
        for f in fields[1:]:
            if (f.rf[0] * f.rf[1], f.rf) > (widest.rf[0] * widest.rf[1], widest.rf):
                widest = f
        return widest


@dataclass(slots=True)
class Row:
    """One line of a report: a layer or a container (block, stage, branch)."""

    path: str
    kind: str
    depth: int
    section: str
    input_shape: Shape
    output_shape: Shape
    params: int
    macs: int
    flops: int
    activations: int  # elements this row's layers write (one sample)
    receptive_field: tuple[int, int] | None  # None after a global pool
    jump: tuple[int, int]
    is_layer: bool
    # in a graph list: the names of the sibling outputs it reads (ir.Node.inputs); (): the previous one
    inputs: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        d["input_shape"] = list(self.input_shape)
        d["output_shape"] = list(self.output_shape)
        d["receptive_field"] = list(self.receptive_field) if self.receptive_field else "global"
        d["jump"] = list(self.jump)
        return d


@dataclass
class Analysis:
    name: str
    input_shape: Shape
    output_shape: Shape
    params: int
    macs: int
    flops: int
    activations: int
    receptive_field: tuple[int, int] | None
    jump: tuple[int, int]
    rows: list[Row] = field(default_factory=list)
    layers: int = 0
    # the most activation elements one inference holds at once, the input included (memory.py)
    peak_activations: int = 0
    # a spec with `outputs:`: each output's key and shape (the model returns a dict of them)
    outputs: dict[str, Shape] | None = None

    @property
    def peak_activation_bytes(self) -> int:
        return self.peak_activations * BYTES_PER_ELEMENT

    @property
    def activation_bytes(self) -> int:
        return self.activations * BYTES_PER_ELEMENT

    @property
    def param_bytes(self) -> int:
        return self.params * BYTES_PER_ELEMENT

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "conventions": {
                "macs": "fvcore: one multiply-add = 1",
                "flops": "2 per MAC plus elementwise ops",
                "memory": "float32 activations of one sample; activations: every layer output (what"
                " training keeps); peak: the most alive at once in inference, input included",
            },
            "total": {
                "params": self.params,
                "macs": self.macs,
                "flops": self.flops,
                "activations": self.activations,
                "activation_bytes": self.activation_bytes,
                "peak_activations": self.peak_activations,
                "peak_activation_bytes": self.peak_activation_bytes,
                "param_bytes": self.param_bytes,
                "layers": self.layers,
                "receptive_field": list(self.receptive_field) if self.receptive_field else "global",
                "jump": list(self.jump),
            },
            "outputs": {k: list(v) for k, v in self.outputs.items()} if self.outputs is not None else None,
            "layers": [r.to_json() for r in self.rows],
        }


@dataclass(slots=True)
class _Totals:
    params: int = 0
    macs: int = 0
    flops: int = 0
    activations: int = 0

    def add(self, other: _Totals) -> None:
        self.params += other.params
        self.macs += other.macs
        self.flops += other.flops
        self.activations += other.activations


# where a container's row goes until its children's figures are in (it precedes their rows)
_PENDING = Row("", "", 0, "", (), (), 0, 0, 0, 0, None, (1, 1), False)


class _Analyzer:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.layers = 0

    def node(self, node: Node, f: Field, depth: int) -> tuple[_Totals, Field]:
        if isinstance(node, LayerNode):
            t = _Totals()
            return t, self.layer(node, f, depth, t)
        if isinstance(node, AuxNode):
            return self.aux(node, f, depth)
        index = len(self.rows)
        self.rows.append(_PENDING)  # its place, first; its row comes below, with its figures
        t = _Totals()
        if isinstance(node, SeqNode) and node.graph:
            out = self.graph(node, f, depth + 1, t)
            kind = node.block or node.role
        elif isinstance(node, SeqNode):
            out = self.seq(node.children, f, depth + 1, t)
            kind = node.block or node.role
        elif isinstance(node, ResidualNode):
            body = self.seq(node.body, f, depth + 1, t)
            short = f  # (the identity)
            if node.shortcut is not None:
                st, short = self.node(node.shortcut, f, depth + 1)
                t.add(st)
            merged = Field.widest([body, short])
            t.flops += node.merge_flops
            t.activations += numel(node.after[0].in_shape if node.after else node.out_shape)
            out = self.seq(node.after, merged, depth + 1, t)
            kind = node.block
        elif isinstance(node, ParallelNode):
            outs = []
            for branch in node.branches:
                bt, bf = self.node(branch, f, depth + 1)
                t.add(bt)
                outs.append(bf)
            t.flops += node.merge_flops
            t.activations += numel(node.after[0].in_shape if node.after else node.out_shape)
            out = self.seq(node.after, Field.widest(outs), depth + 1, t)
            kind = node.block
        else:  # pragma: no cover - the IR has no other node types
            raise TypeError(type(node))
        self.rows[index] = self.row(node, kind, depth, t, out, False)
        return t, out

    def aux(self, node: AuxNode, f: Field, depth: int) -> tuple[_Totals, Field]:
        """Training-only side head: its parameters count; its eval-time cost is zero (fvcore's view)."""
        index = len(self.rows)
        self.rows.append(self.row(node, "aux", depth, _Totals(), f, False))  # first; its figures come below
        inner = _Totals()
        self.seq(node.children, f, depth + 1, inner)
        for row in self.rows[index + 1 :]:
            row.macs = row.flops = row.activations = 0
        self.rows[index] = self.row(node, "aux", depth, _Totals(params=inner.params), f, False)
        self.rows[index].output_shape = node.head_shape
        return _Totals(params=inner.params), f

    def layer(self, node: LayerNode, f: Field, depth: int, t: _Totals) -> Field:
        """A layer's row; its figures are added to `t` (most nodes are layers: no totals of their own)."""
        w = node.window
        params, macs, flops = node.cost
        # (most layers map positions one to one: 1x1 convs, norms, activations)
        out = f if w == IDENTITY_WINDOW else f.through(w.kernel, w.stride, w.is_global, w.upscale)
        y = node.out_shape
        activations = numel(y)
        t.params += params
        t.macs += macs
        t.flops += flops
        t.activations += activations
        self.layers += 1
        self.rows.append(
            Row(
                node.path or "(model)",
                node.kind,
                depth,
                node.section,
                node.in_shape,
                y,
                params,
                macs,
                flops,
                activations,
                None if out.is_global else out.rf,
                out.jump,
                True,
                node.inputs,
            )
        )
        return out

    def seq(self, nodes: list[Node], f: Field, depth: int, t: _Totals) -> Field:
        layer = self.layer
        for child in nodes:
            if type(child) is LayerNode:  # (most children: one call, no totals of their own)
                f = layer(child, f, depth, t)
            else:
                ct, f = self.node(child, f, depth)
                t.add(ct)
        return f

    def graph(self, node: SeqNode, f: Field, depth: int, t: _Totals) -> Field:
        """A graph list: each child's field from the fields of the outputs it reads (the widest of
        several: a merge), so the receptive field is the maximum over paths."""
        fields = {INPUT: f}
        out = f
        for child in node.children:
            reads = _value_inputs(child)
            into = Field.widest([fields[name] for name in reads]) if reads else out
            ct, out = self.node(child, into, depth)
            t.add(ct)
            fields[child.name] = out
        if node.outputs is not None:
            return Field.widest([fields[name] for name in node.outputs.values()])
        return out

    @staticmethod
    def row(node: Node, kind: str, depth: int, t: _Totals, f: Field, is_layer: bool) -> Row:
        return Row(
            node.path or "(model)",
            kind,
            depth,
            node.section,
            node.in_shape,
            node.out_shape,
            t.params,
            t.macs,
            t.flops,
            t.activations,
            None if f.is_global else f.rf,
            f.jump,
            is_layer,
            node.inputs,
        )


def _value_inputs(node: Node) -> tuple[str, ...]:
    """The outputs whose values a graph list's item reads (a merge may read the last ones for their
    shape only: they add nothing to its receptive field)."""
    kind = KINDS.get(node.kind) if isinstance(node, LayerNode) else None
    skip = kind.shape_only_inputs if isinstance(kind, MergeKind) else 0
    return node.inputs[: len(node.inputs) - skip]


def analyze_ir(root: SeqNode, name: str) -> Analysis:
    a = _Analyzer()
    totals = _Totals()
    f = a.graph(root, Field(), 0, totals) if root.graph else a.seq(root.children, Field(), 0, totals)
    return Analysis(
        name=name,
        input_shape=root.in_shape,
        output_shape=root.out_shape,
        params=totals.params,
        macs=totals.macs,
        flops=totals.flops,
        activations=totals.activations,
        receptive_field=None if f.is_global else f.rf,
        jump=f.jump,
        rows=a.rows,
        layers=a.layers,
        peak_activations=peak_activations(root),
        outputs=_output_shapes(root),
    )


def _output_shapes(root: SeqNode) -> dict[str, Shape] | None:
    if root.outputs is None:
        return None
    shapes = {child.name: child.out_shape for child in root.children}
    return {key: shapes[name] for key, name in root.outputs.items()}


def analyze(spec: Spec, input_size: int | tuple[int, int] | None = None) -> Analysis:
    """Shapes and costs of a spec, from the spec alone (no tensors, no tracing)."""
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    return analyze_ir(lower(spec, size), spec.name)


__all__ = ["Analysis", "Row", "analyze", "analyze_ir", "children"]
