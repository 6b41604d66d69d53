"""The folder watcher behind `sumctl watch`: every transcript dropped in a folder is summarized
exactly once, through crashes, restarts and bad files.

    watcher = Watcher(WatchConfig("transcripts/", model="bundles/flan-t5-int8", workers=2))
    report = watcher.run()  # until SIGINT/SIGTERM (or, with once=True, the backlog is done)

This module is the lifecycle: the dispatcher loop on the main thread, the worker pool, signals,
pausing for a full disk, and shutdown. What it dispatches lives beside it:
- discovery.py finds candidate files, filters and settles them, and holds the security rules;
- jobs.py is one file's way through a worker (read, claim, parse, summarize, deliver or fail);
- state.py is the durable job store that makes "exactly once" hold across restarts;
- config.py is the WatchConfig the CLI builds.

A bounded queue of paths (never contents: memory stays flat however big the backlog) feeds the
workers. A full disk is nobody's fault: work pauses with one logged line, the jobs it
interrupted go back to pending without costing an attempt, and work resumes once space is back.
Outputs go beside each input by default, or under `out` mirroring the input's subfolder.
"""

from __future__ import annotations

import fcntl
import heapq
import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sumctl.runtime.bundle import Bundle
from sumctl.runtime.errors import StateError, SumctlError
from sumctl.runtime.fsutil import display_name, is_disk_full, os_error_hint
from sumctl.runtime.machine import plan_openmp_waits
from sumctl.runtime.models import resolve_model
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.watch.config import WatchConfig
from sumctl.runtime.watch.discovery import Inbox, Refused, Settler, Tree, canonical, start_observer, sweep_folder
from sumctl.runtime.watch.jobs import LOG_ONCE_LIMIT, JobPipeline, Outcome, Status
from sumctl.runtime.errors import StateLockedError
from sumctl.runtime.watch.state import JobStatus, State

log = logging.getLogger("sumctl.watch")

# Below this much free space where we write, a paused watcher keeps waiting.
MIN_FREE_BYTES = 1 << 20
PROBE_SECONDS = 2.0


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
        return self.count(Status.SUMMARIZED)

    @property
    def failed(self) -> int:
        return self.count(Status.FAILED) + self.count(Status.GAVE_UP)


class Watcher:
    """Summarize every transcript in a folder exactly once, then keep watching it.

    Args:
        config: what to watch and how (WatchConfig, validated when it was built).
        on_outcome: called on the dispatcher thread with each file's Outcome and the watcher
            (the CLI's progress line).
        handle_signals: stop on SIGINT, SIGTERM and SIGHUP (finishing the jobs in flight; a
            second signal abandons them). Only from the main thread; off for embedding.

    Workers are threads, each with its own Summarizer (a backend is not thread-safe; its model
    loads once per worker). Threads rather than processes because the model runs in native
    code that releases the GIL (ONNX Runtime's session.run, llama.cpp's decode), so worker
    threads do run in parallel where it matters, while sharing one state connection, one
    output lock and one signal handler, with no pickling of jobs or results. The Python-side
    work per file (hashing, parsing, chapterization, writing) is small next to the model's.
    """

    def __init__(self, config: WatchConfig, *,
                 on_outcome: Callable[[Outcome, "Watcher"], None] | None = None,
                 handle_signals: bool = True):
        self.config = config
        self.on_outcome = on_outcome
        self.handle_signals = handle_signals
        self.root = config.root
        self.bundle: Bundle | None = None
        self.model_hash = ""
        self.state: State | None = None
        self.jobs: JobPipeline | None = None
        self.report = WatchReport()
        own_dirs = [p for p in (config.out, Path(os.path.realpath(config.state_path.parent)))
                    if p is not None and config.root in p.parents]
        self.tree = Tree(config.root, recursive=config.recursive, include=config.include,
                         exclude=config.exclude, own_dirs=own_dirs)
        self.settling = Settler(config.settle_seconds)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        # Room for each worker's next batch while it runs the current one.
        self._work: queue.Queue = queue.Queue(maxsize=config.workers * config.batch * 2)
        self._stop = threading.Event()
        self.started = threading.Event()  # set once the observer runs and the backlog is queued
        self._abandon = threading.Event()
        self._fatal: BaseException | None = None
        self._skips_logged: set[str] = set()
        self._folder_lock: int | None = None
        # A full disk: set by whoever meets it (a worker, the dispatcher); the dispatcher pauses.
        self._disk_full_reason: str | None = None
        self._paused_at: float | None = None
        self._next_probe = 0.0
        self._deferred: set[str] = set()  # paths to look at again once space is back
        self._signals = 0
        self.queued: set[str] = set()  # in the ready deque, the work queue or a worker's hands
        self._ready: deque[str] = deque()
        self._retries: list[tuple[float, str]] = []
        self._session = 0
        self._outbox = None  # a WebhookOutbox while the run has --webhook

    # --- public -------------------------------------------------------------------------------

    def stop(self, *, abandon: bool = False) -> None:
        """Ask the run to end: finish the jobs in flight (or, with abandon, leave them pending)."""
        self._stop.set()
        if abandon:
            self._abandon.set()
        self._inbox.put((Inbox.WAKE, ""))

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
        config = self.config
        # Before any model loads: the workers' llama.cpp threads share one OpenMP runtime.
        plan_openmp_waits(config.workers, config.threads)
        self.bundle = config.model if isinstance(config.model, Bundle) else resolve_model(config.model)
        self.model_hash = self.bundle.sha256
        self.state = State(config.state_path)
        self.jobs = JobPipeline(config, self.tree, self.state, self.model_hash,
                                abandon=self._abandon, disk_full=self._disk_full)
        try:
            self.state.acquire()
            self._folder_lock = lock_watched_folder(self.root)
            if config.out is not None:
                try:
                    config.out.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise SumctlError(f"{config.out}: cannot create the --out folder "
                                      f"({os_error_hint(e)})") from None
            session, recovered = self.state.start_session(str(self.root), self.model_hash,
                                                          config.variant)
            self._session = session
            self.report.recovered = recovered
            if recovered:
                log.warning("redoing %d job(s) interrupted by an earlier crash or kill", recovered,
                            extra={"event": "recovered", "count": recovered})
            if config.retry_failed:
                reset = self.state.reset_failed(self.model_hash, config.variant)
                log.info("giving %d failed job(s) a fresh set of attempts", reset,
                         extra={"event": "retry_failed", "count": reset})
            if config.threads_warning:
                log.warning(config.threads_warning, extra={"event": "threads_clamped"})
            if config.webhook is not None:
                self._outbox = open_watch_outbox(config)
                self._outbox.start()
            try:
                if not self._stop.is_set():  # a signal during start-up
                    self._run(started)
            finally:
                # Abandoned: leave at once; the undelivered events wait in the outbox.
                if self._outbox is not None and not self._abandon.is_set():
                    self._outbox.stop()
                if not self._abandon.is_set():
                    self.state.stop_session(session)
        finally:
            if not self._abandon.is_set():
                self.state.close()
                if self._folder_lock is not None:
                    os.close(self._folder_lock)

    # --- the dispatcher (main thread) ---------------------------------------------------------

    def _run(self, started: float) -> None:
        config = self.config
        threads = [threading.Thread(target=self._worker, args=(i,), name=f"sumctl-worker-{i}",
                                    daemon=True) for i in range(config.workers)]
        for t in threads:
            t.start()
        observer = None
        try:
            if not config.once:
                observer = start_observer(self.root, recursive=config.recursive, poll=config.poll,
                                          put=lambda kind, path: self._inbox.put((kind, path)),
                                          shown_as=config.folder)
            self._scan(self.root)
            if config.out is not None and not self.tree.inside(config.out):
                sweep_folder(config.out)
            for path in self.state.pending_paths(self.model_hash, config.variant):
                self._inbox.put((Inbox.PATH, path))
            log.info("%s %s with %s (%d worker(s) x %d thread(s), batches of up to %d file(s), "
                     "%s summaries, settle %.1f s)",
                     "processing" if config.once else "watching", display_name(config.folder),
                     self.bundle.display_name, config.workers, config.threads, config.batch,
                     config.summary.length, config.settle_seconds,
                     extra={"event": "start", "path": display_name(config.folder), "model": self.model_hash,
                            "workers": config.workers, "threads": config.threads,
                            "batch": config.batch})
            self.started.set()
            self._loop()
        finally:
            if observer is not None:
                observer.stop()
            self._shutdown(threads)
            if observer is not None:
                observer.join(timeout=5)
            self.report.elapsed = time.perf_counter() - started

    def _scan(self, top: Path) -> None:
        self.tree.scan(top, lambda path: self._inbox.put((Inbox.PATH, path)))

    def _loop(self) -> None:
        config = self.config
        next_rescan = time.monotonic() + config.rescan_seconds if config.rescan_seconds > 0 else None
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
                next_rescan = time.monotonic() + config.rescan_seconds
                self._scan(self.root)
            if config.once and self._backlog_done():
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
            log.exception("internal error on %s", display_name(path) if path else "the watcher",
                          extra={"event": "internal_error", "path": display_name(path)})
            return None

    def _disk_full(self, e: BaseException) -> None:
        """Called from any thread: the dispatcher pauses at its next turn."""
        if self._disk_full_reason is None:
            self._disk_full_reason = str(e)

    def _pause_or_resume(self) -> None:
        now = time.monotonic()
        if self._paused_at is None and self.config.once:
            # A one-shot run (cron, CI) has no later to wait for: pausing would hang it for ever.
            # The jobs it interrupted stay pending, so the next run picks them up.
            folder = self._full_folder() or self.config.out or self.config.folder
            self._fatal = SumctlError(
                f"{folder}: the disk is full ({self._disk_full_reason}); --once does not wait "
                "for space: free some space there and run again")
            self._stop.set()
            return
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
        try:
            requeued = self.state.requeue_orphans(self.jobs.held())
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
        return self._full_folder() is None

    def _full_folder(self) -> Path | None:
        """The first folder we write to that is short of space, or None when all have room."""
        for folder in (self.config.out or self.root, self.config.state_path.parent):
            try:
                st = os.statvfs(folder)
            except OSError:
                continue
            if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
                return folder
        return None

    def _handle(self, kind: Inbox, payload) -> None:
        if kind == Inbox.PATH:
            self._dispatch_step(payload, self._consider, payload)
        elif kind == Inbox.DIR:
            if self.config.recursive:
                self._dispatch_step("", self._scan, Path(payload))
        elif kind == Inbox.RESULT:
            self._finished(payload)

    def _consider(self, path: str) -> None:
        """A path was seen: start (or restart) its settle clock unless it is not for us."""
        path = canonical(path)
        wanted, skipped = self.tree.candidate(path)
        if skipped:
            self._skipped(path, skipped)
        if wanted:
            self.settling.watch(path)

    def _skipped(self, path: str, reason: str) -> None:
        """Log a skip once per path and count it: a transcript that is never summarized must
        at least say why."""
        if path in self._skips_logged:
            return
        if len(self._skips_logged) >= LOG_ONCE_LIMIT:
            self._skips_logged.clear()
        self._skips_logged.add(path)
        self.report.skipped[reason] = self.report.skipped.get(reason, 0) + 1
        log.info("skipping %s (%s)", display_name(path), reason,
                 extra={"event": "skip", "path": display_name(path), "reason": reason})

    def _settle(self) -> None:
        if not self.settling:
            return
        for path, result in self.settling.ripe(self.tree.inspect, self.queued):
            if isinstance(result, Refused):
                self._finished(self._dispatch_step(path, self.jobs.refuse, path, str(result))
                               or Outcome(path, Status.REFUSED, str(result)))
                continue
            handled = self._dispatch_step(path, self._already_handled, path, result)
            if handled is None and path in self._deferred:
                continue
            if handled:
                continue
            self.queued.add(path)
            self._ready.append(path)

    def _already_handled(self, path: str, st: os.stat_result) -> bool:
        """Known content whose job is finished: skip it without a worker (restarts, rescans)."""
        sha = self.state.cached_hash(display_name(path), st)
        if sha is None:
            return False
        job = self.state.job(sha, self.model_hash, self.config.variant)
        return job is not None and (job.status == JobStatus.DONE
                                    or job.gave_up(self.config.max_attempts))

    def _feed(self) -> None:
        while self._ready and not self._stop.is_set():
            try:
                self._work.put_nowait((self._ready[0], time.time()))
            except queue.Full:
                return
            self._ready.popleft()

    def _finished(self, outcome: Outcome) -> None:
        once = self.config.once
        self.queued.discard(outcome.path)
        if outcome.status == Status.DEFERRED:
            self._deferred.add(outcome.path)
        elif outcome.status == Status.WAIT and outcome.retry_at is not None:
            if not once:
                heapq.heappush(self._retries, (outcome.retry_at, outcome.path))
            if outcome.path not in self.report.outcomes:
                self.report.outcomes[outcome.path] = outcome
        elif outcome.status == Status.FAILED and outcome.retry_at is not None and not once:
            heapq.heappush(self._retries, (outcome.retry_at, outcome.path))
            self.report.outcomes[outcome.path] = outcome
        elif outcome.status != Status.BUSY:
            self.report.outcomes[outcome.path] = outcome
        if self._outbox is not None and outcome.status in (Status.SUMMARIZED, Status.FAILED):
            self._announce(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome, self)

    def _announce(self, outcome: Outcome) -> None:
        """Queue the --webhook event of a file that was summarized or failed an attempt."""
        done = outcome.status == Status.SUMMARIZED
        data = {"path": display_name(self.tree.relative(outcome.path) or outcome.path),
                "status": "done" if done else "failed", "sha256": outcome.sha256,
                "outputs": [Path(p).name for p in outcome.outputs],
                "error": None if done else outcome.reason, "next_retry": outcome.retry_at}
        try:
            self._outbox.enqueue(self.config.webhook, "job.done" if done else "job.failed", data)
        except SumctlError as e:  # the summary is written whatever becomes of its announcement
            log.error("webhook for %s: %s", data["path"], e,
                      extra={"event": "webhook_failed", "path": data["path"]})

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
        deadline = time.monotonic() + self.config.grace_seconds
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
            if kind == Inbox.RESULT:
                self._finished(payload)

    def _abandon_in_flight(self) -> None:
        """Workers stuck in native model code cannot be interrupted: hand their jobs back as
        pending (redone next start) and let the process exit without them."""
        self._abandon.set()
        for job_id in self.jobs.take_held():
            if self.state.release(job_id):
                self.report.abandoned += 1
        log.warning("abandoned %d job(s) in flight; they will be redone on the next start",
                    self.report.abandoned, extra={"event": "abandoned", "count": self.report.abandoned})
        self.state.close()

    # --- workers ------------------------------------------------------------------------------

    def _worker(self, index: int) -> None:
        config = self.config
        try:
            summarizer = Summarizer(self.bundle, config.summary, threads=config.threads,
                                    verify=False)
        except BaseException as e:  # a model that cannot load stops the whole watcher
            self._fatal = e if isinstance(e, SumctlError) else SumctlError(
                f"{self.bundle.path}: the model failed to load in a worker ({type(e).__name__}: {e})")
            self._inbox.put((Inbox.WAKE, ""))
            return
        try:
            stopping = False
            while not stopping:
                path, queued_at = self._work.get()
                if path is None or self._stop.is_set() and self._abandon.is_set():
                    return
                batch = [(path, queued_at)]
                # Only what is already queued: waiting for a batch to fill would delay a lone file.
                while len(batch) < config.batch:
                    try:
                        path, queued_at = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if path is None:  # this worker's stop: after the files it already took
                        stopping = True
                        break
                    batch.append((path, queued_at))
                try:
                    outcomes = self.jobs.process_batch(index, summarizer, batch)
                except Exception as e:  # a bug of ours past the per-file guards: keep going
                    if self._abandon.is_set():
                        return
                    log.exception("internal error on %s", ", ".join(display_name(p) for p, _ in batch),
                                  extra={"event": "internal_error", "path": display_name(batch[0][0])})
                    outcomes = [Outcome(p, Status.FAILED, f"internal error: {type(e).__name__}: {e}")
                                for p, _ in batch]
                if self._abandon.is_set():
                    return
                for outcome in outcomes:
                    self._inbox.put((Inbox.RESULT, outcome))
        finally:
            summarizer.close()


def open_watch_outbox(config: WatchConfig):
    """The --webhook outbox and its secret, kept beside the watch state."""
    from sumctl.runtime.webhooks import WebhookOutbox, load_or_create_secret

    folder = config.state_path.parent
    return WebhookOutbox(folder / "webhooks.db",
                         load_or_create_secret(folder / "webhook-secret", config.webhook_secret))


def lock_watched_folder(root: Path) -> int | None:
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
        holder = flock_holder(os.fstat(fd))
        os.close(fd)
        raise StateLockedError(
            f"{root}: another `sumctl watch` (pid {holder or '?'}) is watching this folder, with "
            "another --state; stop it first (two would summarize every file twice)") from None
    except OSError as e:
        os.close(fd)
        log.warning("%s: cannot lock the folder (%s); make sure no other watcher uses it",
                    display_name(root), os_error_hint(e),
                    extra={"event": "no_folder_lock", "path": display_name(root)})
        return None
    return fd


def flock_holder(st: os.stat_result) -> int | None:
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
