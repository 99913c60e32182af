"""Weight initialisation in the generated file, exactly as the torch backend does it.

The torch backend applies each layer's `init_steps` in network order; the file does the same in one
loop over `self.modules()` (the same order), torchvision-style: one branch per module class with the
steps most of its layers take (`if m.bias is not None:` where only some have the tensor). A layer that
starts otherwise is an exception: written after the loop when its steps are constant fills (zero-gamma),
as a loop over a block class where every instance has it (`m.bn3.weight`); inside the loop, first, when
random draws are involved (their order is the RNG's order). So `build_model(seed=s)` gives the tensors
of `netspec.build(spec, seed=s)` bit for bit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..ir import AuxNode, LayerNode, Node, SeqNode, children, walk
from ..layers import KINDS
from ..layers.base import IDENTIFIER
from ..layers.call import InitStep
from .blockclass import BlockClass
from .calls import LayerCalls
from .code import lit
from .errors import ExportError
from .graph import is_graph, merge_kind
from .names import path_expr
from .unify import becomes_class, index_named


def step_code(step: InitStep, target: str) -> str:
    if not IDENTIFIER.fullmatch(step.fn) or not IDENTIFIER.fullmatch(step.tensor):
        raise ExportError(f"cannot write the init step {step.fn}({step.tensor})")
    args = "".join(f", {a.name}={lit(a.value)}" if a.keyword else f", {lit(a.value)}" for a in step.args)
    return f"nn.init.{step.fn}({target}.{step.tensor}{args})"


@dataclass
class _Layer:
    node: LayerNode
    ctor: str
    steps: tuple[InitStep, ...]
    tensors: frozenset[str]  # the module's tensor attributes that are not None
    owner: tuple[BlockClass, str] | None  # the nearest enclosing class instance: (class, path inside it)


@dataclass
class InitCode:
    """The lines of the network's init, and the module classes its loop branches on (for the proof)."""

    lines: list[str] = field(default_factory=list)
    branches: list[tuple[list[str], list[str]]] = field(default_factory=list)  # (ctors, layer paths)


def _layers(root: SeqNode, calls: LayerCalls, class_of: dict[str, BlockClass]) -> list[_Layer]:
    import torch

    found: list[_Layer] = []
    tensors: dict[str, frozenset[str]] = {}

    def visit(node: Node, owner: Node | None) -> None:
        if isinstance(node, LayerNode) and merge_kind(node) is None:  # a merge is no module
            steps = KINDS[node.kind].init_steps(node.params, node.init, node.zero_init)
            call = calls.raw(node)
            key = repr(call)
            if steps and key not in tensors:
                with torch.device("meta"):
                    module = call.instantiate(calls.shipped_class(call.ctor))
                tensors[key] = frozenset(
                    s.tensor for s in steps if getattr(module, s.tensor, None) is not None
                )
            inside = (class_of[owner.path], node.path[len(owner.path) + 1 :]) if owner is not None else None
            found.append(_Layer(node, call.ctor, steps, tensors.get(key, frozenset()), inside))
        for c in children(node):
            visit(c, node if becomes_class(node) else owner)

    visit(root, None)
    return found


def _expected(rule: tuple[InitStep, ...], layer: _Layer) -> tuple[InitStep, ...]:
    return tuple(s for s in rule if s.tensor in layer.tensors)


def _rule(layers: list[_Layer]) -> tuple[InitStep, ...]:
    """The steps most layers of one module class take (on a tie, those of layers without an `init:`
    of their own: the spec's default)."""

    def followers(rule: tuple[InitStep, ...]) -> tuple[int, int]:
        follow = [ly for ly in layers if ly.steps == _expected(rule, ly)]
        return len(follow), sum(1 for ly in follow if getattr(ly.node.params, "init", "default") == "default")

    return max(Counter(ly.steps for ly in layers), key=followers)


def _sequentials(root: SeqNode) -> frozenset[str]:
    """The paths of the modules the file builds as nn.Sequential (indexed by their numbered children)."""
    return frozenset(
        n.path
        for n, _ in walk(root)
        if isinstance(n, SeqNode | AuxNode)
        and n is not root
        and not becomes_class(n)
        and not is_graph(n)
        and index_named(n)  # a child a spec names `1` may stand anywhere: getattr finds it
    )


def init_code(root: SeqNode, calls: LayerCalls, class_of: dict[str, BlockClass]) -> InitCode:
    layers = _layers(root, calls, class_of)
    sequentials = _sequentials(root)
    by_ctor: dict[str, list[_Layer]] = {}
    for layer in layers:
        by_ctor.setdefault(layer.ctor, []).append(layer)
    rules = {ctor: _rule(group) for ctor, group in by_ctor.items()}
    ordered: list[_Layer] = []  # exceptions with random draws: inside the loop, in order
    fills: list[_Layer] = []  # exceptions of constant fills that cover the rule's: after the loop
    for layer in layers:
        expected = _expected(rules[layer.ctor], layer)
        if layer.steps == expected:
            continue
        constant = not any(s.random for s in (*expected, *layer.steps))
        covers = {s.tensor for s in expected} <= {s.tensor for s in layer.steps}
        (fills if constant and covers else ordered).append(layer)
    code = InitCode()
    _loop(code, by_ctor, rules, ordered, sequentials)
    _fills(code, fills, class_of, sequentials)
    return code


def _loop(
    code: InitCode,
    by_ctor: dict[str, list[_Layer]],
    rules: dict[str, tuple[InitStep, ...]],
    ordered: list[_Layer],
    sequentials: frozenset[str],
) -> None:
    branches: list[tuple[str, list[str]]] = []
    for layer in ordered:
        target = path_expr("self", layer.node.path, sequentials)
        branches.append((f"m is {target}", [step_code(s, "m") for s in layer.steps] or ["pass"]))
    bodies: dict[tuple[str, ...], list[str]] = {}  # the same steps: one branch for several classes
    for ctor, group in by_ctor.items():
        rule = rules[ctor]
        if rule:
            guarded = {s.tensor for s in rule if any(s.tensor not in ly.tensors for ly in group)}
            lines: list[str] = []
            for s in rule:
                line = step_code(s, "m")
                lines += [f"if m.{s.tensor} is not None:", f"    {line}"] if s.tensor in guarded else [line]
            bodies.setdefault(tuple(lines), []).append(ctor)
    for steps, ctors in bodies.items():
        test = ctors[0] if len(ctors) == 1 else f"({', '.join(ctors)})"
        branches.append((f"isinstance(m, {test})", list(steps)))
        paths = [ly.node.path for c in ctors for ly in by_ctor[c]]
        code.branches.append((ctors, paths))
    if not branches:
        return
    code.lines.append("for m in self.modules():")
    for k, (test, body) in enumerate(branches):
        code.lines.append(f"    {'if' if k == 0 else 'elif'} {test}:")
        code.lines += [f"        {line}" for line in body]


def _fills(
    code: InitCode, fills: list[_Layer], class_of: dict[str, BlockClass], sequentials: frozenset[str]
) -> None:
    if not fills:
        return
    groups: dict[tuple[str, str], tuple[BlockClass, list[_Layer]]] = {}
    for layer in fills:
        if layer.owner is not None:
            owner, inside = layer.owner
            groups.setdefault((owner.name, inside), (owner, []))[1].append(layer)
    per_class: dict[str, list[str]] = {}
    explicit: list[_Layer] = []
    for (name, inside), (cls, group) in groups.items():
        same_steps = len({ly.steps for ly in group}) == 1
        everywhere = {ly.node.path for ly in group} == {f"{i.path}.{inside}" for i in cls.instances}
        if same_steps and everywhere:
            per_class.setdefault(name, []).extend(
                step_code(s, path_expr("m", inside, sequentials, cls.instances[0].path))
                for s in group[0].steps
            )
        else:
            explicit += group
    explicit += [ly for ly in fills if ly.owner is None]
    zero_gamma = any(ly.node.zero_init for ly in fills)
    why = " (zero-gamma: a residual branch's last BN starts at 0)" if zero_gamma else ""
    code.lines.append(f"# layers that start otherwise{why}")
    if per_class:
        code.lines.append("for m in self.modules():")
        for k, (name, lines) in enumerate(per_class.items()):
            code.lines.append(f"    {'if' if k == 0 else 'elif'} isinstance(m, {name}):")
            code.lines += [f"        {line}" for line in lines]
    for layer in explicit:
        code.lines += [step_code(s, path_expr("self", layer.node.path, sequentials)) for s in layer.steps]
