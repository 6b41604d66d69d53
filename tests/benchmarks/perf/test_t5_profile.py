"""benchmarks/perf/t5_profile.py as a user runs it: one greedy generation with ORT's profiler on,
op types per decoder call, and the JSON line last."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def profile(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sumctl.benchmarks.perf.t5_profile", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_fused_decoder_step_is_profiled_by_op_type(tiny_t5_bundle):
    result = profile("--bundle", str(tiny_t5_bundle), "--tokens", "12", "--threads", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    headline = json.loads(lines[-1])
    assert lines[0].startswith("decoder: 12 calls")  # one call per forced token, the first included
    assert headline["tokens"] == 12 and headline["decoder_ms_per_call"] > 0 and headline["encoder_ms_per_call"] > 0
    shares = {k: v for k, v in headline.items() if k.startswith("decoder_") and k.endswith("_share")}
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    # The exporter fused the self-attention (issue 30), and a container's time is its nodes'.
    assert headline["decoder_multiheadattention_ms"] > 0 and "decoder_if_ms" not in headline


def test_a_bundle_of_another_backend_is_refused_in_one_line(extractive_bundle_dir):
    result = profile("--bundle", str(extractive_bundle_dir))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "give an onnx-t5 bundle" in result.stderr
