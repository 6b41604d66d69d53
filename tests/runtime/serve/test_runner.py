"""The serve workers: real threads, a real store, the extractive model (and a slow plug-in of
it), and a real process killed with SIGKILL mid-batch."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.machine import usable_cores
from sumctl.runtime.options import SummaryOptions
from sumctl.runtime.serve import JobRunner, JobStore
from serve_runtime_fixtures import submit_meeting as submit
from watch_fixtures import wait_until

OPTIONS = SummaryOptions(length="short")


@pytest.fixture
def store(serve_store):
    return serve_store


def test_workers_summarize_every_job_and_report_after_the_commit(store, extractive_bundle_dir):
    seen = []

    def on_finish(job):
        # Called after the commit: the store already says what the job says.
        seen.append((job.id, job.status, store.get(job.id).status))

    runner = JobRunner(store, str(extractive_bundle_dir), workers=2, threads=1, on_finish=on_finish)
    runner.start()
    ids = [submit(store, n).id for n in range(4)]
    for _ in ids:
        runner.notify()
    wait_until(lambda: len(seen) == 4, 30, "four jobs finished")
    runner.stop()
    assert sorted(seen) == sorted((i, "done", "done") for i in ids)
    assert store.counts() == {"pending": 0, "running": 0, "done": 4, "failed": 0}
    for job_id in ids:
        record = store.record(job_id)
        assert record["summary"] and record["source_key"] == store.get(job_id).filename
        assert store.get(job_id).runs == 1
    assert len(runner.seconds) == 4 and all(s > 0 for s in runner.seconds)
    assert runner.busy == 0


def test_a_bad_transcript_fails_with_one_line_and_the_next_job_still_runs(store, extractive_bundle_dir):
    finished = []
    runner = JobRunner(store, str(extractive_bundle_dir), threads=1, on_finish=finished.append)
    empty = submit(store, 1, data=b"   \n")
    too_big = store.submit(b"Ann: " + b"word " * 400, filename="big.txt",
                           options=OPTIONS.but(max_bytes=100))
    good = submit(store, 3)
    runner.start()
    wait_until(lambda: len(finished) == 3, 30, "three jobs finished")
    runner.stop()
    jobs = {j.id: j for j in finished}
    assert jobs[empty.id].status == "failed"
    assert jobs[empty.id].error == "m1.txt: the file is empty (nothing to summarize)"
    assert jobs[too_big.id].status == "failed" and "over the 100-byte cap" in jobs[too_big.id].error
    assert jobs[good.id].status == "done"
    assert all("\n" not in (j.error or "") and "Traceback" not in (j.error or "")
               for j in finished)


def test_a_bug_in_the_model_fails_the_job_not_the_worker(store):
    class Broken:
        calls = 0

        def summarize(self, transcript, options, *, meeting_date=None):
            Broken.calls += 1
            raise RuntimeError("tensor shape (1, 512) vs (1, 513)\n  at frame 0\n  at frame 1")

    runner = JobRunner(store, None, summarizer_factory=lambda model, threads: Broken())
    runner.start()
    first, second = submit(store, 1), submit(store, 2)
    runner.notify()
    wait_until(lambda: store.counts()["failed"] == 2, 10, "both jobs failed")
    runner.stop()
    assert store.get(first.id).error == ("m1.txt: internal error: RuntimeError: tensor shape "
                                         "(1, 512) vs (1, 513)")
    assert Broken.calls == 2


def test_a_model_that_cannot_load_stops_start_with_one_line(store, tmp_path):
    runner = JobRunner(store, str(tmp_path / "no-such-bundle"), threads=1)
    with pytest.raises(SumctlError) as e:
        runner.start()
    assert "no-such-bundle" in str(e.value) and "\n" not in str(e.value)
    job = submit(store, 1)
    assert store.get(job.id).status == "pending"  # nothing was claimed by a worker without a model


def test_threads_are_planned_before_any_model_loads(store, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    loaded = []
    cores = usable_cores()
    runner = JobRunner(store, None, workers=cores + 1, threads=4,
                       summarizer_factory=lambda model, threads: loaded.append(threads))
    # The plan is made on construction: what each worker is given fits the cores...
    assert runner.threads == 1 and "using 1 thread(s) per worker" in runner.threads_warning
    # ...and oversubscribed workers make OpenMP sleep at its barriers, set before any load.
    assert loaded == [] and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    runner.start()
    runner.stop()
    assert loaded == [1] * (cores + 1)


def test_stop_lets_the_job_in_flight_finish(store, extractive_bundle_dir):
    release = threading.Event()

    class Gated:
        def __init__(self):
            from sumctl.runtime.summarizer import Summarizer

            self.inner = Summarizer(extractive_bundle_dir, threads=1)

        def summarize(self, *args, **kwargs):
            release.wait(10)
            return self.inner.summarize(*args, **kwargs)

    runner = JobRunner(store, None, summarizer_factory=lambda model, threads: Gated())
    runner.start()
    job = submit(store, 1)
    waiting = submit(store, 2)
    runner.notify()
    wait_until(lambda: runner.busy == 1, 10, "the worker on the first job")
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    release.set()
    stopper.join(15)
    assert not stopper.is_alive()
    assert store.get(job.id).status == "done"
    assert store.get(waiting.id).status == "pending"  # not started after the stop


CHILD = """
import sys, time
from sumctl.runtime.serve import JobRunner, JobStore
store = JobStore(sys.argv[1])
store.requeue_interrupted()
log = open(sys.argv[3], "a")
def finished(job):
    log.write(job.id + " " + job.status + "\\n")
    log.flush()
runner = JobRunner(store, sys.argv[2], workers=2, threads=1, on_finish=finished)
runner.start()
while store.counts()["pending"] or store.counts()["running"]:
    time.sleep(0.05)
runner.stop()
store.close()
print("drained")
"""


def rows(db, where: str) -> dict[str, tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return {r[0]: r[1:] for r in c.execute(f"SELECT id, status, runs FROM serve_jobs WHERE {where}")}


def test_a_kill_9_mid_batch_then_a_restart_finishes_every_job_exactly_once(tmp_path, slow_bundle_dir):
    state, log = tmp_path / "state", tmp_path / "finished.log"
    store = JobStore(state)
    ids = {submit(store, n).id for n in range(12)}
    store.close()
    command = [sys.executable, "-c", CHILD, str(state), str(slow_bundle_dir), str(log)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(rows(state / "serve.db", "status='done'")) >= 3, 60,
                   "three jobs done before the kill")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    interrupted = rows(state / "serve.db", "status='running'")
    done_before = rows(state / "serve.db", "status='done'")
    assert interrupted and len(done_before) < 12, "the kill did not land mid-batch"

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == "drained", again.stderr[-2000:]
    final = rows(state / "serve.db", "1")
    assert set(final) == ids and {status for status, _ in final.values()} == {"done"}
    # Only the jobs the kill interrupted ran twice; a done job was never claimed again.
    assert {i for i, (_, runs) in final.items() if runs == 2} == set(interrupted)
    assert all(runs in (1, 2) for _, runs in final.values())
    logged = [line.split()[0] for line in log.read_text().splitlines()]
    assert len(logged) == len(set(logged)) and set(logged) <= ids
    assert set(logged) >= ids - set(done_before)  # all of the second run's jobs were reported
    store = JobStore(state)
    try:
        for job_id in ids:
            assert store.record(job_id)["summary"] and store.markdown(job_id)
        assert sorted(p.name for p in store.transcripts.iterdir()) == sorted(ids)
        assert len(list(store.outputs.iterdir())) == 2 * len(ids)
    finally:
        store.close()
