"""The `netspec` command line (Typer). Every user mistake prints FILE:LINE:COL: path: message and
exits with code 2; nothing a user does should show a Python traceback."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import Location, Problem, SpecError, printable

app = typer.Typer(
    name="netspec",
    help="A declarative YAML architecture compiler for convolutional networks.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _complete_spec(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion of every SPEC argument: zoo names, then spec and model files."""
    from .zoo import complete_spec

    return complete_spec(incomplete)


SpecArgument = Annotated[str, typer.Argument(help="Spec file (or zoo name).", autocompletion=_complete_spec)]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a field: `--set stages.2.depth=8` (value is YAML)."),
]
InputOption = Annotated[
    str | None,
    typer.Option("--input", "-i", help="Input size: `224`, `160x192` or `3x224x224` (C x H x W)."),
]
AllowLargeOption = Annotated[
    bool,
    typer.Option(
        "--allow-large",
        help="Raise the safety caps (10^12 params, 10^6 layers, all of memory) and let the spec's own"
        " `limits:` go up to them; without it a spec may only lower its limits.",
    ),
]


class Format(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"


def fail(error: SpecError) -> None:
    typer.echo(error.format(), err=True)
    raise typer.Exit(2)


def usage_error(message: str) -> None:
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(2)


def write_or_print(text: str, output: Path | None, note: str = "") -> None:
    """Write `text` to `output`, or to stdout when no file is given."""
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        usage_error(f"cannot write {output}: {exc.strerror}")
    typer.echo(f"wrote {printable(str(output))}{note}")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        usage_error(f"--scaling '{text}': give `auto` or sizes such as 128,224,384")
    if not sizes or min(sizes) < 1 or max(sizes) > 1 << 16 or len(sizes) > 16:
        usage_error(f"--scaling '{text}': 1 to 16 sizes, each from 1 to 65536")
    return sizes


def _input_overrides(text: str | None) -> list[str]:
    if not text:
        return []
    parts = text.lower().replace("*", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        usage_error(f"--input '{text}' is not a size: use 224, 160x192 or 3x224x224")
    if len(dims) not in (1, 2, 3) or min(dims) < 1 or max(dims) > 1 << 16:
        usage_error(f"--input '{text}' must be 1 to 3 positive sizes, each at most 65536")
    if len(dims) == 3:
        return [f"input.channels={dims[0]}", f"input.size=[{dims[1]}, {dims[2]}]"]
    if len(dims) == 2:
        return [f"input.size=[{dims[0]}, {dims[1]}]"]
    return [f"input.size={dims[0]}"]


def load(
    spec: str, overrides: list[str] | None = None, input_size: str | None = None, allow_large: bool = False
) -> Any:
    from .resolve import load_spec
    from .spec import large_limits
    from .zoo import find_spec

    overrides = [*(overrides or []), *_input_overrides(input_size)]
    return load_spec(find_spec(spec), overrides, limits=large_limits() if allow_large else None)


@app.command()
def validate(
    specs: Annotated[
        list[str], typer.Argument(help="Spec files (or zoo names).", autocompletion=_complete_spec)
    ],
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Check specs: syntax, types, names, every shape and the `train:` recipe. Prints `ok` or all
    problems; exit 2 on error.

    Example: `netspec validate specs/resnet50.yaml specs/vgg16.yaml`
    """
    from .analysis import analyze
    from .train.recipe import recipe_from_spec

    failed = False
    for path in specs:
        try:
            spec = load(path, set_, allow_large=allow_large)
            a = analyze(spec)
            recipe_from_spec(spec)  # the runner's own check: `train.epochz` fails here, not at train time
            shape = "x".join(map(str, a.output_shape))
            typer.echo(f"ok  {printable(path)}: {a.params:,} params, output {shape}")
        except SpecError as exc:
            typer.echo(exc.format(), err=True)
            failed = True
    if failed:
        raise typer.Exit(2)


@app.command()
def report(
    spec: Annotated[
        str,
        typer.Argument(
            help="Spec file (or zoo name), or a run directory (its spec.yaml and results), or a model:"
            " `torchvision:NAME`, `timm:NAME`, `package.module:factory`, `model.py`.",
            autocompletion=_complete_spec,
        ),
    ],
    input_size: InputOption = None,
    format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="table, json, markdown or html.")
    ] = ReportFormat.table,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (json, markdown, html; default: stdout)."),
    ] = None,
    depth: Annotated[int | None, typer.Option("--depth", "-d", help="Nesting levels to show.")] = None,
    set_: SetOption = None,
    scaling: Annotated[
        str | None,
        typer.Option(
            "--scaling",
            help="Totals at other input sizes: `auto` (5/7, 1, 10/7 of the input: 160/224/320) "
            "or sizes like `128,224,384`.",
        ),
    ] = "auto",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Build the module and compare every layer with fvcore and FlopCounterMode; exit 1 "
            "if any disagree.",
        ),
    ] = False,
    allow_large: AllowLargeOption = False,
) -> None:
    """Per-layer shapes, parameters, MACs, FLOPs, memory and receptive field, with totals.

    `--check` builds the module instead and compares each layer's MACs with fvcore's
    FlopCountAnalysis (`.by_module()`, eval mode, one sample) and with torch's FlopCounterMode
    (which counts FLOPs = 2 x MACs for conv and linear only, so every other layer must show 0 there);
    it prints each disagreeing layer and exits 1 if there is any, 0 if all agree.

    Totals at other input sizes follow the table (`--scaling auto`: 160/224/320 for a 224 input;
    `--scaling none` to omit them).

    `-f html` writes one self-contained HTML file (no network needed to open it): the totals, the
    diagram, the layer table with collapsible stages and blocks, the scaling, and for a run directory
    (`netspec report runs/lenet5 -f html -o r.html`) its training curves and final metrics.

    Example: `netspec report specs/resnet50.yaml --input 3x160x160 --format json`,
    `netspec report resnet50_d --check`, `netspec report resnet50 -f html -o resnet50.html`
    """
    from .analysis import analyze
    from .report import scaling as compute_scaling

    if format == ReportFormat.html and check:
        usage_error("--check prints a table or JSON (-f json), not html")
    if format == ReportFormat.table and output is not None:
        usage_error("-o writes -f json, markdown or html; the table is printed")
    if _is_model_reference(spec):  # torchvision:NAME, timm:NAME, pkg.module:factory, model.py
        _report_model(spec, input_size, format.value, output, depth, set_, scaling, check)
        return
    try:
        spec, run_dir = _spec_or_run(spec)
        if check:
            _report_check(spec, set_, input_size, Format(format.value), allow_large)
            return
        spec_obj = load(spec, set_, input_size, allow_large)
        a = analyze(spec_obj)
    except SpecError as exc:
        fail(exc)
    sizes = _scaling_sizes(scaling, a.input_shape)
    scale = compute_scaling(spec_obj, sizes) if sizes is not None else None
    if format == ReportFormat.html:
        from .report_html import spec_html_report
        from .run_record import read_run

        try:
            run = read_run(run_dir) if run_dir is not None else None
        except SpecError as exc:
            fail(exc)
        write_or_print(spec_html_report(spec_obj, depth=depth, scale=scale, run=run), output)
    else:
        _write_report(a, format.value, output, depth, scale)


def _scaling_sizes(scaling: str | None, input_shape: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """The input sizes `--scaling` asks for (`auto`: around the input's), or None for none."""
    from .report import scaling_sizes

    if not scaling or scaling == "none":
        return None
    return [(s, s) for s in _sizes(scaling)] if scaling != "auto" else scaling_sizes(input_shape[1:])


def _write_report(a: Any, format: str, output: Path | None, depth: int | None, scale: Any) -> None:
    """The analysis `a` as JSON or Markdown (to `output`, or stdout) or a table, with its scaling."""
    from .report import print_table, to_json, to_markdown

    if format == Format.json:
        write_or_print(to_json(a, depth, scale) + "\n", output)
    elif format == Format.markdown:
        write_or_print(to_markdown(a, depth, scale) + "\n", output)
    else:
        print_table(a, depth, scale)


def _spec_or_run(spec: str) -> tuple[str, Path | None]:
    """A spec argument that names a run directory means the spec it trained (its spec.yaml) and the run."""
    from .run_record import is_run_dir, run_spec

    path = Path(spec)
    if path.is_dir() and is_run_dir(path):
        return str(run_spec(path)), path
    return spec, None


def _is_model_reference(spec: str) -> bool:
    from .foreign import is_model_reference

    return is_model_reference(spec)


def _report_model(
    ref: str,
    input_size: str | None,
    format: str,
    output: Path | None,
    depth: int | None,
    set_: list[str] | None,
    scaling: str | None,
    check: bool,
) -> None:
    """`report` of a model that is not a spec, traced (netspec/foreign): the same table, JSON and markdown."""
    from .foreign import analyze_module, input_shape, load_model, model_scaling

    if check or set_ or format not in (Format.table, Format.json, Format.markdown):
        usage_error(f"{ref} is a model, not a spec: --check, --set and -f html take a spec")
    try:
        model = load_model(ref)
        shape = input_shape(input_size, model.input_shape)
        a, notes = analyze_module(model.module, shape, model.name)
    except SpecError as exc:
        fail(exc)
    for note in notes:
        typer.echo(f"note: {printable(note)}", err=True)
    sizes = _scaling_sizes(scaling, a.input_shape)
    _write_report(
        a, format, output, depth, model_scaling(model, shape[0], sizes) if sizes is not None else None
    )


def _report_check(
    spec: str, set_: list[str] | None, input_size: str | None, format: Format, allow_large: bool
) -> None:
    import json

    from .check import check_counts, format_check

    try:
        result = check_counts(load(spec, set_, input_size, allow_large))
    except SpecError as exc:
        fail(exc)
    if format == Format.json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(format_check(result))
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def zoo(
    format: Annotated[Format, typer.Option("--format", "-f", help="table, json or markdown.")] = Format.table,
) -> None:
    """List the bundled specs with their parameters and MACs at their natural input size.

    Example: `netspec zoo`
    """
    import json

    from .analysis import analyze
    from .report import human
    from .zoo import zoo_specs

    rows = []
    for path in zoo_specs():
        try:
            spec = load(str(path))
            a = analyze(spec)
            size = "x".join(map(str, a.input_shape))
            rows.append((path.stem, size, a.params, a.macs, spec.description))
        except SpecError as exc:
            rows.append((path.stem, "-", 0, 0, f"INVALID: {exc.problems[0].message}"))
    if format == Format.json:
        keys = ("name", "input", "params", "macs", "description")
        typer.echo(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=2))
        return
    if format == Format.markdown:
        typer.echo("| spec | input | params | MACs | description |\n|---|---|---:|---:|---|")
        for name, size, params, macs, desc in rows:
            typer.echo(f"| {name} | {size} | {params:,} | {human(macs)} | {desc} |")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="netspec zoo (MACs: fvcore convention)")
    for col in ("spec", "input", "params", "MACs", "description"):
        table.add_column(col, justify="right" if col in ("params", "MACs") else "left")
    for name, size, params, macs, desc in rows:  # a description is text, never rich markup
        table.add_row(name, size, f"{params:,}", human(macs), Text(printable(desc)))
    console = Console()
    if not console.is_terminal:  # piped output: do not squeeze the table to 80 columns
        console = Console(width=160)
    console.print(table)


@app.command()
def explain(
    spec: SpecArgument,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Print the resolved spec (after `extends`, overrides and tricks) as YAML that loads back as is.

    Example: `netspec explain specs/resnet50_d.yaml`
    """
    from .resolve import resolved_spec_text

    try:
        typer.echo(resolved_spec_text(load(spec, set_, allow_large=allow_large)), nl=False)
    except SpecError as exc:
        fail(exc)


def _trained_source(spec: str) -> bool:
    """SPEC names trained weights: a run directory, or a checkpoint / compiled weights file."""
    path = Path(spec)
    return path.is_dir() or (path.is_file() and path.suffix.lower() in (".pt", ".pth", ".safetensors"))


def _warning(message: str) -> None:
    typer.echo(f"warning: {printable(message)}", err=True)


@app.command("compile")
def compile_(
    spec: Annotated[
        str,
        typer.Argument(
            help="Spec file (or zoo name); or trained weights: a run directory, a training checkpoint"
            " or a compiled .pt/.safetensors file.",
            autocompletion=_complete_spec,
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write; its suffix picks the format.")
    ],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="state_dict (.pt), torchscript (.ts), export (.pt2), onnx (.onnx) or safetensors.",
        ),
    ] = None,
    input_size: InputOption = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the weight initialisation.")] = None,
    ema: Annotated[
        bool, typer.Option("--ema", help="From a run or training checkpoint: its EMA weights.")
    ] = False,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Build the module and save it: weights with the spec embedded (.pt, .safetensors), TorchScript,
    torch.export or ONNX. From a run directory (its spec.yaml and newest usable checkpoint) or a
    checkpoint, the trained weights are written.

    Example: `netspec compile specs/resnet50_d.yaml -o r50d.pt` (or `-o r50d.onnx`),
    `netspec compile runs/lenet5 -o lenet5.onnx`, `netspec compile runs/lenet5 -o lenet5.safetensors`
    """
    from .compile import save_compiled, trained_model

    try:
        if _trained_source(spec):
            if set_ or input_size or seed is not None:
                usage_error(
                    "--set, --input and --seed change a spec: trained weights are compiled as trained"
                )
            spec_obj, model, used = trained_model(spec, ema=ema, note=_warning)
            typer.echo(f"weights from {printable(str(used))}")
            path = save_compiled(spec_obj, output, format, model=model)
        else:
            if ema:
                usage_error("--ema reads a run's EMA weights: give a run directory or a checkpoint")
            path = save_compiled(load(spec, set_, input_size, allow_large), output, format, seed=seed)
    except SpecError as exc:
        fail(exc)
    typer.echo(f"wrote {printable(str(path))}")


@app.command("import-weights")
def import_weights_(
    spec: SpecArgument,
    checkpoint: Annotated[
        Path, typer.Argument(help="A torchvision/timm checkpoint (.pth, .pt, .bin, .safetensors).")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to save the spec with these weights.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict/--partial", help="--partial loads what fits (e.g. a new head).")
    ] = True,
    verify: Annotated[
        str | None,
        typer.Option(
            "--verify",
            metavar="REF",
            help="Load the checkpoint into a reference too, `torchvision.models.NAME` or `timm:NAME` "
            "(random init, nothing downloaded), and compare logits on a seeded random batch; "
            "exit 1 (and save nothing) if they differ.",
        ),
    ] = None,
    trust_order: Annotated[
        bool,
        typer.Option(
            "--trust-order",
            help="Pair tensors that names cannot tell apart across parallel branches by registration "
            "order, where both sides register the same shapes in the same order (torchvision's "
            "Inception); check the result with --verify.",
        ),
    ] = False,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Load pretrained weights into a spec and save them. Tensors pair by name, then by structure,
    never by a guess: tensors that nothing tells apart are an error that names them.

    Prints how every tensor was paired. The checkpoint is read with `weights_only=True` (or
    safetensors): it is never unpickled as code. Equal shapes do not make equal networks: `--verify`
    compares the logits with a reference implementation's.
    Example: `netspec import-weights resnet50_b resnet50-0676ba61.pth -o r50.pt --verify
    torchvision.models.resnet50`
    """
    from .compile import save_compiled
    from .weights import VerificationError, import_weights

    if output is None and verify is None:
        usage_error("nothing to do: give -o OUT to save the weights, --verify REF to check them, or both")
    try:
        spec_obj = load(spec, set_, allow_large=allow_large)
        model, report = import_weights(
            spec_obj, checkpoint, strict=strict, verify=verify, trust_order=trust_order
        )
    except VerificationError as exc:
        typer.echo(exc.report.format(limit=20))
        typer.echo(f"error: {exc.format()}" + ("; nothing written" if output is not None else ""), err=True)
        raise typer.Exit(1) from None
    except SpecError as exc:
        fail(exc)
    typer.echo(report.format(limit=20))
    if output is not None:
        try:
            path = save_compiled(spec_obj, output, "state_dict", model=model)
        except SpecError as exc:
            fail(exc)
        typer.echo(f"wrote {path}")


@app.command()
def export(
    spec: SpecArgument,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Write the network as readable, standalone PyTorch source (imports torch only, not netspec).

    The file defines one class per block kind, the network class, `build_model(**kwargs)`,
    `INPUT_SHAPE` and `RECIPE` (the `train:` section; `netspec train FILE` trains the file, edited or
    not) and a `__main__` smoke check. Example: `netspec export specs/resnet50_d.yaml -o resnet50_d.py`
    """
    from .export import ExportError, export_source

    try:
        text = export_source(load(spec, set_, allow_large=allow_large))
    except SpecError as exc:
        fail(exc)
    except ExportError as exc:
        usage_error(f"cannot export: {exc}")
    write_or_print(text, output, f" ({len(text.splitlines())} lines)")


def _train_error(exc: Exception) -> None:
    typer.echo(f"error: {printable(str(exc))}", err=True)
    raise typer.Exit(1)


@app.command()
def train(
    spec: Annotated[
        str,
        typer.Argument(
            help="Spec file (or zoo name); its `train:` section is the recipe. Or a model file (`.py`,"
            " as `netspec export` writes it): its build_model(), INPUT_SHAPE and RECIPE.",
            autocompletion=_complete_spec,
        ),
    ],
    epochs: Annotated[int | None, typer.Option(help="train.epochs")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="train.batch_size")] = None,
    lr: Annotated[float | None, typer.Option(help="train.optimizer.lr (before linear scaling)")] = None,
    data: Annotated[
        str | None,
        typer.Option(help="digits (default) | synthetic[:N] | mnist:DIR | cifar10:DIR | imagefolder:DIR"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default: runs/<name>, runs/<name>-2, ...).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Without --out: a new run goes to runs/NAME, or runs/NAME-2, -3, ... when that holds a"
            " run; --resume continues the highest-numbered one (default NAME: the spec's name)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int | None, typer.Option(help="train.seed")] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="train.threads: torch intra-op threads (default: from the work and free cores)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="train.workers: data loading processes for data read from files (default: every core"
            " but one, up to 8; in-memory data sets need none)."
        ),
    ] = None,
    download: Annotated[
        bool, typer.Option("--download", help="Let torchvision download mnist / cifar10 into DIR.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out (without --out: the newest runs/NAME[-k]) from its last"
            " checkpoint (automatic when torchrun restarts it).",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Start the run in --out (without --out: runs/NAME) over (its checkpoints are deleted).",
        ),
    ] = False,
    force_resume: Annotated[
        bool,
        typer.Option(
            "--force-resume",
            help="Resume although the spec or recipe differ from the run's (the run's are kept aside).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final metrics.")] = False,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per event on stdout.")] = False,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            metavar="WEIGHTS",
            help="Start from pretrained weights (train.init.weights): a run directory or checkpoint, a"
            " compiled .pt/.safetensors, or a torchvision/timm file; a head for other classes is"
            " re-initialised and named.",
        ),
    ] = None,
    verify: Annotated[
        str | None,
        typer.Option(
            "--verify",
            metavar="REF",
            help="With --init of a torchvision/timm file (train.init.verify): check the pairing"
            " against `torchvision.models.NAME` or `timm:NAME` (logits on a random batch).",
        ),
    ] = None,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Train a spec with the shared runner (Bag of Tricks recipe fields; exact resume).

    With no --data it trains on scikit-learn's bundled digits (no download).
    Example: `netspec train specs/lenet5.yaml`, `netspec train resnet20_cifar --data cifar10:DIR --epochs 5`

    An exported (and maybe edited) model file trains the same way: `netspec train resnet50_d.py`.

    Fine-tuning: `netspec train resnet18 --init r18.pt --set classes=10 --set train.freeze=[stem,layer1]`.

    Data-parallel: `torchrun --nproc_per_node 8 -m netspec.cli train SPEC ...` (batch_size per process).
    """
    import json

    from .train import TrainError, train_overrides
    from .train import train as run
    from .train.pymodel import is_model_file

    flags = train_overrides(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        data=data,
        seed=seed,
        download=download,
        threads=threads,
        workers=workers,
    )
    flags += [f"train.init.{k}={json.dumps(v)}" for k, v in (("weights", init), ("verify", verify)) if v]
    log = "json" if json_lines else "final" if quiet else "auto"  # each prints the summary line once
    try:
        overrides = [*(set_ or []), *flags]
        where = {
            "out": out,
            "name": name,
            "resume": resume,
            "overwrite": overwrite,
            "force_resume": force_resume,
        }
        if is_model_file(spec):  # a .py file: the overrides reach its RECIPE
            run(spec, device=device, log=log, overrides=overrides, **where)
        else:
            run(load(spec, overrides, allow_large=allow_large), device=device, log=log, **where)
    except SpecError as exc:
        fail(exc)
    except TrainError as exc:
        _train_error(exc)
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun with --resume to continue from the last checkpoint", err=True)
        raise typer.Exit(130) from None


@app.command("eval")
def eval_(
    spec: Annotated[
        str,
        typer.Argument(
            help="Spec file (or zoo name), or a model file (`.py`); or a run directory alone (its"
            " spec.yaml or model.py, and its newest checkpoint) or a training checkpoint (its run's).",
            autocompletion=_complete_spec,
        ),
    ],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", "-c", help="A checkpoint file or a run directory (default: SPEC's run)."
        ),
    ] = None,
    data: Annotated[str | None, typer.Option(help="Data set (default: the recipe's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    ema: Annotated[bool, typer.Option("--ema", help="Evaluate the checkpoint's EMA weights.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Read the weights even if the spec differs from the run's.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object instead of the table.")] = False,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Evaluate a checkpoint on the validation split: loss, top-1, top-5 (a table; `--json` for scripts:
    `loss`, `top1`, `top5` as fractions, `n`, `checkpoint`, `epoch`).

    A run directory alone (`netspec eval runs/lenet5`) brings its own spec.yaml (or model.py). A
    checkpoint shared without its `.sha256` is read after a warning; a wrong checksum is refused.

    Example: `netspec eval specs/lenet5.yaml --checkpoint runs/lenet5`, `netspec eval runs/lenet5`
    """
    import json

    from .train import TrainError, evaluate_checkpoint
    from .train.pymodel import is_model_file

    if _trained_source(spec):  # a run, or one of its checkpoints: the run's own network
        from .train.rundir import run_dir_of

        given = Path(spec)
        run_dir = given if given.is_dir() else run_dir_of(given)
        checkpoint = checkpoint or given
        network = next((run_dir / n for n in ("spec.yaml", "model.py") if (run_dir / n).is_file()), None)
        if network is None:
            fail(
                SpecError(
                    Problem(
                        f"'{spec}' is no run of netspec's: its directory has no spec.yaml or model.py",
                        location=Location(spec, 1, 1),
                        hint="give a spec file or zoo name, and the weights with --checkpoint",
                    )
                )
            )
        spec = str(network)
    if checkpoint is None:
        usage_error("give the weights: --checkpoint FILE_OR_RUN_DIR (or a run directory as SPEC)")
    assert checkpoint is not None
    common: dict[str, Any] = {"data": data, "device": device, "ema": ema, "note": _warning}
    try:
        if is_model_file(spec):
            metrics = evaluate_checkpoint(spec, checkpoint, overrides=set_, **common)
        else:
            subject = load(spec, set_, allow_large=allow_large)
            metrics = evaluate_checkpoint(subject, checkpoint, force=force, **common)
    except SpecError as exc:
        fail(exc)
    except TrainError as exc:
        _train_error(exc)
    plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in metrics.items()}
    typer.echo(json.dumps(plain) if json_out else _metrics_table(plain))


def _metrics_table(metrics: dict[str, Any]) -> str:
    """eval's metrics for a person: accuracies as percentages, the checkpoint and epoch they are of."""
    labels = {"checkpoint": "checkpoint", "epoch": "epoch", "n": "images", "loss": "loss"}
    labels |= {"top1": "top-1", "top5": "top-5"}
    rows = []
    for key in (*labels, *(k for k in metrics if k not in labels)):
        if key not in metrics:
            continue
        value = metrics[key]
        if key in ("top1", "top5") and isinstance(value, float):
            shown = f"{value:.2%}"
        elif isinstance(value, float):
            shown = f"{value:.4f}"
        else:
            shown = printable(str(value))
        rows.append((labels.get(key, key), shown))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write.")] = None,
) -> None:
    """Write the JSON Schema of spec files, for editor completion and inline errors.

    Put `# yaml-language-server: $schema=netspec.schema.json` at the top of a spec.
    Example: `netspec schema -o netspec.schema.json`
    """
    from .schema import schema_json

    write_or_print(schema_json(), output)


@app.command()
def diff(
    spec_a: Annotated[
        str, typer.Argument(help="The first spec (file or zoo name).", autocompletion=_complete_spec)
    ],
    spec_b: Annotated[
        str, typer.Argument(help="The second spec (file or zoo name).", autocompletion=_complete_spec)
    ],
    format: Annotated[Format, typer.Option("--format", "-f", help="table, json or markdown.")] = Format.table,
    depth: Annotated[int | None, typer.Option("--depth", "-d", help="Nesting levels to show.")] = None,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """What changes from spec A to spec B: layers (by module path) only in one, layers whose output
    shape, params or MACs change, totals with absolute and relative deltas, and the state_dict keys
    that appear, vanish, move or change shape (computed on the meta device). `--set` applies to both.

    Example: `netspec diff resnet50_b resnet50_d`, `netspec diff resnet50 resnet50 --set stages.2.depth=8`
    """
    from .diff import diff_specs, print_table, to_json, to_markdown

    try:
        a, b = (load(s, set_, allow_large=allow_large) for s in (spec_a, spec_b))
        d = diff_specs(a, b)
    except SpecError as exc:
        fail(exc)
    if format == Format.json:
        typer.echo(to_json(d, depth))
    elif format == Format.markdown:
        typer.echo(to_markdown(d, depth))
    else:
        print_table(d, depth)


class DiagramFormat(StrEnum):
    svg = "svg"
    mermaid = "mermaid"
    dot = "dot"
    png = "png"
    pdf = "pdf"


@app.command()
def diagram(
    spec: SpecArgument,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="net.svg, net.mmd or net.md (Mermaid), net.dot, net.png or net.pdf (Graphviz).",
        ),
    ],
    format: Annotated[
        DiagramFormat | None, typer.Option("--format", "-f", help="Format (default: from the suffix).")
    ] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", "-d", help="Draw containers below this level as one node.")
    ] = None,
    collapse: Annotated[
        bool, typer.Option("--collapse", help="Draw a stage's repeated blocks as one node 'xN'.")
    ] = False,
    input_size: InputOption = None,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Draw the architecture: stages and blocks as boxes, parallel branches side by side, residual
    shortcuts beside their blocks (dashed: identity), conv + BN + activation as one node, and the
    tensor shape (C x H x W) on every edge.

    `.svg` is laid out and drawn by netspec itself (no Graphviz needed); `.mmd`, `.md` or
    `-f mermaid` writes a Mermaid flowchart (GitHub renders it in Markdown); `.dot` writes Graphviz
    source; `.png`/`.pdf` are rendered by Graphviz's `dot` when it is installed, else the command
    fails (exit 2) and names these choices. Example: `netspec diagram resnet50 -o resnet50.svg --collapse`
    """
    from .draw.output import GraphvizNotFoundError, format_of, write_diagram

    fmt = format_of(output, format.value if format else None)
    try:
        notes = write_diagram(
            load(spec, set_, input_size, allow_large), output, fmt, depth=depth, collapse=collapse
        )
    except SpecError as exc:
        fail(exc)
    except GraphvizNotFoundError as exc:
        usage_error(str(exc))
    except OSError as exc:
        usage_error(f"cannot write {output}: {exc.strerror or exc}")
    except RuntimeError as exc:
        typer.echo(f"error: dot failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {printable(str(output))}")
    for note in notes:
        typer.echo(f"note: {printable(note)}", err=True)


@app.command()
def card(
    spec: Annotated[
        str,
        typer.Argument(help="Spec file (or zoo name), or a run directory.", autocompletion=_complete_spec),
    ],
    run: Annotated[
        Path | None, typer.Argument(help="A run directory of this spec: its curves and results.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write, e.g. README.md (default: stdout).")
    ] = None,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Write a model card: Hugging Face's README.md format (a YAML metadata block with
    `library_name: netspec`, tags, data set and `model-index` results, then Markdown): the paper from
    the spec's header comment, params/MACs/memory at its input sizes, a Mermaid diagram, the recipe,
    and for a run its curves and final metrics.

    Example: `netspec card resnet18 -o README.md`, `netspec card lenet5 runs/lenet5 -o runs/lenet5/README.md`
    """
    from .card import check_run_of, model_card
    from .run_record import RunRecord, read_run

    try:
        spec, run_dir = _spec_or_run(spec)
        spec_obj = load(spec, set_, allow_large=allow_large)
        record: RunRecord | None = None
        if run is not None:
            record = read_run(run)
            check_run_of(spec_obj, run)
        else:
            record = read_run(run_dir) if run_dir is not None else None
        text = model_card(spec_obj, record, card_dir=output.parent if output is not None else None)
    except SpecError as exc:
        fail(exc)
    write_or_print(text, output)


NEW_SPEC_TEMPLATE = """\
# yaml-language-server: $schema={schema}
# {name}: derived from the zoo spec {base} (see `netspec explain {name}.yaml` for the resolved spec).
# Fields one usually changes (uncomment and edit; everything else is inherited):
#   description: "..."
#   input: {{channels: 3, size: 224}}
#   classes: 1000
#   tricks: [resnet_b, resnet_c, resnet_d, zero_gamma]
#   stages:
#     - {{block: bottleneck, depth: 3, out: 256, name: layer1}}
#   init: {{seed: 0}}
#   train: {{epochs: 10, batch_size: 64, optimizer: {{name: sgd, lr: 0.1}}}}
extends: {extends}
name: {name}
"""


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="Name of the new spec (also its file name).")],
    from_: Annotated[
        str,
        typer.Option("--from", help="The zoo spec (or spec file) to extend.", autocompletion=_complete_spec),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: NAME.yaml).")
    ] = None,
) -> None:
    """Start a new spec that `extends` a zoo spec: the schema line, the new name, and a comment of the
    fields one usually changes. Never overwrites an existing file (exit 2).

    Example: `netspec new my_resnet --from resnet50` then `netspec report my_resnet.yaml`
    """
    import os.path
    import re

    from .zoo import ZOO_PREFIX, find_spec, is_zoo_spec

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
        usage_error(f"'{name}' is not a spec name: use letters, digits, _ . - (no spaces or slashes)")
    problem = _name_problem(name)
    if problem:
        usage_error(f"'{name}': {problem}")
    base = find_spec(from_)
    if not base.exists():
        usage_error(f"--from '{from_}': no such spec file or zoo spec (see `netspec zoo`)")
    try:
        load(from_)  # a new spec extending a broken one would only fail later, far from the cause
    except SpecError as exc:
        fail(exc)
    path = output if output is not None else Path(f"{name}.yaml")
    if path.exists():
        usage_error(f"{path} exists: not overwriting it (pick another name or -o FILE)")
    folder = path.resolve().parent
    # a zoo spec is named, not reached by a path into wherever netspec is installed
    extends = f"{ZOO_PREFIX}{base.stem}" if is_zoo_spec(base) else os.path.relpath(base.resolve(), folder)
    text = NEW_SPEC_TEMPLATE.format(
        schema=_schema_reference(folder), name=name, base=base.stem, extends=extends
    )
    try:
        with path.open("x") as f:
            f.write(text)
    except OSError as exc:
        usage_error(f"cannot write {path}: {exc.strerror}")
    typer.echo(f"wrote {path} (extends {base.stem}); check it with `netspec report {path}`")


def _schema_reference(folder: Path) -> str:
    """Where a spec in `folder` finds the JSON Schema shipped inside the package (package data, so it
    exists in a checkout and in an install alike): relative, as the YAML language server resolves it
    against the spec's own directory; a file URI where no relative path exists (another drive)."""
    from .data import SCHEMA_FILE

    try:
        return Path(os.path.relpath(SCHEMA_FILE, folder)).as_posix()
    except ValueError:
        return SCHEMA_FILE.as_uri()


def _name_problem(name: str) -> str | None:
    """Why `name` cannot be a spec's `name:` (the spec model's own rule), or None."""
    from pydantic import ValidationError

    from .spec import Spec

    try:
        Spec.model_validate({"name": name})
    except ValidationError as exc:
        return str(exc.errors()[0]["msg"])
    return None


@app.command()
def bench(
    spec: SpecArgument,
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", "-b", help="Batch sizes: `1,8,32`.")
    ] = "1,8,32",
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="Module and input channels_last.")
    ] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the module first.")] = False,
    device: Annotated[str, typer.Option(help="auto (cuda if any), cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[int | None, typer.Option(help="torch intra-op threads (default: torch's).")] = None,
    input_size: Annotated[
        str | None, typer.Option("--input-size", "--input", "-i", help="Input size: 224, 160x192, 3x224x224.")
    ] = None,
    train_: Annotated[bool, typer.Option("--train", help="Time a training step (fwd, bwd, SGD).")] = False,
    min_run_time: Annotated[float, typer.Option(help="Seconds measured per batch size.")] = 1.0,
    format: Annotated[Format, typer.Option("--format", "-f", help="table, json or markdown.")] = Format.table,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Measured latency and throughput of the built module at each batch size (torch.utils.benchmark:
    median and IQR of adaptive_autorange), beside its static MACs (achieved GMAC/s). Inference is a
    forward in eval mode under inference_mode; `--train` times a training step instead.

    Example: `netspec bench resnet50_d --batch-sizes 1,32 --channels-last -f json`
    """
    from .bench import BenchSettings, benchmark, parse_batch_sizes
    from .bench.result import print_table, to_markdown

    try:
        settings = BenchSettings(
            batch_sizes=parse_batch_sizes(batch_sizes), device=device, channels_last=channels_last,
            compile=compile_, threads=threads, min_run_time=min_run_time, train=train_,
        )  # fmt: skip
        settings.check()  # before the spec is read: a typo in an option costs nothing
        result = benchmark(load(spec, set_, input_size, allow_large), settings)
    except SpecError as exc:
        fail(exc)
    if format == Format.json:
        typer.echo(result.to_json())
    elif format == Format.markdown:
        typer.echo(to_markdown(result))
    else:
        print_table(result)


@app.command()
def kinds() -> None:
    """List the layer kinds a spec can use, with their parameters.

    Example: `netspec kinds`
    """
    from .layers import KINDS
    from .layers.composites import TABLE

    for name, kind in KINDS.items():
        fields = ", ".join(f for f in kind.Params.model_fields if f != "name")
        typer.echo(f"{name:18} {kind.doc}  [{fields}]")
    for composite in TABLE:
        typer.echo(f"{composite.name:18} {composite.doc}  [{', '.join(composite.fields)}]")


def _print_version(value: bool) -> None:
    if value:
        from ._version import __version__

        typer.echo(f"netspec {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print netspec's version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """A declarative YAML architecture compiler for convolutional networks."""


def _one_line_plugin_warnings() -> None:
    """A plug-in that cannot be loaded is reported as one line, `warning: ...`, not a warnings block."""
    import warnings

    from .layers.plugins import PluginWarning

    default = warnings.formatwarning

    def format(message: Any, category: Any, *args: Any, **kwargs: Any) -> str:
        if isinstance(category, type) and issubclass(category, PluginWarning):
            return f"warning: {message}\n"
        return default(message, category, *args, **kwargs)

    warnings.formatwarning = format


def main() -> None:
    """Entry point: maps every failure to a message and an exit code, never a traceback."""
    from .layers.plugins import PluginError

    _one_line_plugin_warnings()
    try:
        code = app(standalone_mode=False)  # click returns (not raises) exit codes in this mode
        if isinstance(code, int) and code:
            sys.exit(code)
    except SpecError as exc:
        typer.echo(exc.format(), err=True)
        sys.exit(2)
    except PluginError as exc:
        typer.echo(f"error: {printable(str(exc))}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click's usage errors, and our own bugs, without a traceback
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click/typer usage errors
            exc.show()
            sys.exit(2)
        if os.environ.get("NETSPEC_DEBUG"):
            raise
        typer.echo(
            f"internal error: {type(exc).__name__}: {printable(str(exc))}\n"
            "(this is a bug in netspec; rerun with NETSPEC_DEBUG=1 for the traceback)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
