"""Kinds whose module is one of the classes in torch_modules.py: the torch backend instantiates the class,
`netspec export` copies its source into the file it writes."""

from __future__ import annotations

import inspect
from typing import ClassVar

from .base import LayerKind


class ShippedModuleKind(LayerKind):
    """A LayerKind whose `module_call` names `module_class_name`, a class of torch_modules.py."""

    module_class_name: ClassVar[str]

    def module_class(self) -> type:
        from . import torch_modules  # torch only where a module is built or exported

        cls: type = getattr(torch_modules, self.module_class_name)
        return cls

    @property
    def module_source(self) -> str:  # type: ignore[override]  # a property: read by export only
        return inspect.getsource(self.module_class())
