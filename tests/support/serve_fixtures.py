"""Fixtures for `sumctl serve`: a real server subprocess on a loopback port, and a real webhook
receiver on another that checks each signature. Nothing here imports httpx or FastAPI at
collection time: the serve extra is optional, and its tests skip without it."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest

from watch_fixtures import WatchProcess, wait_until

__all__ = ["ServeProcess", "serve_process", "WebhookReceiver", "free_port", "serve_stack",
           "STANDUP"]

STANDUP = Path(__file__).resolve().parents[2] / "examples" / "standup.vtt"
_LISTENING = re.compile(r"listening on (http://\S+?:\d+)")


@pytest.fixture(scope="session")
def serve_stack():
    """httpx, and the server's own stack; the tests skip, saying what to install, without them."""
    for module in ("fastapi", "uvicorn", "prometheus_client", "jinja2", "multipart"):
        pytest.importorskip(module, reason=f"{module} is missing: pip install -e '.[serve]'")
    return pytest.importorskip("httpx", reason="httpx is missing: pip install -e '.[serve]'")


def free_port() -> int:
    """A loopback port nobody listens on now (for a receiver that starts later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess(WatchProcess):
    """A real `sumctl serve` subprocess on a free loopback port (its log says which); stderr
    goes to a file. Stopping and killing it are WatchProcess's."""

    def __init__(self, state: Path, model: Path, *args: str, log_path: Path):
        self.state = state
        self.log_path = log_path
        self._log = open(log_path, "ab")
        start = log_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sumctl.cli", "serve", "--port", "0", "--state", str(state),
             "--model", str(model), *map(str, args)],
            stdout=subprocess.DEVNULL, stderr=self._log, stdin=subprocess.DEVNULL,
            env=os.environ.copy())
        self.url = wait_until(lambda: self._listening(start), 60, "`sumctl serve` to listen")

    def _listening(self, start: int) -> str | None:
        text = self.log()[start:]
        if self.proc.poll() is not None:
            raise AssertionError(f"sumctl serve exited ({self.proc.returncode}):\n{text}")
        found = _LISTENING.search(text)
        return found.group(1) if found else None

    def client(self, **kw):
        import httpx

        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), **kw)


@pytest.fixture
def serve_process(tmp_path, serve_stack):
    """Start `sumctl serve` subprocesses; each is killed at the end, if it still runs."""
    with ExitStack() as cleanup:
        def start(state: Path, model: Path, *args: str, log_name: str = "serve.log") -> ServeProcess:
            proc = ServeProcess(state, model, *args, log_path=tmp_path / log_name)
            cleanup.callback(proc.kill)
            return proc

        yield start


class WebhookReceiver:
    """A loopback HTTP receiver that keeps every POST whose Sumctl-Signature verifies with
    `secret` (with runtime.webhooks.verify, as the README tells a receiver to), and answers
    400 to any other. It can start on a port chosen before it listens: a receiver that is
    down, then up."""

    def __init__(self, secret: str, port: int | None = None):
        self.secret = secret
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.events: list[dict] = []
        self.headers: list[dict] = []
        self.refused = 0
        self._server = None
        self._lock = threading.Lock()

    def start(self) -> WebhookReceiver:
        from sumctl.runtime.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify

        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                good = verify(receiver.secret, body, self.headers.get(SIGNATURE_HEADER, ""))
                with receiver._lock:
                    if good:
                        receiver.events.append(json.loads(body))
                        receiver.headers.append({"event_id": self.headers.get(EVENT_ID_HEADER)})
                    else:
                        receiver.refused += 1
                self.send_response(204 if good else 400)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
