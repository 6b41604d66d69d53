"""Issue 27, cases 1, 5, 6 (times) and 8, through the real CLI: any bytes a filesystem can put in
a name, any string a transcript or a command line can hold, any number a transcript can say.

The rules under test (runtime/fsutil.display_name, runtime/transcript's docstring):
- a file name is opened as the OS gave it and shown, recorded and hashed as its UTF-8 with every
  other byte written `\\xNN`;
- a lone surrogate in a transcript or on the command line becomes U+FFFD, a control character a
  space;
- a time is a finite number of seconds, or the file is refused in one line.
Each test drives `python -m sumctl.cli` in a subprocess with the extractive bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sumctl.runtime.backends.extractive import build_extractive_bundle
from cli_fixtures import assert_one_line_error

MEETING = ("Ann: The budget review moves to Monday next week because finance is late.\n"
           "Bob: I will update the launch docs before Friday and tell the support team.\n"
           "Ann: Good, and Cy books the big room for the review.\n")
# b"caf\xe9": Latin-1, as old Samba shares and zip extractions leave it.
LATIN1_NAME = b"caf\xe9 notes.txt"
SHOWN = "caf\\xe9 notes.txt"


def sumctl(*args, input=None, cwd=None):
    # Arguments go as bytes where they hold bytes that are not UTF-8, as a shell passes them.
    argv = [sys.executable, "-m", "sumctl.cli",
            *(a if isinstance(a, bytes) else os.fspath(a) for a in args)]
    return subprocess.run(argv, capture_output=True, input=input, cwd=cwd, timeout=600)


def err(result) -> str:
    return result.stderr.decode("utf-8", "backslashreplace")


def one_line_error(result, *fragments):
    text = subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(
        "utf-8", "backslashreplace"), err(result))
    return assert_one_line_error(text, *fragments)


def reject(constant):
    raise ValueError(f"not JSON: {constant}")


def strict_json(data: bytes):
    """JSON as RFC 8259 says it: UTF-8, and no NaN or Infinity."""
    return json.loads(data.decode("utf-8"), parse_constant=reject)


def all_strict(folder: Path) -> list[dict]:
    """Every JSON file sumctl wrote under `folder` (done-records included), parsed strictly; and
    every file it wrote has a name that is UTF-8 and a body that is."""
    records = []
    for root, _, files in os.walk(os.fsencode(folder)):
        for name in files:
            ours = (b".summary." in name or name.endswith(b".error.txt")
                    or os.sep.encode() + b".sumctl" + os.sep.encode() + b"done" in root + os.sep.encode())
            if not ours:
                continue
            name.decode("utf-8")
            data = Path(os.fsdecode(os.path.join(root, name))).read_bytes()
            data.decode("utf-8")
            if name.endswith(b".json"):
                records.append(strict_json(data))
    return records


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_extractive_bundle(tmp_path_factory.mktemp("bundle") / "extractive").path


def latin1_file(folder: Path, content: bytes = MEETING.encode()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = os.path.join(os.fsencode(folder), LATIN1_NAME)
    with open(path, "wb") as f:
        f.write(content)
    return Path(os.fsdecode(path))


# --- case 1: names that are not UTF-8 --------------------------------------------------------


def test_summarize_a_name_that_is_not_utf8(tmp_path, bundle):
    source = latin1_file(tmp_path / "in")
    result = sumctl("summarize", os.fsencode(source), "--model", bundle, "--summary-only")
    assert result.returncode == 0, err(result)
    assert "Traceback" not in err(result)
    records = all_strict(tmp_path / "in")
    assert len(records) == 1 and records[0]["source"].endswith(SHOWN)
    assert records[0]["source_key"].endswith(SHOWN)
    md = next(p for p in (tmp_path / "in").iterdir() if p.name.endswith(".summary.md"))
    # Markdown escapes the backslash of `\xe9`: a reader sees the name as SHOWN.
    assert md.read_text(encoding="utf-8").startswith("# Summary of " + SHOWN.replace("\\", "\\\\"))
    assert source.read_bytes() == MEETING.encode()  # the input is untouched
    # A rerun replaces its own summary, not a second set beside it.
    assert sumctl("summarize", os.fsencode(source), "--model", bundle).returncode == 0
    assert len(all_strict(tmp_path / "in")) == 1


def test_a_name_that_is_not_utf8_never_takes_a_siblings_outputs(tmp_path, bundle):
    # `caf\xe9 notes` and `caf_notes` make the same safe stem: the second gets `-2`, and neither
    # is ever overwritten by the other, however often they are summarized.
    source = latin1_file(tmp_path / "in")
    sibling = tmp_path / "in" / "caf_notes.txt"
    sibling.write_text("Dan: The vendor contract is signed and filed with legal today.\n")
    for _ in range(2):
        result = sumctl("summarize", os.fsencode(source), sibling, "--model", bundle)
        assert result.returncode == 0, err(result)
    records = all_strict(tmp_path / "in")
    assert sorted(r["source"].rsplit("/", 1)[-1] for r in records) == sorted(["caf_notes.txt", SHOWN])
    assert len({r["source_key"] for r in records}) == 2


def test_a_bad_file_whose_name_is_not_utf8_is_one_line_naming_it(tmp_path, bundle):
    source = latin1_file(tmp_path / "in", b"Ann: \xc3\x28 not UTF-8 \x80\n")
    one_line_error(sumctl("summarize", os.fsencode(source), "--model", bundle), SHOWN)


def test_batch_and_its_reruns_go_on_past_a_name_that_is_not_utf8(tmp_path, bundle):
    inbox, out = tmp_path / "in", tmp_path / "out"
    latin1_file(inbox)
    first = sumctl("batch", inbox, "--out", out, "--model", bundle)
    assert first.returncode == 0, err(first)
    # A rerun plans past it (it used to die in record_name) and summarizes a new file beside it.
    (inbox / "standup.txt").write_text("Eve: The standup moves to ten o'clock from next week on.\n")
    second = sumctl("batch", inbox, "--out", out, "--model", bundle)
    assert second.returncode == 0, err(second)
    assert "Traceback" not in err(second)
    records = [r for r in all_strict(out) if "text" in r]
    assert sorted(r["source"].rsplit("/", 1)[-1] for r in records) == [SHOWN, "standup.txt"]


def test_watch_once_summarizes_a_name_that_is_not_utf8_and_fails_a_bad_one_visibly(tmp_path, bundle):
    inbox, out = tmp_path / "in", tmp_path / "out"
    latin1_file(inbox)
    bad = os.path.join(os.fsencode(inbox), b"r\xe9union.vtt")
    with open(bad, "wb") as f:
        f.write(b"WEBVTT\n\nnot a cue at all\n")
    result = sumctl("watch", inbox, "--once", "--out", out, "--model", bundle)
    assert result.returncode != 0  # one file failed, and --once says so
    assert "internal error" not in err(result) + result.stdout.decode("utf-8", "replace")
    records = all_strict(out)
    assert [r["source"].rsplit("/", 1)[-1] for r in records] == [SHOWN]
    errors = [p for p in out.iterdir() if p.name.endswith(".error.txt")]
    assert len(errors) == 1
    assert '"' + str(inbox) + "/r\\\\xe9union.vtt" + '"' in errors[0].read_text(encoding="utf-8")
    status = strict_json(sumctl("status", inbox, "--json").stdout)
    assert status["counts"]["done"] == 1 and status["counts"]["failed"] == 1


# --- case 5: strings Python cannot encode ----------------------------------------------------


LONE_SURROGATE_JSON = json.dumps({
    "title": "Launch \ud83d sync",
    "turns": [{"speaker": "Ann \ud83d", "text": "We ship the billing page on Friday \ud83d."},
              {"speaker": "Bob", "text": "I will update the \udc00 docs before then."}]})


def test_summarize_a_json_transcript_with_lone_surrogates(tmp_path, bundle):
    source = tmp_path / "meeting.json"
    source.write_text(LONE_SURROGATE_JSON)  # json.dumps escapes them: `\ud83d`, as JS writes
    result = sumctl("summarize", source, "--model", bundle, "--minutes")
    assert result.returncode == 0, err(result)
    [record] = all_strict(tmp_path)
    text = json.dumps(record, ensure_ascii=False)
    assert "\ufffd" in text and "Ann \ufffd" in text
    assert (tmp_path / "meeting.summary.md").read_text(encoding="utf-8")


def test_batch_summarizes_a_json_transcript_with_lone_surrogates(tmp_path, bundle):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "meeting.json").write_text(LONE_SURROGATE_JSON)
    result = sumctl("batch", inbox, "--out", out, "--model", bundle)
    assert result.returncode == 0, err(result)
    done = [r for r in all_strict(out) if r.get("status")]
    assert [r["status"] for r in done] == ["done"]


def test_a_query_that_is_not_utf8(tmp_path, bundle):
    source = tmp_path / "meeting.txt"
    source.write_text(MEETING)
    result = sumctl("summarize", source, "--model", bundle, "--query", b"who owns the docs \xff?")
    assert result.returncode == 0, err(result)
    [record] = all_strict(tmp_path)
    assert record["query"] == "who owns the docs \ufffd?"


def test_ask_json_with_a_question_that_is_not_utf8_prints_utf8_json(tmp_path, bundle):
    source = tmp_path / "meeting.txt"
    source.write_text(MEETING)
    result = sumctl("ask", source, b"who owns the \xe9 docs?", "--model", bundle, "--json")
    assert result.returncode == 0, err(result)
    answer = strict_json(result.stdout)
    assert answer["question"] == "who owns the \ufffd docs?"


# --- case 8: encodings -----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-32-le", "utf-32-be"])
def test_utf32_with_its_bom_is_summarized_as_text(tmp_path, bundle, encoding):
    source = tmp_path / "meeting.txt"
    source.write_bytes("\ufeff".encode(encoding) + MEETING.encode(encoding))
    result = sumctl("summarize", source, "--model", bundle)
    assert result.returncode == 0, err(result)
    [record] = all_strict(tmp_path)
    assert "\x00" not in record["text"] and "budget review" in record["text"]


def test_nul_past_the_first_64_kib_is_refused(tmp_path, bundle):
    source = tmp_path / "meeting.txt"
    source.write_bytes(MEETING.encode() * 400 + b"Ann: and then \x00\x00\x00 binary\n")
    one_line_error(sumctl("summarize", source, "--model", bundle), "meeting.txt", "NUL")


def test_control_characters_never_reach_a_summary(tmp_path, bundle):
    source = tmp_path / "meeting.json"
    source.write_text(json.dumps([
        {"speaker": "Ann\x1b[31m", "text": "We ship\x00 the billing\x07 page\x7f on Friday\x92."},
        {"speaker": "Bob", "text": "I will update the docs\x0b before then\x1b]0;pwned\x07."}]))
    result = sumctl("summarize", source, "--model", bundle, "--minutes")
    assert result.returncode == 0, err(result)
    [record] = all_strict(tmp_path)
    dumped = json.dumps(record, ensure_ascii=False) + (tmp_path / "meeting.summary.md").read_text()
    assert not any(ord(c) < 32 and c not in "\t\n" or 0x7f <= ord(c) <= 0x9f for c in dumped)


# --- case 6 (times): NaN and infinity --------------------------------------------------------


@pytest.mark.parametrize("start", ["NaN", "Infinity", "-Infinity", "1e999", '"nan"', '"inf"'])
def test_a_json_time_that_is_not_finite_is_refused(tmp_path, bundle, start):
    source = tmp_path / "meeting.json"
    source.write_text(f'[{{"speaker": "Ann", "text": "We ship on Friday.", "start": {start}}},'
                      '{"speaker": "Bob", "text": "Docs first.", "start": 3}]')
    one_line_error(sumctl("summarize", source, "--model", bundle), "meeting.json", "turn 0")
    assert not list(tmp_path.glob("*.summary.*"))


def test_times_whose_difference_is_infinite_are_refused(tmp_path, bundle):
    source = tmp_path / "meeting.json"
    source.write_text(json.dumps([{"speaker": "Ann", "text": "We ship on Friday.", "start": -1e308},
                                  {"speaker": "Bob", "text": "Docs first.", "end": 1e308}]))
    one_line_error(sumctl("summarize", source, "--model", bundle), "meeting.json")


@pytest.mark.parametrize("fmt", ["vtt", "srt"])
def test_a_cue_time_too_large_for_a_float_is_refused(tmp_path, bundle, fmt):
    hours = "9" * 400
    cue = f"{hours}:00:01.000 --> {hours}:00:04.000" if fmt == "vtt" else \
        f"{hours}:00:01,000 --> {hours}:00:04,000"
    head = "WEBVTT\n\n" if fmt == "vtt" else "1\n"
    source = tmp_path / f"meeting.{fmt}"
    source.write_text(f"{head}{cue}\nAnn: We ship on Friday.\n")
    one_line_error(sumctl("summarize", source, "--model", bundle), f"meeting.{fmt}")
