"""Every zoo spec, at its natural input size and at other sizes where the network allows them: the
built module's real forward shapes and parameter count equal the static analysis, layer by layer.

The forward runs on PyTorch's meta device (real shape propagation by PyTorch's own kernels' shape
rules, no arithmetic), so all specs fit in a few seconds."""

from __future__ import annotations

import pytest
import torch

import netspec
from netspec.layers import KINDS
from netspec.layers.merge import MergeKind

from .conftest import SPECS

ZOO = sorted(SPECS.glob("*.yaml"))
# other sizes a network with global/adaptive pooling accepts (LeNet-5's flatten fixes its input)
OTHER_SIZES = {224: [160, 256], 299: [320], 32: [48]}


def _sizes(path):
    spec = netspec.load_spec(path)
    natural = spec.input.size if isinstance(spec.input.size, int) else spec.input.size[0]
    if path.stem == "lenet5":
        return [natural]
    return [natural, *OTHER_SIZES.get(natural, [])]


CASES = [(p, s) for p in ZOO for s in _sizes(p)]


@pytest.mark.parametrize(("path", "size"), CASES, ids=[f"{p.stem}-{s}" for p, s in CASES])
def test_built_module_shapes_and_params_equal_static_analysis(path, size):
    spec = netspec.load_spec(path)
    analysis = netspec.analyze(spec, input_size=size)
    rows = {r.path: r for r in analysis.rows}
    with torch.device("meta"):
        model = netspec.build(spec, input_size=size).eval()
    assert sum(p.numel() for p in model.parameters()) == analysis.params

    seen: dict[str, tuple[int, ...]] = {}

    def record(name):
        def hook(module, args, out):
            seen.setdefault(name, tuple(out.shape[1:]))  # returns None: the output is left alone

        return hook

    hooks = [
        m.register_forward_hook(record(name))
        for name, m in model.named_modules()
        if name and not list(m.children())
    ]
    x = torch.empty(1, spec.input.channels, size, size, device="meta")
    out = model(x)
    for h in hooks:
        h.remove()
    if analysis.outputs is not None:  # a spec with `outputs:` returns a dict of them
        assert {key: tuple(y.shape[1:]) for key, y in out.items()} == analysis.outputs
        assert list(out) == list(analysis.outputs)
    else:
        assert tuple(out.shape[1:]) == analysis.output_shape
    assert seen, "no leaf module ran"
    for name, shape in seen.items():
        assert rows[name].output_shape == shape, name
    # every leaf that runs in eval mode was seen (aux heads run only in training; a merge of a graph
    # list is an operation, not a module)
    eval_leaves = {
        r.path
        for r in analysis.rows
        if r.is_layer and r.macs + r.flops > 0 and not isinstance(KINDS[r.kind], MergeKind)
    }
    assert eval_leaves <= set(seen)
