"""benchmarks/perf/t5_memory.py --small, run as a user types it: a line per fresh process, a
distribution per engine, and the JSON line last."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_small_run_traces_every_phase_and_prints_the_distribution(tmp_path):
    cmd = [sys.executable, "-m", "sumctl.benchmarks.perf.t5_memory", "--small", "--runs", "2", "--threads", "1",
           "--engines", "onnx-int8,onnx-int8-unshed,onnx-int8-glibc", "--page-cache", "evict", "--workdir", str(tmp_path / "w")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    headline = json.loads(lines[-1])
    assert headline["model"] == "tiny-t5" and headline["runs"] == 2 and headline["page_cache"] == "evict"
    for engine in ("onnx_int8", "onnx_int8_unshed", "onnx_int8_glibc"):
        low, mid, worst = (headline[f"{engine}_peak_rss_mb_{s}"] for s in ("min", "median", "max"))
        assert 0 < low <= mid <= worst
        assert headline[f"{engine}_peak_rss_stable"] == (worst / low - 1 <= 0.10)
    runs = [ln for ln in lines if ln.startswith("run ")]
    assert len(runs) == 6
    for line in runs:
        for phase in ("load", "document 1", "document 2"):
            assert f"{phase}: {{" in line
        # The weights file is found and its mappings are the ones the sessions made.
        assert '"unknown_maps": 0' in line and '"weight_maps": 0' not in line
    assert not any(key.startswith("ct2") for key in headline)  # only the engines asked for
