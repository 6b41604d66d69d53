"""Fixtures for the serve runtime and webhooks: a job store in a temporary state folder, a real
HTTP receiver on loopback that checks every request's signature, and a free port to start one
on later."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

__all__ = ["SignedReceiver", "signed_receiver", "unused_port", "serve_store", "submit_meeting"]


class SignedReceiver:
    """An HTTP server in a thread that records each POST as a dict (`id`, `event`, `headers`,
    `signed`: whether runtime.webhooks.verify accepts it with `secret`) and answers each with
    the next of `answers` (then 200). A badly signed request gets 401."""

    def __init__(self, secret: str, port: int = 0, answers: list[int] | None = None):
        from sumctl.runtime.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify

        self.secret = secret
        self.answers = list(answers or [])
        self.received: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                signed = verify(receiver.secret, body, self.headers.get(SIGNATURE_HEADER, ""))
                with receiver.lock:
                    answer = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.received.append({
                        "id": self.headers.get(EVENT_ID_HEADER), "signed": signed,
                        "event": json.loads(body), "headers": dict(self.headers),
                        "answer": answer if signed else 401})
                self.send_response(answer if signed else 401)
                if 300 <= answer < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self) -> list[dict]:
        """The events answered 2xx, each as its JSON body."""
        with self.lock:
            return [r["event"] for r in self.received if 200 <= r["answer"] < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def unused_port() -> int:
    """A loopback port nobody listens on now (for a receiver started later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def signed_receiver():
    """signed_receiver(secret, port=0, answers=None) -> a running SignedReceiver, closed after."""
    started: list[SignedReceiver] = []

    def make(secret: str, port: int = 0, answers: list[int] | None = None) -> SignedReceiver:
        receiver = SignedReceiver(secret, port, answers)
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.close()


@pytest.fixture
def serve_store(tmp_path):
    """A JobStore in tmp_path/state, closed after the test."""
    from sumctl.runtime.serve import JobStore

    store = JobStore(tmp_path / "state")
    yield store
    store.close()


def submit_meeting(store, n: int = 0, data: bytes | None = None, **kwargs):
    """Submit meeting_text(n) (or `data`) as `m<n>.txt`, short summaries unless told otherwise."""
    from sumctl.runtime.options import SummaryOptions
    from watch_fixtures import meeting_text

    options = kwargs.pop("options", SummaryOptions(length="short"))
    return store.submit(meeting_text(n).encode() if data is None else data, filename=f"m{n}.txt",
                        options=options, **kwargs)
