"""benchmarks/perf/default_speed.py run as a user types it, on the standup alone with the
extractive baseline (seconds, not minutes): real `sumctl summarize` children, each side's own
store, the side-by-side comparison, the table and the JSON line last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sumctl.runtime.backends.extractive import build_extractive_bundle

REPO = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sumctl.benchmarks.perf.default_speed", "--meetings", "0", "--threads", "1",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_against_itself_gives_identical_summaries_and_ratios(tmp_path):
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: --against needs the repository's history")
    bundle = tmp_path / "extractive"
    build_extractive_bundle(bundle)
    result = run("--model", str(bundle), "--against", "HEAD")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("CPU: ")  # the flags come first, not only beside the headline
    headline = json.loads(lines[-1])
    assert headline["model"] == "extractive-baseline" and headline["files"] == 1
    assert headline["identical_summaries"] == "1 of 1" and "identical_summaries: 1 of 1" in result.stdout
    for side in ("this", "against"):
        walls = headline[f"{side}_wall_s_per_file"]
        assert len(walls) == 1 and walls[0] > 0 and headline[f"{side}_total_wall_s"] == pytest.approx(walls[0], abs=0.01)
        assert headline[f"{side}_prompt_tps"] > 0 and headline[f"{side}_decode_tps"] > 0
        # The extractive bundle has no GGUF: no bound to report, and none invented.
        assert headline[f"{side}_weight_bytes"] == 0 and headline[f"{side}_decode_bound_tps"] is None
    assert headline["total_wall_ratio"] == pytest.approx(
        headline["this_total_wall_s"] / headline["against_total_wall_s"], rel=0.05)
    assert headline["read_bandwidth_gbs"] > 0
    assert "standup.vtt" in result.stdout and "this / HEAD:" in result.stdout


def test_a_bad_revision_is_one_line(tmp_path):
    bundle = tmp_path / "extractive"
    build_extractive_bundle(bundle)
    result = run("--model", str(bundle), "--against", "no-such-revision-xyz")
    assert result.returncode != 0 and "Traceback" not in result.stderr
