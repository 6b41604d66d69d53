"""The durable job store behind `sumctl serve`: one state folder, owned by one process.

    state_dir/serve.db        jobs (SQLite, WAL, every commit synchronous=FULL)
    state_dir/transcripts/<id>            what a client sent, as sent (0600)
    state_dir/outputs/<id>.summary.md|json  what `sumctl summarize` would have written

Exactly once, through kill -9 and power cuts:
- a submitted transcript is fsynced before its `pending` row commits, so a job the client was
  told about always has its input;
- a job's outputs are written (temporary, fsync, rename, fsync the folder) before `done`
  commits, so a `done` job always has its summary;
- a job found `running` at start-up was interrupted and goes back to `pending`; redoing it can
  only replace its outputs with identical ones. `done` and `failed` jobs are never claimed.

Files that no row owns (a kill between a write and its commit, a delete's leftovers) are swept
at start-up. Job ids are random (secrets.token_urlsafe): knowing one job's id tells nothing of
another's, and an id never reaches the filesystem unless it has exactly that shape.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sumctl.runtime.errors import StateError, SumctlError
from sumctl.runtime.fsutil import (TEMP_SUFFIX, fsync_dir, os_error_hint, unlink_quietly,
                                   utf8_cap, write_temp)
from sumctl.runtime.jsonout import strict_dumps
from sumctl.runtime.options import SummaryOptions
from sumctl.runtime.outputs import OutputFolder, output_names, write_summary
from sumctl.runtime.durable import DurableDb, own_folder
from sumctl.runtime.transcript import FORMATS

SERVE_SCHEMA_VERSION = 1
SERVE_DB = "serve.db"
SERVE_FORMATS = ("md", "json")
SERVE_STATUSES = ("pending", "running", "done", "failed")
# secrets.token_urlsafe(16): 22 characters of [A-Za-z0-9_-], 128 random bits.
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
FILENAME_MAX_BYTES = 255

_SERVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS serve_jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    filename TEXT NOT NULL,
    input_format TEXT,
    options TEXT NOT NULL,
    meeting_date TEXT,
    webhook TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    seconds REAL,
    runs INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    announced INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS serve_jobs_status ON serve_jobs (status, seq);
CREATE INDEX IF NOT EXISTS serve_jobs_finished ON serve_jobs (finished_at);
"""
_COLUMNS = ("id, status, filename, input_format, options, meeting_date, webhook, created_at, "
            "started_at, finished_at, seconds, runs, error")


class QueueFullError(SumctlError):
    """The service already holds max_queue jobs that are pending or running."""


@dataclass(frozen=True)
class ServeJob:
    """One submitted transcript's job, as the API shows it."""

    id: str
    status: str
    filename: str
    input_format: str | None
    options: dict
    meeting_date: str | None
    webhook: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    seconds: float | None
    runs: int
    error: str | None

    @classmethod
    def from_row(cls, row: tuple) -> ServeJob:
        values = list(row)
        values[4] = json.loads(values[4])
        return cls(*values)

    def to_dict(self) -> dict:
        """A JSON-able copy; no field holds a filesystem path."""
        return asdict(self)


def client_filename(name: str) -> str:
    """A client's file name made safe to show: its last path component (browsers have sent
    whole paths), without control characters, at most 255 UTF-8 bytes."""
    name = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return utf8_cap(name, FILENAME_MAX_BYTES) or "transcript"


def check_meeting_date(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise SumctlError(f"meeting date {value!r}: not a date (use YYYY-MM-DD)") from None
    return value


class JobStore:
    """Thread-safe: one connection, one lock around each operation (each is a few rows)."""

    def __init__(self, state_dir: Path, *, max_queue: int = 1000):
        if max_queue < 1:
            raise SumctlError(f"max queue {max_queue}: must be at least 1")
        self.state_dir = Path(state_dir).expanduser()
        self.max_queue = max_queue
        self.path = self.state_dir / SERVE_DB
        self.transcripts = self.state_dir / "transcripts"
        self.outputs = self.state_dir / "outputs"
        self._lock_fd: int | None = None
        self._db: DurableDb | None = None
        self._outputs: OutputFolder | None = None
        self._transcripts_fd = -1
        try:
            for folder in (self.state_dir, self.transcripts, self.outputs):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StateError(f"{self.state_dir}: cannot create the serve state folder "
                             f"({os_error_hint(e)}); choose another state folder") from None
        self._lock_fd = own_folder(self.state_dir, f"{SERVE_DB}.lock", (
            f"{self.state_dir}: another `sumctl serve` (pid {{pid}}) is using this state "
            "folder; stop it first, or choose another state folder"))
        try:
            self._db = DurableDb(self.path, _SERVE_SCHEMA, SERVE_SCHEMA_VERSION,
                                 what="serve state", fix="make the state folder writable, or "
                                 "choose another one")
            self._transcripts_fd = os.open(self.transcripts, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._outputs = OutputFolder(self.outputs, create=False)
        except BaseException:
            self.close()
            raise
        self._sweep()

    # --- plumbing -------------------------------------------------------------------------

    def _one(self, db: sqlite3.Connection, job_id: str) -> ServeJob | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM serve_jobs WHERE id=?", (job_id,)).fetchone()
        return ServeJob.from_row(row) if row else None

    def _sweep(self) -> None:
        """Remove files no row owns: a kill between a file's write and its row's commit, or
        between a delete's commit and its unlinks, leaves some."""
        known = {row[0] for row in self._db.query("SELECT id FROM serve_jobs")}
        for fd, folder in ((self._transcripts_fd, self.transcripts), (self._outputs.fd, self.outputs)):
            for name in os.listdir(folder):
                owner = name.split(".summary.", 1)[0]
                if name.endswith(TEMP_SUFFIX) or owner not in known:
                    unlink_quietly(fd, name)

    def close(self) -> None:
        """Close the database, then let go of the folder (the next owner may start at once)."""
        if self._db is not None:
            self._db.close()
        if self._outputs is not None:
            self._outputs.close()
            self._outputs = None
        if self._transcripts_fd >= 0:
            os.close(self._transcripts_fd)
            self._transcripts_fd = -1
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- jobs -----------------------------------------------------------------------------

    def transcript_path(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id or ""):
            raise SumctlError(f"job id {job_id!r}: not a sumctl serve job id")
        return self.transcripts / job_id

    def submit(self, data: bytes, *, filename: str, options: SummaryOptions,
               input_format: str | None = None, meeting_date: str | None = None,
               webhook: str | None = None) -> ServeJob:
        """Queue a transcript. Its bytes are durable before its row is: a job that exists
        always has its input."""
        if not isinstance(options, SummaryOptions):
            raise SumctlError("JobStore.submit(options=...) takes a SummaryOptions")
        if input_format is not None and input_format not in FORMATS:
            raise SumctlError(f"input format {input_format!r}: unknown (use one of "
                              f"{', '.join(FORMATS)})")
        if webhook is not None:
            from sumctl.runtime.webhooks import check_webhook_url

            check_webhook_url(webhook, option="webhook")
        meeting_date = check_meeting_date(meeting_date)
        filename = client_filename(filename)
        if self._active() >= self.max_queue:
            raise self._full()
        job_id = secrets.token_urlsafe(16)
        try:
            temp = write_temp(self._transcripts_fd, job_id, bytes(data), 0o600)
            os.rename(temp, job_id, src_dir_fd=self._transcripts_fd, dst_dir_fd=self._transcripts_fd)
            fsync_dir(self._transcripts_fd)
        except OSError as e:
            raise self._db.error(e, "cannot store the transcript") from None
        now = time.time()
        try:
            with self._db.tx() as db:
                active = db.execute("SELECT COUNT(*) FROM serve_jobs WHERE status IN "
                                    "('pending', 'running')").fetchone()[0]
                if active >= self.max_queue:  # another thread's submit took the last place
                    raise self._full()
                db.execute("INSERT INTO serve_jobs (id, status, filename, input_format, options, "
                           "meeting_date, webhook, created_at) VALUES (?, 'pending', ?, ?, ?, ?, ?, ?)",
                           (job_id, filename, input_format, strict_dumps(options.to_dict()),
                            meeting_date, webhook, now))
                return self._one(db, job_id)
        except BaseException:
            unlink_quietly(self._transcripts_fd, job_id)
            raise

    def _active(self) -> int:
        return self._db.query("SELECT COUNT(*) FROM serve_jobs WHERE status IN "
                           "('pending', 'running')")[0][0]

    def _full(self) -> QueueFullError:
        return QueueFullError(f"{self.state_dir}: the queue is full ({self.max_queue} jobs "
                              "pending or running); retry later, or raise the queue limit")

    def get(self, job_id: str) -> ServeJob | None:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM serve_jobs WHERE id=?", (str(job_id),))
        return ServeJob.from_row(rows[0]) if rows else None

    def list(self, *, limit: int = 50, offset: int = 0) -> list[ServeJob]:
        """Newest first."""
        rows = self._db.query(f"SELECT {_COLUMNS} FROM serve_jobs ORDER BY seq DESC LIMIT ? OFFSET ?",
                           (max(0, int(limit)), max(0, int(offset))))
        return [ServeJob.from_row(r) for r in rows]

    def count(self) -> int:
        return self._db.query("SELECT COUNT(*) FROM serve_jobs")[0][0]

    def counts(self) -> dict[str, int]:
        found = dict(self._db.query("SELECT status, COUNT(*) FROM serve_jobs GROUP BY status"))
        return {status: found.get(status, 0) for status in SERVE_STATUSES}

    def delete(self, job_id: str) -> bool:
        """Forget a job and its files. A running job finishes, but its result is thrown away:
        finish() and fail() find no row."""
        with self._db.lock:  # with finish(): its outputs are written, then kept or removed, whole
            with self._db.tx() as db:
                gone = db.execute("DELETE FROM serve_jobs WHERE id=?", (str(job_id),)).rowcount == 1
            if gone:
                self._remove_files(job_id)
        return gone

    def _remove_files(self, job_id: str) -> None:
        unlink_quietly(self._transcripts_fd, job_id)
        for name in output_names(job_id, SERVE_FORMATS).values():
            self._outputs.remove(name)

    def claim_next(self) -> ServeJob | None:
        """Take the oldest pending job: it is `running` (runs + 1) when this returns."""
        with self._db.tx() as db:
            row = db.execute("SELECT id FROM serve_jobs WHERE status='pending' ORDER BY seq "
                             "LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE serve_jobs SET status='running', runs=runs+1, started_at=?, "
                       "error=NULL WHERE id=?", (time.time(), row[0]))
            return self._one(db, row[0])

    def finish(self, job_id: str, summary) -> ServeJob | None:
        """Write the job's outputs (durably), then commit it `done`. None when the job was
        deleted meanwhile: its outputs are removed again."""
        job = self.get(job_id)
        if job is None or job.status != "running":
            return None
        write_summary(summary, self._outputs, job_id, SERVE_FORMATS, source_key=job.filename)
        now = time.time()
        with self._db.lock, self._db.tx() as db:
            done = db.execute("UPDATE serve_jobs SET status='done', finished_at=?, "
                              "seconds=? - COALESCE(started_at, ?), error=NULL "
                              "WHERE id=? AND status='running'", (now, now, now, job_id)).rowcount
            if not done:
                self._remove_files(job_id)
                return None
            return self._one(db, job_id)

    def fail(self, job_id: str, reason: str) -> ServeJob | None:
        """Commit a running job `failed` with a one-line reason; None when it was deleted."""
        reason = " ".join(str(reason).split()) or "failed"
        now = time.time()
        with self._db.tx() as db:
            if not db.execute("UPDATE serve_jobs SET status='failed', finished_at=?, "
                              "seconds=? - COALESCE(started_at, ?), error=? "
                              "WHERE id=? AND status='running'",
                              (now, now, now, reason, job_id)).rowcount:
                return None
            return self._one(db, job_id)

    def mark_announced(self, job_id: str) -> None:
        """The job's end is in the webhook outbox (or there was nobody to tell)."""
        with self._db.tx() as db:
            db.execute("UPDATE serve_jobs SET announced=1 WHERE id=?", (job_id,))

    def unannounced(self) -> list[ServeJob]:
        """Jobs that ended but whose end never reached the outbox: a kill between a job's
        commit and its webhook's. Announced again at start-up, under the same event ids."""
        rows = self._db.query(f"SELECT {_COLUMNS} FROM serve_jobs WHERE status IN ('done', 'failed') "
                              "AND announced=0 ORDER BY seq")
        return [ServeJob.from_row(r) for r in rows]

    def record(self, job_id: str) -> dict | None:
        """A done job's JSON record, as `sumctl summarize` writes it; None otherwise."""
        job = self.get(job_id)
        if job is None or job.status != "done":
            return None
        return self._outputs.read_record(output_names(job.id, SERVE_FORMATS)["json"])

    def markdown(self, job_id: str) -> str | None:
        job = self.get(job_id)
        if job is None or job.status != "done":
            return None
        try:
            return self._outputs.path(output_names(job.id, SERVE_FORMATS)["md"]).read_text(
                encoding="utf-8")
        except OSError:
            return None

    def requeue_interrupted(self) -> int:
        """At start-up: jobs left `running` by a killed server go back to pending."""
        with self._db.tx() as db:
            return db.execute("UPDATE serve_jobs SET status='pending' "
                              "WHERE status='running'").rowcount

    def purge(self, older_than_seconds: float) -> int:
        """Retention: forget done and failed jobs that finished more than this long ago,
        with their files. Returns how many."""
        cutoff = time.time() - older_than_seconds
        with self._db.lock:
            with self._db.tx() as db:
                ids = [r[0] for r in db.execute(
                    "SELECT id FROM serve_jobs WHERE status IN ('done', 'failed') "
                    "AND finished_at < ?", (cutoff,))]
                db.executemany("DELETE FROM serve_jobs WHERE id=?", [(i,) for i in ids])
            for job_id in ids:
                self._remove_files(job_id)
        return len(ids)
