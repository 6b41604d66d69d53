"""Errors a user can act on. The CLI prints them as one line, with no traceback."""


class SumctlError(Exception):
    """Base class: the message names the file and the fix."""


class InputError(SumctlError):
    """A transcript (or data file) that cannot be read or parsed."""


class BundleError(SumctlError):
    """A model bundle that is missing, corrupt or of an unknown kind."""


class ExportError(SumctlError):
    """A checkpoint that cannot be exported, or an export that failed verification."""
