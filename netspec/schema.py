"""JSON Schema for spec files, generated from the Pydantic models and the layer registry, so editors
with the YAML language server complete keys and flag unknown ones (`# yaml-language-server: $schema=`).

Layer parameters accept `${...}` strings wherever a number is expected, so the schema constrains the
*keys* of each layer kind strictly and leaves values to netspec's own validation.
"""

from __future__ import annotations

import json
from typing import Any

from .layers import KINDS
from .spec import BlockDef, Spec, StageSpec

_COMPOSITES = {
    "sequential": {"name": {"type": "string"}, "layers": {"$ref": "#/$defs/Layers"}},
    "parallel": {
        "name": {"type": "string"},
        "branches": {"type": "array", "items": {"$ref": "#/$defs/Layers"}},
        "merge": {"enum": ["concat", "add"]},
        "after": {"$ref": "#/$defs/Layers"},
    },
    "residual": {
        "name": {"type": "string"},
        "body": {"$ref": "#/$defs/Layers"},
        "shortcut": {},
        "merge": {"enum": ["add", "concat", "mul"]},
        "after": {"$ref": "#/$defs/Layers"},
    },
    "aux": {"name": {"type": "string"}, "layers": {"$ref": "#/$defs/Layers"}},
}


def _kind_schema(kind: str) -> dict[str, Any]:
    layer = KINDS[kind]
    props: dict[str, Any] = {}
    for field, info in layer.Params.model_fields.items():
        props[field] = {"description": info.description} if info.description else {}
    props["when"] = {"description": "omit this layer when the expression is false"}
    params = {"type": "object", "properties": props, "additionalProperties": False}
    value: dict[str, Any] = {"anyOf": [params, {"type": "null"}]}
    if layer.shorthand or kind == "avgpool":
        value["anyOf"].append({"type": ["number", "string", "array"]})
    return {"description": layer.doc, **value}


def layer_item_schema() -> dict[str, Any]:
    kinds = {k: _kind_schema(k) for k in KINDS}
    when = {"description": "omit this item when the expression is false"}
    for name, props in _COMPOSITES.items():
        kinds[name] = {"type": "object", "properties": {**props, "when": when}, "additionalProperties": False}
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
    defs["Stage"] = stage
    props = schema["properties"]
    props["extends"] = {"type": "string", "description": "a spec file this one starts from"}
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
