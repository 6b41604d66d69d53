"""Finding the transcripts in a watched tree and waiting for them to settle.

- Discovery: a scan of the folder at start (the backlog), then a watchdog observer's created /
  modified / moved / closed events, and a periodic rescan that catches anything the OS dropped
  (inotify queue overflow, network filesystems).
- Filtering: temporary and hidden names (`.part`, `.tmp`, `.crdownload`, `~$x`, dotfiles, dot
  folders such as `.sumctl/`), --include and --exclude globs, and our own outputs, recognised
  by their content, not their names alone (see outputs.py).
- Security: every path is judged by its resolved location. A symlink anywhere on the way that
  leads out of the watched tree, a symlink loop, and anything that is not a regular file (a
  FIFO would hang a reader) are refused with a reason. Reads then go through folder descriptors
  opened without following symlinks (jobs.py), so a symlink swapped in after the check is
  refused by the kernel.
- Settling: a file is read only once its size and mtime have stood still for `settle_seconds`,
  so a file still being written or copied is never summarized half-done.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import stat as stat_module
import time
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.fsutil import TEMP_SUFFIX, display_name, inside, os_error_hint, pid_alive, temp_writer_pid
from sumctl.runtime.outputs import ERROR_SUFFIX, SUMMARY_NAME, OutputFolder, sumctl_output_kind

log = logging.getLogger("sumctl.watch")

TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp",
                 ".swx", ".lock", "~")


class Refused(Exception):
    """A path we will not read, with the reason (logged, recorded in the state)."""


def skip_reason(rel: PurePosixPath, include: tuple[str, ...], exclude: tuple[str, ...]) -> str | None:
    """Why a path (relative to the watched folder) is not a transcript to read, or None."""
    if any(part.startswith(".") for part in rel.parts):
        return "hidden"
    name = rel.name
    lower = name.lower()
    if lower.startswith("~$") or lower.endswith(TEMP_SUFFIXES):
        return "temporary"
    rel_lower = rel.as_posix().lower()

    def matches(pattern: str) -> bool:
        pattern = pattern.lower()
        return fnmatch.fnmatchcase(lower, pattern) or fnmatch.fnmatchcase(rel_lower, pattern)

    if exclude and any(matches(p) for p in exclude):
        return "excluded"
    if include and not any(matches(p) for p in include):
        return "not included"
    return None


def may_be_ours(name: str) -> bool:
    """A name sumctl could have written: judged by content before it is skipped or read."""
    lower = name.lower()
    return (SUMMARY_NAME.match(name) is not None or lower.endswith(ERROR_SUFFIX)
            or is_our_temp(name))


def is_our_temp(name: str) -> bool:
    """`.<name>.<pid>-<hex>.tmp` (or, from older versions, `.<name>.<random>.tmp`) of one of our
    outputs: what a write leaves if killed before its rename."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and (
        ".summary." in name or ERROR_SUFFIX + "." in name)


def sweep_temp(path: Path, min_age: float = 60.0) -> None:
    """Remove a temporary output left by a killed run: at once when the pid in its name is
    dead, else only once old, since a young one may be a `sumctl summarize` writing into the
    same folder right now."""
    try:
        pid = temp_writer_pid(path.name)
        if (pid is None or pid_alive(pid)) and time.time() - path.lstat().st_mtime < min_age:
            return
        path.unlink()
        log.info("removed %s, left by an interrupted write", display_name(path),
                 extra={"event": "swept", "path": display_name(path)})
    except OSError:
        pass


def canonical(path: str) -> str:
    """A file reached through a symlinked folder is the file at the folder's real place (one
    identity, one set of outputs, and outside the tree if the folder leads out). A symlinked
    file keeps its own name: its outputs go beside the link."""
    parent, name = os.path.split(os.path.abspath(path))
    real_parent = os.path.realpath(parent)
    return path if real_parent == parent else os.path.join(real_parent, name)


class Tree:
    """The watched tree: what is inside it, what is ours, and what may be read."""

    def __init__(self, root: Path, *, recursive: bool, include: tuple[str, ...],
                 exclude: tuple[str, ...], own_dirs: list[Path]):
        self.root = root
        self.recursive = recursive
        self.include = include
        self.exclude = exclude
        self.own_dirs = own_dirs  # paths under these are never inputs: they are ours

    def relative(self, path: str) -> PurePosixPath | None:
        try:
            return PurePosixPath(Path(path).relative_to(self.root).as_posix())
        except ValueError:
            return None

    def inside(self, path: Path) -> bool:
        return inside(self.root, path)

    def is_own(self, path: Path) -> bool:
        return any(d == path or d in path.parents for d in self.own_dirs)

    def candidate(self, path: str) -> tuple[bool, str | None]:
        """Whether a seen path (canonical) is for us to look at: (consider it, skip reason to
        log). A name we may have written is never logged as skipped: its content decides."""
        rel = self.relative(path)
        if rel is None or rel == PurePosixPath("."):
            return False, None
        if not self.recursive and len(rel.parts) > 1:
            return False, None
        if self.is_own(Path(path)):
            return False, None
        ours = may_be_ours(rel.name)
        reason = skip_reason(rel, self.include, self.exclude)
        if reason:
            return False, None if ours else reason
        # Our files are written whole and renamed in, the JSON record first, so whenever an
        # event shows one, its content already says it is ours.
        if ours and self.written_by_us(path):
            return False, None
        return True, None

    def written_by_us(self, path: str) -> bool:
        real = Path(os.path.realpath(path))
        try:
            with OutputFolder(real.parent, within=self.root, create=False) as folder:
                return sumctl_output_kind(folder, real.name) is not None
        except SumctlError:
            return False

    def inspect(self, path: str) -> tuple[Path, os.stat_result]:
        """The security rules, by the path's resolved location. Returns that location and the
        stat of the file that would be read; raises Refused with the reason."""
        real = Path(os.path.realpath(path))
        if not self.inside(real):
            raise Refused(f"leads through a symlink to {real}, outside the watched folder "
                          f"{self.root} (copy the file in instead)")
        if self.is_own(real):
            raise Refused("leads into sumctl's own folders")
        try:
            st = os.stat(real)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Refused("a symlink loop (remove the symlink)") from None
            if isinstance(e, FileNotFoundError):
                if os.path.lexists(path):
                    raise Refused("a dangling symlink") from None
                raise
            raise Refused(f"cannot look at it ({os_error_hint(e)})") from None
        if not stat_module.S_ISREG(st.st_mode):
            raise Refused("not a regular file")
        return real, st

    def scan(self, top: Path, found: Callable[[str], None]) -> None:
        """Hand every candidate under `top` to `found` (the backlog, or a folder that just
        appeared), sweeping temporaries that killed writes left."""
        # A folder reached through a symlink is not walked: its real location, if inside the
        # tree, is walked on its own; if outside, it is not ours to read.
        if not self.inside(top) or os.path.realpath(top) != os.path.abspath(top):
            return
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            here = Path(dirpath)
            if not self.recursive and here != self.root:
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames
                           if not d.startswith(".") and (here / d) not in self.own_dirs]
            for name in filenames:
                if is_our_temp(name):
                    sweep_temp(here / name)
                    continue
                found(str(here / name))
            if not self.recursive:
                dirnames[:] = []


def sweep_folder(folder: Path) -> None:
    """Sweep temporaries of ours anywhere under `folder` (an --out outside the watched tree)."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            if is_our_temp(name):
                sweep_temp(Path(dirpath) / name)


class Settler:
    """Files seen but not yet still: each waits until its size and mtime have not changed for
    `seconds`."""

    _UNSEEN = (-1, -1)

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._waiting: dict[str, tuple[tuple[int, int], float]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, path: str) -> bool:
        return path in self._waiting

    def watch(self, path: str) -> None:
        """Start a path's settle clock, unless it is already running."""
        if path not in self._waiting:
            self._waiting[path] = (self._UNSEEN, time.monotonic())

    def ripe(self, inspect: Callable[[str], tuple[Path, os.stat_result]],
             busy: set[str]) -> Iterator[tuple[str, os.stat_result | Refused]]:
        """The paths that have settled, with their stat, or the Refused that stops them. A path
        that vanished is forgotten; one in `busy` (in a worker's hands) waits its turn."""
        now_mono, now_wall = time.monotonic(), time.time()
        for path, (sig, since) in list(self._waiting.items()):
            try:
                _, st = inspect(path)
            except FileNotFoundError:
                del self._waiting[path]
                continue
            except Refused as r:
                del self._waiting[path]
                yield path, r
                continue
            current = (st.st_size, st.st_mtime_ns)
            if current != sig:
                # Unchanged for `seconds` by its own mtime counts too: a backlog file, or one
                # moved in whole, need not wait again.
                if not (sig == self._UNSEEN and now_wall - st.st_mtime >= self.seconds):
                    self._waiting[path] = (current, now_mono)
                    continue
            elif now_mono - since < self.seconds:
                continue
            if path in busy:
                continue  # in a worker's hands; look again when it is done
            del self._waiting[path]
            yield path, st


class Inbox(StrEnum):
    """What the watcher's one queue carries, so that every producer (the observer's thread, the
    scans, the workers, a signal) speaks to the dispatcher in the same few words."""

    PATH = "path"      # a file to consider
    DIR = "dir"        # a folder that appeared: scan it (recursive watches)
    RESULT = "result"  # a worker's Outcome
    WAKE = "wake"      # nothing to carry: look at the flags again (a stop, a fatal error)


def start_observer(root: Path, *, recursive: bool, poll: bool, put: Callable[[Inbox, str], None],
                   shown_as: Path):
    """A started watchdog observer that hands (Inbox.PATH | Inbox.DIR, path) events to `put`."""
    from watchdog.events import (DirCreatedEvent, DirMovedEvent, FileClosedEvent,
                                 FileCreatedEvent, FileModifiedEvent, FileMovedEvent,
                                 FileSystemEventHandler)
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserverVFS

    class Handler(FileSystemEventHandler):
        # Runs on the observer's thread: only hand paths over, never block it.
        def on_any_event(self, event):
            if event.event_type == "moved":
                put(Inbox.DIR if event.is_directory else Inbox.PATH, os.fsdecode(event.dest_path))
            elif event.is_directory:
                if event.event_type == "created":
                    put(Inbox.DIR, os.fsdecode(event.src_path))
            elif event.event_type in ("created", "modified", "closed"):
                put(Inbox.PATH, os.fsdecode(event.src_path))

    # lstat, not stat: the polling snapshot would otherwise walk into symlinked folders (out
    # of the tree, or round a loop for ever).
    observer = PollingObserverVFS(os.lstat, os.scandir, polling_interval=1) if poll else Observer()
    try:
        observer.schedule(Handler(), str(root), recursive=recursive,
                          event_filter=[FileCreatedEvent, FileModifiedEvent, FileMovedEvent,
                                        FileClosedEvent, DirCreatedEvent, DirMovedEvent])
        observer.start()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EMFILE):
            raise SumctlError(f"{shown_as}: the OS refused more file watches ({e.strerror}); "
                              "raise fs.inotify.max_user_watches, or use --poll") from None
        raise
    return observer
