"""The contract every layer kind fulfils, side by side in one place (the fvcore handle-registry shape).

A kind has: a Pydantic parameter model, a shape rule, a cost rule (params, MACs, FLOPs in the fvcore
convention), a receptive-field rule and a PyTorch builder. Analysis never imports torch; builders do.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, ...]  # without the batch dimension: (C, H, W) for maps, (F,) for vectors

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# Attribute names of torch.nn.Module: a child module with one of these names would shadow a method.
# tests/test_layers.py checks this list against the installed torch.
RESERVED_NAMES = frozenset(
    [
        "T_destination",
        "add_module",
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
        "extra_repr",
        "float",
        "forward",
        "get_buffer",
        "get_extra_state",
        "get_parameter",
        "get_submodule",
        "half",
        "ipu",
        "load_state_dict",
        "modules",
        "mtia",
        "named_buffers",
        "named_children",
        "named_modules",
        "named_parameters",
        "parameters",
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


def check_module_name(name: str) -> str:
    """A name a spec gives a module must be a Python identifier that nn.Module can hold."""
    if not _IDENT.match(name) or keyword.iskeyword(name):
        raise ValueError(
            f"'{name}' is not a valid module name: use letters, digits and '_' "
            "(starting with a letter or '_', at most 64 characters)"
        )
    if name in RESERVED_NAMES or name.startswith("__"):
        raise ValueError(f"'{name}' is reserved by torch.nn.Module; choose another name")
    return name


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


@dataclass(frozen=True)
class Cost:
    params: int = 0
    macs: int = 0  # one multiply-add = 1, counted as fvcore counts it
    flops: int = 0  # 2 per MAC plus elementwise work


@dataclass(frozen=True)
class Window:
    """How a layer maps positions: kernel extent (dilated) and stride per spatial dim."""

    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    is_global: bool = False


IDENTITY_WINDOW = Window()


def numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def need_map(shape: Shape, kind: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(
            f"{kind} needs a (C, H, W) feature map but gets a flat vector of {shape[0]}; "
            "move it before `flatten`"
        )
    return shape  # type: ignore[return-value]


class LayerKind:
    """Base of every kind. Subclasses set the class attributes and override the rules they need.

    The contract (built-in kinds and plug-ins alike; plug-ins register through the `netspec.layers`
    entry point group, see plugins.py):
    - `name`: the kind's key in a spec (an identifier); `Params`: a LayerParams subclass (extra keys
      forbidden); `prefix`: module-name prefix (an identifier); `shorthand`: the field a scalar sets.
    - `infer(p, x) -> y`: the output shape, or ShapeError with a message for the user.
    - `cost(p, x, y) -> Cost`: params and MACs as fvcore counts them (eval mode, one sample).
    - `window(p, x) -> Window`: kernel extent and stride, for the receptive field.
    - `build(p, x, y) -> nn.Module`: import torch inside, never at module level (analysis has no torch).
    - `module_source` (for `netspec export`, only where `build` returns a class that is not torch.nn's):
      the Python source of that class, exactly one top-level `class <Name>(nn.Module): ...` with no
      imports, using only the names every exported file has (torch, nn, F, Tensor). Its `__init__`
      must keep each constructor argument as an attribute of the same name (the exporter reads the
      call back from them) and `extra_repr` should show them. The text is checked with `ast` and
      inserted as is (it is not a template: no spec value ever reaches it); the exporter then proves
      the class rebuilds the plug-in's module (same repr, same tensors) before writing the file.
      A torch.nn module (nn.ChannelShuffle(2)) needs nothing: its call is read back from it.
    """

    name: ClassVar[str]
    Params: ClassVar[type[LayerParams]]
    prefix: ClassVar[str]  # default module-name prefix: conv -> conv1, conv2, ...
    shorthand: ClassVar[str | None] = None  # field a scalar value sets: `dropout: 0.5`
    doc: ClassVar[str] = ""
    module_source: ClassVar[str | None] = None  # see above: source of a custom module class, for export

    def infer(self, p: Any, x: Shape) -> Shape:
        return x

    def cost(self, p: Any, x: Shape, y: Shape) -> Cost:
        return Cost()

    def window(self, p: Any, x: Shape) -> Window:
        return IDENTITY_WINDOW

    def build(self, p: Any, x: Shape, y: Shape) -> nn.Module:
        raise NotImplementedError
