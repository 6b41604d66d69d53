"""The watcher on hostile ground (issue 12), in-process: real symlinks, loops, FIFOs, sockets,
long UTF-8 names and look-alike names, with a real watchdog observer and real files.

The faults that need a real process (signals, dropped capabilities, a full tmpfs) are in
tests/cli/test_watch_faults.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.fsutil import NAME_MAX_BYTES
from sumctl.runtime.errors import StateLockedError
from sumctl.runtime.watch import WatchConfig
from watch_fixtures import job_rows, make, meeting_text, running, summary_records, wait_until




@pytest.fixture
def tree(tmp_path):
    """A watched folder and, beside it, an outside folder holding a secret."""
    inbox, outside = tmp_path / "in", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("Mallory: the secret merger code is 4471.\n" * 5)
    return inbox, outside


def secret_leaked(*folders: Path) -> list[Path]:
    """Any output written outside, and any summary anywhere that quotes the secret."""
    leaks = []
    for folder in folders:
        for p in folder.rglob("*"):
            if p.is_file() and (".summary." in p.name or p.name.endswith(".error.txt")
                                or p.name.endswith(".tmp")):
                if "outside" in p.parts or "4471" in p.read_text(errors="replace"):
                    leaks.append(p)
    return leaks


def test_poll_never_follows_a_symlinked_folder_out_of_the_tree(tree, extractive_bundle_dir):
    inbox, outside = tree
    (inbox / "shared").symlink_to(outside, target_is_directory=True)
    (inbox / "leak.txt").symlink_to(outside / "secret.txt")
    (inbox / "ok.txt").write_text(meeting_text(1))
    with running(make(inbox, extractive_bundle_dir, poll=True, recursive=True)) as watcher:
        wait_until((inbox / "ok.summary.json").exists, 30, "the good file's summary")
        (outside / "new.txt").write_text("Mallory: another secret, 4471 again.\n")
        (inbox / "late.txt").write_text(meeting_text(2))
        wait_until((inbox / "late.summary.json").exists, 30, "a file added while polling")
        wait_until(lambda: any(o.path.endswith("leak.txt") and o.status == "refused"
                               for o in watcher.report.outcomes.values()), 10, "leak.txt refused")
    assert secret_leaked(inbox, outside) == []
    assert sorted(p.name for p in outside.iterdir()) == ["new.txt", "secret.txt"]
    assert {Path(r["path"]).name for r in job_rows(inbox / ".sumctl/state.db")} == {"ok.txt", "late.txt"}


def test_a_folder_moved_in_with_a_symlink_out_is_refused(tree, tmp_path, extractive_bundle_dir):
    inbox, outside = tree
    staging = tmp_path / "staging" / "project"
    staging.mkdir(parents=True)
    (staging / "notes.txt").write_text(meeting_text(3))
    (staging / "docs").symlink_to(outside, target_is_directory=True)
    with running(make(inbox, extractive_bundle_dir, recursive=True)) as watcher:
        os.rename(staging, inbox / "project")
        wait_until((inbox / "project" / "notes.summary.json").exists, 30, "the moved-in file")
        # The walk of the moved folder and any events under it reach docs/secret.txt, or nothing.
        watcher.stop()
    assert secret_leaked(inbox, outside) == []
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_outputs_never_follow_a_symlink_planted_where_they_go(tree, tmp_path, extractive_bundle_dir):
    inbox, outside = tree
    out = tmp_path / "summaries"
    (inbox / "sub").mkdir()
    (inbox / "sub" / "a.txt").write_text(meeting_text(4))
    (inbox / "b.txt").write_text(meeting_text(5))
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)  # a.txt's outputs would go there
    (out / "b.summary.json").symlink_to(outside / "planted.json")  # b's record, dangling
    (out / "b.summary.md").symlink_to(outside / "secret.txt")
    report = make(inbox, extractive_bundle_dir, out=out, recursive=True, once=True).run()
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text().startswith("Mallory")
    # b.txt is summarized under the next free stem; the planted links are left as they are.
    assert (out / "b-2.summary.json").is_file() and (out / "b.summary.md").is_symlink()
    a = report.outcomes[str(inbox / "sub" / "a.txt")]
    assert a.status == "failed" and "refusing to write there" in a.reason and "symlink" in a.reason


def test_symlink_loops_fifos_and_sockets_are_refused_and_the_watcher_goes_on(
        tree, extractive_bundle_dir):
    inbox, _ = tree
    (inbox / "self.txt").symlink_to("self.txt")
    (inbox / "ping.txt").symlink_to("pong.txt")
    (inbox / "pong.txt").symlink_to("ping.txt")
    (inbox / "sub").mkdir()
    (inbox / "sub" / "up").symlink_to("..", target_is_directory=True)
    (inbox / "sub" / "deep").symlink_to("deep/deep", target_is_directory=True)
    os.mkfifo(inbox / "pipe.txt")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(inbox / "sock.txt"))
    (inbox / "ok.txt").write_text(meeting_text(6))
    (inbox / "sub" / "ok2.txt").write_text(meeting_text(7))
    try:
        for poll in (False, True):
            state = inbox.parent / f"state-{poll}.db"
            with running(make(inbox, extractive_bundle_dir, poll=poll, recursive=True,
                              state_path=state)) as watcher:
                backlog = 2 + poll  # ok.txt, sub/ok2.txt, and the first round's later file
                wait_until(lambda: len(job_rows(state, "status='done'")) == backlog, 30,
                           "the good files of the backlog")
                (inbox / f"later-{poll}.txt").write_text(meeting_text(8 + poll))
                wait_until(lambda: len(job_rows(state, "status='done'")) == backlog + 1, 30,
                           "a file added after the loops were met")
                refused = {Path(o.path).name: o.reason for o in watcher.report.outcomes.values()
                           if o.status == "refused"}
            assert {"self.txt", "ping.txt", "pong.txt", "pipe.txt", "sock.txt"} <= set(refused)
            assert "loop" in refused["self.txt"] and "regular" in refused["pipe.txt"]
    finally:
        sock.close()


def test_long_non_ascii_names_are_summarized_within_255_bytes(tree, extractive_bundle_dir):
    inbox, _ = tree
    names = ["会议" * 40 + ".txt", "совещание" * 13 + ".txt", "é" * 120 + ".vtt"]
    for i, name in enumerate(names):
        assert len(name.encode()) <= NAME_MAX_BYTES
        if name.endswith(".vtt"):
            (inbox / name).write_text("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Ann>We agreed "
                                      "to ship the export fix on Friday.\n")
        else:
            (inbox / name).write_text(meeting_text(20 + i))
    report = make(inbox, extractive_bundle_dir, once=True, formats=("md", "json", "txt")).run()
    assert report.summarized == 3, report.outcomes
    for p in inbox.iterdir():
        assert len(p.name.encode()) <= NAME_MAX_BYTES
    records = summary_records(inbox)
    assert {Path(r["source_key"]).name for r in records.values()} == set(names)


def test_user_files_named_like_outputs_are_summarized_and_other_skips_counted(
        tree, extractive_bundle_dir):
    inbox, _ = tree
    (inbox / "q3.summary.review.txt").write_text(meeting_text(30))
    (inbox / "parse.error.txt").write_text(meeting_text(31))
    (inbox / "weekly.summary.json").write_text(json.dumps(
        [{"speaker": "Ann", "text": "We reviewed the weekly numbers and agreed on the plan."}]))
    (inbox / "slides.pdf").write_bytes(b"%PDF-1.4")
    (inbox / "draft.txt.part").write_text("half")
    report = make(inbox, extractive_bundle_dir, once=True).run()
    summarized = sorted(Path(o.path).name for o in report.outcomes.values()
                        if o.status == "summarized")
    assert summarized == ["parse.error.txt", "q3.summary.review.txt", "weekly.summary.json"]
    assert report.skipped == {"not included": 1, "temporary": 1}
    # Our own outputs (including the error-like and summary-like ones) are never read back.
    again = make(inbox, extractive_bundle_dir, once=True).run()
    assert again.summarized == 0 and again.count("failed") == 0
    assert sorted(p.name for p in inbox.glob("weekly*")) == [
        "weekly.summary.json", "weekly.summary.summary.json", "weekly.summary.summary.md"]


def test_a_file_restored_to_summarized_content_drops_its_stale_error(tree, extractive_bundle_dir):
    inbox, _ = tree
    db = inbox / ".sumctl" / "state.db"
    meeting = inbox / "m.txt"
    meeting.write_text(meeting_text(40))
    assert make(inbox, extractive_bundle_dir, once=True).run().summarized == 1
    good = meeting.read_bytes()
    meeting.write_bytes(b"")
    assert make(inbox, extractive_bundle_dir, once=True).run().failed == 1
    assert (inbox / "m.error.txt").exists()
    meeting.write_bytes(good)
    report = make(inbox, extractive_bundle_dir, once=True).run()
    assert report.count("already") == 1
    assert not (inbox / "m.error.txt").exists()
    assert [r["status"] for r in job_rows(db)] == ["done"]


def test_a_newline_in_a_name_keeps_one_error_file_and_one_stem(tree, extractive_bundle_dir):
    inbox, _ = tree
    bad = inbox / "bad\nname.json"
    bad.write_text("[1, 2")
    for _ in range(3):  # every retry must find its own error file again
        make(inbox, extractive_bundle_dir, once=True, backoff_seconds=0).run()
    errors = sorted(p.name for p in inbox.glob("*.error.txt"))
    assert errors == ["bad_name.error.txt"]
    text = (inbox / errors[0]).read_text()
    assert json.loads(text.splitlines()[1][len("source: "):]) == str(bad)
    bad.write_text(json.dumps([{"speaker": "Ann", "text": "We fixed the broken file today."}]))
    assert make(inbox, extractive_bundle_dir, once=True).run().summarized == 1
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == [
        "bad\nname.json", "bad_name.summary.json", "bad_name.summary.md"]


def test_a_second_watcher_with_another_state_is_refused(tree, tmp_path, extractive_bundle_dir):
    inbox, _ = tree
    with running(make(inbox, extractive_bundle_dir)):
        second = make(inbox, extractive_bundle_dir, state_path=tmp_path / "other.db")
        with pytest.raises(StateLockedError, match=f"pid {os.getpid()}.*another --state"):
            second.run()
    # Once the first has stopped, the folder is free again.
    make(inbox, extractive_bundle_dir, state_path=tmp_path / "other.db", once=True).run()


def test_a_symlinked_state_folder_is_refused(tree, extractive_bundle_dir):
    inbox, outside = tree
    (inbox / ".sumctl").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SumctlError, match=r"\.sumctl: is a symlink.*--state"):
        WatchConfig(inbox, model=extractive_bundle_dir, once=True)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_a_hard_link_is_the_same_file_and_is_summarized_once(tree, extractive_bundle_dir):
    inbox, outside = tree
    os.link(outside / "secret.txt", inbox / "linked.txt")
    shutil.copy(inbox / "linked.txt", inbox / "copy.txt")
    report = make(inbox, extractive_bundle_dir, once=True).run()
    # Documented: a hard link is the file itself (whoever made it could read it), so it is
    # summarized, beside the link; a copy of the same content is not summarized twice.
    assert report.summarized == 1 and report.count("already") == 1
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_fifos_and_bombs_planted_at_output_names_neither_hang_nor_crash(tree, extractive_bundle_dir):
    """A sharer who wants to stop the service plants a FIFO where our record would be read,
    and a JSON bomb where an error file or record is checked for its owner."""
    inbox, _ = tree
    (inbox / "a.txt").write_text(meeting_text(50))
    (inbox / "b.txt").write_text(meeting_text(51))
    os.mkfifo(inbox / "a.summary.json")
    os.mkfifo(inbox / "a.error.txt")
    (inbox / "b.summary.json").write_text("[" * 100_000 + "]" * 100_000)
    report = make(inbox, extractive_bundle_dir, once=True).run()
    assert report.summarized == 2, report.outcomes
    assert (inbox / "a-2.summary.json").is_file() and (inbox / "b-2.summary.json").is_file()
    refused = {Path(o.path).name for o in report.outcomes.values() if o.status == "refused"}
    assert refused == {"a.summary.json", "a.error.txt"}
