"""JSON Schema for spec files, generated from the Pydantic models and the layer registry, so editors
with the YAML language server complete keys and flag unknown ones (`# yaml-language-server: $schema=`).

Layer parameters accept `${...}` strings wherever a number is expected, so the schema constrains the
*keys* of each layer kind strictly and leaves values to netspec's own validation.
"""

from __future__ import annotations

import json
from typing import Any

from .layers import KINDS
from .layers.composites import TABLE, Composite
from .spec import BlockDef, Spec, StageSpec
from .train.recipe import Recipe

# the JSON schema of each field a composite item takes (netspec/layers/composites.py lists which)
_COMPOSITE_FIELDS: dict[str, dict[str, Any]] = {
    "layers": {"$ref": "#/$defs/Layers"},
    "body": {"$ref": "#/$defs/Layers"},
    "branches": {"type": "array", "items": {"$ref": "#/$defs/Layers"}},
    "shortcut": {},
    "after": {"$ref": "#/$defs/Layers"},
}


# `from:` on any item of a list: the earlier named output(s) it reads (README "References and graphs")
_FROM: dict[str, Any] = {
    "description": "the earlier output (a name, or `input`) this item reads, or a list of them for a merge",
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
}


def _composite_schema(composite: Composite) -> dict[str, Any]:
    props: dict[str, Any] = {"name": {"type": "string"}}
    for field in composite.fields:
        props[field] = {"enum": list(composite.merges)} if field == "merge" else _COMPOSITE_FIELDS[field]
    props["when"] = {"description": "omit this item when the expression is false"}
    props["from"] = _FROM
    return {"type": "object", "properties": props, "additionalProperties": False}


def _kind_schema(kind: str) -> dict[str, Any]:
    layer = KINDS[kind]
    props: dict[str, Any] = {}
    for field, info in layer.Params.model_fields.items():
        props[field] = {"description": info.description} if info.description else {}
    props["when"] = {"description": "omit this layer when the expression is false"}
    props["from"] = _FROM
    params = {"type": "object", "properties": props, "additionalProperties": False}
    value: dict[str, Any] = {"anyOf": [params, {"type": "null"}]}
    if layer.shorthand:
        value["anyOf"].append({"type": ["number", "string", "array"]})
    return {"description": layer.doc, **value}


def layer_item_schema() -> dict[str, Any]:
    kinds = {k: _kind_schema(k) for k in KINDS}
    for composite in TABLE:
        kinds[composite.name] = _composite_schema(composite)
    return {
        "anyOf": [
            {"type": "string", "description": "a layer kind without parameters, e.g. relu"},
            {
                "type": "object",
                "description": "one layer: `kind: {params}` (or a block name with its params)",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": kinds,
            },
        ]
    }


def _recipe_schema(defs: dict[str, Any]) -> dict[str, Any]:
    """The `train:` section: the runner's Recipe model, its sub-models joining the spec's `$defs`.

    YAML 1.1 (netspec's reader) reads `1e-4` as text, which the recipe accepts as a number; editors
    read YAML 1.2, where it is a number, so the numeric types stay as pydantic states them."""
    recipe = Recipe.model_json_schema(by_alias=False)
    for name, sub in recipe.pop("$defs", {}).items():
        if name in defs and defs[name] != sub:  # two models of one name: a silent mix-up otherwise
            raise ValueError(f"schema definitions clash: {name}")
        defs[name] = sub
    recipe.pop("title", None)
    props = recipe["properties"]
    # `label_smoothing: 0.1` is short for {eps: 0.1, form: paper} (Recipe._scalar_smoothing)
    props["label_smoothing"] = {
        "anyOf": [props["label_smoothing"], {"type": "number", "minimum": 0, "exclusiveMaximum": 1}],
        "description": props["label_smoothing"].get("description", ""),
    }
    recipe["description"] = "the training recipe (netspec/train/recipe.py documents every field)"
    return recipe


def spec_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema(by_alias=False)
    defs = schema.setdefault("$defs", {})
    defs["LayerItem"] = layer_item_schema()
    defs["Layers"] = {"type": "array", "items": {"$ref": "#/$defs/LayerItem"}}
    stage = StageSpec.model_json_schema(by_alias=False)
    stage.pop("title", None)
    expr = {"type": "string", "pattern": r"\$\{", "description": "a ${...} expression"}
    count = {"anyOf": [{"type": "integer", "minimum": 1}, expr]}
    stage["properties"]["depth"] = {**count, "description": "number of blocks"}
    stage["properties"]["repeat"] = {**count, "description": "alias of depth"}
    stage["properties"]["from"] = _FROM
    defs["Stage"] = stage
    props = schema["properties"]
    props["extends"] = {
        "type": "string",
        "description": "the spec this one starts from: `zoo:NAME` (a bundled spec) or a file path"
        " relative to this file",
    }
    props["train"] = _recipe_schema(defs)
    for key in ("stem", "head"):
        props[key] = {"$ref": "#/$defs/Layers"}
    props["stages"] = {
        "type": "array",
        "items": {"anyOf": [{"$ref": "#/$defs/Stage"}, {"$ref": "#/$defs/LayerItem"}]},
    }
    block = defs.get(BlockDef.__name__)
    if block:
        for key in ("body", "after"):
            block["properties"][key] = {"$ref": "#/$defs/Layers"}
        block["properties"]["branches"] = {"type": "array", "items": {"$ref": "#/$defs/Layers"}}
    schema["title"] = "netspec spec"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_json() -> str:
    return json.dumps(spec_schema(), indent=2) + "\n"
