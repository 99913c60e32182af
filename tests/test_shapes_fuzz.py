"""Property tests: random but plausible specs either fail with a SpecError (and nothing else), or
compile to a module whose real forward pass agrees with the static analysis, layer by layer.

Two references no one here wrote:
- plain stacks are also built directly in torch by a small builder in this file that knows PyTorch's
  rules only (not netspec's code); torch must reject exactly the stacks netspec rejects for shape
  reasons, and otherwise give the same output shape, parameter count and fvcore MACs;
- composite specs (residual blocks with every shortcut mode, parallel concat branches, dense and
  squeeze-excite merges, flatten + linear heads) are checked against forward hooks on every leaf
  module (by module path), sum(p.numel()) and fvcore's FlopCountAnalysis (total and per module);
- graph specs (tests/fuzz_graph.py: `from:` references to earlier siblings, `input`, across stages
  and inside bodies, branches and blocks; merges of 2 to 4 inputs; `select`; dotted names; `outputs:`;
  the kinds of issue 13) are aimed by PyTorch's shape formulas: those whose merges fit must build and
  match hooks on every layer's module, the output dict, parameters, fvcore and the peak activation
  memory torch's dispatcher measures (tests/test_dag_memory.py); those with a merge made
  to clash must fail with a SpecShapeError at that merge's YAML line, naming it.

The default run is small (under a minute alone); `pytest -m slow tests/test_shapes_fuzz.py` runs many
more examples.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from torch import nn

import netspec
from netspec import SpecError, SpecShapeError

from .conftest import fvcore_macs, n_params
from .fuzz_graph import GraphSpec, graph_spec
from .graph_check import check_graph_build_matches_analysis
from .test_analysis import check_build_matches_analysis

OUTCOMES: Counter[str] = Counter()

FAST = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
GRAPH = settings(  # a graph spec builds several modules and traces them for fvcore: fewer examples
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SLOW = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "gelu": nn.GELU,
}

# -- strategies ---------------------------------------------------------------------------------

small = st.integers(1, 3)
pair_or_int = st.one_of(small, st.lists(small, min_size=2, max_size=2))


def _opt(key: str, strategy: st.SearchStrategy) -> st.SearchStrategy[dict[str, Any]]:
    """Either {} (the default) or {key: value}."""
    return st.one_of(st.just({}), strategy.map(lambda v: {key: v}))


@st.composite
def conv_layer(draw, same: bool = True) -> dict[str, Any]:
    p: dict[str, Any] = {}
    for part in (
        _opt("out", st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16])),
        _opt("kernel", st.one_of(st.integers(1, 5), st.lists(st.integers(1, 5), min_size=2, max_size=2))),
        _opt("stride", pair_or_int),
        _opt(
            "padding",
            st.one_of(
                st.sampled_from(["auto", "valid", *(["same"] if same else [])]),
                st.integers(0, 3),
                st.lists(st.integers(0, 3), min_size=2, max_size=2),
            ),
        ),
        _opt("dilation", pair_or_int),
        _opt("groups", st.sampled_from([1, 2, 3, 4, "depthwise"])),
        _opt("bias", st.booleans()),
        _opt("norm", st.sampled_from(["none", "batchnorm"])),
        _opt("act", st.sampled_from(["none", "relu", "silu", "hardswish", "sigmoid"])),
    ):
        p.update(draw(part))
    return {"conv": p}


@st.composite
def pool_layer(draw) -> dict[str, Any]:
    kind = draw(st.sampled_from(["maxpool", "avgpool"]))
    if draw(st.integers(0, 9)) == 0:
        return {kind: "global"}
    p: dict[str, Any] = {
        "kernel": draw(st.one_of(st.integers(1, 4), st.lists(st.integers(1, 4), min_size=2, max_size=2)))
    }
    p.update(draw(_opt("stride", pair_or_int)))
    p.update(draw(_opt("padding", st.integers(0, 2))))
    p.update(draw(_opt("ceil_mode", st.booleans())))
    if kind == "maxpool":
        p.update(draw(_opt("dilation", st.integers(1, 2))))
    else:
        p.update(draw(_opt("count_include_pad", st.booleans())))
    return {kind: p}


def simple_layer() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([*ACTIVATIONS, "identity"]),
        st.builds(lambda affine: {"batchnorm": {"affine": affine}}, st.booleans()),
        st.builds(lambda p: {"dropout": p}, st.sampled_from([0.0, 0.1, 0.5])),
        st.builds(lambda s: {"lrn": s}, st.integers(1, 5)),
        st.builds(lambda s: {"leaky_relu": {"negative_slope": s}}, st.sampled_from([0.0, 0.1, 0.3])),
        st.builds(
            lambda s: {"adaptive_avgpool": s}, st.one_of(small, st.lists(small, min_size=2, max_size=2))
        ),
    )


def map_layer(same: bool = True) -> st.SearchStrategy[Any]:
    """A layer for (C, H, W) maps; convs and pools are the most frequent."""
    return st.one_of(conv_layer(same), conv_layer(same), pool_layer(), simple_layer())


@st.composite
def head(draw) -> list[Any]:
    layers: list[Any] = []
    if draw(st.booleans()):
        layers.append(
            draw(st.sampled_from([{"avgpool": "global"}, {"adaptive_avgpool": 2}, {"maxpool": "global"}]))
        )
    layers.append("flatten")
    for _ in range(draw(st.integers(0, 2))):
        layers.append({"linear": draw(st.integers(1, 24))})
        layers += draw(st.lists(st.sampled_from(["relu", {"dropout": 0.2}, "batchnorm", "tanh"]), max_size=2))
    layers.append({"linear": draw(st.integers(1, 10))})
    return layers


def _input() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda c, h, w: {"channels": c, "size": [h, w]},
        st.integers(1, 6),
        st.integers(6, 32),
        st.integers(6, 32),
    )


@st.composite
def plain_spec(draw) -> str:
    spec: dict[str, Any] = {"name": "fuzz_plain", "input": draw(_input())}
    spec["stem"] = draw(st.lists(map_layer(), min_size=1, max_size=7))
    if draw(st.booleans()):
        spec["head"] = draw(head())
    return yaml.safe_dump(spec, sort_keys=False)


SHORTCUTS = ["projection", "avgpool_projection", "zero_pad", "identity_if_possible", "identity", "none"]


@st.composite
def stage_item(draw) -> Any:
    choice = draw(st.integers(0, 6))
    body = st.lists(map_layer(same=False), min_size=1, max_size=3)
    if choice == 0:  # a stage of the residual block defined in `blocks`
        item = {"block": "basic", "depth": draw(st.integers(1, 3)), "out": draw(st.sampled_from([4, 8, 12]))}
        item.update(draw(_opt("stride", st.integers(1, 2))))
        return item
    if choice == 1:
        item = {
            "block": "bottleneck",
            "depth": draw(st.integers(1, 2)),
            "out": draw(st.sampled_from([8, 16])),
        }
        item.update(draw(_opt("stride", st.integers(1, 2))))
        item.update(draw(_opt("groups", st.sampled_from([1, 2]))))
        return item
    if choice == 2:  # an inline residual with a random body and shortcut
        p: dict[str, Any] = {"body": draw(body)}
        shortcut = draw(
            st.one_of(
                st.sampled_from([None, *SHORTCUTS]),
                st.lists(map_layer(same=False), min_size=1, max_size=2),
            )
        )
        if shortcut is not None:
            p["shortcut"] = shortcut
        p.update(draw(_opt("after", st.lists(st.sampled_from(["relu", "batchnorm"]), max_size=1))))
        return {"residual": p}
    if choice == 3:
        branches = draw(st.lists(body, min_size=2, max_size=3))
        return {"parallel": {"branches": branches, "merge": draw(st.sampled_from(["concat", "add"]))}}
    if choice == 4:
        return {"sequential": {"layers": draw(body)}}
    if choice == 5:
        return {"block": "dense", "depth": draw(st.integers(1, 3)), "growth": draw(st.integers(1, 4))}
    return draw(st.sampled_from(["se", {"se": {"squeeze": 2}}]))


BLOCKS = {
    "basic": {
        "params": {"out": "int", "stride": 1},
        "body": [
            {
                "conv": {
                    "out": "${out}",
                    "kernel": 3,
                    "stride": "${stride}",
                    "norm": "batchnorm",
                    "act": "relu",
                }
            },
            {"conv": {"out": "${out}", "kernel": 3, "norm": "batchnorm"}},
        ],
        "merge": "add",
        "after": ["relu"],
    },
    "bottleneck": {
        "params": {"out": "int", "stride": 1, "groups": 1},
        "vars": {"width": "${out // 4 * groups}"},
        "body": [
            {"conv": {"out": "${width}", "kernel": 1, "norm": "batchnorm", "act": "relu"}},
            {"conv": {"out": "${width}", "stride": "${stride}", "groups": "${groups}", "norm": "batchnorm"}},
            "relu",
            {"conv": {"out": "${out}", "kernel": 1, "norm": "batchnorm"}},
        ],
        "merge": "add",
        "shortcut": "projection",
        "after": ["relu"],
    },
    "dense": {
        "params": {"growth": 2},
        "body": ["batchnorm", "relu", {"conv": {"out": "${growth}", "kernel": 3, "bias": False}}],
        "merge": "concat",
        "shortcut": "identity",
    },
    "se": {
        "params": {"squeeze": 1},
        "body": [
            {"avgpool": "global"},
            {"conv": {"out": "${max(1, in_channels // 2)}", "kernel": 1}},
            "relu",
            {"conv": {"out": "${in_channels}", "kernel": 1}},
            "hardsigmoid",
        ],
        "merge": "mul",
        "shortcut": "identity",
    },
}


@st.composite
def composite_dict(draw) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "fuzz_blocks", "input": draw(_input())}
    spec["stem"] = draw(st.lists(map_layer(same=False), min_size=0, max_size=2))
    spec["stages"] = draw(st.lists(stage_item(), min_size=1, max_size=3))
    if draw(st.booleans()):
        spec["head"] = draw(head())
    spec["shortcut"] = draw(st.sampled_from(SHORTCUTS))
    spec["blocks"] = copy.deepcopy(BLOCKS)
    return spec


def composite_spec() -> st.SearchStrategy[str]:
    return composite_dict().map(lambda spec: yaml.safe_dump(spec, sort_keys=False))


JUNK = [None, -1, 0, 1, 3, "x", "", [], {}, [1], [0, 0], 1e300, True, False, "${1 / 0}", "${nope}",
        "${in_channels}", "global", "depthwise", "same", 2.5, [[1]], "relu", {"relu": None}, ["relu"],
        10**12, "conv", {"conv": 3}, "forward", "a-b"]  # fmt: skip
KEYS = ["zzz", "name", "when", "kernel", "out", "stride", "body", "layers", "shortcut", "merge", "after",
        "inline", "block_name", "depth", "padding", "groups", "params", "vars", "branches"]  # fmt: skip


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for key, value in items:
        out += _paths(value, (*prefix, key))
    return out


@st.composite
def mutated_spec(draw) -> str:
    """A plausible spec with one to three values replaced by junk (or junk keys and items added)."""
    spec = draw(composite_dict())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(spec)))
        node = spec
        for key in path[:-1]:
            node = node[key]
        junk = copy.deepcopy(draw(st.sampled_from(JUNK)))
        how = draw(st.integers(0, 2))
        if how == 1 and isinstance(node, dict):
            node[draw(st.sampled_from(KEYS))] = junk
        elif how == 2 and isinstance(node, list):
            node.insert(path[-1], junk)
        else:
            node[path[-1]] = junk
    return yaml.safe_dump(spec, sort_keys=False)


# -- the independent torch reference for plain stacks ---------------------------------------------


class TorchRejectsError(Exception):
    pass


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _torch_layers(item: Any, c: int) -> list[nn.Module]:
    """PyTorch modules for one spec item, from the language's documented defaults only."""
    kind, p = (item, {}) if isinstance(item, str) else next(iter(item.items()))
    if p is None:
        p = {}
    elif not isinstance(p, dict):  # the scalar shorthands: `dropout: 0.5`, `linear: 10`, `maxpool: 2`
        field = {"dropout": "p", "lrn": "size", "adaptive_avgpool": "size", "linear": "out", "conv": "out"}
        p = {field.get(kind, "kernel"): p}
    if kind == "conv":
        k, s, d = _pair(p.get("kernel", 3)), _pair(p.get("stride", 1)), _pair(p.get("dilation", 1))
        out = p.get("out", c)
        groups = c if p.get("groups", 1) == "depthwise" else p.get("groups", 1)
        norm, act = p.get("norm", "none"), p.get("act", "none")
        bias = p.get("bias", norm == "none")
        padding = p.get("padding", "auto")
        pad_module = None
        if padding == "auto":
            padding = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
        elif padding == "valid":
            padding = 0
        elif padding == "same":
            if s != (1, 1):
                raise TorchRejectsError("padding 'same' needs stride 1")
            # PyTorch's 'same': total d*(k-1), the smaller half first; spelled out so fvcore counts it
            tot = (d[0] * (k[0] - 1), d[1] * (k[1] - 1))
            pad_module = nn.ZeroPad2d((tot[1] // 2, tot[1] - tot[1] // 2, tot[0] // 2, tot[0] - tot[0] // 2))
            padding = 0
        else:
            padding = _pair(padding)
        mods = [] if pad_module is None else [pad_module]
        mods.append(nn.Conv2d(c, out, k, s, padding, d, groups=groups, bias=bias))
        if norm == "batchnorm":
            mods.append(nn.BatchNorm2d(out))
        if act != "none":
            mods.append(ACTIVATIONS[act]())
        return mods
    if kind in ("maxpool", "avgpool"):
        if p.get("kernel") == "global":
            return [nn.AdaptiveMaxPool2d(1) if kind == "maxpool" else nn.AdaptiveAvgPool2d(1)]
        k = _pair(p.get("kernel", 2))
        s = _pair(p["stride"]) if "stride" in p else k
        pad = _pair(p.get("padding", 0))
        if kind == "maxpool":
            return [nn.MaxPool2d(k, s, pad, _pair(p.get("dilation", 1)), ceil_mode=p.get("ceil_mode", False))]
        return [
            nn.AvgPool2d(
                k,
                s,
                pad,
                ceil_mode=p.get("ceil_mode", False),
                count_include_pad=p.get("count_include_pad", True),
            )
        ]
    if kind == "adaptive_avgpool":
        return [nn.AdaptiveAvgPool2d(_pair(p.get("size", 1)))]
    if kind == "batchnorm":
        return [nn.BatchNorm2d(c, affine=p.get("affine", True))]  # swapped to 1d on vectors below
    if kind == "lrn":
        return [nn.LocalResponseNorm(p.get("size", 5))]
    if kind == "dropout":
        return [nn.Dropout(p.get("p", 0.5))]
    if kind == "flatten":
        return [nn.Flatten(1)]
    if kind == "identity":
        return [nn.Identity()]
    if kind == "linear":
        return [nn.Linear(c, p["out"], bias=p.get("bias", True))]
    if kind in ACTIVATIONS:
        if kind == "leaky_relu":
            return [nn.LeakyReLU(p.get("negative_slope", 0.01))]
        return [ACTIVATIONS[kind]()]
    raise AssertionError(f"the reference builder does not know {kind}")


def torch_reference(spec: dict[str, Any]) -> tuple[nn.Sequential, tuple[int, ...]]:
    """Build the stack eagerly, layer by layer, on a real tensor; TorchRejectsError where PyTorch refuses."""
    size = _pair(spec["input"]["size"])
    x = torch.randn(2, spec["input"]["channels"], *size)
    modules: list[nn.Module] = []
    for item in [*spec.get("stem", []), *spec.get("head", [])]:
        try:
            for m in _torch_layers(item, x.shape[1]):
                if isinstance(m, nn.BatchNorm2d) and x.dim() == 2:
                    m = nn.BatchNorm1d(m.num_features, affine=m.affine)
                if isinstance(m, nn.Linear) and x.dim() != 2:
                    raise TorchRejectsError("nn.Linear would act on the last dimension of a map")
                m.eval()
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    x = m(x)
                if x.numel() == 0:
                    raise TorchRejectsError("empty output")
                modules.append(m)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise TorchRejectsError(str(exc)) from None
    return nn.Sequential(*modules), tuple(x.shape[1:])


# -- the properties -----------------------------------------------------------------------------


def _analyze(text: str) -> tuple[netspec.Spec, netspec.Analysis] | SpecError:
    try:
        spec = netspec.loads_spec(text, "fuzz.yaml")
        return spec, netspec.analyze(spec)
    except SpecError as exc:  # any other exception fails the test
        for p in exc.problems:
            assert p.message
        return exc


def check_plain(text: str) -> None:
    note(text)
    data = yaml.safe_load(text)
    result = _analyze(text)
    try:
        reference, ref_shape = torch_reference(data)
        ref_error = None
    except TorchRejectsError as exc:
        ref_error = str(exc)
    if isinstance(result, SpecError):
        note(str(result))
        OUTCOMES["plain rejected"] += 1
        assert ref_error is not None, f"netspec rejects a stack PyTorch runs: {result}"
        assert isinstance(result, SpecShapeError), f"not a shape error: {result}"
        return
    assert ref_error is None, f"netspec accepts a stack PyTorch rejects ({ref_error})"
    OUTCOMES["plain built"] += 1
    spec, a = result
    assert a.output_shape == ref_shape
    assert a.params == n_params(reference)
    assert a.macs == fvcore_macs(reference, a.input_shape)
    uses_same = "same" in text  # fvcore cannot count the compiled model's padding='same' convs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_build_matches_analysis(spec, a, macs=not uses_same)


def check_composite(text: str, kind: str = "composite") -> None:
    note(text)
    result = _analyze(text)
    if isinstance(result, SpecError):
        note(str(result))
        OUTCOMES[f"{kind} rejected"] += 1
        return
    OUTCOMES[f"{kind} built"] += 1
    spec, a = result
    check_build_matches_analysis(spec, a)


@FAST
@given(plain_spec())
def test_plain_stacks_match_torch(text: str):
    check_plain(text)


@FAST
@given(composite_spec())
def test_composite_specs_build_as_analyzed(text: str):
    check_composite(text)


@FAST
@given(mutated_spec())
def test_mutated_specs_fail_cleanly_or_build_as_analyzed(text: str):
    check_composite(text, "mutated")


# -- graph specs ----------------------------------------------------------------------------------

# junk for references: unknown, dotted badly, the item itself or a later one (whichever the path hits)
REF_JUNK = ["nope", "input", ["input"], ["input", "input"], "h1.", "a..b", "0v", "v1.", ["v1", "nope"], "m2",
            "h1.v1", {"x": "input"}, [], "outputs", "select"]  # fmt: skip


@st.composite
def mutated_graph_spec(draw) -> str:
    """A graph spec with one to three values replaced by junk, reference junk most often where a
    `from`, `name` or `outputs` is hit (or junk keys and items added)."""
    spec = yaml.safe_load(draw(graph_spec()).text)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(spec)))
        node = spec
        for key in path[:-1]:
            node = node[key]
        at_reference = any(k in ("from", "name", "outputs") for k in path if isinstance(k, str))
        junk = copy.deepcopy(draw(st.sampled_from(REF_JUNK if at_reference or draw(st.booleans()) else JUNK)))
        how = draw(st.integers(0, 2))
        if how == 1 and isinstance(node, dict):
            node[draw(st.sampled_from([*KEYS, "from", "outputs"]))] = junk
        elif how == 2 and isinstance(node, list):
            node.insert(path[-1], junk)
        else:
            node[path[-1]] = junk
    return yaml.safe_dump(spec, sort_keys=False)


def check_graph(g: GraphSpec) -> None:
    """A spec whose merges fit (by PyTorch's rules) builds as analysed; one with a clash fails there."""
    note(g.text)
    result = _analyze(g.text)
    if g.clash is not None:
        assert isinstance(result, SpecShapeError), f"netspec accepts the merge `{g.clash}` PyTorch rejects"
        note(str(result))
        OUTCOMES["graph clash rejected"] += 1
        named = [p for p in result.problems if f"{g.clash} (" in p.message]
        assert named, f"no problem names the clashing merge `{g.clash}`: {result}"
        lines = g.text.splitlines()
        for p in named:  # located at the merge item: its `- kind:` line or one of its `from:` lines
            assert p.location is not None, p
            item = next(i for i in range(p.location.line - 1, -1, -1) if lines[i].lstrip().startswith("- "))
            end = next(i for i in range(item, len(lines)) if lines[i].strip() == f"name: {g.clash}")
            assert end - item <= 7, (p.location, lines[item : end + 1])
        return
    assert not isinstance(result, SpecError), f"netspec rejects a graph PyTorch runs: {result}"
    OUTCOMES["graph built"] += 1
    spec, a = result
    check_graph_build_matches_analysis(spec, a)


def check_mutated_graph(text: str) -> None:
    note(text)
    result = _analyze(text)
    if isinstance(result, SpecError):
        note(str(result))
        OUTCOMES["mutated graph rejected"] += 1
        return
    OUTCOMES["mutated graph built"] += 1
    spec, a = result
    check_graph_build_matches_analysis(spec, a)


@GRAPH
@given(graph_spec())
def test_graph_specs_build_as_analyzed(g: GraphSpec):
    check_graph(g)


@FAST
@given(graph_spec(clash=True))
def test_graph_specs_with_a_clashing_merge_fail_at_that_merge(g: GraphSpec):
    check_graph(g)


@GRAPH
@given(mutated_graph_spec())
def test_mutated_graph_specs_fail_cleanly_or_build_as_analyzed(text: str):
    check_mutated_graph(text)


def test_fuzzing_was_not_vacuous():
    """Most generated specs must be valid, or the properties above prove little."""
    for kind in ("plain", "composite"):
        total = OUTCOMES[f"{kind} built"] + OUTCOMES[f"{kind} rejected"]
        if total == 0:
            pytest.skip("run together with the fuzz tests")
        assert OUTCOMES[f"{kind} built"] >= total // 4, dict(OUTCOMES)
    # graph specs are aimed: all of those without a clash build (check_graph), and the mutated ones
    # are mostly rejected, but not all, or their property would test nothing but errors
    if OUTCOMES["graph built"] + OUTCOMES["mutated graph rejected"]:
        assert OUTCOMES["graph built"] and OUTCOMES["graph clash rejected"], dict(OUTCOMES)
        assert OUTCOMES["mutated graph built"] >= 1, dict(OUTCOMES)


@pytest.mark.slow
@SLOW
@given(plain_spec())
def test_plain_stacks_match_torch_long(text: str):
    check_plain(text)


@pytest.mark.slow
@SLOW
@given(composite_spec())
def test_composite_specs_build_as_analyzed_long(text: str):
    check_composite(text)


@pytest.mark.slow
@SLOW
@given(mutated_spec())
def test_mutated_specs_fail_cleanly_or_build_as_analyzed_long(text: str):
    check_composite(text, "mutated")


@pytest.mark.slow
@SLOW
@given(graph_spec())
def test_graph_specs_build_as_analyzed_long(g: GraphSpec):
    check_graph(g)


@pytest.mark.slow
@SLOW
@given(graph_spec(clash=True))
def test_graph_specs_with_a_clashing_merge_fail_at_that_merge_long(g: GraphSpec):
    check_graph(g)


@pytest.mark.slow
@SLOW
@given(mutated_graph_spec())
def test_mutated_graph_specs_fail_cleanly_or_build_as_analyzed_long(text: str):
    check_mutated_graph(text)
