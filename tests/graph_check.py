"""The static analysis of a spec that may use references (`from:`, merges, dotted names, `outputs:`)
against the module netspec builds, for the fuzzers and tests/test_select.py.

tests/test_analysis.py's check_build_matches_analysis expects every layer row to be a leaf module and
the model to return one tensor; here each layer's module (a leaf or not: ECA holds a conv) is hooked by
its row's path, merges (graph operations: rows without a module) are checked through
the modules that read them (each module's real input shape against its row's input shape), and a
model with `outputs:` returns a dict whose every entry is compared with `Analysis.outputs`.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

import netspec
from netspec.analysis import Analysis
from netspec.layers import KINDS
from netspec.layers.merge import MergeKind

from .conftest import n_params
from .test_analysis import fvcore_by_module
from .test_dag_memory import measured_peak


def output_shapes(y: torch.Tensor | dict[str, torch.Tensor]) -> tuple | dict[str, tuple]:
    if isinstance(y, dict):
        return {k: tuple(v.shape[1:]) for k, v in y.items()}
    return tuple(y.shape[1:])


def traced_shapes(model: nn.Module, paths: list[str], input_shape: tuple[int, ...]) -> tuple[dict, Any]:
    """(input shape, output shape) of the module at each of `paths` from a real forward, and the
    model's output shape(s). A module that runs twice fails."""
    seen: dict[str, tuple] = {}
    hooks = []
    for path in paths:

        def hook(_m, inputs, out, path=path):
            assert path not in seen, f"{path} ran twice"
            seen[path] = (tuple(inputs[0].shape[1:]), tuple(out.shape[1:]))

        hooks.append(model.get_submodule(path).register_forward_hook(hook))
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = model(torch.randn(2, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return seen, output_shapes(y)


def check_graph_build_matches_analysis(spec: netspec.Spec, a: Analysis, macs: bool = True) -> nn.Module:
    """netspec.build(spec) agrees with netspec.analyze(spec): every module's input and output shape
    (forward hooks), the model's output(s), parameters per row, fvcore's MACs in total and per module,
    and the peak activation memory against the live float32 storages torch's dispatcher sees."""
    model = netspec.build(spec, seed=0)
    layer_rows = {r.path: r for r in a.rows if r.is_layer}
    module_rows = {p: r for p, r in layer_rows.items() if not isinstance(KINDS[r.kind], MergeKind)}
    leaves = [p for p, m in model.named_modules() if p and not list(m.children())]
    for leaf in leaves:  # every module is a layer's (ECA's conv is inside the `eca` layer's module)
        assert any(leaf == p or leaf.startswith(p + ".") for p in module_rows), (leaf, sorted(module_rows))
    seen, out = traced_shapes(model, list(module_rows), a.input_shape)
    assert out == (a.outputs if a.outputs is not None else a.output_shape), (out, a.outputs, a.output_shape)
    assert set(seen) == set(module_rows), (sorted(seen), sorted(module_rows))  # each ran once
    for path, row in module_rows.items():
        assert seen[path] == (row.input_shape, row.output_shape), (path, seen[path], row)
        assert n_params(model.get_submodule(path)) == row.params, path
    for row in layer_rows.values():
        if row.path not in module_rows:  # a merge: a graph operation, no module, no parameters
            assert row.params == 0 and row.macs == 0, row
    assert n_params(model) == a.params
    for row in a.rows:  # containers too: every row's parameters are those of its module
        if not row.is_layer and row.path != "(model)":
            assert n_params(model.get_submodule(row.path)) == row.params, row.path
    if macs:
        by_module = fvcore_by_module(model, a.input_shape)
        assert by_module[""] == a.macs, (by_module[""], a.macs)
        for path, row in module_rows.items():
            assert by_module.get(path, 0) == row.macs, (path, by_module.get(path, 0), row.macs)
    assert a.peak_activation_bytes == measured_peak(model, a.input_shape)
    return model
