"""Reports and data files the benchmarks write: atomic, and readable by others like any report
(the temporary file an atomic write renames is 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from sumctl.runtime.fsutil import atomic_write_text

# Read once, at import (in the main thread): os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def publish(path: Path) -> None:
    os.chmod(path, 0o666 & ~_UMASK)


def write_public_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)
    publish(path)
