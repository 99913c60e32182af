"""The exporter's errors."""

from __future__ import annotations


class ExportError(RuntimeError):
    """The spec is valid but this exporter cannot write it as source (an unknown kind of layer)."""


class MismatchError(Exception):
    """Instances that cannot share one class (or one loop body)."""
