"""The runner's two kinds of failure: a run that cannot start or go on (TrainError: the CLI exits 1)
and a run directory that a run must not use as asked (RunDirError: a user's mistake, exit 2)."""

from __future__ import annotations

from ..errors import SpecError


class TrainError(Exception):
    """A training run that cannot start or go on: an unwritable output directory, a diverged
    (NaN/inf) loss, an unusable checkpoint, a device that is not there."""


class RunDirError(TrainError, SpecError):
    """A run directory used in a way that would lose or mix runs: held by another run, holding a run
    already, a file or someone else's directory, or a resume with a different spec or recipe. A
    SpecError (the CLI prints it and exits 2) as well as a TrainError (the API's run failures)."""
