"""Issue 27, case 2: `sumctl watch --once` on a full disk exits non-zero within seconds with one
line naming the folder, where a long-running watcher pauses (that side is
test_watch_faults.test_a_full_disk_pauses_work_logs_once_and_resumes). A real full tmpfs."""

from __future__ import annotations

import json
import time

from watch_fixtures import job_rows, meeting_text, one_line_error, run


def test_once_on_a_full_out_folder_fails_fast_naming_it(small_disk, extractive_bundle_dir,
                                                        tmp_path):
    out = small_disk("out")
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"m{i}.txt").write_text(meeting_text(300 + i))
    out.fill()
    started = time.monotonic()
    result = run("watch", inbox, "--model", extractive_bundle_dir, "--once", "--settle", "0.2",
                 "--out", out.path, timeout=60)
    assert time.monotonic() - started < 30, "a one-shot run waited for space"
    one_line_error(result, str(out.path), "disk is full", "--once")
    # What it could not write stays pending: a later run, with space, does it all.
    out.free()
    result = run("watch", inbox, "--model", extractive_bundle_dir, "--once", "--settle", "0.2",
                 "--out", out.path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(list(out.path.glob("*.summary.json"))) == 3


def test_once_on_a_full_watched_folder_fails_fast(small_disk, extractive_bundle_dir,
                                                  tmp_path):
    """Summaries beside their sources, the state on a disk with room: the job writes are what
    meet the full disk."""
    disk = small_disk()
    inbox = disk.path / "in"
    inbox.mkdir()
    state = ["--state", tmp_path / "state.db"]
    for i in (0, 1, 2):
        (inbox / f"m{i}.txt").write_text(meeting_text(200 + i))
    disk.fill()
    started = time.monotonic()
    result = run("watch", inbox, "--model", extractive_bundle_dir, "--once", "--settle", "0.2",
                 "--log-json", *state, timeout=60)
    assert time.monotonic() - started < 30, "a one-shot run waited for space"
    one_line_error(result, str(inbox), "disk is full", "--once")
    events = [json.loads(ln) for ln in result.stderr.splitlines() if ln.startswith("{")]
    assert "paused" not in [e["event"] for e in events]
    disk.free()
    assert run("watch", inbox, "--model", extractive_bundle_dir, "--once",
               "--settle", "0.2", *state).returncode == 0
    assert len(list(inbox.glob("*.summary.json"))) == 3
    assert all(r["attempts"] == 0 for r in job_rows(tmp_path / "state.db"))


def test_watch_help_documents_both_full_disk_behaviours():
    text = " ".join(run("watch", "--help").stdout.split())
    assert "full disk pauses" in text
    assert "--once" in text and "exits non-zero" in text
