"""benchmarks/perf/kit.py: the one read-bandwidth method, the child-process runner and the headline."""

from __future__ import annotations

import ast
import json
import math
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from sumctl.benchmarks.perf import kit

MIB = 2**20
PERF = Path(kit.__file__).parent


def test_read_bandwidth_is_a_positive_finite_rate():
    rate = kit.read_bandwidth_gbs(2, passes=3, nbytes=16 * MIB)
    assert math.isfinite(rate) and rate > 0


def test_read_bandwidth_is_the_median_pass_over_the_runs_threads(monkeypatch):
    """Three passes of 4, 1 and 2 s: the median pass (2 s) sets the rate, not the best (1 s) nor
    the mean, and every pass starts one thread per thread of the run, each on its own part."""
    clock = iter([0.0, 4.0, 10.0, 11.0, 20.0, 22.0])
    parts = []

    class Counted(threading.Thread):
        def __init__(self, target, args):
            parts.append(len(args[0]))
            super().__init__(target=target, args=args)

    monkeypatch.setattr(kit, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    monkeypatch.setattr(kit, "threading", SimpleNamespace(Thread=Counted))
    rate = kit.read_bandwidth_gbs(3, passes=3, nbytes=6 * MIB)
    assert rate == pytest.approx(6 * MIB / 2.0 / 1e9)
    assert len(parts) == 3 * 3 and sum(parts) == 3 * (6 * MIB // 8)
    assert max(parts) - min(parts) <= 1  # an even split


def test_read_bandwidth_refuses_no_threads():
    with pytest.raises(ValueError):
        kit.read_bandwidth_gbs(0)


def test_the_method_is_named_where_figures_are_printed():
    assert kit.bandwidth_method(2) == "median of 5 passes, 2 threads, benchmarks/perf/kit.py"
    assert "1 thread," in kit.bandwidth_method(1)


def test_run_in_child_round_trips_the_last_json_line(tmp_path):
    row = {"engine": "onnx-int8", "s_per_call": 1.25, "tokens": [3, 4, 5], "encoder_s": None}
    source = tmp_path / "row.json"
    source.write_text(json.dumps(row, indent=2))
    # json.tool in a fresh interpreter, one compact line out: what a --child run prints last.
    assert kit.run_in_child("json.tool", ["--compact", source], label="round trip") == row


def test_run_in_child_stops_the_run_with_the_childs_error(tmp_path):
    with pytest.raises(SystemExit, match=r"(?s)missing child failed \(exit [1-9]\d*\):.*nothere\.json"):
        kit.run_in_child("json.tool", [tmp_path / "nothere.json"], label="missing child")


def test_print_headline_ends_with_one_json_line(capsys):
    kit.print_headline({"threads": 2, "read_bandwidth_gbs": 31.5})
    lines = capsys.readouterr().out.strip().splitlines()
    headline = json.loads(lines[-1])
    assert headline["threads"] == 2 and "cpu_flags" in headline and len(lines) == 2


def test_snake_keys():
    assert kit.snake("rougeLsum") == "rougelsum"
    assert kit.snake("gguf-Q8_0") == "gguf_q8_0"
    assert kit.snake("My Model.v2") == "my_model_v2"


SCRIPTS = sorted(p for p in PERF.glob("*.py") if p.stem not in {"__init__", "kit", "models"})


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_perf_script_ends_through_the_kit(script):
    """One home each: every script prints its headline with kit.print_headline, none measures
    bandwidth or starts its measurement children on its own."""
    source = script.read_text()
    tree = ast.parse(source)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "sumctl.benchmarks.perf.kit" for alias in node.names}
    assert "print_headline" in imported
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert not defined & {"read_bandwidth_gbs", "print_headline", "run_in_child"}
    assert "bitwise_xor.reduce" not in source  # the bandwidth pass is kit's alone
    assert '"-m", "sumctl.benchmarks.perf.' not in source  # children start through run_in_child
