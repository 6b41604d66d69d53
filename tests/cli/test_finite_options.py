"""Issue 27, numbers at the edge on the command line: click's FloatRange takes nan, inf and 1e999
(as inf). A NaN --settle never settles a file (a --once that never ends), a NaN --price-per-1k
writes NaN into report.json. Every float option refuses them as a usage error."""

from __future__ import annotations

import pytest
from watch_fixtures import run

CASES = [
    ("watch", "--settle"), ("watch", "--backoff"), ("watch", "--rescan"), ("watch", "--grace"),
    ("bench", "--price-per-1k"), ("bench", "--price-per-1k-output"),
    ("train", "--epochs"), ("train", "--lr"), ("train", "--lora-dropout"),
]


@pytest.mark.parametrize("command, option", CASES)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "NaN"])
def test_a_float_option_that_is_not_finite_is_a_usage_error(tmp_path, command, option, value):
    args = {"watch": [tmp_path, "--once"],
            "bench": ["--data", tmp_path / "d.jsonl", "--out", tmp_path / "o"],
            "train": ["--base", tmp_path, "--data", tmp_path / "d.jsonl", "--out", tmp_path / "o"]}
    result = run(command, *args[command], f"{option}={value}", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert option in last, result.stderr
    assert "not a finite number" in last or "range" in last, result.stderr  # --lora-dropout inf
