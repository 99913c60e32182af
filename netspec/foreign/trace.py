"""Tracing an nn.Module into a list of operations with shapes, on the meta device (nothing allocates).

First torch.fx: a symbolic trace keeps every leaf module (torch.nn's own) and every function or Tensor
method called in a forward, in execution order, with the tensors each reads; a tracer that notes whose
forward is running attributes every node to its module, and an interpreter over the graph gives each
node's shape from one meta batch of 1 (torch.fx.passes.shape_prop's way). Where FX cannot trace a
model (data-dependent control flow, Python iteration over a tensor), forward hooks on every module
record the leaf modules as they run on the same meta batch: functions called between modules are then
invisible and the receptive field follows the call order.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from ..errors import Location, Problem, SpecError
from ..layers.base import Cost, Window
from .handles import (
    VIEWS,
    OpCall,
    SizeT,
    TensorArg,
    function_cost,
    function_window,
    module_cost,
    module_window,
)

INPUT = -1  # the index of the model's input among an op's sources


@dataclass
class Op:
    """One traced operation: a leaf module's call, or a function / method called in some forward."""

    path: str  # a leaf module's path, or `<owner>.<node name>` for a function (`layer1.0.add`)
    kind: str  # the module's class name, or the function's name
    in_shape: SizeT | None
    out_shape: SizeT | None
    cost: Cost
    window: Window | None  # None: pointwise (the receptive field passes through)
    sources: list[int]  # the ops whose outputs it reads (INPUT for the model's input)
    visible: bool = True  # False for views (reshape, getitem, ...): no row, no memory


@dataclass
class Span:
    """A container module's (first) call: its input and output shapes and the op that produced its output."""

    kind: str
    in_shape: SizeT | None
    out_shape: SizeT | None
    out_op: int | None


@dataclass
class Trace:
    ops: list[Op]
    spans: dict[str, Span]
    output_op: int | None
    output_shape: SizeT | None
    notes: list[str] = field(default_factory=list)


class TraceError(Exception):
    """Tracing stopped at an operation; `where` is the user's line that ran it, when there is one."""

    def __init__(self, message: str, where: Location | None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


class RunError(TraceError):
    """The graph was traced but does not run on the input (a size it does not take, an op with no meta
    kernel): hooks would fail the same way."""


_TORCH_DIR = str(Path(torch.__file__).resolve().parent)
_NETSPEC_DIR = str(Path(__file__).resolve().parent.parent)


def user_line(exc: BaseException) -> Location | None:
    """The deepest line of the traceback outside torch and netspec: the model code that raised."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = str(Path(frame.filename).resolve()) if frame.filename else ""
        if frame.lineno and not name.startswith((_TORCH_DIR, _NETSPEC_DIR)) and not name.startswith("<"):
            found = Location(frame.filename, frame.lineno, 1)
    return found


def _detail(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _shape(value: Any) -> SizeT | None:
    """The shape of a tensor, or of the first tensor in a tuple / list / dict."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    for item in items:
        s = _shape(item)
        if s is not None:
            return s
    return None


# ---- torch.fx ----------------------------------------------------------------------------------

_OWNER = "netspec_owner"
_SHAPE = "netspec_shape"


class _OwnerTracer(fx.Tracer):
    """A symbolic tracer that notes, for every node, the module whose forward created it, and each
    container's input and output nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.io: dict[str, tuple[str, fx.Node | None, fx.Node | None]] = {}

    def call_module(self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)
        self.stack.append(path)
        try:
            out = super().call_module(m, forward, args, kwargs)
        finally:
            self.stack.pop()
        if path not in self.io:
            first = next((a.node for a in args if isinstance(a, fx.Proxy)), None)
            self.io[path] = (type(m).__name__, first, out.node if isinstance(out, fx.Proxy) else None)
        return out

    def create_node(
        self, kind: str, target: Any, args: Any, kwargs: Any, name: Any = None, type_expr: Any = None
    ) -> fx.Node:
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        node.meta[_OWNER] = self.stack[-1] if self.stack else ""
        return node


class _Shapes(fx.Interpreter):
    """Runs the graph on meta tensors, keeping each node's output shape (ShapeProp's method)."""

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except Exception as exc:
            raise RunError(f"{_describe(self.module, n)} raised {_detail(exc)}", user_line(exc)) from None
        n.meta[_SHAPE] = _shape(result)
        return result


def _name(n: fx.Node) -> str:
    if n.op == "call_method":
        return str(n.target)
    return getattr(n.target, "__name__", str(n.target))


def _describe(gm: nn.Module, n: fx.Node) -> str:
    if n.op == "call_module":
        return f"{n.target} ({type(gm.get_submodule(str(n.target))).__name__})"
    owner = n.meta.get(_OWNER, "")
    return f"{_name(n)}() in the forward of {owner or 'the model'}"


def trace_fx(model: nn.Module, x: torch.Tensor) -> Trace:
    tracer = _OwnerTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        raise TraceError(f"torch.fx cannot trace the model: {_detail(exc)}", user_line(exc)) from None
    gm = fx.GraphModule(tracer.root, graph)
    with torch.no_grad():
        _Shapes(gm).run(x)

    def arg(a: Any) -> Any:
        s = a.meta.get(_SHAPE)
        return TensorArg(s) if s is not None else None

    index: dict[fx.Node, int] = {}
    ops: list[Op] = []
    output_op = None
    for n in graph.nodes:
        if n.op == "placeholder":
            index[n] = INPUT
            continue
        if n.op == "output":
            first = next((a for a in n.all_input_nodes if a in index), None)
            output_op = index.get(first) if first is not None else None
            continue
        if n.op == "get_attr":
            continue
        args = fx.node.map_arg(n.args, arg)
        kwargs = fx.node.map_arg(n.kwargs, arg)
        out = n.meta.get(_SHAPE)
        sources = [index[a] for a in n.all_input_nodes if a in index]
        if n.op == "call_module":
            m = gm.get_submodule(str(n.target))
            call = OpCall(m, args, kwargs, out)
            op = Op(
                str(n.target),
                type(m).__name__,
                call.x,
                out,
                module_cost(m, call),
                module_window(m, call),
                sources,
            )
        else:
            name = _name(n)
            call = OpCall(name, args, kwargs, out)
            owner = n.meta.get(_OWNER, "")
            path = f"{owner}.{n.name}" if owner else n.name
            # no row for views, nor for constants the forward creates (`torch.ones(...)`: no batch)
            visible = name not in VIEWS and out is not None and bool(sources)
            cost = function_cost(name, call) if name not in VIEWS else Cost()
            op = Op(path, name, call.x, out, cost, function_window(name, call), sources, visible)
        index[n] = len(ops)
        ops.append(op)
    spans = {
        path: Span(
            kind,
            a.meta.get(_SHAPE) if a else None,
            b.meta.get(_SHAPE) if b else None,
            index.get(b) if b else None,
        )
        for path, (kind, a, b) in tracer.io.items()
    }
    out_shape = (
        tuple(x.shape) if output_op == INPUT else ops[output_op].out_shape if output_op is not None else None
    )
    return Trace(ops, spans, output_op, out_shape)


# ---- forward hooks -----------------------------------------------------------------------------


def trace_hooks(model: nn.Module, x: torch.Tensor) -> Trace:
    """Leaf modules as they run (no functions between them); the receptive field along the call order."""
    names = {m: name for name, m in model.named_modules()}
    ops: list[Op] = []
    spans: dict[str, Span] = {}
    stack: list[str] = []
    handles = []

    def pre(m: nn.Module, args: tuple[Any, ...]) -> None:
        stack.append(names[m])

    def post(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        path = stack.pop()
        in_shape = _shape(args)
        if next(m.children(), None) is None:
            call = OpCall(m, tuple(TensorArg(s) for s in [in_shape] if s), {}, _shape(out))
            sources = [len(ops) - 1] if ops else [INPUT]
            ops.append(
                Op(
                    path,
                    type(m).__name__,
                    in_shape,
                    call.out,
                    module_cost(m, call),
                    module_window(m, call),
                    sources,
                )
            )
        elif path and path not in spans:
            spans[path] = Span(type(m).__name__, in_shape, _shape(out), len(ops) - 1 if ops else None)

    for m in names:
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        where = (
            f"{stack[-1]} ({type(model.get_submodule(stack[-1])).__name__})"
            if stack and stack[-1]
            else "the model"
        )
        raise TraceError(f"{where} raised {_detail(exc)}", user_line(exc)) from None
    finally:
        for h in handles:
            h.remove()
    return Trace(ops, spans, len(ops) - 1 if ops else None, _shape(out))


def trace(model: nn.Module, input_shape: tuple[int, ...]) -> Trace:
    """FX where it can, forward hooks where it cannot; SpecError naming the first operation that failed."""
    x = torch.zeros(1, *input_shape, device="meta")
    size = "x".join(map(str, input_shape))
    try:
        return trace_fx(model, x)
    except RunError as failure:
        raise SpecError(
            Problem(
                f"{failure.message} (input {size})",
                location=failure.where,
                hint="--input sets the input size",
            )
        ) from None
    except TraceError as failure:
        fx_failure = failure
    fx_where = f" at {fx_failure.where}" if fx_failure.where else ""
    try:
        result = trace_hooks(model, x)
    except TraceError as failure:
        raise SpecError(
            Problem(
                f"cannot trace the model: {failure.message} (input {size})",
                location=failure.where,
                hint=f"{fx_failure.message}{fx_where}; forward hooks run on the meta device, where tensors"
                " have shapes but no values",
            )
        ) from None
    result.notes.append(
        f"{fx_failure.message}{fx_where}; traced with forward hooks instead: functions called between"
        " modules (additions, matrix products) are not counted and the receptive field follows the call order"
    )
    return result
