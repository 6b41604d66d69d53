"""benchmarks/perf/oversubscribed.py run as a user types it, on 3 DialogSum dialogues with the
extractive baseline (seconds, not minutes): real `sumctl watch` and `sumctl batch` children on
each side's code and store, the side-by-side comparison, the table and the JSON line last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sumctl.runtime.backends.extractive import build_extractive_bundle

REPO = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sumctl.benchmarks.perf.oversubscribed", "--files", "3", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_against_itself_gives_identical_summaries_and_ratios(tmp_path, dialogsum_file):
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: --against needs the repository's history")
    bundle = tmp_path / "extractive"
    build_extractive_bundle(bundle)
    result = run("--model", str(bundle), "--against", "HEAD", "--data", str(dialogsum_file))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("CPU: ")  # the flags come first, not only beside the headline
    headline = json.loads(lines[-1])
    assert headline["model"] == "extractive-baseline" and headline["files"] == 3
    for command in ("watch", "batch"):
        assert headline[f"{command}_identical_summaries"] == "3 of 3"
        assert headline[f"{command}_wall_ratio"] > 0
        assert headline[f"{command}_wall_ratio"] == pytest.approx(
            headline[f"{command}_this_wall_s"] / headline[f"{command}_against_wall_s"], rel=0.05)
        for side in ("this", "against"):
            key = f"{command}_{side}"
            assert headline[f"{key}_wall_s"] > 0 and headline[f"{key}_files_per_s"] > 0
            assert len(headline[f"{key}_wall_s_runs"]) == 1
            assert headline[f"{key}_workers"] == 2 and headline[f"{key}_threads"] >= 1
            assert headline[f"{key}_omp_wait_policy"]  # the children's atexit line was read
            table_row = next(line for line in lines if line.startswith(f"{command:<9}{side:<9}"))
            assert "extractive-baseline" in table_row
    assert "identical_summaries: watch 3 of 3, batch 3 of 3" in result.stdout
    assert "this / HEAD: watch wall " in result.stdout


def test_a_bad_revision_is_one_line(tmp_path, dialogsum_file):
    result = run("--against", "no-such-revision-xyz", "--data", str(dialogsum_file))
    assert result.returncode != 0 and "Traceback" not in result.stderr
