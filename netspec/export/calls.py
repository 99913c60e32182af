"""Each layer of the IR as the constructor call its kind describes (LayerKind.call), and the module
classes kinds ship with their source (ChannelPad, a plug-in's): the file defines those it uses.

A kind's `module_call` is the description the torch backend instantiates, so it is written as is. A call
read back from a plug-in's `build` is proved first: instantiated on the meta device, it must give the
torch backend's module (same repr, same tensors).
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import replace
from typing import Any

from ..ir import LayerNode, Node, walk
from ..layers import KINDS
from ..layers.call import Call
from .code import Code, lit
from .errors import ExportError
from .names import RESERVED


def class_source(kind: str, source: str) -> tuple[str, str]:
    """(class name, source) of a kind's `module_source`: exactly one top-level class definition, with
    no import anywhere in it and a name the generated file does not use otherwise."""
    text = textwrap.dedent(source).strip("\n")
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise ExportError(f"layer kind '{kind}': module_source is not valid Python ({exc.msg})") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.ClassDef):
        raise ExportError(f"layer kind '{kind}': module_source must be exactly one class definition")
    if any(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.walk(tree)):
        raise ExportError(
            f"layer kind '{kind}': module_source may not import (torch, nn, F, Tensor are there)"
        )
    name = tree.body[0].name
    if name in RESERVED:
        raise ExportError(f"layer kind '{kind}': module_source's class name '{name}' is reserved")
    return name, text


def _exec_class(name: str, text: str) -> Any:
    """The class a module_source defines, executed with the exported file's names."""
    import torch
    import torch.nn.functional as F
    from torch import Tensor, nn

    namespace: dict[str, Any] = {"__name__": "netspec_module_source", "torch": torch, "nn": nn, "F": F}
    namespace["Tensor"] = Tensor
    exec(compile(text, f"<module_source of {name}>", "exec"), namespace)  # checked by class_source
    return namespace[name]


def norm_repr(module: Any) -> str:
    """A module's repr with `(3, 3)` written `3`, as a call may write it."""
    return re.sub(r"\((-?\d+), \1\)", r"\1", repr(module))


class LayerCalls:
    """The calls of one IR's layers (by path), with the `num_classes` overrides, and the shipped classes."""

    def __init__(self, root: Node):
        self.sources: dict[str, str] = {}  # class name -> the source a kind ships
        self.used: set[str] = set()  # the shipped classes the file uses
        self.overrides: dict[str, dict[str, Code]] = {}  # layer path -> argument -> code
        self._calls: dict[str, Call] = {}
        self._proved: dict[str, Any] = {}  # shipped class name -> the class, executed (for proofs)
        for node, _ in walk(root):  # their class names are taken before any block class is named
            if not isinstance(node, LayerNode):
                continue
            source = KINDS[node.kind].module_source
            if source is not None:
                name, text = class_source(node.kind, source)
                if self.sources.get(name, text) != text:
                    raise ExportError(f"two layer kinds define different classes named {name}")
                self.sources[name] = text

    def of(self, node: LayerNode) -> Call:
        """The layer's call as the file writes it (`num_classes` where designated)."""
        call = self.raw(node)
        overrides = self.overrides.get(node.path)
        if not overrides:
            return call
        return replace(call, args=tuple(replace(a, value=overrides.get(a.name, a.value)) for a in call.args))

    def raw(self, node: LayerNode) -> Call:
        """The layer's call with its values (what the torch backend instantiates)."""
        call = self._calls.get(node.path)
        if call is None:
            call = KINDS[node.kind].call(node.params, node.in_shape, node.out_shape, node.inplace)
            if not call.ctor.startswith("nn."):
                self._ship(node, call)
            for arg in call.args:
                lit(arg.value)  # every value must be writable as a literal
            if call.read_back:
                self._prove(node, call)
            self._calls[node.path] = call
        return call

    def shipped_class(self, ctor: str) -> Any:
        """The class of a shipped ctor, executed from its source (None for torch.nn's)."""
        if ctor not in self.sources:
            return None
        if ctor not in self._proved:
            self._proved[ctor] = _exec_class(ctor, self.sources[ctor])
        return self._proved[ctor]

    def _ship(self, node: LayerNode, call: Call) -> None:
        if call.ctor not in self.sources:
            raise ExportError(
                f"layer kind '{node.kind}' builds {call.ctor}, which is not a torch.nn class "
                "(a plug-in kind can give its class's source as `module_source`)"
            )
        self.used.add(call.ctor)

    def _prove(self, node: LayerNode, call: Call) -> None:
        """A call read back from a plug-in's module must rebuild it: same repr, same tensors."""
        import torch

        from ..torch_backend import module_for

        with torch.device("meta"):
            ref = module_for(node)
            mine = call.instantiate(self.shipped_class(call.ctor))
        same_tensors = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()] == [
            (k, tuple(v.shape)) for k, v in mine.state_dict().items()
        ]
        if norm_repr(ref) != norm_repr(mine) or not same_tensors:
            raise ExportError(f"{node.path} ({node.kind}): cannot write {ref!r} as source (got {mine!r})")
