import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sumctl.runtime.backends.extractive import build_extractive_bundle
from cli_fixtures import assert_one_line_error

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "standup.vtt"


def sumctl(*args, input=None, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "sumctl.cli", *map(str, args)], capture_output=True,
                          text=True, input=input, cwd=cwd, env=env, timeout=600)



@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_extractive_bundle(tmp_path_factory.mktemp("bundle") / "extractive").path


def test_help_reads_like_documentation():
    result = sumctl("--help")
    assert result.returncode == 0
    for command in ("summarize", "export", "models"):
        assert command in result.stdout
    assert "Examples:" in sumctl("summarize", "--help").stdout


def test_summarize_writes_md_and_json_beside_input(tmp_path, bundle):
    source = tmp_path / "standup.vtt"
    shutil.copy(EXAMPLE, source)
    before = source.read_bytes()
    result = sumctl("summarize", source, "--model", bundle, "--length", "short")
    assert result.returncode == 0, result.stderr
    assert "extractive baseline" in result.stderr  # the output says which model wrote it
    record = json.loads((tmp_path / "standup.summary.json").read_text())
    assert record["text"] and record["length"] == "short" and record["source_format"] == "vtt"
    assert record["model"]["backend"] == "extractive" and record["timings"]["summarize_s"] >= 0
    assert record["chapters"] and record["input_tokens"] > 0
    # Minutes are the default: the front matter, then the summary and the items.
    markdown = (tmp_path / "standup.summary.md").read_text()
    assert markdown.startswith("---\n") and "\n# Minutes of standup.vtt\n" in markdown
    assert "## Action items" in markdown and record["action_items"]
    assert source.read_bytes() == before


def test_rerun_replaces_own_summary_but_same_stem_sources_are_disambiguated(tmp_path, bundle):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "a" / "meeting.vtt")
    (tmp_path / "b" / "meeting.txt").write_text("Ann: The budget review moves to Monday next week.\n")
    out = tmp_path / "out"
    for _ in range(2):
        result = sumctl("summarize", tmp_path / "a" / "meeting.vtt", tmp_path / "b" / "meeting.txt",
                        "--model", bundle, "--out", out, "--format", "txt")
        assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["meeting-2.summary.json", "meeting-2.summary.txt", "meeting.summary.json", "meeting.summary.txt"]
    sources = {json.loads((out / n).read_text())["source"] for n in names if n.endswith(".json")}
    assert len(sources) == 2


def test_an_input_named_like_an_output_is_never_overwritten(tmp_path, bundle):
    # meeting.md's summary would be meeting.summary.md, which is itself an input here.
    tricky = tmp_path / "meeting.summary.md"
    tricky.write_text("Ann: this file's name looks like the summary output of meeting.md.\n")
    (tmp_path / "meeting.md").write_text("Bob: The quarterly planning moves to the big room.\n")
    original = tricky.read_bytes()
    result = sumctl("summarize", tmp_path / "meeting.md", tricky, "--model", bundle)
    assert result.returncode == 0, result.stderr
    assert tricky.read_bytes() == original
    assert json.loads((tmp_path / "meeting-2.summary.json").read_text())["source"].endswith("meeting.md")


def test_stdin_prints_the_summary(bundle):
    result = sumctl("summarize", "-", "--model", bundle, input="Ann: We ship the new billing page on Friday.\n"
                                                              "Bob: I will update the docs before then.\n")
    assert result.returncode == 0, result.stderr
    assert "billing" in result.stdout or "docs" in result.stdout


@pytest.mark.parametrize("name, content, fragment", [
    ("empty.txt", b"", "the file is empty"),
    ("blob.txt", b"\x00\x01\x02binary\x00", "binary"),
    ("latin1.txt", b"Ren\xe9: bonjour\n", "invalid UTF-8"),
    ("bad.vtt", b"WEBVTT\n\n00:00:01 -> 00:00:02\nhi\n", "malformed WebVTT"),
    ("bad.srt", b"1\nsoon\nhi\n", "malformed SRT"),
    ("bad.json", b"[{\"speaker\": \"A\"", "malformed JSON"),
])
def test_bad_inputs_get_one_line_errors(tmp_path, bundle, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    result = sumctl("summarize", path, "--model", bundle)
    assert_one_line_error(result, name, fragment)
    assert path.read_bytes() == content and sorted(tmp_path.iterdir()) == [path]


def test_huge_file_over_cap(tmp_path, bundle):
    path = tmp_path / "huge.txt"
    path.write_text("Ann: " + "words " * 5000)
    assert_one_line_error(sumctl("summarize", path, "--model", bundle, "--max-bytes", "10000"), "huge.txt", "cap")


def test_missing_model_and_corrupt_bundle(tmp_path, bundle):
    source = tmp_path / "m.vtt"
    shutil.copy(EXAMPLE, source)
    assert_one_line_error(sumctl("summarize", source, "--model", tmp_path / "nowhere"), "nowhere", "no such model bundle")
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "extractive.json").write_text("{}")
    assert_one_line_error(sumctl("summarize", source, "--model", broken), "extractive.json", "sha256")
    assert_one_line_error(sumctl("summarize", tmp_path / "absent.vtt", "--model", bundle), "absent.vtt", "not a file")


def test_query_and_keep_fillers(tmp_path, bundle):
    source = tmp_path / "sync.txt"
    source.write_text("Ann: Um, so the the battery, uh, lasts two days.\nBob: Yeah.\n"
                      "Bob: We decided to keep the bigger battery for the remote.\n")
    result = sumctl("summarize", source, "--model", bundle, "--query",
                    "What did they decide about the battery?")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "sync.summary.json").read_text())
    assert record["query"] == "What did they decide about the battery?"
    assert record["cleaning"] == {"turns_dropped": 1, "words_removed": 4, "words_removed_pct": 20.0}
    assert "uh" not in record["text"].split() and "**Question:** What did" in (
        tmp_path / "sync.summary.md").read_text()
    kept = sumctl("summarize", source, "--model", bundle, "--keep-fillers", "--out", tmp_path / "raw")
    assert kept.returncode == 0, kept.stderr
    raw = json.loads((tmp_path / "raw" / "sync.summary.json").read_text())
    assert raw["cleaning"] == {} and raw["query"] is None


def test_an_input_budget_too_small_for_any_transcript_is_one_line(tmp_path):
    """A bundle whose input cannot hold a sentence used to end in a ValueError's traceback."""
    tiny = build_extractive_bundle(tmp_path / "tiny", max_input_tokens=4).path
    source = tmp_path / "m.txt"
    source.write_text("Ann: We ship on Friday.\nBob: I will write the notes.\n")
    assert_one_line_error(sumctl("summarize", source, "--model", tiny, "--quiet"), "4 tokens", "longer input")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.txt", "tiny"]
