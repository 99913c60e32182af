"""Any nn.Module into netspec's Analysis: the rows `netspec report` prints for a spec, from a trace.

A row per operation (a leaf module, or a function such as the `add` of a residual block, named
`<module>.<node>`) and per container module (its figures are the sums of the operations run inside its
forward; its parameters are its own parameters, counted once). Views (reshape, getitem, ...) have no
row. The receptive field and jump follow the traced graph: each operation's input field is the widest
of the fields it reads (the maximum over the paths that merge there), then its window applies; as in
netspec's analysis, a global pool (an adaptive pool to 1x1, a mean over the map) sees the whole input.
"""

from __future__ import annotations

from torch import nn

from ..analysis import Analysis, Field, Row
from ..layers.base import Shape, numel
from .trace import INPUT, Op, Span, Trace, trace


def _sample(shape: tuple[int, ...] | None) -> Shape:
    """A shape without its batch dimension."""
    return tuple(shape[1:]) if shape else ()


def _fields(ops: list[Op]) -> list[Field]:
    out: list[Field] = []
    for op in ops:
        read = [Field() if s == INPUT else out[s] for s in op.sources] or [Field()]
        f = Field.widest(read)
        if op.window is not None:
            f = f.through(op.window.kernel, op.window.stride, op.window.is_global)
        out.append(f)
    return out


def _ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _params(model: nn.Module, path: str) -> int:
    return sum(p.numel() for p in model.get_submodule(path).parameters())


def analysis_of_trace(model: nn.Module, t: Trace, name: str, input_shape: Shape) -> Analysis:
    fields = _fields(t.ops)
    modules = dict(model.named_modules())
    # every module that holds a traced operation (a ModuleList is never called itself, yet holds rows)
    containers = {c for op in t.ops for c in _ancestors(op.path) if c in modules}
    rows: list[Row] = []
    at: dict[str, int] = {}  # container path -> its row
    members: dict[str, list[int]] = {p: [] for p in containers}

    def row(path: str, kind: str, op: Op | None, f: Field, is_layer: bool) -> Row:
        return Row(
            path,
            kind,
            path.count("."),
            path.split(".", 1)[0],
            _sample(op.in_shape) if op else (),
            _sample(op.out_shape) if op else (),
            op.cost.params if op else 0,
            op.cost.macs if op else 0,
            op.cost.flops if op else 0,
            numel(_sample(op.out_shape)) if op and op.out_shape else 0,
            None if f.is_global else f.rf,
            f.jump,
            is_layer,
        )

    for i, op in enumerate(t.ops):
        for c in _ancestors(op.path):
            if c in containers:
                members[c].append(i)
                if c not in at:
                    at[c] = len(rows)
                    rows.append(row(c, "", None, Field(), False))  # first; its figures come below
        if op.visible:
            rows.append(row(op.path, op.kind, op, fields[i], True))
    for c, r in at.items():
        inside = [t.ops[i] for i in members[c]]
        # a module that was called has its own input and output; a ModuleList those of its first and last
        span = t.spans.get(c) or Span("", inside[0].in_shape, inside[-1].out_shape, members[c][-1])
        last = span.out_op if span.out_op is not None and span.out_op >= 0 else members[c][-1]
        f = fields[last]
        rows[r] = Row(
            c,
            type(modules[c]).__name__,
            c.count("."),
            c.split(".", 1)[0],
            _sample(span.in_shape),
            _sample(span.out_shape),
            _params(model, c),
            sum(o.cost.macs for o in inside),
            sum(o.cost.flops for o in inside),
            sum(numel(_sample(o.out_shape)) for o in inside if o.visible and o.out_shape),
            None if f.is_global else f.rf,
            f.jump,
            False,
        )
    rows += _not_run(model, t)
    layers = [r for r in rows if r.is_layer]
    f = fields[t.output_op] if t.output_op is not None and t.output_op >= 0 else Field()
    return Analysis(
        name=name,
        input_shape=input_shape,
        output_shape=_sample(t.output_shape),
        params=sum(p.numel() for p in model.parameters()),
        macs=sum(op.cost.macs for op in t.ops),
        flops=sum(op.cost.flops for op in t.ops),
        activations=sum(r.activations for r in layers),
        receptive_field=None if f.is_global else f.rf,
        jump=f.jump,
        rows=rows,
        layers=len(layers),
        peak_activations=_peak(model, t, input_shape),
    )


# torch modules whose eval-mode output is their input or a view of it: no memory of their own
_ALIASING = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def _aliases(model: nn.Module, op: Op) -> bool:
    """The op's output is (a view of) its input: a view function, an aliasing or in-place module."""
    if not op.visible:
        return True
    module = dict(model.named_modules()).get(op.path)
    return isinstance(module, _ALIASING) or getattr(module, "inplace", False) is True


def _peak(model: nn.Module, t: Trace, input_shape: Shape) -> int:
    """Peak activation elements of one sample, the input included, as a graph that frees each value
    after its last reader holds them (memory.py's rule for graph lists; for a chain of modules it is
    nn.Sequential's too)."""
    ops = t.ops
    last: dict[int, int] = {}
    for i, op in enumerate(ops):
        for source in op.sources:
            last[source] = i
    if t.output_op is not None:
        last[t.output_op] = len(ops)
    storage: dict[int, int] = {INPUT: INPUT}  # value -> the op whose output holds its memory
    size: dict[int, int] = {INPUT: 0}
    readers: dict[int, set[int]] = {INPUT: {INPUT}}
    held = numel(tuple(input_shape))
    live = peak = 0
    for i, op in enumerate(ops):
        if op.sources and _aliases(model, op):
            storage[i] = storage[op.sources[0]]
        else:
            storage[i] = i
            size[i] = numel(_sample(op.out_shape)) if op.out_shape else 0
            readers[i] = set()
            live += size[i]
        readers[storage[i]].add(i)
        peak = max(peak, live)
        for value in {*op.sources, i}:
            if last.get(value, -1) <= i:  # read for the last time (or never): drop the value
                key = storage[value]
                readers[key].discard(value)
                if not readers[key]:
                    live -= size[key]
    return held + peak


def _not_run(model: nn.Module, t: Trace) -> list[Row]:
    """Modules with parameters that the eval-mode forward never calls (GoogLeNet's auxiliary heads):
    their parameters count, as fvcore's and torch's totals count them; they cost nothing."""
    ran = {op.path for op in t.ops} | set(t.spans)
    seen = {a for p in ran for a in _ancestors(p)} | ran
    rows: list[Row] = []
    for path, m in model.named_modules():
        if not path or path in seen or any(a in {r.path for r in rows} for a in _ancestors(path)):
            continue
        params = sum(p.numel() for p in m.parameters())
        if params:
            kind = f"{type(m).__name__} (not run)"
            section = path.split(".", 1)[0]
            rows.append(
                Row(path, kind, path.count("."), section, (), (), params, 0, 0, 0, None, (1, 1), False)
            )
    return rows


def analyze_module(model: nn.Module, input_shape: Shape, name: str) -> tuple[Analysis, list[str]]:
    """The report's analysis of any module (put on the meta device, in eval mode, as fvcore counts it)
    for one input of `input_shape` (C, H, W), and notes on how it was traced."""
    model = model.to("meta").eval()
    t = trace(model, tuple(input_shape))
    return analysis_of_trace(model, t, name, tuple(input_shape)), t.notes
