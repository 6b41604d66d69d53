"""Signed webhooks, delivered at least once, for `sumctl serve` and `sumctl watch --webhook`.

Each event is POSTed as JSON, `{"id", "type", "created", "data"}`, with two headers:
- `Sumctl-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`, Stripe's
  scheme: the receiver recomputes it over the raw body (`verify` below) and refuses a stale t,
  so a captured request cannot be replayed later;
- `Sumctl-Event-Id`: the same on every retry of one event, so a receiver that saw it already
  (our retry after its slow 2xx) can drop the copy.

An event is written to an outbox (SQLite, WAL) before `enqueue` returns, and leaves it only
when a receiver answered 2xx, or after `give_up_after` seconds of failures: a receiver that is
down, a redirect, a 500 or a kill of sumctl itself only delays it. Retries back off
exponentially, up to `max_backoff`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import os
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from sumctl.runtime.errors import SumctlError, first_line
from sumctl.runtime.fsutil import os_error_hint
from sumctl.runtime.jsonout import strict_dumps
from sumctl.runtime.durable import DurableDb

log = logging.getLogger("sumctl.webhooks")

SIGNATURE_HEADER = "Sumctl-Signature"
EVENT_ID_HEADER = "Sumctl-Event-Id"
SECRET_ENV = "SUMCTL_WEBHOOK_SECRET"
WEBHOOK_EVENTS = ("job.done", "job.failed")
OUTBOX_SCHEMA_VERSION = 1

_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS events_due ON events (next_at);
"""


def check_webhook_url(url: str, *, option: str = "--webhook") -> str:
    """The URL as given, if it is an absolute http(s) URL with a host; else a SumctlError."""
    parsed = urllib.parse.urlsplit(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SumctlError(f"{option} {url!r}: not an http:// or https:// URL with a host "
                          "(e.g. https://hooks.example.com/sumctl)")
    return url


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The Sumctl-Signature header's value for `body`, sent at `timestamp` (default: now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance: float = 300,
           now: float | None = None) -> bool:
    """Whether `header` signs exactly `body` with `secret`, at a time within `tolerance`
    seconds of `now`. Any v1 may match (a sender may sign with an old and a new secret)."""
    t, macs = None, []
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            t = int(value)
        elif key == "v1":
            macs.append(value)
    now = time.time() if now is None else now
    if t is None or not macs or abs(now - t) > tolerance:
        return False
    expected = sign(secret, body, t).partition(",v1=")[2]
    # No short cut on the first match: each comparison takes the same time.
    return sum(hmac.compare_digest(expected, mac) for mac in macs) > 0


def load_or_create_secret(path: Path, given: str | None = None) -> str:
    """The signing secret: `given`, else $SUMCTL_WEBHOOK_SECRET, else the one kept at `path`
    (made once, 0600, so a restarted sender signs as before)."""
    for secret in (given, os.environ.get(SECRET_ENV)):
        if secret and secret.strip():
            return secret.strip()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o600)
        except FileExistsError:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                secret = os.read(fd, 4096).decode("utf-8", "replace").strip()
            finally:
                os.close(fd)
            if not secret:
                raise SumctlError(f"{path}: the webhook secret file is empty; delete it to make "
                                  f"a new one, or pass --webhook-secret") from None
            return secret
        secret = secrets.token_hex(32)
        try:
            os.write(fd, f"{secret}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return secret
    except OSError as e:
        raise SumctlError(f"{path}: cannot keep the webhook secret there ({os_error_hint(e)}); "
                          f"pass --webhook-secret or set {SECRET_ENV}") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is not a delivery: urllib would replay a POST as a bodiless GET."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class WebhookOutbox:
    """Durable, signed, retried webhook delivery (see the module docstring).

    Args:
        db_path: the outbox database; undelivered events in it are sent after a restart.
        secret: the HMAC key (load_or_create_secret).
        timeout: seconds one POST may take.
        backoff, max_backoff: the first retry waits `backoff` seconds, each next one twice as
            long, at most `max_backoff`.
        give_up_after: an event still undelivered this long after it was made is dropped
            (logged), so a receiver gone for good does not grow the outbox for ever.
    """

    def __init__(self, db_path: Path, secret: str, *, timeout: float = 10, backoff: float = 1.0,
                 max_backoff: float = 300, give_up_after: float = 86400):
        if not secret:
            raise SumctlError("webhook secret: empty (pass --webhook-secret, or let sumctl make one)")
        self.path = Path(db_path)
        self.secret = secret
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.give_up_after = give_up_after
        self._send_lock = threading.Lock()  # one pass at a time: never two POSTs of one event
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._opener = urllib.request.build_opener(_NoRedirects)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SumctlError(f"{self.path.parent}: cannot create the webhook outbox's folder "
                              f"({os_error_hint(e)})") from None
        # An event acknowledged by enqueue must survive a power cut, not only a kill.
        self._db = DurableDb(self.path, _OUTBOX_SCHEMA, OUTBOX_SCHEMA_VERSION,
                             what="webhook outbox", fix="make it and its folder writable")

    def enqueue(self, url: str, event: str, payload: dict, *, event_id: str | None = None) -> str:
        """Store one event for `url`, durably; returns its id (the Sumctl-Event-Id). An
        `event_id` names the event for good: enqueued again (after a crash, say), it is stored
        once, and a receiver that already has it drops the repeat by its id."""
        check_webhook_url(url)
        if event not in WEBHOOK_EVENTS:
            raise SumctlError(f"webhook event {event!r}: unknown (use one of "
                              f"{', '.join(WEBHOOK_EVENTS)})")
        event_id = event_id or f"evt_{secrets.token_urlsafe(16)}"
        created = time.time()
        body = strict_dumps({"id": event_id, "type": event, "created": created, "data": payload},
                            ensure_ascii=False).encode("utf-8")
        self._write("INSERT OR IGNORE INTO events (id, url, body, created, next_at) "
                    "VALUES (?, ?, ?, ?, ?)", (event_id, url, body, created, created))
        self._wake.set()
        return event_id

    def _write(self, sql: str, args: tuple) -> None:
        with self._db.tx() as db:
            db.execute(sql, args)

    def pending(self) -> int:
        return self._db.query("SELECT COUNT(*) FROM events")[0][0]

    def next_due(self) -> float | None:
        return self._db.query("SELECT MIN(next_at) FROM events")[0][0]

    def deliver_due(self, *, until: float | None = None) -> int:
        """POST every event that is due, once; returns how many were delivered. With `until`
        (a time.monotonic() value), no POST starts after it."""
        delivered = 0
        with self._send_lock:
            now = time.time()
            for event_id, url, body, created, attempts in self._db.query(
                    "SELECT id, url, body, created, attempts FROM events WHERE next_at <= ? "
                    "ORDER BY next_at, created", (now,)):
                if self._stopping.is_set() and threading.current_thread() is self._thread:
                    break  # stop() makes its own final pass
                if until is not None and time.monotonic() >= until:
                    break
                error = self._post(event_id, url, body)
                if error is None:
                    self._write("DELETE FROM events WHERE id=?", (event_id,))
                    delivered += 1
                    continue
                now = time.time()
                if now - created >= self.give_up_after:
                    log.warning("webhook %s to %s: giving up after %d attempt(s) (%s)", event_id,
                                url, attempts + 1, error)
                    self._write("DELETE FROM events WHERE id=?", (event_id,))
                    continue
                wait = min(self.backoff * 2 ** attempts, self.max_backoff)
                log.info("webhook %s to %s failed (%s); retrying in %.0f s", event_id, url, error,
                         wait)
                self._write("UPDATE events SET attempts=?, next_at=?, last_error=? WHERE id=?",
                          (attempts + 1, now + wait, error, event_id))
        return delivered

    def _post(self, event_id: str, url: str, body: bytes) -> str | None:
        """None if the receiver took it (2xx), else why not, in one line."""
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "sumctl-webhooks",
            EVENT_ID_HEADER: event_id, SIGNATURE_HEADER: sign(self.secret, body)})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(1 << 16)
                status = response.status
        except urllib.error.HTTPError as e:
            return f"HTTP {e.code}"
        except (OSError, ValueError, http.client.HTTPException) as e:
            # Refused, reset, timed out, a bad host name, or an answer that is not HTTP.
            return first_line(getattr(e, "reason", None) or e)
        return None if 200 <= status < 300 else f"HTTP {status}"

    def start(self) -> None:
        """Deliver in a daemon thread until stop(): everything undelivered, then each new event."""
        if self._thread is not None:
            return
        # A restart owes the receiver everything undelivered now, not after the backoff a
        # dead process chose: a receiver that came back meanwhile hears at once.
        now = time.time()
        self._write("UPDATE events SET next_at=? WHERE next_at > ?", (now, now))
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="sumctl-webhooks", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before the pass: an enqueue during it wakes the next wait
            try:
                self.deliver_due()
                due = self.next_due()
            except Exception as e:  # the thread must outlive any one bad pass (logged)
                log.error("webhook delivery: %s", first_line(e))
                due = None
            wait = 5.0 if due is None else min(5.0, max(0.0, due - time.time()))
            self._wake.wait(wait)

    def stop(self) -> None:
        """Stop the thread, make one last pass over what is due, and close the database;
        what is still undelivered stays for the next start."""
        if self._thread is not None:
            self._stopping.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        if self._db.closed:
            return
        try:
            # Bounded: a receiver that swallows requests must not hold up a shutdown for
            # `timeout` seconds per event.
            self.deliver_due(until=time.monotonic() + self.timeout)
        except SumctlError as e:
            log.error("%s", e)
        self._db.close()
