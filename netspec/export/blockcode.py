"""The code of a generated block class: constructor lines that build its slots (optional ones set to None
where an instance has none) and a straight-line forward, as torchvision's Bottleneck reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .blockclass import BlockClass, T, TArg, TLeaf, TRef, optional
from .code import lit
from .graph import Placer, forward_lines, merge_named
from .names import SHORTCUT_VAR, assign, is_attribute, member


def expr(t: T, value: Callable[[TArg], str | None], cond: Callable[[T, list[bool]], str | None]) -> str:
    """The constructor expression of a slot, with argument values from `value`."""
    if isinstance(t, TLeaf):
        parts = []
        for a in t.args:
            code = value(a)
            if code is not None:
                parts.append(f"{a.name}={code}" if a.keyword else code)
        return f"{t.ctor}({', '.join(parts)})"
    if isinstance(t, TRef):
        return f"{t.cls.name}({', '.join(f'{a.name}={value(a)}' for a in t.args)})"
    parts = []
    for k, item in enumerate(t.items):
        code = expr(item, value, cond)
        if t.names is not None:
            code = f"({lit(t.names[k])}, {code})"
        c = cond(item, t.present)
        parts.append(f"*([{code}] if {c} else [])" if c else code)
    return f"{'_sequential' if t.names is not None else 'nn.Sequential'}({', '.join(parts)})"


def _class_value(a: TArg) -> str | None:
    if a.param is not None:
        return a.param
    if a.omitted():
        return None
    return lit(a.known()[0])


def _class_cond(t: T, parent: list[bool]) -> str | None:
    return t.cond if optional(t, parent) else None


def class_code(cls: BlockClass, helpers: set[str]) -> dict[str, Any]:
    """What templates/block.py.j2 renders. `helpers` collects what the file needs (`torch.cat`)."""
    everyone = [True] * len(cls.instances)
    init: list[str] = []
    if cls.form == "graph":  # every instance has every module (the same structure): no optional slots
        placer = Placer("self")
        for slot, t in cls.slots():
            init += placer.place(slot, expr(t, _class_value, _class_cond))
        return _class_dict(cls, init, forward_lines(cls.steps, cls.outputs))
    if cls.merge_cond is not None:
        init.append(f"self.{cls.merge_attr} = {cls.merge_cond}")
    optional_slots = set()
    for slot, t in cls.slots():
        code = expr(t, _class_value, _class_cond)
        c = _class_cond(t, everyone)
        if c:
            optional_slots.add(slot)
            kind = t.cls.name if isinstance(t, TRef) else t.ctor if isinstance(t, TLeaf) else "nn.Sequential"
            # (a name that is not an attribute is added as None: nn.Module keeps the slot)
            unset = assign("self", slot, "None")
            init += [f"self.{slot}: {kind} | None = None" if is_attribute(slot) else unset]
            init += [f"if {c}:", f"    {assign('self', slot, code)}"]
        else:
            init.append(assign("self", slot, code))
    return _class_dict(cls, init, _forward(cls, optional_slots, helpers))


def _class_dict(cls: BlockClass, init: list[str], forward: list[str]) -> dict[str, Any]:
    signature = ", ".join(
        ["self", *(f"{p.name}: {p.annotation()}" if p.annotation() else p.name for p in cls.params)]
    )
    returns = "dict[str, Tensor]" if cls.outputs else "Tensor"
    return {
        "name": cls.name,
        "doc": cls.doc,
        "signature": signature,
        "init": init,
        "forward": forward,
        "returns": returns,
    }


def _forward(cls: BlockClass, optional_slots: set[str], helpers: set[str]) -> list[str]:
    forward: list[str] = []

    def steps(slots: list[tuple[str, T]], current: str) -> str:
        for slot, _ in slots:
            module = member("self", slot)
            if slot in optional_slots:
                if current == "x":
                    forward.append("out = x")
                    current = "out"
                forward.extend([f"if {module} is not None:", f"    out = {module}(out)"])
            else:
                forward.append(f"out = {module}({current})")
                current = "out"
        return current

    if cls.form == "parallel":
        calls = [f"{member('self', name)}(x)" for name, _ in cls.branches]
        forward.append(f"out = {merge_named(cls.merge()).source(calls)}")
        current = steps(cls.after, "out")
    else:
        current = steps(cls.body, "x")
        if cls.merge() != "none":
            if current == "x":
                forward.append("out = x")
            forward += _merge(cls, optional_slots, helpers)
            current = "out"
        current = steps(cls.after, current)
    forward.append(f"return {current}")
    return forward


def _merge(cls: BlockClass, optional_slots: set[str], helpers: set[str]) -> list[str]:
    lines = []
    shortcut = "x"
    if cls.shortcut is not None:
        sc = cls.shortcut[0]
        module = member("self", sc)
        if sc in optional_slots:
            shortcut = SHORTCUT_VAR
            lines += [f"{shortcut} = x", f"if {module} is not None:", f"    {shortcut} = {module}(x)"]
        else:
            shortcut = f"{module}(x)"
    merge = merge_named(cls.merge())
    if cls.inplace and merge.accumulates:  # where the torch backend adds in place (Residual.merges_in_place)
        lines.append(f"out += {shortcut}")
    else:  # the shortcut first: DenseNet's torch.cat([x, new features], 1)
        lines.append(f"out = {merge.source(['out', shortcut] if merge.elementwise else [shortcut, 'out'])}")
    if cls.merge_cond is not None:
        lines = [f"if self.{cls.merge_attr}:", *(f"    {line}" for line in lines)]
    return lines
