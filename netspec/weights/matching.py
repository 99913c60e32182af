"""Pairing a checkpoint's tensors with a model's: by name, then by structure, never by a guess.

Two tensors can only pair when they have the same role (the key's last part: weight, bias,
running_mean, ...) and the same shape; the tensors of one (role, shape) are a *group*. Within a
group, a model tensor takes a checkpoint tensor on the first evidence that singles it out:

1. name: the same key;
2. name ending: the same last parts of the key, at least one of them a name rather than an index
   (`stage1.0.conv1.weight` and `layer1.0.conv1.weight` end alike in `0.conv1.weight`), and no
   other tensor of the group, on either side, ends so;
3. name beginning: the same leading parts, the last of them a name (`aux1.fc2.weight` and
   `aux1.8.weight` begin with `aux1`), and no other tensor of the group, on either side, begins so;
4. module: another tensor of the same module is paired, so its siblings follow (a conv's bias
   goes with its weight; a batch norm's statistics with its affine parameters);
5. only candidate: one tensor of the group is left on each side;
6. order: tensors registered along one chain of the network are registered in the order they run,
   in any implementation; so the group's remaining tensors pair in order, but only where the model
   has no two of them on parallel branches (a residual block's body and shortcut, an Inception
   block's branches, an auxiliary head beside the trunk, or the children of a module whose forward
   netspec cannot read). Across parallel branches, registration order is an accident of the code
   (torchvision's RegNet registers the shortcut before the body, netspec after it), so a group
   left with tensors on parallel branches is *ambiguous*: it is reported, never paired.
7. order across branches, only when the caller asserts it (`trust_order=True`, `--trust-order`) and
   only when the tensors left on the two sides have the same roles and shapes in the same order.

`num_batches_tracked` (a batch norm's counter) follows the same steps but is never required.

What these steps leave (outside ambiguous groups) is then read through the layout rules
(netspec/weights/layouts.py: a Linear weight as a 1x1 conv's, a block's own parameter as its module's)
and paired by the same steps; such pairs record their rules in `Pairing.layouts`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..modules import AuxNetwork, Parallel, Residual

Shape = tuple[int, ...]
Group = tuple[str, Shape]  # (role, shape)
Label = tuple[str, str]  # (kind of branch, name): two different labels in one container run side by side
OPTIONAL_ROLE = "num_batches_tracked"  # a BN counter: absent from old checkpoints, never required

NAME, ENDING, BEGINNING, MODULE, ONLY = "name", "name ending", "name beginning", "module", "only candidate"
ORDER, TRUSTED_ORDER = "order", "order across branches"
EVIDENCE = (NAME, ENDING, BEGINNING, MODULE, ONLY, ORDER, TRUSTED_ORDER)


def shape_of(t: Tensor) -> Shape:
    return tuple(int(d) for d in t.shape)


def role(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def module_of(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def optional(key: str) -> bool:
    return role(key) == OPTIONAL_ROLE


@dataclass(frozen=True)
class Ambiguity:
    """Tensors of one shape that the checkpoint's names and structure do not tell apart: one entry
    per role (a batch norm's weight, bias and statistics are one ambiguity, not four)."""

    shape: Shape
    members: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]  # (role, model keys, checkpoint keys)
    branches: str  # where the model runs them side by side, e.g. "'layer1.0' (body, downsample)"

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r for r, _, _ in self.members)

    @property
    def model_keys(self) -> tuple[str, ...]:
        return self.members[0][1]

    @property
    def checkpoint_keys(self) -> tuple[str, ...]:
        return self.members[0][2]

    def all_keys(self) -> tuple[set[str], set[str]]:
        """Every model key and every checkpoint key involved, of all roles."""
        return {k for _, d, _ in self.members for k in d}, {k for _, _, s in self.members for k in s}


@dataclass
class Pairing:
    """{model key: checkpoint key}, how each pair was found, and what could not be paired."""

    mapping: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)  # model key -> one of EVIDENCE
    mis_shaped: list[tuple[str, Shape, Shape]] = field(default_factory=list)  # (key, ckpt, model)
    ambiguous: list[Ambiguity] = field(default_factory=list)
    same_order: bool = False  # the tensors left unpaired have the same roles and shapes in the same order
    layouts: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model key -> layout rules read by


def parallel_branches(model: nn.Module) -> dict[str, dict[str, Label | None]]:
    """{container path: {child name: branch label, or None for a child that runs after the merge}}
    for every module whose children do not all run one after another."""
    found: dict[str, dict[str, Label | None]] = {}
    for path, module in model.named_modules():
        names = [name for name, _ in module.named_children()]
        if len(names) < 2:
            continue
        labels: dict[str, Label | None]
        if isinstance(module, Residual):
            labels = {
                name: ("body", "body")
                if i < module.__n_body__
                else ("shortcut", name)
                if i < module.__n_before_merge__
                else None
                for i, name in enumerate(names)
            }
        elif isinstance(module, Parallel):
            labels = {
                name: ("branch", name) if i < module.__n_branches__ else None for i, name in enumerate(names)
            }
        elif isinstance(module, AuxNetwork):
            aux = set(module.__aux_indices__)
            labels = {name: ("aux", name) if i in aux else ("trunk", "trunk") for i, name in enumerate(names)}
        elif isinstance(module, nn.Sequential):
            continue  # runs its children in order
        else:  # a forward netspec cannot read (a plug-in, a model from elsewhere): assume no order
            labels = {name: ("child", name) for name in names}
        found[path] = labels
    return found


class _Matcher:
    def __init__(
        self,
        source: dict[str, Tensor],
        target: dict[str, Tensor],
        branches: dict[str, dict[str, Label | None]] | None,
        trust_order: bool,
    ):
        self.source, self.target = source, target
        self.branches = branches
        self.trust_order = trust_order
        self.result = Pairing()
        self.used: set[str] = set()
        # the unpaired keys of each group, in registration order (dicts as ordered sets)
        self.free_dst: dict[Group, dict[str, None]] = defaultdict(dict)
        self.free_src: dict[Group, dict[str, None]] = defaultdict(dict)

    def pair(self, dst: str, src: str, how: str) -> None:
        self.result.mapping[dst] = src
        self.result.evidence[dst] = how
        self.used.add(src)
        group = (role(dst), shape_of(self.target[dst]))
        self.free_dst[group].pop(dst, None)
        self.free_src[group].pop(src, None)

    def run(self) -> Pairing:
        for key, t in self.target.items():
            if key in self.source:
                if shape_of(self.source[key]) == shape_of(t):
                    self.pair(key, key, NAME)
                else:
                    self.result.mis_shaped.append((key, shape_of(self.source[key]), shape_of(t)))
        for key, t in self.target.items():
            if key not in self.result.mapping:
                self.free_dst[(role(key), shape_of(t))][key] = None
        for key, t in self.source.items():
            if key not in self.used:
                self.free_src[(role(key), shape_of(t))][key] = None
        self.settle()
        for group in list(self.free_dst):
            dst, src = list(self.free_dst[group]), list(self.free_src.get(group, ()))
            if len(dst) == len(src) > 1 and self.side_by_side(dst) is None:
                for d, s in zip(dst, src, strict=True):
                    self.pair(d, s, ORDER)
        self.settle()
        dst_left, src_left = self.pairable()
        self.result.same_order = bool(dst_left) and self.tokens(dst_left, self.target) == self.tokens(
            src_left, self.source
        )
        if self.trust_order and self.result.same_order:
            for d, s in zip(dst_left, src_left, strict=True):
                self.pair(d, s, TRUSTED_ORDER)
            self.settle()
        self.result.ambiguous = self.ambiguities()
        return self.result

    def pairable(self) -> tuple[list[str], list[str]]:
        """The required keys left on each side, in registration order, of the groups that could still
        pair: as many on each side (a new head's tensors, for one, cannot)."""
        groups = {
            g for g, free in self.free_dst.items() if free and len(free) == len(self.free_src.get(g, ()))
        }
        return (
            [k for k in self.target if k not in self.result.mapping and self.group(k, self.target) in groups],
            [k for k in self.source if k not in self.used and self.group(k, self.source) in groups],
        )

    @staticmethod
    def group(key: str, tensors: dict[str, Tensor]) -> Group | None:
        return None if optional(key) else (role(key), shape_of(tensors[key]))

    @staticmethod
    def tokens(keys: list[str], tensors: dict[str, Tensor]) -> list[Group]:
        return [(role(k), shape_of(tensors[k])) for k in keys]

    def settle(self) -> None:
        """Names' endings and beginnings, modules and only candidates, until none pairs anything more."""
        while True:
            before = len(self.result.mapping)
            for group in list(self.free_dst):
                self.by_name_parts(group, _endings, ENDING)
                self.by_name_parts(group, _beginnings, BEGINNING)
            self.by_module()
            for group in list(self.free_dst):
                dst, src = self.free_dst[group], self.free_src.get(group, {})
                if len(dst) == len(src) == 1:
                    self.pair(next(iter(dst)), next(iter(src)), ONLY)
            if len(self.result.mapping) == before:
                return

    def by_name_parts(
        self,
        group: Group,
        parts_of: Callable[[dict[str, None], int], dict[tuple[str, ...], list[str]]],
        how: str,
    ) -> None:
        """Pair keys of `group` that alone, on each side, share the same `length` parts, longest first."""
        dst, src = self.free_dst[group], self.free_src.get(group, {})
        if not dst or not src:
            return
        longest = max(key.count(".") for key in (*dst, *src)) + 1
        for length in range(longest, 0, -1):
            dst_parts, src_parts = parts_of(dst, length), parts_of(src, length)
            for parts, keys in dst_parts.items():
                partners = src_parts.get(parts, [])
                if len(keys) == 1 and len(partners) == 1:
                    self.pair(keys[0], partners[0], how)

    def by_module(self) -> None:
        """Siblings of paired tensors: if a model module's paired tensors all come from one
        checkpoint module (and that module's from this one), its other tensors come from it too."""
        partners: dict[str, set[str]] = defaultdict(set)
        back: dict[str, set[str]] = defaultdict(set)
        for dst, src in self.result.mapping.items():
            partners[module_of(dst)].add(module_of(src))
            back[module_of(src)].add(module_of(dst))
        for dst, t in self.target.items():
            if dst in self.result.mapping:
                continue
            mods = partners.get(module_of(dst), set())
            if len(mods) != 1:
                continue
            (src_module,) = mods
            if back[src_module] != {module_of(dst)}:
                continue
            src = f"{src_module}.{role(dst)}" if src_module else role(dst)
            if src in self.source and src not in self.used and shape_of(self.source[src]) == shape_of(t):
                self.pair(dst, src, MODULE)

    def side_by_side(self, keys: list[str]) -> tuple[str, list[str]] | None:
        """A container in which the model runs two of `keys` on parallel branches, with the branch
        names; None if they all lie along one chain."""
        if self.branches is None:
            return None
        seen: dict[str, dict[Label, None]] = defaultdict(dict)
        for key in keys:
            parts = key.split(".")[:-1]
            for depth in range(len(parts)):
                container = ".".join(parts[:depth])
                labels = self.branches.get(container)
                label = labels.get(parts[depth]) if labels else None
                if label is not None:
                    seen[container][label] = None
        for container, met in seen.items():
            if len(met) > 1:
                return container, [name for _, name in met]
        return None

    def ambiguities(self) -> list[Ambiguity]:
        """The groups left with several tensors on each side, merged where they are the same modules'
        (a batch norm's weight, bias and statistics are one ambiguity, not four)."""
        merged: dict[
            tuple[Shape, tuple[str, ...], tuple[str, ...]], list[tuple[str, list[str], list[str]]]
        ] = {}
        for (r, shape), free in self.free_dst.items():
            dst, src = list(free), list(self.free_src.get((r, shape), ()))
            if r == OPTIONAL_ROLE or len(dst) < 2 or len(src) != len(dst):
                continue
            modules = (shape, tuple(map(module_of, dst)), tuple(map(module_of, src)))
            merged.setdefault(modules, []).append((r, dst, src))
        found = []
        for (shape, _, _), members in merged.items():
            where = self.side_by_side(members[0][1])
            branches = f"'{where[0] or '<model>'}' ({', '.join(where[1])})" if where else "the model"
            found.append(Ambiguity(shape, tuple((r, tuple(d), tuple(s)) for r, d, s in members), branches))
        return found


def _endings(keys: dict[str, None], length: int) -> dict[tuple[str, ...], list[str]]:
    """Keys by their last `length` parts (the role and more), where those name something (not
    indices alone)."""
    found: dict[tuple[str, ...], list[str]] = defaultdict(list)
    if length < 2:
        return found
    for key in keys:
        parts = tuple(key.split("."))
        if len(parts) >= length and any(not p.isdigit() for p in parts[-length:-1]):
            found[parts[-length:]].append(key)
    return found


def _beginnings(keys: dict[str, None], length: int) -> dict[tuple[str, ...], list[str]]:
    """Keys by their first `length` parts (never the whole key), where the last of them is a name: an
    index is a position, which two implementations need not share."""
    found: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for key in keys:
        parts = tuple(key.split("."))
        if len(parts) > length and not parts[length - 1].isdigit():
            found[parts[:length]].append(key)
    return found


def match_state_dicts(
    source: dict[str, Tensor],
    target: dict[str, Tensor],
    branches: dict[str, dict[str, Label | None]] | None = None,
    *,
    trust_order: bool = False,
    layouts: bool = True,
) -> Pairing:
    """Pair checkpoint tensors (`source`) with model tensors (`target`): see the module docstring.
    `branches` is `parallel_branches(model)`; without it, order is trusted everywhere. `layouts`: then
    pair what is left through the layout rules (netspec/weights/layouts.py)."""
    pairing = _Matcher(source, target, branches, trust_order).run()
    return _in_other_layouts(pairing, source, target, branches, trust_order) if layouts else pairing


def _in_other_layouts(
    first: Pairing,
    source: dict[str, Tensor],
    target: dict[str, Tensor],
    branches: dict[str, dict[str, Label | None]] | None,
    trust_order: bool,
) -> Pairing:
    """The tensors the first pairing left (outside its ambiguous groups), read through the layout rules
    and paired by the same steps; each pair found so records its rules in `layouts`."""
    from .layouts import layout_views  # it reads this module's helpers

    stuck_dst: set[str] = set()
    stuck_src: set[str] = set()
    for a in first.ambiguous:
        dst_keys, src_keys = a.all_keys()
        stuck_dst |= dst_keys
        stuck_src |= src_keys
    used = set(first.mapping.values())
    free_target = [k for k in target if k not in first.mapping and k not in stuck_dst and not optional(k)]
    free_source = [k for k in source if k not in used and k not in stuck_src and not optional(k)]
    views = layout_views(source, target, free_source, free_target) if free_target else {}
    if not views:
        return first
    seen = {key: source[v.source_key].reshape(v.shape) for key, v in views.items()}
    second = _Matcher(seen, {k: target[k] for k in free_target}, branches, trust_order).run()
    for dst, key in second.mapping.items():
        first.mapping[dst] = views[key].source_key
        first.evidence[dst] = second.evidence[dst]
        first.layouts[dst] = views[key].rules
    if second.ambiguous:  # --trust-order's hint: do the tensors left come in the same order?
        first.same_order = second.same_order and (first.same_order or not first.ambiguous)
    for a in second.ambiguous:  # named by the checkpoint's own keys
        members = tuple((r, d, tuple(views[k].source_key for k in s)) for r, d, s in a.members)
        first.ambiguous.append(Ambiguity(a.shape, members, a.branches))
    return first


__all__ = ["EVIDENCE", "Ambiguity", "Pairing", "match_state_dicts", "parallel_branches"]
