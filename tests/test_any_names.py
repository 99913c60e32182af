"""Module names (README "Module names"): any text `nn.Module.add_module` takes names a module (not empty,
no '.'), and every backend carries it: the built module (state_dict keys, `get_submodule`), TorchScript,
the exported file (`add_module`/`getattr` where a name is not an attribute) and torch.fx's graph lists,
which refuse, at the name's line, what FX cannot write. Named containers for a stage's blocks and named
branches are checked against timm's own modules (`ConvNeXtStage`, inception_v4's `Mixed4a`).
"""

from __future__ import annotations

import importlib.util
import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import netspec
from netspec.export import export_source

pytestmark = pytest.mark.usefixtures("one_thread_module")

# quotes, a backslash, a digit, a space, a keyword, braces and percent signs (format strings), non-ASCII
# letters, a name Python's NFKC normalisation changes (the ligature: `self.ﬁ` would be `self.fi`)
HOSTILE = ["a b", "0", 'q"uo\\te', "it's", "ö", "класс", "block1-0", "class", "ﬁ", "{x}%s", " pad ", "7"]


def q(name: str) -> str:
    """A name as a YAML scalar (a JSON string is a YAML double-quoted one)."""
    return json.dumps(name)


def tree_spec(n: list[str]) -> str:
    return f"""
name: hostile
input: {{channels: 3, size: 8}}
stem:
  - conv: {{out: 4, name: {q(n[0])}}}
  - batchnorm: {{name: {q(n[1])}}}
  - residual:
      name: {q(n[2])}
      body: [{{conv: {{out: 4, name: {q(n[3])}}}}}, {{batchnorm: {{name: {q(n[4])}}}}}]
      after: [{{relu: {{name: {q(n[5])}}}}}]
  - parallel:
      name: {q(n[6])}
      merge: concat
      branches: [{{name: {q(n[7])}, layers: [{{conv: {{out: 2, name: {q(n[8])}}}}}]}}, [{{conv: 2}}]]
stages:
  - {{block: b, depth: 2, name: {q(n[9])}, block_name: "{n[10]}${{index}}", container: {q(n[11])}}}
blocks:
  b:
    body: [{{conv: {{out: 4, name: {q(n[0])}}}}}, {{batchnorm: {{name: {q(n[6])}}}}}]
    merge: add
    shortcut: identity
"""


def rotations() -> list[list[str]]:
    """Each hostile name in each place once."""
    return [HOSTILE[k:] + HOSTILE[:k] for k in range(0, len(HOSTILE), 3)]


def expected_keys(n: list[str]) -> set[str]:
    """The state_dict keys torch itself gives modules added under these names."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    conv = ["weight", "bias"]  # (a conv without `norm` has a bias)
    keys = {f"{n[0]}.{t}" for t in conv} | {f"{n[1]}.{t}" for t in bn}
    keys |= {f"{n[2]}.{n[3]}.{t}" for t in conv} | {f"{n[2]}.{n[4]}.{t}" for t in bn}
    keys |= {f"{n[6]}.{n[7]}.{n[8]}.{t}" for t in conv} | {f"{n[6]}.branch1.0.{t}" for t in conv}
    for i in range(2):
        block = f"{n[9]}.{n[11]}.{n[10]}{i}"
        keys |= {f"{block}.{n[0]}.{t}" for t in conv} | {f"{block}.{n[6]}.{t}" for t in bn}
    return keys


def exported_model(spec: netspec.Spec, seed: int, folder: Path) -> nn.Module:
    """`build_model(seed=seed)` of the spec's exported file (imported from a file: TorchScript reads
    the source of what it compiles)."""
    path = folder / f"{spec.name}_model.py"
    path.write_text(export_source(spec), encoding="utf-8")
    loader = importlib.util.spec_from_file_location(f"netspec_exported_{spec.name}", path)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module.build_model(seed=seed)


def equals_reference(spec: netspec.Spec, reference: nn.Module, shape: tuple[int, ...], folder: Path) -> None:
    """The built module and the exported file have the reference's state_dict keys in its order, load
    its weights strictly and give its outputs."""
    model = netspec.build(spec).eval()
    assert list(model.state_dict()) == list(reference.state_dict())
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
        exported = exported_model(spec, 0, folder).eval()
        exported.load_state_dict(reference.state_dict(), strict=True)
        torch.testing.assert_close(exported(x), reference(x))


@pytest.mark.parametrize("names", rotations(), ids=lambda n: f"first={n[0]!a}")
def test_any_text_names_a_module_in_every_backend(names, tmp_path):
    spec = netspec.loads_spec(tree_spec(names))
    model = netspec.build(spec, seed=3).eval()
    assert set(model.state_dict()) == expected_keys(names)
    assert isinstance(model.get_submodule(f"{names[2]}.{names[3]}"), nn.Conv2d)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), y)
        exported = exported_model(spec, 3, tmp_path).eval()
        # the same initial weights from the same seed, under the same keys (init reaches every name)
        for (k, a), (k2, b) in zip(model.state_dict().items(), exported.state_dict().items(), strict=True):
            assert k == k2
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(exported(x), y)
        torch.testing.assert_close(torch.jit.script(exported)(x), y)


def test_numbered_names_out_of_order_are_found_by_name(tmp_path):
    """A stage whose blocks are named `2`, `1` (not their places): `stage[1]` would be the second child,
    so the exported file reads them with getattr; zero-gamma's init reaches the right BN."""
    text = """
name: backwards
input: {channels: 3, size: 8}
stages:
  - {block: b, depth: 2, name: layer1, block_name: "${2 - index}"}
tricks: [zero_gamma]
blocks:
  b:
    body: [{conv: {out: 4, norm: batchnorm, act: none}}]
    merge: add
    shortcut: projection
"""
    spec = netspec.loads_spec(text)
    model = netspec.build(spec, seed=1)
    assert [name for name, _ in model.layer1.named_children()] == ["2", "1"]
    exported = exported_model(spec, 1, tmp_path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), exported.state_dict().items(), strict=True):
        assert k == k2
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_submodule_only_some_blocks_have_keeps_a_name_that_is_not_an_attribute(tmp_path):
    """The exported block class sets `add_module("down sample", None)` and tests `getattr(...) is not
    None` where only the first block projects: the file, and TorchScript of it, equal the module."""
    text = """
name: optional
input: {channels: 3, size: 8}
stages:
  - {block: b, depth: 2, out: 8, stride: 2, name: "layer 1"}
blocks:
  b:
    params: {out: int, stride: 1}
    body: [{conv: {out: "${out}", stride: "${stride}", norm: batchnorm, name: "c 1"}}]
    merge: add
    shortcut: projection
    shortcut_name: "down sample"
"""
    spec = netspec.loads_spec(text)
    model = netspec.build(spec, seed=2).eval()
    assert "layer 1.0.down sample.0.weight" in model.state_dict()
    assert "layer 1.1.down sample.0.weight" not in model.state_dict()
    exported = exported_model(spec, 2, tmp_path).eval()
    for (k, a), (k2, b) in zip(model.state_dict().items(), exported.state_dict().items(), strict=True):
        assert k == k2
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model(x))
        torch.testing.assert_close(torch.jit.script(exported)(x), model(x))


def graph_spec(name: str, dotted: str = "z.0-1.ö") -> str:
    return f"""
name: graph
input: {{channels: 3, size: 8}}
stem:
  - conv: {{out: 4, name: {q(name)}}}
  - relu: {{name: "b b"}}
  - conv: {{out: 4, name: {q(dotted)}}}
  - add: {{from: [{q(name)}, {q(dotted)}]}}
"""


@pytest.mark.parametrize("name", ["a b", "0", "ö", "класс", "x-y", "it's", "{x}%s", " pad "])
def test_graph_lists_carry_names_fx_can_write(name, tmp_path):
    spec = netspec.loads_spec(graph_spec(name))
    model = netspec.build(spec, seed=0).eval()
    assert isinstance(model, torch.fx.GraphModule)
    assert set(model.state_dict()) == {f"{p}.{t}" for p in (name, "z.0-1.ö") for t in ("weight", "bias")}
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y = model(x)
        conv = model.get_submodule(name)
        torch.testing.assert_close(y, conv(x) + model.get_submodule("z.0-1.ö")(torch.relu(conv(x))))
        torch.testing.assert_close(torch.jit.script(model)(x), y)
        exported = exported_model(spec, 0, tmp_path).eval()
        exported.load_state_dict(model.state_dict())
        torch.testing.assert_close(exported(x), y)


@pytest.mark.parametrize(
    ("name", "dotted", "needle"),
    [
        ('q"x', "z.0", 'may not hold "'),
        ("a\\b", "z.0", "may not hold \\"),
        ("class", "z.0", "is a Python keyword"),
        ("ﬁ", "z.0", "reads as 'fi'"),
        ("ok", 'z."0', 'may not hold "'),
        ("ok", "z.def", "is a Python keyword"),
    ],
)
def test_graph_lists_refuse_names_fx_would_write_wrongly(name, dotted, needle):
    """torch.fx writes `self.NAME` for an identifier and `getattr(self, "NAME")` (unescaped) otherwise."""
    text = graph_spec(name, dotted)
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(netspec.loads_spec(text))
    problem = info.value.problems[0]
    assert needle in problem.message and "torch.fx" in problem.message
    line = 5 if name != "ok" else 7
    assert problem.location is not None and problem.location.line == line


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("conv\n", "'\\n' (Cc)"),
        ("a\tb", "'\\t' (Cc)"),
        ("a\u200bb", "'\\u200b' (Cf)"),
        ("a\u2029b", "'\\u2029' (Zp)"),
        ("a.b", "a dotted name places a module under holder modules"),
        ("", "1-64 characters"),
        ("x" * 65, "1-64 characters"),
        ("__class__", "reserved by torch.nn.Module"),
        ("state_dict", "reserved by torch.nn.Module"),
    ],
)
def test_names_no_backend_can_carry_are_located_errors(name, needle, tmp_path):
    text = (
        f"name: t\ninput: {{channels: 3, size: 8}}\nstem:\n  - relu\n  - conv: {{out: 4, name: {q(name)}}}\n"
    )
    with pytest.raises(netspec.SpecError) as info:
        netspec.analyze(netspec.loads_spec(text))
    problem = info.value.problems[0]
    assert needle in problem.message and problem.location is not None and problem.location.line == 5
    assert "\n" not in str(info.value).strip()  # one line, whatever the name holds

    from .conftest import run_cli

    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    result = run_cli("validate", str(path))
    assert result.exit_code == 2 and result.output.startswith(f"{path}:5:")


# -- named containers for a stage's blocks (timm's `stages.N.blocks.M`) -----------------------------
CONVNEXT_STAGE = """
name: timm_convnext_stage
input: {channels: 8, size: 16}
trunk: stages
stages:
  - block: cnblock
    depth: 2
    dim: 16
    before:   # timm's ConvNeXtStage.downsample
      - sequential:
          name: downsample
          layers: [layernorm2d, {conv: {out: 16, kernel: 2, stride: 2, padding: 0, bias: true}}]
    container: blocks
blocks:
  cnblock:   # timm's ConvNeXtBlock with conv_mlp=True and no layer scale
    params: {dim: int}
    body:
      - conv: {out: "${dim}", kernel: 7, groups: depthwise, bias: true, name: conv_dw}
      - layernorm2d: {name: norm}
      - sequential:
          name: mlp
          layers:
            - conv: {out: "${4 * dim}", kernel: 1, bias: true, name: fc1}
            - gelu
            - conv: {out: "${dim}", kernel: 1, bias: true, name: fc2}
    merge: add
    shortcut: identity
"""


def randomized(module: nn.Module) -> nn.Module:
    """Weights and norm statistics away from their initial values, so a wrong mapping shows."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for v in module.state_dict().values():
            if v.is_floating_point():
                v.copy_(torch.rand(v.shape, generator=gen) + 0.5)
    return module


def test_stage_container_equals_timm_convnext_stage(tmp_path):
    convnext = pytest.importorskip("timm.models.convnext")
    from timm.layers import LayerNorm2d

    stage = convnext.ConvNeXtStage(
        8, 16, stride=2, depth=2, ls_init_value=None, conv_mlp=True, norm_layer=LayerNorm2d
    )
    reference = randomized(nn.Sequential(OrderedDict(stages=nn.Sequential(stage)))).eval()
    spec = netspec.loads_spec(CONVNEXT_STAGE)
    equals_reference(spec, reference, (2, 8, 16, 16), tmp_path)
    report = netspec.analyze(spec)
    assert report.params == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize(
    ("stage", "needle", "line"),
    [
        ("{block: b, depth: 2, inline: true, container: blocks}", "an `inline` stage has no module", 4),
        ("{block: b, depth: 2, container: x, before: [{relu: {name: x}}]}", "'x' is used twice", 4),
        ("{block: b, depth: 2, container: 'a.b'}", "not a valid module name", 4),
        ("{block: b, depth: 2, container: blocks, before: [{nope: {}}]}", "unknown layer kind 'nope'", 4),
    ],
)
def test_stage_container_mistakes_are_located(stage, needle, line):
    text = f"name: t\ninput: {{channels: 3, size: 8}}\nstages:\n  - {stage}\nblocks:\n  b: {{body: [relu]}}\n"
    with pytest.raises(netspec.SpecError) as info:
        netspec.analyze(netspec.loads_spec(text))
    problem = info.value.problems[0]
    assert needle in problem.message
    assert problem.location is not None and problem.location.line == line


# -- named branches --------------------------------------------------------------------------------
MIXED_4A = """
name: mixed4a
input: {channels: 160, size: 9}
stem:
  - parallel:
      name: mixed
      merge: concat
      branches:
        - name: branch0
          layers: [{cna: {out: 64}}, {cna: {out: 96, kernel: 3}}]
        - name: branch1
          layers:
            - cna: {out: 64}
            - cna: {out: 64, kernel: [1, 7]}
            - cna: {out: 64, kernel: [7, 1]}
            - cna: {out: 96, kernel: 3}
blocks:
  cna:   # timm's ConvNormAct: conv, bn (BatchNormAct2d, its ReLU inside)
    params: {out: int, kernel: 1}
    body:
      - conv: {out: "${out}", kernel: "${kernel}", bias: false, name: conv}
      - batchnorm: {name: bn}
      - relu
"""


def test_named_branches_equal_timm_inception_v4_mixed4a(tmp_path):
    inception = pytest.importorskip("timm.models.inception_v4")
    reference = randomized(nn.Sequential(OrderedDict(mixed=inception.Mixed4a()))).eval()
    spec = netspec.loads_spec(MIXED_4A)
    equals_reference(spec, reference, (2, 160, 9, 9), tmp_path)


def test_a_branch_name_used_twice_is_located():
    text = """name: t
input: {channels: 3, size: 8}
stem:
  - parallel:
      merge: concat
      branches: [{name: a, layers: [relu]}, {name: a, layers: [relu]}]
"""
    with pytest.raises(netspec.SpecError, match="'a' is used twice") as info:
        netspec.analyze(netspec.loads_spec(text))
    assert info.value.problems[0].location.line == 6


# -- branches as siblings (a graph block) ------------------------------------------------------------
INCEPTION_A = """
name: inception_a
input: {channels: 192, size: 9}
stem:
  - inception_a: {pool_features: 32, name: Mixed_5b}
blocks:
  bconv:   # torchvision's BasicConv2d
    params: {out: int, kernel: 1, padding: 0}
    body:
      - conv: {out: "${out}", kernel: "${kernel}", padding: "${padding}", bias: false, name: conv}
      - batchnorm: {name: bn, eps: 0.001}
      - relu
  inception_a:   # torchvision's InceptionA: its branches' layers are siblings, branch5x5_1 beside branch1x1
    params: {pool_features: int}
    body:
      - bconv: {out: 64, name: branch1x1, from: input}
      - bconv: {out: 48, name: branch5x5_1, from: input}
      - bconv: {out: 64, kernel: 5, padding: 2, name: branch5x5_2}
      - bconv: {out: 64, name: branch3x3dbl_1, from: input}
      - bconv: {out: 96, kernel: 3, padding: 1, name: branch3x3dbl_2}
      - bconv: {out: 96, kernel: 3, padding: 1, name: branch3x3dbl_3}
      - avgpool: {kernel: 3, stride: 1, padding: 1, from: input}
      - bconv: {out: "${pool_features}", name: branch_pool}
      - concat: {from: [branch1x1, branch5x5_2, branch3x3dbl_3, branch_pool]}
"""


def test_sibling_branch_layers_equal_torchvisions_inception_a(tmp_path):
    inception = pytest.importorskip("torchvision.models.inception")
    reference = randomized(nn.Sequential(OrderedDict(Mixed_5b=inception.InceptionA(192, 32)))).eval()
    spec = netspec.loads_spec(INCEPTION_A)
    equals_reference(spec, reference, (2, 192, 9, 9), tmp_path)
