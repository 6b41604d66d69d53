"""Issue 27's rules at the parser and the writers, in-process: fsutil.display_name for names,
transcript.clean_string for strings, transcript.finite_seconds for times, and a summary record
that is written strictly or not at all. The CLI's side is tests/cli/test_hardening_bytes.py."""

from __future__ import annotations

import json
import os

import pytest

from sumctl.runtime.errors import InputError, OutputError
from sumctl.runtime.fsutil import display_name
from sumctl.runtime.outputs import OutputFolder, output_place, write_summary
from sumctl.runtime.transcript import clean_string, parse_bytes, read_transcript


def test_display_name_shows_bytes_that_are_not_utf8_and_leaves_utf8_names_alone():
    raw = os.fsdecode(b"/share/caf\xe9 notes.txt")  # as os.listdir hands it over
    assert display_name(raw) == display_name(os.fsencode(raw)) == "/share/caf\\xe9 notes.txt"
    assert display_name("/share/café notes.txt") == "/share/café notes.txt"
    assert display_name(raw).encode("utf-8")


def test_a_name_that_is_not_utf8_is_shown_by_the_rule_and_opened_as_given(tmp_path):
    path = os.path.join(os.fsencode(tmp_path), b"r\xe9union 2026-10-07.txt")
    with open(path, "wb") as f:
        f.write(b"Ann: The review moves to Monday.\n")
    transcript = read_transcript(os.fsdecode(path))
    assert transcript.source.endswith("r\\xe9union 2026-10-07.txt")
    assert transcript.date == "2026-10-07"
    place = output_place(os.fsdecode(path))
    assert place.source_key.encode("utf-8") and place.base_stem.encode("utf-8")


def test_a_missing_file_whose_name_is_not_utf8_is_an_input_error_that_encodes(tmp_path):
    with pytest.raises(InputError) as e:
        read_transcript(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"gone\xff.txt")))
    assert "gone\\xff.txt" in str(e.value) and str(e.value).encode("utf-8")


def test_clean_string_is_the_one_rule_for_strings():
    assert clean_string("ok \ud83d and \udc00") == "ok \ufffd and \ufffd"
    assert clean_string("a\x00b\x1bc\x7fd\x85e\x92f\tg\nh") == "a b c d e f\tg\nh"
    assert clean_string("café 😀") == "café 😀"


def test_json_escapes_cannot_smuggle_nul_controls_or_surrogates_into_turns():
    data = json.dumps({"title": "T\u0000itle \ud800", "turns": [
        {"speaker": "Ann\u001b[2J", "text": "We ship\u0000 on Friday \udfff."}]}).encode()
    transcript = parse_bytes(data, name="m.json")
    turn = transcript.turns[0]
    assert turn.speaker == "Ann [2J" and "\x00" not in turn.text and "\ufffd" in turn.text
    assert transcript.title == "T itle \ufffd"
    json.dumps(transcript.to_dict(), ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("encoding,bom", [("utf-32-le", b"\xff\xfe\x00\x00"),
                                          ("utf-32-be", b"\x00\x00\xfe\xff")])
def test_utf32_with_its_bom_decodes(encoding, bom):
    text = "Ann: Wir liefern am Freitag — garantiert.\nBob: Die Doku kommt vorher.\n"
    transcript = parse_bytes(bom + text.encode(encoding), name="m.txt")
    assert [t.speaker for t in transcript.turns] == ["Ann", "Bob"]
    assert transcript.turns[0].text == "Wir liefern am Freitag — garantiert."


def test_utf32_without_a_whole_last_character_is_refused_in_one_line():
    data = b"\xff\xfe\x00\x00" + "Ann: hi there\n".encode("utf-32-le") + b"\x41\x00"
    with pytest.raises(InputError, match="m.txt: broken UTF-32"):
        parse_bytes(data, name="m.txt")


def test_utf16_holding_a_nul_character_is_refused():
    data = b"\xff\xfe" + "Ann: hi\x00 there\n".encode("utf-16-le")
    with pytest.raises(InputError, match="m.txt: .*NUL"):
        parse_bytes(data, name="m.txt")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", '"-inf"', '"NaN"'])
def test_a_json_time_that_is_not_finite_is_an_input_error(value):
    data = f'[{{"speaker": "Ann", "text": "hi there", "end": {value}}}]'.encode()
    with pytest.raises(InputError, match="m.json: turn 0 has a time of"):
        parse_bytes(data, name="m.json")


def test_a_vtt_cue_hour_too_large_for_a_float_is_an_input_error():
    hours = "1" * 320
    data = f"WEBVTT\n\n{hours}:00:00.000 --> {hours}:00:01.000\nAnn: hi there\n".encode()
    with pytest.raises(InputError, match="m.vtt: cue"):
        parse_bytes(data, name="m.vtt")


def test_a_summary_record_is_never_written_with_nan(tmp_path, extractive_bundle_dir):
    from sumctl.runtime.summarizer import Summarizer

    transcript = parse_bytes(b"Ann: We ship the billing page on Friday.\n", name="m.txt")
    summarizer = Summarizer(extractive_bundle_dir)
    try:
        summary = summarizer.summarize(transcript)
    finally:
        summarizer.close()
    with OutputFolder(tmp_path) as folder, pytest.raises(OutputError, match="JSON cannot say"):
        write_summary(summary, folder, "m", ("md", "json"), source_key="m.txt",
                      extra={"watch": {"wait_s": float("nan")}})
    assert list(tmp_path.iterdir()) == []
