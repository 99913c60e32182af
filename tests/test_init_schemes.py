"""Weight-init schemes with arguments (`init: {conv: {trunc_normal: {std: 0.02}}}`, a layer's `init:`):
the built module's weights follow torch's own `nn.init` draws (a two-sample Kolmogorov-Smirnov test
against draws of torch's function from another seed, and scipy's truncated normal), the exported source
starts bit for bit as the built module, and mistakes are located errors. The ConvNeXt init against
torchvision's, bit for bit, is in tests/test_zoo_convnext_tiny.py."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import netspec
from netspec.errors import SpecError
from netspec.export import export_source
from netspec.layers.init_schemes import InitScheme

from .conftest import run_cli
from .test_export_exact import assert_same_start

pytestmark = pytest.mark.usefixtures("one_thread_module")

# a 1x1 conv of 256 -> 256 channels: 65,536 weights from one scheme
ONE_CONV = """
name: one
input: {{channels: 256, size: 1}}
stem:
  - conv: {{out: 256, kernel: 1, bias: true, name: conv, init: {init}}}
"""
KS_ALPHA_CRITICAL = 1.95  # c(alpha) of the two-sample KS test at alpha = 0.001: a wide margin


def drawn(init: str, seed: int = 0) -> torch.nn.Conv2d:
    return netspec.build(netspec.loads_spec(ONE_CONV.format(init=init)), seed=seed).get_submodule("conv")


def torch_draws(fn: str, seed: int, **kwargs: float) -> torch.Tensor:
    """torch's own nn.init function on a fresh tensor of the same shape, from another seed."""
    torch.manual_seed(seed)
    return getattr(torch.nn.init, fn)(torch.empty(256, 256, 1, 1), **kwargs)


def assert_same_distribution(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    n, m = ours.numel(), theirs.numel()
    result = stats.ks_2samp(ours.flatten().double().numpy(), theirs.flatten().double().numpy())
    assert result.statistic < KS_ALPHA_CRITICAL * math.sqrt((n + m) / (n * m)), result


@pytest.mark.parametrize(
    ("init", "fn", "kwargs"),
    [
        ("{trunc_normal: {std: 0.02}}", "trunc_normal_", {"std": 0.02}),
        ("trunc_normal", "trunc_normal_", {"std": 0.02}),
        ("{trunc_normal: {std: 1.0, a: -0.5, b: 1.5}}", "trunc_normal_", {"std": 1.0, "a": -0.5, "b": 1.5}),
        ("{uniform: {a: -0.1, b: 0.3}}", "uniform_", {"a": -0.1, "b": 0.3}),
        ("{normal: {mean: 0.5, std: 0.2}}", "normal_", {"mean": 0.5, "std": 0.2}),
        ("{xavier_uniform: {gain: 2.0}}", "xavier_uniform_", {"gain": 2.0}),
        ("{kaiming_normal: {mode: fan_in}}", "kaiming_normal_", {"mode": "fan_in"}),
    ],
    ids=[
        "trunc_normal",
        "trunc_normal_bare",
        "trunc_normal_narrow",
        "uniform",
        "normal",
        "xavier",
        "kaiming",
    ],
)
def test_weights_follow_torchs_own_draws_and_the_bias_is_zero(init, fn, kwargs):
    conv = drawn(init)
    assert_same_distribution(conv.weight.detach(), torch_draws(fn, seed=12345, **kwargs))
    assert not torch.equal(conv.weight.detach(), torch_draws(fn, seed=12345, **kwargs))  # other draws
    assert torch.count_nonzero(conv.bias) == 0


def test_trunc_normal_is_scipys_truncated_normal_and_never_leaves_its_bounds():
    """std 1 cut at [-0.5, 1.5]: scipy's truncnorm (bounds in std units) is the reference distribution."""
    w = drawn("{trunc_normal: {mean: 0.0, std: 1.0, a: -0.5, b: 1.5}}").weight.detach().flatten().double()
    assert float(w.min()) >= -0.5 and float(w.max()) <= 1.5
    result = stats.kstest(w.numpy(), stats.truncnorm(-0.5, 1.5).cdf)
    assert result.statistic < KS_ALPHA_CRITICAL / math.sqrt(w.numel()), result
    wide = drawn("{trunc_normal: {std: 0.02}}").weight.detach().flatten().double()  # torch's a=-2, b=2
    assert abs(float(wide.std()) - 0.02) < 0.02 * 0.02  # 100 std away, the cut changes nothing


INITS = """
name: schemes
input: {channels: 3, size: 16}
classes: 5
stem:
  - conv: {out: 8, name: stem}
  - conv: {out: 8, init: {uniform: {a: -0.2, b: 0.2}}}
  - conv: {out: 8, bias: false, init: {kaiming_uniform: {mode: fan_out, nonlinearity: leaky_relu, a: 0.1}}}
  - conv_transpose: {out: 8, kernel: 2, stride: 2, init: {xavier_normal: {gain: 0.5}}}
  - relu
head:
  - avgpool: global
  - flatten
  - linear: {out: 12, init: {normal: {std: 0.05}}}
  - linear: "${classes}"
init: {conv: {trunc_normal: {std: 0.05, a: -0.08, b: 0.08}}, linear: trunc_normal, seed: 7}
"""


def test_exported_source_writes_the_same_init_and_starts_bit_for_bit():
    spec = netspec.loads_spec(INITS)
    source = export_source(spec)
    assert "nn.init.trunc_normal_(m.weight, std=0.05, a=-0.08, b=0.08)" in source
    assert "nn.init.uniform_(m.weight, a=-0.2, b=0.2)" in source
    assert "nn.init.trunc_normal_(m.weight, std=0.02)" in source  # the linear default, bare name
    for seed in (0, 1):
        assert_same_start(spec, source, seed)


def test_a_scheme_is_written_back_as_the_spec_wrote_it():
    spec = netspec.loads_spec(INITS)
    dumped = spec.model_dump(mode="json")["init"]
    assert dumped["conv"] == {"trunc_normal": {"std": 0.05, "a": -0.08, "b": 0.08}}
    assert dumped["linear"] == "trunc_normal"
    assert type(spec).model_validate(spec.model_dump(mode="json")).init == spec.init
    assert spec.init.conv == InitScheme("trunc_normal", (("std", 0.05), ("a", -0.08), ("b", 0.08)))


@pytest.mark.parametrize(
    ("init", "where", "says"),
    [
        (
            "{trunc_normal: {stdd: 0.1}}",
            "stem.0.conv.init.trunc_normal",
            "unknown argument 'stdd' (did you mean 'std'?)",
        ),
        (
            "{trunc_normall: {std: 0.1}}",
            "stem.0.conv.init",
            "unknown init scheme 'trunc_normall' (did you mean",
        ),
        ("{trunc_normal: {std: 0}}", "stem.0.conv.init.trunc_normal.std", "greater than 0"),
        ("{uniform: {a: 1, b: 0}}", "stem.0.conv.init.uniform", "a < b"),
        ("{trunc_normal: {mean: 5}}", "stem.0.conv.init.trunc_normal", "more than 2 std outside [a, b]"),
        ("[trunc_normal]", "stem.0.conv.init", "a one-key mapping of a name to its arguments"),
        ("gaussian", "stem.0.conv.init", "'trunc_normal'"),
    ],
)
def test_a_wrong_scheme_is_a_located_error(tmp_path, init, where, says):
    path = tmp_path / "bad.yaml"
    path.write_text(ONE_CONV.format(init=init))
    result = run_cli("report", str(path))
    assert result.exit_code == 2
    assert f"{path}:5:" in result.output and where in result.output and says in result.output, result.output


def test_a_wrong_spec_level_scheme_is_a_located_error():
    text = INITS.replace("linear: trunc_normal,", "linear: {trunc_normal: {b: -3}},")
    with pytest.raises(SpecError) as err:
        netspec.loads_spec(text, "schemes.yaml")
    line = next(i for i, text_line in enumerate(text.splitlines(), 1) if text_line.startswith("init:"))
    assert f"schemes.yaml:{line}:" in err.value.format() and "init.linear.trunc_normal" in err.value.format()
