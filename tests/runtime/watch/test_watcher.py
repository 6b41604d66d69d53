"""The watcher engine, in-process, with a real watchdog observer, real files and the extractive
baseline bundle (a real bundle and backend, fast)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path, PurePosixPath

import pytest

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.errors import StateLockedError
from sumctl.runtime.machine import plan_threads
from sumctl.runtime.watch import DEFAULT_INCLUDE, skip_reason
from backend_fixtures import plugin_backend
from watch_fixtures import job_rows, make, meeting_text, running, summary_records, wait_until


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("rel, reason", [
    ("meeting.txt", None), ("sub/meeting.vtt", None), ("MEETING.SRT", None),
    ("notes.pdf", "not included"),
    ("meeting.txt.part", "temporary"), ("meeting.tmp", "temporary"),
    ("video.crdownload", "temporary"), ("~$meeting.txt", "temporary"), ("meeting.txt~", "temporary"),
    (".meeting.txt", "hidden"), (".sumctl/state.db", "hidden"), ("a/.git/x.txt", "hidden"),
    # Names alone do not make a file ours: its content does (test_watch_hardening.py).
    ("meeting.summary.json", None), ("meeting.summary.md", "not included"),
    ("meeting.error.txt", None), ("q3.summary.review.txt", None),
])
def test_which_names_are_transcripts(rel, reason):
    assert skip_reason(PurePosixPath(rel), DEFAULT_INCLUDE, ()) == reason


def test_include_and_exclude_match_names_and_relative_paths():
    assert skip_reason(PurePosixPath("a/b.md"), ("*.md",), ()) is None
    assert skip_reason(PurePosixPath("archive/b.txt"), DEFAULT_INCLUDE, ("archive/*",)) == "excluded"
    assert skip_reason(PurePosixPath("b.txt"), DEFAULT_INCLUDE, ("b.*",)) == "excluded"


def test_threads_fit_the_cores():
    assert plan_threads(1, None, cores=8) == (8, None)
    assert plan_threads(3, None, cores=8) == (2, None)
    assert plan_threads(2, 2, cores=8) == (2, None)
    threads, warning = plan_threads(2, 8, cores=8)
    assert threads == 4 and "more than the 8 cores" in warning
    assert plan_threads(16, None, cores=8) == (1, None)


def test_backlog_once_writes_complete_records_and_a_second_run_does_nothing(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(5):
        (inbox / f"m{i}.txt").write_text(meeting_text(i))
    report = make(inbox, extractive_bundle_dir, once=True).run()
    assert report.summarized == 5 and report.failed == 0

    records = summary_records(inbox)
    assert len(records) == 5
    bundle_sha = sha(extractive_bundle_dir / "sumctl.json")
    for path, record in records.items():
        source = inbox / path.name.replace(".summary.json", ".txt")
        assert record["source"] == str(source)
        assert record["source_sha256"] == sha(source) == record["watch"]["sha256"]
        assert record["model"]["sha256"] == bundle_sha == record["watch"]["model_sha256"]
        assert record["chapters"] and record["text"]
        assert record["timings"]["summarize_s"] >= 0 and "wait_s" in record["watch"]
        assert "\n# Minutes of m" in (inbox / path.name.replace(".json", ".md")).read_text()  # the default
        assert "action_items" in record

    again = make(inbox, extractive_bundle_dir, once=True).run()
    assert again.summarized == 0
    assert [r["runs"] for r in job_rows(inbox / ".sumctl" / "state.db")] == [1] * 5


def test_a_backlog_older_than_the_settle_time_is_not_kept_waiting(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    old = time.time() - 3600
    for i in range(3):
        (inbox / f"old{i}.txt").write_text(meeting_text(60 + i))
        os.utime(inbox / f"old{i}.txt", (old, old))
    started = time.monotonic()
    report = make(inbox, extractive_bundle_dir, once=True, settle_seconds=0.1).run()
    assert report.summarized == 3
    # Its mtime shows it has not changed for an hour: no need to watch it for 300 s more.
    report = make(tmp_path / "in", extractive_bundle_dir, once=True, settle_seconds=300,
                  state_path=tmp_path / "other.db").run()
    assert report.summarized == 3 and time.monotonic() - started < 60


def test_edited_renamed_and_same_stem(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    db = inbox / ".sumctl" / "state.db"
    (inbox / "a.txt").write_text(meeting_text(1))
    (inbox / "a.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Bob>We agreed to "
                                 "move the launch to March and hire two engineers.\n")
    (inbox / "b.txt").write_text(meeting_text(2))
    make(inbox, extractive_bundle_dir, once=True).run()
    records = summary_records(inbox)
    # Same stem, two sources: two summaries, neither overwritten.
    keys = {p.name: r["source_key"] for p, r in records.items()}
    assert set(keys) == {"a.summary.json", "a-2.summary.json", "b.summary.json"}
    assert {keys["a.summary.json"], keys["a-2.summary.json"]} == {str(inbox / "a.txt"),
                                                                 str(inbox / "a.vtt")}

    # Edited: new content, summarized again into the same files.
    stem_of_a = next(p for p, k in keys.items() if k == str(inbox / "a.txt"))
    (inbox / "a.txt").write_text(meeting_text(3))
    # Renamed: same content, new name: not summarized again.
    (inbox / "b.txt").rename(inbox / "renamed.txt")
    report = make(inbox, extractive_bundle_dir, once=True).run()
    assert report.summarized == 1
    assert report.outcomes[str(inbox / "renamed.txt")].status == "already"
    records = summary_records(inbox)
    assert len(records) == 3 and not (inbox / "renamed.summary.json").exists()
    assert records[inbox / stem_of_a]["source_sha256"] == sha(inbox / "a.txt")
    rows = job_rows(db)
    assert len(rows) == 4 and all(r["runs"] == 1 for r in rows)
    assert [r["path"] for r in rows if r["path"].endswith("renamed.txt")]


def test_live_watch_serves_new_moved_and_edited_files_and_ignores_temporaries(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    with running(make(inbox, extractive_bundle_dir)) as watcher:
        (inbox / "new.txt").write_text(meeting_text(10))
        wait_until(lambda: (inbox / "new.summary.json").exists(), 20, "new.summary.json")

        # Browsers and sync tools write a temporary name, then rename it.
        (inbox / "download.txt.part").write_text(meeting_text(11))
        (inbox / ".hidden.txt").write_text(meeting_text(12))
        (inbox / "~$lock.txt").write_text(meeting_text(13))
        (inbox / "download.txt.part").rename(inbox / "download.txt")
        wait_until(lambda: (inbox / "download.summary.json").exists(), 20, "download.summary.json")

        (inbox / "new.txt").write_text(meeting_text(14))
        wait_until(lambda: json.loads((inbox / "new.summary.json").read_text())["source_sha256"]
                   == sha(inbox / "new.txt"), 20, "the edited file's summary")
        wait_until(lambda: not watcher.busy, 10, "the queue to empty")
    names = sorted(p.name for p in inbox.iterdir() if p.is_file())
    assert names == [".hidden.txt", "download.summary.json", "download.summary.md", "download.txt",
                     "new.summary.json", "new.summary.md", "new.txt", "~$lock.txt"]
    assert len(job_rows(inbox / ".sumctl" / "state.db")) == 3


def test_recursive_out_dir_mirrors_subfolders_and_is_never_read_back(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    (inbox / "team" / "deep").mkdir(parents=True)
    out = inbox / "summaries"  # inside the watched tree on purpose
    (inbox / "top.txt").write_text(meeting_text(20))
    (inbox / "team" / "deep" / "sub.txt").write_text(meeting_text(21))
    with running(make(inbox, extractive_bundle_dir, recursive=True, out=out)):
        wait_until(lambda: (out / "team" / "deep" / "sub.summary.json").exists()
                   and (out / "top.summary.json").exists(), 20, "both summaries")
        (inbox / "team" / "late").mkdir()
        (inbox / "team" / "late" / "late.txt").write_text(meeting_text(22))
        wait_until(lambda: (out / "team" / "late" / "late.summary.json").exists(), 20,
                   "a summary for a file in a new subfolder")
    rows = job_rows(inbox / ".sumctl" / "state.db")
    assert len(rows) == 3 and not any("summaries" in r["path"] for r in rows)
    assert not list(inbox.rglob("*.summary.json"))[3:]


def test_symlinks_and_fifos(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text(meeting_text(30))
    (inbox / "inside.txt").write_text(meeting_text(31))
    (inbox / "outside.txt").symlink_to(secret)
    (inbox / "escape.txt").symlink_to("../secret.txt")
    (inbox / "alias.txt").symlink_to(inbox / "inside.txt")
    os.mkfifo(inbox / "pipe.txt")  # reading it would block forever
    report = make(inbox, extractive_bundle_dir, once=True).run()
    status = {Path(p).name: o.status for p, o in report.outcomes.items()}
    assert status["outside.txt"] == status["escape.txt"] == status["pipe.txt"] == "refused"
    assert "outside the watched folder" in report.outcomes[str(inbox / "outside.txt")].reason
    assert {status["inside.txt"], status["alias.txt"]} == {"summarized", "already"}
    assert not (inbox / "outside.summary.json").exists() and not (inbox / "escape.summary.json").exists()
    assert len(summary_records(inbox)) == 1


def test_failures_retry_with_backoff_then_give_up_and_recover_when_fixed(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    bad = inbox / "bad.json"
    bad.write_text('{"turns": [')
    db = inbox / ".sumctl" / "state.db"
    watcher = make(inbox, extractive_bundle_dir, max_attempts=3, backoff_seconds=0.2)
    with running(watcher):
        error_file = inbox / "bad.error.txt"
        wait_until(lambda: error_file.exists() and "gave up after 3" in error_file.read_text(), 30,
                   "three attempts (0.2 s then 0.8 s apart)")
        assert "malformed JSON" in error_file.read_text()
        [row] = job_rows(db)
        assert row["status"] == "failed" and row["next_retry"] is None

        (inbox / "good.txt").write_text(meeting_text(40))  # one bad file never stops the watcher
        wait_until(lambda: (inbox / "good.summary.json").exists(), 20, "good.summary.json")

        bad.write_text(json.dumps([{"speaker": "Ann", "text": "We fixed the export and will "
                                                              "ship it to customers next week."}]))
        wait_until(lambda: (inbox / "bad.summary.json").exists(), 20, "the fixed file's summary")
        wait_until(lambda: not (inbox / "bad.error.txt").exists(), 10, "the stale error file to go")
    # The fixed file's old failure is history, not a failed file: `status` must not count it.
    statuses = sorted(r["status"] for r in job_rows(db))
    assert statuses == ["done", "done"]


def test_a_second_watcher_on_the_same_folder_is_refused(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    with running(make(inbox, extractive_bundle_dir)):
        with pytest.raises(StateLockedError, match="another `sumctl watch`"):
            make(inbox, extractive_bundle_dir, once=True).run()


def test_temp_outputs_left_by_a_kill_are_swept(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.txt").write_text(meeting_text(50))
    stale = inbox / ".a.summary.json.k2j3h4.tmp"
    stale.write_text('{"half": ')
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = inbox / ".b.summary.md.abcdef.tmp"  # may be another process writing right now
    fresh.write_text("# half")
    make(inbox, extractive_bundle_dir, once=True).run()
    assert not stale.exists() and fresh.exists()
    assert (inbox / "a.summary.json").exists()


@pytest.mark.slow
def test_batch_summarizes_queued_files_together_and_sets_a_bad_one_aside(tmp_path, tiny_t5_bundle,
                                                                         monkeypatch):
    from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend

    calls = []
    generate = OnnxT5Backend.generate

    def counting(self, prompts, options):  # the real generate, counted
        calls.append(len(prompts))
        return generate(self, prompts, options)

    monkeypatch.setattr(OnnxT5Backend, "generate", counting)
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"good{i}.txt").write_text(meeting_text(70 + i, turns=3))
    (inbox / "bad.json").write_text('{"turns": [')
    report = make(inbox, tiny_t5_bundle, once=True, settle_seconds=0, batch=3, threads=1,
                  length="short").run()

    assert report.summarized == 3
    bad = report.outcomes[str(inbox / "bad.json")]
    assert bad.status == "failed" and "malformed JSON" in bad.reason
    assert "malformed JSON" in (inbox / "bad.error.txt").read_text()
    # Every transcript fits one chapter, so a call with several prompts means several files.
    assert max(calls) >= 2, f"generate calls {calls}: the files were not batched"
    batches = {Path(p).name: o.batch for p, o in report.outcomes.items() if o.status == "summarized"}
    assert max(batches.values()) >= 2 and sum(calls) == 3
    records = summary_records(inbox)
    assert {p.name: r["watch"]["batch"] for p, r in records.items()} == {
        name.replace(".txt", ".summary.json"): n for name, n in batches.items()}
    for path, record in records.items():
        source = inbox / path.name.replace(".summary.json", ".txt")
        assert record["source_sha256"] == sha(source) and record["text"]
        assert record["timings"]["summarize_s"] > 0
    rows = job_rows(inbox / ".sumctl" / "state.db")
    assert sorted(Path(r["path"]).name for r in rows) == ["bad.json", "good0.txt", "good1.txt",
                                                          "good2.txt"]
    assert sorted((r["status"], r["runs"]) for r in rows) == [("done", 1)] * 3 + [("failed", 0)]
    assert all(0 < r["model_seconds"] <= r["seconds"] for r in rows if r["status"] == "done")

    again = make(inbox, tiny_t5_bundle, once=True, settle_seconds=0, batch=3, threads=1,
                 length="short").run()
    assert again.summarized == 0 and len(job_rows(inbox / ".sumctl" / "state.db")) == 4


POISON_BACKEND = '''
import time

from sumctl.runtime.backends.extractive import ExtractiveBackend


class PoisonBackend(ExtractiveBackend):
    """The extractive baseline, failing any call that holds a prompt with POISON in it."""

    name = "poison-test"
    calls = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        time.sleep(0.5)  # loads like a real model: the backlog is queued before the first batch

    def generate(self, prompts, options):
        PoisonBackend.calls.append(len(prompts))
        if any("POISON" in p for p in prompts):
            raise RuntimeError("the model choked on POISON")
        return super().generate(prompts, options)
'''


@pytest.fixture
def poison_plugin(tmp_path, monkeypatch):
    """A bundle for a plug-in backend, registered through the real registry: the extractive
    baseline, except that a call holding a prompt with POISON fails. Returns (bundle, class)."""
    return plugin_backend(tmp_path, monkeypatch, POISON_BACKEND, "sumctl_poison_test",
                          "PoisonBackend", name="poison-test")


def test_a_failing_batch_is_redone_one_by_one_so_only_the_bad_file_fails(tmp_path, poison_plugin):
    bundle, backend = poison_plugin
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.txt").write_text(meeting_text(80))
    (inbox / "poison.txt").write_text(meeting_text(81) + "Bob: POISON is on the agenda today.\n")
    (inbox / "b.txt").write_text(meeting_text(82))
    report = make(inbox, bundle, once=True, settle_seconds=0, batch=3).run()

    assert backend.calls[0] == 3, "the three files were not tried as one batch"
    status = {Path(p).name: o for p, o in report.outcomes.items()}
    assert status["a.txt"].status == status["b.txt"].status == "summarized"
    assert status["a.txt"].batch == status["b.txt"].batch == 1
    assert status["poison.txt"].status == "failed"
    assert "RuntimeError: the model choked on POISON" in status["poison.txt"].reason
    assert "choked on POISON" in (inbox / "poison.error.txt").read_text()
    assert sorted(p.name for p in summary_records(inbox)) == ["a.summary.json", "b.summary.json"]
    rows = {Path(r["path"]).name: r for r in job_rows(inbox / ".sumctl" / "state.db")}
    assert {n: (r["status"], r["attempts"]) for n, r in rows.items()} == {
        "a.txt": ("done", 0), "b.txt": ("done", 0), "poison.txt": ("failed", 1)}


def test_same_content_twice_in_one_batch_is_summarized_once(tmp_path, poison_plugin):
    bundle, backend = poison_plugin
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name, seed in (("first.txt", 90), ("copy.txt", 90), ("other.txt", 91)):
        (inbox / name).write_text(meeting_text(seed))
    report = make(inbox, bundle, once=True, settle_seconds=0, batch=3).run()
    assert backend.calls[0] == 2, "the two distinct files were not batched"
    status = sorted(o.status for o in report.outcomes.values())
    # One of the two copies is summarized, the other then finds its job done, as one by one.
    assert status == ["already", "summarized", "summarized"]
    rows = job_rows(inbox / ".sumctl" / "state.db")
    assert len(rows) == 2 and {(r["status"], r["runs"]) for r in rows} == {("done", 1)}
    assert len(summary_records(inbox)) == 2


def test_batch_must_be_positive(tmp_path, extractive_bundle_dir):
    with pytest.raises(SumctlError, match="--batch 0: need at least one file per batch"):
        make(tmp_path, extractive_bundle_dir, batch=0)


# --- one key for claims and look-ups: a plain run, then another kind of output -----------------

def _minutes_ready(inbox: Path) -> list[Path]:
    return [p for p in inbox.glob("*.summary.json")
            if "action_items" in json.loads(p.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("second", [{"minutes": True}, {"minutes": False, "clean": False},
                                    {"minutes": True, "clean": False}],
                         ids=["minutes", "keep-fillers", "both"])
def test_a_plain_run_then_another_kind_of_output_does_every_file_again(tmp_path, extractive_bundle_dir,
                                                                       second):
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"m{i}.txt").write_text(meeting_text(70 + i) + "Bob: Alice will send the budget by Friday.\n")
    first = make(inbox, extractive_bundle_dir, once=True, minutes=False).run()
    assert first.summarized == 3 and not _minutes_ready(inbox)
    again = make(inbox, extractive_bundle_dir, once=True, **second).run()
    # Another output of the same content is another job: none of them is "already" done.
    assert again.summarized == 3, {p: o.status for p, o in again.outcomes.items()}
    if second.get("minutes"):
        assert len(_minutes_ready(inbox)) == 3
    # And each kind, asked again, is found done.
    assert make(inbox, extractive_bundle_dir, once=True, **second).run().summarized == 0


def test_retry_failed_with_minutes_gives_the_minutes_jobs_fresh_attempts(tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "long.txt").write_text(meeting_text(80, turns=40))
    failed = make(inbox, extractive_bundle_dir, once=True, minutes=True, max_bytes=100,
                  max_attempts=1).run()
    assert failed.failed == 1 and not _minutes_ready(inbox)
    # Raised cap, fresh attempts: the minutes job that gave up is done now.
    retried = make(inbox, extractive_bundle_dir, once=True, minutes=True, retry_failed=True,
                   max_attempts=1).run()
    assert retried.summarized == 1, {p: o.status for p, o in retried.outcomes.items()}
    assert len(_minutes_ready(inbox)) == 1


# What WatchConfig.job_variant (before SummaryOptions, commit c9b9600) wrote into the state for
# these options. Its default was the plain summary: `minutes=False` since minutes are the default.
RECORDED_VARIANTS = [
    ({"minutes": False}, "medium"),
    ({"length": "short", "minutes": True}, "short+minutes:default:gfm"),
    ({}, "medium+minutes:default:gfm"),  # the new default finds an earlier --minutes run's jobs
    ({"clean": False, "minutes": False}, "medium+keep-fillers"),
    ({"length": "long", "minutes": True, "minutes_method": "cues", "tasks": "obsidian", "clean": False},
     "long+minutes:cues:obsidian+keep-fillers"),
    ({"tasks": "obsidian", "minutes": False}, "medium"),  # a task style without minutes changes nothing
]


def _state_from_c9b9600(inbox: Path, bundle_dir: Path, transcript: Path, recorded: str) -> Path:
    """The state c9b9600 wrote after summarizing `transcript` under the variant `recorded`: the
    same tables, with the variant in a column named `length`."""
    from sumctl.runtime.bundle import load_bundle
    from sumctl.runtime.watch.state import State

    model = load_bundle(bundle_dir).sha256
    path = inbox / ".sumctl" / "state.db"
    State(path).close()
    db = sqlite3.connect(path)
    for table in ("jobs", "sessions"):
        db.execute(f"ALTER TABLE {table} RENAME COLUMN variant TO length")
    db.execute("INSERT INTO jobs (sha256, model, length, path, status, created_at, updated_at, "
               "finished_at) VALUES (?, ?, ?, ?, 'done', 1, 1, 1)",
               (sha(transcript), model, recorded, str(transcript)))
    db.execute("INSERT INTO sessions (pid, root, model, length, started_at) VALUES (1, ?, ?, ?, 1)",
               (str(inbox), model, recorded))
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("fields, recorded", RECORDED_VARIANTS)
def test_a_state_written_before_summary_options_keeps_its_jobs(tmp_path, extractive_bundle_dir,
                                                               fields, recorded):
    from sumctl.runtime.watch.state import State

    inbox = tmp_path / "in"
    inbox.mkdir()
    transcript = inbox / "m.txt"
    transcript.write_text(meeting_text(90))
    path = _state_from_c9b9600(inbox, extractive_bundle_dir, transcript, recorded)
    # `sumctl status` reads it as it is, before any watcher migrates it.
    old = State(path, readonly=True).report()
    assert old["counts"]["done"] == 1 and old["last_session"]["variant"] == recorded
    report = make(inbox, extractive_bundle_dir, once=True, **fields).run()
    # Found done under its old key: not summarized again after the upgrade.
    assert [o.status for o in report.outcomes.values()] == ["already"], report.outcomes
    [row] = job_rows(inbox / ".sumctl" / "state.db")
    assert row["variant"] == recorded


def test_a_folder_watched_before_minutes_became_the_default_gets_its_minutes_once(
        tmp_path, extractive_bundle_dir):
    inbox = tmp_path / "in"
    inbox.mkdir()
    transcript = inbox / "m.txt"
    transcript.write_text(meeting_text(91) + "Bob: Alice will send the budget by Friday.\n")
    _state_from_c9b9600(inbox, extractive_bundle_dir, transcript, "medium")  # a plain default run
    # --summary-only is the old default: nothing to redo.
    assert make(inbox, extractive_bundle_dir, once=True, minutes=False).run().summarized == 0
    # The new default redoes the file once, to write its minutes...
    upgraded = make(inbox, extractive_bundle_dir, once=True).run()
    assert upgraded.summarized == 1 and len(_minutes_ready(inbox)) == 1
    # ...and then finds it done, as it does the plain summary.
    assert make(inbox, extractive_bundle_dir, once=True).run().summarized == 0
    assert make(inbox, extractive_bundle_dir, once=True, minutes=False).run().summarized == 0
    assert {row["variant"] for row in job_rows(inbox / ".sumctl" / "state.db")} == {
        "medium", "medium+minutes:default:gfm"}
