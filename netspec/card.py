"""`netspec card`: a model card in the format Hugging Face reads (README.md with a YAML metadata block:
https://huggingface.co/docs/hub/model-cards) for a spec, and for a run of it.

The metadata block says `library_name: netspec`, tags (with `arxiv:ID` for the paper the spec's
header cites), the data set when it is on the Hub, and for a run `metrics` and a `model-index` of its
final validation results. The Markdown below it: the paper, params/MACs/FLOPs/activation memory at
the spec's input sizes (the analysis), the Mermaid diagram netspec draws, the training recipe, and a
run's curves (its PNGs) and per-epoch metrics.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from ._version import __version__
from .analysis import analyze
from .draw import spec_mermaid
from .draw.mermaid import MAX_EDGES, MAX_TEXT
from .errors import Problem, SpecError, format_path
from .report import human, human_bytes, scaling_sizes, shape_text
from .run_record import RunRecord
from .spec import Spec

HEADER_BYTES = 64 << 10  # a spec's header comment is read from at most this much of its file
_YEAR = re.compile(r"\b(19|20)\d\d\b")
_ARXIV = re.compile(r"arXiv:\s*(\d{4}\.\d{4,5})(v\d+)?", re.IGNORECASE)

# The data sets a recipe can name (netspec/train/data.py): their name, and their Hub id where one exists
DATASETS: dict[str, tuple[str, str | None]] = {
    "digits": ("scikit-learn digits", None),
    "mnist": ("MNIST", "ylecun/mnist"),
    "cifar10": ("CIFAR-10", "uoft-cs/cifar10"),
    "imagefolder": ("image folder", None),
    "synthetic": ("synthetic images", None),
}

EPOCH_ROWS = 30  # longer runs show every k-th epoch (and the last) in the card's table


@dataclass
class Reference:
    """What a spec's header comment says about its source: the citation and the arXiv ids in it."""

    citation: str = ""
    notes: str = ""  # the whole header comment
    arxiv: list[str] = field(default_factory=list)


def header_comment(text: str) -> str:
    """The comment lines a YAML file starts with (the editor's `yaml-language-server` line aside)."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        body = stripped[1:].strip() if stripped.startswith("# ") else stripped[1:].rstrip()
        if "yaml-language-server:" not in body:
            lines.append(body)
    return "\n".join(lines).strip()


def reference(spec: Spec) -> Reference:
    """The paper a spec reproduces, from its file's header comment (else its description)."""
    notes = ""
    if spec.file:
        try:
            with open(spec.file, encoding="utf-8", errors="replace") as f:
                notes = header_comment(f.read(HEADER_BYTES))
        except OSError:
            notes = ""
    arxiv = list(dict.fromkeys(m.group(1) for m in _ARXIV.finditer(notes)))
    joined = " ".join(notes.split())
    # the citation: authors, "title", venue and year; it ends at the first year after the title
    quotes = [m.start() for m in re.finditer('"', joined)]
    year = _YEAR.search(joined, quotes[1] if len(quotes) > 1 else 0)
    if year:
        citation = joined[: year.end()]
    else:
        citation = notes.splitlines()[0] if notes else spec.description
    return Reference(citation.strip(), notes, arxiv)


def _text(text: str) -> str:
    """User text for Markdown: no HTML, no line breaks."""
    text = " ".join(str(text).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fence(body: str, lang: str) -> str:
    """A fenced code block whose fence no backtick run in `body` can close."""
    ticks = "`" * max([3, *(len(m) + 1 for m in re.findall(r"`+", body))])
    return f"{ticks}{lang}\n{body.rstrip()}\n{ticks}"


def card_mermaid(spec: Spec) -> tuple[str, dict[str, Any]]:
    """The Mermaid flowchart for the card, and the `spec_mermaid` options that made it: the full
    network when GitHub and the Hub can draw it, else repeats collapsed, else blocks as nodes."""
    text, options = "", dict[str, Any]()
    for options in ({}, {"collapse": True}, {"collapse": True, "depth": 1}, {"collapse": True, "depth": 0}):
        text = spec_mermaid(spec, **options)
        edges = len(re.findall(r'^\s*\S+ [-.]+>\|"', text, re.MULTILINE))
        if len(text) <= MAX_TEXT and edges <= MAX_EDGES:
            break
    return text, options


def data_kind(data: str | None) -> str | None:
    return data.split(":", 1)[0] if data else None


def metadata(spec: Spec, ref: Reference, run: RunRecord | None) -> dict[str, Any]:
    """The card's YAML metadata block, with the keys Hugging Face documents."""
    meta: dict[str, Any] = {
        "library_name": "netspec",
        "pipeline_tag": "image-classification",
        "tags": ["netspec", "pytorch", "image-classification", "cnn", *(f"arxiv:{a}" for a in ref.arxiv)],
    }
    kind = data_kind(run.data if run else None)
    if kind is None:
        return meta
    name, hub = DATASETS.get(kind, (kind, None))
    if hub:
        meta["datasets"] = [hub]
    final = run.final if run else None
    if final is None:
        return meta
    metrics = [
        {"type": "accuracy", "name": "val top-1 accuracy", "value": final.get("val_top1")},
        {"type": "top_5_accuracy", "name": "val top-5 accuracy", "value": final.get("val_top5")},
        {"type": "loss", "name": "val loss", "value": final.get("val_loss")},
    ]
    metrics = [m for m in metrics if isinstance(m["value"], int | float)]
    if not metrics:
        return meta
    meta["metrics"] = ["accuracy"]
    meta["model-index"] = [
        {
            "name": spec.name,
            "results": [
                {
                    "task": {"type": "image-classification", "name": "Image Classification"},
                    "dataset": {"name": name, "type": hub or kind, "split": "validation"},
                    "metrics": metrics,
                }
            ],
        }
    ]
    return meta


def _cost_table(spec: Spec) -> list[str]:
    a = analyze(spec)
    lines = [
        "| input | params | MACs | FLOPs | activation memory | peak activation memory | output |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for size in scaling_sizes(a.input_shape[1:]):
        shown = shape_text((a.input_shape[0], *size))
        try:
            b = a if size == tuple(a.input_shape[1:]) else analyze(spec, input_size=size)
        except SpecError as exc:
            lines.append(f"| {shown} | not accepted: {_text(exc.problems[0].message)} | | | | | |")
            continue
        mark = " (the spec's)" if b is a else ""
        lines.append(
            f"| {shown}{mark} | {b.params:,} | {human(b.macs)} | {human(b.flops)} | "
            f"{human_bytes(b.activation_bytes)} | {human_bytes(b.peak_activation_bytes)} | "
            f"{shape_text(b.output_shape)} |"
        )
    lines += [
        "",
        "MACs as fvcore counts them (one multiply-add = 1); FLOPs = 2 x MACs + elementwise work; activation "
        "memory: float32 outputs of every layer for one sample; peak: the most of them alive at once in "
        "inference (what a forward needs). Parameter memory (float32): "
        f"{human_bytes(a.param_bytes)}.",
    ]
    return lines


def _metric(key: str, value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return _text(str(value))
    if "top" in key:
        return f"{value:.2%}"
    return str(value) if isinstance(value, int) else f"{value:.4g}"


EPOCH_COLUMNS = (("epoch", "epoch"), ("train_loss", "train loss"), ("val_loss", "val loss"),
                 ("val_top1", "val top-1"), ("val_top5", "val top-5"), ("lr", "lr"))  # fmt: skip


def _results(run: RunRecord, card_dir: Path) -> list[str]:
    lines = ["## Results", ""]
    final, best = run.final, run.best
    if final is None:
        return [*lines, "The run has not finished an epoch yet.", ""]
    data = run.data or "unknown"
    lines.append(f"Validation split of `{_text(data)}`, after epoch {_metric('epoch', final.get('epoch'))}:")
    lines += ["", "| metric | value |", "|---|---:|"]
    for key, label in EPOCH_COLUMNS[1:5]:
        if key in final:
            lines.append(f"| {label} | {_metric(key, final[key])} |")
    if best is not None:
        lines.append(
            f"| best val top-1 | {_metric('val_top1', best['val_top1'])} (epoch {best.get('epoch')}) |"
        )
    lines += ["", "### Curves", ""]
    for plot in run.plots:
        rel = Path(os.path.relpath(plot.resolve(), card_dir.resolve())).as_posix()
        lines.append(f"![{plot.stem}]({quote(rel)})")  # a path is a URL here: `(`, `)`, spaces escaped
    if run.plots:
        lines.append("")
    rows = run.history
    step = max(1, -(-len(rows) // EPOCH_ROWS))
    shown = [r for i, r in enumerate(rows) if i % step == 0 or i == len(rows) - 1]
    keys = [(k, label) for k, label in EPOCH_COLUMNS if any(k in r for r in rows)]
    lines.append("| " + " | ".join(label for _, label in keys) + " |")
    lines.append("|" + "|".join("---:" for _ in keys) + "|")
    for r in shown:
        lines.append("| " + " | ".join(_metric(k, r[k]) if k in r else "" for k, _ in keys) + " |")
    return [*lines, ""]


def check_run_of(spec: Spec, run_dir: Path) -> None:
    """A card describes one network: `run_dir` must have trained `spec` (its spec.yaml; the `train:`
    section may differ, as a resume allows). Raises a SpecError located at the differing fields."""
    from .train.rundir import network_changes

    problems, _ = network_changes(run_dir, spec, None)
    if problems:  # one line: a different network differs in dozens of fields
        first = problems[0]
        where = f"{format_path(first.path)}: " if first.path else ""
        raise SpecError(
            Problem(
                f"not the network the run {run_dir} trained ({len(problems)} differences; the first, "
                f"{where}{first.message})",
                location=first.location,
                hint=f"give the spec it trained, or the run directory alone: `netspec card {run_dir}`",
            )
        )


def model_card(spec: Spec, run: RunRecord | None = None, *, card_dir: Path | None = None) -> str:
    """The model card (README.md) of `spec`, and of `run` when given; `card_dir` is where the card
    will live (the run's plots are linked relative to it)."""
    from .train.recipe import recipe_from_spec

    ref = reference(spec)
    meta = metadata(spec, ref, run)
    out = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    out += [f"# {spec.name}", ""]
    if spec.description:
        out += [_text(spec.description), ""]
    if ref.citation:
        links = ", ".join(f"[arXiv:{a}](https://arxiv.org/abs/{a})" for a in ref.arxiv)
        out += ["## Paper", "", _text(ref.citation) + (f" ({links})" if links else ""), ""]
        if ref.notes and ref.notes != ref.citation:
            out += ["<details><summary>Notes from the spec</summary>", "", _fence(ref.notes, "text"), "",
                    "</details>", ""]  # fmt: skip
    out += ["## Size and cost", "", *_cost_table(spec), ""]
    text, options = card_mermaid(spec)
    how = "".join(f" --{k} {v}" if k == "depth" else f" --{k}" for k, v in options.items())
    command = f"netspec diagram {spec.name} -f mermaid{how}"
    out += ["## Architecture", "", f"Drawn by `{command}`:", "", _fence(text, "mermaid"), ""]
    if run is not None and run.recipe is not None:
        recipe, source = run.recipe, f"the run's recipe.yaml ({_text(str(run.path))})"
    else:
        recipe, source = (
            recipe_from_spec(spec).model_dump(mode="json"),
            "the spec's `train:` section, resolved",
        )
    out += ["## Training recipe", "", f"From {source}:", "",
            _fence(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True), "yaml"), ""]  # fmt: skip
    if run is not None:
        out += _results(run, card_dir or Path.cwd())
    out += [f"Card written by netspec {__version__}.", ""]
    return "\n".join(out)
