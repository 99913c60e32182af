"""The `netspec` command line (Typer). Every user mistake prints FILE:LINE:COL: path: message and
exits with code 2; nothing a user does should show a Python traceback."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import SpecError, printable

app = typer.Typer(
    name="netspec",
    help="A declarative YAML architecture compiler for convolutional networks.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

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
    specs: Annotated[list[str], typer.Argument(help="Spec files (or zoo names).")],
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
    spec: Annotated[str, typer.Argument(help="Spec file (or zoo name).")],
    input_size: InputOption = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="table, json or markdown.")] = Format.table,
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

    Example: `netspec report specs/resnet50.yaml --input 3x160x160 --format json`,
    `netspec report resnet50_d --check`
    """
    from .analysis import analyze
    from .report import print_table, scaling_sizes, to_json, to_markdown
    from .report import scaling as compute_scaling

    if check:
        _report_check(spec, set_, input_size, format, allow_large)
        return
    try:
        spec_obj = load(spec, set_, input_size, allow_large)
        a = analyze(spec_obj)
    except SpecError as exc:
        fail(exc)
    scale = None
    if scaling and scaling != "none":
        sizes = [(s, s) for s in _sizes(scaling)] if scaling != "auto" else scaling_sizes(a.input_shape[1:])
        scale = compute_scaling(spec_obj, sizes)
    if format == Format.json:
        typer.echo(to_json(a, depth, scale))
    elif format == Format.markdown:
        typer.echo(to_markdown(a, depth, scale))
    else:
        print_table(a, depth, scale)


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
    spec: Annotated[str, typer.Argument(help="Spec file (or zoo name).")],
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


@app.command("compile")
def compile_(
    spec: Annotated[str, typer.Argument(help="Spec file (or zoo name).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write; its suffix picks the format.")
    ],
    format: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="state_dict (.pt), torchscript (.ts), export (.pt2) or onnx (.onnx)."
        ),
    ] = None,
    input_size: InputOption = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the weight initialisation.")] = None,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Build the module and save it: weights with the spec embedded, TorchScript, torch.export or ONNX.

    Example: `netspec compile specs/resnet50_d.yaml -o r50d.pt` (or `-o r50d.onnx`)
    """
    from .compile import save_compiled

    try:
        path = save_compiled(load(spec, set_, input_size, allow_large), output, format, seed=seed)
    except SpecError as exc:
        fail(exc)
    typer.echo(f"wrote {printable(str(path))}")


@app.command("import-weights")
def import_weights_(
    spec: Annotated[str, typer.Argument(help="Spec file (or zoo name).")],
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
    spec: Annotated[str, typer.Argument(help="Spec file (or zoo name).")],
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
            " as `netspec export` writes it): its build_model(), INPUT_SHAPE and RECIPE."
        ),
    ],
    epochs: Annotated[int | None, typer.Option(help="train.epochs")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="train.batch_size")] = None,
    lr: Annotated[float | None, typer.Option(help="train.optimizer.lr (before linear scaling)")] = None,
    data: Annotated[
        str | None,
        typer.Option(help="digits (default) | synthetic[:N] | mnist:DIR | cifar10:DIR | imagefolder:DIR"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: runs/<spec name>).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int | None, typer.Option(help="train.seed")] = None,
    download: Annotated[
        bool, typer.Option("--download", help="Let torchvision download mnist / cifar10 into DIR.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out from its last checkpoint (automatic when torchrun restarts it).",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Start the run in --out over (its checkpoints are deleted)."),
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
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Train a spec with the shared runner (Bag of Tricks recipe fields; exact resume).

    With no --data it trains on scikit-learn's bundled digits (no download).
    Example: `netspec train specs/lenet5.yaml`, `netspec train resnet20_cifar --data cifar10:DIR --epochs 5`

    An exported (and maybe edited) model file trains the same way: `netspec train resnet50_d.py`.

    Data-parallel: `torchrun --nproc_per_node 8 -m netspec.cli train SPEC ...` (batch_size per process).
    """
    from .train import TrainError, train_overrides
    from .train import train as run
    from .train.pymodel import is_model_file

    flags = train_overrides(
        epochs=epochs, batch_size=batch_size, lr=lr, data=data, seed=seed, download=download
    )
    log = "json" if json_lines else "quiet" if quiet else "auto"
    try:
        overrides = [*(set_ or []), *flags]
        where = {"out": out, "resume": resume, "overwrite": overwrite, "force_resume": force_resume}
        if is_model_file(spec):  # a .py file: the overrides reach its RECIPE
            result = run(spec, device=device, log=log, overrides=overrides, **where)
        else:
            result = run(load(spec, overrides, allow_large=allow_large), device=device, log=log, **where)
    except SpecError as exc:
        fail(exc)
    except TrainError as exc:
        _train_error(exc)
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun with --resume to continue from the last checkpoint", err=True)
        raise typer.Exit(130) from None
    if not json_lines and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone
        top1 = (result.final or {}).get("val_top1")
        last = f", val top-1 {top1:.2%}" if isinstance(top1, float) else ""
        typer.echo(f"done: {result.out}{last} (best {result.best_top1:.2%} at epoch {result.best_epoch})")


@app.command("eval")
def eval_(
    spec: Annotated[str, typer.Argument(help="Spec file (or zoo name), or a model file (`.py`).")],
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", "-c", help="A checkpoint file or a run directory.")
    ],
    data: Annotated[str | None, typer.Option(help="Data set (default: the recipe's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    ema: Annotated[bool, typer.Option("--ema", help="Evaluate the checkpoint's EMA weights.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Read the weights even if the spec differs from the run's.")
    ] = False,
    set_: SetOption = None,
    allow_large: AllowLargeOption = False,
) -> None:
    """Evaluate a checkpoint on the validation split: loss, top-1, top-5.

    Example: `netspec eval specs/lenet5.yaml --checkpoint runs/lenet5`
    """
    import json

    from .train import TrainError, evaluate_checkpoint
    from .train.pymodel import is_model_file

    try:
        if is_model_file(spec):
            metrics = evaluate_checkpoint(spec, checkpoint, data=data, device=device, ema=ema, overrides=set_)
        else:
            subject = load(spec, set_, allow_large=allow_large)
            metrics = evaluate_checkpoint(subject, checkpoint, data=data, device=device, ema=ema, force=force)
    except SpecError as exc:
        fail(exc)
    except TrainError as exc:
        _train_error(exc)
    typer.echo(json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in metrics.items()}))


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
    spec_a: Annotated[str, typer.Argument(help="The first spec (file or zoo name).")],
    spec_b: Annotated[str, typer.Argument(help="The second spec (file or zoo name).")],
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
    spec: Annotated[str, typer.Argument(help="Spec file (or zoo name).")],
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
    from_: Annotated[str, typer.Option("--from", help="The zoo spec (or spec file) to extend.")],
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

    from .zoo import find_spec, zoo_dir

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
    schema = Path(zoo_dir()).parent / "netspec.schema.json"
    text = NEW_SPEC_TEMPLATE.format(
        schema=os.path.relpath(schema, folder) if schema.exists() else "netspec.schema.json",
        name=name,
        base=base.stem,
        extends=os.path.relpath(base.resolve(), folder),
    )
    try:
        with path.open("x") as f:
            f.write(text)
    except OSError as exc:
        usage_error(f"cannot write {path}: {exc.strerror}")
    typer.echo(f"wrote {path} (extends {base.stem}); check it with `netspec report {path}`")


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
