"""Acceptance tests of `sumctl serve`: a real server subprocess on loopback, real HTTP clients
(httpx), a real webhook receiver, real signals (SIGKILL). One server is shared by the tests that
only submit and read; the kill, the webhooks and the token each get their own."""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from sumctl.cli.main import cli
from sumctl.runtime.outputs import validate_summary_record
from batch_fixtures import content
from serve_fixtures import STANDUP, ServeProcess, WebhookReceiver
from watch_fixtures import meeting_text, one_line_error, run, wait_until

TOKEN = "t0ken-for-the-tests-0123456789abcdef"
SECRET = "webhook-secret-for-the-tests"
UPLOAD_LIMIT = 1_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, extractive_bundle_dir, serve_stack):
    """One extractive server for every test that only submits and reads."""
    folder = tmp_path_factory.mktemp("serve")
    proc = ServeProcess(folder / "state", extractive_bundle_dir, "--max-upload-bytes",
                        UPLOAD_LIMIT, log_path=folder / "serve.log")
    yield proc
    assert proc.stop() == 0, proc.log()
    assert "Traceback" not in proc.log(), proc.log()


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


def wait_done(client, job_id: str, timeout: float = 60) -> dict:
    def done():
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("done", "failed") else None

    return wait_until(done, timeout, f"job {job_id} to end", interval=0.05)


def error_of(response, status: int, *needles: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def test_help_reads_like_documentation():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for text in ("Examples:", "POST   /v1/jobs", "DELETE /v1/jobs/{id}", "--token TOKEN",
                 "--insecure-no-auth", "--webhook URL", "--retention DURATION",
                 "--max-upload-bytes", "--max-queue", "--systemd-unit", "kill -9",
                 "127.0.0.1", "SUMCTL_SERVE_TOKEN"):
        assert text in result.output, text


def test_submit_and_read_back_equals_summarize(server, client, extractive_bundle_dir, tmp_path):
    with open(STANDUP, "rb") as f:
        response = client.post("/v1/jobs", files={"file": ("standup.vtt", f)},
                               data={"date": "2026-10-07"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "pending" and response.headers["location"] == \
        f"/v1/jobs/{accepted['id']}" == accepted["links"]["self"]
    job = wait_done(client, accepted["id"])
    assert job["status"] == "done" and job["runs"] == 1 and job["filename"] == "standup.vtt"
    validate_summary_record(job["record"])  # the published schema, as summarize's files

    result = run("summarize", STANDUP, "--model", extractive_bundle_dir, "--date", "2026-10-07",
                 "--out", tmp_path, "--quiet")
    assert result.returncode == 0, result.stderr
    (tmp_path / "served.summary.json").write_text(json.dumps(job["record"]))
    expected, got = content(tmp_path / "standup.summary.json"), content(tmp_path / "served.summary.json")
    for record in (expected, got):  # where the input came from: a path, a client's file name
        record.pop("source"), record.pop("source_key")
    assert got == expected

    markdown = client.get(f"/v1/jobs/{accepted['id']}/summary.md")
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.replace("standup.vtt", "") and "@Marco" in markdown.text
    assert content(tmp_path / "standup.summary.md") == \
        content(_written(tmp_path / "served.summary.md", markdown.text))

    # JSON text, options as a JSON object: the same options reach the summary.
    response = client.post("/v1/jobs", json={"text": STANDUP.read_text(), "filename": "s.vtt",
                                              "options": {"minutes": False, "length": "short"}})
    assert response.status_code == 202, response.text
    plain = wait_done(client, response.json()["id"])
    assert plain["options"]["minutes"] is False and plain["record"]["length"] == "short"
    assert not plain["record"].get("action_items")


def _written(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_list_pages_and_delete(server, client):
    ids = [client.post("/v1/jobs", json={"text": meeting_text(i, turns=3),
                                         "filename": f"page-{i}.txt"}).json()["id"]
           for i in range(5)]
    first = client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:2]  # newest first
    assert first["next"] == "/v1/jobs?limit=2&offset=2" and first["total"] >= 5
    second = client.get(first["next"]).json()
    assert [j["id"] for j in second["jobs"]] == ids[::-1][2:4]
    wait_done(client, ids[0])

    stored = server.state / "transcripts" / ids[0]  # where the store keeps what was sent
    assert stored.stat().st_mode & 0o777 == 0o600
    assert client.delete(f"/v1/jobs/{ids[0]}").status_code == 204
    assert not stored.exists()
    error_of(client.get(f"/v1/jobs/{ids[0]}"), 404, ids[0], "GET /v1/jobs")
    error_of(client.delete(f"/v1/jobs/{ids[0]}"), 404)
    error_of(client.get(f"/v1/jobs/{ids[0]}/summary.md"), 404)
    error_of(client.get("/v1/jobs", params={"limit": 0}), 422, "limit")
    error_of(client.get("/v1/jobs/../../etc/passwd"), 404)


def test_bad_input_is_a_4xx_json_error_naming_the_problem(server, client):
    def submit_file(name: str, data: bytes, **fields):
        return client.post("/v1/jobs", files={"file": (name, data)}, data=fields)

    error_of(submit_file("photo.vtt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20), 422,
             "photo.vtt", "binary file")
    error_of(submit_file("empty.txt", b""), 400, "empty")
    error_of(client.post("/v1/jobs"), 400, "empty body", "file=@")
    error_of(client.post("/v1/jobs", content=b"{not json", headers={"content-type":
                                                                     "application/json"}),
             400, "not JSON")
    error_of(client.post("/v1/jobs", json={"text": "Ann: hi", "options": {"length": "huge"}}),
             422, "length", "'huge'", "long, medium, short")
    error_of(client.post("/v1/jobs", json={"text": "Ann: hi", "options": {"colour": "red"}}),
             422, "unknown option 'colour'")
    error_of(client.post("/v1/jobs", json={"text": "Ann: hi", "options": {"num_beams": 0}}),
             422, "--beams 0")
    error_of(submit_file("a.txt", b"Ann: hi", minutes="perhaps"), 422, "minutes", "true or false")
    error_of(client.post("/v1/jobs", json={"text": "Ann: hi", "date": "7 Oct"}), 422, "YYYY-MM-DD")
    error_of(client.post("/v1/jobs", json={"text": "Ann: hi", "webhook": "file:///etc/passwd"}),
             422, "webhook", "http://")
    error_of(client.post("/v1/jobs", json={"text": "Ann: hi", "format": "docx"}), 422, "docx")
    error_of(client.post("/v1/jobs", content=b"Ann: hi", headers={"content-type": "text/html"}),
             415, "multipart/form-data")
    error_of(client.get("/v1/nothing"), 404, "no such endpoint")
    error_of(client.put("/v1/jobs"), 405, "PUT")
    assert "Traceback" not in server.log()


def test_a_100_mb_upload_is_refused_without_being_read(server, client):
    rss_before = peak_rss_kb(server.proc.pid)

    def chunks():  # 100 MB, made as it is sent: the client holds 1 MB at a time
        block = b"Ann: " + b"x" * (1 << 20) + b"\n"
        for _ in range(100):
            yield block

    declared = client.post("/v1/jobs", content=chunks(), headers={
        "content-type": "application/json", "content-length": str(100 * ((1 << 20) + 6))})
    error_of(declared, 413, f"{UPLOAD_LIMIT:,}-byte limit", "--max-upload-bytes")
    streamed = client.post("/v1/jobs", content=chunks(),  # chunked: no length to check first
                           headers={"content-type": "application/json"})
    error_of(streamed, 413, "--max-upload-bytes")
    multipart = client.post("/v1/jobs", files={"file": ("big.txt", b"A: " + b"y" * (2 * UPLOAD_LIMIT))})
    error_of(multipart, 413)
    # The server never held the 100 MB: its peak memory grew by far less.
    assert peak_rss_kb(server.proc.pid) - rss_before < 40_000
    assert client.get("/healthz").json()["status"] == "ok"  # and the connection still works


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_metrics_and_health(client):
    assert client.get("/healthz").json()["status"] == "ok"
    text = client.get("/metrics").text
    for name in ("sumctl_serve_queue_depth", 'sumctl_serve_jobs_finished_total{status="done"}',
                 'sumctl_serve_jobs_finished_total{status="failed"}',
                 "sumctl_serve_job_seconds_bucket", 'sumctl_serve_jobs{status="pending"}',
                 "sumctl_serve_webhooks_pending"):
        assert name in text, name


# /healthz, probed from its own process as a monitor would: the 20 clients' threads in this one
# must not count as the server's latency. It probes until its stdin closes, then prints them.
_PROBE = """
import sys, threading, time, httpx
latencies, stop = [], threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
with httpx.Client(base_url=sys.argv[1]) as c:
    while not stop.is_set():
        started = time.perf_counter()
        assert c.get("/healthz").status_code == 200
        latencies.append(time.perf_counter() - started)
        time.sleep(0.01)
print(" ".join(f"{s:.6f}" for s in latencies))
"""


def test_200_jobs_from_20_clients_none_lost_or_doubled_and_health_stays_fast(server):
    names = [f"load-{i:03d}.txt" for i in range(200)]

    def submit(batch: list[tuple[int, str]]) -> list[str]:
        with server.client() as c:
            return [c.post("/v1/jobs", json={"text": meeting_text(i, turns=4), "filename": n}
                           ).json()["id"] for i, n in batch]

    def all_done():
        with server.client() as c:
            page = [j for j in c.get("/v1/jobs", params={"limit": 200}).json()["jobs"]
                    if j["filename"] in names]
        return page if sum(j["status"] == "done" for j in page) == 200 else None

    probe = subprocess.Popen([sys.executable, "-c", _PROBE, server.url], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # its first probes see the idle server
        work = list(enumerate(names))
        with ThreadPoolExecutor(20) as pool:
            ids = [i for part in pool.map(submit, [work[k::20] for k in range(20)]) for i in part]
        assert len(ids) == len(set(ids)) == 200
        done = wait_until(all_done, 120, "200 jobs done", interval=0.5)
    finally:
        out, _ = probe.communicate(timeout=30)
    assert probe.returncode == 0
    assert sorted(j["filename"] for j in done) == names  # each once
    assert {j["id"] for j in done} == set(ids) and {j["runs"] for j in done} == {1}
    latencies = [float(s) for s in out.split()]
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(f"/healthz during the load: {len(latencies)} probes, p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert len(latencies) > 50 and p99 < 0.1, f"/healthz p99 {p99 * 1000:.0f} ms"


def test_kill_9_during_30_jobs_then_restart(serve_process, slow_bundle_dir, tmp_path):
    state = tmp_path / "state"
    first = serve_process(state, slow_bundle_dir, log_name="first.log")
    with first.client() as c:
        ids = [c.post("/v1/jobs", json={"text": meeting_text(i, turns=4),
                                        "filename": f"m{i:02d}.txt"}).json()["id"]
               for i in range(30)]

        def done_and_busy():
            page = c.get("/v1/jobs", params={"limit": 30}).json()["jobs"]
            done = sum(j["status"] == "done" for j in page)
            return done >= 5 and c.get("/healthz").json()["workers_busy"]

        wait_until(done_and_busy, 60, "5 jobs done and one running", interval=0.02)
    first.kill()
    at_kill = rows(state)
    before = {i: r["finished_at"] for i, r in at_kill.items() if r["status"] == "done"}
    interrupted = {i for i, r in at_kill.items() if r["status"] == "running"}
    assert 5 <= len(before) < 30, "the batch finished before the kill: the test proved nothing"
    assert len(interrupted) == 1, at_kill  # one worker, killed while it was busy

    second = serve_process(state, slow_bundle_dir, log_name="second.log")
    with second.client() as c:
        jobs = {i: wait_done(c, i) for i in ids}
        records = {i: c.get(f"/v1/jobs/{i}").json()["record"] for i in ids}
        listed = c.get("/v1/jobs", params={"limit": 200}).json()
    assert second.stop() == 0
    assert listed["total"] == 30 and sorted(j["id"] for j in listed["jobs"]) == sorted(ids)
    assert all(j["status"] == "done" for j in jobs.values())
    assert all(jobs[i]["finished_at"] == t and jobs[i]["runs"] == 1 for i, t in before.items()), \
        "a finished job ran again"
    assert {i for i, j in jobs.items() if j["runs"] == 2} == interrupted
    assert all(j["runs"] == 1 for i, j in jobs.items() if i not in interrupted)
    assert sorted(r["source"] for r in records.values()) == [f"m{i:02d}.txt" for i in range(30)]
    assert "1 job(s) interrupted by the last stop will run again" in second.log()
    for proc in (first, second):
        assert "Traceback" not in proc.log(), proc.log()


def rows(state: Path) -> dict[str, dict]:
    """The store's rows as the kill left them, read from its SQLite file."""
    db = sqlite3.connect(f"file:{state / 'serve.db'}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in db.execute("SELECT * FROM serve_jobs")}
    finally:
        db.close()


def test_webhooks_are_signed_and_reach_a_receiver_that_was_down(serve_process,
                                                                extractive_bundle_dir, tmp_path):
    shared = WebhookReceiver(SECRET)  # not listening yet
    own = WebhookReceiver(SECRET).start()
    server = serve_process(tmp_path / "state", extractive_bundle_dir, "--webhook", shared.url,
                           "--webhook-secret", SECRET)
    try:
        with server.client() as c:
            ids = [c.post("/v1/jobs", json={"text": meeting_text(i, turns=3)}).json()["id"]
                   for i in range(3)]
            ids.append(c.post("/v1/jobs", json={"text": meeting_text(9, turns=3),
                                                "webhook": own.url}).json()["id"])
            for i in ids:
                wait_done(c, i)
            wait_until(lambda: own.events, 30, "the job's own webhook")
            # The server's receiver is down: its events wait in the outbox, and are retried.
            wait_until(lambda: "failed" in server.log(), 30, "a failed delivery in the log")
            shared.start()
            wait_until(lambda: len(shared.events) >= 4, 60, "4 events after the receiver came up")
        time.sleep(0.5)  # nothing more arrives: each event once
        assert len(shared.events) == 4 and shared.refused == 0
        assert sorted(e["data"]["job"]["id"] for e in shared.events) == sorted(ids)
        assert {e["type"] for e in shared.events} == {"job.done"}
        assert len({h["event_id"] for h in shared.headers}) == 4
        assert all(h["event_id"] == e["id"] for h, e in zip(shared.headers, shared.events))
        [event] = own.events
        assert event["data"]["job"]["id"] == ids[-1] and event["data"]["job"]["status"] == "done"
    finally:
        shared.stop()
        own.stop()
    assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_a_job_that_ended_unannounced_is_announced_at_the_next_start_once(
        serve_process, extractive_bundle_dir, tmp_path):
    """A kill between a job's commit and its webhook's enqueue: the next start announces it,
    under the id it would have had, and a start after that announces nothing."""
    from sumctl.runtime.options import SummaryOptions
    from sumctl.runtime.serve import JobStore

    state = tmp_path / "state"
    store = JobStore(state)
    try:
        job = store.submit(meeting_text(1, turns=3).encode(), filename="m1.txt",
                           options=SummaryOptions())
        store.claim_next()
        store.fail(job.id, "the model ran out of memory")
    finally:
        store.close()
    receiver = WebhookReceiver(SECRET).start()
    try:
        for start in range(2):
            server = serve_process(state, extractive_bundle_dir, "--webhook", receiver.url,
                                   "--webhook-secret", SECRET, log_name=f"serve-{start}.log")
            wait_until(lambda: receiver.events, 30, "the failed job's event")
            time.sleep(0.5)  # nothing more arrives
            assert server.stop() == 0
        [event] = receiver.events
        assert event["type"] == "job.failed" and event["data"]["job"]["id"] == job.id
        assert event["data"]["job"]["error"] == "the model ran out of memory"
        assert receiver.headers[0]["event_id"].startswith(f"evt_{job.id}_failed_")
    finally:
        receiver.stop()


def test_token_queue_limit_and_retention(serve_process, slow_bundle_dir, tmp_path):
    server = serve_process(tmp_path / "state", slow_bundle_dir, "--token", TOKEN,
                           "--max-queue", "2", "--retention", "1s")
    with server.client() as c:
        error_of(c.get("/v1/jobs"), 401, "Authorization: Bearer")
        error_of(c.get("/metrics"), 401)
        error_of(c.get("/v1/jobs", headers={"Authorization": f"Bearer {TOKEN}x"}), 401)
        error_of(c.get("/v1/jobs", headers={"Authorization": f"Basic {TOKEN}"}), 401)
        error_of(c.post("/v1/jobs", json={"text": "Ann: hi"}), 401)
        assert c.get("/healthz").status_code == 200  # for a load balancer: no secret in it
        assert "Token" in c.get("/").text

        c.headers["Authorization"] = f"Bearer {TOKEN}"
        assert c.get("/v1/jobs").status_code == 200
        # The slow model holds each job 0.15 s: the third of three quick submits finds the
        # queue (one running, one pending) full.
        answers = [c.post("/v1/jobs", json={"text": meeting_text(i, turns=3)}) for i in range(3)]
        assert [a.status_code for a in answers[:2]] == [202, 202]
        error_of(answers[2], 429, "queue is full", "retry later")
        assert answers[2].headers["retry-after"]
        ids = [a.json()["id"] for a in answers[:2]]
        for job_id in ids:
            wait_done(c, job_id)
        # --retention 1s: finished jobs are purged about a second later.
        wait_until(lambda: all(c.get(f"/v1/jobs/{i}").status_code == 404 for i in ids), 15,
                   "the finished jobs to be purged")
    assert server.stop() == 0
    assert "purged" in server.log() and "Traceback" not in server.log()


def test_a_non_loopback_bind_without_a_token_is_refused(tmp_path, serve_stack):
    result = run("serve", "--host", "0.0.0.0", "--port", "0", "--state", tmp_path / "state")
    assert result.returncode == 2
    one_line_error(result, "--host 0.0.0.0", "--token", "--insecure-no-auth")
    assert not (tmp_path / "state").exists()


def test_a_busy_port_is_one_line(tmp_path, extractive_bundle_dir, serve_stack):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", port, "--state", tmp_path / "state", "--model",
                     extractive_bundle_dir)
    one_line_error(result, f"--port {port}", "another --port")


def test_the_systemd_unit_is_hardened_and_verifies(tmp_path, extractive_bundle_dir):
    result = run("serve", "--systemd-unit", "--model", extractive_bundle_dir, "--workers", "2",
                 "--retention", "7d", "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    unit = result.stdout
    exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    binary = exec_start.removeprefix("ExecStart=").split()[0]
    assert Path(binary).is_absolute() and binary.endswith("sumctl")
    assert f"--model {extractive_bundle_dir} --workers 2 --retention 604800s" in exec_start
    assert "--state /var/lib/sumctl" in exec_start and TOKEN not in unit
    for line in ("DynamicUser=yes", "StateDirectory=sumctl", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/sumctl", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "ProtectHome="):
        assert f"\n{line}" in unit, line
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's text was checked, not "
                    "systemd's reading of it")
    path = tmp_path / "sumctl.service"
    path.write_text(unit)
    verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0 and "sumctl.service" not in verify.stderr, verify.stderr


def test_without_the_serve_extra_the_command_says_what_to_install(tmp_path):
    # fastapi made unimportable, as on the edge install.
    code = ("import sys; sys.modules['fastapi'] = None\n"
            "from sumctl.cli.main import cli; cli(prog_name='sumctl')")
    result = subprocess.run([sys.executable, "-c", code, "serve", "--state", tmp_path / "s"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    one_line_error(result, "fastapi", "pip install 'sumctl[serve]'")


def test_a_model_that_cannot_load_is_one_line_before_serving(tmp_path, serve_stack):
    result = run("serve", "--port", "0", "--state", tmp_path / "state", "--model",
                 tmp_path / "no-such-bundle")
    one_line_error(result, "no-such-bundle", "sumctl models list")
    assert "listening" not in result.stderr
