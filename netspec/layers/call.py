"""A layer's module, described once: a constructor and its arguments (`Call`) and the nn.init calls that
initialise it (`InitStep`). The torch backend instantiates and applies them; the source exporter writes
them as code. So the compiled module and an exported file cannot drift apart.

This module imports no torch at load time (analysis runs without it); `instantiate` and `apply` do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # an argument with no default: always written


@dataclass(frozen=True)
class Arg:
    """One constructor argument."""

    name: str  # the constructor's parameter name
    value: Any
    keyword: bool = True
    default: Any = MISSING  # written only when the value differs from this
    field: str | None = None  # the spec parameter it comes from (its `${name}` names an export argument)
    widening: bool = False  # the output width minus the input width (ChannelPad's zero channels)


@dataclass(frozen=True)
class Call:
    """`ctor(*positional, **keywords)`: `nn.Conv2d` (a torch.nn class), or the name of the class a kind
    ships itself (`LayerKind.module_class`, whose source export copies)."""

    ctor: str
    args: tuple[Arg, ...] = ()
    read_back: bool = False  # read back from a built module (a plug-in's `build`): export proves it

    def instantiate(self, custom: type | None = None) -> nn.Module:
        from torch import nn

        if self.ctor.startswith("nn."):
            cls = getattr(nn, self.ctor[3:])
        elif custom is not None and custom.__name__ == self.ctor:
            cls = custom
        else:
            raise TypeError(f"no class {self.ctor} to instantiate")
        positional = [a.value for a in self.args if not a.keyword]
        keywords = {a.name: a.value for a in self.args if a.keyword}
        return cls(*positional, **keywords)


@dataclass(frozen=True)
class InitStep:
    """`nn.init.<fn>(module.<tensor>, *args)`, e.g. ("kaiming_normal_", "weight", mode="fan_out")."""

    fn: str
    tensor: str
    args: tuple[Arg, ...] = ()

    @property
    def random(self) -> bool:
        """Draws from the RNG (its order matters), unlike a constant fill."""
        return self.fn not in ("constant_", "zeros_", "ones_")

    def apply(self, module: nn.Module) -> None:
        from torch import nn

        tensor = getattr(module, self.tensor)
        positional = [a.value for a in self.args if not a.keyword]
        getattr(nn.init, self.fn)(tensor, *positional, **{a.name: a.value for a in self.args if a.keyword})


# the weight-init schemes a spec names, and the steps each gives: netspec/layers/init_schemes.py


def collapse(v: Any) -> Any:
    """(3, 3) -> 3, as one writes it (torch takes either and stores the pair)."""
    if isinstance(v, list | tuple):
        v = tuple(v)
        if len(v) == 2 and type(v[0]) is type(v[1]) and v[0] == v[1]:
            return v[0]
    return v


def read_back(module: nn.Module) -> Call:
    """The call that rebuilds a torch module, read from its attributes (a plug-in kind that overrides
    `build`): every constructor parameter kept as an attribute of the same name. Export proves the call
    rebuilds the same module before using it."""
    import inspect

    from torch import nn

    cls = type(module)
    custom = getattr(nn, cls.__name__, None) is not cls
    args = []
    for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in ("device", "dtype"):
            continue
        value = getattr(module, name, MISSING)
        if isinstance(value, list):
            value = tuple(value)
        if value is MISSING or not _plain(value):
            continue
        default = param.default if _plain(param.default) else MISSING
        args.append(Arg(name, value, True, default))
    return Call(cls.__name__ if custom else f"nn.{cls.__name__}", tuple(args), read_back=True)


def _plain(v: Any) -> bool:
    """A value a literal writes: None, bool, int, float, str, or a tuple of them."""
    if v is None or type(v) in (bool, int, float, str):
        return True
    return type(v) is tuple and all(_plain(x) for x in v)
