"""Untrusted input stays data (issue 11): a spec cannot lift the safety caps, nothing allocates past
the memory cap from a static estimate, counts are strict integers, control characters never reach
the terminal raw, unreadable checkpoints never get torch's `weights_only=False` advice, torch's own
warnings stay out of the output, and `validate` checks the `train:` recipe as the runner does.

Every case runs through the API (SpecError only) and the CLI (exit 2, a `FILE:LINE:COL:` first
line, no traceback)."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netspec
from netspec.errors import SpecError, SpecSizeError

from .conftest import ROOT, SPECS, run_cli

SMALL = "name: t\ninput: {channels: 3, size: 8}\n"
CONV = "stem:\n  - conv: {out: 4}\n"
HUGE_INPUT = "name: huge\ninput: {channels: 3, size: 16777216}\n" + CONV  # 2.8e14 pixels
LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): ")
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\u202a-\u202e]")  # all but \t and \n


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def first_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines, result.output
    return lines[0]


def assert_cli_refuses(result, path: Path | str, line: int | None = None) -> str:
    """Exit 2, no traceback, and a first line `FILE:LINE:COL: ...` naming `path` (at `line`)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    first = first_error_line(result)
    found = LOCATED.match(first)
    assert found, first
    assert found["file"] == str(path), first
    if line is not None:
        assert int(found["line"]) == line, first
    return first


# -- the caps: a spec may lower them, only the caller raises them -----------------------------------

RAISED = [
    ("max_layers", 1_000_000_000_000),
    ("max_params", 3_000_000_000),
    ("max_memory", 1 << 62),
]


@pytest.mark.parametrize("field, value", RAISED, ids=[f for f, _ in RAISED])
def test_a_spec_cannot_raise_its_own_limits(tmp_path, field, value):
    # the hang: 1e12 allowed layers, then a stage of a billion blocks
    text = (
        SMALL
        + f"limits: {{{field}: {value}}}\n"
        + "stages:\n  - {block: b, depth: 1000000000}\n"
        + "blocks:\n  b: {body: [{relu: {}}]}\n"
    )
    start = time.perf_counter()
    with pytest.raises(SpecSizeError) as info:
        netspec.analyze(netspec.loads_spec(text, "t.yaml"))
    assert time.perf_counter() - start < 2
    problem = info.value.problems[0]
    assert problem.path == ("limits", field)
    assert problem.location is not None and problem.location.line == 3
    assert "--allow-large" in problem.hint

    path = write(tmp_path, text)
    first = assert_cli_refuses(run_cli("validate", str(path)), path, line=3)
    assert f"limits.{field}" in first and "--allow-large" in first


def test_allow_large_lets_a_spec_raise_its_limits_up_to_a_finite_cap(tmp_path):
    raised = write(tmp_path, SMALL + "limits: {max_params: 3000000000}\n" + CONV)
    assert run_cli("validate", str(raised)).exit_code == 2
    ok = run_cli("validate", "--allow-large", str(raised))
    assert ok.exit_code == 0 and ok.output.startswith("ok  "), ok.output
    assert netspec.loads_spec(raised.read_text(), limits=netspec.spec.large_limits()).limits.max_params == 3e9

    # still finite under --allow-large: no text can make netspec run forever
    huge = write(tmp_path, SMALL + "limits: {max_layers: 1000000000000}\n" + CONV, "huge.yaml")
    assert_cli_refuses(run_cli("validate", "--allow-large", str(huge)), huge, line=3)


def test_the_callers_caps_apply_where_the_spec_sets_none():
    from netspec.spec import Limits

    text = SMALL + "stem:\n" + "  - relu: {}\n" * 12
    assert netspec.analyze(netspec.loads_spec(text)).layers == 12
    with pytest.raises(SpecSizeError, match="limits: 10 layers"):
        netspec.analyze(netspec.loads_spec(text, limits=Limits(max_layers=10)))
    with pytest.raises(SpecSizeError, match="limits: 5 layers"):  # and a spec lowers them further
        netspec.analyze(netspec.loads_spec(text + "limits: {max_layers: 5}\n", limits=Limits(max_layers=10)))


def test_caps_are_not_written_into_the_resolved_spec_and_raised_limits_round_trip(tmp_path):
    from netspec.compile import load_compiled, save_compiled
    from netspec.spec import large_limits

    plain = run_cli("explain", "--allow-large", str(SPECS / "lenet5.yaml"))
    assert plain.exit_code == 0 and "limits" not in plain.output

    raised = write(tmp_path, SMALL + "limits: {max_params: 3000000000}\n" + CONV)
    spec = netspec.load_spec(raised, limits=large_limits())
    out = save_compiled(spec, tmp_path / "raised.pt")
    with pytest.raises(SpecSizeError, match="max_params"):  # a file from anyone: default caps
        load_compiled(out)
    assert sum(p.numel() for p in load_compiled(out, limits=large_limits()).parameters()) == 3 * 4 * 9 + 4


# -- memory: refused from the static estimate, before any tensor exists ------------------------------


def test_build_estimate_is_the_reference_parameter_memory():
    import torchvision

    from netspec.memory import estimate

    a = netspec.analyze(netspec.load_spec(SPECS / "resnet18.yaml"))
    reference = torchvision.models.resnet18(weights=None)
    assert estimate(a, "building").total == 4 * sum(p.numel() for p in reference.parameters())


def test_default_memory_cap_is_half_of_what_the_kernel_reports():
    from netspec.memory import default_memory_cap, physical_memory

    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        pytest.skip("needs /proc/meminfo")
    total_kib = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
    assert 0 < physical_memory() <= total_kib * 1024 + 4096
    assert default_memory_cap() == physical_memory() // 2


def test_traced_compile_formats_and_check_refuse_a_huge_input_with_the_estimate(tmp_path):
    from netspec.check import check_counts
    from netspec.compile import save_compiled

    spec = netspec.loads_spec(HUGE_INPUT, "huge.yaml")
    for call in (lambda: save_compiled(spec, tmp_path / "h.pt2"), lambda: check_counts(spec)):
        with pytest.raises(SpecSizeError) as info:
            call()
        problem = info.value.problems[0]
        assert "PiB" in problem.message and "memory cap" in problem.message
        assert problem.path == ("input", "size") and problem.location.line == 2
    assert not (tmp_path / "h.pt2").exists()

    path = write(tmp_path, HUGE_INPUT, "huge.yaml")
    assert "PiB" in assert_cli_refuses(run_cli("compile", str(path), "-o", str(tmp_path / "h.pt2")), path, 2)
    assert "memory cap" in assert_cli_refuses(run_cli("report", "--check", str(path)), path, 2)


def test_build_refuses_past_a_spec_lowered_memory_cap(tmp_path):
    text = SMALL + "limits: {max_memory: 1000}\nstem:\n  - conv: {out: 64}\n"  # 1,792 params: 7 KiB
    spec = netspec.loads_spec(text, "t.yaml")
    assert netspec.analyze(spec).params == 1792  # the static analysis is not an allocation
    with pytest.raises(SpecSizeError, match=r"building the module would allocate about 7\.0 KiB"):
        netspec.build(spec)
    path = write(tmp_path, text)
    assert_cli_refuses(run_cli("compile", str(path), "-o", str(tmp_path / "m.pt")), path)
    assert not (tmp_path / "m.pt").exists()


def test_training_is_refused_before_any_data_or_run_directory(tmp_path, one_thread):
    out = tmp_path / "run"
    spec = netspec.load_spec(SPECS / "lenet5.yaml", ["limits.max_memory=2000000"])
    with pytest.raises(SpecSizeError, match="training with a batch of"):
        netspec.train(spec, out=out, log="quiet")
    result = run_cli(
        "train", str(SPECS / "lenet5.yaml"), "--set", "limits.max_memory=2000000", "--out", str(out)
    )
    assert "training with a batch of 32" in assert_cli_refuses(result, SPECS / "lenet5.yaml")  # at input
    assert not out.exists()


def _capped(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS (Linux)")
def test_compiling_a_huge_input_stays_within_four_gib_of_address_space(tmp_path):
    path = write(tmp_path, HUGE_INPUT, "huge.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    outcomes = {}
    for out in ("h.ts", "h.pt2"):  # TorchScript needs no example input; torch.export does
        proc = subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), "compile", str(path), "-o", str(tmp_path / out)],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_capped(4 << 30),
            env=env,
        )
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
        outcomes[out] = (proc.returncode, proc.stderr)
    assert outcomes["h.ts"][0] == 0 and outcomes["h.ts"][1] == ""
    assert outcomes["h.pt2"][0] == 2 and outcomes["h.pt2"][1].startswith(f"{path}:2:")


# -- strict integers wherever a count is meant ------------------------------------------------------

NOT_COUNTS = [
    ("classes: true\n" + CONV, "classes"),
    ("input: {channels: 3.0}\n" + CONV, "input.channels"),
    ("input: {size: true}\n" + CONV, "input.size"),
    ("input: {size: 0.5}\n" + CONV, "input.size"),
    ("input: {size: [8, 8.0]}\n" + CONV, "input.size"),
    ("stem:\n  - conv: {out: true}\n", "stem.0.conv.out"),
    ("stem:\n  - conv: {out: 4, kernel: 3.0}\n", "stem.0.conv.kernel"),
    ("stem:\n  - conv: {out: 4, stride: true}\n", "stem.0.conv.stride"),
    ("stem:\n  - conv: {out: 4, groups: 2.0}\n", "stem.0.conv.groups"),
    ("stem:\n  - conv: {out: '${4 / 2}'}\n", "stem.0.conv.out"),  # `/` is true division: use `//`
    ("head:\n  - flatten\n  - linear: {out: 10.0}\n", "head.1.linear.out"),
    ("stages:\n  - {block: b, depth: 2.0}\nblocks:\n  b: {body: [{relu: {}}]}\n", "stages.0.depth"),
    ("stages:\n  - {block: b, repeat: true}\nblocks:\n  b: {body: [{relu: {}}]}\n", "stages.0"),
    ("limits: {max_layers: 100.0}\n", "limits.max_layers"),
    ("train: {epochs: 2.0}\n", "train.epochs"),
    ("train: {batch_size: true}\n", "train.batch_size"),
    ("train: {schedule: {name: step, milestones: [1.0]}}\n", "train.schedule.milestones.0"),
    ("train: {optimizer: {lr: true}}\n", "train.optimizer.lr"),
    ("init: {seed: 1.0}\n", "init.seed"),
    ("init: {zero_gamma: 1}\n", "init.zero_gamma"),  # a flag is true or false, not a number
    ("train: {channels_last: 1}\n", "train.channels_last"),
]


@pytest.mark.parametrize("body, where", NOT_COUNTS, ids=[w for _, w in NOT_COUNTS])
def test_counts_are_integers_and_flags_booleans_never_coerced(tmp_path, body, where):
    from netspec.train.recipe import recipe_from_spec

    text = "name: t\n" + body
    with pytest.raises(SpecError) as info:
        spec = netspec.loads_spec(text, "t.yaml")
        netspec.analyze(spec)
        recipe_from_spec(spec)
    assert any(p.format().startswith("t.yaml:") and where in p.format() for p in info.value.problems)

    path = write(tmp_path, text)
    assert where in assert_cli_refuses(run_cli("validate", str(path)), path)


# -- control characters reach the terminal escaped, in every message --------------------------------

FORGED = "\nforged.yaml:1:1: ok"
CONTROL = [
    ('"\\e]0;pwned\\a": 1\n', "\\x1b]0;pwned\\x07"),  # xterm: set the window title
    (f'"stem{FORGED!r}": []\n'.replace("'", ""), "\\nforged.yaml"),  # a second, forged line
    ('stem:\n  - "conv\\r\\e[2K": {}\n', "conv\\r\\x1b[2K"),  # carriage return, erase line
    ('name: "n\\e[31m"\n', "\\x1b[31m"),  # the spec name's own error
    ('stem:\n  - conv: {out: 4, name: "x\\u202eyz"}\n', "\\u202e"),  # right-to-left override
    ('blocks:\n  "b\\n": {body: []}\n', "b\\n"),
]


@pytest.mark.parametrize("body, shown", CONTROL, ids=["osc", "newline", "cr", "name", "bidi", "block"])
def test_control_characters_from_a_spec_are_escaped_in_every_message(tmp_path, body, shown):
    text = body if body.startswith("name:") else "name: t\n" + body
    with pytest.raises(SpecError) as info:
        netspec.analyze(netspec.loads_spec(text, "t.yaml"))
    message = str(info.value)
    assert not RAW_CONTROL.search(message) and shown in message
    assert all(LOCATED.match(line) for line in message.splitlines())  # one line per problem

    path = write(tmp_path, text)
    result = run_cli("validate", str(path))
    assert_cli_refuses(result, path)
    assert not RAW_CONTROL.search(result.output)
    assert all(LOCATED.match(line) for line in result.output.splitlines()), result.output


def test_file_names_with_control_characters_are_escaped(tmp_path):
    good = tmp_path / "a\nforged.yaml:1:1: ok\x1b[0m.yaml"
    good.write_text((SPECS / "lenet5.yaml").read_text())
    result = run_cli("validate", str(good))
    assert result.exit_code == 0
    assert result.output.count("\n") == 1 and not RAW_CONTROL.search(result.output)
    assert "\\nforged.yaml:1:1: ok\\x1b[0m" in result.output

    bad = tmp_path / "b\rc.yaml"
    bad.write_text("name: t\nstem: 3\n")
    result = run_cli("validate", str(bad))
    assert result.exit_code == 2 and "b\\rc.yaml:2:" in result.output
    assert not RAW_CONTROL.search(result.output)


# -- unreadable checkpoints: a reason, never torch's advice to unpickle anyway -----------------------


def _bad_checkpoints(tmp_path: Path) -> dict[str, Path]:
    import pickle
    import zipfile

    import torch

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    files = {}
    torch.save({"format": "netspec/1", "x": Evil()}, tmp_path / "evil.pt")
    torch.save({"x": Evil()}, tmp_path / "evil_legacy.pt", _use_new_zipfile_serialization=False)
    (tmp_path / "opcode.pt").write_bytes(b"\x80\x02X\x01\x00\x00\x00a\xff.")  # unknown opcode
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(Evil(), protocol=0))
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"a": torch.zeros(2)}, tmp_path / "good.pt")
    with zipfile.ZipFile(tmp_path / "good.pt") as src, zipfile.ZipFile(tmp_path / "cut.pt", "w") as dst:
        for name in src.namelist():  # the pickle cut in half
            data = src.read(name)
            dst.writestr(name, data[: len(data) // 2] if name.endswith("data.pkl") else data)
    for name in ("evil.pt", "text.pt", "opcode.pt"):
        for suffix in (".ts", ".pt2"):  # the same bytes as TorchScript and torch.export files
            (tmp_path / (name[:-3] + suffix)).write_bytes((tmp_path / name).read_bytes())
    for path in sorted(tmp_path.iterdir()):
        if path.suffix in (".pt", ".ts", ".pt2") and path.name != "good.pt":
            files[path.name] = path
    return files


def test_corrupt_or_malicious_compiled_files_never_suggest_weights_only_false(tmp_path, capfd):
    from netspec.compile import CompileError, load_compiled

    files = _bad_checkpoints(tmp_path)
    assert len(files) == 12
    for name, path in files.items():
        with pytest.raises(CompileError) as info:
            load_compiled(path)
        message = str(info.value)
        assert str(path) in message, name
        assert "weights_only=False" not in message and "`False`" not in message, message
        assert "add_safe_globals" not in message and "Traceback" not in message, message
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "weights_only" not in captured.err, captured.err[:500]
    assert not (tmp_path / "pwned").exists()

    result = run_cli("import-weights", "lenet5", str(files["opcode.pt"]), "-o", str(tmp_path / "o.pt"))
    assert result.exit_code == 2 and "opcode.pt" in result.output
    assert "weights_only=False" not in result.output and "`False`" not in result.output


# -- torch's warnings from netspec's own calls stay out of the output ---------------------------------


def test_report_check_and_compile_print_no_torch_warnings(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    commands = [
        ["report", "--check", "lenet5"],
        ["compile", "lenet5", "-o", str(tmp_path / "l.ts")],
    ]
    for args in commands:  # fresh processes: a warning shown once would hide in-process
        proc = subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", proc.stderr


# -- validate checks the train: recipe with the runner's own validation -------------------------------


def test_validate_checks_the_train_section_at_its_yaml_lines(tmp_path):
    from netspec.train.recipe import recipe_from_spec

    text = SMALL + CONV + "train:\n  epochz: 3\n  optimizer: {name: sgdd}\n"
    spec = netspec.loads_spec(text, "t.yaml")  # the network itself is fine
    with pytest.raises(SpecError) as info:
        recipe_from_spec(spec)
    found = {p.format().split(": ")[1]: p.location.line for p in info.value.problems}
    assert found == {"train.epochz": 6, "train.optimizer.name": 7}

    path = write(tmp_path, text)
    result = run_cli("validate", str(path))
    assert_cli_refuses(result, path)
    assert {line.split(": ")[1] for line in result.output.splitlines()} == set(found)
    result = run_cli("validate", str(SPECS / "lenet5.yaml"), "--set", "train.epochz=3")
    assert_cli_refuses(result, "<--set train.epochz=3>")


def test_validate_does_not_import_torch_or_the_runner():
    code = (
        "import sys; from netspec.cli import app\n"
        f"try: app(['validate', {str(SPECS / 'lenet5.yaml')!r}], standalone_mode=False)\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'netspec.train.runner') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.stdout.strip().endswith("[]"), proc.stdout + proc.stderr


# -- missing, directory, empty, binary: every command says so, located --------------------------------

COMMANDS = [
    "validate {spec}",
    "report {spec}",
    "report {spec} --check",
    "explain {spec}",
    "export {spec}",
    "diagram {spec} -o {tmp}/d.dot",
    "compile {spec} -o {tmp}/o.pt",
    "diff {lenet5} {spec}",
    "train {spec} --out {tmp}/run",
    "eval {spec} -c {tmp}/none.pt",
    "import-weights {spec} {tmp}/none.pt -o {tmp}/o.pt",
    "new x -o {tmp}/new.yaml --from {spec}",
]


def _unreadable(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "adir").mkdir()
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "binary.yaml").write_bytes(b"\x00\x01\xff" * 50)
    return {
        "missing": tmp_path / "missing.yaml",
        "directory": tmp_path / "adir",
        "empty": tmp_path / "empty.yaml",
        "binary": tmp_path / "binary.yaml",
    }


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(w for w in c.split() if "{" not in w))
def test_every_command_refuses_unreadable_spec_files(tmp_path, command):
    for kind, path in _unreadable(tmp_path).items():
        args = [a.format(spec=path, tmp=tmp_path, lenet5=SPECS / "lenet5.yaml") for a in command.split()]
        result = run_cli(*args)
        assert result.exit_code == 2, (kind, args, result.output)
        first = first_error_line(result)
        assert path.name in first, (kind, first)
        if kind != "missing":
            assert first.startswith(f"{path}:1:1: "), (kind, first)
    assert not (tmp_path / "new.yaml").exists() and not (tmp_path / "o.pt").exists()
