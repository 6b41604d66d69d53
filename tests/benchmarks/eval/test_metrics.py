"""Evaluation data, ROUGE and bootstrap intervals, and the QMSum/DialogSum converters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rouge_score import rouge_scorer

from sumctl.runtime.errors import InputError
from sumctl.benchmarks.eval.metrics import RougeScorer, bertscore_status, bootstrap_ci, compression_ratio, split_sentences
from sumctl.benchmarks.eval.records import load_dataset
from sumctl.benchmarks.eval.datasets import prepare_dialogsum, prepare_qmsum, qmsum_files, write_jsonl
from sumctl.runtime.transcript import parse_text


def write_lines(path: Path, objs) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return path


# --- data loading ----------------------------------------------------------------------------

def test_records_take_inline_text_or_a_path_relative_to_the_data_file(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "standup.vtt").write_text(
        "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Ann>We ship on Friday.\n\n"
        "00:00:05.000 --> 00:00:07.000\n<v Bob>I will write the notes.\n")
    data = write_lines(tmp_path / "eval.jsonl", [
        {"id": "a", "transcript": "Ann: We ship Friday.\nBob: Notes from me.", "reference": "Ship Friday.",
         "meta": {"kept": True}},
        {"id": 7, "transcript": "t/standup.vtt", "reference": "Ann ships Friday; Bob writes notes."},
    ])
    ds = load_dataset(data)
    assert ds.ids() == ["a", "7"]
    assert [t.speaker for t in ds.records[0].transcript.turns] == ["Ann", "Bob"]
    assert ds.records[0].extra == {"meta": {"kept": True}}
    vtt = ds.records[1].transcript
    assert vtt.format == "vtt" and vtt.turns[0].start == 1.0
    assert ds.records[1].transcript_path == "t/standup.vtt"


def test_dataset_hash_follows_transcript_files_and_limit(tmp_path):
    (tmp_path / "m.txt").write_text("Ann: We ship Friday.\n")
    data = write_lines(tmp_path / "eval.jsonl", [
        {"id": "a", "transcript": "m.txt", "reference": "Ship."},
        {"id": "b", "transcript": "Bob: hello there friends.", "reference": "Hi."}])
    full, first = load_dataset(data), load_dataset(data, limit=1)
    assert len(first.records) == 1 and first.total_records == 2
    assert first.sha256 != full.sha256 and first.file_sha256 == full.file_sha256
    before = full.sha256
    (tmp_path / "m.txt").write_text("Ann: We ship Monday.\n")  # same JSONL bytes, new transcript
    after = load_dataset(data)
    assert after.file_sha256 == full.file_sha256 and after.sha256 != before


@pytest.mark.parametrize("line, message", [
    ({"id": "x", "transcript": "Ann: hi there."}, "missing field 'reference'"),
    ({"transcript": "Ann: hi there.", "reference": "r"}, "missing field 'id'"),
    ({"id": "x", "transcript": "", "reference": "r"}, "'transcript' must be"),
    ({"id": "x", "transcript": "Ann: hi.", "reference": "  "}, "'reference' must be"),
    ({"id": "x", "transcript": "notes/missing.vtt", "reference": "r"}, "transcript file 'notes/missing.vtt' not found"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
])
def test_bad_records_name_the_file_line_and_fix(tmp_path, line, message):
    data = write_lines(tmp_path / "eval.jsonl", [{"id": "ok", "transcript": "Ann: fine.", "reference": "r"}, line])
    with pytest.raises(InputError) as e:
        load_dataset(data)
    assert f"{data}:2:" in str(e.value) and message in str(e.value)


def test_repeated_ids_and_empty_files_are_refused(tmp_path):
    rec = {"id": "x", "transcript": "Ann: fine.", "reference": "r"}
    with pytest.raises(InputError, match="id 'x' repeats line 1"):
        load_dataset(write_lines(tmp_path / "dup.jsonl", [rec, rec]))
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="no records"):
        load_dataset(tmp_path / "empty.jsonl")
    with pytest.raises(InputError, match="no such data file"):
        load_dataset(tmp_path / "absent.jsonl")


# --- metrics ---------------------------------------------------------------------------------

PAIRS = [
    ("Ann will ship the release on Friday. Bob writes the notes.",
     "The team agreed to ship on Friday. Bob will write release notes."),
    ("They discussed the budget. No decision was made!", "The budget was discussed but not decided."),
    ("Person2 has trouble breathing. The doctor sends #Person2# to a specialist.",
     "#Person2# has trouble breathing. The doctor asks #Person2# about it and will send #Person2# "
     "to a pulmonary specialist."),
]


def test_rouge_matches_rouge_score_called_directly():
    ours = RougeScorer()
    direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)
    for prediction, reference in PAIRS:
        # What the literature does for Lsum: one sentence a line, on both sides.
        expected = direct.score("\n".join(split_sentences(reference)), "\n".join(split_sentences(prediction)))
        got = ours.score(prediction, reference)
        for key in ("rouge1", "rouge2", "rougeLsum"):
            assert got[key] == pytest.approx(expected[key].fmeasure, abs=1e-12)
            assert got[f"{key}_recall"] == pytest.approx(expected[key].recall, abs=1e-12)
        # ROUGE-1 and -2 ignore line breaks, so they equal the plain call on the raw strings.
        plain = direct.score(reference, prediction)
        assert got["rouge1"] == pytest.approx(plain["rouge1"].fmeasure, abs=1e-12)
        assert got["rouge2"] == pytest.approx(plain["rouge2"].fmeasure, abs=1e-12)


def test_lsum_uses_sentence_lines():
    pred = "bob writes notes. ann ships friday."
    ref = "ann ships friday. bob writes notes."
    # A single LCS over the whole text can match only one of the two sentences in order;
    # sentence-level union LCS matches both. The difference proves the sentences were split.
    flat = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, pred)["rougeL"].fmeasure
    assert flat < 0.8
    assert split_sentences("Ann ships Friday. Bob writes notes!  #Person2# agrees.") == [
        "Ann ships Friday.", "Bob writes notes!", "#Person2# agrees."]
    assert RougeScorer().score("Bob writes notes. Ann ships Friday.",
                               "Ann ships Friday. Bob writes notes.")["rougeLsum"] == pytest.approx(1.0)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = [0.1, 0.5, 0.35, 0.8, 0.2, 0.6, 0.45]
    a, b = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3)
    assert a == b
    assert a["mean"] == pytest.approx(np.mean(values))
    assert a["low"] < a["mean"] < a["high"]
    assert bootstrap_ci(values, seed=4) != a
    assert bootstrap_ci([0.4] * 5, seed=0) == {"mean": 0.4, "low": 0.4, "high": 0.4, "n": 5}
    assert bootstrap_ci([], seed=0)["n"] == 0


def test_compression_ratio_and_bertscore_is_never_faked():
    assert compression_ratio(300, 30) == 10 and compression_ratio(300, 0) is None
    ok, note = bertscore_status()
    assert note.startswith("computed") if ok else note.startswith("skipped:")


# --- converters on the real data -----------------------------------------------------------

def test_prepare_qmsum_general_answers(qmsum_dir, tmp_path):
    records = prepare_qmsum(qmsum_dir, split="val")
    files = qmsum_files(qmsum_dir, "val")
    assert len(records) == len(files)
    first = json.loads(files[0].read_text())
    assert records[0]["id"] == files[0].stem
    assert records[0]["reference"] == " ".join(first["general_query_list"][0]["answer"].split())
    transcript = parse_text(records[0]["transcript"])
    assert transcript.turns[0].speaker == first["meeting_transcripts"][0]["speaker"]
    # Round trip through the file the bench reads.
    ds = load_dataset(write_jsonl(records, tmp_path / "qmsum.jsonl"))
    assert len(ds.records) == len(files)
    with pytest.raises(InputError, match="already exists"):
        write_jsonl(records, tmp_path / "qmsum.jsonl")


def test_prepare_qmsum_specific_segments_follow_relevant_text_span(qmsum_dir):
    records = prepare_qmsum(qmsum_dir, split="val", specific=True)
    files = qmsum_files(qmsum_dir, "val")
    expected = sum(len(json.loads(f.read_text())["specific_query_list"]) for f in files)
    assert len(records) == expected
    first = json.loads(files[0].read_text())
    query = first["specific_query_list"][0]
    (start, end), = [(int(s), int(e)) for s, e in query["relevant_text_span"]]
    lines = records[0]["transcript"].splitlines()
    span = [t for t in first["meeting_transcripts"][start:end + 1] if t["content"].strip()]
    assert len(lines) == len(span)
    assert lines[0].startswith(f"{span[0]['speaker']}: ")
    assert records[0]["reference"] == " ".join(query["answer"].split())
    assert records[0]["meta"]["span"] == [[start, end]]
    # The question travels with the record, for the query-focused prompt.
    assert records[0]["query"] == query["query"] and records[0]["query"].strip()
    multi = [r for r in records if len(r["meta"]["span"]) > 1]
    assert multi, "QMSum val has queries with several spans"


def test_prepare_dialogsum(dialogsum_file):
    records = prepare_dialogsum(dialogsum_file)
    assert len(records) == sum(1 for ln in dialogsum_file.read_text().splitlines() if ln.strip())
    source = json.loads(dialogsum_file.read_text().splitlines()[0])
    assert records[0]["id"] == source["fname"] and records[0]["reference"] == source["summary"].strip()
    transcript = parse_text(records[0]["transcript"])
    assert transcript.format == "dialogsum" and transcript.turns[0].speaker == "Person1"


def test_converters_refuse_what_they_cannot_read(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        prepare_qmsum(tmp_path / "nope")
    with pytest.raises(InputError, match="no 'test' split"):
        prepare_qmsum(tmp_path, split="test")
    (tmp_path / "bad.jsonl").write_text('{"fname": "x", "text": "no dialogue"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: not a DialogSum record"):
        prepare_dialogsum(tmp_path / "bad.jsonl")
