"""The shell every exporter runs in, written once: the output-folder check, a hidden work
folder beside the destination that becomes the bundle by one rename (so a crash or a kill never
leaves a half-made bundle under the user's name), one-line errors from library exceptions, and
progress reported through a callback that the CLI renders (library code draws nothing).

Where a checkpoint comes from (a folder, or a hub id downloaded once) is checkpoint.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Protocol

from sumctl.exporters.errors import ExportError
from sumctl.runtime.bundle import Bundle, load_bundle


class Progress(Protocol):
    """What an export reports as it goes: one step at a time, with notes between."""

    def step(self, description: str) -> ContextManager[None]:
        """Wrap one step; a step that raises is shown as failed."""

    def note(self, text: str) -> None:
        """A line of detail about the step just finished."""


class SilentProgress:
    """Reports nothing: the default for library callers and tests."""

    def step(self, description: str) -> ContextManager[None]:
        return contextlib.nullcontext()

    def note(self, text: str) -> None:
        pass


def check_out_dir(out: str | os.PathLike) -> Path:
    """The destination, refused unless it is absent or an empty folder: nothing is overwritten.
    Its parent is created."""
    out = Path(out).expanduser()
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out}: exists and is a file; choose a new --out folder")
        if any(out.iterdir()):
            raise ExportError(f"{out}: folder exists and is not empty; choose a new --out folder "
                              "(sumctl never overwrites)")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def work_folder(out: Path) -> Iterator[Path]:
    """A hidden folder beside `out` (same filesystem, so publishing is a rename), removed when
    the export ends however it ends."""
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    os.chmod(work, 0o755)  # mkdtemp's 0700 would follow the bundle to its final name
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def publish(bundle_dir: Path, out: Path) -> Bundle:
    """Rename the finished bundle folder (its manifest written last) to `out`, checking again
    that nobody took the name meanwhile, and load it back with every hash checked."""
    check_out_dir(out)
    if out.exists():
        out.rmdir()  # checked empty
    os.replace(bundle_dir, out)
    return load_bundle(out)


def export_bundle(out: str | os.PathLike, build: Callable[[Path], Path]) -> Bundle:
    """The whole shell: check `out`, let `build(work)` write a bundle inside the work folder
    and return that bundle's folder, then publish it as `out`."""
    out = check_out_dir(out)
    with work_folder(out) as work:
        return publish(build(work), out)


def one_line(e: BaseException) -> str:
    """A library exception as one line for an ExportError: its type and first line."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
