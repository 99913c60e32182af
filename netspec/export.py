"""Source export: a spec becomes one standalone, readable PyTorch file (`netspec export`).

The file reads like torchvision's models/resnet.py: a class per block kind, then the network, whose
stages are loops, then a factory `build_model(**kwargs)`, the constants `INPUT_SHAPE` and `RECIPE` (the
spec's `train:` section: `netspec train model.py` reads both) and a `__main__` smoke check. It imports torch
only, and its modules have the compiled module's names, so `state_dict`s move between the two.

How a block kind becomes a class: its instances in the IR are *unified*. Their submodules are aligned
(by module name inside a block, by kind inside an nn.Sequential), every constructor value that differs
between instances becomes a constructor argument (named `in_channels` / `out_channels` where it is the
block's input / output width, after the spec's `${name}` where the spec wrote one, else after the
layer), and a submodule that some instances lack becomes optional: `None`, with its condition written
over the arguments (`stride != 1 or in_channels != out_channels`) where one fits, else a flag
argument. Instances that cannot share a class (a `when:` that shifts the names of the layers after it)
get one class per structure (`Block`, `Block2`).

A stage (repeats of the same spec item in an nn.Sequential) is a loop. Where only its first block
differs (the one that strides), it is written as torchvision's `_make_layer` writes it: that block,
then `for _ in range(1, depth): layers.append(Bottleneck(...))`; otherwise `for i in range(depth)` with
per-block arguments `a + b * i`, `a if i == 0 else b` or a tuple indexed by `i` (DenseNet's widths).
So a deeper network is the same file with other loop counts.

Safety: the templates (top-level `templates/*.j2`) receive only code this module wrote itself:
identifiers that match a strict ASCII pattern (module names are validated by netspec; class and
argument names are derived here and checked again), literals rendered from validated Python values
(numbers, booleans, and strings through `ascii()`), and docstrings whose every quote, backslash and
non-ASCII character is escaped. A plug-in kind whose module is not torch.nn's brings its class as
`LayerKind.module_source`: trusted code of an installed package (like the plug-in itself), checked with
`ast` (one class definition, no imports) and inserted as is, with no spec value in it. Every layer's
constructor call is checked against the torch backend's module (same repr, same tensors) and the whole
file, executed on the meta device, against the compiled module (same state_dict keys and shapes, same
layers) before it is returned.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .ir import AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode, children, walk
from .layers import KINDS
from .layers.activation import Activation, LeakyParams
from .layers.base import pair
from .layers.conv import conv_padding
from .lower import COMPOSITES, lower
from .spec import Spec

LINE_LENGTH = 110  # the project's ruff settings, used to format the output when ruff is available
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_HINT = re.compile(r"^\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}$")
_NUMBERED_NAME = re.compile(r"^(.*?)(\d+)$")
# names the generated code uses (or Python reserves): never a class, argument or variable name
_RESERVED = frozenset(
    {
        *keyword.kwlist,
        *keyword.softkwlist,
        *dir(builtins),
        "torch",
        "nn",
        "F",
        "Tensor",
        "self",
        "x",
        "out",
        "identity",
        "aux",
        "i",
        "model",
        "build_model",
        "num_classes",
        "ChannelPad",
        "_sequential",
        "kwargs",
    }
)
_SAFE_TO_OVERWRITE = {"batchnorm", "conv", "linear"}  # as torch_backend.py: `out += shortcut` is safe


class ExportError(RuntimeError):
    """The spec is valid but this exporter cannot write it as source (an unknown kind of layer)."""


class _MismatchError(Exception):
    """Instances that cannot share one class (or one loop body)."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class _Code:
    """A value that is already code: an argument name such as `num_classes`."""

    text: str


# -- values ---------------------------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (True is not 1, 1.0 is not 1)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _lit(v: Any) -> str:
    """A Python literal for a validated value; anything else is refused."""
    if isinstance(v, _Code):
        return v.text
    if v is None or type(v) is bool:
        return repr(v)
    if type(v) is int:
        if abs(v) > 1 << 62:
            raise ExportError(f"integer {v} is out of range")
        return repr(v)
    if type(v) is float:
        if not math.isfinite(v):
            raise ExportError(f"value {v} is not finite")
        return repr(v)
    if type(v) is str:
        return ascii(v)
    if type(v) is tuple:
        inner = ", ".join(_lit(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if type(v) is list:
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    if type(v) is dict and all(type(k) is str for k in v):
        return "{" + ", ".join(f"{_lit(k)}: {_lit(x)}" for k, x in v.items()) + "}"
    raise ExportError(f"cannot write a value of type {type(v).__name__} as source")


def _is_literal(v: Any) -> bool:
    try:
        _lit(v)
    except ExportError:
        return False
    return not isinstance(v, _Code)


def _collapse(v: Any) -> Any:
    """(3, 3) -> 3, as one writes it."""
    if isinstance(v, (list, tuple)):
        v = tuple(v)
        if len(v) == 2 and _same(v[0], v[1]):
            return v[0]
    return v


def _affine(a: int, b: int) -> str:
    term = "i" if abs(b) == 1 else f"{abs(b)} * i"
    if a == 0:
        return term if b > 0 else f"-{term}"
    return f"{a} + {term}" if b > 0 else f"{a} - {term}"


def _index_expr(values: list[Any]) -> str:
    """Code for values[i] in a loop over i: a constant, first-vs-rest, arithmetic, or a tuple."""
    first = values[0]
    if all(_same(v, first) for v in values):
        return _lit(first)
    rest = values[1:]
    if all(_same(v, rest[0]) for v in rest):
        if type(first) is bool and type(rest[0]) is bool:
            return "i == 0" if first else "i != 0"
        return f"{_lit(first)} if i == 0 else {_lit(rest[0])}"
    if len(values) >= 3 and all(type(v) is int for v in values):
        step = values[1] - values[0]
        if all(values[k] - values[k - 1] == step for k in range(1, len(values))):
            return _affine(values[0], step)
    return f"{_lit(tuple(values))}[i]"


def _name_expr(names: list[str]) -> str:
    """Code for the i-th child name of a loop: `f"denselayer{i + 1}"`, or a tuple of names."""
    matches = [_NUMBERED_NAME.match(n) for n in names]
    if all(matches):
        prefixes = {m.group(1) for m in matches if m}
        numbers = [int(m.group(2)) for m in matches if m]
        if len(prefixes) == 1 and all(
            str(n) == m.group(2) for n, m in zip(numbers, matches, strict=True) if m
        ):
            step = numbers[1] - numbers[0]
            if step > 0 and all(numbers[k] - numbers[k - 1] == step for k in range(1, len(numbers))):
                prefix = prefixes.pop()
                start = numbers[0]
                index = ("i" if step == 1 else f"{step} * i") + (f" + {start}" if start else "")
                if not prefix:
                    return f"str({index})"
                if _IDENT.match(prefix):
                    return 'f"' + prefix + "{" + index + '}"'
    return f"{_lit(tuple(names))}[i]"


# -- names ----------------------------------------------------------------------------------------
def _camel(name: str, fallback: str) -> str:
    parts = re.findall(r"[A-Za-z0-9]+", name)
    text = "".join(p[0].upper() + p[1:] for p in parts)
    if not text or not text[0].isalpha():
        text = fallback + text
    text = text[:64]
    if not _IDENT.match(text) or "_" in text:  # cannot happen with the pattern above; belt and braces
        text = fallback
    if text in _RESERVED:
        text += fallback
    return text


def _param_name(candidate: str | None) -> str | None:
    """An argument name from a hint, or None when it is not a plain safe lowercase identifier."""
    if not candidate:
        return None
    name = candidate.lower()
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", name) or name.startswith("__"):
        return None
    if name in _RESERVED or name in ("l", "_") or re.fullmatch(r"layers\d*", name):
        return None
    return name


def _attr(name: str) -> str:
    """A module name from the IR, used as an attribute: netspec validated it; check it again."""
    if not _IDENT.match(name) or keyword.iskeyword(name):
        raise ExportError(f"'{name}' is not a valid attribute name")
    return name


def _child(name: str) -> str:
    """A child name inside an nn.Sequential: a number or a valid attribute name."""
    return name if name.isdigit() and name.isascii() and len(name) < 10 else _attr(name)


def _index_named(node: SeqNode | AuxNode) -> bool:
    return all(c.name == str(k) for k, c in enumerate(node.children))


def _is_block(node: Node) -> bool:
    """Nodes that become an instance of a generated class."""
    if isinstance(node, (ResidualNode, ParallelNode)):
        return True
    # an inline `sequential` stays an nn.Sequential (its children may still have names)
    return (
        isinstance(node, SeqNode)
        and node.role == "block"
        and node.block != "sequential"
        and not _index_named(node)
    )


def _block_kind(node: Node) -> str:
    return str(getattr(node, "block", "") or "block")


# -- docstrings -----------------------------------------------------------------------------------
def _escape(text: str) -> str:
    """Text safe inside a triple-quoted docstring: printable ASCII, quotes and backslashes escaped."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
    return "".join(out)


def _wrap(text: str, width: int) -> list[str]:
    """Escaped lines of at most `width` characters; paragraphs (blank lines) are kept."""
    lines: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        words: list[str] = []
        for word in paragraph.split():
            while len(_escape(word)) > width:  # cut a long word between characters, never in an escape
                cut = 1
                while cut < len(word) and len(_escape(word[: cut + 1])) <= width:
                    cut += 1
                words.append(word[:cut])
                word = word[cut:]
            words.append(word)
        line = ""
        for word in words:
            piece = _escape(word)
            if line and len(line) + 1 + len(piece) > width:
                lines.append(line)
                line = piece
            else:
                line = f"{line} {piece}" if line else piece
        if line:
            lines.append(line)
        lines.append("")
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _docstring(lines: list[str], indent: str) -> str:
    """The inside of a docstring from already escaped lines (a one-liner when it fits)."""
    if len(lines) == 1:
        return lines[0]
    body = "\n".join(f"{indent}{line}" if line else "" for line in lines[1:])
    return f"{lines[0]}\n{body}\n{indent}"


# -- layers: one constructor call each --------------------------------------------------------------
@dataclass
class Arg:
    name: str  # the constructor's parameter name
    value: Any
    keyword: bool = False
    default: Any = MISSING  # written only when it differs from this (MISSING: always written)
    field: str | None = None  # the spec parameter it comes from (its `${name}` names an argument)


@dataclass
class Leaf:
    ctor: str  # "nn.Conv2d", or a helper class of the generated file
    args: list[Arg]


def _leaf_args(node: LayerNode) -> Leaf:
    """The torch.nn constructor call for a layer, exactly as build.py makes it."""
    kind, p, x, y = KINDS[node.kind], node.params, node.in_shape, node.out_shape
    k = node.kind
    if k == "conv":
        pad = conv_padding(p)
        return Leaf(
            "nn.Conv2d",
            [
                Arg("in_channels", x[0]),
                Arg("out_channels", y[0], field="out"),
                Arg("kernel_size", _collapse(pair(p.kernel)), True, field="kernel"),
                Arg("stride", _collapse(pair(p.stride)), True, 1, "stride"),
                Arg("padding", pad if isinstance(pad, str) else _collapse(pad), True, 0, "padding"),
                Arg("dilation", _collapse(pair(p.dilation)), True, 1, "dilation"),
                Arg("groups", kind.groups(p, x[0]), True, 1, "groups"),  # type: ignore[attr-defined]
                Arg("bias", bool(p.bias), True, True, "bias"),
            ],
        )
    if k == "batchnorm":
        return Leaf(
            "nn.BatchNorm2d" if len(x) == 3 else "nn.BatchNorm1d",
            [
                Arg("num_features", x[0]),
                Arg("eps", float(p.eps), True, 1e-5, "eps"),
                Arg("momentum", float(p.momentum), True, 0.1, "momentum"),
                Arg("affine", bool(p.affine), True, True, "affine"),
            ],
        )
    if k == "lrn":
        return Leaf(
            "nn.LocalResponseNorm",
            [
                Arg("size", p.size, field="size"),
                Arg("alpha", float(p.alpha), True, 1e-4, "alpha"),
                Arg("beta", float(p.beta), True, 0.75, "beta"),
                Arg("k", float(p.k), True, 1.0, "k"),
            ],
        )
    if isinstance(kind, Activation):
        if not _IDENT.match(kind.torch_name):
            raise ExportError(f"layer kind '{k}' names no torch.nn class")
        args = []
        if isinstance(p, LeakyParams):
            args.append(Arg("negative_slope", float(p.negative_slope), True, 0.01, "negative_slope"))
        if kind.inplace_ok:
            args.append(Arg("inplace", bool(node.inplace), True, False))
        return Leaf(f"nn.{kind.torch_name}", args)
    if k in ("maxpool", "avgpool"):
        if p.kernel == "global":
            return Leaf(
                "nn.AdaptiveMaxPool2d" if k == "maxpool" else "nn.AdaptiveAvgPool2d", [Arg("output_size", 1)]
            )
        kernel = _collapse(pair(p.kernel))
        stride = _collapse(pair(p.stride)) if p.stride is not None else kernel
        args = [
            Arg("kernel_size", kernel, True, field="kernel"),
            Arg("stride", stride, True, kernel, "stride"),
            Arg("padding", _collapse(pair(p.padding)), True, 0, "padding"),
        ]
        if k == "maxpool":
            args.append(Arg("dilation", _collapse(pair(p.dilation)), True, 1, "dilation"))
        args.append(Arg("ceil_mode", bool(p.ceil_mode), True, False, "ceil_mode"))
        if k == "avgpool":
            args.append(Arg("count_include_pad", bool(p.count_include_pad), True, True, "count_include_pad"))
        return Leaf("nn.MaxPool2d" if k == "maxpool" else "nn.AvgPool2d", args)
    if k == "adaptive_avgpool":
        return Leaf("nn.AdaptiveAvgPool2d", [Arg("output_size", _collapse(pair(p.size)), field="size")])
    if k == "linear":
        return Leaf(
            "nn.Linear",
            [
                Arg("in_features", x[0]),
                Arg("out_features", p.out, field="out"),
                Arg("bias", bool(p.bias), True, True, "bias"),
            ],
        )
    if k == "dropout":
        return Leaf("nn.Dropout", [Arg("p", float(p.p), True, field="p")])
    if k == "flatten":
        return Leaf("nn.Flatten", [])
    if k == "identity":
        return Leaf("nn.Identity", [])
    if k == "channel_pad":
        return Leaf(
            "ChannelPad",
            [Arg("extra_channels", y[0] - x[0], True), Arg("stride", p.stride, True, field="stride")],
        )
    return _introspected_leaf(node)


def _introspected_leaf(node: LayerNode) -> Leaf:
    """A layer kind this module does not know (a plug-in): read the torch.nn module's constructor
    arguments back from its attributes. `_check_leaf` then proves the call rebuilds the same module."""
    import inspect

    import torch
    from torch import nn

    from .torch_backend import module_for

    with torch.device("meta"):
        module = module_for(node)
    cls = type(module)
    ctor = f"nn.{cls.__name__}"
    if getattr(nn, cls.__name__, None) is not cls or not _IDENT.match(cls.__name__):
        source = getattr(KINDS[node.kind], "module_source", None)
        if source is None:
            raise ExportError(
                f"layer kind '{node.kind}' builds {cls.__name__}, which is not a torch.nn class "
                "(a plug-in kind can give its class's source as `module_source`)"
            )
        ctor, _ = plugin_class_source(node.kind, source)
        if ctor != cls.__name__:
            raise ExportError(
                f"layer kind '{node.kind}' builds {cls.__name__}, but its module_source defines {ctor}"
            )
    args = []
    for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in ("device", "dtype"):
            continue
        value = getattr(module, name, MISSING)
        if isinstance(value, list):
            value = tuple(value)
        if value is MISSING or not _is_literal(value) or not _IDENT.match(name):
            continue
        default = param.default if _is_literal(param.default) else MISSING
        args.append(Arg(name, value, True, default))
    return Leaf(ctor, args)


def plugin_class_source(kind: str, source: str) -> tuple[str, str]:
    """(class name, source) of a plug-in's `module_source`: exactly one top-level class definition,
    with no import anywhere in it and a name the generated file does not use otherwise."""
    import textwrap

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
    if not _IDENT.match(name) or name in _RESERVED or name == "ChannelPad":
        raise ExportError(f"layer kind '{kind}': module_source's class name '{name}' is reserved")
    return name, text


def _plugin_class(name: str, text: str) -> Any:
    """The class a plug-in's module_source defines, executed with the exported file's names."""
    import torch
    import torch.nn.functional as F
    from torch import Tensor, nn

    namespace: dict[str, Any] = {"__name__": "netspec_plugin_check", "torch": torch, "nn": nn, "F": F}
    namespace["Tensor"] = Tensor
    exec(compile(text, f"<module_source of {name}>", "exec"), namespace)  # checked by plugin_class_source
    return namespace[name]


def _norm_repr(module: Any) -> str:
    return re.sub(r"\((-?\d+), \1\)", r"\1", repr(module))


def _instantiate(leaf: Leaf, plugins: dict[str, Any] | None = None) -> Any:
    from torch import nn

    from . import modules

    if plugins and leaf.ctor in plugins:
        cls = plugins[leaf.ctor]
    elif leaf.ctor == "ChannelPad":
        cls = modules.ChannelPad
    else:
        cls = getattr(nn, leaf.ctor.removeprefix("nn."))
    positional = [a.value for a in leaf.args if not a.keyword]
    keywords = {a.name: a.value for a in leaf.args if a.keyword}
    return cls(*positional, **keywords)


# -- templates over instances -------------------------------------------------------------------------
@dataclass(eq=False)
class TArg:
    """One constructor argument of a slot, with its value in every instance (MISSING where absent)."""

    name: str
    keyword: bool
    values: list[Any]
    defaults: list[Any]
    slot: str
    hints: list[str] = field(default_factory=list)  # the spec's `${name}` for it
    suggest: str | None = None  # a name to try after the hints (a nested block's argument name)

    def known(self) -> list[Any]:
        return [v for v in self.values if v is not MISSING]

    def constant(self) -> bool:
        known = self.known()
        return all(_same(v, known[0]) for v in known)

    def omitted(self) -> bool:
        """A constant equal to the constructor's default in every instance."""
        return self.constant() and all(
            d is not MISSING and _same(v, d)
            for v, d in zip(self.values, self.defaults, strict=True)
            if v is not MISSING
        )


@dataclass(eq=False)
class TLeaf:
    ctor: str
    args: list[TArg]
    present: list[bool]
    slot: str


@dataclass(eq=False)
class TRef:
    cls: _Class
    args: list[TArg]
    present: list[bool]
    slot: str


@dataclass(eq=False)
class TSeq:
    items: list[Any]  # TLeaf | TRef | TSeq
    present: list[bool]
    slot: str
    names: list[str] | None  # child names when they are not 0, 1, 2 ...


T = TLeaf | TRef | TSeq


@dataclass
class _Param:
    name: str
    values: list[Any]
    hints: set[str] = field(default_factory=set)  # the spec's names for it (`${e1x1}`)

    def annotation(self) -> str:
        vals = self.values
        if all(type(v) is bool for v in vals):
            return "bool"
        if all(type(v) is int for v in vals):
            return "int"
        if all(type(v) in (int, float) for v in vals):
            return "float"
        if all(type(v) is str for v in vals):
            return "str"
        pairs = all(type(v) is tuple and len(v) == 2 and all(type(e) is int for e in v) for v in vals)
        if pairs:
            return "tuple[int, int]"
        if all(type(v) is int or (type(v) is tuple and all(type(e) is int for e in v)) for v in vals):
            return "int | tuple[int, ...]"
        return ""


@dataclass(eq=False)
class _Class:
    """A generated block class and the instances it stands for."""

    kind: str
    form: str  # "body" (residual / plain sequence) | "parallel"
    instances: list[Node]
    body: list[tuple[str, T]] = field(default_factory=list)
    shortcut: tuple[str, T] | None = None
    after: list[tuple[str, T]] = field(default_factory=list)
    branches: list[tuple[str, T]] = field(default_factory=list)
    merges: list[str] = field(default_factory=list)  # per instance: add | concat | mul | none
    inplace: bool = False  # `out += shortcut` (the body's last output is not needed by autograd)
    name: str = ""
    doc: str = ""
    params: list[_Param] = field(default_factory=list)
    arg_names: dict[int, str] = field(default_factory=dict)  # id(TArg) -> argument name
    conds: dict[int, str] = field(default_factory=dict)  # id(optional T) -> condition code
    merge_cond: str | None = None  # condition of the merge when some instances have none
    merge_attr: str = "use_residual"
    args_of: dict[int, dict[str, Any]] = field(default_factory=dict)  # id(instance) -> arguments

    def slots(self) -> list[tuple[str, T]]:
        if self.form == "parallel":
            return [*self.branches, *self.after]
        return [*self.body, *([self.shortcut] if self.shortcut else []), *self.after]

    def merge(self) -> str:
        merges = [m for m in self.merges if m != "none"]
        return merges[0] if merges else "none"


def _optional(t: T, parent: list[bool]) -> bool:
    return any(p and not q for p, q in zip(parent, t.present, strict=True))


def _targs(t: T) -> list[TArg]:
    if isinstance(t, TSeq):
        return [a for item in t.items for a in _targs(item)]
    return list(t.args)


def _pick(units: list[int]) -> Callable[[TArg], str | None]:
    """Values of the given instances, where they agree (a loop over all but the first block)."""

    def value(a: TArg) -> str | None:
        v = a.values[units[0]]
        if all(a.defaults[u] is not MISSING and _same(a.values[u], a.defaults[u]) for u in units):
            return None
        return _lit(v)

    return value


def _never(t: T, parent: list[bool]) -> str | None:
    return None


def _loop_variable(body: list[str]) -> str:
    """`i` where the loop's statements read it, else `_`."""
    names = {n.id for n in ast.walk(ast.parse("\n".join(body))) if isinstance(n, ast.Name)}
    return "i" if "i" in names else "_"


class _Exporter:
    def __init__(self, spec: Spec, root: SeqNode):
        self.spec = spec
        self.root = root
        self.leaves: dict[int, Leaf] = {}
        self.checked: set[tuple[Any, ...]] = set()
        self.class_of: dict[int, _Class] = {}
        self.classes: list[_Class] = []
        self.class_names: set[str] = set()
        self.overrides: dict[int, dict[str, _Code]] = {}
        self.uses: set[str] = set()  # helpers the file needs: ChannelPad, _sequential, torch.cat
        self.heights: dict[int, int] = {}
        self.plugin_sources: dict[str, str] = {}  # class name -> a plug-in kind's module_source
        self.plugin_classes: dict[str, Any] = {}  # class name -> that source, executed
        for node, _ in walk(root):  # their class names are taken before any block class is named
            source = (
                getattr(KINDS.get(node.kind), "module_source", None) if isinstance(node, LayerNode) else None
            )
            if source is not None:
                name, text = plugin_class_source(node.kind, source)
                if self.plugin_sources.get(name, text) != text:
                    raise ExportError(f"two plug-in layer kinds define different classes named {name}")
                self.plugin_sources[name] = text
                self.class_names.add(name)

    # -- layers ----------------------------------------------------------------------------------
    def leaf(self, node: LayerNode) -> Leaf:
        cached = self.leaves.get(id(node))
        if cached is not None:
            return cached
        leaf = _leaf_args(node)
        self._check_leaf(node, leaf)
        if leaf.ctor == "ChannelPad":
            self.uses.add("ChannelPad")
        if leaf.ctor in self.plugin_sources:
            self.uses.add(leaf.ctor)
        for name, code in self.overrides.get(id(node), {}).items():
            leaf.args = [
                Arg(a.name, code, a.keyword, a.default, a.field) if a.name == name else a for a in leaf.args
            ]
        self.leaves[id(node)] = leaf
        return leaf

    def _check_leaf(self, node: LayerNode, leaf: Leaf) -> None:
        """The call must rebuild the torch backend's module: same repr (all hyperparameters), same
        tensors. Checked once per distinct layer, on the meta device (no memory, no init)."""
        key = (node.kind, repr(node.params), node.in_shape, node.out_shape, node.inplace)
        if key in self.checked:
            return
        import torch

        from .torch_backend import module_for

        for arg in leaf.args:
            _lit(arg.value)  # every value must be writable as a literal
        if leaf.ctor in self.plugin_sources and leaf.ctor not in self.plugin_classes:
            self.plugin_classes[leaf.ctor] = _plugin_class(leaf.ctor, self.plugin_sources[leaf.ctor])
        with torch.device("meta"):
            ref = module_for(node)
            mine = _instantiate(leaf, self.plugin_classes)
        same_tensors = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()] == [
            (k, tuple(v.shape)) for k, v in mine.state_dict().items()
        ]
        if _norm_repr(ref) != _norm_repr(mine) or not same_tensors:
            raise ExportError(f"{node.path} ({node.kind}): cannot write {ref!r} as source (got {mine!r})")
        self.checked.add(key)

    def hint(self, src: tuple[Any, ...], field_name: str | None) -> str | None:
        """`width` when the spec wrote `out: "${width}"` for this layer."""
        if field_name is None:
            return None
        obj: Any = self.spec
        for key in src:
            if isinstance(obj, BaseModel):
                obj = getattr(obj, key, None) if isinstance(key, str) else None
            elif isinstance(obj, dict):
                obj = obj.get(key)
            elif isinstance(obj, list) and isinstance(key, int) and 0 <= key < len(obj):
                obj = obj[key]
            else:
                return None
        kind = src[-1] if src else None
        if isinstance(obj, dict):
            value = obj.get(field_name)
        else:
            shorthand = KINDS[kind].shorthand if isinstance(kind, str) and kind in KINDS else None
            value = obj if shorthand == field_name or (kind == "avgpool" and field_name == "kernel") else None
        match = _HINT.match(value) if isinstance(value, str) else None
        return match.group(1) if match else None

    # -- unification -------------------------------------------------------------------------------
    def key(self, node: Node) -> tuple[Any, ...]:
        if isinstance(node, LayerNode):
            return ("L", self.leaf(node).ctor)
        if _is_block(node):
            return ("B", id(self.class_of[id(node)]))
        if isinstance(node, SeqNode):
            return ("S",)
        return ("?", type(node).__name__)

    def unify(self, nodes: list[Node | None], slot: str) -> T:
        present = [n is not None for n in nodes]
        real = [n for n in nodes if n is not None]
        first = real[0]
        if isinstance(first, LayerNode):
            if not all(isinstance(n, LayerNode) for n in real):
                raise _MismatchError
            leaves = [self.leaf(n) if isinstance(n, LayerNode) else None for n in nodes]
            lf = self.leaf(first)
            shape = (lf.ctor, [(a.name, a.keyword) for a in lf.args])
            if any(
                leaf is not None and (leaf.ctor, [(a.name, a.keyword) for a in leaf.args]) != shape
                for leaf in leaves
            ):
                raise _MismatchError
            args = []
            for k, a in enumerate(lf.args):
                hints = {self.hint(n.src, a.field) for n in real}
                args.append(
                    TArg(
                        a.name,
                        a.keyword,
                        [leaf.args[k].value if leaf else MISSING for leaf in leaves],
                        [leaf.args[k].default if leaf else MISSING for leaf in leaves],
                        slot,
                        sorted(h for h in hints if h),
                    )
                )
            return TLeaf(lf.ctor, args, present, slot)
        if _is_block(first):
            cls = self.class_of[id(first)]
            if not all(_is_block(n) and self.class_of[id(n)] is cls for n in real):
                raise _MismatchError
            args = [
                TArg(
                    p.name,
                    True,
                    [cls.args_of[id(n)][p.name] if n is not None else MISSING for n in nodes],
                    [MISSING] * len(nodes),
                    slot,
                    sorted(p.hints),
                    p.name,
                )
                for p in cls.params
            ]
            return TRef(cls, args, present, slot)
        if isinstance(first, (SeqNode, AuxNode)):
            if not all(isinstance(n, (SeqNode, AuxNode)) and not _is_block(n) for n in real):
                raise _MismatchError
            numbered = [_index_named(n) for n in real]  # type: ignore[arg-type]
            if any(numbered) and not all(numbered):
                raise _MismatchError
            columns = self.align([n.children if isinstance(n, (SeqNode, AuxNode)) else None for n in nodes])
            names = None
            if not all(numbered):
                names = []
                for col in columns:
                    col_names = {c.name for c in col if c is not None}
                    if len(col_names) != 1:
                        raise _MismatchError
                    names.append(_child(col_names.pop()))
                self.uses.add("_sequential")
            items = [self.unify(col, f"{slot}_{j}") for j, col in enumerate(columns)]
            return TSeq(items, present, slot, names)
        raise _MismatchError

    def align(self, lists: list[list[Node] | None]) -> list[list[Node | None]]:
        """Columns of an nn.Sequential's children over the instances: matched by kind (preferring
        the same spec item), with None where an instance lacks the child."""
        cols: list[list[Node | None]] = []
        keys: list[tuple[Any, ...]] = []
        srcs: list[Any] = []
        for idx, lst in enumerate(lists):
            if lst is None:
                for col in cols:
                    col.append(None)
                continue
            b_keys = [self.key(n) for n in lst]
            n, m = len(cols), len(lst)
            score = [[0] * (m + 1) for _ in range(n + 1)]
            for i in range(1, n + 1):
                for j in range(1, m + 1):
                    best = max(score[i - 1][j], score[i][j - 1])
                    if keys[i - 1] == b_keys[j - 1]:
                        best = max(best, score[i - 1][j - 1] + (2 if srcs[i - 1] == lst[j - 1].src else 1))
                    score[i][j] = best
            merged: list[tuple[list[Node | None], tuple[Any, ...], Any]] = []
            i, j = n, m
            while i > 0 or j > 0:
                if i > 0 and j > 0 and keys[i - 1] == b_keys[j - 1]:
                    w = 2 if srcs[i - 1] == lst[j - 1].src else 1
                    if score[i][j] == score[i - 1][j - 1] + w:
                        merged.append(([*cols[i - 1], lst[j - 1]], keys[i - 1], srcs[i - 1]))
                        i, j = i - 1, j - 1
                        continue
                if i > 0 and score[i][j] == score[i - 1][j]:
                    merged.append(([*cols[i - 1], None], keys[i - 1], srcs[i - 1]))
                    i -= 1
                else:
                    merged.append(([None] * idx + [lst[j - 1]], b_keys[j - 1], lst[j - 1].src))
                    j -= 1
            merged.reverse()
            cols = [c for c, _, _ in merged]
            keys = [k for _, k, _ in merged]
            srcs = [s for _, _, s in merged]
        return cols

    @staticmethod
    def merge_names(lists: list[list[str]]) -> list[str]:
        """One order of the named children of all instances (their common names in the same order)."""
        order: list[str] = []
        for names in lists:
            common = set(order) & set(names)
            merged: list[str] = []
            i = j = 0
            while i < len(order) or j < len(names):
                if i < len(order) and order[i] not in common:
                    merged.append(order[i])
                    i += 1
                elif j < len(names) and names[j] not in common:
                    merged.append(names[j])
                    j += 1
                elif i < len(order) and j < len(names) and order[i] == names[j]:
                    merged.append(order[i])
                    i, j = i + 1, j + 1
                else:
                    raise _MismatchError
            order = merged
        return order

    def named_slots(self, lists: list[dict[str, Node]], order: list[str]) -> list[tuple[str, T]]:
        slots = []
        for name in order:
            column = [d.get(name) for d in lists]
            real = [n for n in column if n is not None]
            if len({n.src for n in real}) != 1 or len({type(n) for n in real}) != 1:
                raise _MismatchError  # the same name for different layers: separate classes read better
            slots.append((_attr(name), self.unify(column, name)))
        return slots

    def make_class(self, kind: str, form: str, instances: list[Node]) -> _Class:
        cls = _Class(kind, form, instances)
        if form == "parallel":
            pars = [n for n in instances if isinstance(n, ParallelNode)]
            if len(pars) != len(instances) or len({len(n.branches) for n in pars}) != 1:
                raise _MismatchError
            if len({n.merge for n in pars}) != 1:
                raise _MismatchError
            cls.merges = [n.merge for n in pars]
            for b in range(len(pars[0].branches)):
                names = {n.branches[b].name for n in pars}
                if len(names) != 1:
                    raise _MismatchError
                name = names.pop()
                cls.branches.append((_attr(name), self.unify([n.branches[b] for n in pars], name)))
            afters = [{c.name: c for c in n.after} for n in pars]
            order = self.merge_names([[c.name for c in n.after] for n in pars])
            cls.after = self.named_slots(afters, order)
            return cls
        parts = []
        for n in instances:
            if isinstance(n, ResidualNode):
                parts.append((list(n.body), n.shortcut, n.merge, list(n.after)))
            elif isinstance(n, SeqNode):
                parts.append((list(n.children), None, "none", []))
            else:
                raise _MismatchError
        merges = {p[2] for p in parts}
        if len(merges - {"none"}) > 1:
            raise _MismatchError
        after_names = {c.name for p in parts for c in p[3]}
        if after_names:  # a plain-sequence instance: its trailing layers named as others' `after`
            for k, (body, sc, merge, after) in enumerate(parts):
                if merge == "none" and not after:
                    cut = len(body)
                    while cut > 0 and body[cut - 1].name in after_names:
                        cut -= 1
                    parts[k] = (body[:cut], sc, merge, body[cut:])
        cls.merges = [p[2] for p in parts]
        body_order = self.merge_names([[c.name for c in p[0]] for p in parts])
        after_order = self.merge_names([[c.name for c in p[3]] for p in parts])
        sc_names = {p[1].name for p in parts if p[1] is not None}
        if (
            len(sc_names) > 1
            or set(body_order) & set(after_order)
            or sc_names & set(body_order + after_order)
        ):
            raise _MismatchError
        cls.body = self.named_slots([{c.name: c for c in p[0]} for p in parts], body_order)
        cls.after = self.named_slots([{c.name: c for c in p[3]} for p in parts], after_order)
        if sc_names:
            name = sc_names.pop()
            column = [p[1] for p in parts]
            cls.shortcut = (_attr(name), self.unify(column, name))
        # in place (`out += shortcut`) only where build.py does it in every instance
        cls.inplace = all(
            p[2] == "add"
            and bool(p[0])
            and isinstance(p[0][-1], LayerNode)
            and p[0][-1].kind in _SAFE_TO_OVERWRITE
            for p in parts
            if p[2] != "none"
        )
        return cls

    # -- arguments -----------------------------------------------------------------------------------
    def assign_params(self, cls: _Class) -> None:
        n = len(cls.instances)
        maps = all(len(i.in_shape) == 3 for i in cls.instances)
        in_name = "in_channels" if maps else "in_features"
        maps_out = all(len(i.out_shape) == 3 for i in cls.instances)
        out_name = "out_channels" if maps_out else "out_features"
        in_vec = [i.in_shape[0] for i in cls.instances]
        out_vec = [i.out_shape[0] for i in cls.instances]
        params: list[_Param] = []
        taken = set(self.class_names) | {s for s, _ in cls.slots()}

        def compatible(a: list[Any], b: list[Any]) -> bool:
            return all(x is MISSING or y is MISSING or _same(x, y) for x, y in zip(a, b, strict=True))

        def free(name: str | None) -> bool:
            return name is not None and name not in taken and all(p.name != name for p in params)

        widening = [o - i for i, o in zip(in_vec, out_vec, strict=True)]
        for _slot, t in cls.slots():
            for arg in _targs(t):
                if arg.constant():
                    if MISSING in arg.values:  # in an optional submodule: the argument it follows
                        same = [p for p in params if p.name == arg.name or set(arg.hints) & p.hints]
                        param = next((p for p in same if compatible(p.values, arg.values)), None)
                        if param is not None:
                            cls.arg_names[id(arg)] = param.name
                    continue
                names = {p.name for p in params}
                if (
                    arg.name == "extra_channels"
                    and compatible(arg.values, widening)
                    and {in_name, out_name} <= names
                ):
                    cls.arg_names[id(arg)] = f"{out_name} - {in_name}"  # ChannelPad's zero channels
                    continue
                param = next(
                    (
                        p
                        for p in params
                        if compatible(p.values, arg.values)
                        and not (p.hints and arg.hints and p.hints.isdisjoint(arg.hints))
                    ),
                    None,
                )
                if param is None:
                    if compatible(arg.values, in_vec) and free(in_name):
                        param = _Param(in_name, list(in_vec))
                    elif compatible(arg.values, out_vec) and free(out_name):
                        param = _Param(out_name, list(out_vec))
                    else:
                        candidates = [*(_param_name(h) for h in arg.hints), _param_name(arg.suggest)]
                        if arg.keyword and arg.name not in ("bias", "inplace"):
                            candidates.append(_param_name(arg.name))
                        candidates.append(_param_name(f"{arg.slot}_{arg.name}"))
                        name = next((c for c in candidates if free(c)), None)
                        k = 2
                        base = _param_name(f"{arg.slot}_{arg.name}") or "arg"
                        while name is None:
                            name = f"{base}{k}" if free(f"{base}{k}") else None
                            k += 1
                        param = _Param(name, list(arg.values))
                    params.append(param)
                else:
                    param.values = [
                        q if q is not MISSING else v for q, v in zip(param.values, arg.values, strict=True)
                    ]
                param.hints |= set(arg.hints)
                cls.arg_names[id(arg)] = param.name
        for p in params:  # where no instance uses an argument, any value does
            known = next(v for v in p.values if v is not MISSING)
            p.values = [v if v is not MISSING else known for v in p.values]
        cls.params = params
        # the conditions of optional submodules and of the merge
        everyone = [True] * n
        for _slot, t in cls.slots():
            self._conditions(cls, t, everyone, taken)
        merging = [m != "none" for m in cls.merges]
        if any(merging) and not all(merging):
            cls.merge_attr = next(
                a for a in ("use_residual", "use_merge", "use_shortcut", "merge_") if a not in taken
            )
            cls.merge_cond = self._condition(cls, merging, everyone, cls.merge_attr, taken)
        order = {in_name: 0, out_name: 1}
        cls.params.sort(key=lambda p: (order.get(p.name, 2), p.annotation() == "bool"))
        for k, inst in enumerate(cls.instances):
            cls.args_of[id(inst)] = {p.name: p.values[k] for p in cls.params}

    def _conditions(self, cls: _Class, t: T, parent: list[bool], taken: set[str]) -> None:
        if _optional(t, parent):
            cls.conds[id(t)] = self._condition(cls, t.present, parent, f"use_{t.slot}", taken)
        if isinstance(t, TSeq):
            for item in t.items:
                self._conditions(cls, item, t.present, taken)

    def _condition(self, cls: _Class, want: list[bool], mask: list[bool], flag: str, taken: set[str]) -> str:
        """Code true exactly in the instances (where `mask`) that have the submodule: a test of the
        arguments where one fits, else a new flag argument."""
        params = {p.name: p for p in cls.params}
        atoms: list[tuple[str, str, list[bool]]] = []
        strides = [p for p in cls.params if "stride" in p.name and p.annotation() == "int"]
        for p in strides:
            atoms.append((f"{p.name} != 1", f"{p.name} == 1", [v != 1 for v in p.values]))
        for a, b in (("in_channels", "out_channels"), ("in_features", "out_features")):
            if a in params and b in params and params[a].annotation() == params[b].annotation() == "int":
                vec = [x != y for x, y in zip(params[a].values, params[b].values, strict=True)]
                atoms.append((f"{a} != {b}", f"{a} == {b}", vec))
        for p in cls.params:
            if p.annotation() == "bool":
                atoms.append((p.name, f"not {p.name}", [bool(v) for v in p.values]))
        candidates: list[tuple[str, list[bool]]] = []
        for x in range(len(atoms)):
            for y in range(x + 1, len(atoms)):
                (at, af, av), (bt, bf, bv) = atoms[x], atoms[y]
                either = [p or q for p, q in zip(av, bv, strict=True)]
                candidates.append((f"{at} or {bt}", either))
                candidates.append((f"{af} and {bf}", [not e for e in either]))
        for at, af, av in atoms:
            candidates.append((at, av))
            candidates.append((af, [not v for v in av]))
        for code, vec in candidates:
            if all(v == w for v, w, m in zip(vec, want, mask, strict=True) if m):
                return code
        name = _param_name(flag) or "flag"
        k = 2
        while name in taken or name in params:
            name = f"{_param_name(flag) or 'flag'}{k}"
            k += 1
        cls.params.append(_Param(name, [bool(w) for w in want]))
        return name

    # -- classes -------------------------------------------------------------------------------------
    def height(self, node: Node) -> int:
        """How deep blocks nest inside this node (0: no block inside)."""
        key = id(node)
        if key not in self.heights:
            self.heights[key] = max(
                ((self.height(c) + 1 if _is_block(c) else self.height(c)) for c in children(node)), default=0
            )
        return self.heights[key]

    def build_classes(self) -> None:
        groups: dict[tuple[Any, ...], list[Node]] = {}
        for node, _ in walk(self.root):
            if _is_block(node):
                kind = _block_kind(node)
                where = node.src if kind in COMPOSITES and kind not in self.spec.blocks else None
                form = "parallel" if isinstance(node, ParallelNode) else "body"
                groups.setdefault((self.height(node), kind, form, where), []).append(node)
        for key in sorted(groups, key=lambda k: k[0]):
            _, kind, form, _ = key
            for part in self.partition(kind, form, groups[key]):
                self.register(part)

    def partition(self, kind: str, form: str, instances: list[Node]) -> list[_Class]:
        try:
            return [self.make_class(kind, form, instances)]
        except _MismatchError:
            pass
        parts: list[list[Node]] = []
        for inst in instances:
            for part in parts:
                try:
                    self.make_class(kind, form, [*part, inst])
                except _MismatchError:
                    continue
                part.append(inst)
                break
            else:
                parts.append([inst])
        classes = []
        for part in parts:
            try:
                classes.append(self.make_class(kind, form, part))
            except _MismatchError:
                raise ExportError(f"cannot write block '{kind}' at {part[0].path} as a class") from None
        return classes

    def register(self, cls: _Class) -> None:
        first = cls.instances[0]
        inline = cls.kind in COMPOSITES and cls.kind not in self.spec.blocks
        base = _camel(first.name if inline and not first.name.isdigit() else cls.kind, "Block")
        name, k = base, 2
        while name in self.class_names:
            name, k = f"{base}{k}", k + 1
        cls.name = name
        self.class_names.add(name)
        self.assign_params(cls)
        block = self.spec.blocks.get(cls.kind)
        what = f"The `{cls.kind}` block" if not inline else f"An inline `{cls.kind}` ({first.path})"
        text = f"{what} of spec `{self.spec.name}`"
        if block is not None and block.description:
            text += f": {block.description}"
        if not text.rstrip().endswith((".", "!", "?")):
            text += "."
        cls.doc = _docstring(_wrap(text, LINE_LENGTH - 12), "    ")
        self.classes.append(cls)
        for inst in cls.instances:
            self.class_of[id(inst)] = cls

    # -- code ---------------------------------------------------------------------------------------
    def expr(
        self, t: T, value: Callable[[TArg], str | None], cond: Callable[[T, list[bool]], str | None]
    ) -> str:
        if isinstance(t, TLeaf):
            parts = []
            for a in t.args:
                code = value(a)
                if code is not None:
                    parts.append(f"{a.name}={code}" if a.keyword else code)
            return f"{t.ctor}({', '.join(parts)})"
        if isinstance(t, TRef):
            return f"{t.cls.name}({', '.join(f'{a.name}={value(a)}' for a in t.args)})"
        parts = []
        for k, item in enumerate(t.items):
            code = self.expr(item, value, cond)
            if t.names is not None:
                code = f"({_lit(t.names[k])}, {code})"
            c = cond(item, t.present)
            parts.append(f"*([{code}] if {c} else [])" if c else code)
        return f"{'_sequential' if t.names is not None else 'nn.Sequential'}({', '.join(parts)})"

    def class_value(self, cls: _Class) -> Callable[[TArg], str | None]:
        def value(a: TArg) -> str | None:
            if id(a) in cls.arg_names:
                return cls.arg_names[id(a)]
            if a.omitted():
                return None
            return _lit(a.known()[0])

        return value

    @staticmethod
    def loop_value(a: TArg) -> str | None:
        if a.omitted():
            return None
        return _index_expr(a.values)

    def class_code(self, cls: _Class) -> dict[str, Any]:
        value = self.class_value(cls)

        def cond(t: T, parent: list[bool]) -> str | None:
            return cls.conds.get(id(t)) if _optional(t, parent) else None

        everyone = [True] * len(cls.instances)
        init: list[str] = []
        if cls.merge_cond is not None:
            init.append(f"self.{cls.merge_attr} = {cls.merge_cond}")
        optional_slots = set()
        for slot, t in cls.slots():
            code = self.expr(t, value, cond)
            c = cond(t, everyone)
            if c:
                optional_slots.add(slot)
                kind = (
                    t.cls.name if isinstance(t, TRef) else t.ctor if isinstance(t, TLeaf) else "nn.Sequential"
                )
                init += [f"self.{slot}: {kind} | None = None", f"if {c}:", f"    self.{slot} = {code}"]
            else:
                init.append(f"self.{slot} = {code}")
        forward: list[str] = []

        def steps(slots: list[tuple[str, T]], current: str) -> str:
            for slot, _ in slots:
                if slot in optional_slots:
                    if current == "x":
                        forward.append("out = x")
                        current = "out"
                    forward.extend([f"if self.{slot} is not None:", f"    out = self.{slot}(out)"])
                else:
                    forward.append(f"out = self.{slot}({current})")
                    current = "out"
            return current

        if cls.form == "parallel":
            calls = [f"self.{name}(x)" for name, _ in cls.branches]
            if cls.merge() == "concat":
                self.uses.add("torch.cat")
                forward.append(f"out = torch.cat([{', '.join(calls)}], 1)")
            else:
                forward.append(f"out = {' + '.join(calls)}")
            current = steps(cls.after, "out")
        else:
            current = steps(cls.body, "x")
            merge = cls.merge()
            if merge != "none":
                if current == "x":
                    forward.append("out = x")
                lines = []
                shortcut = "x"
                if cls.shortcut is not None:
                    sc = cls.shortcut[0]
                    if sc in optional_slots:
                        lines += [
                            "identity = x",
                            f"if self.{sc} is not None:",
                            f"    identity = self.{sc}(x)",
                        ]
                        shortcut = "identity"
                    else:
                        shortcut = f"self.{sc}(x)"
                if merge == "add":
                    lines.append(f"out += {shortcut}" if cls.inplace else f"out = out + {shortcut}")
                elif merge == "concat":
                    self.uses.add("torch.cat")
                    lines.append(f"out = torch.cat([{shortcut}, out], 1)")
                else:
                    lines.append(f"out = out * {shortcut}")
                if cls.merge_cond is not None:
                    lines = [f"if self.{cls.merge_attr}:", *(f"    {line}" for line in lines)]
                forward += lines
                current = "out"
            current = steps(cls.after, current)
        forward.append(f"return {current}")
        signature = ", ".join(
            ["self", *(f"{p.name}: {p.annotation()}" if p.annotation() else p.name for p in cls.params)]
        )
        return {"name": cls.name, "doc": cls.doc, "signature": signature, "init": init, "forward": forward}

    # -- the network ------------------------------------------------------------------------------
    def designate_classes(self) -> bool:
        """Route `num_classes` to the final linear layers (of the network and of the aux heads)."""
        classes = self.spec.classes
        if classes is None or self.root.out_shape != (classes,):
            return False

        def last_linear(nodes: list[Node]) -> LayerNode | None:
            flat: list[Node] = []

            def visit(ns: list[Node]) -> None:
                for n in ns:
                    if isinstance(n, AuxNode):
                        continue
                    if isinstance(n, LayerNode) or _is_block(n):
                        flat.append(n)
                    else:
                        visit(children(n))

            visit(nodes)
            for k in range(len(flat) - 1, -1, -1):
                n = flat[k]
                if isinstance(n, LayerNode) and n.kind == "linear":
                    tail = flat[k + 1 :]
                    ok = n.out_shape == (classes,) and all(
                        isinstance(t, LayerNode) and t.out_shape == (classes,) and t.cost.params == 0
                        for t in tail
                    )
                    return n if ok else None
            return None

        targets = [last_linear(self.root.children)]
        targets += [last_linear(a.children) for a in self.root.children if isinstance(a, AuxNode)]
        if any(t is None for t in targets):
            return False
        for t in targets:
            self.overrides[id(t)] = {"out_features": _Code("num_classes")}
        return True

    def sig(self, node: Node) -> tuple[Any, ...]:
        if isinstance(node, LayerNode):
            return ("L", node.kind, self.leaf(node).ctor)
        if _is_block(node):
            return ("B", id(self.class_of[id(node)]))
        if isinstance(node, (SeqNode, AuxNode)):
            names = None if _index_named(node) else tuple(c.name for c in node.children)
            return ("S", names, tuple(self.sig(c) for c in node.children))
        return ("?", id(node))

    def segments(self, nodes: list[Node]) -> list[tuple[int, int, int]]:
        """(start, unit length, repeats): repeats of the same spec items (a stage's blocks)."""
        keys = [(self.sig(n), n.src, n.section) for n in nodes]
        out = []
        p = 0
        while p < len(nodes):
            best_k, best_r = 1, 1
            for k in range(1, min(16, (len(nodes) - p) // 2) + 1):
                unit = keys[p : p + k]
                if len({u[2] for u in unit}) != 1:
                    break
                r = 1
                while p + (r + 1) * k <= len(nodes) and keys[p + r * k : p + (r + 1) * k] == unit:
                    r += 1
                if r >= 2 and k * r > best_k * best_r:
                    best_k, best_r = k, r
            out.append((p, best_k, best_r))
            p += best_k * best_r
        return out

    def single(self, node: Node, slot: str) -> str:
        return self.expr(self.unify([node], slot), self.loop_value, _never)

    def node_code(self, node: Node, live: set[str]) -> tuple[list[str], str]:
        if isinstance(node, (SeqNode, AuxNode)) and not _is_block(node):
            return self.container_code(node, live)
        return [], self.single(node, node.name)

    def container_code(self, node: SeqNode | AuxNode, live: set[str]) -> tuple[list[str], str]:
        nodes = node.children
        numbered = _index_named(node)
        segments = self.segments(nodes)
        var = next(v for v in ("layers", *(f"layers{k}" for k in range(2, 100))) if v not in live)
        inner = live | {var}
        singles = [self.node_code(c, inner) for c in nodes] if all(r == 1 for _, _, r in segments) else None
        if singles is not None and not any(stmts for stmts, _ in singles):
            if numbered:
                return [], f"nn.Sequential({', '.join(e for _, e in singles)})"
            self.uses.add("_sequential")
            pairs = ", ".join(
                f"({_lit(_child(c.name))}, {e})" for c, (_, e) in zip(nodes, singles, strict=True)
            )
            return [], f"_sequential({pairs})"
        lines = [f"{var} = []" if numbered else f"{var} = nn.Sequential()"]

        def add(name: str, code: str) -> str:
            return f"{var}.append({code})" if numbered else f"{var}.add_module({name}, {code})"

        for start, k, r in segments:
            if r == 1:
                for c in nodes[start : start + k]:
                    stmts, code = self.node_code(c, inner)
                    lines += stmts
                    lines.append(add("" if numbered else _lit(_child(c.name)), code))
                continue
            units = [nodes[start + u * k : start + (u + 1) * k] for u in range(r)]
            columns = [[unit[c] for unit in units] for c in range(k)]
            templates = [self.unify(list(column), column[0].name) for column in columns]
            names = [[_child(n.name) for n in column] for column in columns]
            targs = [a for t in templates for a in _targs(t)]
            rest_constant = all(all(_same(v, a.values[1]) for v in a.values[1:]) for a in targs)
            if rest_constant and not all(a.constant() for a in targs):
                # torchvision's _make_layer: the first block (which strides), then the others alike
                first = [self.expr(t, _pick([0]), _never) for t in templates]
                if numbered and lines[-1] == f"{var} = []":
                    lines[-1] = f"{var} = [{', '.join(first)}]"
                else:
                    lines += [
                        add("" if numbered else _lit(n[0]), code)
                        for n, code in zip(names, first, strict=True)
                    ]
                rest = _pick(list(range(1, r)))
                body = [
                    add("" if numbered else _name_expr(n), self.expr(t, rest, _never))
                    for t, n in zip(templates, names, strict=True)
                ]
                lines.append(f"for {_loop_variable(body)} in range(1, {r}):")
            else:
                body = [
                    add("" if numbered else _name_expr(n), self.expr(t, self.loop_value, _never))
                    for t, n in zip(templates, names, strict=True)
                ]
                lines.append(f"for {_loop_variable(body)} in range({r}):")
            lines += [f"    {line}" for line in body]
        return lines, f"nn.Sequential(*{var})" if numbered else var

    def model_code(self) -> dict[str, Any]:
        init: list[str] = []
        for child in self.root.children:
            stmts, code = self.node_code(child, set())
            init += stmts
            init.append(f"self.{_attr(child.name)} = {code}")
        steps = [{"name": _attr(c.name), "aux": isinstance(c, AuxNode)} for c in self.root.children]
        return {"init": init, "steps": steps, "aux": any(s["aux"] for s in steps)}


# -- templates -----------------------------------------------------------------------------------------
def _environment() -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    checkout = Path(__file__).resolve().parent.parent / "templates"
    if (checkout / "model.py.j2").is_file():
        loader: Any = jinja2.FileSystemLoader(str(checkout))
    else:
        from importlib.resources import files

        package = files("netspec.templates")

        def load(name: str) -> str | None:
            resource = package.joinpath(name)
            return resource.read_text(encoding="utf-8") if resource.is_file() else None

        loader = jinja2.FunctionLoader(load)
    return ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _ruff() -> str | None:
    local = Path(sys.executable).with_name("ruff")
    return str(local) if local.is_file() else shutil.which("ruff")


def format_source(text: str) -> str:
    """`ruff format` with the project's settings when ruff is installed; the text as is otherwise."""
    ruff = _ruff()
    if ruff is None:
        return text
    command = [ruff, "format", "--isolated", "--line-length", str(LINE_LENGTH), "--target-version", "py311"]
    try:
        result = subprocess.run(
            [*command, "--stdin-filename", "model.py", "-"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return text
    return result.stdout if result.returncode == 0 and result.stdout.strip() else text


def _verify(text: str, root: SeqNode) -> None:
    """Build the file's network and the compiled one on the meta device: the same state_dict keys
    and shapes, the same layers (repr) at the same paths."""
    import torch

    from .torch_backend import module_for

    namespace: dict[str, Any] = {"__name__": "netspec_export_check"}
    exec(compile(text, "<netspec export>", "exec"), namespace)  # code this module wrote, checked above
    with torch.device("meta"):
        ours = namespace["build_model"]()
        ref = module_for(root)
    a = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    b = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    if a != b:
        diff = sorted(set(a) ^ set(b))[:5]
        raise ExportError(f"the generated network's state_dict differs from the compiled one: {diff}")

    def leaves(m: Any) -> list[tuple[str, str]]:
        return [(n, _norm_repr(x)) for n, x in m.named_modules() if not list(x.children()) and n]

    mine, theirs = leaves(ours), leaves(ref)
    if mine != theirs:
        diff = [(x, y) for x, y in zip(mine, theirs, strict=False) if x != y][:3]
        raise ExportError(f"the generated network's layers differ from the compiled ones: {diff}")


def export_source(spec: Spec, *, format: bool = True, verify: bool = True) -> str:
    """The spec as one standalone PyTorch source file (a string).

    `format`: run `ruff format` on it when ruff is installed (the file is valid Python either way).
    `verify`: build the file's network on the meta device and check it against the compiled one.
    Raises SpecError for an invalid spec and ExportError for one this exporter cannot write.
    """
    from .analysis import analyze
    from .train.recipe import recipe_from_spec

    root = lower(spec)
    analysis = analyze(spec)
    ex = _Exporter(spec, root)
    has_classes_arg = ex.designate_classes()
    ex.build_classes()
    blocks = [ex.class_code(cls) for cls in ex.classes]
    model = ex.model_code()
    model_name = _camel(spec.name, "Model")
    k = 2
    while model_name in ex.class_names:
        model_name = f"{_camel(spec.name, 'Model')}Net{'' if k == 2 else k}"
        k += 1
    shape = "x".join(map(str, analysis.input_shape))
    out_shape = (
        "("
        + ", ".join(map(str, analysis.output_shape))
        + ("," if len(analysis.output_shape) == 1 else "")
        + ")"
    )
    name = _escape(spec.name)
    intro = [f"{name}: a standalone PyTorch model generated by netspec from the spec `{name}`."]
    if spec.description:
        intro += ["", *_wrap(spec.description, LINE_LENGTH - 4)]
    dims = " x ".join(map(str, analysis.input_shape))
    intro += [
        "",
        f"Input: {shape} (a batch is N x {dims}); output: {out_shape}.",
        f"Parameters: {analysis.params:,}. MACs: {analysis.macs:,} ({analysis.macs / 1e9:.2f} G; one sample,",
        "eval mode, counted as fvcore counts).",
        "",
        "This file needs only PyTorch: blocks first, then the network, then `build_model`. Its module names",
        "are netspec's, so a state_dict of the compiled spec loads here as is.",
    ]
    returns = "tuple[Tensor, list[Tensor]] | Tensor" if model["aux"] else "Tensor"
    model_doc = f"The `{spec.name}` network: input {shape}, output {out_shape}."
    if model["aux"]:
        model_doc += " In training mode it returns (logits, [aux logits])."
    context = {
        "docstring": _docstring(intro, ""),
        "uses_functional": "ChannelPad" in ex.uses
        or any(n in ex.uses and re.search(r"\bF\.", s) for n, s in ex.plugin_sources.items()),
        "uses_channel_pad": "ChannelPad" in ex.uses,
        "plugin_classes": [text for n, text in ex.plugin_sources.items() if n in ex.uses],
        "uses_named_sequential": "_sequential" in ex.uses,
        "classes": blocks,
        "model": {
            "name": model_name,
            "doc": _docstring(_wrap(model_doc, LINE_LENGTH - 12), "    "),
            "signature": f"self, num_classes: int = {spec.classes}" if has_classes_arg else "self",
            "init": model["init"],
            "steps": model["steps"],
            "aux": model["aux"],
            "returns": returns,
        },
        "factory_doc": _docstring(
            _wrap(
                f"The `{spec.name}` network with the spec's defaults"
                + ("; keyword arguments override them (`num_classes=10`)." if has_classes_arg else "."),
                LINE_LENGTH - 12,
            ),
            "    ",
        ),
        "input_shape_literal": _lit(tuple(analysis.input_shape)),
        # the spec's `train:` section, validated, as the fields it sets (the defaults fill the rest)
        "recipe_literal": _lit(recipe_from_spec(spec).model_dump(mode="json", exclude_defaults=True)),
    }
    text = _environment().get_template("model.py.j2").render(**context)
    ast.parse(text)  # never hand back a file that does not parse
    if verify:
        _verify(text, root)
    return format_source(text) if format else text
