"""The bench's errors. Each is a SumctlError, so the CLI prints it as one line; data the bench
cannot read is the runtime's InputError."""

from __future__ import annotations

from sumctl.runtime.errors import SumctlError


class BenchError(SumctlError):
    """A local bundle that failed while the bench ran it."""
