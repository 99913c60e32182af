"""Module names (issue 11): any identifier a user writes works, except the names torch itself refuses,
which validation refuses first with a located error.

netspec's own container modules keep their settings in `__dunder__` attributes (a spec may not name a
module `__...`), so names such as `merge`, `block` or `n_body` (torchvision's EfficientNet and
MobileNetV3 call a body `block`) are the user's; RESERVED_NAMES is checked against the installed torch:
it is exactly what `nn.Sequential().add_module` refuses."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

import netspec
from netspec.export import export_source
from netspec.layers.base import RESERVED_NAMES, check_module_name

from .conftest import run_cli


def torch_refuses(name: str) -> bool:
    try:
        nn.Sequential().add_module(name, nn.Identity())
    except (KeyError, TypeError):
        return True
    return False


def test_reserved_names_are_exactly_the_attributes_torch_refuses():
    """Every non-dunder attribute of an nn.Sequential (netspec's containers are Sequentials; this
    includes nn.Module's own, public and private) is reserved, and nothing else."""
    attributes = {n for n in dir(nn.Sequential()) if not n.startswith("__")}
    assert attributes == RESERVED_NAMES, (
        sorted(attributes - RESERVED_NAMES),
        sorted(RESERVED_NAMES - attributes),
    )
    assert all(torch_refuses(n) for n in RESERVED_NAMES)
    assert not any(torch_refuses(n) for n in ("merge", "block", "n_body", "aux_indices", "features", "x"))


SPEC = """
name: names
input: {{channels: 3, size: 8}}
stem:
  - conv: {{out: 8, name: {name}}}
"""


@pytest.mark.parametrize(
    "name", ["_modules", "_apply", "_version", "_parameters", "append", "pop", "training"]
)
def test_names_torch_refuses_are_located_errors(name, tmp_path):
    with pytest.raises(netspec.SpecError) as info:
        netspec.analyze(netspec.loads_spec(SPEC.format(name=name)))
    problem = info.value.problems[0]
    assert "reserved by torch.nn.Module" in problem.message and problem.location is not None
    assert problem.location.line == 5
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(name=name))
    result = run_cli("validate", str(path))
    assert result.exit_code == 2
    assert result.output.startswith(f"{path}:5:")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (SPEC.format(name='"conv1\\n"'), 5),
        (
            SPEC.format(name="conv1") + 'stages:\n  - {block: b, depth: 2, block_name: "u${index}\\n"}\n'
            "blocks:\n  b: {body: [relu]}\n",
            7,
        ),
        (SPEC.format(name="conv1") + 'head: [residual: {name: "r\\n", body: [relu]}]\n', 6),
    ],
)
def test_a_trailing_newline_is_not_a_name(text, line):
    """`$` in a regex matches before a final newline: names are checked with fullmatch."""
    with pytest.raises(netspec.SpecError, match="not a valid module name") as info:
        netspec.analyze(netspec.loads_spec(text))
    assert info.value.problems[0].location.line == line
    with pytest.raises(ValueError):
        check_module_name("conv1\n")


USER_NAMES = """
name: user_names
input: {channels: 3, size: 8}
classes: 4
stem:
  - conv: {out: 8, name: block, norm: batchnorm, act: relu}
  - residual:
      name: merge
      body: [conv: {out: 8, name: n_body}, batchnorm: {name: inplace_merge}, relu: {name: n_before_merge}]
      after: [relu: {name: aux_indices}]
  - parallel:
      name: n_branches
      branches: [[conv: {out: 4, name: merge}], [conv: {out: 4, name: block}]]
      merge: concat
      after: [relu: {name: merge_}]
stages:
  - {block: basic, depth: 2, out: 8, name: layer1}
  - aux: {name: aux_indices, layers: [avgpool: global, flatten, linear: "${classes}"]}
head: [avgpool: {kernel: global, name: n_body}, flatten, linear: {out: "${classes}", name: use_residual}]
shortcut: identity_if_possible
blocks:
  basic:
    params: {out: int}
    body: [conv: {out: "${out}", name: block}, batchnorm: {name: n_body, zero_init: true}]
    merge: add
    after: [relu: {name: use_residual}]
"""


def test_names_of_netspec_internals_are_the_users():
    """A spec whose layers are named like netspec's own attributes (Residual.merge/n_body/block/
    inplace_merge, Parallel.n_branches, AuxNetwork.aux_indices, the exported `use_residual`): it builds,
    runs in both modes, scripts and exports with torch, and the exported file starts from the same
    weights and computes the same outputs."""
    spec = netspec.loads_spec(USER_NAMES)
    model = netspec.build(spec, seed=0)
    assert {
        "block.weight",
        "merge.n_body.weight",
        "n_branches.branch1.merge.weight",
        "layer1.0.block.weight",
    } <= set(model.state_dict())
    x = torch.randn(2, 3, 8, 8)
    logits, aux = model.train()(x)
    assert logits.shape == (2, 4) and len(aux) == 1
    model.eval()
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), y)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), y)
    source = export_source(spec)
    exported = types.ModuleType("user_names_exported")
    exec(compile(source, "<exported>", "exec"), exported.__dict__)
    ours = exported.build_model(seed=0)
    fresh = netspec.build(spec, seed=0)  # `model` ran in training mode: its BN statistics moved
    assert all(
        torch.equal(a, b)
        for a, b in zip(ours.state_dict().values(), fresh.state_dict().values(), strict=True)
    )
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), fresh.eval()(x))


@pytest.mark.slow
def test_names_of_netspec_internals_compile_with_fullgraph():
    model = netspec.build(netspec.loads_spec(USER_NAMES), seed=0).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x), rtol=1e-4, atol=1e-5)
