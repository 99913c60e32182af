"""What changes between two specs: layer by layer (by module path), in totals, in state_dict keys, and in
the edges of graph specs (what each item reads, `from:`).

Rows are matched by their module path (the state_dict prefix), so a layer that moves to another path
shows as one row removed and one added. The state_dict side is computed by building both networks on
the meta device (no memory, no initialisation cost) and comparing keys and shapes; a key that only
changes an index (`downsample.0.weight` -> `downsample.1.weight`, same shape) is reported as moved.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .analysis import Analysis, Row
from .ir import INPUT, SeqNode, walk
from .spec import Spec

TOTAL_METRICS = ("params", "macs", "flops", "activation_bytes")
ROW_FIELDS = ("kind", "output_shape", "params", "macs")


@dataclass
class RowChange:
    path: str
    change: str  # "added" (in B only), "removed" (in A only), "changed"
    a: Row | None
    b: Row | None
    fields: list[str] = field(default_factory=list)  # which of ROW_FIELDS differ ("changed" only)

    @property
    def row(self) -> Row:
        """A's row, or B's for an added one (a change always has one of them)."""
        row = self.a or self.b
        assert row is not None
        return row

    def to_json(self) -> dict[str, Any]:
        def side(r: Row | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {"kind": r.kind, "output_shape": list(r.output_shape), "params": r.params, "macs": r.macs}

        return {
            "path": self.path,
            "change": self.change,
            "fields": self.fields,
            "a": side(self.a),
            "b": side(self.b),
            "params_delta": (self.b.params if self.b else 0) - (self.a.params if self.a else 0),
            "macs_delta": (self.b.macs if self.b else 0) - (self.a.macs if self.a else 0),
        }


@dataclass
class KeyChange:
    change: str  # "added", "removed", "reshaped", "moved"
    key: str  # the key in A (removed, reshaped, moved) or in B (added)
    a_shape: tuple[int, ...] | None
    b_shape: tuple[int, ...] | None
    new_key: str | None = None  # moved: the key in B

    def to_json(self) -> dict[str, Any]:
        return {
            "change": self.change,
            "key": self.key,
            "new_key": self.new_key,
            "a_shape": list(self.a_shape) if self.a_shape is not None else None,
            "b_shape": list(self.b_shape) if self.b_shape is not None else None,
        }


@dataclass
class EdgeChange:
    """An item, in both specs, that reads other outputs in one than in the other (in a graph list)."""

    path: str
    a: tuple[str, ...]  # the paths of what it reads in A ("input" or "input of PATH": a list's input)
    b: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "a": list(self.a), "b": list(self.b)}


@dataclass
class SpecDiff:
    a: Analysis
    b: Analysis
    rows: list[RowChange]
    keys: list[KeyChange]
    edges: list[EdgeChange] = field(default_factory=list)

    def total(self, metric: str) -> tuple[int, int, int, float | None]:
        """(A, B, B - A, (B - A) / A or None when A is 0)."""
        va, vb = int(getattr(self.a, metric)), int(getattr(self.b, metric))
        return va, vb, vb - va, ((vb - va) / va if va else None)

    @property
    def same_state_dict(self) -> bool:
        return not self.keys

    def to_json(self) -> dict[str, Any]:
        totals = {}
        for m in TOTAL_METRICS:
            va, vb, d, rel = self.total(m)
            totals[m] = {"a": va, "b": vb, "delta": d, "relative": rel}
        return {
            "a": self.a.name,
            "b": self.b.name,
            "input_shape": {"a": list(self.a.input_shape), "b": list(self.b.input_shape)},
            "output_shape": {"a": list(self.a.output_shape), "b": list(self.b.output_shape)},
            "totals": totals,
            "layers": [r.to_json() for r in self.rows],
            "edges": [e.to_json() for e in self.edges],
            "state_dict": {
                "same": self.same_state_dict,
                "changes": [k.to_json() for k in self.keys],
            },
        }


def diff_rows(a: Analysis, b: Analysis) -> list[RowChange]:
    """Rows in one analysis only, and rows whose kind, output shape, params or MACs differ, in the
    order of B (rows only in A placed after their predecessor in A)."""
    rows_a = {r.path: r for r in a.rows}
    rows_b = {r.path: r for r in b.rows}
    changes: list[RowChange] = []
    # a merged order: walk B, inserting A-only rows where they occur in A
    order: list[str] = []
    seen: set[str] = set()
    b_paths = [r.path for r in b.rows]
    a_only_after: dict[str | None, list[str]] = {}
    prev: str | None = None
    for r in a.rows:
        if r.path not in rows_b:
            a_only_after.setdefault(prev, []).append(r.path)
        else:
            prev = r.path
    for p in a_only_after.pop(None, []):
        order.append(p)
        seen.add(p)
    for p in b_paths:
        order.append(p)
        seen.add(p)
        for q in a_only_after.pop(p, []):
            if q not in seen:
                order.append(q)
                seen.add(q)
    for path in order:
        ra, rb = rows_a.get(path), rows_b.get(path)
        if ra is None:
            changes.append(RowChange(path, "added", None, rb))
        elif rb is None:
            changes.append(RowChange(path, "removed", ra, None))
        else:
            fields = [f for f in ROW_FIELDS if getattr(ra, f) != getattr(rb, f)]
            if fields:
                changes.append(RowChange(path, "changed", ra, rb, fields))
    return changes


def state_dict_shapes(spec: Spec, input_size: int | tuple[int, int] | None = None) -> dict[str, tuple]:
    """Every state_dict key and its shape, from a build on the meta device (nothing allocated)."""
    import torch

    from .torch_backend import build

    with torch.device("meta"):
        model = build(spec, input_size=input_size)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


_INDEX = re.compile(r"^\d+$")


def _pattern(key: str) -> tuple[str, ...]:
    return tuple("#" if _INDEX.match(p) else p for p in key.split("."))


def diff_state_dicts(sa: dict[str, tuple], sb: dict[str, tuple]) -> list[KeyChange]:
    """Keys added, removed, reshaped, and moved (same shape, only one numeric index differs)."""
    only_a = [k for k in sa if k not in sb or sa[k] != sb[k]]
    only_b = [k for k in sb if k not in sa or sa[k] != sb[k]]
    moved: dict[str, str] = {}
    taken: set[str] = set()
    for ka in only_a:
        pa, parts_a = _pattern(ka), ka.split(".")
        for kb in only_b:
            if kb in taken or _pattern(kb) != pa or sa[ka] != sb[kb]:
                continue
            if sum(x != y for x, y in zip(parts_a, kb.split("."), strict=True)) == 1:
                moved[ka] = kb
                taken.add(kb)
                break
    changes: list[KeyChange] = []
    for ka in only_a:
        if ka in moved:
            changes.append(KeyChange("moved", ka, sa[ka], sb[moved[ka]], moved[ka]))
        elif ka in sb and ka not in taken:
            changes.append(KeyChange("reshaped", ka, sa[ka], sb[ka]))
            taken.add(ka)
        else:
            changes.append(KeyChange("removed", ka, sa[ka], None))
    changes += [KeyChange("added", kb, None, sb[kb]) for kb in only_b if kb not in taken]
    return changes


def reads(root: SeqNode) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """What every item of every list reads, as paths (the item before it unless `from:` says otherwise),
    and the paths of the items that are in graph lists."""
    found: dict[str, tuple[str, ...]] = {}
    in_graph: set[str] = set()
    for node, _ in walk(root):
        if not isinstance(node, SeqNode):
            continue
        paths = {c.name: c.path for c in node.children}
        paths[INPUT] = f"input of {node.path}" if node.path else INPUT
        for k, child in enumerate(node.children):
            names = child.inputs or ((node.children[k - 1].name,) if k else (INPUT,))
            found[child.path] = tuple(paths[n] for n in names)
            if node.graph:
                in_graph.add(child.path)
    return found, in_graph


def diff_edges(a: SeqNode, b: SeqNode) -> list[EdgeChange]:
    """Items of both specs, in a graph list in either, that read other outputs (B's order)."""
    reads_a, graph_a = reads(a)
    reads_b, graph_b = reads(b)
    return [
        EdgeChange(path, reads_a[path], rb)
        for path, rb in reads_b.items()
        if path in reads_a and (path in graph_a or path in graph_b) and reads_a[path] != rb
    ]


def diff_specs(a: Spec, b: Spec, *, state_dict: bool = True) -> SpecDiff:
    from .analysis import analyze
    from .lower import lower

    aa, ab = analyze(a), analyze(b)
    keys = diff_state_dicts(state_dict_shapes(a), state_dict_shapes(b)) if state_dict else []
    return SpecDiff(aa, ab, diff_rows(aa, ab), keys, diff_edges(lower(a), lower(b)))


# -- rendering -------------------------------------------------------------------------------------

METRIC_LABELS = {
    "params": "params",
    "macs": "MACs",
    "flops": "FLOPs",
    "activation_bytes": "activation memory (bytes)",
}


def _shape(s: tuple[int, ...] | None) -> str:
    return "-" if s is None else "x".join(map(str, s)) or "()"


def _signed(n: int) -> str:
    return f"{n:+,}" if n else "0"


def _rel(r: float | None) -> str:
    return "n/a" if r is None else f"{r:+.2%}"


def _visible(d: SpecDiff, depth: int | None) -> list[RowChange]:
    return [c for c in d.rows if depth is None or c.row.depth <= depth]


def _row_cells(c: RowChange) -> list[str]:
    ra, rb = c.a, c.b
    kind = f"{ra.kind} -> {rb.kind}" if ra and rb and ra.kind != rb.kind else c.row.kind
    shape = (
        f"{_shape(ra.output_shape)} -> {_shape(rb.output_shape)}"
        if ra and rb and ra.output_shape != rb.output_shape
        else _shape(c.row.output_shape)
    )
    dp = (rb.params if rb else 0) - (ra.params if ra else 0)
    dm = (rb.macs if rb else 0) - (ra.macs if ra else 0)
    return [c.path, c.change, kind, shape, _signed(dp), _signed(dm)]


def _edge_cells(e: EdgeChange) -> list[str]:
    return [e.path, ", ".join(e.a), ", ".join(e.b)]


def _edge_lines(d: SpecDiff) -> list[str]:
    if not d.edges:
        return []
    lines = ["", f"{len(d.edges)} items read other outputs:", ""]
    lines += ["| item | A reads | B reads |", "|---|---|---|"]
    return lines + ["| " + " | ".join(_edge_cells(e)) + " |" for e in d.edges]


def _key_cells(k: KeyChange) -> list[str]:
    key = f"{k.key} -> {k.new_key}" if k.new_key else k.key
    return [k.change, key, _shape(k.a_shape), _shape(k.b_shape)]


def to_json(d: SpecDiff, depth: int | None = None) -> str:
    data = d.to_json()
    data["layers"] = [c.to_json() for c in _visible(d, depth)]
    return json.dumps(data, indent=2)


def to_markdown(d: SpecDiff, depth: int | None = None) -> str:
    lines = [
        f"**{d.a.name}** -> **{d.b.name}** (MACs as fvcore counts them)",
        "",
        "| metric | A | B | delta | relative |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in TOTAL_METRICS:
        va, vb, delta, rel = d.total(m)
        lines.append(f"| {METRIC_LABELS[m]} | {va:,} | {vb:,} | {_signed(delta)} | {_rel(rel)} |")
    rows = _visible(d, depth)
    lines += ["", f"{len(rows)} layer rows differ" + (":" if rows else ".")]
    if rows:
        lines += ["", "| layer | change | kind | output | params delta | MACs delta |"]
        lines.append("|---|---|---|---|---:|---:|")
        lines += ["| " + " | ".join(_row_cells(c)) + " |" for c in rows]
    lines += _edge_lines(d)
    if d.same_state_dict:
        lines += ["", "state_dict: same keys and shapes."]
    else:
        lines += ["", f"state_dict: {len(d.keys)} keys differ:", ""]
        lines += ["| change | key | A shape | B shape |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(_key_cells(k)) + " |" for k in d.keys]
    return "\n".join(lines)


def print_table(d: SpecDiff, depth: int | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped output: do not squeeze the table to 80 columns
        console = Console(width=160)
    totals = Table(title=f"{d.a.name} -> {d.b.name}", caption="MACs: fvcore convention")
    for col in ("metric", "A", "B", "delta", "relative"):
        totals.add_column(col, justify="left" if col == "metric" else "right")
    for m in TOTAL_METRICS:
        va, vb, delta, rel = d.total(m)
        totals.add_row(METRIC_LABELS[m], f"{va:,}", f"{vb:,}", _signed(delta), _rel(rel))
    console.print(totals)
    rows = _visible(d, depth)
    if rows:
        t = Table(title=f"{len(rows)} layer rows differ")
        for i, col in enumerate(("layer", "change", "kind", "output", "params delta", "MACs delta")):
            t.add_column(col, justify="right" if i >= 4 else "left")
        style = {"added": "green", "removed": "red", "changed": None}
        for c in rows:
            t.add_row(*_row_cells(c), style=style[c.change])
        console.print(t)
    else:
        console.print("no layer rows differ")
    if d.edges:
        t = Table(title=f"{len(d.edges)} items read other outputs")
        for col in ("item", "A reads", "B reads"):
            t.add_column(col)
        for e in d.edges:
            t.add_row(*_edge_cells(e))
        console.print(t)
    if d.same_state_dict:
        console.print("state_dict: same keys and shapes")
    else:
        t = Table(title=f"state_dict: {len(d.keys)} keys differ")
        for col in ("change", "key", "A shape", "B shape"):
            t.add_column(col)
        for k in d.keys:
            t.add_row(*_key_cells(k))
        console.print(t)
