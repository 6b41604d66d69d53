"""The exporters' errors: a checkpoint that cannot be exported, an export that failed its
verification, training that cannot work. Each is a SumctlError, so the CLI prints it as one
line."""

from __future__ import annotations

from sumctl.runtime.errors import SumctlError


class ExportError(SumctlError):
    """A checkpoint that cannot be exported, or an export that failed verification."""


class TrainError(SumctlError):
    """Training data or settings that cannot work; the message names the file and the fix."""
