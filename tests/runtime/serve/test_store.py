"""The serve job store: a real SQLite database and real files in a temporary state folder."""

from __future__ import annotations

import json
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from sumctl.runtime.errors import StateLockedError, SumctlError
from sumctl.runtime.options import SummaryOptions
from sumctl.runtime.serve import JobStore, QueueFullError
from serve_runtime_fixtures import submit_meeting as submit
from watch_fixtures import meeting_text

OPTIONS = SummaryOptions(length="short")


@pytest.fixture
def store(serve_store):
    return serve_store


@pytest.fixture(scope="module")
def summary(extractive_bundle_dir):
    from sumctl.runtime.summarizer import Summarizer
    from sumctl.runtime.transcript import parse_bytes

    transcript = parse_bytes(meeting_text(1).encode(), name="standup.txt")
    return Summarizer(extractive_bundle_dir).summarize(transcript, OPTIONS)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_folder_is_private_and_the_database_is_wal(tmp_path, store):
    state = tmp_path / "state"
    for folder in (state, state / "transcripts", state / "outputs"):
        assert mode(folder) == 0o700, folder
    job = submit(store)
    assert mode(store.transcript_path(job.id)) == 0o600
    assert store.transcript_path(job.id).read_bytes() == meeting_text(0).encode()
    with sqlite3.connect(state / "serve.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        # Committed when submit returns: another connection sees the pending row.
        assert db.execute("SELECT status FROM serve_jobs WHERE id=?", (job.id,)).fetchone() == ("pending",)


def test_a_job_reads_back_as_it_was_submitted_and_shows_no_path(tmp_path, store):
    job = store.submit(b"Ann: hi there.\n", filename="C:\\Users\\ann\\week\x07ly.vtt", options=OPTIONS,
                       input_format="text", meeting_date="2026-10-07",
                       webhook="https://hooks.example.com/x")
    assert store.get(job.id) == job
    assert job.status == "pending" and job.runs == 0 and job.error is None
    assert job.filename == "weekly.vtt"  # the last component, control characters dropped
    assert SummaryOptions.from_dict(job.options) == OPTIONS
    assert (job.input_format, job.meeting_date, job.webhook) == ("text", "2026-10-07",
                                                                 "https://hooks.example.com/x")
    view = json.dumps(job.to_dict())
    assert str(tmp_path) not in view and job.id in view
    assert len(job.id) == 22 and job.id != submit(store).id


@pytest.mark.parametrize("kwargs, message", [
    ({"input_format": "docx"}, "input format 'docx': unknown"),
    ({"meeting_date": "07/10/2026"}, "not a date"),
    ({"meeting_date": "2026-02-30"}, "not a date"),
    ({"webhook": "ftp://example.com"}, "webhook 'ftp://example.com': not an http"),
])
def test_a_bad_submission_is_one_line_and_stores_nothing(store, kwargs, message):
    with pytest.raises(SumctlError, match=message):
        submit(store, **kwargs)
    assert store.count() == 0 and list(store.transcripts.iterdir()) == []


def test_list_is_newest_first_and_pages(store):
    ids = [submit(store, n).id for n in range(5)]
    assert [j.id for j in store.list()] == ids[::-1]
    assert [j.id for j in store.list(limit=2, offset=1)] == ids[3:1:-1]
    assert store.count() == 5
    assert store.counts() == {"pending": 5, "running": 0, "done": 0, "failed": 0}


def test_a_full_queue_is_refused_until_a_job_ends(tmp_path, summary):
    store = JobStore(tmp_path / "state", max_queue=2)
    a, _ = submit(store, 1), submit(store, 2)
    with pytest.raises(QueueFullError, match="the queue is full \\(2 jobs"):
        submit(store, 3)
    assert store.count() == 2 and len(list(store.transcripts.iterdir())) == 2
    assert store.claim_next().id == a.id  # running still counts
    with pytest.raises(QueueFullError):
        submit(store, 3)
    store.finish(a.id, summary)
    submit(store, 3)
    store.close()


def test_claims_go_oldest_first_and_a_finished_job_is_never_claimed_again(store, summary):
    first, second = submit(store, 1), submit(store, 2)
    claimed = store.claim_next()
    assert claimed.id == first.id and claimed.status == "running" and claimed.runs == 1
    assert claimed.started_at is not None
    assert store.claim_next().id == second.id
    assert store.claim_next() is None
    done = store.finish(first.id, summary)
    assert done.status == "done" and done.seconds >= 0 and done.finished_at >= done.started_at
    failed = store.fail(second.id, "m2.txt: broken\nsecond line")
    assert failed.status == "failed" and failed.error == "m2.txt: broken second line"
    assert store.requeue_interrupted() == 0
    assert store.claim_next() is None
    # A finished job is not finished again (a late worker after a requeue).
    assert store.finish(first.id, summary) is None and store.fail(first.id, "x") is None
    assert store.get(first.id).status == "done"


def test_finish_writes_what_summarize_writes_before_done(store, summary, tmp_path):
    from sumctl.runtime.outputs import OutputFolder, write_summary

    job = submit(store)
    assert store.record(job.id) is None and store.markdown(job.id) is None
    store.claim_next()
    assert store.record(job.id) is None  # running: nothing to show yet
    store.finish(job.id, summary)
    with OutputFolder(tmp_path / "cli") as folder:
        write_summary(summary, folder, "m0", ("md", "json"), source_key="m0.txt")
    assert store.record(job.id) == json.loads((tmp_path / "cli" / "m0.summary.json").read_text())
    assert store.markdown(job.id) == (tmp_path / "cli" / "m0.summary.md").read_text()
    assert sorted(p.name for p in store.outputs.iterdir()) == [f"{job.id}.summary.json",
                                                               f"{job.id}.summary.md"]


def test_running_jobs_go_back_to_pending_at_start_up(tmp_path):
    store = JobStore(tmp_path / "state")
    job = submit(store)
    store.claim_next()
    store.close()  # as a kill leaves it: the row still says running
    again = JobStore(tmp_path / "state")
    assert again.get(job.id).status == "running"
    assert again.requeue_interrupted() == 1
    claimed = again.claim_next()
    assert claimed.id == job.id and claimed.runs == 2
    again.close()


def test_delete_removes_the_row_and_files_and_a_running_result_is_dropped(store, summary):
    done = submit(store, 1)
    store.claim_next()
    store.finish(done.id, summary)
    assert store.delete(done.id)
    assert store.get(done.id) is None and not store.delete(done.id)
    assert list(store.transcripts.iterdir()) == [] and list(store.outputs.iterdir()) == []
    running = submit(store, 2)
    store.claim_next()
    assert store.delete(running.id)
    assert store.finish(running.id, summary) is None and store.fail(running.id, "x") is None
    assert list(store.outputs.iterdir()) == [] and store.count() == 0


def test_purge_forgets_old_finished_jobs_with_their_files(store, summary):
    old, failed, waiting = submit(store, 1), submit(store, 2), submit(store, 3)
    store.claim_next(), store.claim_next()
    store.finish(old.id, summary)
    store.fail(failed.id, "no")
    assert store.purge(3600) == 0
    time.sleep(0.02)
    assert store.purge(0.01) == 2
    assert [j.id for j in store.list()] == [waiting.id]
    assert [p.name for p in store.transcripts.iterdir()] == [waiting.id]
    assert list(store.outputs.iterdir()) == []


def test_one_process_per_state_folder(tmp_path, store):
    with pytest.raises(StateLockedError) as e:
        JobStore(tmp_path / "state")
    assert str(tmp_path / "state") in str(e.value) and "\n" not in str(e.value)
    assert "another `sumctl serve`" in str(e.value)
    store.close()
    JobStore(tmp_path / "state").close()  # free once the holder closes


def test_files_no_row_owns_are_swept_at_start_up(tmp_path):
    store = JobStore(tmp_path / "state")
    kept = submit(store)
    store.close()
    orphan = tmp_path / "state" / "transcripts" / ("x" * 22)
    orphan.write_bytes(b"written, then killed before its row committed")
    (tmp_path / "state" / "outputs" / f"{'y' * 22}.summary.md").write_text("deleted job")
    (tmp_path / "state" / "transcripts" / f".{kept.id}.123-abcdef01.tmp").write_bytes(b"half")
    store = JobStore(tmp_path / "state")
    assert [p.name for p in store.transcripts.iterdir()] == [kept.id]
    assert list(store.outputs.iterdir()) == []
    store.close()


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "a" * 21, "a/" + "b" * 20])
def test_an_id_that_is_not_ours_never_reaches_the_filesystem(store, bad):
    with pytest.raises(SumctlError, match="not a sumctl serve job id"):
        store.transcript_path(bad)
    assert store.get(bad) is None and store.record(bad) is None and not store.delete(bad)


def test_a_job_whose_outputs_cannot_be_written_is_not_done(store):
    class Unwritable:  # a record that breaks the schema: write_summary refuses it, writing nothing
        def to_dict(self):
            return {"summary": 42}

    job = submit(store)
    store.claim_next()
    with pytest.raises(SumctlError, match="breaks its schema"):
        store.finish(job.id, Unwritable())
    assert store.get(job.id).status == "running" and list(store.outputs.iterdir()) == []


def test_an_ended_job_is_unannounced_until_marked(store, summary):
    done, failed, waiting = submit(store, 0), submit(store, 1), submit(store, 2)
    for job in (done, failed):
        assert store.claim_next().id == job.id
    store.finish(done.id, summary)
    store.fail(failed.id, "the model ran out of memory")
    assert [j.id for j in store.unannounced()] == [done.id, failed.id]  # not the pending one
    store.mark_announced(done.id)
    assert [j.id for j in store.unannounced()] == [failed.id]
    assert store.get(waiting.id).status == "pending"
