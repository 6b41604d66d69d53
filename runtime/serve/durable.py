"""What the serve job store and the webhook outbox share: a SQLite database whose every commit
survives a power cut, and a folder that one process owns at a time.

Both answer a client ("queued", "sent") on the strength of a commit, so each commit is fsynced
(WAL, synchronous=FULL): their commits are one per request or event, never a burst that group
commit would pay off for, as the watcher's are.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sumctl.runtime.errors import StateError, StateLockedError, SumctlError
from sumctl.runtime.fsutil import is_disk_full, os_error_hint


class DurableDb:
    """One connection shared by threads, one lock around each use; every failure is a one-line
    StateError that names the file (`what` says whose it is: "serve state", "webhook outbox")."""

    def __init__(self, path: Path, schema: str, version: int, *, what: str, fix: str):
        self.path = Path(path)
        self.what = what
        self.fix = fix
        self.lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=30)
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
        except (OSError, sqlite3.Error) as e:
            self.close()
            raise self.error(e, f"cannot open the {what}") from None
        try:
            with self.tx() as db:
                found = db.execute("PRAGMA user_version").fetchone()[0]
                if found > version:
                    raise SumctlError(f"{self.path}: written by a newer sumctl ({what} schema "
                                      f"{found}); upgrade sumctl, or {fix}")
                for statement in filter(str.strip, schema.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={version}")
        except BaseException:
            self.close()
            raise

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
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (no deadlock upgrading a read to a write);
        rolled back whole if anything in it raises."""
        with self.lock:
            db = self._open()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.rollback()
                    raise
                db.commit()
            except sqlite3.Error as e:
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


def own_folder(folder: Path, lock_name: str, busy: str) -> int:
    """Take `folder/lock_name` with an exclusive flock and return its descriptor (close it to
    let go). `busy` is the StateLockedError's message when another process holds it; `{pid}`
    in it is that process's pid. A kill -9 lets go too: an flock dies with its process."""
    lock_path = Path(folder) / lock_name
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
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
