"""What sumctl's durable state shares (the watcher's job store, the serve job store, the webhook
outbox): a SQLite database in WAL mode whose commits survive a process crash, written one
IMMEDIATE transaction at a time, and a folder that one process owns at a time.

The serve store and the outbox answer a client ("queued", "sent") on the strength of a commit,
so each of their commits is fsynced (synchronous=FULL): one per request or event, never a burst
that group commit would pay off for. The watcher's commits come in bursts, so it commits with
`group_commit` and fsyncs once a second (runtime/watch/state.py says why that is safe).
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from sumctl.runtime.errors import StateError, StateLockedError, SumctlError
from sumctl.runtime.fsutil import is_disk_full, os_error_hint


class DurableDb:
    """One connection shared by threads, one lock around each use; every failure is a one-line
    StateError that names the file (`what` says whose it is: "serve state", "webhook outbox").

    `group_commit`: commits are not fsynced one by one (synchronous=NORMAL) unless a transaction
    asks (`tx(durable=True)`), which makes every earlier commit durable too; `unsynced` says
    whether a commit has been made since the last durable one. `readonly`: the database as it
    is, never written nor migrated (`sumctl status`). `migrate(db, found_version)` runs in the
    schema's transaction, before the schema, on a database written by an older sumctl."""

    def __init__(self, path: Path, schema: str, version: int, *, what: str, fix: str,
                 group_commit: bool = False, readonly: bool = False,
                 migrate: Callable[[sqlite3.Connection, int], None] | None = None):
        self.path = Path(path)
        self.what = what
        self.fix = fix
        self.lock = threading.RLock()
        self.group_commit = group_commit
        self.unsynced = False
        self._synchronous = "NORMAL" if group_commit else "FULL"
        self._db: sqlite3.Connection | None = None
        try:
            # Not mode=ro for a reader: a WAL database's reader may need to create the -shm file.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=10 if readonly else 30)
            self._db.execute("PRAGMA busy_timeout=10000")
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={self._synchronous}")
        except (OSError, sqlite3.Error) as e:
            self.close()
            raise self.error(e, f"cannot open the {what}") from None
        if not readonly:
            try:
                self._create(schema, version, migrate)
            except BaseException:
                self.close()
                raise

    def _create(self, schema: str, version: int, migrate) -> None:
        with self.tx() as db:
            found = db.execute("PRAGMA user_version").fetchone()[0]
            if found > version:
                raise SumctlError(f"{self.path}: written by a newer sumctl ({self.what} schema "
                                  f"{found}); upgrade sumctl")
            if migrate is not None and found:
                migrate(db, found)
            for statement in filter(str.strip, schema.split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={version}")

    def error(self, e: BaseException, doing: str) -> StateError:
        """A full disk keeps its errno, so a caller can wait for space instead of failing."""
        if is_disk_full(e):
            return StateError(f"{self.path}: {doing}: the disk is full (free some space)",
                              errno=errno.ENOSPC)
        detail = os_error_hint(e) if isinstance(e, OSError) else str(e)
        return StateError(f"{self.path}: {doing} ({detail}); {self.fix}")

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            raise StateError(f"{self.path}: the {self.what} is closed")
        return self._db

    @contextmanager
    def tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (IMMEDIATE: a check-then-set cannot interleave
        with another writer, and no read is upgraded to a write); rolled back whole if anything
        in it raises, or if its COMMIT fails, so that the next one can begin. `durable`: under
        group commit, fsync at this commit (every commit is fsynced otherwise)."""
        with self.lock:
            db = self._open()
            try:
                if self.group_commit:
                    mode = "FULL" if durable else "NORMAL"
                    if self._synchronous != mode:
                        db.execute(f"PRAGMA synchronous={mode}")
                        self._synchronous = mode
                    self.unsynced = not durable
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise self.error(e, f"cannot write the {self.what}") from None

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock:
            db = self._open()
            try:
                return db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise self.error(e, f"cannot read the {self.what}") from None

    def close(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def closed(self) -> bool:
        return self._db is None


def own_folder(folder: Path, lock_name: str, busy: str, *, mode: int = 0o600) -> int:
    """Take `folder/lock_name` with an exclusive flock and return its descriptor (close it to
    let go). `busy` is the StateLockedError's message when another process holds it; `{pid}`
    in it is that process's pid. A kill -9 lets go too: an flock dies with its process. `mode`:
    the lock file's, where it is made (readable by others where they ask who holds it)."""
    lock_path = Path(folder) / lock_name
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    except OSError as e:
        raise StateError(f"{lock_path}: cannot open the lock file ({os_error_hint(e)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StateLockedError(busy.format(pid=pid)) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass  # the pid only makes the next one's message better; the flock is what counts
    return fd
