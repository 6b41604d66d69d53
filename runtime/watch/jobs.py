"""One file's way through a worker: read, claim, parse, summarize, then deliver or fail.

A worker reads the bytes once, hashes them and claims the job (content hash, model bundle
hash, length) in the state database; it then parses, summarizes and writes those same bytes'
summary, so an output always matches the hash it records. Outputs are written atomically
(temp file, fsync, rename) before the job is committed as done. A failure writes
`<stem>.error.txt` and is retried with backoff, then left alone until the file changes. A file
that cannot even be opened (mode 000) fails the same way. A full disk is nobody's fault: the
file is deferred, costing no attempt, and the watcher pauses (watcher.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Callable

from sumctl.runtime.errors import InputError, SumctlError
from sumctl.runtime.fsutil import (UnsafePath, display_name, hash_stream, is_disk_full, open_dir, open_regular,
                                   os_error_hint, relative_parts)
from sumctl.runtime.outputs import (OutputFolder, OutputPlace, claim_stem, error_text, output_place,
                                    remove_own_error_files, write_error_file, write_summary)
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import MAX_BYTES_ENV, Transcript, format_from_extension, parse_bytes
from sumctl.runtime.watch.config import WatchConfig
from sumctl.runtime.watch.discovery import Refused, Tree
from sumctl.runtime.watch.state import ClaimDecision, Job, State, retry_at

log = logging.getLogger("sumctl.watch")

# Remembered once-logged refusals; past this the memory is cleared and they log again.
LOG_ONCE_LIMIT = 100_000


class Status(StrEnum):
    """What happened to a file this time."""

    SUMMARIZED = "summarized"
    FAILED = "failed"          # an attempt failed; retried later, or at the next change
    REFUSED = "refused"        # not ours to read (a symlink out, a FIFO...)
    ALREADY = "already"        # its content is already summarized
    BUSY = "busy"              # another worker holds its content's job
    WAIT = "wait"              # failed before; its next retry is later
    GAVE_UP = "gave_up"        # failed max_attempts times; waits for the content to change
    VANISHED = "vanished"
    DEFERRED = "deferred"      # a full disk: tried again once space is back
    ABANDONED = "abandoned"    # the watcher stopped before it was done


@dataclass
class Outcome:
    path: str
    status: Status
    reason: str = ""
    seconds: float = 0.0
    model_seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    retry_at: float | None = None
    sha256: str = ""
    batch: int = 0  # summarized: files that shared its model calls, itself included


@dataclass
class Claimed:
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


def not_run(path: str, claim) -> Outcome:
    """The outcome of a claim that is not ours to run now: busy, wait or gave_up."""
    job = claim.job
    if claim.decision == ClaimDecision.BUSY:
        return Outcome(path, Status.BUSY, sha256=job.sha256)
    if claim.decision == ClaimDecision.WAIT:
        return Outcome(path, Status.WAIT, job.error or "", retry_at=job.next_retry, sha256=job.sha256)
    return Outcome(path, Status.GAVE_UP, job.error or "", sha256=job.sha256)


class JobPipeline:
    """The steps every worker runs, sharing one state, one output lock (two same-stem sources
    must not claim one name at once) and the record of which jobs each worker holds."""

    def __init__(self, config: WatchConfig, tree: Tree, state: State, model_hash: str, *,
                 abandon: threading.Event, disk_full: Callable[[BaseException], None]):
        self.config = config
        self.tree = tree
        self.state = state
        self.model_hash = model_hash
        self.abandon = abandon
        self.disk_full = disk_full
        self._output_lock = threading.Lock()
        self._claimed: dict[int, set[int]] = {}  # worker index -> ids of the jobs it holds
        self._claimed_lock = threading.Lock()
        self._refused_logged: set[tuple[str, str]] = set()

    def held(self) -> set[int]:
        """The ids of every job a worker holds now."""
        with self._claimed_lock:
            return {job_id for ids in self._claimed.values() for job_id in ids}

    def take_held(self) -> list[int]:
        """The held job ids, forgotten: for handing them back at an abandoned shutdown."""
        with self._claimed_lock:
            held = [job_id for ids in self._claimed.values() for job_id in ids]
            self._claimed.clear()
        return held

    # --- one batch ---------------------------------------------------------------------------

    def process_batch(self, index: int, summarizer: Summarizer,
                      items: list[tuple[str, float]]) -> list[Outcome]:
        """Each file's outcome, in order. Files are read, claimed and parsed one by one; those
        that parse go to the model together; each is then written and committed on its own, so
        a bad file costs the others nothing."""
        outcomes: list[Outcome | None] = [None] * len(items)
        claimed: list[tuple[int, Claimed]] = []
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
            if self.abandon.is_set():
                return [o or Outcome(path, Status.ABANDONED) for o, (path, _) in zip(outcomes, items)]
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
            outcomes[i] = self.process_batch(index, summarizer, [items[i]])[0]
        return outcomes

    def _guard(self, path: str, step, *args):
        """Run one file's step; a failure of our own (the state store...) becomes that file's
        outcome instead of ending the worker or sinking the rest of its batch. A full disk
        defers the file and pauses the watcher: its job is requeued once space is back."""
        try:
            return step(*args)
        except Exception as e:
            if self.abandon.is_set():
                return Outcome(path, Status.ABANDONED)
            if is_disk_full(e):
                self.disk_full(e)
                return Outcome(path, Status.DEFERRED, str(e))
            shown = display_name(path)
            log.exception("internal error on %s", shown, extra={"event": "internal_error", "path": shown})
            return Outcome(path, Status.FAILED, f"internal error: {type(e).__name__}: {e}")

    # --- the steps ---------------------------------------------------------------------------

    def refuse(self, path: str, reason: str) -> Outcome:
        if (path, reason) not in self._refused_logged:  # once per path, not once per event
            if len(self._refused_logged) >= LOG_ONCE_LIMIT:
                self._refused_logged.clear()
            shown = display_name(path)
            self.state.refuse(shown, reason)
            self._refused_logged.add((path, reason))
            log.warning("refusing %s: %s", shown, reason,
                        extra={"event": "refused", "path": shown, "reason": reason})
        return Outcome(path, Status.REFUSED, reason)

    def _claim(self, index: int, path: str, queued_at: float,
               batch_shas: set[str]) -> Claimed | Outcome | None:
        """Read the file and claim its job: the claim, an outcome (nothing to summarize), or None
        when a file of this batch already has the same content."""
        started = time.perf_counter()
        picked_at = time.time()
        try:
            st, data, sha = self._read(path)
        except FileNotFoundError:
            return Outcome(path, Status.VANISHED)
        except Refused as r:
            return self.refuse(path, str(r))
        except OSError as e:
            return self._unreadable(path, queued_at, picked_at, e)
        if sha in batch_shas:
            return None
        # The state stores (and `status` shows) the name as fsutil.display_name writes it.
        shown = display_name(path)
        claim = self.state.claim(sha, self.model_hash, self.config.variant, shown,
                                 max_attempts=self.config.max_attempts, st=st)
        job = claim.job
        if claim.decision == ClaimDecision.DONE:
            if job.path != shown:
                log.info("%s: same content as an already summarized file; not summarizing again",
                         shown, extra={"event": "already", "path": shown, "sha256": sha})
            # Its content is summarized: an error file from a failed earlier content is stale.
            place = self.place(path)
            with self._output_lock, self._output_folder(place.folder) as folder:
                remove_own_error_files(folder, place.base_stem, place.source_key)
            return Outcome(path, Status.ALREADY, sha256=sha)
        if claim.decision != ClaimDecision.RUN:
            return not_run(path, claim)
        with self._claimed_lock:
            self._claimed.setdefault(index, set()).add(job.id)
        return Claimed(path, queued_at, picked_at, st, data, sha, job,
                       own_seconds=time.perf_counter() - started)

    def _read(self, path: str) -> tuple[os.stat_result, bytes | None, str]:
        """Read the file once: (stat, bytes or None when over the cap, sha256 of the bytes).

        Every folder from the watched root down is opened without following symlinks, and the
        file itself with O_NOFOLLOW, so a symlink swapped in after the check is refused by the
        kernel. Over-cap files are hashed in chunks, never held in memory."""
        real, _ = self.tree.inspect(path)
        root = self.tree.root
        try:
            parts = relative_parts(root, real)
            dir_fd = open_dir(root, parts[:-1])
            try:
                fd = open_regular(dir_fd, parts[-1])
            finally:
                os.close(dir_fd)
        except UnsafePath as e:
            raise Refused(f"changed while being read ({e})") from None
        max_bytes = self.config.summary.max_bytes
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            digest = hashlib.sha256()
            if st.st_size <= max_bytes:
                data = f.read(max_bytes + 1)
                if len(data) <= max_bytes:
                    return st, data, hashlib.sha256(data).hexdigest()
                digest.update(data)
            return st, None, hash_stream(f, digest).hexdigest()

    def _unreadable(self, path: str, queued_at: float, picked_at: float, e: OSError) -> Outcome:
        """A file we may look at but not open (mode 000, an I/O error): it fails like bad
        content, with an error file, a state row, retries and a count in `status`. Its job is
        keyed by the file's identity and change time, since its content cannot be hashed; a
        chmod moves the change time, so fixing the permissions earns fresh attempts."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return Outcome(path, Status.VANISHED)
        real = os.path.realpath(path)
        key = "unreadable:" + hashlib.sha256(
            os.fsencode(real) + f"\0{st.st_dev}\0{st.st_ino}\0{st.st_ctime_ns}".encode()).hexdigest()
        claim = self.state.claim(key, self.model_hash, self.config.variant, display_name(path),
                                 max_attempts=self.config.max_attempts)
        if claim.decision != ClaimDecision.RUN:
            return not_run(path, claim)
        c = Claimed(path, queued_at, picked_at, st, None, key, claim.job)
        return self._fail(c, InputError(f"{display_name(path)}: cannot read it ({os_error_hint(e)})"))

    def _parse(self, c: Claimed) -> Transcript:
        max_bytes = self.config.summary.max_bytes
        if c.data is None:
            raise InputError(f"{display_name(c.path)}: {c.st.st_size:,} bytes is over the {max_bytes:,}-byte "
                             f"cap (raise it with --max-bytes or {MAX_BYTES_ENV})")
        return parse_bytes(c.data, name=c.path, fmt=format_from_extension(Path(c.path)),
                           max_bytes=max_bytes)

    def _summarize(self, summarizer: Summarizer, claims: list[Claimed]) -> tuple[list, int]:
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
            if self.abandon.is_set():
                break
            t0 = time.perf_counter()
            try:
                results.append(summarizer.summarize(c.transcript))
            except Exception as e:
                c.own_seconds += time.perf_counter() - t0  # no summary carries it: count it here
                results.append(e)
        return results, 1

    def _deliver(self, c: Claimed, summary, batch: int) -> Outcome:
        """Write one file's outputs and commit its job."""
        t1 = time.perf_counter()
        path, job, config = c.path, c.job, self.config
        place = self.place(path)
        # Batched, the model's time is the file's share of the shared calls (see summarize_batch).
        model_seconds = float(summary.timings.get("summarize_s", 0.0))
        extra = {"watch": {
            "job_id": job.id, "attempt": job.attempts + 1,
            "source_path": display_name(path),
            "relative_path": display_name(self.tree.relative(path)),
            "sha256": c.sha, "bytes": len(c.data),
            "model_sha256": self.model_hash, "length": config.summary.length,
            "queued_at": round(c.queued_at, 3), "started_at": round(c.picked_at, 3),
            "wait_s": round(c.picked_at - c.queued_at, 4),
            "summarize_s": round(model_seconds, 4), "batch": batch,
        }}
        try:
            with self._output_lock, self._output_folder(place.folder) as folder:
                stem = claim_stem(folder, place.base_stem, place.source_key, config.summary.formats)
                extra["watch"]["write_s"] = round(time.perf_counter() - t1, 4)
                written = write_summary(summary, folder, stem, config.summary.formats,
                                        source_key=place.source_key, extra=extra)
                remove_own_error_files(folder, place.base_stem, place.source_key)
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
            return Outcome(path, Status.ABANDONED)
        log.info("summarized %s -> %s (%.2f s)", display_name(path), written[0].name, seconds,
                 extra={"event": "summarized", "path": display_name(path), "sha256": c.sha,
                        "outputs": outputs, "seconds": round(seconds, 4),
                        "model_seconds": round(model_seconds, 4)})
        return Outcome(path, Status.SUMMARIZED, seconds=seconds, model_seconds=model_seconds,
                       outputs=outputs, sha256=c.sha, batch=batch)

    def _fail(self, c: Claimed, e: Exception) -> Outcome:
        """Record a failed attempt, write its error file, schedule the retry.

        The error file is written first, with the attempt the state is about to record: if the
        disk is full, neither is recorded and the job is requeued once space is back, so an
        error counted in `status` always has its file."""
        path, config = c.path, self.config
        shown = display_name(path)
        # InputError messages already name the file; anything else gets the name prepended.
        reason = str(e) if isinstance(e, SumctlError) else f"{shown}: {type(e).__name__}: {e}"
        if not isinstance(e, SumctlError):
            log.debug("traceback for %s", shown, exc_info=e)
        now = time.time()
        attempts = c.job.attempts + 1
        next_retry = retry_at(attempts, config.max_attempts, config.backoff_seconds, now)
        self._write_error(path, c.sha, attempts, next_retry, reason)
        failed = self.state.fail(c.job.id, reason, max_attempts=config.max_attempts,
                                 backoff_seconds=config.backoff_seconds, now=now)
        if failed is None:
            return Outcome(path, Status.ABANDONED)
        when = (f"retry {failed.attempts + 1}/{config.max_attempts} at "
                f"{time.strftime('%H:%M:%S', time.localtime(failed.next_retry))}"
                if failed.next_retry else "gave up until the file changes")
        log.warning("failed: %s (%s)", reason, when,
                    extra={"event": "failed", "path": shown, "sha256": c.sha, "reason": reason,
                           "attempts": failed.attempts, "next_retry": failed.next_retry})
        return Outcome(path, Status.FAILED, reason, seconds=c.own_seconds,
                       retry_at=failed.next_retry, sha256=c.sha)

    # --- where outputs go --------------------------------------------------------------------

    def place(self, path: str) -> OutputPlace:
        """A file's output place: the real location of the folder it was found in, mirrored
        under --out when given (outputs.output_place, as `sumctl summarize` uses it)."""
        return output_place(Path(path), out=self.config.out, root=self.tree.root)

    def _output_folder(self, out_dir: Path) -> OutputFolder:
        """The folder opened from the watched root (or --out) without following symlinks: a
        symlink planted where outputs go is refused, never written through."""
        return OutputFolder(out_dir, within=self.config.out if self.config.out is not None
                            else self.tree.root)

    def _write_error(self, path: str, sha: str, attempts: int, next_retry: float | None,
                     reason: str) -> None:
        place = self.place(path)
        max_attempts = self.config.max_attempts
        retry = (f"next retry: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(next_retry))} "
                 f"(attempt {attempts + 1} of {max_attempts})" if next_retry
                 else f"gave up after {attempts} attempt(s); change the file to try again, or run "
                      "`sumctl watch --retry-failed`")
        shown_sha = "unknown (the file could not be read)" if sha.startswith("unreadable:") else sha
        text = error_text(place.source_key, shown_sha, attempts, retry, reason)
        try:
            with self._output_lock, self._output_folder(place.folder) as folder:
                write_error_file(folder, claim_stem(folder, place.base_stem, place.source_key,
                                                    self.config.summary.formats), text)
        except SumctlError as e:
            if is_disk_full(e):
                raise
            log.error("cannot write the error file for %s: %s", place.source_key, e,
                      extra={"event": "error_file_failed", "path": place.source_key})
