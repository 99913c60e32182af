"""The contract every layer kind fulfils, side by side in one place (the fvcore handle-registry shape).

A kind has: a Pydantic parameter model, a shape rule, a cost rule (params, MACs, FLOPs in the fvcore
convention), a receptive-field rule, and its module described once as a call (call.py) that the torch
backend instantiates and the exporter writes. Analysis never imports torch; builders do.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from enum import Enum
from math import prod
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from .call import Call, InitStep, read_back
from .init_schemes import InitScheme

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, ...]  # without the batch dimension: (C, H, W) for maps, (F,) for vectors

# An identifier as netspec accepts one for a module, class or argument name (fullmatch: `$` would let
# a trailing newline through). The one definition; plugins.py and export/ use it.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

# Attributes of a torch.nn.Sequential (the container of every compiled block and stage; its attributes
# include every nn.Module's, public and private): torch refuses a child module of one of these names
# (`add_module` raises), so validation refuses them first, with a located error. Names that start with
# `__` are refused too; netspec's own container modules keep their settings in `__dunder__` attributes,
# so no other identifier a user writes can collide with them. tests/test_names.py checks this set
# against the installed torch.
RESERVED_NAMES = frozenset(
    [
        "T_destination",
        "_apply",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_buffers",
        "_call_impl",
        "_compiled_call_impl",
        "_forward_hooks",
        "_forward_hooks_always_called",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks",
        "_forward_pre_hooks_with_kwargs",
        "_get_backward_hooks",
        "_get_backward_pre_hooks",
        "_get_item_by_idx",
        "_get_name",
        "_is_full_backward_hook",
        "_load_from_state_dict",
        "_load_state_dict_post_hooks",
        "_load_state_dict_pre_hooks",
        "_maybe_warn_non_full_backward_hook",
        "_modules",
        "_named_members",
        "_non_persistent_buffers_set",
        "_parameters",
        "_register_load_state_dict_pre_hook",
        "_register_state_dict_hook",
        "_replicate_for_data_parallel",
        "_save_to_state_dict",
        "_slow_forward",
        "_state_dict_hooks",
        "_state_dict_pre_hooks",
        "_version",
        "_wrapped_call_impl",
        "add_module",
        "append",
        "apply",
        "bfloat16",
        "buffers",
        "call_super_init",
        "children",
        "compile",
        "cpu",
        "cuda",
        "double",
        "dump_patches",
        "eval",
        "extend",
        "extra_repr",
        "float",
        "forward",
        "get_buffer",
        "get_extra_state",
        "get_parameter",
        "get_submodule",
        "half",
        "insert",
        "ipu",
        "load_state_dict",
        "modules",
        "mtia",
        "named_buffers",
        "named_children",
        "named_modules",
        "named_parameters",
        "parameters",
        "pop",
        "register_backward_hook",
        "register_buffer",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_load_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_module",
        "register_parameter",
        "register_state_dict_post_hook",
        "register_state_dict_pre_hook",
        "requires_grad_",
        "set_extra_state",
        "set_submodule",
        "share_memory",
        "state_dict",
        "to",
        "to_empty",
        "train",
        "training",
        "type",
        "xpu",
        "zero_grad",
    ]
)


# A module name is any text nn.Module.add_module takes (not empty, no '.': the dot joins a module path,
# as in state_dict keys), except what no backend can carry: characters of Unicode's "other" categories
# (control, format, surrogate, private, unassigned) and line/paragraph separators, which would break
# the one-line `FILE:LINE:COL: path: message` errors, reports and the exported file's lines. Names that
# are not Python identifiers are added with `add_module` and read with `getattr` (the exporter writes
# them as string literals); graph lists add torch.fx's own limits (graph_name_problem).
MAX_NAME_LENGTH = 64
_UNCARRIED = frozenset(["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"])


def module_name_problem(name: str) -> str | None:
    """Why `name` cannot name a module, or None."""
    if not name or len(name) > MAX_NAME_LENGTH or "." in name:
        return (
            f"{name!r} is not a valid module name: a name is 1-{MAX_NAME_LENGTH} characters without '.'"
            " ('.' joins module paths, as in state_dict keys)"
        )
    # (printable ASCII, most names, holds none of those categories: no need to look up each character)
    printable_ascii = name.isascii() and name.isprintable()
    bad = None if printable_ascii else next((c for c in name if unicodedata.category(c) in _UNCARRIED), None)
    if bad is not None:
        return (
            f"{name!r} is not a valid module name: it holds {bad!a} ({unicodedata.category(bad)}), a"
            " control or invisible character that reports, errors and exported code cannot show"
        )
    if name in RESERVED_NAMES or name.startswith("__"):
        return f"{name!r} is reserved by torch.nn.Module (an attribute of every module); choose another name"
    return None


def check_module_name(name: str) -> str:
    """A name a spec gives a module: any text nn.Module.add_module takes (module_name_problem)."""
    problem = module_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


def graph_name_problem(name: str) -> str | None:
    """Why `name` (one part of a module path) cannot name a module of a graph list, or None. torch.fx
    writes the forward of a graph list as Python source: `self.NAME` where NAME is an identifier (so a
    keyword, or a name Python's NFKC normalisation changes, `ﬁ` -> `fi`, would be another attribute or
    a syntax error), else `getattr(self, "NAME")` without escaping (so a quote or backslash would
    break out of the string)."""
    problem = module_name_problem(name)
    if problem is not None:
        return problem
    if keyword.iskeyword(name):
        return (
            f"{name!r} cannot name a module of a list that uses references: it is a Python keyword, and"
            f" torch.fx writes it as the attribute `self.{name}`"
        )
    if name.isidentifier() and unicodedata.normalize("NFKC", name) != name:
        return (
            f"{name!r} cannot name a module of a list that uses references: torch.fx writes it as the"
            f" attribute `self.{name}`, which Python reads as {unicodedata.normalize('NFKC', name)!r}"
        )
    quote = next((c for c in name if c in '\\"'), None)
    if quote is not None:
        return (
            f"{name!r} cannot name a module of a list that uses references: torch.fx writes it into a"
            f" string literal of the generated forward without escaping, so it may not hold {quote}"
        )
    return None


ModuleName = Annotated[str, AfterValidator(check_module_name)]


# Counts are strict: YAML's `true` or `2.0` where a count is meant is a mistake, not 1 or 2
PositiveInt = Annotated[StrictInt, Field(ge=1, le=1 << 24)]
NonNegInt = Annotated[StrictInt, Field(ge=0, le=1 << 24)]
Pair = PositiveInt | tuple[PositiveInt, PositiveInt]


def pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


class LayerParams(BaseModel):
    """Fields every layer item may carry."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    name: ModuleName | None = None


class ShapeError(ValueError):
    """A layer cannot accept its input shape; lowering turns it into a SpecShapeError."""


# (named tuples, not frozen dataclasses: lowering makes one of each for every layer shape it meets, and
# a frozen dataclass's constructor costs three times as much)
class Cost(NamedTuple):
    params: int = 0
    macs: int = 0  # one multiply-add = 1, counted as fvcore counts it
    flops: int = 0  # 2 per MAC plus elementwise work


class Window(NamedTuple):
    """How a layer maps positions: kernel extent (dilated) and stride per spatial dim."""

    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    is_global: bool = False
    # an upsampling's factor: output pixels are 1/upscale input pixels apart, so the jump divides by
    # it (where it divides: jumps stay whole pixels; elsewhere it stays an upper bound)
    upscale: tuple[int, int] = (1, 1)


IDENTITY_WINDOW = Window()


class UnitRole(Enum):
    """A layer's place in a conv -> norm -> act unit (torchvision's Conv2dNormActivation)."""

    CONV = "conv"
    NORM = "norm"
    ACT = "act"


def window_text(w: Window) -> str:
    """`3x3 /2`: a window's kernel extent and stride (the stride only when it is not 1)."""
    k = f"{w.kernel[0]}x{w.kernel[0]}" if w.kernel[0] == w.kernel[1] else f"{w.kernel[0]}x{w.kernel[1]}"
    s = str(w.stride[0]) if w.stride[0] == w.stride[1] else f"{w.stride[0]}x{w.stride[1]}"
    return k + (f" /{s}" if s != "1" else "")


def numel(shape: Shape) -> int:
    return prod(shape)  # (in C: analysis and peak memory ask for every node)


def need_map(shape: Shape, kind: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(
            f"{kind} needs a (C, H, W) feature map but gets a flat vector of {shape[0]}; "
            "move it before `flatten`"
        )
    return shape


class LayerKind:
    """Base of every kind. Subclasses set the class attributes and override the rules they need.

    The contract (built-in kinds and plug-ins alike; plug-ins register through the `netspec.layers`
    entry point group, see plugins.py):
    - `name`: the kind's key in a spec (an identifier); `Params`: a LayerParams subclass (extra keys
      forbidden); `prefix`: module-name prefix (an identifier); `shorthand`: the field a scalar sets.
    - `infer(p, x) -> y`: the output shape, or ShapeError with a message for the user.
    - `cost(p, x, y) -> Cost`: params and MACs as fvcore counts them (eval mode, one sample).
    - `window(p, x) -> Window`: kernel extent and stride, for the receptive field.
    - `module_call(p, x, y, inplace) -> Call` (call.py): the module as a constructor and its arguments,
      described once: the torch backend instantiates it (`build`), `netspec export` writes it.
      `init_steps(p, scheme, zero_init)`: the nn.init calls that initialise it, likewise.
    - `expand(p) -> (p, kinds)`: sugar for sibling layers (conv's `norm`/`act`), expanded by lowering.
    - Traits the backends read: `inplace_ok`, `fresh_output`, `overwritable_output`, `zero_init_ok`,
      `init_default`, `classes_arg`, `matmul` (report --check), `unit_role` (diagram), `aliases_input`
      (peak memory) (see below); `describe(p, x, y)`: a diagram node's label; `scratch(p, x, y)`: the
      temporaries its forward holds (peak memory). Merges (several inputs) subclass merge.MergeKind.
    - A kind whose module is not torch.nn's gives the class (`module_class()`, importing torch inside)
      and its source (`module_source`, for export): exactly one top-level `class <Name>(nn.Module): ...`
      with no imports, using only the names every exported file has (torch, nn, F, Tensor). The text is
      checked with `ast` and inserted as is (it is not a template: no spec value ever reaches it).
    - A plug-in may override `build(p, x, y) -> nn.Module` instead of `module_call` (import torch
      inside, never at module level: analysis has no torch); its call is then read back from the built
      module (every constructor argument kept as an attribute of the same name), and export proves the
      call rebuilds the same module (same repr, same tensors) before writing it.
    """

    name: ClassVar[str]
    Params: ClassVar[type[LayerParams]]
    prefix: ClassVar[str]  # default module-name prefix: conv -> conv1, conv2, ...
    shorthand: ClassVar[str | None] = None  # field a scalar value sets: `dropout: 0.5`
    doc: ClassVar[str] = ""
    module_source: ClassVar[str | None] = None  # see above: source of a custom module class, for export
    # the module takes `inplace` (an activation): lowering lets it overwrite a fresh input
    inplace_ok: ClassVar[bool] = False
    # its output is a new tensor no one else reads: an in-place activation may follow it
    fresh_output: ClassVar[bool] = False
    # autograd does not keep its output either: a residual add may write into it (`out += identity`)
    overwritable_output: ClassVar[bool] = False
    # it can start as zero (BN's gamma): zero_gamma marks the last such layer of a residual body
    zero_init_ok: ClassVar[bool] = False
    # the `init:` section field that sets this kind's default weight-init scheme (`conv`, `linear`)
    init_default: ClassVar[str | None] = None
    # the constructor argument an exported network's `num_classes` sets when this layer ends it
    classes_arg: ClassVar[str | None] = None
    # its MACs are a convolution or a matrix product, which torch's FlopCounterMode counts as 2 FLOPs
    # each (`report --check`); the MACs of batch norm and average pooling are fvcore's convention only
    matmul: ClassVar[bool] = False
    # its place in a conv -> norm -> act unit, which a diagram draws as one node
    unit_role: ClassVar[UnitRole | None] = None
    # in eval mode its output is its input or a view of it (flatten, identity, dropout): it allocates
    # nothing and keeps its input's memory alive (peak activation memory, memory.py)
    aliases_input: ClassVar[bool] = False
    # the merge kind (merge.py) an item of this kind is when its `from:` names several outputs
    # (`upsample: {from: [x, other], size: like}` is `upsample_like`); None: it reads one
    merge_form: ClassVar[str | None] = None

    def infer(self, p: Any, x: Shape) -> Shape:
        return x

    def cost(self, p: Any, x: Shape, y: Shape) -> Cost:
        return Cost()

    def window(self, p: Any, x: Shape) -> Window:
        return IDENTITY_WINDOW

    def scratch(self, p: Any, x: Shape, y: Shape) -> int:
        """Elements of the temporaries its eval-mode forward holds beside its output at its fullest
        (peak activation memory, memory.py): 0 for a module that computes its output in one op."""
        return 0

    def describe(self, p: Any, x: Shape, y: Shape) -> str:
        """A few words for a diagram's node: the kind's name (`global ...` with a global window)."""
        return f"global {self.name}" if self.window(p, x).is_global else self.name

    def module_call(self, p: Any, x: Shape, y: Shape, inplace: bool = False) -> Call:
        raise NotImplementedError(f"layer kind '{self.name}' defines neither module_call nor build")

    def call(self, p: Any, x: Shape, y: Shape, inplace: bool = False) -> Call:
        """The module's call as the backends read it: `module_call`, or, where a class overrides `build`
        below the one that defines `module_call` (a plug-in), read back from the module it builds."""
        mro = type(self).__mro__
        if mro.index(_owner(mro, "build")) >= mro.index(_owner(mro, "module_call")):
            return self.module_call(p, x, y, inplace)
        import torch

        with torch.device("meta"):  # no memory, no init: only the constructor's arguments are read
            return read_back(self.build(p, x, y, inplace=True) if inplace else self.build(p, x, y))

    def module_class(self) -> type | None:
        """The class of a `module_call` whose constructor is not torch.nn's."""
        return None

    def build(self, p: Any, x: Shape, y: Shape, inplace: bool = False) -> nn.Module:
        return self.module_call(p, x, y, inplace).instantiate(self.module_class())

    def expand(self, p: Any) -> tuple[Any, tuple[str, ...]]:
        """Sugar for sibling layers (conv's `norm`/`act`): the layer's own parameters without it, and
        the kinds of the layers that follow it, in order, each with the spec's defaults for its kind."""
        return p, ()

    def init_steps(self, p: Any, scheme: InitScheme, zero_init: bool) -> tuple[InitStep, ...]:
        """The nn.init calls after construction, for the layer's resolved weight-init `scheme` (the
        layer's `init:`, else the spec's `init:` default for `init_default`) and its zero-gamma mark."""
        return ()


def _owner(mro: tuple[type, ...], attr: str) -> type:
    """The class of `mro` that defines `attr`."""
    return next(c for c in mro if attr in c.__dict__)
