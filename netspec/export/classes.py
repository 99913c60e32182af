"""Block classes: the IR's block instances grouped by kind (innermost first, so an outer class can refer to
an inner one), each group unified into one class, or split into one class per structure (`Block`,
`Block2`) where instances cannot share one (a `when:` that shifts the names of the layers after it)."""

from __future__ import annotations

from typing import Any

from ..ir import Node, ParallelNode, SeqNode, children, walk
from ..spec import Spec
from .blockclass import BlockClass
from .docstrings import docstring, wrap
from .errors import ExportError, MismatchError
from .graph import is_graph
from .names import camel
from .params import assign_params
from .unify import Unifier, becomes_class, make_class

DOC_WIDTH = 110 - 12  # the project's line length, less a class docstring's indent and quotes


def _heights(root: SeqNode) -> dict[str, int]:
    """How deep blocks nest inside each node (0: no block inside), by path."""
    heights: dict[str, int] = {}

    def height(node: Node) -> int:
        h = max(((height(c) + 1 if becomes_class(c) else height(c)) for c in children(node)), default=0)
        heights[node.path] = h
        return h

    height(root)
    return heights


def build_classes(unifier: Unifier, root: SeqNode, spec: Spec, names: set[str]) -> list[BlockClass]:
    """Every generated class, innermost first; `names` holds the names taken (it grows)."""
    heights = _heights(root)
    groups: dict[tuple[Any, ...], list[Node]] = {}
    for node, _ in walk(root):
        if becomes_class(node):
            kind = str(getattr(node, "block", "") or "block")
            form = "parallel" if isinstance(node, ParallelNode) else "graph" if is_graph(node) else "body"
            where = node.src if node.inline else None  # inline composites: one class per place
            groups.setdefault((heights[node.path], kind, form, where), []).append(node)
    classes: list[BlockClass] = []
    for key in sorted(groups, key=lambda k: k[0]):
        _, kind, form, _ = key
        for cls in _partition(unifier, kind, form, groups[key]):
            _register(unifier, cls, spec, names)
            classes.append(cls)
    return classes


def _partition(unifier: Unifier, kind: str, form: str, instances: list[Node]) -> list[BlockClass]:
    try:
        return [make_class(unifier, kind, form, instances)]
    except MismatchError:
        pass
    parts: list[list[Node]] = []
    for inst in instances:
        for part in parts:
            try:
                make_class(unifier, kind, form, [*part, inst])
            except MismatchError:
                continue
            part.append(inst)
            break
        else:
            parts.append([inst])
    classes = []
    for part in parts:
        try:
            classes.append(make_class(unifier, kind, form, part))
        except MismatchError:
            raise ExportError(f"cannot write block '{kind}' at {part[0].path} as a class") from None
    return classes


def _register(unifier: Unifier, cls: BlockClass, spec: Spec, names: set[str]) -> None:
    first = cls.instances[0]
    base = camel(first.name if first.inline and not first.name.isdigit() else cls.kind, "Block")
    name, k = base, 2
    while name in names:
        name, k = f"{base}{k}", k + 1
    cls.name = name
    names.add(name)
    assign_params(cls, names)
    block = spec.blocks.get(cls.kind) if not first.inline else None
    what = f"The `{cls.kind}` block" if not first.inline else f"An inline `{cls.kind}` ({first.path})"
    text = f"{what} of spec `{spec.name}`"
    if block is not None and block.description:
        text += f": {block.description}"
    if not text.rstrip().endswith((".", "!", "?")):
        text += "."
    cls.doc = docstring(wrap(text, DOC_WIDTH), "    ")
    for inst in cls.instances:
        unifier.class_of[inst.path] = cls
