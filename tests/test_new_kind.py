"""Adding a layer kind is one file plus one registry line, and every command knows it.

The test writes a kind netspec has never seen (space-to-depth: torch.nn.PixelUnshuffle, YOLOv5's
Focus / TResNet's stem) into a file in tmp_path, registers it with one line, the plug-in mechanism's
`NETSPEC_PLUGINS=module:Class` (an installed package writes the same line as an entry point), and
runs report, report --check, compile, export, diagram, schema, kinds and explain on a spec that
uses it. The kind itself passes the layer contract (tests/test_layer_contract.py).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap

import pytest
import torch

import netspec
from netspec.compile import load_compiled
from netspec.layers import KINDS

from .conftest import run_cli
from .test_layer_contract import contract_failures

KIND_FILE = '''
"""Space-to-depth: each r x r block of pixels becomes r*r channels (torch.nn.PixelUnshuffle)."""

from netspec.layers import Cost, LayerKind, LayerParams, Shape, ShapeError, Window
from netspec.layers.base import PositiveInt, need_map
from netspec.layers.call import Arg, Call


class SpaceToDepthParams(LayerParams):
    factor: PositiveInt = 2


class SpaceToDepth(LayerKind):
    name = "space_to_depth"
    Params = SpaceToDepthParams
    prefix = "s2d"
    shorthand = "factor"
    doc = "Space-to-depth: (C, H, W) -> (C*r*r, H/r, W/r) (torch.nn.PixelUnshuffle)."

    def infer(self, p, x: Shape) -> Shape:
        c, h, w = need_map(x, self.name)
        r = p.factor
        if h % r or w % r:
            raise ShapeError(f"space_to_depth needs H and W divisible by {r}, got {h}x{w}")
        return (c * r * r, h // r, w // r)

    def cost(self, p, x: Shape, y: Shape) -> Cost:
        return Cost()  # a reshape: no parameters, no multiply-adds

    def window(self, p, x: Shape) -> Window:
        return Window((p.factor, p.factor), (p.factor, p.factor))

    def module_call(self, p, x: Shape, y: Shape, inplace: bool = False) -> Call:
        return Call("nn.PixelUnshuffle", (Arg("downscale_factor", p.factor, field="factor"),))
'''

SPEC = """\
name: s2d_net
input: {channels: 3, size: 16}
classes: 10
stem:
  - conv: {out: 8, kernel: 3, norm: batchnorm, act: relu}
  - space_to_depth: 2
  - conv: {out: 16, kernel: 1}
head:
  - avgpool: global
  - flatten
  - linear: ${classes}
"""


@pytest.fixture
def space_to_depth(tmp_path, monkeypatch):
    """The kind's one file, and its one registry line."""
    (tmp_path / "s2d_kind.py").write_text(textwrap.dedent(KIND_FILE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NETSPEC_PLUGINS", "s2d_kind:SpaceToDepth")
    KINDS.load()
    spec_file = tmp_path / "s2d_net.yaml"
    spec_file.write_text(SPEC)
    yield spec_file
    KINDS.load([])
    KINDS._loaded = False  # the next reader discovers the real entry points again
    sys.modules.pop("s2d_kind", None)


def test_the_kind_joins_the_registry(space_to_depth):
    assert KINDS.plugins == ["space_to_depth"] and KINDS["space_to_depth"].prefix == "s2d"


@pytest.mark.parametrize(
    ("params", "shape"), [({"factor": 2}, (3, 8, 8)), ({"factor": 3}, (2, 9, 12)), ({}, (5, 6, 4))]
)
def test_the_kind_keeps_the_layer_contract(space_to_depth, params, shape):
    assert contract_failures("space_to_depth", params, shape) == []


def test_report_shows_its_row(space_to_depth):
    result = run_cli("report", str(space_to_depth), "-f", "json")
    assert result.exit_code == 0, result.output
    rows = {r["path"]: r for r in json.loads(result.output)["layers"]}
    s2d = rows["s2d1"]
    assert (s2d["kind"], s2d["input_shape"], s2d["output_shape"]) == (
        "space_to_depth",
        [8, 16, 16],
        [32, 8, 8],
    )
    assert s2d["receptive_field"] == [4, 4] and s2d["jump"] == [2, 2]  # 3x3 conv, then 2x2 blocks
    assert rows["conv2"]["params"] == 32 * 16 + 16


def test_report_check_agrees_with_fvcore(space_to_depth):
    result = run_cli("report", str(space_to_depth), "--check")
    assert result.exit_code == 0, result.output
    assert "ok: all" in result.output


def test_a_bad_input_is_a_located_error(space_to_depth, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("size: 16", "size: 15"))
    result = run_cli("validate", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:6:" in result.output and "divisible by 2, got 15x15" in result.output


def test_compile_writes_a_file_that_loads(space_to_depth, tmp_path):
    out = tmp_path / "s2d.pt"
    result = run_cli("compile", str(space_to_depth), "-o", str(out))
    assert result.exit_code == 0, result.output
    model = load_compiled(out)
    reference = netspec.build(netspec.load_spec(space_to_depth), seed=0).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert isinstance(model.get_submodule("s2d1"), torch.nn.PixelUnshuffle)


def test_export_writes_it_as_code(space_to_depth, tmp_path):
    out = tmp_path / "s2d_model.py"
    result = run_cli("export", str(space_to_depth), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "nn.PixelUnshuffle(" in out.read_text() and "s2d_kind" not in out.read_text()
    module_spec = importlib.util.spec_from_file_location("s2d_model", out)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    ours = module.build_model().eval()
    reference = netspec.build(netspec.load_spec(space_to_depth), seed=0).eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))


def test_diagram_draws_it(space_to_depth, tmp_path):
    out = tmp_path / "s2d.dot"
    result = run_cli("diagram", str(space_to_depth), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert '"s2d1\\nspace_to_depth"' in out.read_text()


def test_schema_completes_its_parameters(space_to_depth, tmp_path):
    out = tmp_path / "schema.json"
    result = run_cli("schema", "-o", str(out))
    assert result.exit_code == 0, result.output
    item = json.loads(out.read_text())["$defs"]["LayerItem"]["anyOf"][1]["properties"]["space_to_depth"]
    assert set(item["anyOf"][0]["properties"]) == {"name", "factor", "when", "from"}  # `from`: every item
    assert item["description"].startswith("Space-to-depth")


def test_kinds_and_explain_know_it(space_to_depth):
    result = run_cli("kinds")
    assert result.exit_code == 0 and "space_to_depth" in result.output and "[factor]" in result.output
    result = run_cli("explain", str(space_to_depth))
    assert result.exit_code == 0 and "space_to_depth: 2" in result.output
