"""References: an item of a list may read earlier named outputs (`from: p4`, `from: [a, b]`) instead of
the previous item's, which makes the list a *graph list* (a DAG in topological order).

Scope is the list: a name refers to an earlier item of the same list (or `input`, the list's input),
so every container stays a module with one input. A name stands for its item's output (after a conv's
`norm`/`act`); the nodes' own names are visible too. Several inputs go to the merge kinds
(layers/merge.py); every other kind reads exactly one. In a graph list a name may be dotted
(`fpn.inner_blocks.0.0`): the module sits at that path under plain holder modules, as in torch.fx.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import pairwise
from typing import Any

from ..errors import did_you_mean
from ..expr import has_expression
from ..ir import INPUT, LayerNode, Node, SeqNode
from ..layers import KINDS
from ..layers.base import Shape, graph_name_problem
from ..layers.merge import MergeKind
from ..source import locate
from .context import BadValueError, Lowering
from .cursor import Cursor, Lowered, Namespace, Ref, Src, holder_paths
from .primitive import bindings, layer_params, merge_node
from .shapes import fmt

FROM = "from"
ItemLowerer = Callable[[Lowering, Any, Cursor], Lowered]

__all__ = ["FROM", "declare", "finish_list", "lower_linked", "model_outputs", "publish"]


def _params(item: Any) -> Mapping[str, Any] | None:
    """The mapping an item's `from` and `name` are written in: a stage entry itself, else the one
    value of `kind: {...}`."""
    if not isinstance(item, dict | Mapping):  # (dict first: an ABC check is slower)
        return None
    if "block" in item or len(item) != 1:
        return item
    value = next(iter(item.values()))
    return value if isinstance(value, dict | Mapping) else None


def declare(
    ns: Namespace, items: Any, src: Src, input_shape: Shape | None, memo: dict[Any, Any] | None = None
) -> None:
    """Before a list is lowered: whether it references (a graph list), and, where its outputs are read
    by name (publish), what `input` reads and the names its items declare (for messages)."""
    names, references = _declarations(items, memo) if isinstance(items, list) else ([], False)
    if references:
        ns.graph = True
    if not (ns.graph or ns.published):
        return
    if input_shape is not None and INPUT not in ns.refs:
        ns.refs[INPUT] = Ref(INPUT, input_shape, src)
    for name, i in names:
        ns.declared.setdefault(name, (*src, i))


def _declarations(items: list[Any], memo: dict[Any, Any] | None) -> tuple[list[tuple[str, int]], bool]:
    """The names a list's items declare (with their places) and whether one uses `from:`: read once per
    run with a `memo` (a block's body is declared at every use of the block)."""
    key = ("declared", id(items))
    known = memo.get(key) if memo is not None else None
    if known is None:
        names: list[tuple[str, int]] = []
        references = False
        for i, item in enumerate(items):
            params = _params(item)
            if params is None:
                continue
            name = params.get("name")
            if isinstance(name, str) and "${" not in name:
                names.append((name, i))
            if FROM in params:
                references = True
        known = (items, names, references)  # (holding the list keeps its id unique for the run)
        if memo is not None:
            memo[key] = known
    return known[1], known[2]


def _dotted_problem(name: str) -> str | None:
    """Why a dotted name cannot name a module, or None."""
    for part in name.split("."):
        problem = graph_name_problem(part)
        if problem is not None:
            return f"in the module path {name!r}: {problem}"
    return None


def _without(item: Mapping[str, Any], params: Mapping[str, Any], keys: set[str]) -> Any:
    """The item with `keys` taken out of its parameters."""
    kept = {k: v for k, v in params.items() if k not in keys}
    if params is item:
        return kept
    kind = next(iter(item))
    return {kind: kept}


def lower_linked(ctx: Lowering, item: Any, cur: Cursor, lower: ItemLowerer) -> Lowered:
    """One item of a list, reading what its `from:` names (else the previous output), its output made
    visible under its name."""
    name, new, y = _linked(ctx, item, cur, lower)
    publish(cur.names, name, new, y, cur.src)
    return new, y


def publish(ns: Namespace, name: Any, new: list[Node], y: Shape | None, src: Src) -> None:
    """What an item (written at `src`, named `name`) made, visible to the later items of its list."""
    if not (ns.graph or ns.published):
        return  # nothing reads this list's outputs by name (most lists: a block's body, a shortcut)
    if not isinstance(name, str):
        _make_visible(ns, new, y, src, explicit=False)
    elif y is None:
        ns.failed.add(name)  # its problem is reported: a reference to it adds none
    elif not new:
        ns.skipped.add(name)  # its `when:` is false
    else:
        _make_visible(ns, new, y, src, explicit=True)


def _linked(
    ctx: Lowering, item: Any, cur: Cursor, lower: ItemLowerer
) -> tuple[Any, list[Node], Shape | None]:
    """The item's name (evaluated) and what lowering it gives."""
    ns = cur.names
    params = _params(item)
    name = params.get("name") if params is not None else None
    if params is not None and isinstance(name, str) and has_expression(name):  # `body.layer${s + 1}`
        try:
            name = ctx.value(name, cur.scope, (*_name_src(item, params, cur.src), "name"))
        except BadValueError:
            name = None  # reported where the item's own lowering evaluates it
    dotted = isinstance(name, str) and "." in name
    if params is None or (FROM not in params and not dotted):
        return (name, *lower(ctx, item, cur))
    taken = {FROM} & set(params)
    if isinstance(name, str) and dotted:
        problem = (
            _dotted_problem(name)
            if ns.graph
            else f"'{name}' is not a valid module name here: a dotted name places a module under holder"
            " modules, which only a list that uses references (`from:`) or the model's `outputs:` can do"
        )
        taken_holder = next((h for h in holder_paths(name) if h in ns.names), None)
        if problem is None and taken_holder is not None:
            problem = (
                f"'{name}' goes under a holder module '{taken_holder}', which is a module of its own here"
            )
        if problem is not None:
            ctx.problem(problem, (*_name_src(item, params, cur.src), "name"))
            return name, [], None
        taken.add("name")
        ns.pending = name
    try:
        at_from = (*_name_src(item, params, cur.src), FROM)
        refs = _resolve(ctx, ns, params.get(FROM), cur, at_from) if FROM in params else None
        if FROM in params and refs is None:
            return name, [], None
        rest = _without(item, params, taken)
        kind = next(iter(rest)) if isinstance(rest, Mapping) and len(rest) == 1 else None
        merge = KINDS.get(kind) if isinstance(kind, str) else None
        if merge is not None and merge.merge_form is not None and refs is not None and len(refs) > 1:
            merge = KINDS.get(merge.merge_form)  # `upsample: {from: [x, other], size: like}`
        if isinstance(merge, MergeKind) and isinstance(kind, str) and refs is not None:
            new, y = _merge(ctx, merge, rest[kind], cur.at(kind), refs)
        else:
            if refs is not None and len(refs) > 1:
                ctx.problem(
                    f"`{kind or 'this item'}` reads one output, and `from` names {len(refs)}",
                    (*_name_src(item, params, cur.src), FROM),
                    "merge several outputs first with `concat`, `add` or `mul`",
                )
                return name, [], None
            at = cur if refs is None else cur.with_shape(refs[0].shape)
            new, y = lower(ctx, rest, at)
            if new and refs is not None:
                new[0].inputs = (refs[0].node,)
    finally:
        ns.pending = None
    return name, new, y


def _name_src(item: Any, params: Mapping[str, Any], src: Src) -> Src:
    return src if params is item else (*src, next(iter(item)))


def _make_visible(ns: Namespace, new: list[Node], y: Shape | None, src: Src, explicit: bool) -> None:
    """Each new node's output under its name; an explicitly named item's output under its name."""
    refs = ns.refs
    for node in new:
        if node.name not in refs:
            refs[node.name] = Ref(node.name, node.out_shape, src)
    if explicit and new and y is not None:
        ns.refs[new[0].name] = Ref(new[-1].name, y, src)


def _resolve(ctx: Lowering, ns: Namespace, raw: Any, cur: Cursor, src: Src) -> list[Ref] | None:
    """The outputs `from:` (written at `src`) names, or None after reporting why one cannot be read."""
    try:
        value = ctx.value(raw, cur.scope, src)
    except BadValueError as bad:
        ctx.problem(bad.message, bad.src)
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        ctx.problem("`from` names an earlier output, or a list of them", src, "e.g. `from: [p4, c3]`")
        return None
    refs: list[Ref] = []
    for i, name in enumerate(names):
        ref = ns.refs.get(name)
        if ref is None:
            at = src if isinstance(value, str) else (*src, i)
            _unknown(ctx, ns, name, at, cur.src)
            return None
        refs.append(ref)
    return refs


def _unknown(ctx: Lowering, ns: Namespace, name: str, src: Src, item_src: Src) -> None:
    if name in ns.failed:
        return
    if name in ns.skipped:
        ctx.problem(f"`{name}` is left out (its `when:` is false): it has no output to read", src)
        return
    declared = ns.declared.get(name)
    if declared is not None and item_src[: len(declared)] == declared:
        ctx.problem(f"`{name}` reads its own output: a reference reads an earlier output", src)
        return
    if declared is not None:
        where = locate(ctx.spec.raw, declared)
        line = f", at line {where.line}" if where else ""
        ctx.problem(f"`{name}` is defined later{line}: a reference reads an earlier output", src)
        return
    wrapper = ctx.wrapped.get(name)
    if wrapper is not None:
        ctx.problem(
            f"`{name}` is inside the `{wrapper}` wrapper: a reference cannot reach into it",
            src,
            "name the wrapper's output instead, or drop `features:`/`trunk:`",
        )
        return
    visible = [n for n in ns.refs if n != INPUT]
    hint = did_you_mean(name, [INPUT, *visible]) or (
        "visible here: " + ", ".join([INPUT, *visible][:20]) + (" ..." if len(visible) >= 20 else "")
    )
    ctx.problem(f"unknown name '{name}': a reference reads an earlier item of the same list", src, hint)


def _merge(ctx: Lowering, kind: MergeKind, raw: Any, cur: Cursor, refs: list[Ref]) -> Lowered:
    """A merge of the outputs `refs` (`- concat: {from: [a, b]}`)."""
    params = dict(raw) if isinstance(raw, Mapping) else {}
    try:
        if "when" in params and not ctx.condition(params.pop("when"), cur.scope, (*cur.src, "when")):
            return [], cur.shape
        values = {k: ctx.value(v, cur.scope, (*cur.src, k)) for k, v in params.items()}
    except BadValueError as bad:
        ctx.problem(bad.message, bad.src, bad.hint)
        return [], None
    p = layer_params(ctx, kind.name, values, cur.src)
    if p is None:
        return [], None

    def listed() -> str:  # (for a message only: locating each input reads the spec's positions)
        return ", ".join(f"{r.node} {fmt(r.shape)}{_line(ctx, r.src)}" for r in refs)

    node = merge_node(ctx, kind, p, cur, [r.shape for r in refs], bindings(params), listed)
    if node is None:
        return [], None
    node.inputs = tuple(r.node for r in refs)
    return [node], node.out_shape


def _line(ctx: Lowering, src: Src) -> str:
    where = locate(ctx.spec.raw, src) if src else None
    return f" at line {where.line}" if where else ""


def finish_list(ctx: Lowering, node: SeqNode) -> SeqNode:
    """Mark a container whose children reference or have dotted names as a graph list, and refuse
    children whose outputs nothing reads."""
    kids = node.children
    node.graph = node.graph or node.outputs is not None or any(c.inputs or "." in c.name for c in kids)
    if not node.graph:
        return node
    for child in kids:  # torch.fx writes these names into the forward's source
        problem = None if is_merge(child) or "." in child.name else graph_name_problem(child.name)
        if problem is not None:
            ctx.problem(problem, child.src)
    used = {i for c in kids for i in c.inputs}
    for prev, child in pairwise(kids):
        if isinstance(child, LayerNode) and child.inplace and prev.name in used:
            child.inplace = False  # its input is read again by name: it must stay as computed
    used.update(node.outputs.values() if node.outputs is not None else [kids[-1].name] if kids else [])
    if ctx.problems:
        return node  # after a problem some items are missing: their readers would look unused
    for i, child in enumerate(kids):
        follows = i + 1 < len(kids) and not kids[i + 1].inputs
        if not follows and child.name not in used:
            where = child.path or child.name
            ctx.problem(
                f"`{where}` is computed but never used",
                child.src,
                "read it with `from:`, name it in `outputs:`, or remove it",
            )
    return node


def model_outputs(ctx: Lowering, ns: Namespace, outputs: list[str] | dict[str, str]) -> dict[str, str]:
    """The model's `outputs:` (a list of names, or key: name) as output key -> child name."""
    pairs = outputs.items() if isinstance(outputs, dict) else [(name, name) for name in outputs]
    found: dict[str, str] = {}
    for i, (key, name) in enumerate(pairs):
        ref = ns.refs.get(name)
        if ref is None:
            at: Src = ("outputs", key if isinstance(outputs, dict) else i)
            _unknown(ctx, ns, name, at, ("outputs",))
        elif ref.node == INPUT:
            ctx.problem("an output is computed by the network, not its input", ("outputs",))
        else:
            found[key] = ref.node
    return found


def holders_of(node: SeqNode) -> list[str]:
    """The holder modules of a graph list's dotted names, outermost first."""
    seen: dict[str, None] = {}
    for child in node.children:
        for h in holder_paths(child.name):
            seen.setdefault(h)
    return list(seen)


def is_merge(node: Node) -> bool:
    return isinstance(node, LayerNode) and isinstance(KINDS[node.kind], MergeKind)
