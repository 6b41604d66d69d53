"""Fixtures for `sumctl watch`: a fast real model bundle, transcripts, and a real `sumctl watch`
subprocess with helpers that poll with deadlines (never a bare sleep as the only sync)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import pytest

__all__ = ["extractive_bundle_dir", "meeting_text", "wait_until", "summary_records", "job_rows",
           "WatchProcess", "watch_process", "Deadline", "make", "running", "SUMCTL", "run",
           "one_line_error", "SmallDisk", "small_disk"]

_WORDS = ("budget release login tests docs design roadmap customer launch pricing hiring server "
          "database migration security audit invoice onboarding dashboard latency backlog sprint "
          "vendor contract training support outage metrics").split()
_SPEAKERS = ("Alice", "Bob", "Carol", "Dan")


@pytest.fixture(scope="session")
def extractive_bundle_dir(tmp_path_factory) -> Path:
    """The extractive baseline bundle: a real bundle and backend, with no model weights."""
    from sumctl.runtime.backends.extractive import build_extractive_bundle

    path = tmp_path_factory.mktemp("bundles") / "extractive"
    build_extractive_bundle(path)
    return path


def meeting_text(seed: int, turns: int = 12) -> str:
    """A plausible `Speaker: text` transcript, different for every seed."""
    rng = random.Random(seed)
    lines = [f"Alice: This is meeting number {seed}."]
    for _ in range(turns):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 18)))
        lines.append(f"{rng.choice(_SPEAKERS)}: We discussed the {words}.")
    return "\n".join(lines) + "\n"


class Deadline(AssertionError):
    pass


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = 0.05):
    """Poll until predicate() is truthy; fail naming `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise Deadline(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def summary_records(folder: Path) -> dict[Path, dict]:
    """Every `*.summary.json` under folder, parsed (a partial file would fail to parse)."""
    return {p: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(folder.rglob("*.summary.json"))}


def job_rows(state_db: Path, where: str = "1") -> list[dict]:
    if not state_db.exists():
        return []
    db = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=10)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY id")]
    except sqlite3.OperationalError:  # the watcher has not created the schema yet
        return []
    finally:
        db.close()


SUMCTL = [sys.executable, "-c", "from sumctl.cli.main import cli; cli(prog_name='sumctl')"]


def run(*args, prefix: list[str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), *SUMCTL, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed with exactly one `Error: ...` line and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


class SmallDisk:
    """A real filesystem that fills up: a tmpfs of a few MB, mounted for one test."""

    def __init__(self, path: Path, size_kb: int):
        path.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755",
                                 "tmpfs", str(path)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): needs root")
        self.path = path
        self.filler = path / "filler.bin"

    def fill(self) -> None:
        """Take every free byte, as a runaway log would."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for size in (1 << 20, 64 << 10, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def umount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    disks = []

    def make(name: str = "disk", size_kb: int = 8192) -> SmallDisk:
        disk = SmallDisk(tmp_path / name, size_kb)
        disks.append(disk)
        return disk

    yield make
    for disk in disks:
        disk.umount()


class WatchProcess:
    """A real `sumctl watch` subprocess; its stderr goes to a file the test can poll."""

    def __init__(self, args: list[str], log_path: Path, env: dict | None = None,
                 prefix: list[str] | None = None):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-c",
             "from sumctl.cli.main import cli; cli(prog_name='sumctl')", "watch", *args],
            stdout=subprocess.PIPE, stderr=self._log, env=env or os.environ.copy())

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        def seen():
            if self.proc.poll() is not None and text not in self.log():
                raise AssertionError(f"sumctl watch exited ({self.proc.returncode}) before "
                                     f"logging {text!r}:\n{self.log()}")
            return text in self.log()

        wait_until(seen, timeout, f"{text!r} in the watcher's log")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self._log.close()
        return self.proc.returncode

    def stdout(self) -> str:
        return self.proc.stdout.read().decode() if self.proc.stdout else ""

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._log.close()


@pytest.fixture
def watch_process(tmp_path):
    """Start `sumctl watch ...` subprocesses; any still running at the end is killed."""
    started: list[WatchProcess] = []

    def start(*args: str, log_name: str = "watch.log", prefix: list[str] | None = None) -> WatchProcess:
        proc = WatchProcess([str(a) for a in args], tmp_path / log_name, prefix=prefix)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.kill()


def make(folder: Path, model: Path, **kw):
    """An in-process Watcher, quick to settle, leaving signals to pytest. SummaryOptions'
    fields (length, minutes, formats...) may be passed as keywords too."""
    from sumctl.runtime.options import FIELDS, SummaryOptions
    from sumctl.runtime.watch import WatchConfig, Watcher

    kw.setdefault("settle_seconds", 0.2)
    hooks = {k: kw.pop(k) for k in ("on_outcome", "handle_signals") if k in kw}
    hooks.setdefault("handle_signals", False)
    summary = SummaryOptions(**{k: kw.pop(k) for k in list(kw) if k in FIELDS})
    return Watcher(WatchConfig(folder, model=model, summary=summary, **kw), **hooks)


@contextmanager
def running(watcher):
    """Run a watcher in a thread; stop it and re-raise its error at the end."""
    errors = []

    def target():
        try:
            watcher.run()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_until(lambda: watcher.started.is_set() or errors, 30, "the watcher to start")
    try:
        yield watcher
    finally:
        watcher.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the watcher did not stop"
    if errors:
        raise errors[0]
