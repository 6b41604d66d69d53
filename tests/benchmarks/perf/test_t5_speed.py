"""benchmarks/t5_speed.py --small, run as a user types it: every table, and the JSON line last."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_small_run_prints_tables_and_json():
    cmd = [sys.executable, "-m", "sumctl.benchmarks.perf.t5_speed", "--small", "--repeat", "1", "--threads", "1",
           "--engines", "onnx-fp32,onnx-int8,ct2-int8", "--beams", "2", "--batches", "1,2",
           "--memory-runs", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    headline = json.loads(out.strip().splitlines()[-1])
    assert headline["engines"][:2] == ["onnx-fp32", "onnx-int8"]
    # The fp32 reference stands in for PyTorch when PyTorch is left out; ONNX fp32 is it.
    assert "tokens = ONNX fp32" in out and "pytorch_fp32_s_per_doc" not in headline
    assert not any(key.endswith("_vs_pytorch") for key in headline)
    assert 0 <= headline["onnx_int8_token_agreement_vs_onnx_fp32"] <= 1
    assert headline["onnx_int8_batch2_docs_per_min"] > 0 and headline["onnx_int8_beam2_s_per_doc"] > 0
    # Decoding against the bandwidth floor, measured in the same run.
    assert "decode, ms per token" in out and headline["read_bandwidth_gbs"] > 0
    assert headline["decode_floor_step_ms"] > 0 and headline["onnx_int8_decode_ms_per_token"] > 0
    assert headline["onnx_int8_decode_issue_floor_ratio"] == pytest.approx(
        headline["onnx_int8_decode_ms_per_token"] / headline["decode_floor_issue_ms"], rel=0.02)
    # Peak memory is a distribution over fresh processes; the headline figure is its worst.
    assert headline["memory_runs"] == 2
    for engine in ("onnx_fp32", "onnx_int8"):
        low, mid, worst = (headline[f"{engine}_peak_rss_mb{s}"] for s in ("_min", "_median", ""))
        assert 0 < low <= mid <= worst and f"{low:.0f}/{mid:.0f}/{worst:.0f}" in out
    if importlib.util.find_spec("ctranslate2") is None:
        assert "ct2-int8: row skipped, ctranslate2 is not installed" in out
        assert "ct2_int8_skipped" in headline and "onnx_int8_latency_ratio_vs_ct2" not in headline
        return
    assert "onnx-int8 vs ct2-int8" in out
    for key in ("latency", "beam2_latency", "rss", "size", "batch2_latency"):
        assert headline[f"onnx_int8_{key}_ratio_vs_ct2"] > 0
    assert headline["ct2_int8_size_mb"] > 0 and headline["ct2_int8_batch2_docs_per_min"] > 0
    assert 0 <= headline["ct2_int8_beam2_token_agreement_vs_onnx_fp32"] <= 1
