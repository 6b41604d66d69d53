"""benchmarks/perf/quality.py run as a user types it, on the extractive baseline and a few
records (seconds, not minutes): its tables, the per-document record, the JSON line last, a
limit of 0 leaving a set out, and the whole-meeting set."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sumctl.benchmarks.eval.metrics import RougeScorer


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sumctl.benchmarks.perf.quality", "--systems", "extractive",
                           "--threads", "1", *args], capture_output=True, text=True, timeout=300)


def test_two_records_per_set_are_scored_and_the_record_agrees_with_the_headline(tmp_path, qmsum_dir,
                                                                               dialogsum_file):
    out = tmp_path / "quality.json"
    result = run("--qmsum-limit", "2", "--dialogsum-limit", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    headline = json.loads(result.stdout.strip().splitlines()[-1])
    record = json.loads(out.read_text())
    assert set(record["results"]) == {"qmsum_val_specific", "dialogsum_dev"}
    scorer = RougeScorer()
    for set_name, by_system in record["results"].items():
        docs = by_system["extractive"]["documents"]
        assert len(docs) == 2 and all(d["summary"] for d in docs)
        lsum = by_system["extractive"]["metrics"]["rougeLsum"]
        assert lsum["low"] <= lsum["mean"] <= lsum["high"]
        # The mean is the documents' own scores, as the scorer gives them again.
        assert lsum["mean"] == pytest.approx(
            sum(100 * d["scores"]["rougeLsum"] for d in docs) / 2, abs=1e-6)
        assert docs[0]["scores"]["rougeLsum"] == pytest.approx(
            scorer.score(docs[0]["summary"], _reference(set_name, docs[0]["id"], qmsum_dir, dialogsum_file))["rougeLsum"])
        assert headline[f"{set_name}_extractive_rouge_lsum"] == pytest.approx(lsum["mean"], abs=0.01)
    assert 0 < headline["cleaning_words_removed_pct"] < 100


def test_a_limit_of_zero_leaves_that_set_out(qmsum_dir, dialogsum_file):
    result = run("--qmsum-limit", "0", "--dialogsum-limit", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    headline = json.loads(result.stdout.strip().splitlines()[-1])
    assert "dialogsum_dev_extractive_rouge_lsum" in headline
    assert not any(key.startswith("qmsum_val_specific") for key in headline)


def test_whole_meetings_are_the_first_by_name_scored_against_the_general_reference(tmp_path, qmsum_dir):
    from sumctl.benchmarks.eval.datasets import prepare_qmsum

    out = tmp_path / "quality.json"
    result = run("--qmsum-limit", "0", "--dialogsum-limit", "0", "--whole-limit", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    headline = json.loads(result.stdout.strip().splitlines()[-1])
    (doc,) = json.loads(out.read_text())["results"]["qmsum_val_whole"]["extractive"]["documents"]
    first = prepare_qmsum(qmsum_dir, split="val")[0]
    assert doc["id"] == first["id"] == sorted(p.stem for p in (qmsum_dir / "val").glob("*.json"))[0]
    assert doc["scores"]["rougeLsum"] == pytest.approx(RougeScorer().score(doc["summary"], first["reference"])["rougeLsum"])
    assert headline["qmsum_val_whole_extractive_rouge_lsum"] == pytest.approx(100 * doc["scores"]["rougeLsum"], abs=0.01)
    assert not any(key.startswith(("qmsum_val_specific", "dialogsum")) for key in headline)


def _reference(set_name: str, record_id: str, qmsum_dir, dialogsum_file) -> str:
    from sumctl.benchmarks.eval.datasets import prepare_dialogsum, prepare_qmsum

    records = (prepare_qmsum(qmsum_dir, split="val", specific=True) if set_name.startswith("qmsum")
               else prepare_dialogsum(dialogsum_file))
    return next(r["reference"] for r in records if r["id"] == record_id)
