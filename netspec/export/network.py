"""The network class's constructor: its top-level modules in spec order. A stage (repeats of the same spec
items in an nn.Sequential) is a loop: where only its first block differs (the one that strides), as
torchvision's `_make_layer` writes it (that block, then `for _ in range(1, depth)`); otherwise
`for i in range(depth)` with per-block arguments `a + b * i`, `a if i == 0 else b` or a tuple indexed by
`i`. So a deeper network is the same file with other loop counts."""

from __future__ import annotations

from typing import Any

from ..ir import AuxNode, LayerNode, Node, SeqNode, children
from ..layers import KINDS
from .blockclass import T, TArg, never, pick, targs
from .blockcode import expr
from .code import Code, index_expr, lit, loop_variable, name_expr, same
from .graph import Placer, forward_lines, is_graph, merge_kind, outputs, steps
from .names import assign, child, member
from .unify import Unifier, becomes_class, index_named

MAX_UNIT = 16  # the longest run of items a loop body repeats


def designate_classes(root: SeqNode, classes: int | None, overrides: dict[str, dict[str, Code]]) -> bool:
    """Route `num_classes` to the final classifier layers (of the network and of the aux heads): the
    last layer whose kind has a `classes_arg`, followed only by parameter-free layers."""
    if classes is None or root.out_shape != (classes,):
        return False
    targets = [_classifier(root.children, classes)]
    targets += [_classifier(a.children, classes) for a in root.children if isinstance(a, AuxNode)]
    found = [t for t in targets if t is not None]
    if len(found) != len(targets):
        return False
    for node, arg in found:
        overrides[node.path] = {arg: Code("num_classes")}
    return True


def _classifier(nodes: list[Node], classes: int) -> tuple[LayerNode, str] | None:
    flat: list[Node] = []

    def visit(ns: list[Node]) -> None:
        for n in ns:
            if isinstance(n, AuxNode):
                continue
            if isinstance(n, LayerNode) or becomes_class(n):
                flat.append(n)
            else:
                visit(children(n))

    visit(nodes)
    for k in range(len(flat) - 1, -1, -1):
        n = flat[k]
        arg = KINDS[n.kind].classes_arg if isinstance(n, LayerNode) else None
        if isinstance(n, LayerNode) and arg is not None:
            ok = n.out_shape == (classes,) and all(
                isinstance(t, LayerNode) and t.out_shape == (classes,) and t.cost.params == 0
                for t in flat[k + 1 :]
            )
            return (n, arg) if ok else None
    return None


def loop_value(a: TArg) -> str | None:
    if a.omitted():
        return None
    return index_expr(a.values)


class NetworkWriter:
    def __init__(self, unifier: Unifier, helpers: set[str]):
        self.unifier = unifier
        self.helpers = helpers  # the helpers the file needs (`_sequential`)

    def sig(self, node: Node) -> tuple[Any, ...]:
        if isinstance(node, LayerNode):
            return ("L", node.kind, self.unifier.calls.of(node).ctor)
        if becomes_class(node):
            return ("B", self.unifier.class_of[node.path].name)
        if isinstance(node, SeqNode | AuxNode):
            names = None if index_named(node) else tuple(c.name for c in node.children)
            return ("S", names, tuple(self.sig(c) for c in node.children))
        return ("?", node.path)

    def segments(self, nodes: list[Node]) -> list[tuple[int, int, int]]:
        """(start, unit length, repeats): repeats of the same spec items (a stage's blocks)."""
        keys = [(self.sig(n), n.src, n.section) for n in nodes]
        out = []
        p = 0
        while p < len(nodes):
            best_k, best_r = 1, 1
            for k in range(1, min(MAX_UNIT, (len(nodes) - p) // 2) + 1):
                unit = keys[p : p + k]
                if len({u[2] for u in unit}) != 1:
                    break
                r = 1
                while p + (r + 1) * k <= len(nodes) and keys[p + r * k : p + (r + 1) * k] == unit:
                    r += 1
                if r >= 2 and k * r > best_k * best_r:
                    best_k, best_r = k, r
            out.append((p, best_k, best_r))
            p += best_k * best_r
        return out

    def node_code(self, node: Node, live: set[str]) -> tuple[list[str], str]:
        if isinstance(node, SeqNode | AuxNode) and not becomes_class(node):
            return self.container_code(node, live)
        return [], expr(self.unifier.unify([node], node.name), loop_value, never)

    def container_code(self, node: SeqNode | AuxNode, live: set[str]) -> tuple[list[str], str]:
        nodes = node.children
        numbered = index_named(node)
        segments = self.segments(nodes)
        var = next(v for v in ("layers", *(f"layers{k}" for k in range(2, 100))) if v not in live)
        inner = live | {var}
        if all(r == 1 for _, _, r in segments):
            singles = [self.node_code(c, inner) for c in nodes]
            if not any(stmts for stmts, _ in singles):
                if numbered:
                    return [], f"nn.Sequential({', '.join(e for _, e in singles)})"
                self.helpers.add("_sequential")
                pairs = ", ".join(
                    f"({lit(child(c.name))}, {e})" for c, (_, e) in zip(nodes, singles, strict=True)
                )
                return [], f"_sequential({pairs})"

        def add(name: str, code: str) -> str:
            return f"{var}.append({code})" if numbered else f"{var}.add_module({name}, {code})"

        lines = [f"{var} = []" if numbered else f"{var} = nn.Sequential()"]
        for start, k, r in segments:
            if r == 1:
                for c in nodes[start : start + k]:
                    stmts, code = self.node_code(c, inner)
                    lines += [*stmts, add("" if numbered else lit(child(c.name)), code)]
            else:
                units = [nodes[start + u * k : start + (u + 1) * k] for u in range(r)]
                self._loop(lines, [[unit[c] for unit in units] for c in range(k)], numbered, add)
        return lines, f"nn.Sequential(*{var})" if numbered else var

    def _loop(self, lines: list[str], columns: list[list[Node]], numbered: bool, add: Any) -> None:
        """A repeated run of items as a loop (the lines are appended to `lines`)."""
        r = len(columns[0])
        templates: list[T] = [self.unifier.unify(list(column), column[0].name) for column in columns]
        names = [[child(n.name) for n in column] for column in columns]
        all_args = [a for t in templates for a in targs(t)]
        rest_constant = all(all(same(v, a.values[1]) for v in a.values[1:]) for a in all_args)
        if rest_constant and not all(a.constant() for a in all_args):
            # torchvision's _make_layer: the first block (which strides), then the others alike
            first = [expr(t, pick([0]), never) for t in templates]
            if numbered and len(lines) == 1:  # `layers = []` alone so far: start the list with it
                lines[0] = lines[0].replace("[]", f"[{', '.join(first)}]")
            else:
                lines += [
                    add("" if numbered else lit(n[0]), code) for n, code in zip(names, first, strict=True)
                ]
            rest = pick(list(range(1, r)))
            body = [
                add("" if numbered else name_expr(n), expr(t, rest, never))
                for t, n in zip(templates, names, strict=True)
            ]
            lines.append(f"for {loop_variable(body)} in range(1, {r}):")
        else:
            body = [
                add("" if numbered else name_expr(n), expr(t, loop_value, never))
                for t, n in zip(templates, names, strict=True)
            ]
            lines.append(f"for {loop_variable(body)} in range({r}):")
        lines += [f"    {line}" for line in body]

    def model_code(self, root: SeqNode) -> dict[str, Any]:
        if is_graph(root):
            return self.graph_model_code(root)
        init: list[str] = []
        for c in root.children:
            stmts, code = self.node_code(c, set())
            init += [*stmts, assign("self", c.name, code)]
        calls = [{"module": member("self", c.name), "aux": isinstance(c, AuxNode)} for c in root.children]
        return {
            "init": init,
            "steps": calls,
            "aux": any(s["aux"] for s in calls),
            "forward": None,
            "outputs": None,
        }

    def graph_model_code(self, root: SeqNode) -> dict[str, Any]:
        """A network whose items read each other by name: modules at their (dotted) names, a forward
        that names each value, and the named outputs where the spec has them."""
        placer = Placer("self")
        init: list[str] = []
        for c in root.children:
            if merge_kind(c) is None:
                stmts, code = self.node_code(c, set())
                init += [*stmts, *placer.place(c.name, code)]
        result = outputs(root)
        return {
            "init": init,
            "steps": [],
            "aux": False,
            "forward": forward_lines(steps(root), result),
            "outputs": result,
        }
