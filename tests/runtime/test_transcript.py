import json

import pytest

from sumctl.runtime.errors import InputError
from sumctl.runtime.transcript import normalize_markup, parse_bytes, parse_text, read_transcript

VTT_ZOOM = """WEBVTT

1
00:00:01.000 --> 00:00:04.000
Alice Smith: Welcome everyone {vocalsound} to the budget review.

2
00:00:04.500 --> 00:00:07.250
Alice Smith: Let's start with marketing.

3
00:00:08.000 --> 00:00:12.000
Bob: Marketing spent 40k this quarter.
"""

VTT_TEAMS = """WEBVTT

a1b2c3-0
00:00:00.000 --> 00:00:03.120
<v Dana Lee>We need the report by Friday.</v>

a1b2c3-1
00:00:03.500 --> 00:01:03.120
<v Eli Moss>I'll send a draft
on Thursday.</v>

NOTE this is a comment

00:01:04.000 --> 00:01:05.000
<v.loud Dana Lee>Great.</v>
"""

SRT = """1
00:00:01,000 --> 00:00:03,500
Carol: The server migration is done.

2
00:00:04,000 --> 00:00:06,000
Dave: Any downtime?
"""


def test_plain_text_with_speakers_and_wrapped_lines():
    t = parse_text("Alice: Hello there.\nBob: Hi Alice.\nthis line wraps Bob's turn\n\nAlice: Bye.\n")
    assert t.format == "text"
    assert [(x.speaker, x.text) for x in t.turns] == [
        ("Alice", "Hello there."), ("Bob", "Hi Alice. this line wraps Bob's turn"), ("Alice", "Bye.")]


def test_plain_text_without_speakers_is_paragraphs():
    t = parse_text("We met to plan the offsite.\nIt will be in May.\n\nBudget is tight: 5k at most.\n")
    assert [x.speaker for x in t.turns] == [None, None]
    assert t.turns[0].text == "We met to plan the offsite. It will be in May."


def test_plain_text_timestamped_lines():
    t = parse_text("[00:01:02] Ann: First point.\n[00:01:09] Ben: Second point.\n")
    assert [(x.speaker, x.text) for x in t.turns] == [("Ann", "First point."), ("Ben", "Second point.")]


def test_vtt_zoom_prefixes_merge_consecutive_cues_and_keep_times():
    t = parse_text(VTT_ZOOM)
    assert t.format == "vtt"
    assert [(x.speaker, x.text) for x in t.turns] == [
        ("Alice Smith", "Welcome everyone to the budget review. Let's start with marketing."),
        ("Bob", "Marketing spent 40k this quarter."),
    ]
    assert (t.turns[0].start, t.turns[0].end) == (1.0, 7.25)
    assert t.turns[1].start == 8.0


def test_vtt_teams_voice_tags_multiline_and_notes():
    t = parse_text(VTT_TEAMS)
    assert [(x.speaker, x.text) for x in t.turns] == [
        ("Dana Lee", "We need the report by Friday."),
        ("Eli Moss", "I'll send a draft on Thursday."),
        ("Dana Lee", "Great."),
    ]
    assert t.turns[1].end == pytest.approx(63.12)


def test_srt():
    t = parse_text(SRT)
    assert t.format == "srt"
    assert [(x.speaker, x.text, x.start) for x in t.turns] == [
        ("Carol", "The server migration is done.", 1.0), ("Dave", "Any downtime?", 4.0)]


def test_json_list_and_qmsum_shape():
    turns = [{"speaker": "A", "text": "One.", "start": 0, "end": "00:00:02.500"},
             {"speaker": "B", "content": "Two {disfmarker} three."}]
    t = parse_text(json.dumps(turns))
    assert [(x.speaker, x.text, x.end) for x in t.turns] == [("A", "One.", 2.5), ("B", "Two three.", None)]
    q = parse_text(json.dumps({"meeting_transcripts": [{"speaker": "PM", "content": "Kick-off."}]}))
    assert q.turns[0].speaker == "PM"


def test_dialogsum():
    t = parse_text("#Person1#: Hi, Mr. Smith.\n#Person2#: Hello, doctor.")
    assert t.format == "dialogsum"
    assert [x.speaker for x in t.turns] == ["Person1", "Person2"]


def test_markers_and_empty_turns_are_dropped():
    assert normalize_markup("Yeah {vocalsound} {disfmarker} so , we go .") == "Yeah so, we go."
    t = parse_text(json.dumps([{"speaker": "A", "text": "{vocalsound}"}, {"speaker": "A", "text": " . "},
                               {"speaker": "B", "text": "Real words."}]))
    assert [(x.speaker, x.text) for x in t.turns] == [("B", "Real words.")]


def test_extension_wins_over_content(tmp_path):
    f = tmp_path / "notes.json"
    f.write_text("Alice: not json at all")
    with pytest.raises(InputError, match=r"notes\.json: malformed JSON"):
        read_transcript(f)


def test_qmsum_meetings_parse(qmsum_dir):
    for path in sorted((qmsum_dir / "val").glob("*.json"))[:5]:
        raw = json.loads(path.read_text())
        t = read_transcript(path)
        assert t.format == "json" and t.sha256
        assert 0 < len(t.turns) <= len(raw["meeting_transcripts"])
        assert not any("{" in turn.text and "}" in turn.text for turn in t.turns if "{vocalsound}" in turn.text)
        assert all(turn.speaker for turn in t.turns)


def test_qmsum_as_text_vtt_and_srt_round_trip(qmsum_dir, tmp_path):
    """Build each format from a real meeting and check the same turns come back."""
    path = sorted((qmsum_dir / "val").glob("*.json"))[0]
    reference = read_transcript(path)
    turns = reference.turns[:40]
    lines = [f"{x.speaker}: {x.text}" for x in turns]
    (tmp_path / "m.txt").write_text("\n".join(lines))
    vtt = ["WEBVTT", ""] + [f"00:{i // 60:02d}:{i % 60:02d}.000 --> 00:{i // 60:02d}:{i % 60:02d}.900\n<v {x.speaker}>{x.text}</v>\n"
                            for i, x in enumerate(turns)]
    (tmp_path / "m.vtt").write_text("\n".join(vtt))
    srt = [f"{i + 1}\n00:00:{i:02d},000 --> 00:00:{i:02d},900\n{x.speaker}: {x.text}\n" for i, x in enumerate(turns)]
    (tmp_path / "m.srt").write_text("\n".join(srt))

    def merged(ts):  # caption formats merge consecutive cues of one speaker
        out = []
        for x in ts:
            if out and out[-1][0] == x.speaker:
                out[-1] = (x.speaker, out[-1][1] + " " + x.text)
            else:
                out.append((x.speaker, x.text))
        return out

    assert [(x.speaker, x.text) for x in read_transcript(tmp_path / "m.txt").turns] == [(x.speaker, x.text) for x in turns]
    assert [(x.speaker, x.text) for x in read_transcript(tmp_path / "m.vtt").turns] == merged(turns)
    assert [(x.speaker, x.text) for x in read_transcript(tmp_path / "m.srt").turns] == merged(turns)


def test_dialogsum_records_parse(dialogsum_file):
    for line in dialogsum_file.read_text().splitlines()[:20]:
        record = json.loads(line)
        t = parse_text(record["dialogue"], name=record["fname"])
        assert t.format == "dialogsum" and len(t.turns) >= 2


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"  \n\n ", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    (b"Alice: caf\xe9 au lait\n", "invalid UTF-8 at byte 10"),
    (b"WEBVTT\n\nnot a timing line\nhello\n", "malformed WebVTT"),
    (b"{\"speaker\": \"A\", \"text\": \"x\"", "malformed JSON"),
    (b"[1, 2]", "turn 0 is int"),
    (b"{vocalsound} {disfmarker}", "no speech"),
])
def test_bad_input_is_one_clear_line(tmp_path, content, message):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_transcript(f, fmt=None)
    assert message in str(e.value) and str(f) in str(e.value) and "\n" not in str(e.value)


def test_malformed_vtt_and_srt_by_extension(tmp_path):
    (tmp_path / "a.vtt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhi\n")
    (tmp_path / "b.srt").write_text("1\n00:00:01 to 00:00:02\nhi\n")
    with pytest.raises(InputError, match="first line must be `WEBVTT`"):
        read_transcript(tmp_path / "a.vtt")
    with pytest.raises(InputError, match="malformed SRT"):
        read_transcript(tmp_path / "b.srt")


def test_size_cap(tmp_path, monkeypatch):
    f = tmp_path / "big.txt"
    f.write_text("Alice: " + "word " * 1000)
    with pytest.raises(InputError, match="over the 1,000-byte cap"):
        read_transcript(f, max_bytes=1000)
    monkeypatch.setenv("SUMCTL_MAX_BYTES", "2000")
    with pytest.raises(InputError, match="over the 2,000-byte cap"):
        read_transcript(f)


def test_utf16_with_bom_and_utf8_bom():
    assert parse_bytes("Ann: hi there".encode("utf-16")).turns[0].text == "hi there"
    assert parse_bytes(b"\xef\xbb\xbfWEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhi\n").format == "vtt"


def test_reading_never_changes_the_file(tmp_path):
    f = tmp_path / "m.vtt"
    f.write_text(VTT_ZOOM)
    before = (f.read_bytes(), f.stat().st_mtime_ns)
    read_transcript(f)
    assert (f.read_bytes(), f.stat().st_mtime_ns) == before


def test_a_json_transcript_and_a_file_name_can_say_the_meetings_title_and_date(tmp_path):
    path = tmp_path / "call.json"
    path.write_text(json.dumps({"title": "Release call", "date": "2027-05-18T09:00:00Z",
                                "turns": [{"speaker": "Ayo", "text": "Let's ship it."}]}))
    t = read_transcript(path)
    assert (t.title, t.date, t.participants) == ("Release call", "2027-05-18", ["Ayo"])
    named = tmp_path / "2026-10-07 standup.txt"
    named.write_text("Ann: Hi.\nBo: Hello.\n")
    assert read_transcript(named).date == "2026-10-07"
    odd = tmp_path / "2026-13-45 notes.txt"  # not a date: ignored, not guessed
    odd.write_text("Ann: Hi.\n")
    assert read_transcript(odd).date is None
    path.write_text(json.dumps({"date": "soon", "turns": [{"speaker": "Ayo", "text": "Hi."}]}))
    assert read_transcript(path).date is None


def test_one_speakers_many_cues_are_joined_in_linear_time():
    """100,000 cues of one speaker are one turn. Joining them as they came copied the growing
    turn once per cue: 8.3 s on a quiet 2-core machine at c9b9600 (quadratic, so minutes at a
    few times the size); joined once per turn, 3.1 s."""
    import time

    def stamp(t: int) -> str:
        return f"{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}.000"

    cues = 100_000
    text = "WEBVTT\n\n" + "".join(f"{stamp(2 * i)} --> {stamp(2 * i + 2)}\n<v Ann>Point {i} of the plan.\n\n"
                                  for i in range(cues))
    started = time.perf_counter()
    [turn] = parse_bytes(text.encode(), name="long.vtt").turns
    assert time.perf_counter() - started < 6
    assert turn.speaker == "Ann" and turn.start == 0 and turn.end == 2 * cues
    assert turn.text.startswith("Point 0 of the plan. Point 1 of") and turn.text.endswith(f"Point {cues - 1} of the plan.")
