"""What `sumctl watch` costs per file, beyond the model: files/s and per-file overhead.

    python -m sumctl.benchmarks.perf.watch_throughput [--files 1000] [--workers 1]

1000 small transcripts, measured side by side in one run on the same files:
- bare loop: read_transcript + Summarizer.summarize per file, nothing else (the floor);
- `watch --once` with a no-op backend (defined here, registered like a plug-in): its time is
  all watcher overhead: discovery, stat/settle, read + sha256, three SQLite commits with
  fsync, parsing, two atomic output files with fsync, the queue;
- the same with the extractive baseline backend (a real, fast backend);
- the no-op run again with 2 workers (the fsyncs of one overlap the work of the other);
- a restart over the 1000 finished files (what every start and every rescan costs).

Overhead per file = (watcher wall time - time inside Summarizer.summarize) / files.
Target: under 20 ms. Most of it is fsync: each summary's .md and .json are fsynced before
the job is committed (so a power cut never leaves a job `done` without its summary), and an
fsync costs milliseconds on many disks. The time spent inside os.fsync is measured too (by
wrapping it, measurement only), and a bare write+fsync of a 1 KB file on the same disk.
The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from sumctl.runtime.backends import Backend, Generation, GenerationOptions, register_backend
from sumctl.runtime.bundle import Bundle, Manifest, write_manifest
from sumctl.runtime.backends.extractive import build_extractive_bundle
from sumctl.runtime.prompts import LENGTHS, TRANSCRIPT_SLOT
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import read_transcript
from sumctl.runtime.watch import WatchConfig, Watcher
from sumctl.benchmarks.perf.kit import print_headline

TARGET_OVERHEAD_MS = 20.0
_WORDS = ("budget release login tests docs design roadmap customer launch pricing hiring server "
          "database migration security audit invoice onboarding dashboard latency").split()


class NoopBackend(Backend):
    """Returns the first words of the prompt: no model at all, so any time left is overhead."""

    name = "noop"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def input_budget(self, template: str, max_new_tokens: int) -> int:
        return self.bundle.manifest.max_input_tokens

    def generate(self, prompts: list[str], options: GenerationOptions) -> list[Generation]:
        return [Generation(" ".join(p.split()[:options.max_new_tokens]), len(p.split()),
                           min(len(p.split()), options.max_new_tokens)) for p in prompts]


def build_noop_bundle(out: Path) -> Bundle:
    # Registered the way a plug-in's entry point would be, without installing a package.
    register_backend("noop", NoopBackend, replace=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "noop.json").write_text("{}\n")
    return write_manifest(out, Manifest(
        backend="noop", source={"model": "benchmark:noop"}, quantization="none",
        max_input_tokens=100_000, prompts={length: TRANSCRIPT_SLOT for length in LENGTHS},
        generation={"max_new_tokens": {"long": 60, "medium": 40, "short": 20}},
        backend_config={"files": {"config": "noop.json"}}, name="noop", label="benchmark no-op"))


def write_transcripts(folder: Path, n: int) -> None:
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        lines = [f"Alice: Meeting {i} starts now."]
        for _ in range(12):
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 16)))
            lines.append(f"{rng.choice(('Alice', 'Bob', 'Carol'))}: We talked about {words}.")
        (folder / f"meeting-{i:04d}.txt").write_text("\n".join(lines) + "\n")
    # Old enough to count as settled: this measures the watcher, not the settle wait.
    old = time.time() - 3600
    for p in folder.iterdir():
        os.utime(p, (old, old))


class FsyncClock:
    """Counts the time spent inside os.fsync while active."""

    def __init__(self):
        self.seconds = 0.0
        self.calls = 0
        self._fsync = os.fsync

    def __enter__(self):
        def timed(fd):
            started = time.perf_counter()
            try:
                return self._fsync(fd)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        os.fsync = timed
        return self

    def __exit__(self, *exc):
        os.fsync = self._fsync


def raw_fsync_ms(folder: Path, n: int = 50) -> float:
    """Median write + fsync of a new 1 KB file: this disk's price of one durable file."""
    times = []
    for i in range(n):
        started = time.perf_counter()
        with open(folder / f"fsync-{i}.bin", "wb") as f:
            f.write(b"x" * 1024)
            f.flush()
            os.fsync(f.fileno())
        times.append(time.perf_counter() - started)
    return sorted(times)[n // 2] * 1000


def bare_loop(folder: Path, model) -> dict:
    summarizer = Summarizer(model)
    files = sorted(folder.glob("*.txt"))
    started = time.perf_counter()
    for path in files:
        summarizer.summarize(read_transcript(path))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "ms_per_file": wall / len(files) * 1000}


def watch_once(folder: Path, model, workers: int, state: Path) -> dict:
    with FsyncClock() as fsync:
        report = Watcher(WatchConfig(folder, model=model, once=True, workers=workers,
                                     settle_seconds=0, state_path=state),
                         handle_signals=False).run()
    n = report.summarized or 1
    # With several workers the model time overlaps; wall time per file is what a user waits.
    in_model = sum(o.model_seconds for o in report.outcomes.values()) / workers
    return {"summarized": report.summarized, "already": report.count("already"),
            "wall_s": report.elapsed, "files_per_s": report.summarized / report.elapsed,
            "model_s": in_model, "ms_per_file": report.elapsed / n * 1000,
            "overhead_ms_per_file": (report.elapsed - in_model) / n * 1000,
            "fsync_ms_per_file": fsync.seconds / n * 1000, "fsyncs_per_file": fsync.calls / n}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.getLogger("sumctl").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="sumctl-watch-bench-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("SUMCTL_HOME", str(tmp / "home"))
        noop = build_noop_bundle(tmp / "noop")
        extractive = build_extractive_bundle(tmp / "extractive")
        for name in ("noop", "noop2", "extractive"):
            write_transcripts(tmp / name / "in", args.files)
        fsync_ms = raw_fsync_ms(tmp)

        results = {
            "bare_noop": bare_loop(tmp / "noop" / "in", noop),
            "watch_noop": watch_once(tmp / "noop" / "in", noop, args.workers, tmp / "noop.db"),
            "restart_noop": watch_once(tmp / "noop" / "in", noop, args.workers, tmp / "noop.db"),
            "watch_noop_2w": watch_once(tmp / "noop2" / "in", noop, 2 * args.workers,
                                        tmp / "noop2.db"),
            "bare_extractive": bare_loop(tmp / "extractive" / "in", extractive),
            "watch_extractive": watch_once(tmp / "extractive" / "in", extractive, args.workers,
                                           tmp / "extractive.db"),
        }
        assert results["watch_noop"]["summarized"] == args.files
        assert results["watch_noop_2w"]["summarized"] == args.files
        assert results["restart_noop"]["summarized"] == 0
        assert results["watch_extractive"]["summarized"] == args.files

    restart = results["restart_noop"]
    print(f"{args.files} transcripts, {args.workers} worker(s), on {os.cpu_count()} cores; "
          f"one write+fsync of 1 KB on this disk: {fsync_ms:.2f} ms (median)")
    print(f"{'run':<20}{'ms/file':>9}{'files/s':>9}{'overhead ms/file':>18}{'in fsync ms/file':>18}")
    for name in ("bare_noop", "watch_noop", "watch_noop_2w", "bare_extractive", "watch_extractive"):
        r = results[name]
        print(f"{name:<20}{r['ms_per_file']:>9.2f}{1000 / r['ms_per_file']:>9.1f}"
              f"{r.get('overhead_ms_per_file', 0):>18.2f}{r.get('fsync_ms_per_file', 0):>18.2f}")
    print(f"{'restart (all done)':<20}{restart['wall_s'] / args.files * 1000:>9.2f}")
    ratio_noop = results["watch_noop"]["ms_per_file"] / results["bare_noop"]["ms_per_file"]
    ratio_extractive = (results["watch_extractive"]["ms_per_file"]
                        / results["bare_extractive"]["ms_per_file"])
    print(f"watch / bare loop: {ratio_noop:.1f}x (no-op backend), "
          f"{ratio_extractive:.1f}x (extractive backend)")
    overhead = results["watch_noop"]["overhead_ms_per_file"]
    headline = {
        "files": args.files,
        "workers": args.workers,
        "watch_files_per_s_noop": round(results["watch_noop"]["files_per_s"], 1),
        "watch_files_per_s_extractive": round(results["watch_extractive"]["files_per_s"], 1),
        "overhead_ms_per_file_noop": round(overhead, 2),
        "fsync_ms_per_file_noop": round(results["watch_noop"]["fsync_ms_per_file"], 2),
        "overhead_ms_per_file_excluding_fsync_noop": round(
            overhead - results["watch_noop"]["fsync_ms_per_file"], 2),
        "overhead_ms_per_file_noop_2_workers": round(results["watch_noop_2w"]["overhead_ms_per_file"], 2),
        "watch_files_per_s_noop_2_workers": round(results["watch_noop_2w"]["files_per_s"], 1),
        "disk_fsync_ms": round(fsync_ms, 2),
        "overhead_ms_per_file_extractive": round(results["watch_extractive"]["overhead_ms_per_file"], 2),
        "bare_loop_ms_per_file_noop": round(results["bare_noop"]["ms_per_file"], 2),
        "watch_vs_bare_ratio_noop": round(ratio_noop, 2),
        "watch_vs_bare_ratio_extractive": round(ratio_extractive, 2),
        "restart_ms_per_file": round(restart["wall_s"] / args.files * 1000, 2),
        "target_overhead_ms": TARGET_OVERHEAD_MS,
        "meets_target": overhead < TARGET_OVERHEAD_MS,
    }
    print_headline(headline)
    return headline


if __name__ == "__main__":
    main(sys.argv[1:])
