"""benchmarks/perf/prompt_length.py run as a user types it, on short lengths of the embedded
default: the table, a rate per length, and the JSON line last."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_short_lengths_print_a_rate_each_and_a_json_headline(qmsum_dir):
    result = subprocess.run([sys.executable, "-m", "sumctl.benchmarks.perf.prompt_length",
                             "--lengths", "64,256", "--repeat", "1", "--threads", "1",
                             "--data", str(qmsum_dir / "val")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("CPU: ")
    headline = json.loads(lines[-1])
    assert headline["model"] == "smollm2-135m-meetings" and headline["repeat"] == 1
    assert headline["tokens_64_vs_shortest"] == 1.0
    assert headline["tokens_64_per_s"] > 0 and headline["tokens_256_per_s"] > 0
    rows = [line.split() for line in lines if line.split()[:1] in (["64"], ["256"])]
    assert [float(r[2]) for r in rows] == pytest.approx(
        [headline["tokens_64_per_s"], headline["tokens_256_per_s"]], abs=0.1)


def test_lengths_longer_than_the_data_are_one_line(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps(
        {"meeting_transcripts": [{"speaker": "A", "content": "Short meeting."}], "topic_list": [],
         "general_query_list": [], "specific_query_list": []}))
    result = subprocess.run([sys.executable, "-m", "sumctl.benchmarks.perf.prompt_length",
                             "--lengths", "5000", "--repeat", "1", "--data", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "fewer than 5000 tokens" in result.stderr
    assert "Traceback" not in result.stderr
