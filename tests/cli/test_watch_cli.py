"""Acceptance tests of `sumctl watch` and `sumctl status`: a real `sumctl watch` subprocess, a real
watchdog observer, real files, real signals (SIGTERM, SIGKILL)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sumctl.cli.main import cli
from watch_fixtures import job_rows, meeting_text, summary_records, wait_until


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sumctl(*args, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", "from sumctl.cli.main import cli; cli(prog_name='sumctl')",
         *map(str, args)], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def done_count(db: Path) -> int:
    return len(job_rows(db, "status='done'"))


@pytest.fixture
def inbox(tmp_path) -> Path:
    path = tmp_path / "in"
    path.mkdir()
    return path


def test_help_reads_like_documentation():
    result = CliRunner().invoke(cli, ["watch", "--help"])
    assert result.exit_code == 0
    for text in ("exactly once", "Examples:", "sumctl watch inbox/ --once", "--settle", "--workers",
                 "--include GLOB", "--state", "--max-attempts", "--log-json", "--max-bytes",
                 "SIGTERM", "SIGHUP", "a symlink (to a file or a", "One watcher per folder",
                 "A full disk pauses work", "--batch N",
                 "throughput on CPU when many files queue"):
        assert text in result.output, text
    status_help = CliRunner().invoke(cli, ["status", "--help"]).output
    assert "Examples:" in status_help and "--json" in status_help


def test_burst_of_300_files_with_two_workers(inbox, extractive_bundle_dir, watch_process):
    watcher = watch_process(inbox, "--model", extractive_bundle_dir, "--workers", "2",
                            "--settle", "0.5")
    watcher.wait_for_log("watching")
    contents = {}
    for i in range(300):
        data = meeting_text(1000 + i, turns=4).encode()
        (inbox / f"meeting-{i:03d}.txt").write_bytes(data)
        contents[str(inbox / f"meeting-{i:03d}.txt")] = sha(data)

    db = inbox / ".sumctl" / "state.db"
    wait_until(lambda: done_count(db) >= 300 and len(list(inbox.glob("*.summary.json"))) >= 300,
               180, "300 summaries", interval=0.25)
    assert watcher.stop() == 0

    records = summary_records(inbox)
    assert len(records) == 300 and len(list(inbox.glob("*.summary.md"))) == 300
    by_source = {r["source_key"]: r for r in records.values()}
    assert by_source.keys() == contents.keys()  # one summary per file, none doubled
    assert all(r["source_sha256"] == contents[k] for k, r in by_source.items())
    assert all(p.name == Path(r["source"]).stem + ".summary.json" for p, r in records.items())
    rows = job_rows(db)
    assert len(rows) == 300
    assert {r["path"] for r in rows} == contents.keys()
    assert {(r["status"], r["runs"], r["attempts"]) for r in rows} == {("done", 1, 0)}
    assert {r["sha256"] for r in rows} == set(contents.values())


def watch_a_backlog(watch_process, inbox: Path, model: Path, files: int, log_name: str):
    """A watcher started on `files` transcripts big enough (about 0.1 s each) that a signal
    lands mid-backlog; returns it and its state database."""
    for i in range(files):
        (inbox / f"m{i:02d}.txt").write_text(meeting_text(i, turns=1000))
    process = watch_process(inbox, "--model", model, "--settle", "0.2", log_name=log_name)
    return process, inbox / ".sumctl" / "state.db"


def test_kill_9_mid_run_then_restart(inbox, extractive_bundle_dir, watch_process):
    first, db = watch_a_backlog(watch_process, inbox, extractive_bundle_dir, 50, "first.log")
    wait_until(lambda: done_count(db) >= 5, 120, "5 jobs done before the kill", interval=0.02)
    before = {r["id"]: r["finished_at"] for r in job_rows(db, "status='done'")}
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    at_kill = done_count(db)
    assert at_kill < 50, "the backlog finished before the kill: the test proved nothing"

    second = watch_process(inbox, "--model", extractive_bundle_dir, "--settle", "0.2",
                           log_name="second.log")
    wait_until(lambda: done_count(db) == 50, 120, "all 50 jobs done after the restart",
               interval=0.1)
    assert second.stop() == 0

    rows = job_rows(db)
    assert len(rows) == 50 and all(r["status"] == "done" and r["runs"] == 1 for r in rows)
    finished = {r["id"]: r["finished_at"] for r in rows}
    assert all(finished[i] == t for i, t in before.items()), "a finished job ran again"
    records = summary_records(inbox)  # every JSON parses: none is partial
    assert len(records) == 50
    for path, record in records.items():
        source = inbox / Path(record["source"]).name
        assert record["source_sha256"] == sha(source.read_bytes())
        assert "\n# Minutes of " in path.with_suffix(".md").read_text()
    assert not [p for p in inbox.iterdir() if p.name.endswith(".summary.json") and p not in records]


def test_slow_writer_is_summarized_once_from_its_complete_content(inbox, extractive_bundle_dir,
                                                                   watch_process):
    watcher = watch_process(inbox, "--model", extractive_bundle_dir, "--settle", "1.5")
    watcher.wait_for_log("watching")
    text = meeting_text(7, turns=35).encode()
    pieces = [text[i:i + len(text) // 6 + 1] for i in range(0, len(text), len(text) // 6 + 1)]
    target = inbox / "recording.txt"
    with open(target, "wb") as f:
        for piece in pieces:  # 7 pieces over 3 s
            f.write(piece)
            f.flush()
            os.fsync(f.fileno())
            time.sleep(0.5)
            assert not (inbox / "recording.summary.json").exists(), "summarized while being written"
    summary = inbox / "recording.summary.json"
    wait_until(summary.exists, 30, "the summary of the finished file")
    live = json.loads(sumctl("status", inbox, "--json").stdout)  # safe while the watcher runs
    assert live["running_pid"] == watcher.proc.pid
    assert watcher.stop() == 0
    record = json.loads(summary.read_text())
    assert record["source_sha256"] == sha(text)
    assert record["watch"]["bytes"] == len(text)
    rows = job_rows(inbox / ".sumctl" / "state.db")
    assert [(r["sha256"], r["status"], r["runs"]) for r in rows] == [(sha(text), "done", 1)]


BAD_FILES = {
    "empty.txt": (b"", "the file is empty"),
    "binary.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20, "binary file"),
    "latin1.txt": ("Zoë: the café meeting moved to Thursday.\n".encode("latin-1"), "invalid UTF-8"),
    "huge.txt": (meeting_text(99, turns=200).encode(), "over the 4,000-byte cap"),
    "broken.json": (b'{"turns": [{"speaker": "Ann", "text": "hi"},', "malformed JSON"),
    "broken.vtt": (b"WEBVTT\n\nthis is not a cue timing\nhello there\n", "malformed WebVTT"),
    "broken.srt": (b"1\n00:00:01 to 00:00:02\nhello there\n", "malformed SRT"),
}


def test_bad_files_get_error_files_or_refusals_and_good_files_keep_flowing(
        inbox, tmp_path, extractive_bundle_dir, watch_process):
    secret = tmp_path / "secret.txt"
    secret.write_text(meeting_text(5))
    watcher = watch_process(inbox, "--model", extractive_bundle_dir, "--settle", "0.3",
                            "--max-bytes", "4000", "--log-json")
    watcher.wait_for_log('"event": "start"')
    for name, (data, _) in BAD_FILES.items():
        (inbox / name).write_bytes(data)
    (inbox / "leak.txt").symlink_to(secret)

    def error_files() -> dict[str, str]:
        found = {}
        for p in inbox.glob("*.error.txt"):
            text = p.read_text()
            source = json.loads(next(ln[len("source: "):] for ln in text.splitlines()
                                     if ln.startswith("source: ")))
            found[Path(source).name] = text
        return found

    wait_until(lambda: len(error_files()) == len(BAD_FILES), 30, "an error file per bad file")
    for name, (_, reason) in BAD_FILES.items():
        assert reason in error_files()[name], (name, error_files()[name])

    (inbox / "after.txt").write_text(meeting_text(6))
    wait_until((inbox / "after.summary.json").exists, 30, "a good file after the bad ones")
    assert watcher.stop() == 0

    events = [json.loads(line) for line in watcher.log().splitlines() if line.startswith("{")]
    refusals = [e for e in events if e.get("event") == "refused"]
    assert [Path(e["path"]).name for e in refusals] == ["leak.txt"]
    assert "outside the watched folder" in refusals[0]["reason"]
    assert {Path(e["path"]).name for e in events if e.get("event") == "failed"} == set(BAD_FILES)
    assert not (inbox / "leak.summary.json").exists()
    assert [p.name for p in inbox.glob("*.summary.json")] == ["after.summary.json"]

    status = json.loads(sumctl("status", inbox, "--json").stdout)
    assert status["counts"]["done"] == 1 and status["counts"]["failed"] == len(BAD_FILES)
    assert status["counts"]["refused"] == 1 and status["running_pid"] is None
    text = sumctl("status", inbox).stdout
    assert "Done: 1" in text and f"Failed: {len(BAD_FILES)}" in text and "Refused: 1" in text
    assert "malformed JSON" in text and "leak.txt: leads through a symlink" in text


def test_sigterm_and_sigint_exit_0_and_leave_no_job_running(inbox, extractive_bundle_dir,
                                                           watch_process):
    idle = watch_process(inbox, "--model", extractive_bundle_dir, log_name="idle.log")
    idle.wait_for_log("watching")
    idle.signal(signal.SIGINT)
    assert idle.wait() == 0 and "SIGINT: stopping" in idle.log()

    busy, db = watch_a_backlog(watch_process, inbox, extractive_bundle_dir, 20, "busy.log")
    wait_until(lambda: done_count(db) >= 2, 60, "two jobs done", interval=0.02)
    busy.signal(signal.SIGTERM)
    assert busy.wait() == 0 and "SIGTERM: stopping" in busy.log()
    assert not job_rows(db, "status='running'")
    assert done_count(db) < 20, "the backlog finished before SIGTERM: the test proved nothing"

    result = sumctl("watch", inbox, "--model", extractive_bundle_dir, "--once", "--settle", "0.2")
    assert "summarized" in result.stdout and "already done" in result.stdout
    rows = job_rows(db)
    assert len(rows) == 20 and {(r["status"], r["runs"]) for r in rows} == {("done", 1)}


def test_once_prints_a_table_and_fails_when_a_file_failed(inbox, extractive_bundle_dir):
    (inbox / "good.txt").write_text(meeting_text(1))
    (inbox / "bad.json").write_text("[1, 2")
    result = sumctl("watch", inbox, "--model", extractive_bundle_dir, "--once", "--settle", "0",
                    check=False)
    assert result.returncode == 1
    assert "good.txt" in result.stdout and "summarized" in result.stdout
    assert "bad.json" in result.stdout and "FAILED" in result.stdout
    assert "Error: 1 file(s) could not be summarized" in result.stderr
    assert "Traceback" not in result.stderr
    assert (inbox / "bad.error.txt").exists() and (inbox / "good.summary.json").exists()


def test_status_of_an_unwatched_folder_is_a_one_line_error(inbox):
    result = sumctl("status", inbox, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "run `sumctl watch`" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_workers_each_with_a_real_onnx_t5_model(inbox, tiny_t5_bundle, watch_process):
    """The product path: ONNX Runtime sessions, one per worker thread, threads within the cores."""
    for i in range(4):
        (inbox / f"standup-{i}.txt").write_text(meeting_text(200 + i, turns=30))
    watcher = watch_process(inbox, "--model", tiny_t5_bundle, "--workers", "2", "--threads", "1",
                            "--settle", "0.2", "--length", "short")
    db = inbox / ".sumctl" / "state.db"
    wait_until(lambda: done_count(db) == 4, 300, "4 summaries by the T5 bundle", interval=0.2)
    assert watcher.stop() == 0
    assert "2 worker(s) x 1 thread(s)" in watcher.log()
    records = summary_records(inbox)
    assert len(records) == 4
    manifest_sha = sha((tiny_t5_bundle / "sumctl.json").read_bytes())
    for record in records.values():
        assert record["model"]["backend"] == "onnx-t5"
        assert record["model"]["sha256"] == manifest_sha == record["watch"]["model_sha256"]
        assert record["chapters"] and record["output_tokens"] > 0
    rows = job_rows(db)
    assert {(r["status"], r["runs"], r["model"]) for r in rows} == {("done", 1, manifest_sha)}


@pytest.mark.slow
def test_batch_3_over_four_files_with_one_bad(inbox, tiny_t5_bundle):
    for i in range(3):
        (inbox / f"call-{i}.txt").write_text(meeting_text(400 + i, turns=3))
    (inbox / "broken.vtt").write_bytes(b"WEBVTT\n\nthis is not a cue timing\nhello there\n")
    result = sumctl("watch", inbox, "--model", tiny_t5_bundle, "--once", "--batch", "3",
                    "--threads", "1", "--settle", "0", "--length", "short", "--log-json",
                    check=False)
    assert result.returncode == 1, result.stderr  # one file failed
    assert "Traceback" not in result.stderr
    assert "3 summarized, 1 failed" in result.stdout and "malformed WebVTT" in result.stdout
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    start = next(e for e in events if e["event"] == "start")
    assert start["batch"] == 3 and "batches of up to 3 file(s)" in start["message"]
    batches = [e["count"] for e in events if e["event"] == "batch"]
    assert batches and max(batches) >= 2, "no files were summarized together"
    assert sum(batches) <= 3 and sum(1 for e in events if e["event"] == "summarized") == 3

    rows = job_rows(inbox / ".sumctl" / "state.db")
    assert sorted(Path(r["path"]).name for r in rows) == ["broken.vtt", "call-0.txt", "call-1.txt",
                                                          "call-2.txt"]
    assert sorted((r["status"], r["runs"]) for r in rows) == [("done", 1)] * 3 + [("failed", 0)]
    assert "malformed WebVTT" in (inbox / "broken.error.txt").read_text()
    assert len(summary_records(inbox)) == 3
    status = json.loads(sumctl("status", inbox, "--json").stdout)
    assert status["counts"]["done"] == 3 and status["counts"]["failed"] == 1
    assert "Done: 3" in sumctl("status", inbox).stdout
