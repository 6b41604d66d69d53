"""The watcher's durable job store: one SQLite database (WAL mode), one transaction per change.

A job is keyed by (content sha256, model bundle hash, variant), never by path, where the
variant is SummaryOptions.variant(): the length and whatever else changes what is written. So:
- a file is summarized exactly once, across restarts (its key is `done`);
- an edited file is a new key, so it is summarized again;
- a renamed or copied file is the same key: it is not summarized again, only its path recorded.

A job's life: pending -> running -> done, or -> failed (with the reason, the attempt count and
the time of the next retry, backing off; after `max_attempts` it is left alone until the
content, hence the key, changes). A job found `running` at start-up was interrupted (kill -9,
power loss) and goes back to pending: outputs are written atomically before `done` is
committed, so redoing it can only replace a summary with an identical one.

Durability. A process crash (kill -9, OOM kill) loses no commit: WAL writes are in the OS
before COMMIT returns. Against power cuts, job commits do not fsync one by one (WAL,
synchronous=NORMAL): the watcher calls `heartbeat()` at most once a second, a FULL commit
that makes everything before it durable, and sessions start and stop with one. So a power
cut can roll back at most the last second of state changes: those jobs run again and rewrite
identical outputs. It can never leave a job `done` whose summary is missing, because outputs
are fsynced before their job is committed. One fsync per job instead of one per commit is
most of the watcher's per-file overhead on disks where an fsync costs milliseconds.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sumctl.runtime.durable import DurableDb, own_folder
from sumctl.runtime.errors import StateError, SumctlError
from sumctl.runtime.fsutil import os_error_hint
from sumctl.runtime.jsonout import strict_dumps

# 2: the jobs' and sessions' `length` column is `variant`, which is what it always held (the
# length, then `+minutes:...`, `+keep-fillers`). Reading it as a length was a real bug, so the
# name changed; a version-1 database is renamed in place on first open, its rows as they were.
SCHEMA_VERSION = 2
STATE_DIR = ".sumctl"
STATE_NAME = "state.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    model TEXT NOT NULL,
    variant TEXT NOT NULL,
    path TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    next_retry REAL,
    outputs TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    seconds REAL,
    model_seconds REAL,
    UNIQUE (sha256, model, variant)
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refusals (
    path TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    root TEXT NOT NULL,
    model TEXT NOT NULL,
    variant TEXT NOT NULL,
    started_at REAL NOT NULL,
    stopped_at REAL,
    recovered INTEGER NOT NULL DEFAULT 0,
    beat_at REAL
);
"""


class JobStatus(StrEnum):
    """A job's place in its life; stored as these strings in the jobs table."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ClaimDecision(StrEnum):
    """What to do with a file's content once its job is looked up (see Claim)."""

    RUN = "run"
    DONE = "done"
    BUSY = "busy"
    WAIT = "wait"
    GAVE_UP = "gave_up"


@dataclass(frozen=True)
class Job:
    id: int
    sha256: str
    model: str
    variant: str
    path: str
    status: JobStatus
    attempts: int
    runs: int
    error: str | None
    next_retry: float | None
    finished_at: float | None

    def __post_init__(self):
        object.__setattr__(self, "status", JobStatus(self.status))  # a row holds the plain string

    def gave_up(self, max_attempts: int) -> bool:
        return self.status == JobStatus.FAILED and self.attempts >= max_attempts


@dataclass(frozen=True)
class Claim:
    """What to do with a file's content: `run` it (the job is now ours, status running), or
    not: `done` (already summarized), `busy` (another worker has it), `wait` (failed, next
    retry later), `gave_up` (failed max_attempts times; waits for the content to change)."""

    decision: ClaimDecision
    job: Job


_JOB_COLUMNS = "id, sha256, model, variant, path, status, attempts, runs, error, next_retry, finished_at"


def default_state_path(folder: Path) -> Path:
    return Path(folder) / STATE_DIR / STATE_NAME


def file_signature(st: os.stat_result) -> tuple[int, int, int, int]:
    """What must match for a cached hash to still describe the file. ctime is in it because
    utime() can fake an mtime, but any write moves ctime."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def retry_at(attempts: int, max_attempts: int, backoff_seconds: float, now: float) -> float | None:
    """When a job that failed `attempts` times is tried again: backoff * 4^(attempt-1), at most
    a day later; None once it has had max_attempts."""
    if attempts >= max_attempts:
        return None
    return now + min(backoff_seconds * 4 ** (attempts - 1), 86_400.0)


def _migrate(db, found: int) -> None:
    """A state written by an older sumctl: schema 1 named the variant `length`."""
    if found == 1:
        for table in ("jobs", "sessions"):
            db.execute(f"ALTER TABLE {table} RENAME COLUMN length TO variant")


class State:
    """Thread-safe: one connection, a lock around each operation (the operations are tiny)."""

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False):
        self.path = Path(path)
        self._lock_file: int | None = None
        if readonly and not self.path.is_file():
            raise SumctlError(f"{self.path}: no watch state here (run `sumctl watch` on the "
                              "folder first, or pass --state)")
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StateError(f"{self.path.parent}: cannot create the watch state's folder "
                                 f"({os_error_hint(e)}); pass another --state PATH") from None
        self._store = DurableDb(self.path, _SCHEMA, SCHEMA_VERSION, what="watch state",
                                fix="make it and its folder writable, or pass another --state PATH",
                                group_commit=True, readonly=readonly, migrate=_migrate)
        # `sumctl status` reads a state as it is, migrated or not: it never writes.
        self._variant_column = "variant"
        if readonly and self._query("PRAGMA user_version")[0][0] == 1:
            self._variant_column = "length"

    @property
    def unsynced(self) -> bool:
        """Whether a commit has been made since the last durable one (heartbeat makes one)."""
        return self._store.unsynced

    # --- plumbing -------------------------------------------------------------------------

    def _tx(self, *, durable: bool = False):
        """One write transaction (DurableDb.tx): `durable` fsyncs at commit, which also makes
        every earlier commit durable. SQLite's errors leave as StateError."""
        return self._store.tx(durable=durable)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._store.query(sql, args)

    def close(self) -> None:
        with self._store.lock:
            self._store.close()
            if self._lock_file is not None:
                os.close(self._lock_file)
                self._lock_file = None

    def acquire(self) -> None:
        """Refuse a second watcher on the same state: two would race for the same outputs.
        An flock dies with its process, so a kill -9 leaves nothing stale behind."""
        self._lock_file = own_folder(
            self.path.parent, self.path.name + ".lock",
            f"{self.path}: another `sumctl watch` (pid {{pid}}) is using this state; stop it "
            "first, or pass another --state", mode=0o644)

    def holder(self) -> int | None:
        """The pid of the watcher that holds this state now, or None."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        finally:
            os.close(fd)
        return None

    # --- sessions and recovery ---------------------------------------------------------------

    def start_session(self, root: str, model: str, variant: str) -> tuple[int, int]:
        """Record a watcher start; jobs left `running` by a dead one go back to pending.
        Returns (session id, jobs recovered)."""
        now = time.time()
        with self._tx(durable=True) as db:
            recovered = db.execute("UPDATE jobs SET status='pending', updated_at=? "
                                   "WHERE status='running'", (now,)).rowcount
            db.execute("UPDATE sessions SET stopped_at=COALESCE(stopped_at, ?) "
                       "WHERE stopped_at IS NULL", (now,))
            cur = db.execute("INSERT INTO sessions (pid, root, model, variant, started_at, recovered) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (os.getpid(), root, model, variant, now,
                                                           recovered))
        return cur.lastrowid, recovered

    def stop_session(self, session: int) -> None:
        with self._tx(durable=True) as db:
            db.execute("UPDATE sessions SET stopped_at=? WHERE id=?", (time.time(), session))

    def heartbeat(self, session: int) -> None:
        """A durable commit: every state change before it survives a power cut. It also tells
        `sumctl status` when the watcher was last alive."""
        with self._tx(durable=True) as db:
            db.execute("UPDATE sessions SET beat_at=? WHERE id=?", (time.time(), session))

    def reset_failed(self, model: str, variant: str) -> int:
        """Give every failed job a fresh set of attempts (after fixing a model or raising a cap)."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET attempts=0, next_retry=NULL, updated_at=? "
                              "WHERE status='failed' AND model=? AND variant=?",
                              (time.time(), model, variant)).rowcount

    def pending_paths(self, model: str, variant: str) -> list[str]:
        return [r[0] for r in self._query(
            "SELECT path FROM jobs WHERE status IN ('pending', 'running') AND model=? AND variant=?",
            (model, variant))]

    # --- the hash cache -----------------------------------------------------------------------

    def cached_hash(self, path: str, st: os.stat_result) -> str | None:
        rows = self._query("SELECT size, mtime_ns, ctime_ns, inode, sha256 FROM files WHERE path=?",
                           (path,))
        if rows and tuple(rows[0][:4]) == file_signature(st):
            return rows[0][4]
        return None

    def remember_hash(self, path: str, st: os.stat_result, sha256: str) -> None:
        with self._tx(durable=False) as db:
            self._remember(db, path, st, sha256)

    @staticmethod
    def _remember(db: sqlite3.Connection, path: str, st: os.stat_result, sha256: str) -> None:
        db.execute("INSERT OR REPLACE INTO files (path, size, mtime_ns, ctime_ns, inode, sha256, "
                   "seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (path, *file_signature(st), sha256, time.time()))

    def forget_file(self, path: str) -> None:
        with self._tx(durable=False) as db:
            db.execute("DELETE FROM files WHERE path=?", (path,))

    # --- jobs ---------------------------------------------------------------------------------

    def job(self, sha256: str, model: str, variant: str) -> Job | None:
        rows = self._query(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE sha256=? AND model=? AND variant=?",
                           (sha256, model, variant))
        return Job(*rows[0]) if rows else None

    def job_by_id(self, job_id: int) -> Job | None:
        rows = self._query(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,))
        return Job(*rows[0]) if rows else None

    def jobs(self) -> list[Job]:
        return [Job(*r) for r in self._query(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY id")]

    def claim(self, sha256: str, model: str, variant: str, path: str, *, max_attempts: int,
              now: float | None = None, st: os.stat_result | None = None) -> Claim:
        """Decide, atomically, whether this content must be summarized now, and if so take it.
        With `st`, the file's hash is cached in the same transaction."""
        now = time.time() if now is None else now
        with self._tx(durable=False) as db:
            if st is not None:
                self._remember(db, path, st, sha256)
            row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE sha256=? AND model=? AND variant=?",
                             (sha256, model, variant)).fetchone()
            if row is None:
                cur = db.execute(
                    "INSERT INTO jobs (sha256, model, variant, path, status, created_at, updated_at, "
                    "started_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                    (sha256, model, variant, path, now, now, now))
                self._supersede(db, path, cur.lastrowid)
                return Claim(ClaimDecision.RUN, self._reload(db, cur.lastrowid))
            job = Job(*row)
            self._supersede(db, path, job.id)
            if job.path != path:
                # Same content under a new name: a rename, or a copy. Remember where it is now.
                db.execute("UPDATE jobs SET path=?, updated_at=? WHERE id=?", (path, now, job.id))
            if job.status == JobStatus.DONE:
                return Claim(ClaimDecision.DONE, job)
            if job.status == JobStatus.RUNNING:
                return Claim(ClaimDecision.BUSY, job)
            if job.status == JobStatus.FAILED:
                if job.attempts >= max_attempts:
                    return Claim(ClaimDecision.GAVE_UP, job)
                if job.next_retry is not None and job.next_retry > now:
                    return Claim(ClaimDecision.WAIT, job)
            db.execute("UPDATE jobs SET status='running', path=?, started_at=?, updated_at=? "
                       "WHERE id=?", (path, now, now, job.id))
            return Claim(ClaimDecision.RUN, self._reload(db, job.id))

    def finish(self, job_id: int, *, outputs: list[str], seconds: float,
               model_seconds: float) -> bool:
        """Mark a claimed job done. False if it was no longer ours (abandoned at shutdown)."""
        now = time.time()
        with self._tx() as db:
            return db.execute(
                "UPDATE jobs SET status='done', runs=runs+1, error=NULL, next_retry=NULL, "
                "outputs=?, finished_at=?, updated_at=?, seconds=?, model_seconds=? "
                "WHERE id=? AND status='running'",
                (strict_dumps(outputs), now, now, seconds, model_seconds, job_id)).rowcount == 1

    def fail(self, job_id: int, reason: str, *, max_attempts: int, backoff_seconds: float,
             now: float | None = None) -> Job | None:
        """Record a failed attempt. The next retry waits backoff * 4^(attempt-1), at most a day;
        after max_attempts there is none (next_retry NULL) until the content changes."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute("SELECT attempts, status FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None or row[1] != JobStatus.RUNNING:
                return None
            attempts = row[0] + 1
            next_retry = retry_at(attempts, max_attempts, backoff_seconds, now)
            db.execute("UPDATE jobs SET status='failed', attempts=?, error=?, next_retry=?, "
                       "finished_at=?, updated_at=?, seconds=? WHERE id=?",
                       (attempts, reason, next_retry, now, now, None, job_id))
            return self._reload(db, job_id)

    def requeue_orphans(self, held: set[int]) -> int:
        """Jobs left `running` by this watcher's own failed writes (a full disk) go back to
        pending; `held` are the ones a worker is still on."""
        marks = ",".join("?" * len(held))
        with self._tx(durable=True) as db:
            return db.execute(f"UPDATE jobs SET status='pending', updated_at=? WHERE "
                              f"status='running' AND id NOT IN ({marks})",
                              (time.time(), *held)).rowcount

    def release(self, job_id: int) -> bool:
        """Give back a claimed job that was abandoned: it stays pending, redone next start."""
        with self._tx(durable=True) as db:
            return db.execute("UPDATE jobs SET status='pending', updated_at=? "
                              "WHERE id=? AND status='running'", (time.time(), job_id)).rowcount == 1

    def refuse(self, path: str, reason: str) -> None:
        with self._tx(durable=False) as db:
            db.execute("INSERT OR REPLACE INTO refusals (path, reason, at) VALUES (?, ?, ?)",
                       (path, reason, time.time()))

    @staticmethod
    def _supersede(db: sqlite3.Connection, path: str, current: int) -> None:
        """What a path holds now replaces what it held before: an old content's failure (an
        emptied file refilled, an unreadable one made readable) or its job that a kill left
        pending. `status` counts files as they are, not their past."""
        db.execute("DELETE FROM jobs WHERE path=? AND status IN ('failed', 'pending') AND id!=?",
                   (path, current))

    @staticmethod
    def _reload(db: sqlite3.Connection, job_id: int) -> Job:
        return Job(*db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone())

    # --- reporting ----------------------------------------------------------------------------

    def report(self, *, max_attempts: int | None = None, errors: int = 10,
               now: float | None = None) -> dict:
        """Counts, last errors and throughput, for `sumctl status`."""
        now = time.time() if now is None else now
        counts = dict(self._query("SELECT status, COUNT(*) FROM jobs GROUP BY status"))
        retrying = self._query("SELECT COUNT(*) FROM jobs WHERE status='failed' "
                               "AND next_retry IS NOT NULL")[0][0]
        failed_total = counts.get("failed", 0)
        last_errors = [
            {"path": p, "error": e, "attempts": a, "next_retry": r, "at": t}
            for p, e, a, r, t in self._query(
                "SELECT path, error, attempts, next_retry, finished_at FROM jobs "
                "WHERE status='failed' ORDER BY finished_at DESC LIMIT ?", (errors,))
        ]
        refusals = [{"path": p, "reason": r, "at": t} for p, r, t in self._query(
            "SELECT path, reason, at FROM refusals ORDER BY at DESC LIMIT ?", (errors,))]
        refused_total = self._query("SELECT COUNT(*) FROM refusals")[0][0]

        def window(seconds: float) -> dict:
            n, busy, model = self._query(
                "SELECT COUNT(*), COALESCE(SUM(seconds), 0), COALESCE(SUM(model_seconds), 0) "
                "FROM jobs WHERE status='done' AND finished_at >= ?", (now - seconds,))[0]
            return {"done": n, "per_hour": round(n * 3600 / seconds, 2),
                    "mean_seconds": round(busy / n, 4) if n else None,
                    "mean_model_seconds": round(model / n, 4) if n else None}

        first, last = self._query("SELECT MIN(finished_at), MAX(finished_at) FROM jobs "
                                  "WHERE status='done'")[0]
        sessions = self._query(f"SELECT pid, started_at, stopped_at, recovered, model, "
                               f"{self._variant_column}, beat_at FROM sessions ORDER BY id DESC LIMIT 1")
        return {
            "state": str(self.path),
            "running_pid": self.holder(),
            "counts": {"done": counts.get("done", 0), "pending": counts.get("pending", 0),
                       "running": counts.get("running", 0), "failed": failed_total,
                       "retrying": retrying, "gave_up": failed_total - retrying,
                       "refused": refused_total},
            "last_errors": last_errors,
            "refusals": refusals,
            "throughput": {"last_hour": window(3600), "last_day": window(86_400),
                           "first_done_at": first, "last_done_at": last},
            "last_session": (dict(zip(("pid", "started_at", "stopped_at", "recovered", "model",
                                       "variant", "beat_at"), sessions[0])) if sessions else None),
        }
