"""`sumctl watch --webhook`: a real `sumctl watch --once` subprocess, the extractive model, and a
real receiver on loopback that checks every signature."""

from __future__ import annotations

import sqlite3
import stat

from click.testing import CliRunner

from sumctl.cli.main import cli
from serve_runtime_fixtures import unused_port
from watch_fixtures import meeting_text, one_line_error, run


def watch_once(inbox, bundle, *args):
    return run("watch", inbox, "--once", "--settle", "0", "--max-attempts", "1",
               "--model", bundle, *args)


def outbox_ids(inbox) -> list[str]:
    with sqlite3.connect(inbox / ".sumctl" / "webhooks.db") as db:
        return [r[0] for r in db.execute("SELECT id FROM events ORDER BY created")]


def test_each_file_summarized_or_failed_is_one_signed_event(tmp_path, extractive_bundle_dir,
                                                             signed_receiver):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "alpha.txt").write_text(meeting_text(1))
    (inbox / "beta.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:04.000\n<v Ann>We ship on Friday.\n")
    (inbox / "empty.txt").write_text("  \n")
    receiver = signed_receiver("a-given-secret")
    result = watch_once(inbox, extractive_bundle_dir, "--webhook", receiver.url,
                        "--webhook-secret", "a-given-secret")
    assert result.returncode == 1, result.stderr  # the empty file failed
    assert all(r["signed"] for r in receiver.received) and len(receiver.received) == 3
    events = {e["data"]["path"]: e for e in receiver.delivered()}
    assert sorted(events) == ["alpha.txt", "beta.vtt", "empty.txt"]
    alpha = events["alpha.txt"]
    assert alpha["type"] == "job.done" and alpha["data"]["status"] == "done"
    assert alpha["data"]["outputs"] == ["alpha.summary.md", "alpha.summary.json"]
    assert alpha["data"]["error"] is None and len(alpha["data"]["sha256"]) == 64
    assert events["beta.vtt"]["type"] == "job.done"
    empty = events["empty.txt"]
    assert empty["type"] == "job.failed" and empty["data"]["status"] == "failed"
    assert "the file is empty" in empty["data"]["error"] and empty["data"]["outputs"] == []
    assert len({e["id"] for e in events.values()}) == 3
    assert outbox_ids(inbox) == []  # all delivered
    assert not (inbox / ".sumctl" / "webhook-secret").exists()  # the given secret is not kept


def test_events_for_a_receiver_that_was_down_are_sent_by_the_next_run(tmp_path, extractive_bundle_dir,
                                                                       signed_receiver):
    inbox = tmp_path / "in"
    inbox.mkdir()
    for n in range(2):
        (inbox / f"m{n}.txt").write_text(meeting_text(n))
    port = unused_port()
    url = f"http://127.0.0.1:{port}/hook"
    first = watch_once(inbox, extractive_bundle_dir, "--webhook", url)
    assert first.returncode == 0, first.stderr
    waiting = outbox_ids(inbox)
    assert len(waiting) == 2
    secret_file = inbox / ".sumctl" / "webhook-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    receiver = signed_receiver(secret_file.read_text().strip(), port=port)
    second = watch_once(inbox, extractive_bundle_dir, "--webhook", url)  # nothing new to summarize
    assert second.returncode == 0, second.stderr
    assert all(r["signed"] for r in receiver.received)
    assert sorted(e["id"] for e in receiver.delivered()) == sorted(waiting)
    assert {e["data"]["path"] for e in receiver.delivered()} == {"m0.txt", "m1.txt"}
    assert outbox_ids(inbox) == []


def test_a_bad_webhook_is_one_line_before_anything_is_written(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "m.txt").write_text(meeting_text(1))
    one_line_error(watch_once(inbox, extractive_bundle_dir, "--webhook", "ftp://example.com/x"),
                   "--webhook 'ftp://example.com/x'", "http://")
    one_line_error(watch_once(inbox, extractive_bundle_dir, "--webhook-secret", "s"),
                   "--webhook-secret", "no --webhook URL")
    assert sorted(p.name for p in inbox.iterdir()) == ["m.txt"]


def test_without_the_flag_nothing_of_webhooks_is_made(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "m.txt").write_text(meeting_text(1))
    result = watch_once(inbox, extractive_bundle_dir)
    assert result.returncode == 0, result.stderr
    assert (inbox / "m.summary.json").exists()
    made = sorted(p.name for p in (inbox / ".sumctl").iterdir())
    assert "state.db" in made and not [name for name in made if "webhook" in name], made


def test_help_documents_the_webhook_options():
    text = CliRunner().invoke(cli, ["watch", "--help"]).output
    for needle in ("--webhook URL", "--webhook-secret SECRET", "job.done", "job.failed",
                   "Sumctl-Signature", "Sumctl-Event-Id", "$SUMCTL_WEBHOOK_SECRET",
                   "DIR/.sumctl/webhook-secret (0600)"):
        assert needle in text, needle
