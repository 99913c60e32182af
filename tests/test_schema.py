"""The JSON Schema editors use must accept every zoo spec and reject misspelled keys, as judged by
the independent `jsonschema` validator."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from netspec.schema import schema_json

from .conftest import ROOT, SPECS

SCHEMA = json.loads(schema_json())


def test_committed_schema_file_is_up_to_date():
    assert (ROOT / "netspec.schema.json").read_text() == schema_json()


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_zoo_spec_is_valid_against_the_schema_and_names_it(path):
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=../netspec.schema.json")
    jsonschema.validate(yaml.safe_load(text), SCHEMA)


def test_schema_rejects_a_misspelled_layer_parameter():
    spec = yaml.safe_load((SPECS / "resnet50.yaml").read_text())
    spec["stem"][0]["conv"]["kernal"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, SCHEMA)


def test_schema_rejects_a_misspelled_top_level_field():
    spec = yaml.safe_load((SPECS / "resnet50.yaml").read_text())
    spec["stagse"] = spec.pop("stages")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, SCHEMA)
