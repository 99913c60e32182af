"""Lowering: a validated spec becomes the IR, with every name and shape inferred on the way.

Blocks are expanded here rather than earlier because their structure can depend on the shape that
reaches them (a projection shortcut only where the shape changes, MobileNet's `in_channels * t`).
Problems are collected rather than raised one by one, so a user sees all of them at once; after a
problem the shape downstream is unknown (None) and only parameter checks continue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .errors import (
    Problem,
    SpecError,
    SpecShapeError,
    SpecSizeError,
    clean_pydantic_errors,
    did_you_mean,
)
from .expr import ExprError, has_expression, substitute
from .ir import AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode
from .layers import KINDS, ShapeError
from .layers.base import Shape, check_module_name, numel
from .source import locate, locate_key
from .spec import BlockDef, Spec, StageSpec

Src = tuple[str | int, ...]
COMPOSITES = ("sequential", "parallel", "residual", "aux")
MAX_BLOCK_NESTING = 32  # blocks used as layers inside blocks; a self-using block must stop by `when`
# a layer whose output no one else reads and whose backward does not need it: the next
# activation may overwrite it in place (as torchvision's inplace ReLUs do)
_FRESH_OUTPUT = {"conv", "batchnorm", "linear", "maxpool", "avgpool", "adaptive_avgpool", "lrn"}
_SCALAR = "\0scalar"  # marks `kind: value` for a kind that takes no scalar
_TYPE_NAMES = {"int": int, "float": (int, float), "bool": bool, "str": str}
# generated shortcut convs ignore the spec's conv defaults: they are conv + BN by definition
_PLAIN_CONV = {"norm": "none", "act": "none", "padding": 0, "dilation": 1, "groups": 1}


@dataclass
class Namespace:
    """Names children of one module: by index (nn.Sequential) or by kind counter (conv1, bn1, ...)."""

    style: str  # "numbered" | "named"
    names: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)
    count: int = 0

    def assign(self, prefix: str, explicit: str | None) -> str:
        if explicit is not None:
            name = explicit
        elif self.style == "numbered":
            name = str(self.count)
        else:
            # relu6 -> relu6_1, not relu61
            sep = "_" if prefix[-1].isdigit() else ""
            n = self.counters.get(prefix, 0) + 1
            while f"{prefix}{sep}{n}" in self.names:
                n += 1
            self.counters[prefix] = n
            name = f"{prefix}{sep}{n}"
        if name in self.names:
            raise _NameClashError(name)
        self.names.add(name)
        self.count += 1
        return name


class _NameClashError(Exception):
    pass


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def split_item(item: Any) -> tuple[str, dict[str, Any]]:
    """`relu`, `{relu: null}`, `{dropout: 0.5}`, `{conv: {...}}` -> (kind, params)."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping) and len(item) == 1:
        kind, value = next(iter(item.items()))
        if not isinstance(kind, str):
            raise ValueError("a layer kind must be a word such as `conv`")
        if value is None:
            return kind, {}
        if isinstance(value, Mapping):
            return kind, dict(value)
        kind_def = KINDS.get(kind)
        if kind_def is not None and kind_def.shorthand:
            return kind, {kind_def.shorthand: value}
        if kind == "avgpool":
            return kind, {"kernel": value}
        return kind, {_SCALAR: value}  # an error unless `kind` is unknown (reported as such)
    if isinstance(item, Mapping):
        keys = ", ".join(map(str, item))
        raise ValueError(
            f"a layer is a one-key mapping such as `conv: {{out: 64}}`, found keys {keys}"
            " (is a parameter indented at the level of the layer kind?)"
        )
    raise ValueError(f"a layer is a mapping such as `relu: {{}}`, not {type(item).__name__}")


class Lowerer:
    def __init__(self, spec: Spec, input_size: tuple[int, int] | None = None):
        self.spec = spec
        self.problems: list[tuple[Problem, bool]] = []  # (problem, is_shape_problem)
        self.layer_count = 0
        self.expanding: list[str] = []  # the blocks being expanded, outermost first
        self.param_count = 0
        size = input_size or _pair(spec.input.size)
        self.input_shape: Shape = (spec.input.channels, size[0], size[1])
        self.globals: dict[str, Any] = {
            "classes": spec.classes,
            "input_channels": spec.input.channels,
            "input_height": size[0],
            "input_width": size[1],
        }
        for key, value in spec.vars.items():
            try:
                self.globals[key] = self.value(value, self.globals, ("vars", key))
            except _BadValueError as bad:
                self.problem(bad.message, bad.src)
        # spec-wide layer defaults may use expressions too: evaluated once, in the global scope
        self.defaults: dict[str, dict[str, Any]] = {}
        for kind, values in spec.defaults.items():
            if kind not in KINDS:
                hint = did_you_mean(kind, KINDS) or "defaults are per primitive layer kind"
                self.problem(f"unknown layer kind '{kind}' in `defaults`", ("defaults", kind), hint)
                continue
            try:
                self.defaults[kind] = {
                    k: self.value(v, self.globals, ("defaults", kind, k)) for k, v in values.items()
                }
            except _BadValueError as bad:
                self.problem(bad.message, bad.src)
        if self.problems:  # everything downstream reads the vars: report them alone
            raise SpecError([p for p, _ in self.problems])

    # -- problems ---------------------------------------------------------------------------
    def explicit_name(self, name: Any, src: Src) -> bool:
        """Check a `name:` given to a composite or a block instance (layers check their own)."""
        if name is None:
            return True
        try:
            if not isinstance(name, str):
                raise ValueError(f"a module name must be text, not {name!r}")
            check_module_name(name)
        except ValueError as exc:
            self.problem(str(exc), (*src, "name"))
            return False
        return True

    def problem(self, message: str, src: Src, hint: str | None = None, shape: bool = False) -> None:
        self.problems.append((Problem(message, src, locate(self.spec.raw, src), hint), shape))

    def value(self, v: Any, scope: Mapping[str, Any], src: Src) -> Any:
        """Evaluate `${...}` in a value (recursively through lists)."""
        if isinstance(v, list):
            return [self.value(x, scope, (*src, i)) for i, x in enumerate(v)]
        if has_expression(v):
            try:
                return substitute(v, scope)
            except ExprError as exc:
                raise _BadValueError(str(exc), src) from None
        return v

    # -- the model --------------------------------------------------------------------------
    def model(self) -> SeqNode:
        spec = self.spec
        x: Shape | None = self.input_shape
        root = SeqNode("", "", self.input_shape, self.input_shape, (), "model", role="model")
        root_ns = Namespace("named")
        target, target_ns = root, root_ns
        if spec.features:
            root_ns.assign("features", spec.features)
            target = SeqNode(spec.features, spec.features, x, x, (), "stem", role="features")
            target_ns = Namespace("numbered")
        stem, x = self.sequence(spec.stem, ("stem",), x, self.globals, target_ns, target.path, "stem")
        target.children += stem
        for i, stage in enumerate(spec.stages):
            nodes, x = self.stage(stage, ("stages", i), x, target_ns, target.path)
            target.children += nodes
        if target is not root:
            target.out_shape = x or target.in_shape
            root.children.append(target)
        head, x = self.sequence(spec.head, ("head",), x, self.globals, root_ns, "", "head")
        root.children += head
        if x is not None:
            root.out_shape = x
            if spec.classes is not None and x != (spec.classes,):
                self.problem(
                    f"the network outputs {_fmt(x)} but `classes` is {spec.classes}",
                    ("head",),
                    hint="end the head with `flatten` and `linear: {out: ${classes}}`",
                    shape=True,
                )
        if self.problems:
            problems = [p for p, _ in self.problems]
            cls = SpecShapeError if all(s for _, s in self.problems) else SpecError
            raise cls(problems)
        return root

    def stage(
        self, item: Any, src: Src, x: Shape | None, ns: Namespace, parent: str
    ) -> tuple[list[Node], Shape | None]:
        if not (isinstance(item, Mapping) and "block" in item):
            return self.item(item, src, x, self.globals, ns, parent, f"stage{src[-1] + 1}")
        try:
            fixed = {
                k: self.value(v, self.globals, (*src, k))
                for k, v in item.items()
                if k in ("block", "depth", "repeat", "name", "inline")
            }
            stage = StageSpec.model_validate({**item, **fixed})
        except _BadValueError as bad:
            self.problem(bad.message, bad.src)
            return [], None
        except ValidationError as exc:
            self._pydantic(exc, src, StageSpec)
            return [], None
        block = self.spec.blocks.get(stage.block)
        if block is None:
            hint = did_you_mean(stage.block, self.spec.blocks)
            self.problem(f"unknown block '{stage.block}'", (*src, "block"), hint or _blocks_hint(self.spec))
            return [], None
        if stage.depth > self.spec.limits.max_layers:
            raise SpecSizeError(
                Problem(
                    f"a stage of depth {stage.depth:,} has at least {stage.depth:,} layers, more than"
                    f" the limit of {self.spec.limits.max_layers:,}",
                    src,
                    locate(self.spec.raw, (*src, "depth")),
                    "lower the depth, or raise `limits.max_layers` if this is intended",
                )
            )
        section = stage.name or f"stage{src[-1] + 1}"
        args_raw = {k: v for k, v in (stage.model_extra or {}).items()}
        if stage.inline:
            container, cns, cpath = None, ns, parent
        else:
            try:
                name = ns.assign("stage", stage.name)
            except _NameClashError as clash:
                self.problem(f"module name '{clash}' is used twice", (*src, "name"))
                return [], None
            container = SeqNode(name, _join(parent, name), x or (), x or (), src, section, role="stage")
            cns, cpath = Namespace("numbered"), container.path
        nodes: list[Node] = []
        for index in range(stage.depth):
            scope = {**self.globals, "index": index}
            try:
                args = {k: self.value(v, scope, (*src, k)) for k, v in args_raw.items()}
                if index > 0 and "stride" in args:
                    args["stride"] = 1  # only a stage's first block downsamples
                bname = None
                if stage.block_name is not None:
                    bname = str(self.value(stage.block_name, scope, (*src, "block_name")))
                    check_module_name(bname)
            except _BadValueError as bad:
                self.problem(bad.message, bad.src)
                return nodes, None
            except ValueError as exc:
                self.problem(str(exc), (*src, "block_name"))
                return nodes, None
            before = (self.layer_count, self.param_count)
            n_problems = len(self.problems)
            new, x = self.block(block, stage.block, args, src, x, cns, cpath, section, bname)
            nodes += new
            if len(self.problems) > n_problems:
                break  # the same mistake would repeat in every block of the stage
            if index == 0 and stage.depth > 1:
                self._check_estimate(src, stage.depth, before)
        if container is None:
            return nodes, x
        container.children = nodes
        container.out_shape = x or container.in_shape
        return [container], x

    def _check_estimate(self, src: Src, depth: int, before: tuple[int, int]) -> None:
        """After one block of a deep stage, refuse early if the whole stage would be too large."""
        layers = self.layer_count + (self.layer_count - before[0]) * (depth - 1)
        params = self.param_count + (self.param_count - before[1]) * (depth - 1)
        limits = self.spec.limits
        if layers > limits.max_layers or params > limits.max_params:
            raise SpecSizeError(
                Problem(
                    f"this stage of {depth} blocks would bring the model to about {layers:,} layers"
                    f" and {params:,} parameters (limits: {limits.max_layers:,} layers,"
                    f" {limits.max_params:,} parameters)",
                    src,
                    locate(self.spec.raw, (*src, "depth")),
                    "lower depth or width, or raise `limits` if this is intended",
                )
            )

    # -- sequences and items ----------------------------------------------------------------
    def sequence(
        self,
        items: Any,
        src: Src,
        x: Shape | None,
        scope: Mapping[str, Any],
        ns: Namespace,
        parent: str,
        section: str,
    ) -> tuple[list[Node], Shape | None]:
        if not isinstance(items, list):
            self.problem("expected a list of layers", src)
            return [], None
        nodes: list[Node] = []
        for i, item in enumerate(items):
            new, x = self.item(item, (*src, i), x, scope, ns, parent, section)
            for node in new:
                prev = nodes[-1] if nodes else None
                if isinstance(node, LayerNode) and _can_run_inplace(node, prev):
                    node.inplace = True
                nodes.append(node)
        return nodes, x

    def item(
        self,
        item: Any,
        src: Src,
        x: Shape | None,
        scope: Mapping[str, Any],
        ns: Namespace,
        parent: str,
        section: str,
    ) -> tuple[list[Node], Shape | None]:
        try:
            kind, params = split_item(item)
        except ValueError as exc:
            self.problem(str(exc), src)
            return [], None
        psrc = (*src, kind) if isinstance(item, Mapping) else src
        if _SCALAR in params and (kind in KINDS or kind in COMPOSITES or kind in self.spec.blocks):
            self.problem(f"`{kind}` takes a mapping of parameters, e.g. `{kind}: {{...}}`", src)
            return [], None
        try:
            if "when" in params and not self.value(params.pop("when"), scope, (*psrc, "when")):
                return [], x
            if kind in KINDS:
                values = {k: self.value(v, scope, (*psrc, k)) for k, v in params.items()}
                return self.primitive(kind, values, psrc, x, ns, parent, section)
            if kind in COMPOSITES:
                return self.composite(kind, params, psrc, x, scope, ns, parent, section)
            if kind in self.spec.blocks:
                args = {k: self.value(v, scope, (*psrc, k)) for k, v in params.items()}
                name = args.pop("name", None)
                if not self.explicit_name(name, psrc):
                    return [], None
                if len(self.expanding) >= MAX_BLOCK_NESTING:
                    chain = " -> ".join(self.expanding[-3:])
                    self.problem(
                        f"blocks nest more than {MAX_BLOCK_NESTING} deep (... {chain} -> {kind}):"
                        f" does block '{kind}' contain itself without end?",
                        src,
                        "a block may use itself only under a `when:` that turns false",
                    )
                    return [], None
                self.expanding.append(kind)
                try:
                    return self.block(self.spec.blocks[kind], kind, args, psrc, x, ns, parent, section, name)
                finally:
                    self.expanding.pop()
        except _BadValueError as bad:
            self.problem(bad.message, bad.src)
            return [], None
        known = [*KINDS, *COMPOSITES, *self.spec.blocks]
        self.problem(
            f"unknown layer kind '{kind}'",
            src,
            did_you_mean(kind, known) or "see `netspec kinds` for the list",
        )
        return [], None

    def primitive(
        self,
        kind: str,
        values: dict[str, Any],
        src: Src,
        x: Shape | None,
        ns: Namespace,
        parent: str,
        section: str,
    ) -> tuple[list[Node], Shape | None]:
        p = self.params(kind, values, src)
        if p is None:
            return [], None
        expanded: list[tuple[str, Any]] = [(kind, p)]
        if kind == "conv" and (p.norm != "none" or p.act != "none"):
            # conv sugar: `conv: {norm: batchnorm, act: relu}` is three sibling layers
            norm, act = p.norm, p.act
            expanded = [("conv", p.model_copy(update={"norm": "none", "act": "none"}))]
            if norm != "none":
                bn = self.params(norm, {}, src)
                if bn is None:
                    return [], None
                expanded.append((norm, bn))
            if act != "none":
                a = self.params(act, {}, src)
                if a is None:
                    return [], None
                expanded.append((act, a))
        nodes: list[Node] = []
        for k, params in expanded:
            if x is None:
                return nodes, None
            node = self.layer(k, params, src, x, ns, parent, section)
            if node is None:
                return nodes, None
            nodes.append(node)
            x = node.out_shape
        return nodes, x

    def params(self, kind: str, values: dict[str, Any], src: Src) -> Any:
        layer = KINDS[kind]
        merged = {**self.defaults.get(kind, {}), **values}
        try:
            return layer.Params.model_validate(merged)
        except ValidationError as exc:
            self._pydantic(exc, src, layer.Params)
            return None

    def layer(
        self, kind: str, p: Any, src: Src, x: Shape, ns: Namespace, parent: str, section: str
    ) -> LayerNode | None:
        layer = KINDS[kind]
        try:
            name = ns.assign(layer.prefix, p.name)
        except _NameClashError as clash:
            self.problem(f"module name '{clash}' is used twice in '{parent or 'the model'}'", src)
            return None
        path = _join(parent, name)
        try:
            y = layer.infer(p, x)
        except ShapeError as exc:
            self.problem(f"{path} ({kind}): {exc}", src, shape=True)
            return None
        if any(d <= 0 for d in y):
            self.problem(
                f"{path} ({kind}): output size reaches 0 (input {_fmt(x)} -> {_fmt(y)})",
                src,
                "the input is too small for this many downsamplings; use a larger input size",
                shape=True,
            )
            return None
        cost = layer.cost(p, x, y)
        self.layer_count += 1
        self.param_count += cost.params
        limits = self.spec.limits
        if self.layer_count > limits.max_layers or self.param_count > limits.max_params:
            raise SpecSizeError(
                Problem(
                    f"the model grows past {self.layer_count:,} layers and "
                    f"{self.param_count:,} parameters at {path} (limits: "
                    f"{limits.max_layers:,} layers, {limits.max_params:,} parameters)",
                    src,
                    locate(self.spec.raw, src),
                    "reduce widths or depths, or raise `limits` if this is intended",
                )
            )
        return LayerNode(
            name, path, x, y, src, section, kind=kind, params=p, cost=cost, window=layer.window(p, x)
        )

    # -- composites -------------------------------------------------------------------------
    def composite(
        self,
        kind: str,
        params: dict[str, Any],
        src: Src,
        x: Shape | None,
        scope: Mapping[str, Any],
        ns: Namespace,
        parent: str,
        section: str,
    ) -> tuple[list[Node], Shape | None]:
        """`sequential`, `parallel` and `residual` written inline: anonymous blocks."""
        params = dict(params)
        name = self.value(params.pop("name", None), scope, (*src, "name"))
        if not self.explicit_name(name, src):
            return [], None
        if kind == "aux":
            return self.aux(params, name, src, x, scope, ns, parent, section)
        if kind == "sequential":
            if "layers" not in params:
                self.problem("`sequential` needs `layers`", src)
                return [], None
            params["body"] = params.pop("layers")
        try:
            block = BlockDef.model_validate(params)
        except ValidationError as exc:
            self._pydantic(exc, src, BlockDef)
            return [], None
        if kind == "parallel" and block.branches is None:
            self.problem("`parallel` needs `branches`", src)
            return [], None
        if kind == "residual" and block.merge == "none":
            block = block.model_copy(update={"merge": "add"})
        style = "numbered" if kind == "sequential" else "named"
        return self.block(
            block, kind, {}, src, x, ns, parent, section, name, scope=scope, style=style, def_src=src
        )

    def aux(
        self,
        params: dict[str, Any],
        name: str | None,
        src: Src,
        x: Shape | None,
        scope: Mapping[str, Any],
        ns: Namespace,
        parent: str,
        section: str,
    ) -> tuple[list[Node], Shape | None]:
        """An auxiliary classifier: only at the model's top level, where the runner can see it."""
        if set(params) - {"layers"} or "layers" not in params:
            self.problem("`aux` takes `layers` (and an optional `name`)", src)
            return [], x
        if parent or self.spec.features:
            self.problem(
                "an `aux` head must sit at the model's top level (not inside `features` or a block)",
                src,
            )
            return [], x
        if x is None:
            return [], None
        try:
            aname = ns.assign("aux", name)
        except _NameClashError as clash:
            self.problem(f"module name '{clash}' is used twice", src)
            return [], x
        nodes, y = self.sequence(
            params["layers"], (*src, "layers"), x, scope, Namespace("numbered"), aname, section
        )
        if y is None:
            return [], x
        if self.spec.classes is not None and y != (self.spec.classes,):
            self.problem(f"aux head '{aname}' outputs {_fmt(y)}, not ({self.spec.classes},)", src, shape=True)
        return [AuxNode(aname, aname, x, x, src, section, nodes, y)], x

    def block(
        self,
        block: BlockDef,
        kind: str,
        args: dict[str, Any],
        src: Src,
        x: Shape | None,
        ns: Namespace,
        parent: str,
        section: str,
        name: str | None,
        scope: Mapping[str, Any] | None = None,
        style: str = "named",
        def_src: Src | None = None,
    ) -> tuple[list[Node], Shape | None]:
        def_src = def_src if def_src is not None else ("blocks", kind)
        scope = self.bind(block, kind, args, src, x, def_src, scope)
        if scope is None or x is None:
            return [], None
        # an inline `sequential` writes its body as `layers` (renamed to `body` for BlockDef)
        body_src = (*def_src, "layers" if kind == "sequential" and def_src == src else "body")
        if block.inline:
            return self.sequence(block.body, body_src, x, scope, ns, parent, section)
        try:
            name = ns.assign(kind if style == "named" or kind in self.spec.blocks else "block", name)
        except _NameClashError as clash:
            self.problem(f"module name '{clash}' is used twice in '{parent or 'the model'}'", src)
            return [], None
        path = _join(parent, name)
        bns = Namespace(style)
        if block.branches is not None:
            return self.parallel(block, kind, name, path, src, def_src, x, scope, bns, section)
        body, y = self.sequence(block.body, body_src, x, scope, bns, path, section)
        if y is None:
            return [], None
        merge = block.merge
        shortcut: SeqNode | None = None
        if merge != "none":
            mode = block.shortcut if block.shortcut is not None else self.spec.shortcut
            try:
                merge, shortcut = self.shortcut(mode, block, x, y, scope, bns, path, section, def_src)
            except _BadValueError as bad:
                self.problem(f"{path} ({kind}): {bad.message}", bad.src, bad.hint, shape=True)
                return [], None
            except _NameClashError as clash:
                self.problem(
                    f"module name '{clash}' is used twice in '{path}'",
                    src,
                    "the shortcut takes the block's `shortcut_name` (default `downsample`); rename one",
                )
                return [], None
        if merge == "none":
            after, z = self.sequence(block.after, (*def_src, "after"), y, scope, bns, path, section)
            node = SeqNode(name, path, x, z or y, src, section, [*body, *after], "block", kind)
            return [node], z
        out = self.merged_shape(merge, x if shortcut is None else shortcut.out_shape, y)
        if isinstance(out, str):
            self.problem(f"{path} ({kind}): {out}", src, _merge_hint(merge), shape=True)
            return [], None
        if merge == "add" and self.spec.init.zero_gamma:
            _mark_zero_gamma(body)
        after, z = self.sequence(block.after, (*def_src, "after"), out, scope, bns, path, section)
        if after and _can_follow_merge(after[0]):
            after[0].inplace = True
        node = ResidualNode(
            name,
            path,
            x,
            z or out,
            src,
            section,
            kind,
            body,
            shortcut,
            merge,
            after,
            merge_flops=numel(out) if merge in ("add", "mul") else 0,
        )
        return [node], z

    def bind(
        self,
        block: BlockDef,
        kind: str,
        args: dict[str, Any],
        src: Src,
        x: Shape | None,
        def_src: Src,
        outer: Mapping[str, Any] | None,
    ) -> dict[str, Any] | None:
        """The scope of one block instance: globals, bound params, in_channels, computed vars."""
        scope: dict[str, Any] = dict(outer if outer is not None else self.globals)
        ok = True
        for key in args:
            if key not in block.params:
                hint = did_you_mean(key, block.params)
                declared = ", ".join(block.params) or "none"
                self.problem(
                    f"block '{kind}' has no parameter '{key}'",
                    (*src, key),
                    hint or f"its parameters: {declared}",
                )
                ok = False
        for key, default in block.params.items():
            if key in args:
                value = args[key]
                expected = _TYPE_NAMES.get(default) if isinstance(default, str) else None
                if expected and (
                    not isinstance(value, expected) or (isinstance(value, bool) and default != "bool")
                ):
                    self.problem(
                        f"parameter '{key}' of block '{kind}' must be {default}, got {value!r}", (*src, key)
                    )
                    ok = False
                scope[key] = value
            elif isinstance(default, str) and default in _TYPE_NAMES:
                self.problem(f"block '{kind}' needs parameter '{key}' ({default})", src)
                ok = False
            else:
                scope[key] = default
        if not ok:
            return None
        if x is not None:
            scope["in_channels"] = x[0]
            if len(x) == 3:
                scope["in_height"], scope["in_width"] = x[1], x[2]
        for key, value in block.vars.items():
            try:
                scope[key] = self.value(value, scope, (*def_src, "vars", key))
            except _BadValueError as bad:
                self.problem(bad.message, bad.src)
                return None
        return scope

    def parallel(
        self,
        block: BlockDef,
        kind: str,
        name: str,
        path: str,
        src: Src,
        def_src: Src,
        x: Shape,
        scope: Mapping[str, Any],
        bns: Namespace,
        section: str,
    ) -> tuple[list[Node], Shape | None]:
        branches: list[SeqNode] = []
        shapes: list[Shape] = []
        for i, items in enumerate(block.branches or []):
            bname = bns.assign("branch", None)
            bpath = _join(path, bname)
            bsrc = (*def_src, "branches", i)
            nodes, y = self.sequence(items, bsrc, x, scope, Namespace("numbered"), bpath, section)
            if y is None:
                return [], None
            branches.append(SeqNode(bname, bpath, x, y, bsrc, section, nodes, "branch"))
            shapes.append(y)
        out: Shape | str = shapes[0] if shapes else "a parallel block needs at least one branch"
        for s in shapes[1:]:
            if isinstance(out, str):
                break
            out = self.merged_shape(block.merge, out, s)
        if isinstance(out, str):
            listed = ", ".join(_fmt(s) for s in shapes)
            self.problem(f"{path} ({kind}): {out} (branch outputs: {listed})", src, shape=True)
            return [], None
        after, z = self.sequence(block.after, (*def_src, "after"), out, scope, bns, path, section)
        if after and _can_follow_merge(after[0]):
            after[0].inplace = True
        flops = numel(out) * (len(shapes) - 1) if block.merge == "add" else 0
        node = ParallelNode(name, path, x, z or out, src, section, kind, branches, block.merge, after, flops)
        return [node], z

    def shortcut(
        self,
        mode: Any,
        block: BlockDef,
        x: Shape,
        y: Shape,
        scope: Mapping[str, Any],
        ns: Namespace,
        path: str,
        section: str,
        def_src: Src,
    ) -> tuple[str, SeqNode | None]:
        """Resolve a shortcut mode against the block's real shapes: (merge, shortcut or identity)."""
        merge = block.merge
        ssrc = (*def_src, "shortcut")
        if isinstance(mode, list):
            nodes, z = self.sequence(
                mode, ssrc, x, scope, Namespace("numbered"), _join(path, block.shortcut_name), section
            )
            if z is None:
                raise _BadValueError("the shortcut layers are invalid", ssrc)
            ns.assign("shortcut", block.shortcut_name)
            sc_path = _join(path, block.shortcut_name)
            return merge, SeqNode(block.shortcut_name, sc_path, x, z, ssrc, section, nodes, "shortcut")
        if mode == "none":
            return "none", None
        same = x == y or (merge == "mul" and _broadcasts(x, y)) or (merge == "concat" and x[1:] == y[1:])
        if same:
            return merge, None
        if mode == "identity":
            raise _BadValueError(
                f"identity shortcut cannot {merge} input {_fmt(x)} with body output {_fmt(y)}",
                ssrc,
                "use `shortcut: projection` (1x1 conv + BN where the shape changes)",
            )
        if mode == "identity_if_possible":
            return "none", None
        if len(x) != 3 or len(y) != 3:
            raise _BadValueError(f"a {mode} shortcut needs feature maps, got {_fmt(x)} and {_fmt(y)}", ssrc)
        stride = -(-x[1] // y[1])
        if stride < 1 or -(-x[2] // y[2]) != stride or y[1] > x[1]:
            raise _BadValueError(
                f"the body changes {_fmt(x)} to {_fmt(y)}: no strided shortcut can follow", ssrc
            )
        s = stride
        if mode == "zero_pad":
            items: list[Any] = [{"channel_pad": {"out": y[0], "stride": s}}]
        elif mode == "avgpool_projection" and s > 1:
            items = [
                {"avgpool": {"kernel": s, "stride": s, "ceil_mode": True, "count_include_pad": False}},
                {"conv": {"out": y[0], "kernel": 1, "bias": False, **_PLAIN_CONV}},
                {"batchnorm": {}},
            ]
        else:  # projection, or avgpool_projection without downsampling
            items = [
                {"conv": {"out": y[0], "kernel": 1, "stride": s, "bias": False, **_PLAIN_CONV}},
                {"batchnorm": {}},
            ]
        sc_path = _join(path, block.shortcut_name)
        ns.assign("shortcut", block.shortcut_name)
        nodes, z = self.sequence(items, ssrc, x, scope, Namespace("numbered"), sc_path, section)
        if z is None:
            raise _BadValueError(f"{mode} shortcut failed for input {_fmt(x)}", ssrc)
        if merge in ("add", "mul") and z != y:
            raise _BadValueError(f"{mode} shortcut gives {_fmt(z)} but the body gives {_fmt(y)}", ssrc)
        return merge, SeqNode(block.shortcut_name, sc_path, x, z, ssrc, section, nodes, "shortcut")

    @staticmethod
    def merged_shape(merge: str, a: Shape, b: Shape) -> Shape | str:
        if merge == "add":
            return a if a == b else f"cannot add {_fmt(a)} and {_fmt(b)}: shapes differ"
        if merge == "mul":
            if _broadcasts(a, b):
                return tuple(max(p, q) for p, q in zip(a, b, strict=True))
            return f"cannot multiply {_fmt(a)} and {_fmt(b)}: shapes do not broadcast"
        if len(a) != len(b) or a[1:] != b[1:]:
            return f"cannot concat {_fmt(a)} and {_fmt(b)}: spatial sizes differ"
        return (a[0] + b[0], *a[1:])

    def _pydantic(self, exc: ValidationError, src: Src, model: type) -> None:
        for loc, err in clean_pydantic_errors(exc.errors()):
            msg = err["msg"]
            hint = None
            if err["type"] == "extra_forbidden":
                field = str(loc[-1]) if loc else ""
                fields = getattr(model, "model_fields", {})
                hint = did_you_mean(field, fields) or "allowed: " + ", ".join(fields)
                msg = f"unknown field '{field}'"
                where = locate_key(self.spec.raw, (*src, *loc))  # the key, not its value
                self.problems.append((Problem(msg, (*src, *loc), where, hint), False))
                continue
            elif err["type"] == "missing":
                msg = f"missing required field '{loc[-1]}'" if loc else "missing field"
            elif "input" in err and not isinstance(err["input"], (Mapping, list)):
                msg = f"{msg} (got {err['input']!r})"
            self.problem(msg, (*src, *loc), hint)


class _BadValueError(Exception):
    def __init__(self, message: str, src: Src, hint: str | None = None):
        super().__init__(message)
        self.message, self.src, self.hint = message, src, hint


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _fmt(shape: Shape) -> str:
    return "x".join(map(str, shape))


def _broadcasts(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(p == q or p == 1 or q == 1 for p, q in zip(a, b, strict=True))


def _merge_hint(merge: str) -> str:
    if merge == "add":
        return "make the body end at the input's shape, or use `shortcut: projection`"
    return "check the strides and paddings of the branches"


def _blocks_hint(spec: Spec) -> str:
    return "defined blocks: " + (", ".join(spec.blocks) or "none; add a `blocks:` section")


def _can_run_inplace(node: LayerNode, prev: Node | None) -> bool:
    from .layers.activation import Activation

    kind = KINDS[node.kind]
    if not isinstance(kind, Activation) or not kind.inplace_ok:
        return False
    if isinstance(prev, LayerNode):
        return prev.kind in _FRESH_OUTPUT
    return isinstance(prev, (ResidualNode, ParallelNode))


def _can_follow_merge(node: Node) -> bool:
    from .layers.activation import Activation

    if not isinstance(node, LayerNode):
        return False
    kind = KINDS[node.kind]
    return isinstance(kind, Activation) and kind.inplace_ok


def _mark_zero_gamma(body: list[Node]) -> None:
    """Zero-gamma: the last BN of a residual branch starts at 0, so the block starts as identity."""
    for node in reversed(body):
        if isinstance(node, LayerNode) and node.kind == "batchnorm":
            node.zero_init = True
            return


def lower(spec: Spec, input_size: tuple[int, int] | None = None) -> SeqNode:
    """The IR of a validated spec. Raises SpecError with every problem found."""
    return Lowerer(spec, input_size).model()
