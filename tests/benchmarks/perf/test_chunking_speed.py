"""benchmarks/perf/chunking_speed.py in a small mode, run as a user types it: a line per size and
tokenizer, and the JSON headline last."""

import json
import subprocess
import sys


def test_small_run_prints_timings_and_a_json_headline():
    cmd = [sys.executable, "-m", "sumctl.benchmarks.perf.chunking_speed", "--cues", "300,20000", "--no-gguf"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    headline = json.loads(result.stdout.strip().splitlines()[-1])
    assert headline["cues_20000_words"] == 215_000 and headline["cues_20000_words_chapters"] >= 2
    assert headline["cues_300_words_chapters"] == 1 and headline["words_budget"] > 0
    assert 0 <= headline["cues_20000_words_chapterize_s"] < 10 and "cpu_flags" in headline
    assert "20,000 cues, words:" in result.stdout
