"""The folder watcher behind `sumctl watch`: every transcript dropped in a folder is summarized
exactly once, through crashes, restarts and bad files.

    watcher = Watcher("transcripts/", model="bundles/flan-t5-int8", workers=2)
    report = watcher.run()          # until SIGINT/SIGTERM (or, with once=True, the backlog is done)

How a file travels:
1. Discovery: a scan of the folder at start (the backlog), then a watchdog observer's created /
   modified / moved / closed events, and a periodic rescan that catches anything the OS dropped
   (inotify queue overflow, network filesystems).
2. Filtering: temporary and hidden names (`.part`, `.tmp`, `.crdownload`, `~$x`, dotfiles, dot
   folders such as `.sumctl/`), --include and --exclude globs (each skip logged once and
   counted), and our own outputs, recognised by their content, not their names alone (see
   outputs.py). Every path is judged by its resolved location: a symlink anywhere on the way
   that leads out of the watched tree, a symlink loop, and anything that is not a regular file
   (a FIFO would hang a reader) are refused with a logged reason. Reads and writes then go
   through folder descriptors opened without following symlinks (fsutil.py), so a symlink
   swapped in after the check is refused by the kernel.
3. Settling: a file is read only once its size and mtime have stood still for `settle_seconds`,
   so a file still being written or copied is never summarized half-done.
4. A bounded queue of paths (never contents: memory stays flat however big the backlog) feeds
   the workers. A worker reads the bytes once, hashes them and claims the job (content hash,
   model bundle hash, length) in the state database; it then parses, summarizes and writes
   those same bytes' summary, so an output always matches the hash it records.
5. Outputs are written atomically (temp file, fsync, rename) before the job is committed as
   done. A failure writes `<stem>.error.txt` and is retried with backoff, then left alone until
   the file changes. A file that cannot even be opened (mode 000) fails the same way.
6. A full disk is nobody's fault: work pauses with one logged line, the jobs it interrupted go
   back to pending without costing an attempt, and work resumes once space is back.

Outputs go beside each input by default, or under `out` mirroring the input's subfolder.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import hashlib
import heapq
import logging
import os
import queue
import signal
import stat as stat_module
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from .bundle import Bundle
from .errors import InputError, StateError, SumctlError
from .fsutil import (TEMP_SUFFIX, UnsafePath, inside, is_disk_full, open_dir, open_regular,
                     os_error_hint, pid_alive, relative_parts, temp_writer_pid)
from .models import resolve_model
from .outputs import (ERROR_SUFFIX, OUTPUT_FORMATS, SUMMARY_NAME, OutputFolder, claim_stem,
                      error_text, remove_own_error_files, safe_stem, sumctl_output_kind,
                      write_error_file, write_summary)
from .prompts import DEFAULT_LENGTH
from .state import STATE_DIR, Job, State, StateLockedError, default_state_path, retry_at
from .summarizer import Summarizer, check_length
from .transcript import (MAX_BYTES_ENV, Transcript, format_from_extension, max_bytes_default,
                         parse_bytes)

log = logging.getLogger("sumctl.watch")

DEFAULT_INCLUDE = ("*.txt", "*.vtt", "*.srt", "*.json")
DEFAULT_FORMATS = ("md", "json")
TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp",
                 ".swx", ".lock", "~")
_READ_CHUNK = 1 << 20
# Below this much free space where we write, a paused watcher keeps waiting.
MIN_FREE_BYTES = 1 << 20
PROBE_SECONDS = 2.0
# Remembered once-logged skips and refusals; past this the memory is cleared and they log again.
_LOG_ONCE_LIMIT = 100_000


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def plan_threads(workers: int, threads: int | None, cores: int | None = None) -> tuple[int, str | None]:
    """Threads per worker such that workers * threads fits the cores; a warning if clamped."""
    cores = cores or available_cores()
    fit = max(1, cores // workers)
    if threads is None:
        return fit, None
    if workers * threads > cores and threads > fit:
        return fit, (f"{workers} workers x {threads} threads is more than the {cores} cores; "
                     f"using {fit} thread(s) per worker")
    return threads, None


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


@dataclass
class _Claimed:
    """A file read and claimed by a worker, on its way through the model."""

    path: str
    queued_at: float
    picked_at: float
    st: os.stat_result
    data: bytes | None
    sha: str
    job: Job
    # This file's time alone (reading, parsing, writing, a model call of its own that failed),
    # apart from its share of model calls made for the whole batch.
    own_seconds: float = 0.0
    transcript: Transcript | None = None


class Refused(Exception):
    """A path we will not read, with the reason (logged, recorded in the state)."""


@dataclass
class Outcome:
    path: str
    # summarized | failed | refused | already | busy | wait | gave_up | vanished | deferred
    # (a full disk: tried again once space is back) | abandoned
    status: str
    reason: str = ""
    seconds: float = 0.0
    model_seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    retry_at: float | None = None
    sha256: str = ""
    batch: int = 0  # summarized: files that shared its model calls, itself included


@dataclass
class WatchReport:
    """What one run did; `outcomes` has one entry per file it looked at (last outcome wins)."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    recovered: int = 0
    started_at: float = field(default_factory=time.time)
    elapsed: float = 0.0
    abandoned: int = 0
    stopped_by: str = ""
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> paths skipped for it
    paused: int = 0  # times work paused for a full disk

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == status)

    @property
    def summarized(self) -> int:
        return self.count("summarized")

    @property
    def failed(self) -> int:
        return self.count("failed") + self.count("gave_up")


class Watcher:
    """Summarize every transcript in `folder` exactly once, then keep watching it.

    Workers are threads, each with its own Summarizer (a backend is not thread-safe; its model
    loads once per worker). Threads rather than processes because the model runs in native
    code that releases the GIL (ONNX Runtime's session.run, llama.cpp's decode), so worker
    threads do run in parallel where it matters, while sharing one state connection, one
    output lock (two same-stem sources must not claim one name at once) and one signal
    handler, with no pickling of jobs or results. The Python-side work per file (hashing,
    parsing, chapterization, writing) is small next to the model's.
    """

    def __init__(self, folder: str | os.PathLike, *, model: str | os.PathLike | Bundle | None = None,
                 out: str | os.PathLike | None = None, length: str = DEFAULT_LENGTH,
                 workers: int = 1, threads: int | None = None, batch: int = 1,
                 state_path: str | os.PathLike | None = None, recursive: bool = False,
                 include: tuple[str, ...] | list[str] = (), exclude: tuple[str, ...] | list[str] = (),
                 settle_seconds: float = 2.0, max_attempts: int = 3, backoff_seconds: float = 30.0,
                 once: bool = False, formats: tuple[str, ...] = DEFAULT_FORMATS,
                 max_bytes: int | None = None, poll: bool = False, rescan_seconds: float = 300.0,
                 grace_seconds: float = 30.0, retry_failed: bool = False,
                 on_outcome: Callable[[Outcome, "Watcher"], None] | None = None,
                 handle_signals: bool = True, clean: bool = True):
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise SumctlError(f"{folder}: no such folder (pass the folder to watch)")
        check_length(length)
        if workers < 1:
            raise SumctlError(f"--workers {workers}: need at least one worker")
        if batch < 1:
            raise SumctlError(f"--batch {batch}: need at least one file per batch")
        if max_attempts < 1:
            raise SumctlError(f"--max-attempts {max_attempts}: need at least one attempt")
        bad = [f for f in formats if f not in OUTPUT_FORMATS]
        if bad:
            raise SumctlError(f"unknown output format {bad[0]!r} (use {', '.join(OUTPUT_FORMATS)})")
        self.folder = folder
        # Everything is compared in real-path space, so a folder reached through a symlink
        # (/srv/inbox -> /data/inbox) still contains its own files.
        self.root = Path(os.path.realpath(folder))
        self.out = Path(os.path.realpath(Path(out).expanduser())) if out else None
        if state_path is None and os.path.islink(self.root / STATE_DIR):
            # Anyone who can write the folder could point it anywhere and have us write there.
            raise SumctlError(f"{self.root / STATE_DIR}: is a symlink; remove it, or pass "
                              "--state PATH to keep the state elsewhere")
        self.state_path = Path(state_path).expanduser() if state_path else default_state_path(self.root)
        self.model_spec = model
        self.length = length
        self.workers = workers
        self.threads, self.threads_warning = plan_threads(workers, threads)
        self.batch = batch
        self.recursive = recursive
        self.include = tuple(include) or DEFAULT_INCLUDE
        self.exclude = tuple(exclude)
        self.settle_seconds = max(0.0, settle_seconds)
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.once = once
        self.formats = tuple(dict.fromkeys(formats)) or DEFAULT_FORMATS
        self.max_bytes = max_bytes_default() if max_bytes is None else max_bytes
        self.poll = poll
        self.rescan_seconds = rescan_seconds
        self.grace_seconds = grace_seconds
        self.retry_failed = retry_failed
        self.on_outcome = on_outcome
        self.handle_signals = handle_signals
        self.clean = clean

        self.bundle: Bundle | None = None
        self.model_hash = ""
        self.state: State | None = None
        self.report = WatchReport()
        # Paths under these folders are never inputs: they are ours.
        self._own_dirs = [p for p in (self.out, Path(os.path.realpath(self.state_path.parent)))
                          if p is not None and self.root in p.parents]
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        # Room for each worker's next batch while it runs the current one.
        self._work: queue.Queue = queue.Queue(maxsize=workers * batch * 2)
        self._stop = threading.Event()
        self.started = threading.Event()  # set once the observer runs and the backlog is queued
        self._abandon = threading.Event()
        self._output_lock = threading.Lock()
        self._claimed: dict[int, set[int]] = {}  # worker index -> ids of the jobs it holds
        self._claimed_lock = threading.Lock()
        self._ready_workers = 0
        self._fatal: BaseException | None = None
        self._refused_logged: set[tuple[str, str]] = set()
        self._skips_logged: set[str] = set()
        self._folder_lock: int | None = None
        # A full disk: set by whoever meets it (a worker, the dispatcher); the dispatcher pauses.
        self._disk_full_reason: str | None = None
        self._paused_at: float | None = None
        self._next_probe = 0.0
        self._deferred: set[str] = set()  # paths to look at again once space is back
        self._signals = 0
        self.settling: dict[str, tuple[tuple[int, int], float]] = {}
        self.queued: set[str] = set()  # in the ready deque, the work queue or a worker's hands
        self._ready: deque[str] = deque()
        self._retries: list[tuple[float, str]] = []
        self._session = 0

    # --- public -------------------------------------------------------------------------------

    def stop(self, *, abandon: bool = False) -> None:
        """Ask the run to end: finish the jobs in flight (or, with abandon, leave them pending)."""
        self._stop.set()
        if abandon:
            self._abandon.set()
        self._inbox.put(("wake", ""))

    @property
    def busy(self) -> int:
        return len(self.queued)

    def run(self) -> WatchReport:
        started = time.perf_counter()
        # First: a SIGTERM while a big model's hashes are checked must still exit cleanly.
        previous = self._install_signals()
        try:
            self._run_with_model(started)
        finally:
            self._restore_signals(previous)
        if self._fatal is not None:
            raise self._fatal
        return self.report

    def _run_with_model(self, started: float) -> None:
        self.bundle = (self.model_spec if isinstance(self.model_spec, Bundle)
                       else resolve_model(self.model_spec))
        self.model_hash = self.bundle.sha256
        self.state = State(self.state_path)
        try:
            self.state.acquire()
            self._folder_lock = _lock_watched_folder(self.root)
            if self.out is not None:
                try:
                    self.out.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise SumctlError(f"{self.out}: cannot create the --out folder "
                                      f"({os_error_hint(e)})") from None
            session, recovered = self.state.start_session(str(self.root), self.model_hash,
                                                          self.length)
            self._session = session
            self.report.recovered = recovered
            if recovered:
                log.warning("redoing %d job(s) interrupted by an earlier crash or kill", recovered,
                            extra={"event": "recovered", "count": recovered})
            if self.retry_failed:
                reset = self.state.reset_failed(self.model_hash, self.length)
                log.info("giving %d failed job(s) a fresh set of attempts", reset,
                         extra={"event": "retry_failed", "count": reset})
            if self.threads_warning:
                log.warning(self.threads_warning, extra={"event": "threads_clamped"})
            try:
                if not self._stop.is_set():  # a signal during start-up
                    self._run(started)
            finally:
                if not self._abandon.is_set():
                    self.state.stop_session(session)
        finally:
            if not self._abandon.is_set():
                self.state.close()
                if self._folder_lock is not None:
                    os.close(self._folder_lock)

    # --- the dispatcher (main thread) ---------------------------------------------------------

    def _run(self, started: float) -> None:
        threads = [threading.Thread(target=self._worker, args=(i,), name=f"sumctl-worker-{i}",
                                    daemon=True) for i in range(self.workers)]
        for t in threads:
            t.start()
        observer = None
        try:
            if not self.once:
                observer = self._start_observer()
            self._scan(self.root)
            if self.out is not None and not self._inside(self.out):
                self._sweep_out_dir()
            for path in self.state.pending_paths(self.model_hash, self.length):
                self._inbox.put(("path", path))
            log.info("%s %s with %s (%d worker(s) x %d thread(s), batches of up to %d file(s), "
                     "%s summaries, settle %.1f s)",
                     "processing" if self.once else "watching", self.folder,
                     self.bundle.display_name, self.workers, self.threads, self.batch, self.length,
                     self.settle_seconds,
                     extra={"event": "start", "path": str(self.folder), "model": self.model_hash,
                            "workers": self.workers, "threads": self.threads, "batch": self.batch})
            self.started.set()
            self._loop()
        finally:
            if observer is not None:
                observer.stop()
            self._shutdown(threads)
            if observer is not None:
                observer.join(timeout=5)
            self.report.elapsed = time.perf_counter() - started

    def _start_observer(self):
        from watchdog.events import (DirCreatedEvent, DirMovedEvent, FileClosedEvent,
                                     FileCreatedEvent, FileModifiedEvent, FileMovedEvent,
                                     FileSystemEventHandler)
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserverVFS

        inbox = self._inbox

        class Handler(FileSystemEventHandler):
            # Runs on the observer's thread: only hand paths over, never block it.
            def on_any_event(self, event):
                if event.event_type == "moved":
                    inbox.put(("dir" if event.is_directory else "path", os.fsdecode(event.dest_path)))
                elif event.is_directory:
                    if event.event_type == "created":
                        inbox.put(("dir", os.fsdecode(event.src_path)))
                elif event.event_type in ("created", "modified", "closed"):
                    inbox.put(("path", os.fsdecode(event.src_path)))

        # lstat, not stat: the polling snapshot would otherwise walk into symlinked folders
        # (out of the tree, or round a loop for ever).
        observer = (PollingObserverVFS(os.lstat, os.scandir, polling_interval=1) if self.poll
                    else Observer())
        try:
            observer.schedule(Handler(), str(self.root), recursive=self.recursive,
                              event_filter=[FileCreatedEvent, FileModifiedEvent, FileMovedEvent,
                                            FileClosedEvent, DirCreatedEvent, DirMovedEvent])
            observer.start()
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EMFILE):
                raise SumctlError(f"{self.folder}: the OS refused more file watches ({e.strerror}); "
                                  "raise fs.inotify.max_user_watches, or use --poll") from None
            raise
        return observer

    def _scan(self, top: Path) -> None:
        """Queue every candidate under `top` (the backlog, or a folder that just appeared)."""
        # A folder reached through a symlink is not walked: its real location, if inside the
        # tree, is walked on its own; if outside, it is not ours to read.
        if not self._inside(top) or os.path.realpath(top) != os.path.abspath(top):
            return
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            here = Path(dirpath)
            if not self.recursive and here != self.root:
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames
                           if not d.startswith(".") and (here / d) not in self._own_dirs]
            for name in filenames:
                if _is_our_temp(name):
                    _sweep_temp(here / name)
                    continue
                self._inbox.put(("path", str(here / name)))
            if not self.recursive:
                dirnames[:] = []

    def _sweep_out_dir(self) -> None:
        for dirpath, _, filenames in os.walk(self.out):
            for name in filenames:
                if _is_our_temp(name):
                    _sweep_temp(Path(dirpath) / name)

    def _loop(self) -> None:
        next_rescan = time.monotonic() + self.rescan_seconds if self.rescan_seconds > 0 else None
        last_beat = time.monotonic()
        while not self._stop.is_set():
            tick = 0.05 if (self.settling or self._ready) else 0.5
            try:
                kind, payload = self._inbox.get(timeout=tick)
                self._handle(kind, payload)
                # Drain what else is waiting, in bulk: a burst of 300 files is 300+ events.
                for _ in range(10_000):
                    kind, payload = self._inbox.get_nowait()
                    self._handle(kind, payload)
            except queue.Empty:
                pass
            if self._fatal is not None:
                break
            now = time.time()
            while self._retries and self._retries[0][0] <= now:
                _, path = heapq.heappop(self._retries)
                self._consider(path)
            self._settle()
            if self._disk_full_reason is not None:
                self._pause_or_resume()
            if self._paused_at is None:
                self._feed()
                # Group commit: one fsync a second covers every job finished in that second.
                since_beat = time.monotonic() - last_beat
                if since_beat >= 30 or (since_beat >= 1 and self.state.unsynced):
                    self._dispatch_step("", self.state.heartbeat, self._session)
                    last_beat = time.monotonic()
            if next_rescan is not None and time.monotonic() >= next_rescan:
                next_rescan = time.monotonic() + self.rescan_seconds
                self._scan(self.root)
            if self.once and self._backlog_done():
                self.report.stopped_by = "backlog done"
                break

    def _backlog_done(self) -> bool:
        return (not (self.settling or self._ready or self.queued or self._deferred)
                and self._paused_at is None and self._inbox.empty())

    def _dispatch_step(self, path: str, step, *args):
        """One step of the dispatcher's own work on a path. A full disk pauses work and the
        path waits for space; anything else that goes wrong with one path is logged and costs
        that path only: one bad name never ends the watcher."""
        try:
            return step(*args)
        except Exception as e:
            if is_disk_full(e):
                self._disk_full(e)
                if path:
                    self._deferred.add(path)
                return None
            if isinstance(e, StateError):
                raise  # the state itself is broken: one line that names --state, and stop
            log.exception("internal error on %s", path or "the watcher",
                          extra={"event": "internal_error", "path": path})
            return None

    def _disk_full(self, e: BaseException) -> None:
        """Called from any thread: the dispatcher pauses at its next turn."""
        if self._disk_full_reason is None:
            self._disk_full_reason = str(e)

    def _pause_or_resume(self) -> None:
        now = time.monotonic()
        if self._paused_at is None:
            self._paused_at = now
            self._next_probe = now + PROBE_SECONDS
            self.report.paused += 1
            log.warning("disk full: pausing work until space is freed (%s)", self._disk_full_reason,
                        extra={"event": "paused", "reason": self._disk_full_reason})
            return
        if now < self._next_probe:
            return
        self._next_probe = now + PROBE_SECONDS
        if not self._space_back():
            return
        with self._claimed_lock:
            held = {job_id for ids in self._claimed.values() for job_id in ids}
        try:
            requeued = self.state.requeue_orphans(held)
            self.state.heartbeat(self._session)
        except StateError as e:
            if is_disk_full(e):
                return
            raise
        waiting = sorted(self._deferred)
        self._deferred.clear()
        paused_for = now - self._paused_at
        self._disk_full_reason = None
        self._paused_at = None
        log.info("space is back after %.0f s: resuming (%d file(s) to look at again, %d job(s) "
                 "back to pending)", paused_for, len(waiting), requeued,
                 extra={"event": "resumed", "count": len(waiting)})
        for path in waiting:
            self._consider(path)

    def _space_back(self) -> bool:
        """Free space where we write: the state's folder and the outputs' root."""
        for folder in {self.state_path.parent, self.out or self.root}:
            try:
                st = os.statvfs(folder)
            except OSError:
                continue
            if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
                return False
        return True

    def _handle(self, kind: str, payload) -> None:
        if kind == "path":
            self._dispatch_step(payload, self._consider, payload)
        elif kind == "dir":
            if self.recursive:
                self._dispatch_step("", self._scan, Path(payload))
        elif kind == "result":
            self._finished(payload)

    def _relative(self, path: str) -> PurePosixPath | None:
        try:
            return PurePosixPath(Path(path).relative_to(self.root).as_posix())
        except ValueError:
            return None

    def _inside(self, path: Path) -> bool:
        return inside(self.root, path)

    def _is_own(self, path: Path) -> bool:
        return any(d == path or d in path.parents for d in self._own_dirs)

    def _consider(self, path: str) -> None:
        """A path was seen: start (or restart) its settle clock unless it is not for us."""
        path = self._canonical(path)
        rel = self._relative(path)
        if rel is None or rel == PurePosixPath("."):
            return
        if not self.recursive and len(rel.parts) > 1:
            return
        if self._is_own(Path(path)):
            return
        ours = _may_be_ours(rel.name)
        reason = skip_reason(rel, self.include, self.exclude)
        if reason:
            if not ours:
                self._skipped(path, reason)
            return
        # Our files are written whole and renamed in, the JSON record first, so whenever an
        # event shows one, its content already says it is ours.
        if ours and self._written_by_us(path):
            return
        if path not in self.settling:
            self.settling[path] = ((-1, -1), time.monotonic())

    @staticmethod
    def _canonical(path: str) -> str:
        """A file reached through a symlinked folder is the file at the folder's real place
        (one identity, one set of outputs, and outside the tree if the folder leads out). A
        symlinked file keeps its own name: its outputs go beside the link."""
        parent, name = os.path.split(os.path.abspath(path))
        real_parent = os.path.realpath(parent)
        return path if real_parent == parent else os.path.join(real_parent, name)

    def _skipped(self, path: str, reason: str) -> None:
        """Log a skip once per path and count it: a transcript that is never summarized must
        at least say why."""
        if path in self._skips_logged:
            return
        if len(self._skips_logged) >= _LOG_ONCE_LIMIT:
            self._skips_logged.clear()
        self._skips_logged.add(path)
        self.report.skipped[reason] = self.report.skipped.get(reason, 0) + 1
        log.info("skipping %s (%s)", path, reason,
                 extra={"event": "skip", "path": path, "reason": reason})

    def _settle(self) -> None:
        if not self.settling:
            return
        now_mono, now_wall = time.monotonic(), time.time()
        for path, (sig, since) in list(self.settling.items()):
            try:
                _, st = self._inspect(path)
            except FileNotFoundError:
                del self.settling[path]
                continue
            except Refused as r:
                del self.settling[path]
                self._finished(self._dispatch_step(path, self._refuse, path, str(r))
                               or Outcome(path, "refused", str(r)))
                continue
            current = (st.st_size, st.st_mtime_ns)
            if current != sig:
                # Unchanged for settle_seconds by its own mtime counts too: a backlog file, or
                # one moved in whole, need not wait again.
                if not (sig == (-1, -1) and now_wall - st.st_mtime >= self.settle_seconds):
                    self.settling[path] = (current, now_mono)
                    continue
            elif now_mono - since < self.settle_seconds:
                continue
            if path in self.queued:
                continue  # in a worker's hands; look again when it is done
            del self.settling[path]
            handled = self._dispatch_step(path, self._already_handled, path, st)
            if handled is None and path in self._deferred:
                continue
            if handled:
                continue
            self.queued.add(path)
            self._ready.append(path)

    def _written_by_us(self, path: str) -> bool:
        real = Path(os.path.realpath(path))
        try:
            with OutputFolder(real.parent, within=self.root, create=False) as folder:
                return sumctl_output_kind(folder, real.name) is not None
        except SumctlError:
            return False

    def _already_handled(self, path: str, st: os.stat_result) -> bool:
        """Known content whose job is finished: skip it without a worker (restarts, rescans)."""
        sha = self.state.cached_hash(path, st)
        if sha is None:
            return False
        job = self.state.job(sha, self.model_hash, self.length)
        return job is not None and (job.status == "done" or job.gave_up(self.max_attempts))

    def _feed(self) -> None:
        while self._ready and not self._stop.is_set():
            try:
                self._work.put_nowait((self._ready[0], time.time()))
            except queue.Full:
                return
            self._ready.popleft()

    def _finished(self, outcome: Outcome) -> None:
        self.queued.discard(outcome.path)
        if outcome.status == "deferred":
            self._deferred.add(outcome.path)
        elif outcome.status == "wait" and outcome.retry_at is not None:
            if not self.once:
                heapq.heappush(self._retries, (outcome.retry_at, outcome.path))
            if outcome.path not in self.report.outcomes:
                self.report.outcomes[outcome.path] = outcome
        elif outcome.status == "failed" and outcome.retry_at is not None and not self.once:
            heapq.heappush(self._retries, (outcome.retry_at, outcome.path))
            self.report.outcomes[outcome.path] = outcome
        elif outcome.status != "busy":
            self.report.outcomes[outcome.path] = outcome
        if self.on_outcome is not None:
            self.on_outcome(outcome, self)

    def _refuse(self, path: str, reason: str) -> Outcome:
        if (path, reason) not in self._refused_logged:  # once per path, not once per event
            if len(self._refused_logged) >= _LOG_ONCE_LIMIT:
                self._refused_logged.clear()
            self.state.refuse(path, reason)
            self._refused_logged.add((path, reason))
            log.warning("refusing %s: %s", path, reason,
                        extra={"event": "refused", "path": path, "reason": reason})
        return Outcome(path, "refused", reason)

    # --- shutdown and signals -------------------------------------------------------------------

    def _install_signals(self):
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            self._signals += 1
            name = signal.Signals(signum).name
            if self._signals == 1:
                self.report.stopped_by = name
                log.info("%s: stopping; finishing the job(s) in flight (again to abandon them)",
                         name, extra={"event": "stopping", "signal": name})
                self.stop()
            else:
                self.stop(abandon=True)

        # SIGHUP (a closed terminal, an ssh session that dropped) stops the watcher like
        # SIGTERM: finishing the jobs in flight, never dying mid-write.
        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    @staticmethod
    def _restore_signals(previous) -> None:
        for signum, old in (previous or {}).items():
            signal.signal(signum, old)

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        # Paths still waiting were never claimed: the next start's scan finds them again.
        while True:
            try:
                self._work.get_nowait()
            except queue.Empty:
                break
        for _ in threads:
            self._work.put((None, 0.0))
        deadline = time.monotonic() + self.grace_seconds
        while any(t.is_alive() for t in threads):
            if self._abandon.is_set() or time.monotonic() > deadline:
                self._abandon_in_flight()
                return
            for t in threads:
                t.join(timeout=0.1)
            self._drain_results()
        self._drain_results()

    def _drain_results(self) -> None:
        while True:
            try:
                kind, payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "result":
                self._finished(payload)

    def _abandon_in_flight(self) -> None:
        """Workers stuck in native model code cannot be interrupted: hand their jobs back as
        pending (redone next start) and let the process exit without them."""
        self._abandon.set()
        with self._claimed_lock:
            held = [job_id for ids in self._claimed.values() for job_id in ids]
            self._claimed.clear()
        for job_id in held:
            if self.state.release(job_id):
                self.report.abandoned += 1
        log.warning("abandoned %d job(s) in flight; they will be redone on the next start",
                    self.report.abandoned, extra={"event": "abandoned", "count": self.report.abandoned})
        self.state.close()

    # --- workers ------------------------------------------------------------------------------

    def _worker(self, index: int) -> None:
        try:
            summarizer = Summarizer(self.bundle, threads=self.threads, length=self.length,
                                    verify=False, clean=self.clean)
        except BaseException as e:  # a model that cannot load stops the whole watcher
            self._fatal = e if isinstance(e, SumctlError) else SumctlError(
                f"{self.bundle.path}: the model failed to load in a worker ({type(e).__name__}: {e})")
            self._inbox.put(("wake", ""))
            return
        try:
            stopping = False
            while not stopping:
                path, queued_at = self._work.get()
                if path is None or self._stop.is_set() and self._abandon.is_set():
                    return
                batch = [(path, queued_at)]
                # Only what is already queued: waiting for a batch to fill would delay a lone file.
                while len(batch) < self.batch:
                    try:
                        path, queued_at = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if path is None:  # this worker's stop: after the files it already took
                        stopping = True
                        break
                    batch.append((path, queued_at))
                try:
                    outcomes = self._process_batch(index, summarizer, batch)
                except Exception as e:  # a bug of ours past the per-file guards: keep going
                    if self._abandon.is_set():
                        return
                    log.exception("internal error on %s", ", ".join(p for p, _ in batch),
                                  extra={"event": "internal_error", "path": batch[0][0]})
                    outcomes = [Outcome(p, "failed", f"internal error: {type(e).__name__}: {e}")
                                for p, _ in batch]
                if self._abandon.is_set():
                    return
                for outcome in outcomes:
                    self._inbox.put(("result", outcome))
        finally:
            summarizer.close()

    def _inspect(self, path: str) -> tuple[Path, os.stat_result]:
        """The security rules, by the path's resolved location. Returns that location and the
        stat of the file that would be read."""
        real = Path(os.path.realpath(path))
        if not self._inside(real):
            raise Refused(f"leads through a symlink to {real}, outside the watched folder "
                          f"{self.root} (copy the file in instead)")
        if self._is_own(real):
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

    def _read(self, path: str) -> tuple[os.stat_result, bytes | None, str]:
        """Read the file once: (stat, bytes or None when over the cap, sha256 of the bytes).

        Every folder from the watched root down is opened without following symlinks, and the
        file itself with O_NOFOLLOW, so a symlink swapped in after the check is refused by the
        kernel. Over-cap files are hashed in chunks, never held in memory."""
        real, _ = self._inspect(path)
        try:
            parts = relative_parts(self.root, real)
            dir_fd = open_dir(self.root, parts[:-1])
            try:
                fd = open_regular(dir_fd, parts[-1])
            finally:
                os.close(dir_fd)
        except UnsafePath as e:
            raise Refused(f"changed while being read ({e})") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            digest = hashlib.sha256()
            if st.st_size <= self.max_bytes:
                data = f.read(self.max_bytes + 1)
                if len(data) <= self.max_bytes:
                    return st, data, hashlib.sha256(data).hexdigest()
                digest.update(data)
            while chunk := f.read(_READ_CHUNK):
                digest.update(chunk)
            return st, None, digest.hexdigest()

    def _process_batch(self, index: int, summarizer: Summarizer,
                       items: list[tuple[str, float]]) -> list[Outcome]:
        """Each file's outcome, in order. Files are read, claimed and parsed one by one; those
        that parse go to the model together; each is then written and committed on its own, so
        a bad file costs the others nothing."""
        outcomes: list[Outcome | None] = [None] * len(items)
        claimed: list[tuple[int, _Claimed]] = []
        deferred: list[int] = []
        try:
            for i, (path, queued_at) in enumerate(items):
                got = self._guard(path, self._claim, index, path, queued_at,
                                  {c.sha for _, c in claimed})
                if got is None:
                    deferred.append(i)
                elif isinstance(got, Outcome):
                    outcomes[i] = got
                else:
                    claimed.append((i, got))
            ready = []
            for i, c in claimed:
                t0 = time.perf_counter()
                try:
                    c.transcript = self._parse(c)
                    ready.append((i, c))
                except Exception as e:
                    outcomes[i] = self._guard(c.path, self._fail, c, e)
                c.own_seconds += time.perf_counter() - t0
            results, together = self._summarize(summarizer, [c for _, c in ready])
            if self._abandon.is_set():
                return [o or Outcome(path, "abandoned") for o, (path, _) in zip(outcomes, items)]
            for (i, c), result in zip(ready, results):
                if isinstance(result, Exception):
                    outcomes[i] = self._guard(c.path, self._fail, c, result)
                else:
                    outcomes[i] = self._guard(c.path, self._deliver, c, result, together)
        finally:
            with self._claimed_lock:
                self._claimed.pop(index, None)
        # Same content as a file in this batch: claimed now, it meets that file's finished job
        # ("already"), as it would have one file after the other, instead of a "busy" that drops
        # it until the next rescan.
        for i in deferred:
            outcomes[i] = self._process_batch(index, summarizer, [items[i]])[0]
        return outcomes

    def _guard(self, path: str, step, *args):
        """Run one file's step; a failure of our own (the state store...) becomes that file's
        outcome instead of ending the worker or sinking the rest of its batch. A full disk
        defers the file and pauses the watcher: its job is requeued once space is back."""
        try:
            return step(*args)
        except Exception as e:
            if self._abandon.is_set():
                return Outcome(path, "abandoned")
            if is_disk_full(e):
                self._disk_full(e)
                return Outcome(path, "deferred", str(e))
            log.exception("internal error on %s", path, extra={"event": "internal_error", "path": path})
            return Outcome(path, "failed", f"internal error: {type(e).__name__}: {e}")

    def _claim(self, index: int, path: str, queued_at: float,
               batch_shas: set[str]) -> _Claimed | Outcome | None:
        """Read the file and claim its job: the claim, an outcome (nothing to summarize), or None
        when a file of this batch already has the same content."""
        started = time.perf_counter()
        picked_at = time.time()
        try:
            st, data, sha = self._read(path)
        except FileNotFoundError:
            return Outcome(path, "vanished")
        except Refused as r:
            return self._refuse(path, str(r))
        except OSError as e:
            return self._unreadable(path, queued_at, picked_at, e)
        if sha in batch_shas:
            return None
        claim = self.state.claim(sha, self.model_hash, self.length, path,
                                 max_attempts=self.max_attempts, st=st)
        job = claim.job
        if claim.decision == "done":
            if job.path != path:
                log.info("%s: same content as an already summarized file; not summarizing again",
                         path, extra={"event": "already", "path": path, "sha256": sha})
            # Its content is summarized: an error file from a failed earlier content is stale.
            out_dir, base_stem, source_key = self._output_names(path)
            with self._output_lock, self._output_folder(out_dir) as folder:
                remove_own_error_files(folder, base_stem, source_key)
            return Outcome(path, "already", sha256=sha)
        if claim.decision != "run":
            return _not_run(path, claim)
        with self._claimed_lock:
            self._claimed.setdefault(index, set()).add(job.id)
        return _Claimed(path, queued_at, picked_at, st, data, sha, job,
                        own_seconds=time.perf_counter() - started)

    def _unreadable(self, path: str, queued_at: float, picked_at: float, e: OSError) -> Outcome:
        """A file we may look at but not open (mode 000, an I/O error): it fails like bad
        content, with an error file, a state row, retries and a count in `status`. Its job is
        keyed by the file's identity and change time, since its content cannot be hashed; a
        chmod moves the change time, so fixing the permissions earns fresh attempts."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return Outcome(path, "vanished")
        real = os.path.realpath(path)
        key = "unreadable:" + hashlib.sha256(
            f"{real}\0{st.st_dev}\0{st.st_ino}\0{st.st_ctime_ns}".encode()).hexdigest()
        claim = self.state.claim(key, self.model_hash, self.length, path,
                                 max_attempts=self.max_attempts)
        if claim.decision != "run":
            return _not_run(path, claim)
        c = _Claimed(path, queued_at, picked_at, st, None, key, claim.job)
        return self._fail(c, InputError(f"{path}: cannot read it ({os_error_hint(e)})"))

    def _parse(self, c: _Claimed):
        if c.data is None:
            raise InputError(f"{c.path}: {c.st.st_size:,} bytes is over the {self.max_bytes:,}-byte "
                             f"cap (raise it with --max-bytes or {MAX_BYTES_ENV})")
        return parse_bytes(c.data, name=c.path, fmt=format_from_extension(Path(c.path)),
                           max_bytes=self.max_bytes)

    def _summarize(self, summarizer: Summarizer, claims: list[_Claimed]) -> tuple[list, int]:
        """A Summary or the exception per claim, and how many files shared each model call."""
        if len(claims) > 1:
            t0 = time.perf_counter()
            try:
                summaries = summarizer.summarize_batch([c.transcript for c in claims])
            except Exception as e:
                # One file's failure must be that file's alone: find it by going one by one.
                log.info("a batch of %d files failed (%s); summarizing them one at a time",
                         len(claims), e, extra={"event": "batch_failed", "count": len(claims),
                                                "reason": str(e)})
            else:
                seconds = time.perf_counter() - t0
                log.info("summarized %d files in one batch (%.2f s in the model)", len(claims),
                         seconds, extra={"event": "batch", "count": len(claims),
                                         "model_seconds": round(seconds, 4)})
                return summaries, len(claims)
        results = []
        for c in claims:
            if self._abandon.is_set():
                break
            t0 = time.perf_counter()
            try:
                results.append(summarizer.summarize(c.transcript))
            except Exception as e:
                c.own_seconds += time.perf_counter() - t0  # no summary carries it: count it here
                results.append(e)
        return results, 1

    def _deliver(self, c: _Claimed, summary, batch: int) -> Outcome:
        """Write one file's outputs and commit its job."""
        t1 = time.perf_counter()
        path, job = c.path, c.job
        out_dir, base_stem, source_key = self._output_names(path)
        # Batched, the model's time is the file's share of the shared calls (see summarize_batch).
        model_seconds = float(summary.timings.get("summarize_s", 0.0))
        extra = {"watch": {
            "job_id": job.id, "attempt": job.attempts + 1,
            "source_path": path, "relative_path": str(self._relative(path)),
            "sha256": c.sha, "bytes": len(c.data),
            "model_sha256": self.model_hash, "length": self.length,
            "queued_at": round(c.queued_at, 3), "started_at": round(c.picked_at, 3),
            "wait_s": round(c.picked_at - c.queued_at, 4),
            "summarize_s": round(model_seconds, 4), "batch": batch,
        }}
        try:
            with self._output_lock, self._output_folder(out_dir) as folder:
                stem = claim_stem(folder, base_stem, source_key, self.formats)
                extra["watch"]["write_s"] = round(time.perf_counter() - t1, 4)
                written = write_summary(summary, folder, stem, self.formats, source_key=source_key,
                                        extra=extra)
                remove_own_error_files(folder, base_stem, source_key)
        except Exception as e:
            c.own_seconds += time.perf_counter() - t1
            if is_disk_full(e):
                raise  # not the file's fault: it waits for space, costing no attempt
            return self._fail(c, e)
        # A file's seconds are its own reading, parsing and writing plus its share of the model,
        # so that a batch's files do not each claim the whole batch's time.
        seconds = c.own_seconds + time.perf_counter() - t1 + model_seconds
        outputs = [str(p) for p in written]
        if not self.state.finish(job.id, outputs=outputs, seconds=seconds,
                                 model_seconds=model_seconds):
            return Outcome(path, "abandoned")
        log.info("summarized %s -> %s (%.2f s)", path, written[0].name, seconds,
                 extra={"event": "summarized", "path": path, "sha256": c.sha,
                        "outputs": outputs, "seconds": round(seconds, 4),
                        "model_seconds": round(model_seconds, 4)})
        return Outcome(path, "summarized", seconds=seconds, model_seconds=model_seconds,
                       outputs=outputs, sha256=c.sha, batch=batch)

    def _fail(self, c: _Claimed, e: Exception) -> Outcome:
        """Record a failed attempt, write its error file, schedule the retry.

        The error file is written first, with the attempt the state is about to record: if the
        disk is full, neither is recorded and the job is requeued once space is back, so an
        error counted in `status` always has its file."""
        path = c.path
        # InputError messages already name the file; anything else gets the name prepended.
        reason = str(e) if isinstance(e, SumctlError) else f"{path}: {type(e).__name__}: {e}"
        if not isinstance(e, SumctlError):
            log.debug("traceback for %s", path, exc_info=e)
        now = time.time()
        attempts = c.job.attempts + 1
        next_retry = retry_at(attempts, self.max_attempts, self.backoff_seconds, now)
        self._write_error(path, c.sha, attempts, next_retry, reason)
        failed = self.state.fail(c.job.id, reason, max_attempts=self.max_attempts,
                                 backoff_seconds=self.backoff_seconds, now=now)
        if failed is None:
            return Outcome(path, "abandoned")
        when = (f"retry {failed.attempts + 1}/{self.max_attempts} at "
                f"{time.strftime('%H:%M:%S', time.localtime(failed.next_retry))}"
                if failed.next_retry else "gave up until the file changes")
        log.warning("failed: %s (%s)", reason, when,
                    extra={"event": "failed", "path": path, "sha256": c.sha, "reason": reason,
                           "attempts": failed.attempts, "next_retry": failed.next_retry})
        return Outcome(path, "failed", reason, seconds=c.own_seconds, retry_at=failed.next_retry,
                       sha256=c.sha)

    def _output_names(self, path: str) -> tuple[Path, str, str]:
        """Where a file's summary and error files go: the folder, the base of their names, and
        the source key they record (the real path, which tells two same-named sources apart).
        The folder is the real location of the folder the file was found in, mirrored under
        --out when given."""
        parent = Path(os.path.realpath(Path(path).parent))
        if self.out is not None:
            rel = self._relative(str(parent))
            parent = self.out if rel is None or str(rel) == "." else self.out / rel
        return parent, safe_stem(Path(path).name), os.path.realpath(path)

    def _output_folder(self, out_dir: Path) -> OutputFolder:
        """The folder opened from the watched root (or --out) without following symlinks: a
        symlink planted where outputs go is refused, never written through."""
        return OutputFolder(out_dir, within=self.out if self.out is not None else self.root)

    def _write_error(self, path: str, sha: str, attempts: int, next_retry: float | None,
                     reason: str) -> None:
        out_dir, base_stem, source_key = self._output_names(path)
        retry = (f"next retry: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(next_retry))} "
                 f"(attempt {attempts + 1} of {self.max_attempts})" if next_retry
                 else f"gave up after {attempts} attempt(s); change the file to try again, or run "
                      "`sumctl watch --retry-failed`")
        shown_sha = "unknown (the file could not be read)" if sha.startswith("unreadable:") else sha
        text = error_text(source_key, shown_sha, attempts, retry, reason)
        try:
            with self._output_lock, self._output_folder(out_dir) as folder:
                write_error_file(folder, claim_stem(folder, base_stem, source_key, self.formats),
                                 text)
        except SumctlError as e:
            if is_disk_full(e):
                raise
            log.error("cannot write the error file for %s: %s", source_key, e,
                      extra={"event": "error_file_failed", "path": source_key})


def _not_run(path: str, claim) -> Outcome:
    """The outcome of a claim that is not ours to run now: busy, wait or gave_up."""
    job = claim.job
    if claim.decision == "busy":
        return Outcome(path, "busy", sha256=job.sha256)
    if claim.decision == "wait":
        return Outcome(path, "wait", job.error or "", retry_at=job.next_retry, sha256=job.sha256)
    return Outcome(path, "gave_up", job.error or "", sha256=job.sha256)


def _may_be_ours(name: str) -> bool:
    """A name sumctl could have written: judged by content before it is skipped or read."""
    lower = name.lower()
    return (SUMMARY_NAME.match(name) is not None or lower.endswith(ERROR_SUFFIX)
            or _is_our_temp(name))


def _lock_watched_folder(root: Path) -> int | None:
    """One watcher per folder, whatever --state each was given: an flock on the folder itself
    (nothing is written there; the lock dies with the process). Where the filesystem cannot
    lock folders (some network mounts), a warning, and the per-state lock still holds."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SumctlError(f"{root}: cannot open the folder to watch ({os_error_hint(e)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _flock_holder(os.fstat(fd))
        os.close(fd)
        raise StateLockedError(
            f"{root}: another `sumctl watch` (pid {holder or '?'}) is watching this folder, with "
            "another --state; stop it first (two would summarize every file twice)") from None
    except OSError as e:
        os.close(fd)
        log.warning("%s: cannot lock the folder (%s); make sure no other watcher uses it",
                    root, os_error_hint(e), extra={"event": "no_folder_lock", "path": str(root)})
        return None
    return fd


def _flock_holder(st: os.stat_result) -> int | None:
    """The pid holding an flock on this inode, from /proc/locks (Linux), or None."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK":
                    dev_inode = fields[5].rsplit(":", 1)
                    if len(dev_inode) == 2 and dev_inode[1] == str(st.st_ino):
                        return int(fields[4]) if fields[4].isdigit() else None
    except OSError:
        pass
    return None


def _is_our_temp(name: str) -> bool:
    """`.<name>.<pid>-<hex>.tmp` (or, from older versions, `.<name>.<random>.tmp`) of one of our
    outputs: what a write leaves if killed before its rename."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and (
        ".summary." in name or ERROR_SUFFIX + "." in name)


def _sweep_temp(path: Path, min_age: float = 60.0) -> None:
    """Remove a temporary output left by a killed run: at once when the pid in its name is
    dead, else only once old, since a young one may be a `sumctl summarize` writing into the
    same folder right now."""
    try:
        pid = temp_writer_pid(path.name)
        if (pid is None or pid_alive(pid)) and time.time() - path.lstat().st_mtime < min_age:
            return
        path.unlink()
        log.info("removed %s, left by an interrupted write", path,
                 extra={"event": "swept", "path": str(path)})
    except OSError:
        pass
