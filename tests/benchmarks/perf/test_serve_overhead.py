"""benchmarks/perf/serve_overhead.py in a small mode on the extractive model, run as a user types
it: the table, then the machine and the JSON headline last."""

import json
import subprocess
import sys


def test_small_run_prints_the_overhead_and_a_json_headline(serve_stack):
    cmd = [sys.executable, "-m", "sumctl.benchmarks.perf.serve_overhead", "--models", "extractive",
           "--files", "3", "--load-jobs", "12", "--clients", "4", "--threads", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    headline = json.loads(lines[-1])
    assert lines[-2].startswith("CPU: ") and "cpu_flags" in headline
    assert headline["files"] == 3 and headline["extractive_load_jobs"] == 12
    assert 0 < headline["extractive_summarize_ms_per_file"] < headline["extractive_serve_latency_ms_per_job"]
    assert headline["extractive_jobs_per_s_under_load"] > 0
    assert all(key == key.lower() and " " not in key for key in headline)
    assert "overhead ms" in result.stdout
