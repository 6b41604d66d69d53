"""Issue 27: every JSON sumctl writes is strict JSON (no NaN, no Infinity), so jq, JavaScript and
`json.loads(s, parse_constant=reject)` read it. One helper does it (runtime/jsonout.py:
strict_dumps); this walks every writer in the source (with ast, like test_layers) and then feeds
NaN to real writers, which must refuse it rather than write it."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sumctl.runtime.jsonout import NonFiniteNumber, strict_dumps, strict_loads

REPO = Path(__file__).resolve().parents[1]
TREES = ("runtime", "exporters", "benchmarks", "cli")
NOT_FINITE = [float("nan"), float("inf"), -float("inf")]

# json.dumps calls left as they are, each with why it cannot write a number that is not finite.
SAFE = {
    "runtime/outputs.py": "write_summary passes allow_nan=False; the error file's is a source key (text)",
    "runtime/backends/extractive.py": "a constant: {'scoring': 'luhn-mean-frequency'}",
    "runtime/minutes/render.py": "YAML scalars of names and titles: text only",
    "runtime/minutes/textformat.py": "decisions, tasks, owners and questions: text only",
}


def reject(name):
    raise ValueError(f"{name} is not JSON")


def json_writer_calls() -> list[tuple[str, int, bool]]:
    """(file, line, strict) for every json.dump/json.dumps call in the shipped source."""
    found = []
    for top in TREES:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("dump", "dumps")
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "json"):
                    strict = any(k.arg == "allow_nan" and isinstance(k.value, ast.Constant)
                                 and k.value.value is False for k in node.keywords)
                    found.append((rel, node.lineno, strict))
    return found


def test_every_json_writer_is_strict():
    calls = json_writer_calls()
    assert any(rel == "runtime/jsonout.py" and strict for rel, _, strict in calls)  # the scan works
    loose = [f"{rel}:{line}" for rel, line, strict in calls
             if not strict and rel not in SAFE]
    assert loose == [], ("use sumctl.runtime.jsonout.strict_dumps (or allow_nan=False) for "
                         f"these: {loose}")


def test_the_writer_scan_finds_a_loose_call(tmp_path, monkeypatch):
    fake = tmp_path / "runtime"
    fake.mkdir()
    (fake / "x.py").write_text("import json\nA = json.dumps({})\nB = json.dumps({}, allow_nan=False)\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert json_writer_calls() == [("runtime/x.py", 2, False), ("runtime/x.py", 3, True)]


# --- the helper ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", NOT_FINITE)
def test_strict_dumps_refuses_what_json_cannot_hold_naming_where(value):
    with pytest.raises(NonFiniteNumber, match=r"results\[1\]\.latency_s is"):
        strict_dumps({"results": [{"latency_s": 1.0}, {"latency_s": value}]})
    with pytest.raises(ValueError):
        strict_dumps((value,))


def test_strict_dumps_writes_what_json_dumps_writes():
    data = {"b": [1, 2.5, -0.0, 1e308, None, True, "é"], "a": {"x": 10**30}}
    for kwargs in ({}, {"indent": 2, "sort_keys": True}, {"ensure_ascii": False}):
        assert strict_dumps(data, **kwargs) == json.dumps(data, **kwargs)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[1e999]", "{\"a\": -1e400}",
                                  "9" * 309, "-" + "1" * 400])
def test_strict_loads_refuses_numbers_past_a_float(text):
    with pytest.raises(NonFiniteNumber):
        strict_loads(text)


def test_strict_loads_reads_finite_numbers_as_json_loads_does():
    text = '{"a": [0, -1, 1.5, 1e308, -1e-320, ' + "9" * 308 + "]}"
    assert strict_loads(text) == json.loads(text)


# --- real writers, fed a NaN ---------------------------------------------------------------------

@pytest.mark.parametrize("value", NOT_FINITE)
def test_a_manifest_holding_nan_is_refused_and_not_written(tmp_path, value):
    from sumctl.runtime.backends.extractive import build_extractive_bundle
    from sumctl.runtime.bundle.manifest import MANIFEST_NAME, write_manifest

    bundle = build_extractive_bundle(tmp_path / "b")
    before = (tmp_path / "b" / MANIFEST_NAME).read_text()
    bundle.manifest.verification = {"max_abs_diff": value}
    with pytest.raises(NonFiniteNumber, match="verification.max_abs_diff"):
        write_manifest(tmp_path / "b", bundle.manifest)
    assert (tmp_path / "b" / MANIFEST_NAME).read_text() == before


def test_a_headline_holding_nan_is_refused(capsys):
    from sumctl.benchmarks.perf.kit import print_headline

    with pytest.raises(NonFiniteNumber, match="tokens_per_s"):
        print_headline({"tokens_per_s": math.nan})
    assert "NaN" not in capsys.readouterr().out


def test_cloud_outputs_holding_nan_are_refused(tmp_path):
    from sumctl.benchmarks.eval.cloud import CloudOutput, write_cloud_outputs

    with pytest.raises(NonFiniteNumber, match="latency_s"):
        write_cloud_outputs([CloudOutput("a", "x", latency_s=math.inf)], tmp_path / "c.jsonl")
    assert not (tmp_path / "c.jsonl").exists()


def test_a_bench_metric_with_no_values_is_null_not_nan():
    from sumctl.benchmarks.eval.metrics import bootstrap_ci

    ci = bootstrap_ci([None, None], seed=0)
    assert ci["n"] == 0 and json.loads(strict_dumps(ci), parse_constant=reject)["mean"] is None


def test_what_the_cli_prints_and_writes_as_json_is_strict(tmp_path, extractive_bundle_dir):
    """batch's final JSON line, its done-records, watch's status --json and log lines, and
    models info --json: all read back with NaN and Infinity refused."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        (src / f"m{i}.txt").write_text(f"Ann: We ship release {i} on Friday.\nBob: I fix the login "
                                       f"bug {i} first, then the docs.\n")

    def sumctl(*args):
        result = subprocess.run([sys.executable, "-m", "sumctl.cli", *map(str, args)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result

    last = sumctl("batch", src, "--out", tmp_path / "dst", "--model", extractive_bundle_dir,
                  "--quiet").stdout.strip().splitlines()[-1]
    json.loads(last, parse_constant=reject)
    written = [p for p in (tmp_path / "dst").rglob("*.json")]
    assert written
    for path in written:
        json.loads(path.read_text(), parse_constant=reject)
    watch = sumctl("watch", src, "--model", extractive_bundle_dir, "--once", "--log-json")
    for line in watch.stderr.splitlines():
        if line.startswith("{"):
            json.loads(line, parse_constant=reject)
    json.loads(sumctl("status", src, "--json").stdout, parse_constant=reject)
