"""The workers behind `sumctl serve`: each claims the oldest pending job, summarizes it with
its own model, and commits the result through the JobStore.

Threads, as in `sumctl watch`: the model runs in native code that releases the GIL, and a
backend is not thread-safe, so each worker loads its own Summarizer once. Threads per worker
and OpenMP's wait policy are planned before the first model loads (machine.py), because
OpenMP reads its policy once, when it starts.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from sumctl.runtime.errors import StateError, SumctlError, first_line
from sumctl.runtime.fsutil import os_error_hint
from sumctl.runtime.machine import plan_openmp_waits, plan_threads
from sumctl.runtime.options import SummaryOptions
from sumctl.runtime.serve.store import JobStore, ServeJob
from sumctl.runtime.transcript import parse_bytes

log = logging.getLogger("sumctl.serve")

# How often an idle worker looks at the store without being notified: a job queued by anything
# but submit+notify (requeued at start, a notify lost to a race) waits at most this long.
IDLE_POLL_SECONDS = 1.0
# Per-job seconds kept for /metrics: enough for percentiles, bounded however long it runs.
SECONDS_KEPT = 10_000


class JobRunner:
    """Summarize the store's pending jobs on `workers` threads.

    Args:
        store: the JobStore that owns the jobs.
        model: a bundle folder, an installed model's name, or None for the default.
        workers, threads: worker threads, and CPU threads per worker (None: the cores shared
            out; more than fits is lowered, with `threads_warning` saying so).
        on_finish: called with each job after its done or failed commit (webhooks).
        summarizer_factory: (model, threads) -> an object with summarize(); default: Summarizer.
    """

    def __init__(self, store: JobStore, model: str | None = None, *, workers: int = 1,
                 threads: int | None = None, on_finish: Callable[[ServeJob], None] | None = None,
                 summarizer_factory=None):
        if workers < 1:
            raise SumctlError(f"--workers {workers}: need at least one worker")
        self.store = store
        self.model = model
        self.workers = workers
        self.threads, self.threads_warning = plan_threads(workers, threads)
        plan_openmp_waits(workers, self.threads)
        self.on_finish = on_finish
        self.summarizer_factory = summarizer_factory or _load_summarizer
        self.seconds: list[float] = []
        self._busy = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._pending_notes = 0
        self._threads: list[threading.Thread] = []

    @property
    def busy(self) -> int:
        """Workers on a job right now."""
        return self._busy

    def start(self) -> None:
        """Start the workers and wait until each has loaded its model; a model that cannot
        load raises here (a SumctlError), before any job is claimed."""
        if self._threads:
            return
        loaded: list[threading.Event] = []
        errors: list[BaseException] = []
        for i in range(self.workers):
            ready = threading.Event()
            thread = threading.Thread(target=self._worker, args=(ready, errors),
                                      name=f"sumctl-serve-{i}", daemon=True)
            loaded.append(ready)
            self._threads.append(thread)
            thread.start()
        for ready in loaded:
            ready.wait()
        if errors:
            self.stop()
            raise errors[0]

    def notify(self) -> None:
        """A job was submitted: wake one idle worker."""
        with self._wake:
            self._pending_notes += 1
            self._wake.notify()

    def stop(self, timeout: float = 30) -> None:
        """Let the jobs in flight finish (up to `timeout` seconds), then end the workers. A job
        still running after that stays `running`, and goes back to pending at the next start."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    # --- a worker -------------------------------------------------------------------------

    def _worker(self, ready: threading.Event, errors: list[BaseException]) -> None:
        try:
            summarizer = self.summarizer_factory(self.model, self.threads)
        except Exception as e:
            errors.append(e if isinstance(e, SumctlError)
                          else SumctlError(f"cannot load the model: {first_line(e)}"))
            return
        finally:
            ready.set()
        while True:
            with self._wake:
                if self._stopping:
                    return
            try:
                job = self.store.claim_next()
            except StateError as e:
                log.error("%s", e)
                job = None
            if job is None:
                with self._wake:
                    if self._stopping:
                        return
                    if not self._pending_notes:
                        self._wake.wait(IDLE_POLL_SECONDS)
                    self._pending_notes = max(0, self._pending_notes - 1)
                continue
            with self._lock:
                self._busy += 1
            try:
                self._run(summarizer, job)
            finally:
                with self._lock:
                    self._busy -= 1

    def _run(self, summarizer, job: ServeJob) -> None:
        started = time.perf_counter()
        try:
            options = SummaryOptions.from_dict(job.options)
            data = self.store.transcript_path(job.id).read_bytes()
            transcript = parse_bytes(data, name=job.filename, fmt=job.input_format,
                                     max_bytes=options.max_bytes)
            summary = summarizer.summarize(transcript, options, meeting_date=job.meeting_date)
            ended = self.store.finish(job.id, summary)
        except Exception as e:
            reason = _one_line(e, job)
            if not isinstance(e, (SumctlError, OSError)):
                log.debug("traceback for job %s", job.id, exc_info=e)
            try:
                ended = self.store.fail(job.id, reason)
            except StateError as state_error:
                log.error("%s", state_error)
                return
            log.warning("job %s (%s) failed: %s", job.id, job.filename, reason)
        if ended is None:
            return  # deleted while it ran: nobody is waiting for it
        with self._lock:
            self.seconds.append(time.perf_counter() - started)
            del self.seconds[:-SECONDS_KEPT]
        if self.on_finish is not None:
            try:
                self.on_finish(ended)
            except Exception as e:
                log.error("job %s: after it %s: %s", ended.id, ended.status, first_line(e))


def _load_summarizer(model, threads: int):
    from sumctl.runtime.summarizer import Summarizer

    return Summarizer(model, threads=threads)


def _one_line(e: Exception, job: ServeJob) -> str:
    """What a client is told: our own errors as they are, an OS error with its hint, and
    anything else (a bug) by its type and first line."""
    if isinstance(e, SumctlError):
        return " ".join(str(e).split())
    if isinstance(e, OSError):
        return f"{job.filename}: {os_error_hint(e)}"
    return f"{job.filename}: internal error: {type(e).__name__}: {first_line(e)}"
