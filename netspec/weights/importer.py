"""`import_weights`: a checkpoint into a spec's module, and the report of what went where."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import Problem, SpecError
from ..spec import Spec
from .checkpoint import Checkpoint, load_checkpoint, printable
from .layouts import RULES
from .matching import (
    EVIDENCE,
    NAME,
    TRUSTED_ORDER,
    Ambiguity,
    Pairing,
    Shape,
    match_state_dicts,
    optional,
    parallel_branches,
    shape_of,
)
from .reference import Verification, VerificationError, reference_builder
from .reference import verify as verify_against

SHOWN = 5  # keys named per category in an error


def _fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _keys(keys: tuple[str, ...] | list[str], limit: int | None = SHOWN) -> str:
    shown = keys if limit is None else keys[:limit]
    more = f", and {len(keys) - len(shown)} more" if len(shown) < len(keys) else ""
    return ", ".join(printable(k) for k in shown) + more


def describe_ambiguity(a: Ambiguity, limit: int | None = SHOWN) -> str:
    n = len(a.model_keys)
    return (
        f"{n} model and {n} checkpoint tensors of shape {_fmt_shape(a.shape)} ({', '.join(a.roles)}) "
        f"that nothing tells apart: model {_keys(a.model_keys, limit)}; checkpoint "
        f"{_keys(a.checkpoint_keys, limit)}; {a.branches} runs them on parallel branches, "
        "so the checkpoint's order proves nothing"
    )


@dataclass
class ImportReport:
    """What import_weights did. Keys are the model's unless said otherwise."""

    checkpoint: str
    matched: list[str] = field(default_factory=list)  # loaded under their own name
    remapped: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint key, model key)
    evidence: dict[str, str] = field(default_factory=dict)  # model key -> how it was paired
    missing: list[str] = field(default_factory=list)  # model tensors left at their initial values
    unexpected: list[str] = field(default_factory=list)  # checkpoint tensors not used
    mis_shaped: list[tuple[str, Shape, Shape]] = field(default_factory=list)  # (key, ckpt, model)
    ambiguous: list[Ambiguity] = field(default_factory=list)  # groups left unpaired: never guessed
    wrong_dtype: list[tuple[str, str, str]] = field(default_factory=list)  # (model key, ckpt, model dtype)
    converted: dict[str, int] = field(default_factory=dict)  # "float16 -> float32": tensors
    non_finite: list[str] = field(default_factory=list)  # loaded tensors holding NaN or Inf
    ignored: list[str] = field(default_factory=list)  # checkpoint entries that are not tensors
    nested_under: list[str] = field(default_factory=list)  # keys unwrapped to reach the state_dict
    layouts: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model key -> layout rules read by
    verification: Verification | None = None

    def by_rule(self) -> dict[str, list[tuple[str, str]]]:
        """{layout rule: [(checkpoint key, model key)]} of the tensors read through each rule."""
        source = {dst: src for src, dst in self.remapped}
        found: dict[str, list[tuple[str, str]]] = {}
        for dst, rules in self.layouts.items():
            for rule in rules:
                found.setdefault(rule, []).append((source.get(dst, dst), dst))
        return found

    @property
    def loaded(self) -> int:
        return len(self.matched) + len(self.remapped)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped or self.ambiguous or self.wrong_dtype)

    def format(self, limit: int | None = None) -> str:
        """A summary for the command line; `limit` caps the lines per list (None: all)."""
        counts = {how: 0 for how in EVIDENCE}  # of the remapped: by name only through a layout rule
        for _, dst in self.remapped:
            counts[self.evidence.get(dst, "order")] += 1
        how = ", ".join(
            f"{n} by {'name in another layout' if k == NAME else k}" for k, n in counts.items() if n
        )
        lines = [
            f"loaded {self.loaded} tensors from {printable(self.checkpoint, 300)}: "
            f"{len(self.matched)} by name, {len(self.remapped)} remapped" + (f" ({how})" if how else "")
        ]
        if self.nested_under:
            lines.append("state_dict found under " + " > ".join(repr(k) for k in self.nested_under))
        for conversion, n in self.converted.items():
            lines.append(f"converted {n} tensors to the model's dtype ({conversion})")
        described = {rule.name: rule.description for rule in RULES}
        for rule, pairs in self.by_rule().items():
            lines.append(f"layout rule {rule}: {len(pairs)} tensors read as {described[rule]}")
        if self.verification is not None:
            lines.append(self.verification.format())
        elif counts.get(TRUSTED_ORDER):
            lines.append(
                f"note: {counts[TRUSTED_ORDER]} tensors were paired by order across parallel branches on "
                "the caller's word (trust_order); nothing checked it: --verify REF would"
            )

        def section(title: str, items: list[str]) -> None:
            if not items:
                return
            lines.append(f"{title} ({len(items)}):")
            shown = items if limit is None else items[:limit]
            lines.extend(f"  {item}" for item in shown)
            if len(shown) < len(items):
                lines.append(f"  ... and {len(items) - len(shown)} more")

        section(
            "remapped (checkpoint -> model, evidence)",
            [f"{printable(s)} -> {printable(d)} ({self.evidence.get(d, '?')})" for s, d in self.remapped],
        )
        source = {dst: src for src, dst in self.remapped} | {k: k for k in self.matched}
        section(
            "read through layout rules (checkpoint -> model, rules)",
            [f"{printable(source[d])} -> {printable(d)} ({' + '.join(r)})" for d, r in self.layouts.items()],
        )
        section(
            "wrong shape (checkpoint vs model)",
            [f"{printable(k)} {_fmt_shape(a)} vs {_fmt_shape(b)}" for k, a, b in self.mis_shaped],
        )
        section(
            "wrong dtype (checkpoint vs model)",
            [f"{printable(k)} {a} vs {b}" for k, a, b in self.wrong_dtype],
        )
        section(
            "ambiguous (left at their initial values)", [describe_ambiguity(a, limit) for a in self.ambiguous]
        )
        section("missing (kept their initial values)", [printable(k) for k in self.missing])
        section("unexpected (not used)", [printable(k) for k in self.unexpected])
        section("ignored (not tensors)", [printable(k) for k in self.ignored])
        section("holding NaN or Inf (loaded as they are)", [printable(k) for k in self.non_finite])
        return "\n".join(lines)


def _dtype_fits(source: Tensor, target: Tensor) -> bool:
    """A checkpoint tensor whose values the model's tensor can take: a float for a float (any
    precision), an integer for an integer (a batch norm's counter). Never complex, never bool."""
    if source.is_complex() or source.dtype == torch.bool:
        return False
    return source.is_floating_point() == target.is_floating_point()


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _input_shape(spec: Spec) -> tuple[int, int, int]:
    size = spec.input.size
    h, w = (size, size) if isinstance(size, int) else size
    return (spec.input.channels, h, w)


def import_weights(
    spec_or_model: Spec | nn.Module | str | Path,
    checkpoint_path: str | Path,
    *,
    strict: bool = True,
    verify: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    trust_order: bool = False,
) -> tuple[nn.Module, ImportReport]:
    """Load a checkpoint (torchvision, timm, ...) into a spec's module.

    `spec_or_model`: a Spec (built here), a module built from one, or a spec file / zoo name.
    Returns (model, report); the model's training mode is as it was (a fresh build trains).
    Tensors pair by name, then by structure (see `netspec.weights.matching`); tensors that nothing
    tells apart are never paired by a guess: they make the import incomplete (`report.ambiguous`).
    strict=True: every model tensor must be filled and every checkpoint tensor used, else SpecError
    naming the missing, unexpected, mis-shaped and ambiguous keys with their shapes (the model is
    left untouched). strict=False loads what pairs and reports the rest (fine-tuning a new head),
    but still fails if nothing pairs.
    `verify`: a reference, `torchvision.models.NAME` or `timm:NAME`, built with random weights; the
    checkpoint is loaded into it by name and its logits are compared with the model's on a seeded
    random batch of `input_shape` (C, H, W; default: the spec's input). A difference raises
    `VerificationError` (a SpecError holding the verification and the report); equality is recorded in
    `report.verification`.
    `trust_order`: the caller asserts that the checkpoint registers parallel branches in the model's
    order (torchvision's Inception blocks do; its RegNet does not); tensors left ambiguous then pair
    in order, if both sides have the same roles and shapes in the same order. Check with `verify`.
    """
    if verify is not None:
        reference_builder(verify)  # a name that is not a known model fails before any work
    model, name, spec_shape, classes = _subject(spec_or_model)
    input_shape = input_shape or spec_shape
    if verify is not None and input_shape is None:
        raise SpecError("verifying an nn.Module needs its input shape: pass input_shape=(C, H, W)")

    checkpoint = load_checkpoint(checkpoint_path)
    source = checkpoint.tensors
    target = model.state_dict()
    pairing = match_state_dicts(source, target, parallel_branches(model), trust_order=trust_order)
    mapping, wrong_dtype = _fitting_dtypes(pairing.mapping, source, target)
    report = _report(str(checkpoint_path), checkpoint, pairing, mapping, wrong_dtype, target)
    required = [k for k in target if not optional(k)]
    if not any(k in mapping for k in required):
        raise SpecError(_mismatch(report, source, target, name, "nothing in it fits"))
    if strict and not report.complete:
        raise SpecError(_mismatch(report, source, target, name, "it does not fit", pairing.same_order))
    new_state = dict(target)
    for dst, src in mapping.items():  # a layout rule's tensor is the same numbers in the model's shape
        new_state[dst] = source[src].reshape(target[dst].shape) if dst in pairing.layouts else source[src]
    model.load_state_dict(new_state, strict=True)
    if verify is not None:
        assert input_shape is not None
        report.verification = _verified(model, source, verify, tuple(input_shape), classes, report)
    return model, report


def _subject(
    spec_or_model: Spec | nn.Module | str | Path,
) -> tuple[nn.Module, str, tuple[int, int, int] | None, int | None]:
    """The module to load into, its name, and (for a spec) its input shape and classes."""
    from ..torch_backend import build

    if isinstance(spec_or_model, (str, Path)):
        from ..resolve import load_spec
        from ..zoo import find_spec

        spec_or_model = load_spec(find_spec(str(spec_or_model)))
    if isinstance(spec_or_model, Spec):
        classes = spec_or_model.classes if isinstance(spec_or_model.classes, int) else None
        return build(spec_or_model), spec_or_model.name, _input_shape(spec_or_model), classes
    if isinstance(spec_or_model, nn.Module):
        return spec_or_model, type(spec_or_model).__name__, None, None
    raise TypeError(f"import_weights takes a Spec or an nn.Module, not {type(spec_or_model).__name__}")


def _fitting_dtypes(
    pairs: dict[str, str], source: dict[str, Tensor], target: dict[str, Tensor]
) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """The pairs whose checkpoint tensor can be copied into the model's, and (key, dtypes) of the rest."""
    mapping = dict(pairs)
    wrong_dtype = []
    for dst, src in list(mapping.items()):
        if not _dtype_fits(source[src], target[dst]):
            if not optional(dst):  # a batch norm's counter of another type is left out, not an error
                wrong_dtype.append((dst, _name(source[src].dtype), _name(target[dst].dtype)))
            del mapping[dst]
    return mapping, wrong_dtype


def _report(
    path: str,
    checkpoint: Checkpoint,
    pairing: Pairing,
    mapping: dict[str, str],
    wrong_dtype: list[tuple[str, str, str]],
    target: dict[str, Tensor],
) -> ImportReport:
    """What the pairing loads, and every tensor on either side it leaves out, each under one heading."""
    source = checkpoint.tensors
    used = set(mapping.values())
    unresolved_dst: set[str] = {k for k, _, _ in wrong_dtype}
    unresolved_src: set[str] = {pairing.mapping[k] for k in pairing.mapping if k not in mapping}
    for a in pairing.ambiguous:
        dst_keys, src_keys = a.all_keys()
        unresolved_dst |= dst_keys
        unresolved_src |= src_keys
    # a name present on both sides with two shapes, neither side of which found another partner
    mis_shaped = [m for m in pairing.mis_shaped if m[0] not in mapping and m[0] not in used]
    bad_names = {k for k, _, _ in mis_shaped}
    converted: dict[str, int] = {}
    for dst, src in mapping.items():
        if source[src].dtype != target[dst].dtype and target[dst].is_floating_point():
            conversion = f"{_name(source[src].dtype)} -> {_name(target[dst].dtype)}"
            converted[conversion] = converted.get(conversion, 0) + 1
    left_out_dst = bad_names | unresolved_dst
    left_out_src = bad_names | unresolved_src
    return ImportReport(
        checkpoint=path,
        matched=[k for k in target if mapping.get(k) == k],
        remapped=[(mapping[k], k) for k in target if k in mapping and mapping[k] != k],
        evidence={k: pairing.evidence[k] for k in mapping},
        missing=[k for k in target if k not in mapping and k not in left_out_dst and not optional(k)],
        unexpected=[k for k in source if k not in used and k not in left_out_src and not optional(k)],
        mis_shaped=mis_shaped,
        ambiguous=pairing.ambiguous,
        wrong_dtype=wrong_dtype,
        converted=converted,
        non_finite=[k for k, src in mapping.items() if not bool(torch.isfinite(source[src]).all())],
        ignored=checkpoint.ignored,
        nested_under=checkpoint.nested_under,
        layouts={k: rules for k, rules in pairing.layouts.items() if k in mapping},
    )


def _verified(
    model: nn.Module,
    source: dict[str, Tensor],
    ref: str,
    input_shape: tuple[int, ...],
    classes: int | None,
    report: ImportReport,
) -> Verification:
    result = verify_against(model, source, ref, input_shape, classes)
    report.verification = result
    if not result.equal:
        raise VerificationError(result, report)
    return result


def _mismatch(
    report: ImportReport,
    source: dict[str, Tensor],
    target: dict[str, Tensor],
    name: str,
    what: str,
    same_order: bool = False,
) -> list[Problem]:
    problems = [
        Problem(
            f"checkpoint '{printable(report.checkpoint, 300)}' ({len(source)} tensors) does not load into "
            f"'{name}' ({len(target)} tensors): {what}",
            hint=None if not report.loaded else f"{report.loaded} tensors paired by name or by structure",
        )
    ]

    def listing(title: str, items: list[str]) -> None:
        if items:
            more = f", and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
            problems.append(Problem(f"{title} ({len(items)}): {', '.join(items[:SHOWN])}{more}"))

    listing(
        "wrong shape (checkpoint vs model)",
        [f"{printable(k)} {_fmt_shape(a)} vs {_fmt_shape(b)}" for k, a, b in report.mis_shaped],
    )
    listing(
        "wrong dtype (checkpoint vs model)", [f"{printable(k)} {a} vs {b}" for k, a, b in report.wrong_dtype]
    )
    for a in report.ambiguous[:SHOWN]:
        problems.append(Problem(f"ambiguous: {describe_ambiguity(a)}"))
    if len(report.ambiguous) > SHOWN:
        problems.append(Problem(f"... and {len(report.ambiguous) - SHOWN} more ambiguous groups"))
    if report.ambiguous:
        problems[-1].hint = (
            "give the spec's modules the checkpoint's names (a layer's `name:`, a block's "
            "`shortcut_name`) or re-save the checkpoint under the spec's names, so that names decide"
            + (
                "; or, if the checkpoint registers parallel branches in the spec's order (the tensors "
                "left have the same shapes in the same order on both sides), --trust-order "
                "(trust_order=True) pairs them by order: check the result with --verify"
                if same_order
                else "; their order cannot decide either: the tensors left are registered in "
                "different orders of shapes on the two sides"
            )
        )
    listing(
        "missing from the checkpoint",
        [f"{printable(k)} {_fmt_shape(shape_of(target[k]))}" for k in report.missing],
    )
    listing(
        "unexpected in the checkpoint",
        [f"{printable(k)} {_fmt_shape(shape_of(source[k]))}" for k in report.unexpected],
    )
    return problems
