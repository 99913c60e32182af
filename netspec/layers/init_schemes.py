"""Weight-init schemes, as a spec names them: the spec's `init: {conv: ..., linear: ...}` and a layer's
own `init:`. A scheme is a name (`kaiming_normal`) or a one-key mapping of a name to its arguments
(`{trunc_normal: {std: 0.02}}`), like a layer; each is one `nn.init` function of the same name (with a
trailing underscore) on the layer's `weight`, with the bias zeroed, as torchvision's constructors do.
`default` keeps PyTorch's own reset_parameters().

The table (`SCHEMES`) gives each scheme its function, its arguments (a Pydantic model: validated, with
located errors, and documented in the JSON Schema) and the arguments always written (where the
scheme's default differs from nn.init's: `kaiming_normal` is torchvision's `mode="fan_out"`,
`trunc_normal` ConvNeXt's `std=0.02`). Other arguments are written only where the spec gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    Tag,
    create_model,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import core_schema

from .call import Arg, InitStep

Nonlinearity = Literal["relu", "leaky_relu", "linear", "tanh", "sigmoid", "selu", "conv2d"]
Number = Annotated[float, Field(allow_inf_nan=False)]  # NaN would pass every bound check below
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        # named here, with the scheme's own arguments as the hint (a layer's error hint lists its fields)
        if isinstance(data, Mapping):
            from ..errors import did_you_mean

            for key in data:
                if key not in cls.model_fields:
                    known = ", ".join(cls.model_fields) or "none"
                    hint = did_you_mean(str(key), cls.model_fields)
                    raise ValueError(
                        f"unknown argument '{key}'" + (f" ({hint})" if hint else "") + f"; arguments: {known}"
                    )
        return data


class _NoArgs(_Args):
    pass


class KaimingNormal(_Args):
    """nn.init.kaiming_normal_ (He et al. 2015); `a`: the negative slope of a leaky ReLU."""

    mode: Literal["fan_in", "fan_out"] = "fan_out"
    nonlinearity: Nonlinearity = "relu"
    a: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class KaimingUniform(KaimingNormal):
    """nn.init.kaiming_uniform_ (He et al. 2015)."""

    mode: Literal["fan_in", "fan_out"] = "fan_in"


class Xavier(_Args):
    """nn.init.xavier_normal_ / xavier_uniform_ (Glorot & Bengio 2010)."""

    gain: Positive = 1.0


class Normal(_Args):
    """nn.init.normal_."""

    mean: Number = 0.0
    std: Positive = 0.01


class TruncNormal(_Args):
    """nn.init.trunc_normal_: a normal of `mean` and `std` redrawn outside [a, b]. As in torch, `a` and `b`
    are values, not multiples of `std`: with std 0.02, torchvision's and timm's ConvNeXt (which pass
    only `std`) cut at +-2, a hundred standard deviations."""

    mean: Number = 0.0
    std: Positive = 0.02
    a: Number = -2.0
    b: Number = 2.0

    @model_validator(mode="after")
    def _bounds(self) -> TruncNormal:
        if self.a >= self.b:
            raise ValueError(f"the bounds need a < b (got a={self.a}, b={self.b})")
        if not self.a - 2 * self.std <= self.mean <= self.b + 2 * self.std:
            raise ValueError("mean lies more than 2 std outside [a, b]: torch's draws would be wrong")
        return self


class Uniform(_Args):
    """nn.init.uniform_: uniform on [a, b)."""

    a: Number = 0.0
    b: Number = 1.0

    @model_validator(mode="after")
    def _bounds(self) -> Uniform:
        if self.a >= self.b:
            raise ValueError(f"the bounds need a < b (got a={self.a}, b={self.b})")
        return self


@dataclass(frozen=True)
class Scheme:
    """One row of the table: the nn.init function, its arguments, and those always written."""

    fn: str
    args: type[_Args]
    written: tuple[str, ...] = ()


SCHEMES: dict[str, Scheme] = {
    "default": Scheme("", _NoArgs),
    "kaiming_normal": Scheme("kaiming_normal_", KaimingNormal, ("mode", "nonlinearity")),
    "kaiming_uniform": Scheme("kaiming_uniform_", KaimingUniform, ("mode", "nonlinearity")),
    "xavier_normal": Scheme("xavier_normal_", Xavier),
    "xavier_uniform": Scheme("xavier_uniform_", Xavier),
    "normal": Scheme("normal_", Normal, ("mean", "std")),
    "trunc_normal": Scheme("trunc_normal_", TruncNormal, ("std",)),
    "uniform": Scheme("uniform_", Uniform),
    "zeros": Scheme("zeros_", _NoArgs),
}


class InitScheme:
    """A validated scheme: its name and the arguments the spec gave (in the argument model's order).
    Without arguments it equals its name (`InitScheme("zeros") == "zeros"`). Not a dataclass: pydantic
    would write a dataclass default into the JSON Schema field by field."""

    __slots__ = ("args", "name")

    def __init__(self, name: str, args: tuple[tuple[str, Any], ...] = ()) -> None:
        self.name = name
        self.args = args

    def __eq__(self, other: object) -> bool:
        # a scheme without arguments is its name, as a spec writes it (and a plug-in compares it)
        if isinstance(other, str):
            return not self.args and self.name == other
        return isinstance(other, InitScheme) and (self.name, self.args) == (other.name, other.args)

    def __hash__(self) -> int:
        return hash(self.name) if not self.args else hash((self.name, self.args))

    def __repr__(self) -> str:
        return f"InitScheme({self.name!r}, {self.args!r})"

    @property
    def is_default(self) -> bool:
        return self.name == "default"

    def arguments(self) -> dict[str, Any]:
        """Every argument, the spec's over the scheme's defaults."""
        return SCHEMES[self.name].args(**dict(self.args)).model_dump()

    def steps(self, bias: bool) -> tuple[InitStep, ...]:
        """The init of a module with a `weight` (and maybe a `bias`): the scheme's nn.init call on the
        weight, the bias zeroed."""
        if self.is_default:
            return ()
        scheme = SCHEMES[self.name]
        given = {k for k, _ in self.args}
        args = tuple(Arg(k, v) for k, v in self.arguments().items() if k in scheme.written or k in given)
        weight = InitStep(scheme.fn, "weight", args)
        return (weight, InitStep("zeros_", "bias")) if bias else (weight,)

    def dump(self) -> str | dict[str, dict[str, Any]]:
        """As a spec writes it."""
        return {self.name: dict(self.args)} if self.args else self.name

    def __str__(self) -> str:
        return self.name + (f"({', '.join(f'{k}={v!r}' for k, v in self.args)})" if self.args else "")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """An `init:` field validates a name or `{name: {arguments}}` into an InitScheme (one that is one
        already passes), and writes it back as the spec did."""

        def validate(value: Any, forms: core_schema.ValidatorFunctionWrapHandler) -> InitScheme:
            return value if isinstance(value, InitScheme) else cls.of(forms(value))

        return core_schema.no_info_wrap_validator_function(
            validate,
            handler.generate_schema(_forms()),
            serialization=core_schema.plain_serializer_function_ser_schema(cls.dump),
        )

    @classmethod
    def of(cls, value: InitScheme | str | BaseModel) -> InitScheme:
        """From a name, or a one-key model of the spec language (`{trunc_normal: {std: 0.02}}`)."""
        if isinstance(value, InitScheme):
            return value
        if isinstance(value, str):
            if value not in SCHEMES:
                raise ValueError(f"unknown init scheme '{value}'")
            return cls(value)
        (name,) = type(value).model_fields
        args = getattr(value, name)
        return cls(
            name, tuple((k, getattr(args, k)) for k in type(args).model_fields if k in args.model_fields_set)
        )


DEFAULT_INIT = InitScheme("default")


# `{name: {arguments}}` of each scheme, as one-key models: pydantic then locates a wrong argument at
# `init.trunc_normal.std`. The tags hold a "[", which located errors leave out of the path.
def _one_key(name: str, args: type[_Args]) -> type[BaseModel]:
    field: dict[str, Any] = {name: (args, ...)}
    title = "".join(w.title() for w in name.split("_"))
    return create_model(
        f"{title}Scheme",
        __config__=ConfigDict(extra="forbid", frozen=True),
        __doc__=f"{name} with its arguments",
        **field,
    )


_ONE_KEY = {name: _one_key(name, s.args) for name, s in SCHEMES.items() if s.args is not _NoArgs}


def _form(value: Any) -> str | None:
    if isinstance(value, str):
        return "scheme[name]"
    if isinstance(value, Mapping) and len(value) == 1:
        key = next(iter(value))
        return f"scheme[{key}]" if key in _ONE_KEY else "scheme[unknown]"
    return None


def _unknown(value: Any) -> Any:
    from ..errors import did_you_mean

    key = str(next(iter(value)))
    if key in SCHEMES:
        raise ValueError(f"'{key}' takes no arguments: write it as a name (init: {key})")
    hint = did_you_mean(key, _ONE_KEY) or "schemes with arguments: " + ", ".join(_ONE_KEY)
    raise ValueError(f"unknown init scheme '{key}' ({hint})")


def _forms() -> Any:
    """The forms a spec writes, tagged by `_form`: a name, or `{name: {arguments}}` of a known name."""
    forms: Any = (
        Annotated[Literal[tuple(SCHEMES)], Tag("scheme[name]")]
        | Annotated[SkipJsonSchema[dict[str, Any]], AfterValidator(_unknown), Tag("scheme[unknown]")]
    )
    for name, model in _ONE_KEY.items():
        forms = forms | Annotated[model, Tag(f"scheme[{name}]")]
    return Annotated[
        forms,
        Discriminator(
            _form,
            custom_error_type="init_scheme",
            custom_error_message="an init scheme is a name (kaiming_normal) or a one-key mapping of a "
            "name to its arguments ({trunc_normal: {std: 0.02}})",
        ),
    ]


def weight_init(scheme: InitScheme | str, bias: bool) -> tuple[InitStep, ...]:
    """The init of a layer with a `weight` (and maybe a `bias`) under a scheme (or a scheme's name)."""
    return InitScheme.of(scheme).steps(bias)
