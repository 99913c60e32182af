"""The composite items of the spec language: `sequential`, `parallel`, `residual` and `aux`.

They are not layer kinds (lowering expands them into blocks of layers), but an item names them the
way it names a kind (`- residual: {body: [...]}`), so they share the kinds' namespace: no layer kind,
built-in or plug-in, may take one of these names. This table is their one definition; lowering,
the plug-in loader, the JSON schema and `netspec kinds` read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Composite:
    name: str
    doc: str
    fields: tuple[str, ...]  # besides `name` and `when`, which every item takes
    merges: tuple[str, ...] = ()  # the `merge` values it accepts, the default first


TABLE = (
    Composite("sequential", "A named sequence of layers.", ("layers",)),
    Composite(
        "parallel", "Branches on one input, merged.", ("branches", "merge", "after"), ("concat", "add")
    ),
    Composite(
        "residual",
        "body + shortcut, merged.",
        ("body", "shortcut", "merge", "after"),
        ("add", "concat", "mul"),
    ),
    Composite("aux", "A side classifier, run in training only (GoogLeNet).", ("layers",)),
)

COMPOSITES = tuple(c.name for c in TABLE)

# Keys no layer kind may take: the composites, and `block`, which names a stage's block kind
# (`stages: [{block: bottleneck, depth: 3}]`).
RESERVED_KINDS = frozenset({*COMPOSITES, "block"})
