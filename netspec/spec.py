"""The spec language's top-level structure as Pydantic models (these are its reference documentation).

Layer items (`- conv: {out: 64}`) are validated per kind by the layer registry during lowering, once
their `${...}` expressions can be evaluated; everything else is validated here, all at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from .layers.base import ModuleName, Pair, PositiveInt

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
Scalar = int | float | bool | str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InputSpec(Strict):
    """The input tensor, without the batch dimension."""

    channels: PositiveInt = 3
    size: Pair = Field(224, description="H = W, or [H, W]")


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
    vars: dict[Identifier, Scalar] = Field(
        default_factory=dict, description="values computed in order from params and in_channels"
    )
    body: list[Any] | None = None
    branches: list[list[Any]] | None = None
    merge: Merge = Field("none", description="how body and shortcut (or the branches) combine")
    shortcut: ShortcutMode | list[Any] | None = Field(
        None, description="for merged bodies; default: the spec's `shortcut`"
    )
    shortcut_name: ModuleName = "downsample"
    after: list[Any] = Field(default_factory=list, description="layers after the merge")
    inline: bool = Field(False, description="place the layers in the parent, not a submodule")

    @model_validator(mode="after")
    def _one_structure(self) -> BlockDef:
        if (self.body is None) == (self.branches is None):
            raise ValueError("a block has exactly one of `body` or `branches`")
        if self.branches is not None and self.merge not in ("concat", "add"):
            raise ValueError("parallel `branches` merge by `concat` or `add`")
        if self.inline and (self.merge != "none" or self.after):
            raise ValueError("only a plain sequence block (merge: none) can be `inline`")
        return self


class InitSpec(Strict):
    """Weight initialisation; `zero_gamma` is usually set by the trick of the same name."""

    conv: Literal["kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "default"] = (
        "kaiming_normal"
    )
    linear: Literal["normal", "xavier_uniform", "kaiming_uniform", "default"] = "default"
    zero_gamma: bool = False
    seed: int | None = None


class Limits(Strict):
    max_params: int = Field(2_000_000_000, ge=1)
    max_layers: int = Field(20_000, ge=1)


class Spec(Strict):
    """A whole network. See README 'The spec language'."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str = ""
    input: InputSpec = InputSpec()
    classes: PositiveInt | None = None
    vars: dict[Identifier, Scalar] = Field(default_factory=dict)
    defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per layer kind: parameter defaults for the whole spec"
    )
    features: ModuleName | None = Field(
        None, description="wrap stem and stages in one nn.Sequential of this name"
    )
    stem: list[Any] = Field(default_factory=list)
    stages: list[Any] = Field(default_factory=list)
    head: list[Any] = Field(default_factory=list)
    shortcut: ShortcutMode = "projection"
    tricks: list[TrickName] = Field(default_factory=list)
    blocks: dict[Identifier, BlockDef] = Field(default_factory=dict)
    init: InitSpec = InitSpec()
    limits: Limits = Limits()
    train: dict[str, Any] = Field(default_factory=dict)

    _raw: Any = PrivateAttr(default=None)
    _file: str | None = PrivateAttr(default=None)

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
    depth: int = Field(1, ge=1, alias="repeat")  # bounded by `limits`, with an estimate
    name: ModuleName | None = None
    block_name: str | None = Field(None, description="e.g. 'denselayer${index + 1}'")
    inline: bool = False
