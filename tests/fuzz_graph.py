"""Random graph specs for the fuzzers (tests/test_shapes_fuzz.py, tests/test_text_fuzz.py): lists that
read earlier outputs with `from:` (earlier siblings, `input`, across stages, inside sequential and
residual bodies, branches and `blocks:` bodies), merges of 2 to 4 inputs (concat, add, mul, select),
dotted names, `outputs:`, and the kinds of issue 13 (layernorm2d, groupnorm, frozen_batchnorm,
layer_scale, drop_path, channel_split, channel_shuffle, upsample, conv_transpose, eca, spatial_mean).

The generator tracks each value's shape with PyTorch's documented formulas (not netspec's code), only
to aim its choices: a merge meant to fit gets inputs that fit, a merge meant to clash gets inputs that
clash. The generated spec records which merge clashes (`GraphSpec.clash`), or none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

Shape = tuple[int, ...]
MAX_SIDE = 40  # upsampling is not allowed past this: small maps keep the forward passes fast
CHANNELS = [1, 2, 3, 4, 6, 8, 12]

# blocks whose bodies read names: a plain sequence block and a residual block (a graph block)
BLOCKS = {
    "fork": {
        "params": {"out": "int", "join": "add"},
        "body": [
            {"conv": {"out": "${out}", "kernel": 3, "name": "a", "norm": "batchnorm", "act": "relu"}},
            {"conv": {"out": "${out}", "kernel": 1, "name": "b", "from": "input"}},
            {"add": {"from": ["a", "b"], "name": "joined", "when": "${join == 'add'}"}},
            {"concat": {"from": ["a", "b"], "name": "stacked", "when": "${join == 'concat'}"}},
            "relu",
        ],
    },
    "skip": {
        "params": {"out": "int", "stride": 1},
        "body": [
            {"conv": {"out": "${out}", "kernel": 3, "stride": "${stride}", "name": "a"}},
            {"spatial_mean": {"name": "pooled"}},
            {"conv": {"out": "${out}", "kernel": 1, "name": "gate"}},
            {"sigmoid": {"name": "weights"}},
            {"mul": {"from": ["a", "weights"], "name": "scaled"}},
            {"groupnorm": {"groups": 1}},
        ],
        "merge": "add",
        "shortcut": "projection",
        "after": ["relu"],
    },
}


def conv_size(side: int, kernel: int, stride: int) -> int:
    """nn.Conv2d's output size with netspec's `auto` padding (k // 2 for an odd kernel)."""
    return (side + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass
class Scope:
    """One list being generated: its items, the shape of each name it may read, which are read."""

    shapes: dict[str, Shape]
    graph: bool
    items: list[Any] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # names of items, in order
    read: set[str] = field(default_factory=set)
    last: str = "input"


@dataclass
class GraphSpec:
    text: str
    clash: str | None  # the name of the merge whose inputs disagree on purpose, if any


class Generator:
    """Draws one graph spec. `draw` is hypothesis' draw; names are unique in the whole spec."""

    def __init__(self, draw: Any, clash: bool) -> None:
        self.draw = draw
        self.in_stages = False  # a `{block: ..., depth: ...}` entry is a stage: only in `stages`
        self.want_clash = clash
        self.clash: str | None = None
        self.count = 0
        self.holders = 0
        self.top: Scope | None = None

    # -- names and choices ------------------------------------------------------------------------

    def fresh(self, scope: Scope, stem: str = "v", merge: bool = False) -> str:
        self.count += 1
        name = f"{stem}{self.count}"
        if scope.graph and not merge and self.draw(st.integers(0, 4)) == 0:
            self.holders += 1  # a dotted name: the module under a plain holder module
            name = f"h{self.holders}.{name}"
        return name

    def pick(self, options: list[Any]) -> Any:
        return self.draw(st.sampled_from(options))

    def chance(self, one_in: int) -> bool:
        return self.draw(st.integers(1, one_in)) == 1

    # -- lists ------------------------------------------------------------------------------------

    def add(self, scope: Scope, kind: str, params: dict[str, Any], shape: Shape, src: str | None = None,
            stem: str = "v") -> str:  # fmt: skip
        """Append `kind` reading `src` (the previous output when None) with output `shape`."""
        name = self.fresh(scope, stem)
        params = {**params, "name": name}
        reads = src if src is not None else scope.last
        if scope.graph and src is not None and (src != scope.last or self.chance(3)):
            params["from"] = src
        scope.read.add(reads)
        if kind in BLOCKS and scope is self.top and self.in_stages and self.chance(2):
            scope.items.append({"block": kind, "depth": self.draw(st.integers(1, 2)), **params})
        else:
            scope.items.append({kind: params})
        scope.order.append(name)
        scope.shapes[name] = shape
        scope.last = name
        return name

    def merge(self, scope: Scope, kind: str, names: list[str], shape: Shape) -> str:
        name = self.fresh(scope, "m", merge=True)
        scope.items.append({kind: {"from": names, "name": name}})
        scope.read.update(names)
        scope.order.append(name)
        scope.shapes[name] = shape
        scope.last = name
        return name

    def source(self, scope: Scope) -> str:
        """An earlier output to read: the previous one at least half the time (the only one in a list
        without references), else any earlier one or `input`."""
        if not scope.graph or self.chance(2):
            return scope.last
        return self.pick(["input", *scope.order])

    def fill(self, scope: Scope, steps: int, depth: int) -> None:
        for _ in range(steps):
            choice = self.draw(st.integers(0, 9))
            if choice <= 4 or depth >= 2:
                self.layer(scope, self.source(scope))
            elif choice <= 7 and scope.graph:
                self.merge_some(scope)
            elif choice == 8:
                self.container(scope, depth)
            else:
                self.block(scope)

    def close(self, scope: Scope) -> None:
        """Read every output nothing reads yet (netspec refuses unused outputs): each dangling map
        gates the last one (a spatial mean, a 1x1 conv, a sigmoid, a multiply)."""
        for name in [n for n in scope.order[:-1] if n not in scope.read]:
            last, c = scope.last, scope.shapes[scope.last][0]
            self.add(scope, "spatial_mean", {}, (scope.shapes[name][0], 1, 1), name)
            self.add(scope, "conv", {"out": c, "kernel": 1}, (c, 1, 1))
            gate = self.add(scope, "sigmoid", {}, (c, 1, 1))
            self.merge(scope, "mul", [last, gate], scope.shapes[last])

    def sublist(self, shape: Shape, depth: int, graph: bool) -> Scope:
        scope = Scope({"input": shape}, graph)
        self.fill(scope, self.draw(st.integers(1, 3)), depth + 1)
        if not scope.items:
            self.layer(scope, "input")
        self.close(scope)
        if graph:
            reads_a_name(scope)
        return scope

    # -- items ------------------------------------------------------------------------------------

    def layer(self, scope: Scope, src: str) -> None:
        c, h, w = scope.shapes[src]
        options: list[tuple[str, dict[str, Any], Shape]] = []
        for out in (self.pick(CHANNELS), c):
            k, s = self.pick([1, 3, 5]), self.pick([1, 1, 2])
            conv: dict[str, Any] = {"out": out, "kernel": k, "stride": s}
            if self.chance(3):
                conv["norm"] = "batchnorm"
            if self.chance(3):
                conv["act"] = self.pick(["relu", "silu", "hardswish"])
            options.append(("conv", conv, (out, conv_size(h, k, s), conv_size(w, k, s))))
        divisors = [g for g in range(1, c + 1) if c % g == 0]
        options += [
            ("batchnorm", {}, (c, h, w)),
            ("layernorm2d", {}, (c, h, w)),
            ("frozen_batchnorm", {}, (c, h, w)),
            ("layer_scale", {"layout": self.pick(["torchvision", "timm"])}, (c, h, w)),
            ("drop_path", {"p": 0.2}, (c, h, w)),
            ("eca", {}, (c, h, w)),
            ("channel_shuffle", {"groups": self.pick(divisors)}, (c, h, w)),
            (self.pick(["relu", "gelu", "hardsigmoid", "identity"]), {}, (c, h, w)),
            ("spatial_mean", {}, (c, 1, 1)),
        ]
        # a group of one value is refused by torch at batch 1, and so by netspec: these specs are to fit
        grouped = [g for g in divisors if c // g * h * w >= 2]
        if grouped:
            options.append(("groupnorm", {"groups": self.pick(grouped)}, (c, h, w)))
        parts = self.pick(divisors)
        options.append(("channel_split", {"parts": parts, "index": parts - 1}, (c // parts, h, w)))
        if h >= 2 and w >= 2:
            options.append(("maxpool", {"kernel": 2}, (c, h // 2, w // 2)))
        if 2 * max(h, w) <= MAX_SIDE:
            options.append(
                ("upsample", {"scale": 2, "mode": self.pick(["nearest", "bilinear"])}, (c, 2 * h, 2 * w))
            )
            out = self.pick(CHANNELS)
            options.append(("conv_transpose", {"out": out}, (out, 2 * h, 2 * w)))
        kind, params, shape = self.pick(options)
        self.add(scope, kind, params, shape, src)

    def merge_some(self, scope: Scope) -> None:
        """A merge of 2 to 4 outputs, made to fit (a projection where none fits), or made to clash."""
        kind = self.pick(["concat", "add", "mul", "select"])
        n = self.draw(st.integers(2, 4))
        base = self.source(scope)
        c, h, w = scope.shapes[base]
        if self.want_clash and self.clash is None and self.chance(2):
            self.clashing(scope, kind, base)
            return
        names = [base]
        maps = [v for v in ["input", *scope.order] if v != base]
        for _ in range(n - 1 if kind != "select" else max(1, n - 2)):
            if kind == "concat":
                fits = [v for v in maps if scope.shapes[v][1:] == (h, w)]
            elif kind == "mul":
                fits = [v for v in maps if scope.shapes[v] in ((c, h, w), (c, 1, 1))]
            else:
                fits = [v for v in maps if scope.shapes[v] == (c, h, w)]
            fits = [v for v in fits if v not in names]
            if fits and self.chance(2):
                names.append(self.pick(fits))
            else:  # a projection of some output with the base's size (a 1x1 conv, or its spatial mean)
                near = [v for v in maps if scope.shapes[v][1:] == (h, w)] or [base]
                src = self.pick(near)
                if kind == "mul" and self.chance(2):
                    src = self.add(scope, "spatial_mean", {}, (scope.shapes[src][0], 1, 1), src)
                    shape: Shape = (c, 1, 1)
                else:
                    shape = (self.pick(CHANNELS) if kind == "concat" else c, h, w)
                names.append(self.add(scope, "conv", {"out": shape[0], "kernel": 1}, shape, src))
        if kind == "select":  # the logits: a 1x1 conv to M*C channels of the branches' mean
            pooled = self.add(scope, "spatial_mean", {}, (c, 1, 1), self.pick(names))
            logits = self.add(
                scope, "conv", {"out": len(names) * c, "kernel": 1}, (len(names) * c, 1, 1), pooled
            )
            names.append(logits)
        out = (sum(scope.shapes[v][0] for v in names), h, w) if kind == "concat" else (c, h, w)
        self.merge(scope, kind, names, out)

    def clashing(self, scope: Scope, kind: str, base: str) -> None:
        """A merge whose inputs disagree under PyTorch's rules: channels for add (a 1x1 conv to C + 1),
        for mul 2 and 3 channels (neither broadcasts), for select logits of the wrong width, the
        spatial size for concat (a stride-2 conv: ceil(H/2) < H for H > 1; else an upsampling)."""
        c, h, w = scope.shapes[base]
        if kind in ("add", "select"):  # select: two branches of C channels need 2C logits, not 2C + 1
            out = c + 1 if kind == "add" else 2 * c + 1
            names = [base, self.add(scope, "conv", {"out": out, "kernel": 1}, (out, h, w), base)]
        elif kind == "mul":
            two = self.add(scope, "conv", {"out": 2, "kernel": 1}, (2, h, w), base)
            names = [two, self.add(scope, "conv", {"out": 3, "kernel": 1}, (3, h, w), base)]
        elif h > 1 and w > 1:
            names = [
                base,
                self.add(scope, "conv", {"out": c, "stride": 2}, (c, (h + 1) // 2, (w + 1) // 2), base),
            ]
        else:
            names = [base, self.add(scope, "upsample", {"scale": 2}, (c, 2 * h, 2 * w), base)]
        if kind == "select":  # two equal branches and logits for three
            names = [base, base, names[1]]
        elif self.chance(2):
            names.reverse()
        self.clash = self.merge(scope, kind, names, scope.shapes[base])

    def container(self, scope: Scope, depth: int) -> None:
        src = self.source(scope)
        shape = scope.shapes[src]
        form = self.draw(st.integers(0, 2))
        if form == 0:
            inner = self.sublist(shape, depth, graph=not self.chance(4))
            self.add(scope, "sequential", {"layers": inner.items}, inner.shapes[inner.last], src, "s")
        elif form == 1:
            inner = self.sublist(shape, depth, graph=True)
            y = inner.shapes[inner.last]
            if y[1:] != shape[1:]:  # keep the input's size: the projection shortcut changes channels only
                inner.items.append({"adaptive_avgpool": list(shape[1:])})
                y = (y[0], *shape[1:])
            params: dict[str, Any] = {
                "body": inner.items,
                "shortcut": "projection" if y != shape else "identity",
            }
            self.add(scope, "residual", params, y, src, "r")
        else:
            branches = [self.sublist(shape, depth, graph=True) for _ in range(2)]
            outs = [b.shapes[b.last] for b in branches]
            if outs[0][1:] != outs[1][1:]:  # bring the second branch to the first's size
                branches[1].items.append({"adaptive_avgpool": list(outs[0][1:])})
                outs[1] = (outs[1][0], *outs[0][1:])
            y = (outs[0][0] + outs[1][0], *outs[0][1:])
            params = {"branches": [b.items for b in branches], "merge": "concat"}
            self.add(scope, "parallel", params, y, src, "p")

    def block(self, scope: Scope) -> None:
        src = self.source(scope)
        _, h, w = scope.shapes[src]
        out = self.pick(CHANNELS)
        if self.chance(2):
            join = self.pick(["add", "concat"])
            y = (2 * out if join == "concat" else out, h, w)
            self.add(scope, "fork", {"out": out, "join": join}, y, src, "b")
        else:
            stride = self.pick([1, 2])
            if conv_size(h, 3, stride) * conv_size(w, 3, stride) == 1:
                out = max(out, 2)  # its groupnorm(groups: 1) needs two values (see `layer`)
            self.add(
                scope,
                "skip",
                {"out": out, "stride": stride},
                (out, conv_size(h, 3, stride), conv_size(w, 3, stride)),
                src,
                "b",
            )


def item_params(item: Any) -> dict[str, Any] | None:
    """The mapping that holds an item's `name` and `from` (a stage entry holds them itself)."""
    if not isinstance(item, dict):
        return None
    if "block" in item:
        return item
    params = next(iter(item.values()))
    return params if isinstance(params, dict) else None


def reads_a_name(scope: Scope) -> None:
    """A graph list has a `from:` (netspec refuses dotted names elsewhere): else the first item reads
    `input`, which it reads anyway."""
    if not any("from" in (item_params(i) or {}) for i in scope.items):
        params = item_params(scope.items[0])
        assert params is not None  # the generator writes every item with a mapping
        params["from"] = "input"


@st.composite
def graph_spec(draw: Any, clash: bool = False) -> GraphSpec:
    """A whole spec: one top-level graph list split into stem, stages and head, ending in `outputs:`
    (the last output, the ones nothing else reads, and maybe others) or in a classifier head."""
    gen = Generator(draw, clash)
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(4, 20)), draw(st.integers(4, 20))
    top = gen.top = Scope({"input": (c, h, w)}, graph=True)
    gen.fill(top, draw(st.integers(1, 3)), 0)
    n_stem = len(top.items)
    gen.in_stages = True
    gen.fill(top, draw(st.integers(1, 4)), 0)
    if clash and gen.clash is None:
        gen.clashing(top, draw(st.sampled_from(["concat", "add", "mul", "select"])), gen.source(top))
    spec: dict[str, Any] = {"name": "fuzz_graph", "input": {"channels": c, "size": [h, w]}}
    if draw(st.booleans()):
        unread = [n for n in top.order[:-1] if n not in top.read]
        chosen = draw(st.lists(st.sampled_from(top.order), max_size=2, unique=True))
        keys = list(dict.fromkeys([top.last, *chosen, *unread]))
        spec["outputs"] = keys if draw(st.booleans()) else {f"out{i}": k for i, k in enumerate(keys)}
        head: list[Any] = []
    else:
        gen.close(top)
        classes = draw(st.integers(1, 5))
        spec["classes"] = classes
        pool: dict[str, Any] = {"kernel": "global", **({"from": top.last} if draw(st.booleans()) else {})}
        head = [{"avgpool": pool}, "flatten", {"linear": classes}]
    reads_a_name(top)
    spec["stem"] = top.items[:n_stem]
    if top.items[n_stem:]:
        spec["stages"] = top.items[n_stem:]
    if head:
        spec["head"] = head
    spec["blocks"] = BLOCKS
    return GraphSpec(yaml.safe_dump(spec, sort_keys=False), gen.clash)


def quick_settings(examples: int) -> settings:
    """Hypothesis settings for a few graph specs in the default run: no deadline or database, and no
    shrinking (shrinking a failing spec as drawn takes minutes)."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
