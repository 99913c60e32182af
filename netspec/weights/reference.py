"""Checking an import against a reference implementation: the same checkpoint, loaded by name into
torchvision's or timm's model, must give the same logits as the spec's module.

Matching tensors by name and shape proves that the shapes fit, not that the function is the same:
torchvision's ResNet-50 weights load completely into the paper's ResNet-50 (`specs/resnet50.yaml`,
stride in the first 1x1 conv) although that network computes something else. Comparing logits on a
random batch catches it.

A reference is named, never imported from user text: `torchvision.models.NAME` for a name in
torchvision's classification registry, `timm:NAME` for a model timm knows. It is built with random
weights (`weights=None`, `pretrained=False`): nothing is downloaded.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..errors import Problem, SpecError
from .checkpoint import printable
from .matching import optional

if TYPE_CHECKING:  # the importer imports this module
    from .importer import ImportReport

TORCHVISION_PREFIX = "torchvision.models."
TIMM_PREFIX = "timm:"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
SEED = 0
BATCH = 2
RTOL = 1e-4  # of the largest reference logit: float32 rounding across two implementations
ATOL = 1e-6
MIN_SPREAD = 1e-5  # logits that vary less with the input (a zero classifier) tell no networks apart
SHOWN = 5


@dataclass(frozen=True)
class Verification:
    """The spec's logits against the reference's, on one seeded random batch in eval mode."""

    reference: str
    input_shape: tuple[int, ...]  # of the batch, (N, C, H, W)
    max_abs_diff: float
    tolerance: float
    same_shape: bool = True
    spread: float = 1.0  # of the reference's logits across the batch: how much the input changes them

    @property
    def conclusive(self) -> bool:
        return self.spread >= MIN_SPREAD

    @property
    def equal(self) -> bool:
        # NaN is never equal; flat logits prove nothing
        return self.same_shape and self.conclusive and self.max_abs_diff <= self.tolerance

    def format(self) -> str:
        batch = "x".join(map(str, self.input_shape))
        if not self.same_shape:
            return f"logits differ from {self.reference}'s: the outputs have different shapes"
        if not self.conclusive:
            return (
                f"inconclusive: {self.reference}'s logits on a seeded random batch {batch} are flat "
                f"(they vary by {self.spread:.3g} with the input): they cannot tell two networks apart"
            )
        verdict = "equal" if self.equal else "differ from"
        return (
            f"logits {verdict} {self.reference}'s on a seeded random batch {batch}: "
            f"max abs diff {self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g})"
        )


class VerificationError(SpecError):
    """The import completed, but the spec's module does not compute what the reference does."""

    def __init__(self, verification: Verification, report: ImportReport):
        self.verification = verification
        self.report = report
        super().__init__(
            Problem(
                verification.format(),
                hint="the spec is a different network from the reference, or tensors of equal shape "
                "were paired wrongly; a spec named after the reference's modules loads by name"
                if verification.conclusive
                else "verify with trained weights, or any whose classifier is not constant",
            )
        )


def reference_builder(ref: str) -> Callable[[int], nn.Module]:
    """A function building the reference named by `ref` with random weights and a given number of
    classes. The name is checked here, against the library's registry, before anything is built."""
    shown = printable(ref, 200)
    if ref.startswith(TORCHVISION_PREFIX):
        name = ref[len(TORCHVISION_PREFIX) :]
        import torchvision

        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            raise SpecError(
                Problem(
                    f"--verify '{shown}': torchvision has no classification model '{printable(name, 80)}'",
                    hint=_did_you_mean(name, known, TORCHVISION_PREFIX),
                )
            )

        def build_torchvision(num_classes: int) -> nn.Module:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # GoogLeNet's and Inception's notes on their default init
                return torchvision.models.get_model(name, weights=None, num_classes=num_classes)

        return build_torchvision
    if ref.startswith(TIMM_PREFIX):
        name = ref[len(TIMM_PREFIX) :]
        try:
            import timm
        except ImportError:
            raise SpecError(
                Problem(f"--verify '{shown}' needs timm, which is not installed", hint="pip install timm")
            ) from None
        if not _NAME.fullmatch(name) or not timm.is_model(name.split(".")[0]):
            raise SpecError(
                Problem(
                    f"--verify '{shown}': timm has no model '{printable(name, 80)}'",
                    hint=_did_you_mean(name, timm.list_models(), TIMM_PREFIX),
                )
            )

        def build_timm(num_classes: int) -> nn.Module:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return timm.create_model(name, pretrained=False, num_classes=num_classes)

        return build_timm
    raise SpecError(
        Problem(
            f"--verify '{shown}' is not a reference model",
            hint="name one as torchvision.models.NAME (e.g. torchvision.models.resnet50) or timm:NAME "
            "(e.g. timm:resnet50d)",
        )
    )


def build_reference(ref: str, num_classes: int) -> nn.Module:
    """The reference model named by `ref`, with random weights and `num_classes` outputs."""
    return reference_builder(ref)(num_classes)


def _did_you_mean(name: str, known: list[str], prefix: str) -> str | None:
    from ..errors import did_you_mean

    hint = did_you_mean(name, known)
    return hint.replace("'", f"'{prefix}", 1) if hint else None


def load_into_reference(reference: nn.Module, tensors: dict[str, Tensor], ref: str) -> None:
    """The checkpoint into the reference, by name only (torch's own load_state_dict)."""
    expected = reference.state_dict()
    missing = [k for k in expected if k not in tensors and not optional(k)]
    unexpected = [k for k in tensors if k not in expected and not optional(k)]
    mis_shaped = [
        f"{printable(k)} {list(tensors[k].shape)} vs {list(expected[k].shape)}"
        for k in expected
        if k in tensors and tensors[k].shape != expected[k].shape
    ]
    problems = []
    for title, items in (
        ("missing from the checkpoint", [printable(k) for k in missing]),
        ("not in the reference", [printable(k) for k in unexpected]),
        ("wrong shape (checkpoint vs reference)", mis_shaped),
    ):
        if items:
            more = f", and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
            problems.append(Problem(f"{title} ({len(items)}): {', '.join(items[:SHOWN])}{more}"))
    if problems:
        head = Problem(
            f"--verify {printable(ref, 200)}: the checkpoint does not load into the reference by name",
            hint="--verify compares with a reference whose module names the checkpoint uses",
        )
        raise SpecError([head, *problems])
    state = {k: tensors.get(k, v) for k, v in expected.items()}
    reference.load_state_dict(state, strict=True)


def compare_logits(
    model: nn.Module, reference: nn.Module, input_shape: tuple[int, ...], ref: str
) -> Verification:
    """Both modules in eval mode on one seeded random batch (the global RNG is left alone)."""
    generator = torch.Generator().manual_seed(SEED)
    x = torch.randn(BATCH, *input_shape, generator=generator)
    outputs = []
    for module, who in ((model, "the spec's module"), (reference, ref)):
        was_training = module.training
        try:
            with torch.no_grad():
                out = module.eval()(x)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise SpecError(
                f"--verify {printable(ref, 200)}: {who} fails on a batch of shape {list(x.shape)}: "
                f"{type(exc).__name__}: {printable(first, 300)}"
            ) from None
        finally:
            module.train(was_training)
        if not isinstance(out, Tensor):
            raise SpecError(f"--verify {printable(ref, 200)}: {who} does not return one tensor of logits")
        outputs.append(out.float())
    ours, theirs = outputs
    tolerance = RTOL * float(theirs.abs().max()) + ATOL
    if ours.shape != theirs.shape:
        return Verification(ref, tuple(x.shape), float("inf"), tolerance, same_shape=False)
    diff = float((ours - theirs).abs().max())
    spread = float((theirs - theirs.mean(0, keepdim=True)).abs().max())  # how much the input matters
    return Verification(ref, tuple(x.shape), diff, tolerance, spread=spread)


def verify(
    model: nn.Module,
    tensors: dict[str, Tensor],
    ref: str,
    input_shape: tuple[int, ...],
    classes: int | None = None,
) -> Verification:
    """Build the reference `ref`, load `tensors` into it by name, compare its logits with `model`'s.
    `classes`: the reference's outputs (default: the model's, from one forward pass)."""
    if classes is None:
        was_training = model.training
        with torch.no_grad():
            classes = int(model.eval()(torch.zeros(1, *input_shape)).shape[-1])
        model.train(was_training)
    reference = reference_builder(ref)(classes)
    load_into_reference(reference, tensors, ref)
    return compare_logits(model, reference, input_shape, ref)
