"""What makes load + analyze fast must not change what it finds, and must keep it linear in depth.

Lowering remembers, for one run, what it worked out for a layer's parameters and input shape and for
an expression's inputs (netspec/lower/primitive.py, netspec/expr.py), and replays a block use that
repeats an earlier one, at the same input shape or, for a block that cannot read its shape, at any
(netspec/lower/replay.py): the analysis with that memory equals the analysis without it, layer by layer,
on every zoo spec, every bad spec and random graph specs, and so do the errors and the work, layers and
parameters counted where a limit stops lowering. The work grows linearly with the number of blocks
(counted in function calls, not timed)."""

from __future__ import annotations

import contextlib
import importlib
import math
import sys
import time
from collections import ChainMap
from pathlib import Path
from typing import Any

import pytest

import netspec
from netspec.errors import SpecError
from netspec.expr import ExprError, Scope, Steps, substitute
from netspec.lower import lower

ROOT = Path(__file__).resolve().parent.parent
ZOO = sorted((ROOT / "specs").glob("*.yaml"))
BAD = sorted((ROOT / "tests" / "bad_specs").glob("*.yaml"))
context = importlib.import_module("netspec.lower.context")  # (`netspec.lower` is also a function)

DEEP = """\
name: deep
input: {{channels: 3, size: 32}}
classes: 10
stem:
  - conv: {{out: 16, kernel: 3}}
stages:
  - {{block: basic, depth: {n}, name: layer1, block_name: "unit${{index}}"}}
head:
  - avgpool: global
  - flatten
  - linear: {{out: "${{classes}}"}}
blocks:
  basic:
    params: {{width: 16}}
    body:
      - conv: {{out: "${{width}}", kernel: 3, norm: batchnorm, act: relu}}
      - conv: {{out: "${{width * 2 // 2}}", kernel: 1}}
    merge: add
"""


class Forgetful(dict):
    """A memo that remembers nothing: every layer and expression is worked out afresh, every block
    lowered (no replay)."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def setdefault(self, key: Any, default: Any = None) -> Any:  # (dict's own would store it)
        return default

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


def _outcome(path: Path) -> Any:
    try:
        return netspec.analyze(netspec.load_spec(path)).to_json()
    except SpecError as exc:
        return [(p.message, p.path, p.location, p.hint) for p in exc.problems]


@pytest.mark.parametrize("group", ["zoo", "bad_specs"])
def test_the_memo_changes_no_figure_and_no_error(group: str, monkeypatch: pytest.MonkeyPatch):
    paths = ZOO if group == "zoo" else BAD
    remembered = {p.name: _outcome(p) for p in paths}
    with monkeypatch.context() as m:
        init = context.Lowering.__init__

        def forgetful_init(self, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            self.memo = Forgetful()

        m.setattr(context.Lowering, "__init__", forgetful_init)
        afresh = {p.name: _outcome(p) for p in paths}
    assert remembered == afresh


def _lowered(source: Path | str, forgetful: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The outcome of lowering a spec file or text (IR or problems) and the work, layers and parameters
    counted."""
    spec = netspec.load_spec(source) if isinstance(source, Path) else netspec.loads_spec(source)
    seen: list[Any] = []
    with monkeypatch.context() as m:
        init = context.Lowering.__init__

        def watched_init(self, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            if forgetful:
                self.memo = Forgetful()
            seen.append(self)

        m.setattr(context.Lowering, "__init__", watched_init)
        try:
            outcome: Any = repr(lower(spec))
        except SpecError as exc:
            outcome = [(p.message, p.path, p.location, p.hint) for p in exc.problems]
    budget = seen[-1].budget
    return outcome, (budget.work, budget.layers, budget.params)


@pytest.mark.parametrize("path", ZOO[::3], ids=lambda p: p.stem)
def test_the_memo_counts_the_same_work(path: Path, monkeypatch: pytest.MonkeyPatch):
    # a remembered layer item counts the work its expressions took when they were evaluated
    assert _lowered(path, False, monkeypatch) == _lowered(path, True, monkeypatch)


# a stage whose blocks take more lowering work as it goes (`cost` grows with the index) and whose second
# layer's expression, the same in every block, is remembered: the work budget runs out part way through
COSTLY = """\
name: costly
input: {{channels: 3, size: 8}}
classes: 10
stem:
  - conv: {{out: 16, kernel: 3}}
stages:
  - {{block: basic, depth: 30, name: layer1, cost: "${{index * 30}}"}}
head:
  - avgpool: global
  - flatten
  - linear: {{out: "${{classes}}"}}
limits: {{max_layers: {max_layers}}}
blocks:
  basic:
    params: {{cost: int}}
    body:
      - conv: {{out: "${{len([i for i in range(cost)]) * 0 + 16}}", kernel: 1}}
      - conv: {{out: "${{len([i for i in range(300)]) * 0 + 16}}", kernel: 1}}
    merge: add
"""


@pytest.mark.parametrize("max_layers", [100, 109, 124, 140, 160, 187, 200])
def test_the_memo_stops_at_the_same_item_when_the_work_runs_out(max_layers: int, monkeypatch):
    text = COSTLY.format(max_layers=max_layers)
    remembered = _lowered(text, False, monkeypatch)
    assert remembered == _lowered(text, True, monkeypatch)
    # (109, 124, 187: at the remembered expression; 200: the whole network fits)
    assert ("units of work" in str(remembered[0])) == (max_layers < 200)


def test_a_scope_reads_as_the_chain_map_it_replaces():
    outer = {"width": 64, "depth": 3}
    names = {"index": 1, "width": 32}
    for scope in (Scope(names, outer), Scope(names, Scope({}, outer))):
        chain = ChainMap(names, outer)
        assert [scope[n] for n in ("index", "width", "depth")] == [
            chain[n] for n in ("index", "width", "depth")
        ]
        with pytest.raises(KeyError):
            scope["missing"]
        assert ("depth" in scope, "missing" in scope) == (True, False)
        assert (scope.get("depth"), scope.get("missing", 7)) == (3, 7)
        assert list(scope) == list(chain) and len(scope) == len(chain)
        assert dict(scope.items()) == dict(chain.items()) and list(scope.values()) == list(chain.values())
    with pytest.raises(ExprError, match="known: depth, index, width"):
        substitute("${missing}", Scope(names, outer))


def test_equal_values_of_different_types_are_validated_apart():
    # `kernel: 1` then `kernel: true`: equal in Python, but a kernel is a strict count
    text = (
        "name: t\ninput: {channels: 3, size: 8}\n"
        "stem:\n  - conv: {out: 8, kernel: 1}\n  - conv: {out: 8, kernel: true}\n"
    )
    with pytest.raises(SpecError) as info:
        netspec.analyze(netspec.loads_spec(text))
    [problem] = info.value.problems
    assert problem.path[:3] == ("stem", 1, "conv") and problem.location.line == 5


def test_the_expression_memo_keeps_types_and_signs_apart_and_counts_steps():
    memo: dict[tuple[Any, ...], Any] = {}
    assert substitute("${[p]}", {"p": True}, memo=memo) == [True]
    [one] = substitute("${[p]}", {"p": 1}, memo=memo)
    assert type(one) is int
    assert math.copysign(1, substitute("${[x][0]}", {"x": 0.0}, memo=memo)) == 1
    assert math.copysign(1, substitute("${[x][0]}", {"x": -0.0}, memo=memo)) == -1
    first, again = Steps(), Steps()
    made = substitute("${[w * 2 for w in range(n)]}", {"n": 3}, first, memo)
    made.append(99)  # the caller's list, not the memo's
    assert substitute("${[w * 2 for w in range(n)]}", {"n": 3}, again, memo) == [0, 2, 4]
    assert again.taken == first.taken > 0  # a remembered value costs the budget what computing it did


def _calls(n: int) -> int:
    """Python and C function calls made by lowering and analysing a network of `n` blocks."""
    spec = netspec.loads_spec(DEEP.format(n=n))
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        netspec.analyze(spec)
    finally:
        sys.setprofile(None)
    return count


def test_lowering_work_grows_linearly_with_depth():
    _calls(10)  # first use: the plug-ins are looked up, expression caches filled
    c1, c2, c4 = _calls(150), _calls(300), _calls(600)
    # each block adds the same work: from 300 to 600 blocks costs twice what 150 to 300 did
    assert (c4 - c2) / (c2 - c1) == pytest.approx(2.0, rel=0.02)


def test_four_thousand_blocks_load_and_analyse_in_seconds():
    text = DEEP.format(n=4000)
    start = time.perf_counter()
    analysis = netspec.analyze(netspec.loads_spec(text))
    elapsed = time.perf_counter() - start
    assert analysis.layers == 1 + 4000 * 4 + 3  # the stem, 4 layers a block, the head
    assert elapsed < 10  # well under a second on a quiet machine; generous for a shared one


# DenseNet's dense layer, each fed `growth` channels more than the one before: replayed at every input
# shape (it does not read it), unless its `width` reads `in_channels`; `groups` makes a layer refuse
# some input widths; `limits` stops lowering part way through the stage
DENSE = """\
name: dense
input: {{channels: 3, size: 16}}
classes: 10
stem:
  - conv: {{out: 64, kernel: 3}}
stages:
  - {{block: dense_layer, depth: {depth}, name: block1, block_name: "layer${{index + 1}}"}}
head:
  - avgpool: global
  - flatten
  - linear: {{out: "${{classes}}"}}
{limits}
blocks:
  dense_layer:
    vars: {{width: {width}}}
    body:
      - batchnorm
      - relu
      - conv: {{out: "${{width}}", kernel: 1, bias: false, groups: {groups}}}
      - batchnorm
      - relu
      - conv: {{out: 32, kernel: 3, bias: false}}
    merge: concat
    shortcut: identity
"""


def _replays(text: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many block uses lowering copies from an earlier one."""
    blocks = importlib.import_module("netspec.lower.blocks")
    count = 0
    replayed = blocks.replayed

    def counted(*args: Any) -> Any:
        nonlocal count
        found = replayed(*args)
        count += found is not None
        return found

    with monkeypatch.context() as m:
        m.setattr(blocks, "replayed", counted)
        with contextlib.suppress(SpecError):
            lower(netspec.loads_spec(text))
    return count


@pytest.mark.parametrize(
    "width, groups, limits, replays",
    [
        ("128", 1, "", 5),  # every layer after the first is a copy, its shapes inferred again
        ('"${in_channels * 2}"', 1, "", 0),  # a layer's width from the input's: lowered every time
        ("128", 64, "", 0),  # 96 channels cannot split into 64 groups: the second layer stops there
        ("128", 32, "", 5),  # 64, 96, ... channels all split into 32 groups
        # the sixth layer passes the parameter limit (the stage's estimate from its first layer, 274,432
        # parameters, does not): layers 2-5 are copies, the sixth is lowered and stops at its conv
        ("128", 1, "limits: {max_params: 300000}", 4),
        ("128", 1, "limits: {max_params: 200000}", 0),  # the estimate refuses the stage after one layer
    ],
)
def test_a_dense_stage_replays_what_it_can_and_stops_where_lowering_would(
    width: str, groups: int, limits: str, replays: int, monkeypatch: pytest.MonkeyPatch
):
    text = DENSE.format(depth=6, width=width, groups=groups, limits=limits)
    assert _lowered(text, False, monkeypatch) == _lowered(text, True, monkeypatch)
    assert _replays(text, monkeypatch) == replays


def test_a_replayed_dense_stage_equals_torchvision_densenet():
    # DenseNet-121 (fvcore's figures for torchvision's densenet121): 54 of its 58 dense layers are
    # copies of the first of their stage, their shapes and costs inferred again
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    analysis = netspec.analyze(netspec.load_spec(ROOT / "specs" / "densenet121.yaml"))
    with torch.device("meta"):  # (the parameters' shapes only: no memory, no initialisation)
        reference = torchvision.models.densenet121(weights=None)
    assert analysis.params == sum(p.numel() for p in reference.parameters()) == 7_978_856
    assert analysis.macs == 2_865_546_752


def test_random_graph_specs_lower_alike_with_and_without_the_memo(monkeypatch: pytest.MonkeyPatch):
    from hypothesis import given

    from .fuzz_graph import graph_spec, quick_settings

    @quick_settings(15)
    @given(graph_spec())
    def check(generated: Any) -> None:
        assert _lowered(generated.text, False, monkeypatch) == _lowered(generated.text, True, monkeypatch)

    check()


def _deeper(spec: dict[str, Any]) -> dict[str, Any]:
    """Every stage of blocks four deep: each block after the first (or second) is a replay."""
    for item in spec["stages"]:
        if isinstance(item, dict) and "block" in item:
            item["depth"] = 4
    return spec


def test_random_stages_of_blocks_lower_alike_with_and_without_replay(monkeypatch: pytest.MonkeyPatch):
    # the shape fuzzer's stages (residual basic and bottleneck blocks with every shortcut mode, dense
    # blocks, squeeze-and-excitation, inline composites), four blocks deep: as valid specs, and with
    # junk values put into them (errors inside replayed stages)
    import yaml
    from hypothesis import given
    from hypothesis import strategies as st

    from .fuzz_graph import quick_settings
    from .test_shapes_fuzz import composite_dict, mutated_spec

    deep = composite_dict().map(_deeper).map(lambda spec: yaml.safe_dump(spec, sort_keys=False))

    @quick_settings(25)
    @given(st.one_of(deep, mutated_spec()))
    def check(text: str) -> None:
        try:
            netspec.loads_spec(text)
        except SpecError:
            return  # refused before lowering
        assert _lowered(text, False, monkeypatch) == _lowered(text, True, monkeypatch)

    check()
