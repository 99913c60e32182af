"""Inputs that would hang, eat memory or crash get a located error instead: spec files that are
devices, pipes, loops or odd paths, `extends` chains, YAML scalars, `${...}` expressions and `--set`.

Every case is checked through the API (a SpecError and nothing else, every problem located) and the
CLI (exit 2, the first line `FILE:LINE:COL: `, no traceback), each under a time limit that turns a hang
into a failure: SIGALRM in-process, a timeout for the real processes. References: what the kernel
says a file is (os.stat), the line the test wrote, and torchvision's models for the specs that load.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

import netspec
from netspec import SpecError
from netspec.cli import app
from netspec.expr import MAX_TEXT_CHARS
from netspec.source import MAX_FILE_BYTES

from .conftest import ROOT, SPECS

LIMIT = 10.0  # seconds: generous on a shared machine; every case takes milliseconds, a hang forever

BASE = """name: t
input: {channels: 3, size: 8}
classes: 10
stem:
  - conv: {out: 4, kernel: 3}
head:
  - avgpool: global
  - flatten
  - linear: ${classes}
"""  # a valid spec; `stem.0.conv.out` is on line 5, column 17


class Hang(BaseException):  # not an Exception: nothing on the way may swallow it
    pass


@contextmanager
def time_limit(seconds: float = LIMIT) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def api_error(load: Callable[[], object]) -> SpecError:
    """The SpecError that loading (and analysing) raises; any other exception fails the test."""
    with time_limit():
        try:
            netspec.analyze(load())
        except SpecError as exc:
            error = exc
        else:
            pytest.fail("accepted")
    assert all(p.location is not None for p in error.problems), error.format()
    return error


def cli_error(*args: str, where: str) -> str:
    """The CLI's output for a rejected spec: exit 2, first line located in `where`, no traceback."""
    with time_limit():
        result = CliRunner().invoke(app, list(args))
    out = result.output
    assert result.exit_code == 2, out
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out
    assert re.match(rf"{re.escape(where)}:\d+:\d+: ", out), out[:300]
    return out


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def child(tmp_path: Path, extends: str, name: str = "child.yaml") -> Path:
    """A spec whose line 2 is `extends: <extends>` (the value at column 10)."""
    return write(tmp_path / name, f"name: child\nextends: {extends}\n")


def assert_at_extends(error: SpecError, spec: Path, needle: str) -> None:
    p = error.problems[0]
    assert needle in p.message, error.format()
    assert (p.location.file, p.location.line, p.location.col) == (str(spec), 2, 10), error.format()
    assert p.path == ("extends",)


# -- files that are not regular files ------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)  # nobody ever writes: opening it for reading would wait forever
    return path


SPECIAL = ["/dev/zero", "/dev/urandom", "/dev/null", "fifo"]


def _special(name: str, fifo: Path) -> str:
    return str(fifo) if name == "fifo" else name


@pytest.mark.parametrize("name", SPECIAL)
def test_extends_of_a_device_or_fifo_is_refused_without_reading(name: str, fifo: Path, tmp_path: Path):
    target = _special(name, fifo)
    assert not os.path.isfile(target)  # the kernel's word: a device or a pipe
    spec = child(tmp_path, target)
    assert_at_extends(api_error(lambda: netspec.load_spec(spec)), spec, "not a regular file")
    cli_error("validate", str(spec), where=str(spec))


@pytest.mark.parametrize("name", SPECIAL)
def test_spec_path_that_is_a_device_or_fifo_is_refused(name: str, fifo: Path):
    target = _special(name, fifo)
    error = api_error(lambda: netspec.load_spec(target))
    assert "not a regular file" in error.format()
    assert error.problems[0].location.file == target
    cli_error("report", target, where=target)


def test_real_processes_never_wait_on_a_fifo_or_read_a_device(fifo: Path, tmp_path: Path):
    specs = [
        str(fifo),
        str(child(tmp_path, str(fifo), "a.yaml")),
        str(child(tmp_path, "/dev/zero", "b.yaml")),
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NETSPEC_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "validate", *specs],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 3, proc.stderr
    for spec, line in zip(specs, lines, strict=True):
        assert line.startswith(f"{spec}:") and "not a regular file" in line


def test_a_large_file_is_read_no_further_than_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    big = write(tmp_path / "big.yaml", "name: big\n" + "# filler\n" * (3 * MAX_FILE_BYTES // 9))
    read: list[int] = []
    real_open, real_read = os.open, os.read
    big_fds: set[int] = set()

    def recording_open(path: str, flags: int, *args: int) -> int:
        fd = real_open(path, flags, *args)
        (big_fds.add if os.fspath(path).endswith("big.yaml") else big_fds.discard)(fd)
        return fd

    def counting_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        if fd in big_fds:
            read.append(len(data))
        return data

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "read", counting_read)
    spec = child(tmp_path, "big.yaml")
    error = api_error(lambda: netspec.load_spec(spec))
    assert "KiB limit" in error.format() and error.problems[0].location.file.endswith("big.yaml")
    assert sum(read) == MAX_FILE_BYTES + 1  # st_size (3 MiB here) is never what decides
    assert big.stat().st_size > 3 * sum(read) - 3


# -- paths that cannot be opened --------------------------------------------------------------------


def kernel_says(path: str) -> int:
    """The errno the kernel gives for `path` (EISDIR for a directory): the reference for each case."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return exc.errno or 0
    return errno.EISDIR if stat.S_ISDIR(info.st_mode) else 0


def _loop(tmp_path: Path) -> str:
    (tmp_path / "loop_a.yaml").symlink_to(tmp_path / "loop_b.yaml")
    (tmp_path / "loop_b.yaml").symlink_to(tmp_path / "loop_a.yaml")
    return str(tmp_path / "loop_a.yaml")


def _directory(tmp_path: Path) -> str:
    (tmp_path / "dir.yaml").mkdir()
    return str(tmp_path / "dir.yaml")


def _too_long(tmp_path: Path) -> str:
    return str(tmp_path / ("a" * 5000 + ".yaml"))


def _not_a_directory(tmp_path: Path) -> str:
    return str(write(tmp_path / "file.yaml", BASE) / "inner.yaml")


def _missing(tmp_path: Path) -> str:
    return str(tmp_path / "gone.yaml")


BAD_PATHS = {
    "symlink-loop": (_loop, "loop of symbolic links", errno.ELOOP),
    "directory": (_directory, "is a directory", errno.EISDIR),
    "name-too-long": (_too_long, "path is too long", errno.ENAMETOOLONG),
    "not-a-directory": (_not_a_directory, "not a directory", errno.ENOTDIR),
    "missing": (_missing, "no such file", errno.ENOENT),
}


@pytest.mark.parametrize("case", BAD_PATHS)
def test_an_extends_path_that_cannot_be_read_is_located_at_extends(case: str, tmp_path: Path):
    make, needle, code = BAD_PATHS[case]
    target = make(tmp_path)
    assert kernel_says(target) == code
    spec = child(tmp_path, target)
    assert_at_extends(api_error(lambda: netspec.load_spec(spec)), spec, needle)
    out = cli_error("validate", str(spec), where=str(spec))
    assert len(out.splitlines()[0]) < 400  # a 5000-character path is shortened in the message


@pytest.mark.parametrize("case", BAD_PATHS)
def test_a_spec_path_that_cannot_be_read_is_located_at_the_file(case: str, tmp_path: Path):
    make, needle, _ = BAD_PATHS[case]
    target = make(tmp_path)
    error = api_error(lambda: netspec.load_spec(target))
    assert needle in error.format() and error.problems[0].location.file == target
    cli_error("validate", target, where=target)


def test_a_nul_character_in_an_extends_path_is_located(tmp_path: Path):
    spec = child(tmp_path, '"base\\0.yaml"')  # YAML's escape: the value holds a real NUL
    assert_at_extends(api_error(lambda: netspec.load_spec(spec)), spec, "NUL")
    cli_error("validate", str(spec), where=str(spec))
    error = api_error(lambda: netspec.load_spec("spec\0.yaml"))
    assert error.problems[0].location.line == 1


def test_a_permission_error_is_located(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # tests may run as root, whom no file mode stops: the kernel's EACCES is simulated for one path
    secret = write(tmp_path / "secret.yaml", BASE)
    real_open = os.open

    def guarded_open(path: str, flags: int, *args: int) -> int:
        if os.fspath(path).endswith("secret.yaml"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", guarded_open)
    spec = child(tmp_path, "secret.yaml")
    assert_at_extends(api_error(lambda: netspec.load_spec(spec)), spec, "permission denied")
    cli_error("validate", str(spec), where=str(spec))
    cli_error("validate", str(secret), where=str(secret))


# -- what `extends` may name --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, needle",
    [
        ("[a.yaml, b.yaml]", "one file path, not a list"),
        ("{file: a.yaml}", "one file path, not a PosDict"),
        ("3", "one file path, not a int"),
        ('""', "not an empty text"),
        ("https://example.com/resnet50.yaml", "not a URL"),
        ("file:///etc/hosts", "not a URL"),
        ("~/specs/resnet50.yaml", "does not expand `~`"),
    ],
)
def test_extends_takes_one_local_path(value: str, needle: str, tmp_path: Path):
    spec = child(tmp_path, value)
    assert_at_extends(api_error(lambda: netspec.load_spec(spec)), spec, needle)
    cli_error("validate", str(spec), where=str(spec))


@pytest.mark.parametrize("spelling", range(6))
def test_extends_of_itself_under_another_spelling_is_a_cycle(spelling: int, tmp_path: Path):
    spec = tmp_path / "child.yaml"
    (tmp_path / "sub").mkdir()
    write(spec, "name: child\n")
    (tmp_path / "link.yaml").symlink_to(spec)
    os.link(spec, tmp_path / "hard.yaml")
    names = ["child.yaml", "./child.yaml", "sub/../child.yaml", f"../{tmp_path.name}/child.yaml"]
    names += ["link.yaml", "hard.yaml"]
    assert os.path.samefile(tmp_path / names[spelling], spec)  # the kernel: one file
    child(tmp_path, names[spelling])
    assert_at_extends(api_error(lambda: netspec.load_spec(spec)), spec, "cycle")
    cli_error("validate", str(spec), where=str(spec))


def test_an_extends_chain_1000_deep_stops_at_the_cap_without_reading_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from netspec import resolve

    for i in range(1000):
        write(tmp_path / f"s{i}.yaml", f"name: s{i}\nextends: s{i + 1}.yaml\n")
    write(tmp_path / "s1000.yaml", BASE)
    opened: list[str] = []
    real = resolve.read_spec_file

    def counting_read(path: str, *args: object) -> object:
        opened.append(path)
        return real(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(resolve, "read_spec_file", counting_read)
    error = api_error(lambda: netspec.load_spec(tmp_path / "s0.yaml"))
    assert f"nested more than {resolve.MAX_EXTENDS_DEPTH} deep" in error.format()
    assert len(opened) == resolve.MAX_EXTENDS_DEPTH
    assert error.problems[0].location.line == 2
    cli_error("validate", str(tmp_path / "s0.yaml"), where=str(tmp_path / f"s{len(opened) - 1}.yaml"))


def test_a_chain_of_small_files_is_held_to_one_files_size(tmp_path: Path):
    filler = "# " + "x" * 1000 + "\n"
    per_file = (MAX_FILE_BYTES // 4) // len(filler)  # each file a quarter of the limit: fine alone
    write(tmp_path / "s5.yaml", BASE + filler * per_file)
    for i in range(5):
        write(tmp_path / f"s{i}.yaml", f"name: s{i}\nextends: s{i + 1}.yaml\n" + filler * per_file)
    netspec.load_spec(tmp_path / "s3.yaml")  # three files together are under the limit
    error = api_error(lambda: netspec.load_spec(tmp_path / "s0.yaml"))
    assert "together" in error.format()
    assert error.problems[0].location.file.endswith("s4.yaml")  # the file that went over
    cli_error("validate", str(tmp_path / "s0.yaml"), where=str(tmp_path / "s4.yaml"))


def test_a_chain_of_alias_heavy_files_is_held_to_one_files_value_count(tmp_path: Path):
    # 330 x 330 = 109,000 values per file: under the 200,000 of one file, over it for two
    row = "[" + ", ".join(["1"] * 330) + "]"
    aliases = "x_row: &r " + row + "\nx_grid: &g [" + ", ".join(["*r"] * 330) + "]\n"
    write(tmp_path / "base.yaml", BASE + aliases)
    write(tmp_path / "mid.yaml", "name: mid\nextends: base.yaml\n" + aliases)
    error = api_error(lambda: netspec.load_spec(tmp_path / "mid.yaml"))
    assert "with the files it extends" in error.format()
    assert error.problems[0].location.file.endswith("base.yaml")
    cli_error("validate", str(tmp_path / "mid.yaml"), where=str(tmp_path / "base.yaml"))


def test_extends_of_an_absolute_path_and_through_a_symlink_equal_torchvision(tmp_path: Path):
    import torch
    import torchvision

    def n_params(build: Callable[[], torch.nn.Module]) -> int:
        with torch.device("meta"):  # shapes only: no memory, no weight init
            return sum(p.numel() for p in build().parameters())

    absolute = write(tmp_path / "abs.yaml", f"name: mine\nextends: {SPECS / 'resnet18.yaml'}\n")
    assert netspec.analyze(netspec.load_spec(absolute)).params == n_params(torchvision.models.resnet18)
    # a symlink to a zoo spec still finds the spec's parent next to the real file (resnet34 extends resnet18)
    (tmp_path / "r34.yaml").symlink_to(SPECS / "resnet34.yaml")
    got = netspec.analyze(netspec.load_spec(tmp_path / "r34.yaml")).params
    assert got == n_params(torchvision.models.resnet34)


# -- what a file may hold ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, needle", [("- conv: {out: 8}\n- relu\n", "not a list"), ("just text\n", "not a str")]
)
def test_a_spec_that_is_not_a_mapping_is_located(text: str, needle: str, tmp_path: Path):
    path = write(tmp_path / "s.yaml", text)
    assert needle in api_error(lambda: netspec.load_spec(path)).format()
    assert needle in api_error(lambda: netspec.loads_spec(text, "s.yaml")).format()
    cli_error("validate", str(path), where=str(path))


@pytest.mark.parametrize("encode", ["bom", "crlf", "bom+crlf"])
def test_bom_and_crlf_files_load_and_report_the_written_line(encode: str, tmp_path: Path):
    def encoded(text: str) -> bytes:
        text = text.replace("\n", "\r\n") if "crlf" in encode else text
        return (b"\xef\xbb\xbf" if "bom" in encode else b"") + text.encode()

    path = tmp_path / "s.yaml"
    path.write_bytes(encoded(BASE))
    got, plain = netspec.analyze(netspec.load_spec(path)), netspec.analyze(netspec.loads_spec(BASE))
    assert (got.params, got.macs, got.output_shape) == (plain.params, plain.macs, plain.output_shape)
    path.write_bytes(encoded(BASE.replace("out: 4", "out: -4")))
    error = api_error(lambda: netspec.load_spec(path))
    where = error.problems[0].location
    assert (where.line, where.col) == (5, 17), error.format()  # where `-4` is written
    cli_error("validate", str(path), where=str(path))


def test_utf16_and_very_long_lines(tmp_path: Path):
    utf16 = tmp_path / "u16.yaml"
    utf16.write_bytes(BASE.encode("utf-16"))
    assert "UTF-16" in api_error(lambda: netspec.load_spec(utf16)).format()
    cli_error("validate", str(utf16), where=str(utf16))
    long_comment = write(tmp_path / "c.yaml", BASE + "# " + "x" * (MAX_FILE_BYTES - 400) + "\n")
    with time_limit():
        assert netspec.analyze(netspec.load_spec(long_comment)).output_shape == (10,)
    long_name = write(tmp_path / "n.yaml", BASE.replace("name: t", "name: " + "x" * (MAX_FILE_BYTES - 400)))
    out = cli_error("validate", str(long_name), where=str(long_name))
    assert len(out) < 2000  # the value is named, not printed whole


@pytest.mark.parametrize(
    "value, needle",
    [
        ("!!int abc", "not a valid !!int value"),
        ("!!float abc", "not a valid !!float value"),
        ("!!bool maybe", "not a valid !!bool value"),
        ("!!timestamp abc", "not a valid !!timestamp value"),
        ("9" * 5000, "longer than 100 characters"),  # Python refuses to parse over 4300 digits
        ("0b" + "1" * 50_000, "longer than 100 characters"),
        ("1" + ":59" * 300_000, "longer than 100 characters"),  # base 60: quadratic to parse
    ],
)
def test_yaml_scalars_that_cannot_be_read_are_located(value: str, needle: str, tmp_path: Path):
    text = BASE + f"vars:\n  x: {value}\n"
    path = write(tmp_path / "s.yaml", text)
    error = api_error(lambda: netspec.load_spec(path))
    assert needle in error.format()
    assert (error.problems[0].location.line, error.problems[0].location.col) == (11, 6)
    cli_error("validate", str(path), where=str(path))


# -- expressions ---------------------------------------------------------------------------------

EXPRESSIONS = [
    ("round(5, -4000000000000000000)", "round()'s digits must be an integer from -64 to 64"),
    ("round(1.5, 2 ** 62)", "round()'s digits"),
    ("round(2.5, 0.5)", "round()'s digits"),
    ("make_divisible(8, 0)", "divisor must be an integer of at least 1"),
    ("make_divisible(8, -8)", "divisor"),
    ("make_divisible(8, 2.5)", "divisor"),
    ("make_divisible('a')", "needs numbers"),
    ("-'a'", "arithmetic needs numbers"),
    ("+'a'", "arithmetic needs numbers"),
    ("1 % 0", "division by zero"),
    ("1.0 // 0.0", "division by zero"),
    ("0 ** -1", "division by zero"),
    ("1e308 * 10", "not a finite number"),
    ("10.0 ** 400", "exponent too large"),
    ("1.5 ** 64 ** 2", "exponent too large"),
    ("(-8) ** 0.5", "fractional power"),  # Python gives a complex number
    ("int(1e300)", "too large"),
    ("floor(1e300)", "too large"),
    ("round(1e300)", "too large"),
    ("sqrt(-1)", "negative"),
    ("float('nan')", "ASCII digits"),
    ("float('inf')", "ASCII digits"),
    ("float('1e400')", "not a finite number"),
    ("int('٣')", "ASCII digits"),  # Python's int() reads Arabic-Indic digits
    ("int('1_000')", "ASCII digits"),
    ("int('" + "9" * 60 + "')", "ASCII digits"),
    ("'a' * 10 ** 9", "arithmetic needs numbers"),
    ("'a' < 1", "cannot compare"),
    ("nan_var > 1", "'nan_var' is nan"),
    ("inf_var * 0", "'inf_var' is inf"),
    ("huge_var - 1", "'huge_var' is too large"),
    ("max(" + "1, " * 70 + "1)", "max() takes 1 to 64 arguments"),
    ("min()", "min() takes 1 to 64 arguments"),
    ("abs(1, 2)", "abs() takes 1 argument, got 2"),
    ("-" * 300 + "1", "nested"),
    ("1\\0", "NUL"),  # YAML's escape puts a real NUL in the expression
]
VARS = "vars: {nan_var: .nan, inf_var: .inf, huge_var: 0x" + "f" * 90 + "}\n"


@pytest.mark.parametrize("expr, needle", EXPRESSIONS, ids=[e[:30] for e, _ in EXPRESSIONS])
def test_a_failing_expression_is_a_located_error_in_a_value_and_a_when(
    expr: str, needle: str, tmp_path: Path
):
    for field, line, col in [("out", 5, 17), ("when", 8, 21)]:
        if field == "out":
            text = BASE.replace("out: 4", f'out: "${{{expr}}}"') + VARS
        else:
            text = BASE.replace("  - flatten", f'  - flatten: {{when: "${{{expr}}}"}}') + VARS
        path = write(tmp_path / f"{field}.yaml", text)
        error = api_error(lambda path=path: netspec.load_spec(path))
        assert needle in error.format(), error.format()
        where = error.problems[0].location
        assert (where.line, where.col) == (line, col), error.format()
        cli_error("validate", str(path), where=str(path))


def test_text_built_from_expressions_is_bounded(tmp_path: Path):
    # each var doubles the last: 4000 characters would become 4000 * 2 ** 20 without a bound
    lines = ["vars:", "  v0: " + "x" * 4000] + [f'  v{i}: "${{v{i - 1}}}${{v{i - 1}}}"' for i in range(1, 21)]
    text = BASE.replace("  - flatten", '  - flatten: {name: "f${v20}"}') + "\n".join(lines) + "\n"
    path = write(tmp_path / "s.yaml", text)
    error = api_error(lambda: netspec.load_spec(path))
    assert f"longer than {MAX_TEXT_CHARS} characters" in error.format()
    assert error.problems[0].location.line == 12  # v1, the first to outgrow the bound
    cli_error("validate", str(path), where=str(path))
    many = BASE.replace("  - flatten", '  - flatten: {name: "f' + "${1}" * 200 + '"}')
    error = api_error(lambda: netspec.loads_spec(many, "many.yaml"))
    assert "more than 100 expressions" in error.format() and error.problems[0].location.line == 8


def test_a_message_about_a_long_value_stays_short(tmp_path: Path):
    text = BASE.replace("out: 4", 'out: "${s * 2}"') + "vars: {s: " + "y" * 100_000 + "}\n"
    error = api_error(lambda: netspec.loads_spec(text, "s.yaml"))
    assert "arithmetic needs numbers" in error.format() and len(error.format()) < 500
    many_vars = (
        BASE.replace("out: 4", 'out: "${nope}"')
        + "vars: {"
        + ", ".join(f"v{i}: {i}" for i in range(5000))
        + "}\n"
    )
    error = api_error(lambda: netspec.loads_spec(many_vars, "s.yaml"))
    assert "unknown name 'nope'" in error.format() and len(error.format()) < 1000


# -- --set overrides ----------------------------------------------------------------------------

RESNET50 = str(SPECS / "resnet50.yaml")
OVERRIDES = [
    ("stem.².conv.out=4", "'stem.²' is not an index"),  # '²'.isdigit() is true; int('²') fails
    ("stem.٣=4", "is not an index"),
    ("=1", "empty path segment"),
    (" =1", "empty path segment"),
    ("stages.9.depth=2", "not an index of a list of 4"),
    ("stages.-5.depth=2", "not an index of a list of 4"),
    ("stages.99999999999999999999999.depth=1", "not an index"),
    ("name.first=3", "goes inside a str"),
    ("nonsense", "PATH=VALUE"),
    ("stages.0.depth=[1", "YAML syntax error"),
    ("stages.0.depth=!!int abc", "not a valid !!int value"),
    ("a" + ".a" * 10_000 + "=1", "nested deeper than 64 levels"),
    ("vars" + ".v" * 70 + "=1", "nested deeper than 64 levels"),
]


@pytest.mark.parametrize("override, needle", OVERRIDES, ids=[o[:30] for o, _ in OVERRIDES])
def test_every_override_problem_is_located_at_the_override(override: str, needle: str):
    error = api_error(lambda: netspec.load_spec(RESNET50, [override]))
    assert needle in error.format(), error.format()
    where = error.problems[0].location
    assert where.file.startswith("<--set " + override[:100]), where
    out = cli_error("validate", RESNET50, "--set", override, where=where.file)
    assert len(out) < 2000  # a 20,000-character override is shortened, not printed in full


def test_an_override_value_problem_points_at_the_value_column():
    error = api_error(lambda: netspec.load_spec(RESNET50, ["stages.0.depth=[1"]))
    assert error.problems[0].location.col == len("stages.0.depth=[1") + 1  # the end of the value
    error = api_error(lambda: netspec.load_spec(RESNET50, ["stages.0.depth=!!int abc"]))
    assert error.problems[0].location.col == len("stages.0.depth=") + 1


def test_an_override_as_deep_as_a_yaml_document_may_be_passes_the_depth_cap():
    # 63 dots: 64 levels, the YAML nesting cap; the value is then checked like any other
    override = "vars" + ".v" * 62 + "=1"
    error = api_error(lambda: netspec.load_spec(RESNET50, [override]))
    assert "vars.v" in error.format() and "nested deeper" not in error.format()
