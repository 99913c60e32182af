"""`netspec report --check`: the static counts against two counters that run the built module.

How the comparison is made, layer by layer (every leaf row of the analysis, by module path):

- fvcore's FlopCountAnalysis, `.by_module()`, one sample, the model in eval mode: its numbers are
  MACs (one multiply-add = 1) and netspec's MACs follow fvcore's convention exactly (conv and linear
  without bias, batch norm 2 per element, adaptive/global average pooling 1 per input element), so
  the row's MACs must equal fvcore's count for that module.
- torch.utils.flop_counter.FlopCounterMode: it counts FLOPs = 2 x MACs of convolutions and matrix
  products only (no bias, no batch norm, no pooling), so a conv or linear row must show
  2 x its MACs there, and every other row 0.

A disagreement is a finding (exit 1), not a user error: e.g. fvcore does not count PyTorch's
`padding='same'` convolution overload (`aten::_convolution_mode`, used for even kernels), so such a
layer shows 0 in fvcore.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from .analysis import Analysis, analyze
from .layers import KINDS
from .memory import check_memory, estimate
from .spec import Spec


@dataclass
class LayerCheck:
    path: str
    kind: str
    macs: int  # netspec
    fvcore_macs: int
    torch_flops: int
    torch_expected: int  # 2 x MACs for conv/linear, else 0

    @property
    def fvcore_ok(self) -> bool:
        return self.macs == self.fvcore_macs

    @property
    def torch_ok(self) -> bool:
        return self.torch_flops == self.torch_expected

    @property
    def ok(self) -> bool:
        return self.fvcore_ok and self.torch_ok

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "macs": self.macs,
            "fvcore_macs": self.fvcore_macs,
            "torch_flops": self.torch_flops,
            "torch_expected_flops": self.torch_expected,
            "fvcore_agrees": self.fvcore_ok,
            "torch_agrees": self.torch_ok,
        }


@dataclass
class CheckResult:
    analysis: Analysis
    layers: list[LayerCheck]
    fvcore_total: int
    torch_total: int
    fvcore_unsupported: dict[str, int] = field(default_factory=dict)

    @property
    def disagreements(self) -> list[LayerCheck]:
        return [c for c in self.layers if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.disagreements

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.analysis.name,
            "ok": self.ok,
            "layers_checked": len(self.layers),
            "macs": self.analysis.macs,
            "fvcore_macs": self.fvcore_total,
            "torch_flops": self.torch_total,
            "fvcore_unsupported_ops": self.fvcore_unsupported,
            "disagreements": [c.to_json() for c in self.disagreements],
        }


def check_counts(spec: Spec, input_size: int | tuple[int, int] | None = None) -> CheckResult:
    """Build the module, run fvcore and FlopCounterMode on one random sample, compare per layer.
    Refused first (SpecSizeError) when that forward pass would exceed the memory cap."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .torch_backend import build

    with warnings.catch_warnings():
        # fvcore.nn scripts its focal loss at import time, and torch says torch.jit.script is deprecated
        warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    a = analyze(spec, input_size)
    check_memory(spec, estimate(a, "a forward pass of one sample (fvcore, FlopCounterMode)", batch=1))
    model = build(spec, input_size=input_size, seed=0).eval()
    x = torch.randn(1, *a.input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fv = FlopCountAnalysis(model, x)
        fv.unsupported_ops_warnings(False)
        fv.uncalled_modules_warnings(False)
        by_module = fv.by_module()
        unsupported = dict(fv.unsupported_ops())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
    root = type(model).__name__
    torch_counts = {
        k[len(root) + 1 :]: sum(v.values())
        for k, v in counter.get_flop_counts().items()
        if k.startswith(root)
    }
    checks = []
    for row in a.rows:
        if not row.is_layer:
            continue
        # FlopCounterMode counts convolutions and matrix products only (LayerKind.matmul)
        expected = 2 * row.macs if KINDS[row.kind].matmul else 0
        checks.append(
            LayerCheck(
                row.path,
                row.kind,
                row.macs,
                int(by_module.get(row.path, 0)),
                int(torch_counts.get(row.path, 0)),
                expected,
            )
        )
    return CheckResult(a, checks, int(by_module.get("", 0)), int(counter.get_total_flops()), unsupported)


def format_check(result: CheckResult) -> str:
    """Plain text: one line per disagreeing layer, then a verdict."""
    lines = []
    a = result.analysis
    for c in result.disagreements:
        what = []
        if not c.fvcore_ok:
            what.append(f"fvcore {c.fvcore_macs:,} MACs vs netspec {c.macs:,}")
        if not c.torch_ok:
            what.append(f"FlopCounterMode {c.torch_flops:,} FLOPs vs expected {c.torch_expected:,}")
        lines.append(f"disagree  {c.path} ({c.kind}): " + "; ".join(what))
    if result.fvcore_unsupported:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(result.fvcore_unsupported.items()))
        lines.append(f"note: fvcore skipped ops it cannot count: {ops}")
    lines.append(
        f"totals: netspec {a.macs:,} MACs, fvcore {result.fvcore_total:,} MACs; "
        f"FlopCounterMode {result.torch_total:,} FLOPs (conv/linear only)"
    )
    n = len(result.layers)
    if result.ok:
        lines.append(f"ok: all {n} layers agree with fvcore (MACs) and FlopCounterMode (FLOPs = 2 x MACs)")
    else:
        lines.append(f"{len(result.disagreements)} of {n} layers disagree")
    return "\n".join(lines)
