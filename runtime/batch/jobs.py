"""A batch's jobs: planned once on the driver, run anywhere, recorded beside their outputs.

Planning (the driver, one process): every transcript is hashed and keyed like the watcher's
jobs (content sha256, bundle hash, length and question; see options.py). A job whose
done-record is in DEST, with its outputs, is skipped: nothing loads a model for it. The others
get their output names here, one after the other in SOURCE order, exactly as `sumctl summarize`
claims them (outputs.claim_stem), so that no two workers ever race for a name and a rerun finds
the same names again.

Running (a worker: a pool process or a Ray actor, with its Summarizer loaded once): read the
bytes, check they are the planned ones, parse, summarize, write the summary files through
outputs.write_summary (temporaries, fsync, rename: the same files `sumctl summarize` writes),
and only then write the job's done-record, atomically. A kill at any moment leaves either a
finished job with its record, or a job without one that the next run redoes into the same
names (and a temporary that the next run sweeps). A bad transcript gets its
`<stem>.error.txt` and a failed record: the job is done, and a rerun leaves it alone unless
asked to retry failures.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from sumctl.runtime.errors import BundleError, InputError, SumctlError
from sumctl.runtime.fsutil import hash_stream, sha256_file
from sumctl.runtime.outputs import (ERROR_SUFFIX, claim_stem, error_text, output_names,
                                    remove_own_error_files, write_error_file, write_summary)
from sumctl.runtime.transcript import format_from_extension, parse_bytes
from sumctl.runtime.batch.options import BatchOptions
from sumctl.runtime.batch.storage import Destination, SourceFile, filesystem, read_source
from sumctl.runtime.jsonout import strict_dumps

RECORD_FORMAT = 1


class BatchStatus:
    """What became of one transcript in a batch, as its Result and the report say."""

    SUMMARIZED = "summarized"
    FAILED = "failed"
    SKIPPED = "skipped_done"  # done (or failed) in an earlier run


@dataclass(frozen=True)
class PlannedJob:
    """One transcript's work, as planned on the driver: where its outputs go, under which names."""

    source: SourceFile
    sha256: str
    key: str          # BatchOptions.job_key(sha256)
    folder: str       # its output folder (a local path, or a path in DEST's filesystem)
    base_stem: str    # the names' base, before claim_stem numbered it
    stem: str         # the claimed names' stem
    source_key: str   # recorded in its outputs: the real path, or the URI

    @property
    def record_name(self) -> str:
        return record_name(self.key, self.source_key)

    def to_json(self) -> str:
        return strict_dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "PlannedJob":
        data = json.loads(text)
        return cls(**{**data, "source": SourceFile(**data["source"])})


def record_name(key: str, source_key: str) -> str:
    """A done-record's file name: the job's key and the source's identity, so that two copies of
    one transcript in one folder each get their summary."""
    return hashlib.sha256(f"{key}\0{source_key}".encode("utf-8")).hexdigest()[:40] + ".json"


@dataclass
class Result:
    """What became of one transcript, as the report shows it."""

    source: str
    status: str
    reason: str = ""
    seconds: float = 0.0        # the worker's time on it: read, parse, summarize, write
    model_seconds: float = 0.0  # the Summarizer's share (summary.timings["summarize_s"])
    outputs: list[str] = field(default_factory=list)
    worker: dict = field(default_factory=dict)  # engine, host, pid (and Ray's node_id)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Result":
        return cls(**data)

    @classmethod
    def from_record(cls, record: dict, status: str) -> "Result":
        return cls(record.get("source", ""), status, record.get("error") or "",
                   float(record.get("seconds") or 0.0), float(record.get("model_seconds") or 0.0),
                   list(record.get("outputs") or []), dict(record.get("worker") or {}))


# --- planning, on the driver -------------------------------------------------------------------


def hash_source(source: SourceFile) -> str:
    """The sha256 of a transcript's bytes, read in chunks (however large it is)."""
    if source.fs_uri is None:
        return sha256_file(source.path)
    fs, _ = filesystem(source.fs_uri)
    with fs.open_input_stream(source.path) as f:
        return hash_stream(f).hexdigest()


@dataclass
class Plan:
    jobs: list[PlannedJob]               # to run now
    finished: list[Result]        # skipped: their records say they were done before
    unreadable: list[Result]      # could not even be hashed (written as error files here)


def plan_jobs(sources: list[SourceFile], dest: Destination, options: BatchOptions, *,
              retry_failed: bool = False) -> Plan:
    """Key every source, skip the done ones, and claim output names for the rest in order."""
    plan = Plan([], [], [])
    protected = ({Path(os.path.realpath(s.path)) for s in sources if s.fs_uri is None}
                 if dest.fs_uri is None else set())
    taken: set = set()
    folders: dict[str, object] = {}
    records: dict[str, object] = {}

    def folder_for(path: str):
        if path not in folders:
            folders[path] = dest.folder(path)
        return folders[path]

    def records_for(path: str):
        if path not in records:
            try:
                records[path] = dest.records(path, create=False)
            except SumctlError:  # no records there yet
                records[path] = None
        return records[path]

    try:
        for source in sources:
            place = dest.place(source)
            folder = str(place.folder)
            try:
                sha = hash_source(source)
            except OSError as e:
                plan.unreadable.append(_unreadable(source, place, dest, e, options))
                continue
            key = options.job_key(sha)
            book = records_for(folder)
            record = book.read_record(record_name(key, place.source_key)) if book else None
            if record is not None:
                if _still_done(record, key, folder_for(folder), retry_failed):
                    plan.finished.append(Result.from_record(record, BatchStatus.SKIPPED))
                    continue
                # Its outputs are gone, or it is retried: the record no longer vouches for it,
                # and a worker must not take it for the work of a worker that died.
                book.remove(record_name(key, place.source_key))
            out = folder_for(folder)
            stem = claim_stem(out, place.base_stem, place.source_key, options.summary.formats, taken,
                              protected)
            taken.update(out.path(name) for name in output_names(stem, options.summary.formats).values())
            plan.jobs.append(PlannedJob(source, sha, key, folder, place.base_stem, stem, place.source_key))
    finally:
        for handle in (*folders.values(), *records.values()):
            if handle is not None:
                handle.close()
    return plan


def _still_done(record: dict, key: str, folder, retry_failed: bool) -> bool:
    """A record of this key whose files are all still there: done, or failed and not retried."""
    if record.get("key") != key or record.get("format") != RECORD_FORMAT:
        return False
    if record.get("status") == BatchStatus.FAILED:
        return not retry_failed and folder.exists(f"{record.get('stem')}{ERROR_SUFFIX}")
    return record.get("status") == "done" and all(folder.exists(name) for name in record.get("outputs") or ())


def _unreadable(source: SourceFile, place, dest: Destination, e: OSError, options) -> Result:
    """A source that cannot be read at all (mode 000, gone): its error file now, and no record,
    so the next run tries it again (with no content there is no key to record)."""
    from sumctl.runtime.fsutil import os_error_hint

    reason = f"{source.name}: cannot read it ({os_error_hint(e)})"
    try:
        with dest.folder(str(place.folder)) as folder:
            stem = claim_stem(folder, place.base_stem, place.source_key, options.summary.formats)
            write_error_file(folder, stem, error_text(place.source_key, "", 1,
                                                      "retry: at the next run", reason))
    except SumctlError as write_error:
        reason += f"; the error file could not be written either ({write_error})"
    return Result(source.name, BatchStatus.FAILED, reason)


# --- running, on a worker ----------------------------------------------------------------------


class Worker:
    """One worker's Summarizer, loaded once, and the steps of a job."""

    def __init__(self, options: BatchOptions, dest: Destination, *, engine: str,
                 info: dict | None = None):
        from sumctl.runtime.summarizer import Summarizer

        self.options = options
        self.dest = dest
        self.engine = engine
        self.info = dict(info or {})
        self.summarizer = Summarizer(options.model, options.summary, threads=options.threads)
        found = self.summarizer.bundle.sha256
        if found != options.model_sha256:
            raise BundleError(
                f"{options.model}: on {socket.gethostname()} this is not the bundle the batch "
                f"was planned with (manifest sha256 {found[:12]}…, expected "
                f"{options.model_sha256[:12]}…): put the same bundle at the same path on every node")
        self.max_bytes = options.summary.max_bytes

    def worker_info(self) -> dict:
        return {"engine": self.engine, "host": socket.gethostname(), "pid": os.getpid(), **self.info}

    def run(self, job: PlannedJob) -> Result:
        """Summarize one transcript into its planned names, then record it done. A failure of
        the transcript's own (unreadable, malformed, too long for the model) becomes its error
        file and a failed record, never an exception."""
        started = time.perf_counter()
        with self.dest.records(job.folder) as records:
            before = records.read_record(job.record_name)
        if before is not None and before.get("key") == job.key and before.get("status") == "done":
            # A task retried after its worker died may find its job already finished.
            return Result.from_record(before, BatchStatus.SUMMARIZED)
        model_seconds = 0.0
        try:
            summary = self._summarize(job)
            model_seconds = float(summary.timings.get("summarize_s", 0.0))
            with self.dest.folder(job.folder) as folder:
                written = write_summary(summary, folder, job.stem, self.options.summary.formats,
                                        source_key=job.source_key)
                remove_own_error_files(folder, job.base_stem, job.source_key)
            status, reason, outputs = "done", "", [p.name for p in written]
        except Exception as e:
            status, outputs = BatchStatus.FAILED, []
            reason = str(e) if isinstance(e, SumctlError) else f"{job.source.name}: {type(e).__name__}: {e}"
            reason = " ".join(reason.splitlines())
            try:
                with self.dest.folder(job.folder) as folder:
                    write_error_file(folder, job.stem, error_text(
                        job.source_key, job.sha256, 1, "retry: sumctl batch --retry-failed", reason))
            except Exception as write_error:
                # Without its error file the failure is not recorded: the next run tries again.
                reason += f"; the error file could not be written either ({write_error})"
                return Result(job.source.name, BatchStatus.FAILED, reason,
                              time.perf_counter() - started, worker=self.worker_info())
        seconds = time.perf_counter() - started
        record = {
            "format": RECORD_FORMAT, "status": status, "key": job.key,
            "source": job.source.name, "source_key": job.source_key, "source_sha256": job.sha256,
            "job": self.options.key_fields(), "stem": job.stem, "outputs": outputs,
            "error": reason or None, "seconds": round(seconds, 4),
            "model_seconds": round(model_seconds, 4), "worker": self.worker_info(),
            "finished_at": round(time.time(), 3),
        }
        with self.dest.records(job.folder) as records:
            records.write_set({job.record_name: strict_dumps(record, indent=1, ensure_ascii=False) + "\n"})
        return Result.from_record(record, BatchStatus.SUMMARIZED if status == "done" else BatchStatus.FAILED)

    def _summarize(self, job: PlannedJob):
        data = read_source(job.source, self.max_bytes)
        if len(data) <= self.max_bytes and hashlib.sha256(data).hexdigest() != job.sha256:
            raise InputError(f"{job.source.name}: changed since the batch was planned "
                             "(run the batch again once it is written)")
        transcript = parse_bytes(data, name=job.source.name,
                                 fmt=format_from_extension(PurePosixPath(job.source.path)),
                                 max_bytes=self.max_bytes)
        return self.summarizer.summarize(transcript)

    def close(self) -> None:
        self.summarizer.close()
