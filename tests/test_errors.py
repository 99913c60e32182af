"""Every user mistake is a SpecError with FILE:LINE:COL, a path and a useful message; never a
traceback, a hang, a silent overwrite or code execution.

tests/bad_specs/*.yaml is a corpus of broken specs. Each starts with `# expect: <substring of the
message>`, optionally followed by `# line: N` (the line the first problem must point at) and
`# problems: N` (how many problems, one line each).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import netspec
from netspec import SpecError, SpecShapeError, SpecSizeError, SpecSyntaxError
from netspec.cli import app

ROOT = Path(__file__).resolve().parent.parent
BAD = Path(__file__).resolve().parent / "bad_specs"
CLI = ROOT / "cli.py"
BAD_SPECS = sorted(BAD.glob("*.yaml"))
FAST = 2.0  # seconds: every rejection is quick, including bombs and absurd sizes


def header(path: Path) -> dict[str, str]:
    """The `# key: value` comment lines at the top of a corpus file (binary files included)."""
    out: dict[str, str] = {}
    for raw in path.read_bytes().split(b"\n")[:4]:
        line = raw.decode("utf-8", "replace")
        m = re.match(r"#\s*(expect|line|problems):\s?(.*)$", line)
        if not m:
            break
        out[m.group(1)] = m.group(2).rstrip()
    return out


def run_cli(*args: str):
    runner = CliRunner()
    start = time.perf_counter()
    result = runner.invoke(app, list(args))
    return result, time.perf_counter() - start


def run_subprocess(*args: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NETSPEC_DEBUG", None)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
        env=env,
    )
    return proc, time.perf_counter() - start


def test_corpus_is_well_formed():
    assert len(BAD_SPECS) >= 50
    for path in BAD_SPECS:
        assert "expect" in header(path), f"{path.name} lacks its `# expect:` line"


@pytest.mark.parametrize("path", BAD_SPECS, ids=lambda p: p.stem)
def test_bad_spec(path: Path, monkeypatch: pytest.MonkeyPatch):
    meta = header(path)
    rel = str(path.relative_to(ROOT))
    monkeypatch.chdir(ROOT)
    result, seconds = run_cli("validate", rel)
    out = result.output
    assert result.exit_code == 2, out
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out
    assert seconds < FAST, f"{path.name} took {seconds:.2f}s"
    assert meta["expect"] in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    # the first problem points into the file: FILE:LINE:COL:
    m = re.match(rf"^{re.escape(rel)}:(\d+):(\d+): ", lines[0])
    assert m, out
    if "line" in meta:
        assert int(m.group(1)) == int(meta["line"]), out
    if "problems" in meta:
        assert len(lines) == int(meta["problems"]), out
    # nothing a spec says is ever executed
    assert "NETSPEC_PWNED" not in out
    assert not (ROOT / "netspec_pwned.txt").exists()


@pytest.mark.parametrize("path", BAD_SPECS, ids=lambda p: p.stem)
def test_bad_spec_api_raises_spec_error_only(path: Path):
    with pytest.raises(SpecError) as info:
        netspec.analyze(netspec.load_spec(path))
    assert header(path)["expect"] in info.value.format()
    assert all(p.location is not None for p in info.value.problems)


# a few real processes: the installed entry point, exit code 2, no traceback, quick
@pytest.mark.parametrize("name", ["python_tag", "billion_laughs", "huge_depth", "three_problems"])
def test_bad_spec_real_process(name: str, tmp_path: Path):
    path = BAD / f"{name}.yaml"
    proc, seconds = run_subprocess("validate", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert header(path)["expect"] in proc.stderr
    assert re.match(rf"^{re.escape(str(path))}:\d+:\d+: ", proc.stderr)
    assert seconds < 10  # process start included; the in-process test holds the 2 s bound
    assert not list(tmp_path.iterdir()), "a spec must never write files"


# -- YAML-level attacks and accidents ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'name: !!python/object/apply:os.system ["echo NETSPEC_PWNED"]',
        "name: !!python/object/apply:os.system\n  args: [echo NETSPEC_PWNED]",
        'name: !!python/object/new:os.system ["echo NETSPEC_PWNED"]',
        "name: !!python/name:os.system ''",
        "name: !!python/module:os ''",
        'name: !!python/object/apply:subprocess.check_output [["echo", "NETSPEC_PWNED"]]',
        "stem:\n  - !!python/object/apply:os.system [echo NETSPEC_PWNED]",
        "name: !foo {a: 1}",
        "name: !!set {a, b}",
    ],
)
def test_python_tags_rejected_never_run(text: str, monkeypatch: pytest.MonkeyPatch):
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a) or 0)
    monkeypatch.setattr(subprocess, "check_output", lambda *a, **k: calls.append(a) or b"")
    with pytest.raises(SpecSyntaxError) as info:
        netspec.loads_spec(text + "\ninput: {channels: 3, size: 8}\n")
    assert not calls
    assert "not allowed in a spec" in str(info.value)
    assert info.value.problems[0].location is not None


def test_billion_laughs_rejected_fast():
    lines = ["lol: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i, name in enumerate("bcdefghijk"):
        prev = "abcdefghijk"[i]
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    start = time.perf_counter()
    with pytest.raises(SpecSizeError, match="alias"):
        netspec.loads_spec("\n".join(lines))
    assert time.perf_counter() - start < 1.0


def test_recursive_alias_is_a_syntax_error():
    with pytest.raises(SpecSyntaxError, match="alias"):
        netspec.loads_spec("a: &x [1, *x]\n")


@pytest.mark.parametrize(
    "text",
    [
        "name: " + "[" * 1000 + "]" * 1000,
        "name: " + "{a: " * 1000 + "1" + "}" * 1000,
        "name:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 1000)) + "  " * 1000 + "v: 1\n",
        "name:\n" + "".join("  " * i + "-\n" for i in range(1, 1000)),
        "name: " + "[" * 100_000,
    ],
    ids=["flow-seq", "flow-map", "block-map", "block-seq", "unclosed-100k"],
)
def test_deep_nesting_rejected_without_recursion_error(text: str):
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        netspec.loads_spec(text)
    assert not isinstance(info.value.__cause__, RecursionError)
    assert time.perf_counter() - start < FAST
    assert info.value.problems[0].location is not None


def test_multi_megabyte_file_rejected_fast(tmp_path: Path):
    path = tmp_path / "big.yaml"
    filler = "# " + "x" * 1000 + "\n"
    path.write_text("name: big\n" + filler * 3000)  # ~3 MB of comments: valid YAML, absurd spec
    start = time.perf_counter()
    with pytest.raises(SpecSizeError, match="KiB limit"):
        netspec.load_spec(path)
    assert time.perf_counter() - start < FAST
    result, seconds = run_cli("validate", str(path))
    assert result.exit_code == 2
    assert f"{path}:1:1:" in result.output
    assert seconds < FAST


def test_multi_megabyte_text_rejected():
    with pytest.raises(SpecSizeError, match="larger than"):
        netspec.loads_spec("name: big\nvars: {x: '" + "y" * 3_000_000 + "'}\n")


@pytest.mark.parametrize("content", [b"", b"\n\n   \n", b"# only a comment\n", b"---\n"])
def test_empty_file(tmp_path: Path, content: bytes):
    path = tmp_path / "empty.yaml"
    path.write_bytes(content)
    with pytest.raises(SpecSyntaxError, match="empty"):
        netspec.load_spec(path)
    result, _ = run_cli("validate", str(path))
    assert result.exit_code == 2
    assert f"{path}:1:1: file is empty" in result.output


@pytest.mark.parametrize(
    "content",
    [
        bytes(range(256)) * 4,  # NUL bytes
        b"\xff\xfe\xfa\xfb" * 100,  # not UTF-8
        b"\x89PNG\r\n\x1a\n" + bytes(i * 37 % 256 for i in range(500)),
        b"name: t\n\x07\x08\x1b[31m\n",  # control characters YAML refuses
    ],
    ids=["nul", "not-utf8", "png", "control-chars"],
)
def test_binary_garbage(tmp_path: Path, content: bytes):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(content)
    with pytest.raises(SpecSyntaxError):
        netspec.load_spec(path)
    result, _ = run_cli("validate", str(path))
    assert result.exit_code == 2
    assert result.output.startswith(f"{path}:")
    assert "Traceback" not in result.output


def test_missing_file_and_directory(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecSyntaxError, match="no such file"):
        netspec.load_spec(missing)
    proc, _ = run_subprocess("validate", str(missing))
    assert proc.returncode == 2
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(SpecSyntaxError, match="directory"):
        netspec.load_spec(tmp_path)
    result, _ = run_cli("report", str(tmp_path))
    assert result.exit_code == 2
    assert "directory" in result.output


def test_yaml_top_level_scalar():
    with pytest.raises(SpecSyntaxError, match="not a str"):
        netspec.loads_spec("just a string\n")


# -- extends ------------------------------------------------------------------------------------


def test_extends_cycle(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("# b\nextends: a.yaml\nname: b\n")
    start = time.perf_counter()
    with pytest.raises(SpecSyntaxError, match=re.escape("cycle: a.yaml -> b.yaml -> a.yaml")) as info:
        netspec.load_spec(tmp_path / "a.yaml")
    assert time.perf_counter() - start < FAST
    loc = info.value.problems[0].location
    assert loc is not None and loc.file.endswith("b.yaml") and loc.line == 2
    result, _ = run_cli("validate", str(tmp_path / "a.yaml"))
    assert result.exit_code == 2
    assert "cycle" in result.output and "Traceback" not in result.output


def test_extends_self(tmp_path: Path):
    (tmp_path / "s.yaml").write_text("name: s\nextends: s.yaml\n")
    with pytest.raises(SpecSyntaxError, match="cycle") as info:
        netspec.load_spec(tmp_path / "s.yaml")
    assert info.value.problems[0].location.line == 2


def test_extends_too_deep(tmp_path: Path):
    for i in range(40):
        (tmp_path / f"s{i}.yaml").write_text(f"extends: s{i + 1}.yaml\nname: s{i}\n")
    (tmp_path / "s40.yaml").write_text("name: s40\n")
    with pytest.raises(SpecSyntaxError, match="nested more than"):
        netspec.load_spec(tmp_path / "s0.yaml")


def test_extends_missing_parent_points_at_extends(tmp_path: Path):
    (tmp_path / "c.yaml").write_text("name: c\n\nextends: gone.yaml\n")
    with pytest.raises(SpecSyntaxError, match="no such file") as info:
        netspec.load_spec(tmp_path / "c.yaml")
    loc = info.value.problems[0].location
    assert loc is not None and loc.line == 3


def test_extends_merges_and_reports_child_positions(tmp_path: Path):
    (tmp_path / "base.yaml").write_text(
        "name: base\ninput: {channels: 3, size: 16}\nstem:\n  - conv: {out: 8}\n  - relu\n"
    )
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\ninput: {size: 32}\n")
    a = netspec.analyze(netspec.load_spec(tmp_path / "child.yaml"))
    assert a.input_shape == (3, 32, 32) and a.output_shape == (8, 32, 32)
    (tmp_path / "bad.yaml").write_text("extends: base.yaml\nname: child\n\ninput: {sise: 32}\n")
    with pytest.raises(SpecError, match="did you mean 'size'") as info:
        netspec.load_spec(tmp_path / "bad.yaml")
    loc = info.value.problems[0].location
    assert loc.file.endswith("bad.yaml") and loc.line == 4


# -- duplicate keys and merge keys -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line",
    [
        ("name: a\nname: b\n", 2),
        ("name: t\ninput:\n  channels: 3\n  size: 8\n  channels: 4\n", 5),
        ("name: t\nstem:\n  - conv: {out: 8, out: 16}\n", 3),
        ("name: t\nvars: {a: 1}\nx: &m {k: 1}\nvars: {<<: *m, b: 2, b: 3}\n", 4),
    ],
)
def test_duplicate_keys_are_errors(text: str, line: int):
    with pytest.raises(SpecSyntaxError, match="duplicate key") as info:
        netspec.loads_spec(text)
    assert info.value.problems[0].location.line == line


def test_merge_key_overrides_are_not_duplicates():
    spec = netspec.loads_spec(
        "name: t\ninput: {channels: 3, size: 8}\ndefaults:\n  conv: &c {out: 8, kernel: 3}\n"
        "stem:\n  - conv: {<<: *c, out: 16}\n  - conv: *c\n"
    )
    a = netspec.analyze(spec)
    assert [r.output_shape for r in a.rows] == [(16, 8, 8), (8, 8, 8)]


# -- validation messages -----------------------------------------------------------------------


def _problems(text: str) -> list[netspec.Problem]:
    with pytest.raises(SpecError) as info:
        netspec.analyze(netspec.loads_spec(text, "spec.yaml"))
    return info.value.problems


HEAD = "name: t\ninput: {channels: 3, size: 16}\n"


@pytest.mark.parametrize(
    "text, hint",
    [
        (HEAD + "stem:\n  - conv: {out: 8, strid: 2}\n", "did you mean 'stride'?"),
        (HEAD + "stem:\n  - conv: {out: 8, dilaton: 2}\n", "did you mean 'dilation'?"),
        (HEAD + "stem:\n  - maxpool: {kernel: 2, ceilmode: true}\n", "did you mean 'ceil_mode'?"),
        (HEAD + "stem:\n  - batchnorm: {epsilon: 0.1}\n", "did you mean 'eps'?"),
        (HEAD + "shortcuts: identity\n", "did you mean 'shortcut'?"),
        (HEAD + "head:\n  - flaten\n", "did you mean 'flatten'?"),
        (HEAD + "head:\n  - lineer: 10\n", "did you mean 'linear'?"),
        (HEAD + "head:\n  - maxpol: 2\n", "did you mean 'maxpool'?"),
        (HEAD + "init: {seeds: 3}\n", "did you mean 'seed'?"),
        (HEAD + "limits: {max_param: 3}\n", "did you mean 'max_params'?"),
        (HEAD + "blocks:\n  b: {bodi: [relu]}\n", "did you mean 'body'?"),
    ],
)
def test_did_you_mean(text: str, hint: str):
    problems = _problems(text)
    assert len(problems) == 1, problems
    assert problems[0].hint and hint in problems[0].hint
    assert problems[0].location is not None


def test_unknown_key_points_at_the_key_not_its_value():
    (problem,) = _problems(HEAD + "stem:\n  - conv:\n      out: 8\n      kernal:\n        - 3\n")
    assert problem.location.line == 6 and problem.location.col == 7


def test_three_independent_mistakes_give_three_problems():
    text = (
        HEAD
        + "stem:\n  - conv: {out: 8, kernal: 3}\n  - relu\nhead:\n  - dropout: 1.5\n  - convv: {out: 3}\n"
    )
    problems = _problems(text)
    assert [p.location.line for p in problems] == [4, 7, 8]
    assert "kernal" in problems[0].message
    assert "dropout.p" in problems[1].format()
    assert "convv" in problems[2].message
    result, _ = run_cli_text(text)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 3


def test_top_level_mistakes_are_reported_together():
    problems = _problems("name: t\ninput: {channels: 0, size: 8}\nstagse: []\nshortcut: sideways\n")
    assert len(problems) == 3
    assert {p.path[0] for p in problems} == {"input", "stagse", "shortcut"}


def run_cli_text(text: str):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spec.yaml"
        path.write_text(text)
        return run_cli("validate", str(path))


@pytest.mark.parametrize(
    "text, needle",
    [
        (HEAD + "stem:\n  - conv: {out: 8, stride: 0}\n", "greater than or equal to 1 (got 0)"),
        (HEAD + "stem:\n  - conv: {out: -3}\n", "greater than or equal to 1 (got -3)"),
        (HEAD + "stem:\n  - conv: {out: 8, kernel: [3, 0]}\n", "greater than or equal to 1"),
        (HEAD + "stem:\n  - conv: {out: 8, padding: sideways}\n", "'auto', 'same' or 'valid'"),
        (HEAD + "stem:\n  - conv: {out: 8, groups: many}\n", "stem.0.conv.groups"),
        (HEAD + "stem:\n  - conv: {out: 1.5}\n", "stem.0.conv.out"),
        (HEAD + "stem:\n  - conv: {out: .nan}\n", "stem.0.conv.out"),
        (HEAD + "stem:\n  - conv: {out: 8, bias: maybe}\n", "stem.0.conv.bias"),
        (HEAD + "head:\n  - dropout: -0.1\n", "greater than or equal to 0"),
        (HEAD + "head:\n  - dropout: 1\n", "less than 1"),
        (HEAD + "head:\n  - dropout: .inf\n", "head.0.dropout.p"),
        (HEAD + "head:\n  - dropout: {p: -.inf}\n", "head.0.dropout.p"),
        (HEAD + "stem:\n  - batchnorm: {eps: .nan}\n", "stem.0.batchnorm.eps"),
        (HEAD + "stem:\n  - batchnorm: {momentum: 2}\n", "stem.0.batchnorm.momentum"),
        (HEAD + "stem:\n  - leaky_relu: {negative_slope: .nan}\n", "negative_slope"),
        (HEAD + "stem:\n  - maxpool: {kernel: 2, padding: -1}\n", "stem.0.maxpool.padding"),
        ("name: t\ninput: {channels: 3, size: [16, -16]}\n", "input.size.1"),
        ("name: t\ninput: {channels: 3, size: 16}\nclasses: 0\n", "classes"),
        ("name: t\ninput: {channels: 3.5, size: 16}\n", "input.channels"),
        ("name: t\nlimits: {max_params: 0}\n", "limits.max_params"),
        ("name: t\ninput: {channels: 3, size: 100000000}\n", "input.size"),
    ],
)
def test_out_of_range_and_wrong_types_give_one_problem(text: str, needle: str):
    problems = _problems(text)
    assert len(problems) == 1, [p.format() for p in problems]
    assert needle in problems[0].format()
    assert "constrained-" not in problems[0].format()
    assert problems[0].location is not None


# -- sizes --------------------------------------------------------------------------------------


def test_huge_depth_rejected_fast_with_estimate():
    text = (
        HEAD
        + "stages:\n  - {block: b, depth: 1000000000}\nblocks:\n  b:\n    body:\n      - conv: {out: 8}\n"
    )
    start = time.perf_counter()
    with pytest.raises(SpecSizeError) as info:
        netspec.analyze(netspec.loads_spec(text))
    assert time.perf_counter() - start < 0.5
    assert "1,000,000,000" in str(info.value)
    assert info.value.problems[0].location.line == 4


def test_deep_stage_with_wide_blocks_estimates_params():
    # 5,000 blocks pass the layer limit, but each has ~2.4M parameters: refused after one block
    text = (
        HEAD + "stem:\n  - conv: {out: 512, kernel: 1}\n"
        "stages:\n  - {block: b, depth: 5000}\nblocks:\n  b:\n    body:\n      - conv: {out: 512}\n"
    )
    start = time.perf_counter()
    with pytest.raises(SpecSizeError, match=r"about [\d,]+ layers and [\d,]+ parameters"):
        netspec.analyze(netspec.loads_spec(text))
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "layers",
    [
        "stem:\n  - conv: {out: 64}\n  - conv: {out: 16000000}\n",
        "head:\n  - flatten\n  - linear: {out: 16000000}\n",
    ],
)
def test_huge_width_rejected_by_parameter_budget(layers: str):
    start = time.perf_counter()
    with pytest.raises(SpecSizeError, match="parameters") as info:
        netspec.analyze(netspec.loads_spec(HEAD + layers))
    assert time.perf_counter() - start < 0.5
    assert info.value.problems[0].location is not None


def test_limits_can_be_raised_and_lowered():
    text = HEAD + "stem:\n  - conv: {out: 64}\n"
    assert netspec.analyze(netspec.loads_spec(text)).params == 64 * 27 + 64
    with pytest.raises(SpecSizeError):
        netspec.analyze(netspec.loads_spec(text + "limits: {max_params: 1000}\n"))


# -- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layers, needles",
    [
        (
            "stem:\n  - conv: {out: 8, kernel: 7, padding: 0, name: wide}\n",
            ["wide (conv)", "kernel 7x7", "padded input 5x5"],
        ),
        (
            "stem:\n  - conv: {out: 8, kernel: 3, dilation: 3, padding: 0}\n",
            ["conv1 (conv)", "kernel 7x7", "5x5"],
        ),
        ("stem:\n  - maxpool: 2\n  - maxpool: 2\n  - maxpool: 2\n", ["maxpool3 (maxpool)", "2x2", "1x1"]),
        ("stem:\n  - conv: {out: 8, groups: 2}\n", ["conv1 (conv)", "in 3, out 8, groups 2"]),
        ("stem:\n  - conv: {out: 5, groups: depthwise}\n", ["in 3, out 5, groups 3"]),
        ("head:\n  - linear: 10\n", ["fc1 (linear)", "3x5x5 map"]),
        ("head:\n  - flatten\n  - conv: {out: 8}\n", ["conv1 (conv)", "flat vector of 75"]),
        ("stem:\n  - conv: {out: 8, stride: 2, padding: same}\n", ["padding 'same' needs stride 1"]),
        ("stem:\n  - maxpool: {kernel: 2, padding: 2}\n", ["at most half the kernel"]),
    ],
)
def test_impossible_shapes_name_the_layer_and_sizes(layers: str, needles: list[str]):
    text = "name: t\ninput: {channels: 3, size: 5}\n" + layers
    with pytest.raises(SpecShapeError) as info:
        netspec.analyze(netspec.loads_spec(text))
    message = str(info.value)
    for needle in needles:
        assert needle in message, message


def test_concat_of_mismatched_branches():
    text = (
        HEAD + "stem:\n  - parallel:\n      name: mix\n      merge: concat\n      branches:\n"
        "        - [conv: {out: 4, kernel: 1}]\n        - [conv: {out: 4, stride: 2}]\n"
    )
    with pytest.raises(SpecShapeError) as info:
        netspec.analyze(netspec.loads_spec(text))
    message = str(info.value)
    assert "mix (parallel)" in message
    assert "4x16x16" in message and "4x8x8" in message


@pytest.mark.parametrize("shortcut", ["identity", "[identity]", "[{conv: {out: 8, kernel: 1}}]"])
def test_residual_add_with_mismatched_shapes(shortcut: str):
    text = (
        HEAD + "stem:\n  - conv: {out: 8}\n"
        f"stages:\n  - {{block: down, name: layer1}}\nshortcut: {shortcut}\n"
        "blocks:\n  down:\n    body:\n      - conv: {out: 16, stride: 2}\n    merge: add\n"
    )
    if shortcut.startswith("["):
        text = text.replace(f"shortcut: {shortcut}\n", "") + f"    shortcut: {shortcut}\n"
    with pytest.raises(SpecShapeError) as info:
        netspec.analyze(netspec.loads_spec(text))
    message = str(info.value)
    assert "layer1.0 (down)" in message
    assert "16x8x8" in message


def test_output_does_not_match_classes():
    text = HEAD + "classes: 10\nhead:\n  - avgpool: global\n  - flatten\n  - linear: 7\n"
    with pytest.raises(SpecShapeError, match="outputs 7 but `classes` is 10"):
        netspec.analyze(netspec.loads_spec(text))


# -- module names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layers, needle",
    [
        ('stem:\n  - conv: {out: 8, name: "conv\\t1"}\n', "not a valid module name"),  # a control character
        ("stem:\n  - conv: {out: 8, name: 'conv.1'}\n", "not a valid module name"),
        ("stem:\n  - conv: {out: 8, name: ''}\n", "not a valid module name"),
        ('stem:\n  - conv: {out: 8, name: "x\\u200by"}\n', "not a valid module name"),  # an invisible one
        ('stem:\n  - conv: {out: 8, name: "a\\u2028b"}\n', "not a valid module name"),  # a line separator
        ("stem:\n  - conv: {out: 8, name: " + "a" * 65 + "}\n", "not a valid module name"),
        ("stem:\n  - conv: {out: 8, name: forward}\n", "reserved"),
        ("stem:\n  - relu: {name: training}\n", "reserved"),
        ("stem:\n  - relu: {name: __dict__}\n", "reserved"),
        ("stem:\n  - sequential: {name: forward, layers: [relu]}\n", "reserved"),
        ('stem:\n  - sequential: {name: "a\\nb", layers: [relu]}\n', "not a valid module name"),
        ("stem:\n  - sequential: {name: '${3}', layers: [relu]}\n", "module name must be text"),
        ("stem:\n  - residual: {name: state_dict, body: [relu]}\n", "reserved"),
        ("stem:\n  - b: {name: to}\nblocks:\n  b: {body: [relu]}\n", "reserved"),
        ("stages:\n  - {block: b, name: cuda}\nblocks:\n  b: {body: [relu]}\n", "reserved"),
        ("stages:\n  - {block: b, block_name: eval}\nblocks:\n  b: {body: [relu]}\n", "reserved"),
        ("features: parameters\nstem: [relu]\n", "reserved"),
        ("blocks:\n  my-block: {body: [relu]}\n", "not an identifier"),
        ("stem:\n  - conv: {out: 8}\n  - conv: {out: 8, name: conv1}\n", "'conv1' is used twice"),
        ("stem:\n  - relu: {name: a}\n  - sequential: {name: a, layers: [relu]}\n", "'a' is used twice"),
        (
            "stages:\n  - {block: b, name: layer1}\n  - {block: b, name: layer1}\n"
            "blocks:\n  b: {body: [relu]}\n",
            "'layer1' is used twice",
        ),
        (
            "stem:\n  - conv: 8\n  - residual:\n      body: [{conv: {out: 16, name: downsample}}]\n",
            "'downsample' is used twice",
        ),
        (
            "stem:\n  - b\nblocks:\n  b:\n    branches: [[relu], [relu]]\n    merge: concat\n"
            "    after: [{relu: {name: branch1}}]\n",
            "'branch1' is used twice",
        ),
    ],
)
def test_bad_module_names(layers: str, needle: str):
    text = "name: t\ninput: {channels: 3, size: 8}\n" + layers
    with pytest.raises(SpecError) as info:
        netspec.analyze(netspec.loads_spec(text))
    assert needle in str(info.value)
    assert all(p.location is not None for p in info.value.problems)


def test_reserved_names_cover_nn_module_attributes():
    import torch.nn as nn

    from netspec.layers.base import check_module_name

    public = [n for n in dir(nn.Module) if not n.startswith("_")]
    for name in public:
        with pytest.raises(ValueError):
            check_module_name(name)


# -- --set overrides ----------------------------------------------------------------------------


def test_set_override_changes_the_analysis(specs_dir: Path):
    base = netspec.analyze(netspec.load_spec(specs_dir / "resnet50.yaml"))
    shallow = netspec.analyze(netspec.load_spec(specs_dir / "resnet50.yaml", ["stages.0.depth=2"]))
    # one bottleneck of layer1 less: 1x1 256->64, 3x3 64->64, 1x1 64->256, three BNs
    block = 256 * 64 + 9 * 64 * 64 + 64 * 256 + 2 * (64 + 64 + 256)
    assert base.params - shallow.params == block
    assert shallow.macs < base.macs
    assert sum(1 for r in shallow.rows if r.path.startswith("layer1.") and r.path.count(".") == 1) == 2
    wider = netspec.analyze(netspec.load_spec(specs_dir / "resnet50.yaml", ["classes=10"]))
    assert wider.output_shape == (10,)


def test_set_override_via_cli(specs_dir: Path):
    path = str(specs_dir / "resnet50.yaml")
    full, _ = run_cli("validate", path)
    shallow, _ = run_cli("validate", path, "--set", "stages.0.depth=2")
    assert full.exit_code == shallow.exit_code == 0
    assert "25,557,032 params" in full.output
    assert "25,486,632 params" in shallow.output


@pytest.mark.parametrize(
    "override, needle",
    [
        ("stages.9.depth=2", "not an index of a list of 4"),
        ("stages.x.depth=2", "not an index"),
        ("name.first=3", "goes inside a str"),
        ("nonsense", "PATH=VALUE"),
        ("stages..depth=2", "empty path segment"),
        ("stages.0.depth=[1", "YAML syntax error"),
        ("stages.0.depth=0", "greater than or equal to 1"),
        ("stages.0.depth=!!python/object/apply:os.system [echo NETSPEC_PWNED]", "not allowed in a spec"),
        ("inputt.size=3", "did you mean 'input'"),
        ("stages.0.dpth=2", "has no parameter 'dpth'"),
    ],
)
def test_bad_set_override(specs_dir: Path, override: str, needle: str, monkeypatch: pytest.MonkeyPatch):
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a) or 0)
    path = str(specs_dir / "resnet50.yaml")
    with pytest.raises(SpecError, match=re.escape(needle)):
        netspec.analyze(netspec.load_spec(path, [override]))
    result, _ = run_cli("validate", path, "--set", override)
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not calls


def test_override_location_names_the_override(specs_dir: Path):
    with pytest.raises(SpecError) as info:
        netspec.analyze(netspec.load_spec(specs_dir / "resnet50.yaml", ["stages.1.depth=-1"]))
    assert info.value.problems[0].location.file == "<--set stages.1.depth=-1>"


# -- the error objects --------------------------------------------------------------------------


def test_error_family_and_formatting():
    from netspec.errors import Location, Problem

    p = Problem("bad", ("stem", 0, "conv"), Location("f.yaml", 3, 5), "did you mean 'x'?")
    assert p.format() == "f.yaml:3:5: stem.0.conv: bad (did you mean 'x'?)"
    err = SpecShapeError([p, Problem("worse")])
    assert str(err) == "f.yaml:3:5: stem.0.conv: bad (did you mean 'x'?)\nworse"
    assert isinstance(err, SpecError) and isinstance(err, Exception)
    assert issubclass(SpecSizeError, SpecError) and issubclass(SpecSyntaxError, SpecError)
    assert SpecError("plain").problems[0].message == "plain"


# -- blocks that use themselves ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "blocks",
    [
        "  b: {body: [relu, b]}\n",
        "  b: {body: [relu, a]}\n  a: {body: [b]}\n",
        "  b:\n    branches: [[b], [relu]]\n    merge: concat\n",
        "  b: {body: [{residual: {body: [b]}}]}\n",
    ],
)
def test_self_using_blocks_are_errors_not_recursion_errors(blocks: str):
    text = "name: t\ninput: {channels: 3, size: 8}\nstem: [b]\nblocks:\n" + blocks
    start = time.perf_counter()
    with pytest.raises(SpecError, match="contain itself without end"):
        netspec.analyze(netspec.loads_spec(text))
    assert time.perf_counter() - start < FAST


def test_a_block_may_use_itself_under_when():
    text = (
        "name: t\ninput: {channels: 3, size: 8}\nstem: [{frac: {n: 3}}]\nblocks:\n  frac:\n"
        "    params: {n: int}\n"
        '    body: [{conv: {out: 4}}, {frac: {n: "${n - 1}", when: "${n > 0}"}}]\n'
    )
    a = netspec.analyze(netspec.loads_spec(text))
    assert [r.path for r in a.rows if r.is_layer] == [
        "frac1.conv1",
        "frac1.frac1.conv1",
        "frac1.frac1.frac1.conv1",
        "frac1.frac1.frac1.frac1.conv1",
    ]
