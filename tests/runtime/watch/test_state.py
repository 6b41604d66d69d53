"""The durable job store: exactly-once keys, crash recovery, failures with backoff."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.errors import StateLockedError
from sumctl.runtime.watch.state import State, default_state_path

MAX = 3


@pytest.fixture
def state(tmp_path):
    s = State(default_state_path(tmp_path))
    s.acquire()
    yield s
    s.close()


def test_database_is_wal_and_a_heartbeat_makes_earlier_commits_durable(state):
    db = sqlite3.connect(state.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert state.path == state.path.parent / "state.db" and state.path.parent.name == ".sumctl"
    session, _ = state.start_session("/in", "m", "medium")
    assert not state.unsynced
    claim = state.claim("a", "m", "medium", "/in/a.txt", max_attempts=MAX)
    state.finish(claim.job.id, outputs=[], seconds=1, model_seconds=1)
    assert state.unsynced  # committed without an fsync...
    state.heartbeat(session)
    assert not state.unsynced  # ...until the next durable commit
    assert state.report()["last_session"]["beat_at"] is not None


def test_a_job_runs_once_then_is_done_for_any_path(state):
    first = state.claim("aaa", "model1", "medium", "/in/a.txt", max_attempts=MAX)
    assert first.decision == "run" and first.job.status == "running"
    assert state.claim("aaa", "model1", "medium", "/in/a.txt", max_attempts=MAX).decision == "busy"
    assert state.finish(first.job.id, outputs=["/in/a.summary.json"], seconds=0.5, model_seconds=0.4)
    again = state.claim("aaa", "model1", "medium", "/in/a.txt", max_attempts=MAX)
    assert again.decision == "done"
    # Renamed: same content, new path -> not again, and the new path is recorded.
    renamed = state.claim("aaa", "model1", "medium", "/in/b.txt", max_attempts=MAX)
    assert renamed.decision == "done"
    [job] = state.jobs()
    assert job.path == "/in/b.txt" and job.runs == 1 and job.status == "done"


def test_content_model_and_length_each_make_a_new_job(state):
    for sha, model, length in [("aaa", "m1", "medium"), ("bbb", "m1", "medium"),
                               ("aaa", "m2", "medium"), ("aaa", "m1", "short")]:
        claim = state.claim(sha, model, length, "/in/a.txt", max_attempts=MAX)
        assert claim.decision == "run", (sha, model, length)
        state.finish(claim.job.id, outputs=[], seconds=0.1, model_seconds=0.1)
    assert len(state.jobs()) == 4


def test_failures_back_off_then_give_up_until_the_content_changes(state):
    t0 = 1_000_000.0
    claim = state.claim("bad", "m", "medium", "/in/bad.json", max_attempts=MAX, now=t0)
    job = state.fail(claim.job.id, "malformed JSON", max_attempts=MAX, backoff_seconds=10, now=t0)
    assert (job.status, job.attempts, job.error, job.next_retry) == ("failed", 1, "malformed JSON", t0 + 10)
    assert state.claim("bad", "m", "medium", "/in/bad.json", max_attempts=MAX, now=t0 + 5).decision == "wait"

    claim = state.claim("bad", "m", "medium", "/in/bad.json", max_attempts=MAX, now=t0 + 10)
    assert claim.decision == "run"
    job = state.fail(claim.job.id, "malformed JSON", max_attempts=MAX, backoff_seconds=10, now=t0 + 10)
    assert job.next_retry == t0 + 10 + 40  # 4x longer each time

    claim = state.claim("bad", "m", "medium", "/in/bad.json", max_attempts=MAX, now=t0 + 50)
    job = state.fail(claim.job.id, "malformed JSON", max_attempts=MAX, backoff_seconds=10, now=t0 + 50)
    assert job.attempts == 3 and job.next_retry is None
    assert state.claim("bad", "m", "medium", "/in/bad.json", max_attempts=MAX,
                       now=t0 + 10**6).decision == "gave_up"
    # --retry-failed gives it a fresh set of attempts.
    assert state.reset_failed("m", "medium") == 1
    assert state.claim("bad", "m", "medium", "/in/bad.json", max_attempts=MAX).decision == "run"
    state.fail(state.job("bad", "m", "medium").id, "malformed JSON", max_attempts=1,
               backoff_seconds=10)
    # New content is a new job, and the path's old failure is no longer a failed file.
    assert state.claim("fixed", "m", "medium", "/in/bad.json", max_attempts=MAX).decision == "run"
    assert state.job("bad", "m", "medium") is None
    # The same bad content elsewhere still counts as failed there.
    state.claim("bad2", "m", "medium", "/in/other.json", max_attempts=MAX)
    state.fail(state.job("bad2", "m", "medium").id, "malformed JSON", max_attempts=MAX,
               backoff_seconds=10)
    assert state.claim("bad2", "m", "medium", "/in/other.json", max_attempts=MAX).decision == "wait"
    state.claim("again", "m", "medium", "/in/a.json", max_attempts=MAX)

    counts = state.report()["counts"]
    assert counts["running"] == 2 and counts["failed"] == 1


def test_report_counts_errors_and_throughput(state):
    done = state.claim("a", "m", "medium", "/in/a.txt", max_attempts=MAX)
    state.finish(done.job.id, outputs=[], seconds=2.0, model_seconds=1.5)
    bad = state.claim("b", "m", "medium", "/in/b.txt", max_attempts=1)
    state.fail(bad.job.id, "the file is empty", max_attempts=1, backoff_seconds=1)
    state.refuse("/in/link.txt", "symlink outside the folder")
    report = state.report()
    assert report["counts"] == {"done": 1, "pending": 0, "running": 0, "failed": 1, "retrying": 0,
                                "gave_up": 1, "refused": 1}
    assert report["last_errors"][0]["error"] == "the file is empty"
    assert report["refusals"][0]["path"] == "/in/link.txt"
    assert report["throughput"]["last_hour"] == {"done": 1, "per_hour": 1.0, "mean_seconds": 2.0,
                                                 "mean_model_seconds": 1.5}
    assert report["running_pid"] == os.getpid()


def test_second_watcher_on_the_same_state_is_refused(state):
    other = State(state.path)
    with pytest.raises(StateLockedError, match=f"pid {os.getpid()}"):
        other.acquire()
    other.close()


def test_hash_cache_is_invalidated_by_any_write(state, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one")
    st = f.stat()
    state.remember_hash(str(f), st, "sha-one")
    assert state.cached_hash(str(f), f.stat()) == "sha-one"
    f.write_text("two")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: ctime still moves
    assert state.cached_hash(str(f), f.stat()) is None


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(SumctlError, match="newer sumctl"):
        State(path)


def test_status_of_a_folder_never_watched(tmp_path):
    with pytest.raises(SumctlError, match="run `sumctl watch`"):
        State(tmp_path / "nothing.db", readonly=True)


def test_kill_9_mid_job_leaves_it_pending_and_the_lock_free(tmp_path):
    """A real process claims a job and is killed with SIGKILL while it runs."""
    path = tmp_path / "state.db"
    script = textwrap.dedent(f"""
        import sys, time
        from sumctl.runtime.watch.state import State
        s = State({str(path)!r}); s.acquire(); s.start_session("/in", "m", "medium")
        done = s.claim("done", "m", "medium", "/in/done.txt", max_attempts=3)
        s.finish(done.job.id, outputs=[], seconds=1, model_seconds=1)
        s.claim("inflight", "m", "medium", "/in/inflight.txt", max_attempts=3)
        print("claimed", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "claimed"
        busy = State(path)
        with pytest.raises(StateLockedError):
            busy.acquire()
        busy.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -9

    state = State(path)
    state.acquire()  # flock died with the process
    _, recovered = state.start_session("/in", "m", "medium")
    assert recovered == 1
    assert state.pending_paths("m", "medium") == ["/in/inflight.txt"]
    assert state.claim("inflight", "m", "medium", "/in/inflight.txt", max_attempts=3).decision == "run"
    assert state.claim("done", "m", "medium", "/in/done.txt", max_attempts=3).decision == "done"
    state.close()


def test_release_returns_an_abandoned_job_and_finish_then_refuses_it(state):
    claim = state.claim("a", "m", "medium", "/in/a.txt", max_attempts=MAX)
    assert state.release(claim.job.id)
    assert not state.finish(claim.job.id, outputs=[], seconds=1, model_seconds=1)
    assert state.job("a", "m", "medium").status == "pending"
    assert state.claim("a", "m", "medium", "/in/a.txt", max_attempts=MAX,
                       now=time.time()).decision == "run"
