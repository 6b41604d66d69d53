"""Fault injection for `sumctl watch` and `sumctl summarize` (issue 12), with real processes:
a real full filesystem (a small tmpfs), real permissions (root's overrides dropped with
setpriv), real signals, real kill -9, and bad content. Every fault must end as one line that
names the file and the fix, never a traceback, with nothing partial left behind."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from watch_fixtures import (SUMCTL, job_rows, meeting_text, one_line_error, run, summary_records,
                            wait_until)

# Root reads and writes anything; these drop the two capabilities that let it.
_DROP_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
             "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture(scope="session")
def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply to this user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): permissions cannot apply")
    return _DROP_DAC


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp") if ".sumctl" not in p.parts]


# --- 3. filesystem faults ------------------------------------------------------------------------


def test_a_full_disk_pauses_work_logs_once_and_resumes(small_disk, extractive_bundle_dir,
                                                       watch_process):
    disk = small_disk()
    inbox = disk.path / "in"
    inbox.mkdir()
    watcher = watch_process(inbox, "--model", extractive_bundle_dir, "--settle", "1",
                            "--log-json")
    watcher.wait_for_log('"event": "start"')
    for i in range(5):
        (inbox / f"m{i}.txt").write_text(meeting_text(100 + i))
    disk.fill()  # before the files settle: their summaries meet a full disk
    watcher.wait_for_log('"event": "paused"', timeout=30)
    time.sleep(3)  # a few probes while still full: one line, not one per probe or per file
    assert watcher.proc.poll() is None, watcher.log()
    events = [json.loads(ln) for ln in watcher.log().splitlines() if ln.startswith("{")]
    assert [e["event"] for e in events].count("paused") == 1
    assert not [e for e in events if e["event"] in ("failed", "internal_error")], events
    assert not list(inbox.glob("*.error.txt")) and not temporaries(inbox)

    disk.free()
    watcher.wait_for_log('"event": "resumed"', timeout=30)
    wait_until(lambda: len(list(inbox.glob("*.summary.json"))) == 5, 30, "all five summaries")
    assert watcher.stop() == 0
    status = json.loads(run("status", inbox, "--json").stdout)
    assert status["counts"] | {"refused": 0} == {
        "done": 5, "pending": 0, "running": 0, "failed": 0, "retrying": 0, "gave_up": 0,
        "refused": 0}
    assert all(r["attempts"] == 0 for r in job_rows(inbox / ".sumctl/state.db"))


def test_a_read_only_state_is_one_line_naming_state(tmp_path, extractive_bundle_dir, unprivileged):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.txt").write_text(meeting_text(1))
    assert run("watch", inbox, "--model", extractive_bundle_dir, "--once").returncode == 0
    state = inbox / ".sumctl" / "state.db"
    (inbox / "b.txt").write_text(meeting_text(2))
    os.chmod(state, 0o444)
    result = run("watch", inbox, "--model", extractive_bundle_dir, "--once", prefix=unprivileged)
    one_line_error(result, str(state), "--state")
    os.chmod(state.parent, 0o555)
    os.chmod(state, 0o644)
    result = run("watch", inbox, "--model", extractive_bundle_dir, "--once",
                 "--state", tmp_path / "ro" / "x.db", prefix=unprivileged)
    assert result.returncode == 0  # another --state is the fix, and it works
    os.chmod(state.parent, 0o755)
    os.chmod(tmp_path / "ro", 0o555)
    result = run("watch", inbox, "--model", extractive_bundle_dir, "--once",
                 "--state", tmp_path / "ro" / "y.db", prefix=unprivileged)
    one_line_error(result, "y.db", "--state")
    result = run("status", inbox, "--state", tmp_path / "ro" / "y.db", prefix=unprivileged)
    one_line_error(result, "y.db")


def test_summarize_into_a_read_only_or_full_folder_is_one_line_with_nothing_left(
        tmp_path, small_disk, extractive_bundle_dir, unprivileged):
    meeting = tmp_path / "meeting.txt"
    meeting.write_text(meeting_text(3))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = run("summarize", meeting, "--model", extractive_bundle_dir, "--out", locked,
                 prefix=unprivileged)
    one_line_error(result, str(locked), "permission denied")
    assert list(locked.iterdir()) == []

    disk = small_disk(size_kb=1024)
    disk.fill()
    result = run("summarize", meeting, "--model", extractive_bundle_dir, "--out", disk.path)
    one_line_error(result, str(disk.path), "disk is full")
    assert sorted(p.name for p in disk.path.iterdir()) == ["filler.bin"]
    disk.free()
    result = run("summarize", meeting, "--model", extractive_bundle_dir, "--out", disk.path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in disk.path.iterdir()) == ["meeting.summary.json",
                                                          "meeting.summary.md"]


# --- 5. unreadable files -------------------------------------------------------------------------


def test_an_unreadable_file_gets_an_error_file_a_state_row_and_a_retry(
        tmp_path, extractive_bundle_dir, unprivileged):
    inbox = tmp_path / "in"
    inbox.mkdir()
    hidden = inbox / "private.txt"
    hidden.write_text(meeting_text(4))
    os.chmod(hidden, 0)
    args = ("watch", inbox, "--model", extractive_bundle_dir, "--once", "--backoff", "0")
    result = run(*args, prefix=unprivileged)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    error = (inbox / "private.error.txt").read_text()
    assert "permission denied" in error and "attempts: 1" in error
    status = json.loads(run("status", inbox, "--json").stdout)["counts"]
    assert status["failed"] == 1 and status["retrying"] == 1
    run(*args, prefix=unprivileged)  # the retry
    assert "attempts: 2" in (inbox / "private.error.txt").read_text()

    os.chmod(hidden, 0o644)  # fixed: fresh attempts, a summary, the error file gone
    result = run(*args, prefix=unprivileged)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (inbox / "private.summary.json").exists() and not (inbox / "private.error.txt").exists()
    status = json.loads(run("status", inbox, "--json").stdout)["counts"]
    assert status["done"] == 1 and status["failed"] == 0


# --- 7. bad content and bad manifests ------------------------------------------------------------


def test_hostile_json_and_manifests_are_one_line_errors_in_both_commands(tmp_path,
                                                                        extractive_bundle_dir):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    digits = tmp_path / "digits.json"
    digits.write_text('[{"speaker": "A", "text": "hi", "start": ' + "9" * 5000 + "}]")
    wide = tmp_path / "wide.json"
    wide.write_text('[{"speaker": "A", "text": "hi", "start": 1' + "0" * 400 + "}]")
    hostile = ((deep, "nested too deeply"), (digits, "not a transcript"), (wide, "digits"))
    # Independent processes, each on its own input: run side by side, checked one by one.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda b: run("summarize", b[0], "--model", extractive_bundle_dir),
                                hostile))
    for (bad, needle), result in zip(hostile, results):
        one_line_error(result, bad.name, needle)

    inbox = tmp_path / "in"
    inbox.mkdir()
    for bad in (deep, digits, wide):
        shutil.copy(bad, inbox)
    result = run("watch", inbox, "--model", extractive_bundle_dir, "--once")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(list(inbox.glob("*.error.txt"))) == 3

    meeting = tmp_path / "m.txt"
    meeting.write_text(meeting_text(5))
    bundles = []
    for name, change in (("files-string", {"files": "x"}),
                         ("files-escape", {"files": {"../../etc/passwd": "0" * 64}}),
                         ("prompts-list", {"prompts": ["x"]}),
                         ("deep", None)):
        bundle = tmp_path / name
        shutil.copytree(extractive_bundle_dir, bundle)
        manifest = bundle / "sumctl.json"
        if change is None:
            manifest.write_text("[" * 100_000 + "]" * 100_000)
        else:
            manifest.write_text(json.dumps(json.loads(manifest.read_text()) | change))
        bundles.append(bundle)
    # summarize writes nothing here (each fails on its own bundle): side by side; the watches,
    # which share one inbox and its state, one after another.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda b: run("summarize", meeting, "--model", b), bundles))
    for bundle, result in zip(bundles, results):
        manifest = bundle / "sumctl.json"
        one_line_error(result, str(manifest), "re-export")
        one_line_error(run("watch", inbox, "--model", bundle, "--once"), str(manifest))


def test_summarize_a_long_non_ascii_name(tmp_path, extractive_bundle_dir):
    meeting = tmp_path / ("Планирование" * 10 + ".txt")  # 240 bytes of name
    meeting.write_text(meeting_text(6))
    result = run("summarize", meeting, "--model", extractive_bundle_dir, "--format", "txt")
    assert result.returncode == 0, result.stderr
    written = sorted(p for p in tmp_path.iterdir() if ".summary." in p.name)
    assert len(written) == 2 and all(len(p.name.encode()) <= 255 for p in written)


# --- 8. signals ----------------------------------------------------------------------------------


def test_sighup_stops_the_watcher_like_sigterm(tmp_path, extractive_bundle_dir, watch_process):
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(20):
        (inbox / f"m{i:02d}.txt").write_text(meeting_text(i, turns=1000))
    db = inbox / ".sumctl" / "state.db"
    watcher = watch_process(inbox, "--model", extractive_bundle_dir, "--settle", "0.2")
    wait_until(lambda: job_rows(db, "status='done'"), 60, "a first job done", interval=0.02)
    watcher.signal(signal.SIGHUP)
    assert watcher.wait() == 0 and "SIGHUP: stopping" in watcher.log()
    assert not job_rows(db, "status='running'")


# --- all of it at once ---------------------------------------------------------------------------


def test_chaos_kill_9_full_disk_loops_and_unreadable_files(tmp_path, small_disk,
                                                           extractive_bundle_dir, unprivileged):
    """200 files; 10 rounds of a watcher killed with SIGKILL at a random moment, while the disk
    fills and frees, a symlink loop and an unreadable file sit in the tree and an editor
    replaces files atomically. After a last --once, everything adds up."""
    rng = random.Random(12)
    disk = small_disk(size_kb=24 * 1024)
    inbox = disk.path / "in"
    (inbox / "team").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("Mallory: the code is 4471.\n")
    good: dict[Path, bytes] = {}
    for i in range(200):
        path = inbox / ("team" if i % 3 == 0 else "") / f"m{i:03d}.txt"
        good[path] = meeting_text(1000 + i, turns=rng.randint(5, 60)).encode()
        path.write_bytes(good[path])
    (inbox / "loop.txt").symlink_to("loop.txt")
    (inbox / "team" / "up").symlink_to("..", target_is_directory=True)
    (inbox / "team" / "out").symlink_to(outside, target_is_directory=True)
    locked = inbox / "locked.txt"
    locked.write_text(meeting_text(7))
    os.chmod(locked, 0)

    args = ["--model", extractive_bundle_dir, "--recursive", "--settle", "0.2",
            "--backoff", "0", "--log-json"]
    for round_ in range(10):
        proc = subprocess.Popen([*unprivileged, *SUMCTL, "watch", inbox, *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.5))
        if round_ % 3 == 1:
            disk.fill()
        # An editor's save: write a temporary beside the file, then rename it over the file.
        victim = rng.choice(sorted(good))
        good[victim] = meeting_text(5000 + round_).encode()
        temp = victim.with_name(f".{victim.name}.swp")
        try:
            temp.write_bytes(good[victim])
            os.replace(temp, victim)
        except OSError:  # the disk is full right now: the editor fails, the file is unchanged
            temp.unlink(missing_ok=True)
            good[victim] = victim.read_bytes()
        time.sleep(rng.uniform(0.1, 1.0))
        proc.kill()
        proc.wait(timeout=30)
        disk.free()

    os.chmod(locked, 0o644)  # so that every file can end summarized
    result = subprocess.run([*unprivileged, *SUMCTL, "watch", inbox, *args, "--once"],
                            capture_output=True, text=True, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    good[locked] = locked.read_bytes()

    records = summary_records(inbox)
    by_source: dict[str, list[Path]] = {}
    for path, record in records.items():
        by_source.setdefault(record["source_key"], []).append(path)
    for path, data in good.items():
        sets = by_source.get(str(path), [])
        assert len(sets) == 1, (path, sets)
        record = records[sets[0]]
        assert record["watch"]["sha256"] == hashlib.sha256(data).hexdigest(), path
        assert sets[0].with_name(sets[0].name.replace(".json", ".md")).is_file()
    assert set(by_source) == {str(p) for p in good}
    assert temporaries(inbox) == [] and temporaries(outside) == []
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert list(inbox.rglob("*.error.txt")) == []
    status = json.loads(run("status", inbox, "--json").stdout)
    counts = status["counts"]
    assert (counts["failed"], counts["running"], counts["pending"]) == (0, 0, 0), counts
    # Done jobs are the files' contents, present and past (an edited file's old content is
    # done too); they belong to exactly the files on disk.
    done_paths = {r["path"] for r in job_rows(inbox / ".sumctl/state.db", "status='done'")}
    assert done_paths == {str(p) for p in good} and counts["done"] >= len(good)
    assert result.returncode == 1  # the loop is refused, and --once says so
    assert {Path(r["path"]).name for r in status["refusals"]} >= {"loop.txt"}
