"""Errors a user can act on. The CLI prints them as one line, with no traceback."""

from __future__ import annotations


class SumctlError(Exception):
    """Base class: the message names the file and the fix. `errno` keeps the OS error behind
    it, when there is one, so callers can tell a full disk (wait) from a bad file (fail)."""

    errno: int | None = None

    def __init__(self, message: str, *, errno: int | None = None):
        super().__init__(message)
        if errno is not None:
            self.errno = errno


class InputError(SumctlError):
    """A transcript (or data file) that cannot be read or parsed."""


class BundleError(SumctlError):
    """A model bundle that is missing, corrupt or of an unknown kind."""


class ExportError(SumctlError):
    """A checkpoint that cannot be exported, or an export that failed verification."""


class OutputError(SumctlError):
    """A summary or error file that cannot be written where it should go."""

    @classmethod
    def from_os_error(cls, path, e: OSError, what: str) -> "OutputError":
        from .fsutil import os_error_hint

        return cls(f"{path}: {what}: {os_error_hint(e)}", errno=e.errno)


class StateError(SumctlError):
    """The watch state database cannot be opened or written."""
