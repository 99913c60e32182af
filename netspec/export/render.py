"""The file: templates rendered in a sandbox, formatted with ruff where installed, and proved against the
compiled module before it is handed back."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..ir import SeqNode
from .calls import norm_repr
from .errors import ExportError
from .init import InitCode

LINE_LENGTH = 110  # the project's ruff settings, used to format the output when ruff is available


def environment() -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    checkout = Path(__file__).resolve().parent.parent.parent / "templates"
    if (checkout / "model.py.j2").is_file():
        loader: Any = jinja2.FileSystemLoader(str(checkout))
    else:
        from importlib.resources import files

        package = files("netspec.templates")

        def load(name: str) -> str | None:
            resource = package.joinpath(name)
            return resource.read_text(encoding="utf-8") if resource.is_file() else None

        loader = jinja2.FunctionLoader(load)
    return ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _ruff() -> str | None:
    local = Path(sys.executable).with_name("ruff")
    return str(local) if local.is_file() else shutil.which("ruff")


def format_source(text: str) -> str:
    """`ruff format` with the project's settings when ruff is installed; the text as is otherwise."""
    ruff = _ruff()
    if ruff is None:
        return text
    command = [ruff, "format", "--isolated", "--line-length", str(LINE_LENGTH), "--target-version", "py311"]
    try:
        result = subprocess.run(
            [*command, "--stdin-filename", "model.py", "-"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return text
    return result.stdout if result.returncode == 0 and result.stdout.strip() else text


def prove_file(text: str, root: SeqNode, init: InitCode) -> None:
    """Build the file's network and the compiled one on the meta device: the same state_dict keys and
    shapes, the same layers (repr) at the same paths, and every module the init loop's class branches
    reach is a layer of that class (no module of a plug-in's own is initialised by mistake)."""
    import torch

    from ..torch_backend import module_for

    namespace: dict[str, Any] = {"__name__": "netspec_export_check"}
    exec(compile(text, "<netspec export>", "exec"), namespace)  # code the exporter wrote, checked
    with torch.device("meta"):
        ours = namespace["build_model"]()
        ref = module_for(root)
    a = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    b = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    if a != b:
        diff = sorted(set(a) ^ set(b))[:5]
        raise ExportError(f"the generated network's state_dict differs from the compiled one: {diff}")

    def leaves(m: Any) -> list[tuple[str, str]]:
        return [(n, norm_repr(x)) for n, x in m.named_modules() if not list(x.children()) and n]

    mine, theirs = leaves(ours), leaves(ref)
    if mine != theirs:
        where = [(x, y) for x, y in zip(mine, theirs, strict=False) if x != y][:3]
        raise ExportError(f"the generated network's layers differ from the compiled ones: {where}")
    _verify_init_branches(ours, init, namespace)


def _verify_init_branches(model: Any, init: InitCode, namespace: dict[str, Any]) -> None:
    from torch import nn

    def resolve(ctor: str) -> type:
        return getattr(nn, ctor[3:]) if ctor.startswith("nn.") else namespace[ctor]

    branches = [(tuple(resolve(c) for c in ctors), set(paths)) for ctors, paths in init.branches]
    for name, module in model.named_modules():
        for classes, paths in branches:
            if isinstance(module, classes):
                if name not in paths:
                    raise ExportError(f"the generated init would also initialise {name or 'the network'}")
                break
