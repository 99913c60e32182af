"""Unification: the instances of a block become one class. Their submodules are aligned (by module name
inside a block, by position and kind inside an nn.Sequential) into slots whose values are collected per
instance; instances that cannot share a structure raise MismatchError (the caller splits them)."""

from __future__ import annotations

import re
from typing import Any

from ..ir import AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode
from ..layers.call import MISSING
from .blockclass import BlockClass, T, TArg, TLeaf, TRef, TSeq
from .calls import LayerCalls
from .errors import MismatchError
from .graph import is_graph, merge_kind, outputs, steps, structure
from .names import attr, child


def index_named(node: SeqNode | AuxNode) -> bool:
    return all(c.name == str(k) for k, c in enumerate(node.children))


def becomes_class(node: Node) -> bool:
    """A block instance that becomes an instance of a generated class. An inline `sequential`, or a
    block whose children are numbered, stays an nn.Sequential. A graph list inside the network (its
    items read each other by name) is always a class: its forward names each value."""
    if is_graph(node):
        return not (isinstance(node, SeqNode) and node.role == "model")
    if not node.is_block:
        return False
    return not isinstance(node, SeqNode) or not (node.inline or index_named(node))


class Unifier:
    """Templates over instances, for one IR: reads the layers' calls and the classes made so far."""

    def __init__(self, calls: LayerCalls, helpers: set[str]):
        self.calls = calls
        self.helpers = helpers  # the helpers the file needs (`_sequential`)
        self.class_of: dict[str, BlockClass] = {}  # instance path -> its class

    def key(self, node: Node) -> tuple[Any, ...]:
        if isinstance(node, LayerNode):
            return ("L", self.calls.of(node).ctor)
        if becomes_class(node):
            return ("B", self.class_of[node.path].name)
        if isinstance(node, SeqNode):
            return ("S",)
        return ("?", type(node).__name__)

    def unify(self, nodes: list[Node | None], slot: str) -> T:
        present = [n is not None for n in nodes]
        real = [n for n in nodes if n is not None]
        first = real[0]
        if isinstance(first, LayerNode):
            return self._leaf(nodes, present, slot)
        if becomes_class(first):
            cls = self.class_of[first.path]
            if not all(becomes_class(n) and self.class_of[n.path] is cls for n in real):
                raise MismatchError
            args = [
                TArg(
                    p.name,
                    True,
                    [cls.args_of[n.path][p.name] if n is not None else MISSING for n in nodes],
                    [MISSING] * len(nodes),
                    slot,
                    sorted(p.hints),
                    p.name,
                )
                for p in cls.params
            ]
            return TRef(cls, args, present, slot)
        if isinstance(first, SeqNode | AuxNode):
            return self._sequence(nodes, present, slot)
        raise MismatchError

    def _leaf(self, nodes: list[Node | None], present: list[bool], slot: str) -> TLeaf:
        if not all(isinstance(n, LayerNode) for n in nodes if n is not None):
            raise MismatchError
        layers = [n if isinstance(n, LayerNode) else None for n in nodes]
        calls = [self.calls.of(n) if n is not None else None for n in layers]
        lf = next(c for c in calls if c is not None)
        shape = (lf.ctor, [(a.name, a.keyword) for a in lf.args])
        if any(c is not None and (c.ctor, [(a.name, a.keyword) for a in c.args]) != shape for c in calls):
            raise MismatchError
        args = []
        for k, a in enumerate(lf.args):
            hints = {n.bindings.get(a.field) for n in layers if n is not None and a.field is not None}
            args.append(
                TArg(
                    a.name,
                    a.keyword,
                    [c.args[k].value if c else MISSING for c in calls],
                    [c.args[k].default if c else MISSING for c in calls],
                    slot,
                    sorted(h for h in hints if h),
                    widening=a.widening,
                )
            )
        return TLeaf(lf.ctor, args, present, slot)

    def _sequence(self, nodes: list[Node | None], present: list[bool], slot: str) -> TSeq:
        seqs = [n if isinstance(n, SeqNode | AuxNode) and not becomes_class(n) else None for n in nodes]
        if any(n is not None and s is None for n, s in zip(nodes, seqs, strict=True)):
            raise MismatchError
        numbered = [index_named(s) for s in seqs if s is not None]
        if any(numbered) and not all(numbered):
            raise MismatchError
        columns = align(self, [s.children if s is not None else None for s in seqs])
        names = None
        if not all(numbered):
            names = []
            for col in columns:
                col_names = {c.name for c in col if c is not None}
                if len(col_names) != 1:
                    raise MismatchError
                names.append(child(col_names.pop()))
            self.helpers.add("_sequential")
        items = [self.unify(col, f"{slot}_{j}") for j, col in enumerate(columns)]
        return TSeq(items, present, slot, names)

    def named_slots(self, lists: list[dict[str, Node]], order: list[str]) -> list[tuple[str, T]]:
        slots = []
        for name in order:
            column = [d.get(name) for d in lists]
            real = [n for n in column if n is not None]
            if len({n.src for n in real}) != 1 or len({type(n) for n in real}) != 1:
                raise MismatchError  # the same name for different layers: separate classes read better
            slots.append((attr(name), self.unify(column, name)))
        return slots


def align(unifier: Unifier, lists: list[list[Node] | None]) -> list[list[Node | None]]:
    """Columns of an nn.Sequential's children over the instances: matched by kind (preferring the same
    spec item, a longest common subsequence), with None where an instance lacks the child."""
    cols: list[list[Node | None]] = []
    keys: list[tuple[Any, ...]] = []
    srcs: list[Any] = []
    for idx, lst in enumerate(lists):
        if lst is None:
            for col in cols:
                col.append(None)
            continue
        b_keys = [unifier.key(n) for n in lst]
        score = _scores(keys, srcs, b_keys, lst)
        merged: list[tuple[list[Node | None], tuple[Any, ...], Any]] = []
        i, j = len(cols), len(lst)
        while i > 0 or j > 0:
            if i > 0 and j > 0 and keys[i - 1] == b_keys[j - 1]:
                w = 2 if srcs[i - 1] == lst[j - 1].src else 1
                if score[i][j] == score[i - 1][j - 1] + w:
                    merged.append(([*cols[i - 1], lst[j - 1]], keys[i - 1], srcs[i - 1]))
                    i, j = i - 1, j - 1
                    continue
            if i > 0 and score[i][j] == score[i - 1][j]:
                merged.append(([*cols[i - 1], None], keys[i - 1], srcs[i - 1]))
                i -= 1
            else:
                merged.append(([None] * idx + [lst[j - 1]], b_keys[j - 1], lst[j - 1].src))
                j -= 1
        merged.reverse()
        cols = [c for c, _, _ in merged]
        keys = [k for _, k, _ in merged]
        srcs = [s for _, _, s in merged]
    return cols


def _scores(keys: list[Any], srcs: list[Any], b_keys: list[Any], lst: list[Node]) -> list[list[int]]:
    n, m = len(keys), len(lst)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            best = max(score[i - 1][j], score[i][j - 1])
            if keys[i - 1] == b_keys[j - 1]:
                best = max(best, score[i - 1][j - 1] + (2 if srcs[i - 1] == lst[j - 1].src else 1))
            score[i][j] = best
    return score


def merge_names(lists: list[list[str]]) -> list[str]:
    """One order of the named children of all instances (their common names in the same order)."""
    order: list[str] = []
    for names in lists:
        common = set(order) & set(names)
        merged: list[str] = []
        i = j = 0
        while i < len(order) or j < len(names):
            if i < len(order) and order[i] not in common:
                merged.append(order[i])
                i += 1
            elif j < len(names) and names[j] not in common:
                merged.append(names[j])
                j += 1
            elif i < len(order) and j < len(names) and order[i] == names[j]:
                merged.append(order[i])
                i, j = i + 1, j + 1
            else:
                raise MismatchError
        order = merged
    return order


def make_class(unifier: Unifier, kind: str, form: str, instances: list[Node]) -> BlockClass:
    cls = BlockClass(kind, form, instances)
    if form == "parallel":
        return _parallel_class(unifier, cls)
    if form == "graph":
        return _graph_class(unifier, cls)
    parts: list[tuple[list[Node], SeqNode | None, str, list[Node]]] = []
    for n in instances:
        if isinstance(n, ResidualNode):
            parts.append((list(n.body), n.shortcut, n.merge, list(n.after)))
        elif isinstance(n, SeqNode):
            parts.append((list(n.children), None, "none", []))
        else:
            raise MismatchError
    if len({p[2] for p in parts} - {"none"}) > 1:
        raise MismatchError
    after_names = {c.name for p in parts for c in p[3]}
    if after_names:  # a plain-sequence instance: its trailing layers named as others' `after`
        for k, (body, sc, merge, after) in enumerate(parts):
            if merge == "none" and not after:
                cut = len(body)
                while cut > 0 and body[cut - 1].name in after_names:
                    cut -= 1
                parts[k] = (body[:cut], sc, merge, body[cut:])
    cls.merges = [p[2] for p in parts]
    body_order = merge_names([[c.name for c in p[0]] for p in parts])
    after_order = merge_names([[c.name for c in p[3]] for p in parts])
    sc_names = {p[1].name for p in parts if p[1] is not None}
    if len(sc_names) > 1 or set(body_order) & set(after_order) or sc_names & set(body_order + after_order):
        raise MismatchError
    cls.body = unifier.named_slots([{c.name: c for c in p[0]} for p in parts], body_order)
    cls.after = unifier.named_slots([{c.name: c for c in p[3]} for p in parts], after_order)
    if sc_names:
        name = sc_names.pop()
        cls.shortcut = (attr(name), unifier.unify([p[1] for p in parts], name))
    # in place (`out += shortcut`) only where the torch backend does it in every instance
    cls.inplace = all(n.merges_in_place for n in instances if isinstance(n, ResidualNode))
    return cls


def _parallel_class(unifier: Unifier, cls: BlockClass) -> BlockClass:
    pars = [n for n in cls.instances if isinstance(n, ParallelNode)]
    if len(pars) != len(cls.instances) or len({len(n.branches) for n in pars}) != 1:
        raise MismatchError
    if len({n.merge for n in pars}) != 1:
        raise MismatchError
    cls.merges = [n.merge for n in pars]
    for b in range(len(pars[0].branches)):
        names = {n.branches[b].name for n in pars}
        if len(names) != 1:
            raise MismatchError
        name = names.pop()
        cls.branches.append((attr(name), unifier.unify([n.branches[b] for n in pars], name)))
    afters = [{c.name: c for c in n.after} for n in pars]
    cls.after = unifier.named_slots(afters, merge_names([[c.name for c in n.after] for n in pars]))
    return cls


def _graph_class(unifier: Unifier, cls: BlockClass) -> BlockClass:
    """Instances of a graph list share a class when they read the same names in the same way; a slot
    per module, at the item's own (possibly dotted) name."""
    graphs = [n for n in cls.instances if isinstance(n, SeqNode) and is_graph(n)]
    if len(graphs) != len(cls.instances) or len({structure(n) for n in graphs}) != 1:
        raise MismatchError
    cls.steps = steps(graphs[0])
    cls.outputs = outputs(graphs[0])
    cls.merges = ["none"] * len(graphs)
    for k, item in enumerate(graphs[0].children):
        if merge_kind(item) is None:
            column: list[Node | None] = [n.children[k] for n in graphs]
            cls.body.append((item.name, unifier.unify(column, re.sub(r"\W", "_", item.name))))
    return cls
