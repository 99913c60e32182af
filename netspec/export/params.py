"""A generated class's constructor arguments: every value that differs between its instances becomes
one, named `in_channels` / `out_channels` where it is the block's input / output width, after the spec's
`${name}` where the spec wrote one, else after the layer; a submodule only some instances have gets a
condition over the arguments (`stride != 1 or in_channels != out_channels`) where one fits, else a flag."""

from __future__ import annotations

from typing import Any

from ..layers.call import MISSING
from .blockclass import BlockClass, Param, T, TArg, TSeq, optional, targs
from .code import same
from .names import param_name

_MERGE_FLAGS = ("use_residual", "use_merge", "use_shortcut", "merge_")


def _compatible(a: list[Any], b: list[Any]) -> bool:
    return all(x is MISSING or y is MISSING or same(x, y) for x, y in zip(a, b, strict=True))


class _Arguments:
    """The arguments of one class, found slot by slot."""

    def __init__(self, cls: BlockClass, taken: set[str]):
        maps_in = all(len(i.in_shape) == 3 for i in cls.instances)
        maps_out = all(len(i.out_shape) == 3 for i in cls.instances)
        self.in_name = "in_channels" if maps_in else "in_features"
        self.out_name = "out_channels" if maps_out else "out_features"
        self.in_vec = [i.in_shape[0] for i in cls.instances]
        self.out_vec = [i.out_shape[0] for i in cls.instances]
        self.widening = [o - i for i, o in zip(self.in_vec, self.out_vec, strict=True)]
        self.taken = taken
        self.params: list[Param] = []

    def free(self, name: str | None) -> bool:
        return name is not None and name not in self.taken and all(p.name != name for p in self.params)

    def constant(self, arg: TArg) -> None:
        if MISSING in arg.values:  # in an optional submodule: the argument it follows, if any
            same_name = [p for p in self.params if p.name == arg.name or set(arg.hints) & p.hints]
            param = next((p for p in same_name if _compatible(p.values, arg.values)), None)
            if param is not None:
                arg.param = param.name

    def varying(self, arg: TArg) -> None:
        names = {p.name for p in self.params}
        if arg.widening and _compatible(arg.values, self.widening) and {self.in_name, self.out_name} <= names:
            arg.param = f"{self.out_name} - {self.in_name}"  # ChannelPad's zero channels
            return
        param = next(
            (
                p
                for p in self.params
                if _compatible(p.values, arg.values)
                and not (p.hints and arg.hints and p.hints.isdisjoint(arg.hints))
            ),
            None,
        )
        if param is None:
            param = self.new_param(arg)
            self.params.append(param)
        else:
            param.values = [
                q if q is not MISSING else v for q, v in zip(param.values, arg.values, strict=True)
            ]
        param.hints |= set(arg.hints)
        arg.param = param.name

    def new_param(self, arg: TArg) -> Param:
        """The block's input or output width where the values are those, else a name from the spec."""
        if _compatible(arg.values, self.in_vec) and self.free(self.in_name):
            return Param(self.in_name, list(self.in_vec))
        if _compatible(arg.values, self.out_vec) and self.free(self.out_name):
            return Param(self.out_name, list(self.out_vec))
        candidates = [*(param_name(h) for h in arg.hints), param_name(arg.suggest)]
        if arg.keyword and arg.name not in ("bias", "inplace"):
            candidates.append(param_name(arg.name))
        candidates.append(param_name(f"{arg.slot}_{arg.name}"))
        name = next((c for c in candidates if self.free(c)), None)
        base = param_name(f"{arg.slot}_{arg.name}") or "arg"
        k = 2
        while name is None:
            name = f"{base}{k}" if self.free(f"{base}{k}") else None
            k += 1
        return Param(name, list(arg.values))


def assign_params(cls: BlockClass, class_names: set[str]) -> None:
    """Fill `cls.params`, each TArg's `param`, the conditions and `cls.args_of`."""
    taken = set(class_names) | {s for s, _ in cls.slots()}
    found = _Arguments(cls, taken)
    for _slot, t in cls.slots():
        for arg in targs(t):
            if arg.constant():
                found.constant(arg)
            else:
                found.varying(arg)
    for p in found.params:  # where no instance uses an argument, any value does
        known = next(v for v in p.values if v is not MISSING)
        p.values = [v if v is not MISSING else known for v in p.values]
    cls.params = found.params
    everyone = [True] * len(cls.instances)
    for _slot, t in cls.slots():
        _conditions(cls, t, everyone, taken)
    merging = [m != "none" for m in cls.merges]
    if any(merging) and not all(merging):
        cls.merge_attr = next(a for a in _MERGE_FLAGS if a not in taken)
        cls.merge_cond = condition(cls, merging, everyone, cls.merge_attr, taken)
    order = {found.in_name: 0, found.out_name: 1}
    cls.params.sort(key=lambda p: (order.get(p.name, 2), p.annotation() == "bool"))
    for k, inst in enumerate(cls.instances):
        cls.args_of[inst.path] = {p.name: p.values[k] for p in cls.params}


def _conditions(cls: BlockClass, t: T, parent: list[bool], taken: set[str]) -> None:
    if optional(t, parent):
        t.cond = condition(cls, t.present, parent, f"use_{t.slot}", taken)
    if isinstance(t, TSeq):
        for item in t.items:
            _conditions(cls, item, t.present, taken)


def _atoms(cls: BlockClass) -> list[tuple[str, str, list[bool]]]:
    """Simple tests over the arguments: (code, negated code, value per instance)."""
    params = {p.name: p for p in cls.params}
    atoms: list[tuple[str, str, list[bool]]] = []
    for p in cls.params:
        if "stride" in p.name and p.annotation() == "int":
            atoms.append((f"{p.name} != 1", f"{p.name} == 1", [v != 1 for v in p.values]))
    for a, b in (("in_channels", "out_channels"), ("in_features", "out_features")):
        if a in params and b in params and params[a].annotation() == params[b].annotation() == "int":
            vec = [x != y for x, y in zip(params[a].values, params[b].values, strict=True)]
            atoms.append((f"{a} != {b}", f"{a} == {b}", vec))
    for p in cls.params:
        if p.annotation() == "bool":
            atoms.append((p.name, f"not {p.name}", [bool(v) for v in p.values]))
    return atoms


def condition(cls: BlockClass, want: list[bool], mask: list[bool], flag: str, taken: set[str]) -> str:
    """Code true exactly in the instances (where `mask`) that have the submodule: a test of the
    arguments where one fits, else a new flag argument."""
    atoms = _atoms(cls)
    candidates: list[tuple[str, list[bool]]] = []
    for x in range(len(atoms)):
        for y in range(x + 1, len(atoms)):
            (at, af, av), (bt, bf, bv) = atoms[x], atoms[y]
            either = [p or q for p, q in zip(av, bv, strict=True)]
            candidates.append((f"{at} or {bt}", either))
            candidates.append((f"{af} and {bf}", [not e for e in either]))
    for at, af, av in atoms:
        candidates.append((at, av))
        candidates.append((af, [not v for v in av]))
    for code, vec in candidates:
        if all(v == w for v, w, m in zip(vec, want, mask, strict=True) if m):
            return code
    params = {p.name for p in cls.params}
    name = param_name(flag) or "flag"
    k = 2
    while name in taken or name in params:
        name = f"{param_name(flag) or 'flag'}{k}"
        k += 1
    cls.params.append(Param(name, [bool(w) for w in want]))
    return name
