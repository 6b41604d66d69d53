"""The runtime's errors: what a user can act on. The CLI prints each as one line, with no
traceback, and nothing but a SumctlError reaches it (the exporters and the bench have their
own errors.py, with subclasses of these)."""

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


class OutputError(SumctlError):
    """A summary or error file that cannot be written where it should go."""

    @classmethod
    def from_os_error(cls, path, e: OSError, what: str) -> "OutputError":
        from sumctl.runtime.fsutil import os_error_hint

        return cls(f"{path}: {what}: {os_error_hint(e)}", errno=e.errno)


class StateError(SumctlError):
    """The watch state database cannot be opened or written."""


class StateLockedError(StateError):
    """Another watcher holds this state, or watches this folder."""


class CloudError(SumctlError):
    """A cloud endpoint that refused, failed past its retries, or answered something unreadable."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an error from a library (ONNX Runtime, transformers, llama.cpp), cut to
    `limit` characters, or its type when it says nothing: their messages run to pages of C++
    frames and tensor dumps, and a one-line error must stay one line."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
