"""`sumctl bench` and `sumctl bench prepare`, run as a user types them (a real subprocess)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_fixtures import SERVER_MODEL_ALIAS, png_size, sumctl_cmd
from rouge_score import rouge_scorer

from sumctl.benchmarks.eval.metrics import split_sentences

SECRET = "sk-bench-test-0d1e2f-never-log-me"
LIMIT = 2  # records of bench_dialogsum5 that the two-bundle bench evaluates


def sumctl(*args, cwd: Path, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*sumctl_cmd(), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# --- prepare ---------------------------------------------------------------------------------

def test_prepare_qmsum_general_and_specific(qmsum_dir, tmp_path):
    general = sumctl("bench", "prepare", "qmsum", qmsum_dir, "--split", "val", "--out", "g.jsonl", cwd=tmp_path)
    assert general.returncode == 0, general.stderr
    meetings = sorted((qmsum_dir / "val").glob("*.json"))
    lines = (tmp_path / "g.jsonl").read_text().splitlines()
    assert len(lines) == len(meetings) and f"Wrote {len(meetings)} records" in general.stdout
    assert {json.loads(ln)["id"] for ln in lines} == {m.stem for m in meetings}

    specific = sumctl("bench", "prepare", "qmsum", qmsum_dir, "--split", "val", "--specific",
                      "--out", "s.jsonl", cwd=tmp_path)
    assert specific.returncode == 0, specific.stderr
    records = [json.loads(ln) for ln in (tmp_path / "s.jsonl").read_text().splitlines()]
    queries = sum(len(json.loads(m.read_text())["specific_query_list"]) for m in meetings)
    assert len(records) == queries
    assert all(r["id"].count("/q") == 1 and r["reference"] and r["transcript"] for r in records)

    again = sumctl("bench", "prepare", "qmsum", qmsum_dir, "--split", "val", "--out", "g.jsonl", cwd=tmp_path)
    assert_one_line_error(again, "g.jsonl: already exists", "--force")
    assert (tmp_path / "g.jsonl").read_text().splitlines() == lines


def test_prepare_dialogsum(dialogsum_file, tmp_path):
    result = sumctl("bench", "prepare", "dialogsum", dialogsum_file, "--out", "d.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(ln) for ln in (tmp_path / "d.jsonl").read_text().splitlines()]
    source = [json.loads(ln) for ln in dialogsum_file.read_text().splitlines() if ln.strip()]
    assert [r["id"] for r in records] == [s["fname"] for s in source]
    assert records[3]["transcript"] == source[3]["dialogue"]


# --- bad input -------------------------------------------------------------------------------

def test_bad_data_and_mismatched_cloud_files_fail_in_one_line(tmp_path, bench_extractive_bundle, bench_dialogsum5):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "a", "transcript": "Ann: hi there all.", "reference": "Hi."}\n'
                    '{"id": "b", "transcript": "Bob: bye now all."}\n')
    result = sumctl("bench", "--data", data, "--model", bench_extractive_bundle, "--out", "o1", cwd=tmp_path)
    assert_one_line_error(result, f"{data}:2:", "missing field 'reference'")

    cloud = tmp_path / "cloud.jsonl"
    cloud.write_text('{"id": "dev_0", "summary": "x"}\n{"id": "dev_99", "summary": "y"}\n')
    result = sumctl("bench", "--data", bench_dialogsum5, "--model", bench_extractive_bundle,
                    "--cloud", f"gpt-4o={cloud}", "--out", "o2", cwd=tmp_path)
    assert_one_line_error(result, str(cloud), "no summary for 4 of the 5 ids", "'dev_1'")

    result = sumctl("bench", "--data", bench_dialogsum5, "--model", tmp_path / "no-bundle", "--out", "o3",
                    cwd=tmp_path)
    assert_one_line_error(result, "no-bundle")
    result = sumctl("bench", "--data", bench_dialogsum5, "--cloud-endpoint", "http://127.0.0.1:9/v1",
                    "--out", "o4", cwd=tmp_path)
    assert_one_line_error(result, "--cloud-model")
    result = sumctl("bench", "--model", bench_extractive_bundle, cwd=tmp_path)
    assert result.returncode == 2 and "Missing option '--data'" in result.stderr
    # Bad input is found before any work, and leaves nothing behind.
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


# --- a full bench ----------------------------------------------------------------------------

@pytest.mark.slow
def test_bench_two_bundles_and_a_cloud_file(tmp_path, bench_dialogsum5, bench_lead2_cloud,
                                            tiny_t5_int8_bundle, smollm2_default_bundle):
    """A tiny T5 (ONNX int8) and the real SmolLM2 GGUF, beside a cloud outputs file, on the first
    LIMIT of the 5 records (--limit): every check below is per document or per system, and the
    real SmolLM2 on 2 cores is most of this test's time."""
    bundles = [Path(getattr(b, "path", b)) for b in (tiny_t5_int8_bundle, smollm2_default_bundle)]
    args = ["bench", "--data", bench_dialogsum5, "--cloud", f"lead2={bench_lead2_cloud}",
            "--price-per-1k", "0.01", "--seed", "7", "--threads", "2", "--length", "short", "--memory-runs", "2",
            "--limit", LIMIT]
    result = sumctl(*args, "--model", bundles[0], "--model", bundles[1], "--out", "report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "report"

    report = json.loads((out / "report.json").read_text())
    systems = {s["name"]: s for s in report["systems"]}
    assert len(systems) == 3 and [s["kind"] for s in report["systems"]] == ["local", "local", "cloud-file"]
    # The terminal table names every system and its ROUGE.
    for name, s in systems.items():
        assert name in result.stdout
        assert f"{s['metrics']['rougeLsum']['mean'] * 100:.1f}" in result.stdout

    data = {json.loads(ln)["id"]: json.loads(ln) for ln in bench_dialogsum5.read_text().splitlines()[:LIMIT]}
    direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)
    for s in report["systems"]:
        assert [d["id"] for d in s["documents"]] == list(data)
        for d in s["documents"]:
            ref, pred = data[d["id"]]["reference"], d["summary"]
            expected = direct.score("\n".join(split_sentences(ref)), "\n".join(split_sentences(pred)))
            for key in ("rouge1", "rouge2", "rougeLsum"):
                assert d["scores"][key] == pytest.approx(expected[key].fmeasure, abs=1e-9)
        m = s["metrics"]
        for key in ("rouge1", "rouge2", "rougeLsum"):
            values = [d["scores"][key] for d in s["documents"]]
            assert m[key]["mean"] == pytest.approx(sum(values) / len(values))
            assert m[key]["low"] <= m[key]["mean"] <= m[key]["high"]

    for b, s in zip(bundles, report["systems"][:2]):
        m, info = s["metrics"], s["info"]
        assert info["path"] == str(b)
        assert m["peak_rss_bytes"] > 20 * 2**20 and m["load_s"] >= 0 and m["size_bytes"] > 0
        # Peak memory is the worst of two fresh processes, the full run and one on the first documents.
        assert m["peak_rss_runs"] == 2 and len(info["peak_rss_runs_bytes"]) == 2
        assert m["peak_rss_bytes"] == max(info["peak_rss_runs_bytes"])
        assert m["peak_rss_min_bytes"] == min(info["peak_rss_runs_bytes"]) > 20 * 2**20
        assert 0 < m["latency_p50_s"] <= m["latency_p95_s"]
        assert m["tokens_per_s"] > 0 and m["output_tokens_mean"] > 0
        assert report["environment"]["bundles"][s["name"]]["sha256"] == info["sha256"]
    cloud = systems["lead2"]["metrics"]
    # bench_lead2_cloud gives record i a latency of 0.5 + i / 10 s: the median of the first LIMIT.
    assert cloud["latency_p50_s"] == pytest.approx(0.5 + (LIMIT - 1) / 20) and cloud["cost_total"] == pytest.approx(LIMIT * 150 / 1000 * 0.01)

    env = report["environment"]
    assert env["seed"] == 7 and env["threads"] == 2 and env["dataset"]["records"] == LIMIT
    assert env["cpu"] and env["versions"]["python"] and len(env["dataset"]["evaluated_sha256"]) == 64

    md = (out / "report.md").read_text()
    for fragment in ("## Results", "## Reading this report", "## Worst cases", "## Reproducibility",
                     "![Quality against latency](quality_latency.png)", "lead2",
                     "| Flagged | Copy |", "**Flagged / Copy**", f"Evaluated the first {LIMIT} of 5 records"):
        assert fragment in md
    # The first sentences of a transcript are a copy of it: the bench says so, for every system.
    assert cloud["copy_rate_mean"] > 0.5
    assert all(0 <= s["metrics"]["flag_rate"] <= 1 for s in report["systems"])

    with open(out / "per_document.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * LIMIT and {r["system"] for r in rows} == set(systems)
    first = rows[0]
    assert float(first["rougeLsum"]) == pytest.approx(report["systems"][0]["documents"][0]["scores"]["rougeLsum"], abs=1e-4)
    assert first["reference"] == data[first["id"]]["reference"]
    assert {"flags", "copy_rate"} <= set(first) and float(first["copy_rate"]) >= 0

    for name in ("quality_latency", "latency", "memory", "overview"):
        path = out / f"{name}.png"
        width, height = png_size(path)
        assert 400 <= width <= 2000 and 250 <= height <= 1200, (name, width, height)
        assert 5_000 < path.stat().st_size < 400_000

    # Same inputs and seed, in new processes: the same summaries and intervals (only timings
    # differ). The T5 stands for both local models here: SmolLM2 takes minutes on 2 cores.
    # One memory run is enough here: this rerun checks summaries and scores, not memory.
    rerun = sumctl(*args, "--memory-runs", "1", "--model", bundles[0], "--out", "report2", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    report2 = json.loads((tmp_path / "report2" / "report.json").read_text())
    for a, b in zip([report["systems"][0], systems["lead2"]], report2["systems"]):
        assert a["name"] == b["name"]
        assert [d["summary"] for d in a["documents"]] == [d["summary"] for d in b["documents"]]
        assert a["metrics"]["rougeLsum"] == b["metrics"]["rougeLsum"]
    refused = sumctl(*args, "--model", bundles[0], "--out", "report", cwd=tmp_path)
    assert_one_line_error(refused, "already holds a report", "--force")


@pytest.mark.slow
def test_live_cloud_retries_a_500_and_reruns_from_the_cache(tmp_path, bench_fault_proxy, bench_dialogsum5):
    bench_fault_proxy.failures = [500]
    common = ["bench", "--data", bench_dialogsum5, "--limit", "3", "--length", "short",
              "--cloud-endpoint", bench_fault_proxy.url, "--cloud-model", SERVER_MODEL_ALIAS,
              "--cloud-name", "served-gguf", "--cloud-cache", tmp_path / "cache",
              "--cloud-api-key-env", "BENCH_TEST_KEY", "--cloud-concurrency", "2", "--price-per-1k", "0.002"]
    env = {"BENCH_TEST_KEY": SECRET}
    first = sumctl(*common, "--out", "run1", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    info = json.loads((tmp_path / "run1" / "report.json").read_text())["systems"][0]["info"]
    assert info["retries"] == 1 and info["calls_made"] == 4 and info["cache_hits"] == 0
    assert bench_fault_proxy.failed == 1 and bench_fault_proxy.forwarded == 3
    assert all(r["headers"].get("Authorization") == f"Bearer {SECRET}" for r in bench_fault_proxy.requests)
    sent = bench_fault_proxy.requests[-1]["json"]
    assert sent["model"] == SERVER_MODEL_ALIAS and sent["temperature"] == 0 and sent["max_tokens"] == 64

    second = sumctl(*common, "--out", "run2", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    report2 = json.loads((tmp_path / "run2" / "report.json").read_text())
    assert report2["systems"][0]["info"]["calls_made"] == 0
    assert report2["systems"][0]["info"]["cache_hits"] == 3
    assert len(bench_fault_proxy.requests) == 4  # the rerun sent nothing
    report1 = json.loads((tmp_path / "run1" / "report.json").read_text())
    assert [d["summary"] for d in report1["systems"][0]["documents"]] == \
        [d["summary"] for d in report2["systems"][0]["documents"]]
    assert report2["systems"][0]["metrics"]["cost_total"] > 0
    saved = (tmp_path / "run1" / "cloud-served-gguf.jsonl").read_text().splitlines()
    assert len(saved) == 3 and json.loads(saved[0])["summary"]

    # The key is in no file and no output.
    for path in [*(tmp_path / "run1").rglob("*"), *(tmp_path / "run2").rglob("*"), *(tmp_path / "cache").rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in first.stdout + first.stderr + second.stdout + second.stderr


def test_a_bench_run_pulls_in_no_torch(tmp_path, bench_extractive_bundle, bench_dialogsum5, bench_lead2_cloud):
    """The bench is part of the edge runtime: scoring, plots and reports must not need torch."""
    probe = f"""
import sys
from sumctl.benchmarks.bench.runner import BenchConfig, run_bench
run_bench(BenchConfig(data={str(bench_dialogsum5)!r}, models=[{str(bench_extractive_bundle)!r}],
                      clouds=["lead2={bench_lead2_cloud}"], out={str(tmp_path / 'out')!r}, limit=2,
                      memory_runs=2))
heavy = [m for m in ("torch", "transformers", "optimum") if m in sys.modules]
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "report.json").is_file()
