"""The spec language's top-level structure as Pydantic models (these are its reference documentation).

Layer items (`- conv: {out: 64}`) are validated per kind by the layer registry during lowering, once
their `${...}` expressions can be evaluated; everything else is validated here, all at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .expr import MAX_LIST_LEN, has_expression
from .layers.base import ModuleName, Pair, PositiveInt
from .layers.composites import TABLE
from .layers.init_schemes import DEFAULT_INIT, InitScheme

_PARALLEL = next(c for c in TABLE if c.name == "parallel")  # the merges a parallel block takes

ShortcutMode = Literal[
    "identity", "projection", "avgpool_projection", "zero_pad", "identity_if_possible", "none"
]
Merge = Literal["add", "concat", "mul", "none"]
TrickName = Literal["resnet_b", "resnet_c", "resnet_d", "zero_gamma"]
ParamType = Literal["int", "float", "bool", "str"]


def _identifier(name: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"'{name}' is not an identifier (letters, digits, '_')")
    return name


Identifier = Annotated[str, AfterValidator(_identifier)]


# A spec's name is a file name: the default run directory is runs/<name>. One path component, the
# same on every system: no separators, not `.` or `..`, no leading `-` (an option to a shell tool)
# or `.` (hidden), no trailing `.`, not a Windows device name.
SPEC_NAME_PATTERN = r"^[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,62}[A-Za-z0-9_\-])?$"
_DEVICE_NAMES = frozenset(
    ["con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))]
)


def check_spec_name(name: str) -> str:
    """`name` if it is a safe file name (one path component); else a validation error saying why."""
    if not re.fullmatch(SPEC_NAME_PATTERN, name):
        raise PydanticCustomError(
            "spec_name",
            "not a usable spec name: a name is a file name (the run directory is runs/<name>), so"
            " it is 1-64 letters, digits, '_', '.' or '-', starting with a letter, digit or '_' and"
            " not ending with '.'",
            {"name": name},
        )
    if name.split(".")[0].lower() in _DEVICE_NAMES:
        raise PydanticCustomError(
            "spec_name", "not a usable spec name: a reserved device name on Windows", {"name": name}
        )
    return name


SpecName = Annotated[
    str, AfterValidator(check_spec_name), Field(json_schema_extra={"pattern": SPEC_NAME_PATTERN})
]

Scalar = int | float | bool | str


def _var_value(value: Any) -> Any:
    """A var is a number, true/false, text (often `${...}`) or a list of numbers, each of which may be
    an expression: a design space's per-stage values (`depths: [1, 3, 6, 6]`)."""
    if isinstance(value, (int, float, str)):  # bool is an int
        return value
    if not isinstance(value, list):
        raise PydanticCustomError(
            "var_value",
            "a var is a number, true/false, text or a list of numbers, not {kind}",
            {"kind": "a mapping" if isinstance(value, dict) else "null" if value is None else repr(value)},
        )
    if len(value) > MAX_LIST_LEN:
        raise PydanticCustomError(
            "var_value",
            "a list of {n} elements: lists hold at most {max}",
            {"n": f"{len(value):,}", "max": f"{MAX_LIST_LEN:,}"},
        )
    for i, x in enumerate(value):
        if isinstance(x, bool) or not (isinstance(x, (int, float)) or has_expression(x)):
            raise PydanticCustomError(
                "var_value",
                "element {i} is {x}: lists in vars hold numbers (or `${...}` expressions giving numbers)",
                {"i": i, "x": repr(x)[:40]},
            )
    return value


_NUMBER_SCHEMA: dict[str, Any] = {"anyOf": [{"type": "number"}, {"type": "string"}]}
VarValue = Annotated[
    Any,
    AfterValidator(_var_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "boolean"},
                {"type": "string"},
                {"type": "array", "items": _NUMBER_SCHEMA, "maxItems": MAX_LIST_LEN},
            ]
        }
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InputSpec(Strict):
    """The input tensor, without the batch dimension."""

    channels: PositiveInt = 3
    size: Pair = Field(224, description="H = W, or [H, W]")


class NamedBranch(Strict):
    """A parallel branch with a module name of its own (default: branch1, branch2, ...), as
    torchvision's GoogLeNet and Inception blocks name theirs: `{name: branch3x3, layers: [...]}`."""

    name: ModuleName
    layers: list[Any]


class BlockDef(Strict):
    """A reusable composite block written in YAML, with parameters.

    Exactly one of `body` (a sequence, optionally merged with a shortcut: residual or dense) or
    `branches` (parallel sequences merged together: Inception) is given.
    """

    description: str = ""
    params: dict[Identifier, ParamType | Scalar | None] = Field(
        default_factory=dict,
        description="name: default value, or a type name (int, float, bool, str) for a required one",
    )
    vars: dict[Identifier, VarValue] = Field(
        default_factory=dict, description="values computed in order from params and in_channels"
    )
    body: list[Any] | None = None
    branches: list[list[Any] | NamedBranch] | None = Field(
        None, description="each a list of layers, or {name, layers} for a branch with its own name"
    )
    merge: Merge = Field("none", description="how body and shortcut (or the branches) combine")
    shortcut: ShortcutMode | list[Any] | None = Field(
        None, description="for merged bodies; default: the spec's `shortcut`"
    )
    shortcut_name: ModuleName = "downsample"
    after: list[Any] = Field(default_factory=list, description="layers after the merge")
    inline: StrictBool = Field(False, description="place the layers in the parent, not a submodule")

    @model_validator(mode="after")
    def _one_structure(self) -> BlockDef:
        if (self.body is None) == (self.branches is None):
            raise ValueError("a block has exactly one of `body` or `branches`")
        if self.branches is not None and self.merge not in _PARALLEL.merges:
            raise ValueError("parallel `branches` merge by `concat` or `add`")
        if self.inline and (self.merge != "none" or self.after):
            raise ValueError("only a plain sequence block (merge: none) can be `inline`")
        return self


class InitSpec(Strict):
    """Weight initialisation; `zero_gamma` is usually set by the trick of the same name."""

    # frozen, so hashable: pydantic then uses the default (`Spec.init`) as it is where it would deep-copy
    # it for every spec it validates
    model_config = ConfigDict(frozen=True)

    conv: InitScheme = Field(
        InitScheme("kaiming_normal"), description="convolutions' scheme: a name or {name: {arguments}}"
    )
    linear: InitScheme = Field(DEFAULT_INIT, description="linear layers' scheme (default: PyTorch's own)")
    zero_gamma: StrictBool = False
    seed: StrictInt | None = None


Count = Annotated[StrictInt, Field(ge=1)]  # a number of things: `true` or `2.0` is a mistake, not 1 or 2


class Limits(Strict):
    """Safety caps on what loading, lowering and building a spec may take. A spec may only lower them:
    the text may be untrusted, and raising them is the caller's decision (`--allow-large` on the
    command line, `load_spec(..., limits=Limits(...))` in the API); see `apply_caps`."""

    model_config = ConfigDict(frozen=True)  # (hashable: `Spec.limits`'s default is used as it is, as init's)

    max_params: Count = Field(2_000_000_000, description="parameters of the whole model")
    max_layers: Count = Field(20_000, description="layers of the whole model")
    max_memory: Count | None = Field(
        None,
        description="bytes a build, a forward pass or a training step may allocate, from the static"
        " estimate (default: half of this machine's memory)",
    )

    @model_serializer(mode="wrap")
    def _declared_only(self, handler: SerializerFunctionWrapHandler) -> Any:
        # the caps apply_caps fills in are the caller's, not the spec's: a dump shows what the spec wrote
        data = handler(self)
        return (
            {k: v for k, v in data.items() if k in self.model_fields_set} if isinstance(data, dict) else data
        )


DEFAULT_LIMITS = Limits()


def large_limits() -> Limits:
    """The caps `--allow-large` sets: still finite, so no text can make netspec run forever."""
    from .memory import physical_memory

    return Limits(max_params=10**12, max_layers=10**6, max_memory=physical_memory())


def apply_caps(spec: Spec, caps: Limits | None = None) -> Spec:
    """Give `spec` the caller's caps (default DEFAULT_LIMITS) where it sets no limit of its own, and
    refuse a limit it sets above a cap (SpecSizeError at that field): a spec can lower, not raise."""
    from .errors import Problem, SpecSizeError
    from .memory import default_memory_cap
    from .source import locate

    caps = caps or DEFAULT_LIMITS
    declared = {f for f in spec.limits.model_fields_set if getattr(spec.limits, f) is not None}
    values: dict[str, Any] = {}
    problems = []
    for field in Limits.model_fields:
        cap = getattr(caps, field)
        own = getattr(spec.limits, field)
        if field not in declared:
            values[field] = cap
            continue
        values[field] = own
        ceiling = cap if cap is not None else default_memory_cap()
        if own > ceiling:
            raise_hint = (
                "to allow more, run with --allow-large, or pass limits=Limits(...) in the API"
                if caps == DEFAULT_LIMITS
                else "to allow more, pass larger caps: limits=Limits(...)"
            )
            problems.append(
                Problem(
                    f"{own:,} is more than the cap of {ceiling:,}: a spec may lower its limits, not raise"
                    " them",
                    ("limits", field),
                    locate(spec.raw, ("limits", field)) if spec.raw is not None else None,
                    raise_hint,
                )
            )
    if problems:
        raise SpecSizeError(problems)
    spec.limits = Limits.model_construct(_fields_set=declared, **values)
    spec._caps = caps
    return spec


OutputNames = Annotated[list[str], Field(min_length=1)]
OutputMap = Annotated[dict[str, str], Field(min_length=1)]


class Spec(Strict):
    """A whole network. See README 'The spec language'."""

    name: SpecName
    description: str = ""
    input: InputSpec = InputSpec()
    classes: PositiveInt | None = None
    outputs: OutputNames | OutputMap | None = Field(
        None,
        description="instead of `classes`: the named outputs the model returns, as a dict of tensors"
        " (a list of names: keyed by name; a mapping: key -> name)",
    )
    vars: dict[Identifier, VarValue] = Field(
        default_factory=dict, description="named values (numbers, text, lists of numbers) for expressions"
    )
    defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per layer kind: parameter defaults for the whole spec"
    )
    features: ModuleName | None = Field(
        None, description="wrap stem and stages in one nn.Sequential of this name"
    )
    trunk: ModuleName | None = Field(
        None,
        description="wrap the stages (not the stem) in one nn.Sequential of this name (torchvision's"
        " RegNet `trunk_output`)",
    )
    stem: list[Any] = Field(default_factory=list)
    stages: list[Any] = Field(default_factory=list)
    head: list[Any] = Field(default_factory=list)
    shortcut: ShortcutMode = "projection"
    tricks: list[TrickName] = Field(default_factory=list)
    blocks: dict[Identifier, BlockDef] = Field(default_factory=dict)
    init: InitSpec = InitSpec()
    limits: Limits = Field(
        Limits(), exclude_if=lambda limits: not limits.model_fields_set, description="see Limits"
    )
    train: dict[str, Any] = Field(default_factory=dict)

    _raw: Any = PrivateAttr(default=None)
    _file: str | None = PrivateAttr(default=None)
    _caps: Limits | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_result(self) -> Spec:
        if self.outputs is not None and self.classes is not None:
            raise ValueError("a spec ends in `classes` (one tensor of logits) or `outputs`, not both")
        if isinstance(self.outputs, list) and len(set(self.outputs)) != len(self.outputs):
            raise ValueError("`outputs` names each output once")
        return self

    @property
    def caps(self) -> Limits:
        """The caps the caller loaded this spec under (what a spec derived from it may use)."""
        return self._caps or DEFAULT_LIMITS

    @property
    def raw(self) -> Any:
        """The resolved tree with source positions (for error locations)."""
        return self._raw

    @property
    def file(self) -> str | None:
        return self._file


class StageSpec(Strict):
    """`{block: NAME, depth: N, ...}`: N blocks; only the first takes `stride`. Other keys are block
    params, evaluated per block with `index` (0-based) in scope."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    block: Identifier
    depth: StrictInt = Field(1, ge=1, alias="repeat")  # bounded by `limits`, with an estimate
    name: ModuleName | None = None
    block_name: str | None = Field(None, description="e.g. 'denselayer${index + 1}'")
    inline: StrictBool = False
    before: list[Any] = Field(
        default_factory=list,
        description="layers of the stage before its blocks (timm's `downsample`), in the stage's module",
    )
    container: ModuleName | None = Field(
        None,
        description="put the blocks in a child nn.Sequential of this name, after `before` (timm's"
        " `stages.2.blocks.1`: container `blocks`)",
    )

    @model_validator(mode="after")
    def _placed_once(self) -> StageSpec:
        if self.inline and (self.container is not None or self.before):
            raise ValueError("an `inline` stage has no module of its own to hold `before` or a `container`")
        return self
