"""Webhooks: Stripe-style signatures, the secret kept 0600, and an outbox that delivers every
event at least once to a real receiver on loopback (which checks each signature), through a
receiver that is down, answers 500 or redirects, and through a restart of the sender."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import stat
import time

import pytest

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.webhooks import (EVENT_ID_HEADER, SIGNATURE_HEADER, WebhookOutbox,
                                     load_or_create_secret, sign, verify)
from serve_runtime_fixtures import unused_port
from watch_fixtures import wait_until

SECRET = "s3cret-for-tests"


def test_the_signature_is_stripes_scheme_and_verify_checks_every_part():
    body = b'{"id": "evt_1"}'
    header = sign(SECRET, body, timestamp=1_700_000_000)
    mac = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={mac}"
    now = 1_700_000_100
    assert verify(SECRET, body, header, now=now)
    assert not verify(SECRET, body + b" ", header, now=now)          # a changed body
    assert not verify("another secret", body, header, now=now)        # another key
    assert not verify(SECRET, body, header, now=now + 301)            # replayed too late
    assert not verify(SECRET, body, header, tolerance=50, now=now)
    assert not verify(SECRET, body, header.replace("t=1700000000", "t=1700000001"), now=now)
    for garbage in ("", "t=,v1=", "v1=" + mac, "t=1700000000", "nonsense"):
        assert not verify(SECRET, body, garbage, now=now)
    # A sender rolling its secret signs with both: either v1 may match.
    assert verify(SECRET, body, f"t=1700000000,v1={'0' * 64},v1={mac}", now=now)


def test_the_secret_is_made_once_kept_0600_and_a_given_one_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("SUMCTL_WEBHOOK_SECRET", raising=False)
    path = tmp_path / "state" / "webhook-secret"
    made = load_or_create_secret(path)
    assert len(made) == 64 and int(made, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == made  # a restart signs as before
    assert load_or_create_secret(path, "given") == "given"
    monkeypatch.setenv("SUMCTL_WEBHOOK_SECRET", "from-env")
    assert load_or_create_secret(path) == "from-env"
    assert load_or_create_secret(path, "given") == "given"
    monkeypatch.delenv("SUMCTL_WEBHOOK_SECRET")
    path.write_text("\n")
    with pytest.raises(SumctlError, match="webhook-secret: the webhook secret file is empty"):
        load_or_create_secret(path)


def outbox(tmp_path, **kwargs) -> WebhookOutbox:
    return WebhookOutbox(tmp_path / "webhooks.db", SECRET,
                         **{"timeout": 2, "backoff": 0.05, "max_backoff": 0.2, **kwargs})


def test_an_event_is_signed_posted_and_gone_from_the_outbox(tmp_path, signed_receiver):
    receiver = signed_receiver(SECRET)
    box = outbox(tmp_path)
    before = time.time()
    event_id = box.enqueue(receiver.url, "job.done", {"status": "done", "name": "café.vtt"})
    assert box.pending() == 1
    assert box.deliver_due() == 1 and box.pending() == 0
    [got] = receiver.received
    assert got["signed"] and got["id"] == event_id
    assert got["headers"]["Content-Type"] == "application/json"
    assert SIGNATURE_HEADER in got["headers"] and EVENT_ID_HEADER in got["headers"]
    event = got["event"]
    assert event == {"id": event_id, "type": "job.done", "created": event["created"],
                     "data": {"status": "done", "name": "café.vtt"}}
    assert before <= event["created"] <= time.time()
    box.stop()


def test_a_bad_url_or_event_is_refused_and_nothing_is_stored(tmp_path):
    box = outbox(tmp_path)
    for url in ("ftp://example.com/x", "file:///etc/passwd", "example.com/hook", "http://"):
        with pytest.raises(SumctlError, match="not an http:// or https:// URL"):
            box.enqueue(url, "job.done", {})
    with pytest.raises(SumctlError, match="unknown"):
        box.enqueue("http://127.0.0.1:9/", "job.exploded", {})
    assert box.pending() == 0
    box.stop()


def test_a_receiver_that_is_down_then_up_gets_every_event(tmp_path, signed_receiver):
    port = unused_port()
    url = f"http://127.0.0.1:{port}/hook"
    box = outbox(tmp_path)
    ids = [box.enqueue(url, "job.done", {"n": n}) for n in range(3)]
    box.start()
    db = tmp_path / "webhooks.db"

    def failed_attempts() -> int:
        with sqlite3.connect(db) as c:
            return c.execute("SELECT MIN(attempts) FROM events").fetchone()[0] or 0

    wait_until(lambda: failed_attempts() >= 2, 10, "two failed rounds while the receiver is down")
    receiver = signed_receiver(SECRET, port=port)
    wait_until(lambda: box.pending() == 0, 10, "every event delivered once the receiver is up")
    box.stop()
    assert sorted(e["id"] for e in receiver.delivered()) == sorted(ids)
    assert all(r["signed"] for r in receiver.received)


def test_undelivered_events_are_sent_after_a_restart(tmp_path, signed_receiver):
    port = unused_port()
    first = outbox(tmp_path, backoff=600, max_backoff=600)
    event_id = first.enqueue(f"http://127.0.0.1:{port}/hook", "job.failed", {"error": "x"})
    assert first.deliver_due() == 0  # nobody listening: next try in 10 minutes
    first.stop()
    receiver = signed_receiver(SECRET, port=port)
    second = outbox(tmp_path)
    assert second.pending() == 1
    second.start()  # a restart does not wait out the dead process's backoff
    wait_until(lambda: second.pending() == 0, 10, "the event from before the restart")
    second.stop()
    assert [e["id"] for e in receiver.delivered()] == [event_id]


def test_a_500_and_a_redirect_are_retried_with_the_same_event_id(tmp_path, signed_receiver):
    receiver = signed_receiver(SECRET, answers=[500, 302])
    box = outbox(tmp_path, backoff=0.01)
    event_id = box.enqueue(receiver.url, "job.done", {})
    assert box.deliver_due() == 0
    time.sleep(0.03)
    assert box.deliver_due() == 0  # the 302 is not followed, nor taken as delivered
    time.sleep(0.05)
    assert box.deliver_due() == 1
    assert [r["answer"] for r in receiver.received] == [500, 302, 200]
    assert {r["id"] for r in receiver.received} == {event_id}
    assert all(r["signed"] for r in receiver.received)
    box.stop()


def test_retries_back_off_and_an_event_is_dropped_after_give_up_after(tmp_path):
    url = f"http://127.0.0.1:{unused_port()}/hook"
    box = outbox(tmp_path, backoff=10, max_backoff=15)
    box.enqueue(url, "job.done", {})
    assert box.deliver_due() == 0
    assert box.deliver_due() == 0  # not due again for 10 s: nothing sent
    with sqlite3.connect(tmp_path / "webhooks.db") as c:
        attempts, next_at, error = c.execute("SELECT attempts, next_at, last_error FROM events").fetchone()
    assert attempts == 1 and 9 < next_at - time.time() <= 10 and error
    box.stop()
    impatient = outbox(tmp_path, give_up_after=0)
    with sqlite3.connect(tmp_path / "webhooks.db") as c:
        c.execute("UPDATE events SET next_at=0")
    assert impatient.deliver_due() == 0 and impatient.pending() == 0
    impatient.stop()


def test_the_outbox_is_durable_sqlite_wal(tmp_path):
    box = outbox(tmp_path)
    box.enqueue("https://hooks.example.com/x", "job.done", {"a": 1})
    # Read by another connection while the outbox is open: committed, not buffered.
    with sqlite3.connect(tmp_path / "webhooks.db") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA user_version").fetchone()[0] == 1
        (body,) = c.execute("SELECT body FROM events").fetchone()
    assert json.loads(body)["data"] == {"a": 1}
    assert not os.path.exists(tmp_path / "webhook-secret")


def test_an_answer_that_is_not_http_is_a_retry_not_a_crash(tmp_path):
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer_garbage():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        conn.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    box = outbox(tmp_path, backoff=600)
    box.enqueue(f"http://127.0.0.1:{server.getsockname()[1]}/hook", "job.done", {})
    assert box.deliver_due() == 0 and box.pending() == 1
    with sqlite3.connect(tmp_path / "webhooks.db") as c:
        attempts, error = c.execute("SELECT attempts, last_error FROM events").fetchone()
    assert attempts == 1 and "NOT HTTP AT ALL" in error
    box.stop()
    server.close()


def test_a_receiver_that_never_answers_holds_up_stop_for_one_timeout_only(tmp_path):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the backlog; nobody ever answers
    box = outbox(tmp_path, timeout=0.3)
    for n in range(5):
        box.enqueue(f"http://127.0.0.1:{silent.getsockname()[1]}/hook", "job.done", {"n": n})
    started = time.monotonic()
    box.stop()
    assert time.monotonic() - started < 1.0  # five events x 0.3 s unbounded
    silent.close()
    again = outbox(tmp_path)
    assert again.pending() == 5  # kept for the next start
    again.stop()


def test_an_event_named_by_its_caller_is_stored_once(tmp_path, signed_receiver):
    receiver = signed_receiver(SECRET)
    box = outbox(tmp_path)
    first = box.enqueue(receiver.url, "job.done", {"n": 1}, event_id="evt_job1_done")
    again = box.enqueue(receiver.url, "job.done", {"n": 2}, event_id="evt_job1_done")
    assert first == again == "evt_job1_done" and box.pending() == 1
    assert box.deliver_due() == 1
    [got] = receiver.received
    assert got["id"] == "evt_job1_done" and got["event"]["data"] == {"n": 1}
    box.stop()
