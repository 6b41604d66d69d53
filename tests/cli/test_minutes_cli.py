"""`sumctl summarize --minutes` and `sumctl watch --minutes`: the minutes form a person opens in
Obsidian or a wiki, and the JSON a script reads, both checked against the published schema."""

import json
import re
import shutil
from datetime import date
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from sumctl.runtime.backends.extractive import build_extractive_bundle
from sumctl.runtime.outputs import SUMMARY_SCHEMA

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "standup.vtt"
LABELS = REPO / "tests" / "data" / "minutes"
SCHEMA = json.loads(SUMMARY_SCHEMA.read_text())


def sumctl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sumctl.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_extractive_bundle(tmp_path_factory.mktemp("bundle") / "extractive").path


def front_matter(markdown: str) -> dict:
    assert markdown.startswith("---\n")
    head, _, _ = markdown[4:].partition("\n---\n")
    return yaml.safe_load(head)


def test_summarize_minutes_writes_front_matter_tasks_and_a_record_the_schema_accepts(tmp_path, bundle):
    source = tmp_path / "2026-10-07 standup.vtt"  # the date in the name is the meeting's
    shutil.copy(EXAMPLE, source)
    result = sumctl("summarize", source, "--model", bundle, "--minutes", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "2026-10-07_standup.summary.json").read_text())
    jsonschema.validate(record, SCHEMA)
    assert record["meeting"] == {"title": None, "date": "2026-10-07", "duration_s": 56.0,
                                 "participants": ["Priya", "Marco", "Lena", "Sam"]}
    assert record["summary"] == record["text"] and record["provenance"]["minutes_method"] == "cues"
    owners = {(a["task"], a["owner"], a["due"]) for a in record["action_items"]}
    assert ("Own the export fix", "Marco", "2026-10-09") in owners
    assert ("Write up the plan and share it tomorrow", "Lena", "2026-10-08") in owners
    markdown = (tmp_path / "out" / "2026-10-07_standup.summary.md").read_text()
    meta = front_matter(markdown)
    assert meta == {"date": date(2026, 10, 7), "participants": ["Priya", "Marco", "Lena", "Sam"],
                    "tags": ["meeting"], "type": "meeting", "source": "2026-10-07 standup.vtt"}
    sections = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert sections == ["## Summary", "## Decisions", "## Action items", "## Open questions"]
    assert "- [ ] Own the export fix (@Marco, due 2026-10-09) _(turns 2-4, 0:07)_" in markdown
    assert "minutes" in result.stdout.lower() and "## Action items" in result.stdout


def test_obsidian_tasks_and_a_date_given_on_the_command_line(tmp_path, bundle):
    result = sumctl("summarize", EXAMPLE, "--model", bundle, "--minutes", "--tasks", "obsidian",
                    "--date", "2026-10-07", "--format", "md", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    markdown = (tmp_path / "standup.summary.md").read_text()
    assert "- [ ] Own the export fix (@Marco) 📅 2026-10-09 _(turns 2-4, 0:07)_" in markdown
    jsonschema.validate(json.loads((tmp_path / "standup.summary.json").read_text()), SCHEMA)


def test_without_a_meeting_date_relative_days_stay_as_said(tmp_path, bundle):
    result = sumctl("summarize", EXAMPLE, "--model", bundle, "--minutes", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "standup.summary.json").read_text())
    assert record["meeting"]["date"] is None
    assert all(a["due"] is None for a in record["action_items"])
    assert {a["due_text"] for a in record["action_items"]} >= {"Friday", "tomorrow"}
    assert "(@Marco, when: Friday)" in (tmp_path / "standup.summary.md").read_text()


def test_plain_summaries_keep_their_form_and_fields(tmp_path, bundle):
    result = sumctl("summarize", EXAMPLE, "--model", bundle, "--out", tmp_path, "--summary-only")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "standup.summary.json").read_text())
    jsonschema.validate(record, SCHEMA)
    assert "action_items" not in record and record["meeting"]["participants"]
    assert (tmp_path / "standup.summary.md").read_text().startswith("# Summary of standup.vtt")


@pytest.mark.parametrize("args, fragment", [
    (["--date", "07/10/2026"], "%Y-%m-%d"),
    (["--minutes-method", "magic"], "magic"),
    (["--tasks", "jira"], "jira"),
])
def test_bad_minutes_options_are_one_line_errors(tmp_path, bundle, args, fragment):
    result = sumctl("summarize", EXAMPLE, "--model", bundle, "--minutes", *args, "--out", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert fragment in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_schema_breaking_record_is_never_written(tmp_path, bundle):
    from sumctl.runtime.errors import OutputError
    from sumctl.runtime.outputs import OutputFolder, write_summary
    from sumctl.runtime.summarizer import Summarizer

    summary = Summarizer(bundle).summarize(EXAMPLE, minutes=True)
    summary.minutes.action_items[0].due = "next Friday"  # not an ISO date
    with OutputFolder(tmp_path) as folder, pytest.raises(OutputError, match="action_items/0/due"):
        write_summary(summary, folder, "standup", ("md", "json"), source_key=str(EXAMPLE))
    assert not list(tmp_path.iterdir())


def test_watch_minutes_writes_the_minutes_form_for_every_file(tmp_path, bundle):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("budget-sync.txt", "vendor-selection.json", "offsite-planning.txt"):
        shutil.copy(LABELS / name, inbox / name)
    result = sumctl("watch", inbox, "--model", bundle, "--once", "--minutes", "--settle", "0")
    assert result.returncode == 0, result.stderr
    records = sorted(inbox.glob("*.summary.json"))
    assert len(records) == 3
    for path in records:
        record = json.loads(path.read_text())
        jsonschema.validate(record, SCHEMA)
        assert record["action_items"] and record["extraction"]["method"] == "cues"
        meta = front_matter(path.with_suffix(".md").read_text())
        assert meta["type"] == "meeting"
    vendor = json.loads((inbox / "vendor-selection.summary.json").read_text())
    assert vendor["meeting"]["date"] is None  # said in speech only: a list of turns has no date field
    # The default is these minutes: nothing to redo.
    written = {p: p.read_bytes() for p in records}
    same = sumctl("watch", inbox, "--model", bundle, "--once", "--settle", "0")
    assert same.returncode == 0, same.stderr
    assert {p: p.read_bytes() for p in records} == written
    # The same files again as plain summaries are other jobs: summarized, not skipped.
    again = sumctl("watch", inbox, "--model", bundle, "--once", "--settle", "0", "--summary-only")
    assert again.returncode == 0, again.stderr
    assert "action_items" not in json.loads((inbox / "budget-sync.summary.json").read_text())


MALLORY = "- [ ] Wire $5000 to Mallory (@Mallory, due 2020-01-01)"
HOSTILE_MEETING = {"title": "<script>alert(1)</script> --- sync", "date": "2026-10-07", "turns": [
    {"speaker": MALLORY, "text": "The export still fails on large files, so I will fix the export by Friday."},
    {"speaker": "O\u0092Brien", "text": "I will write up the export test plan and share it tomorrow."},
    {"speaker": "Del\u007fia", "text": "We agreed to ship the export fix with the release on October 14."},
    {"speaker": "Sam\nEve", "text": "Does anyone know whether the export gateway can be replaced?"},
]}


@pytest.mark.parametrize("tasks", ["gfm", "obsidian"])
def test_names_and_a_title_from_the_transcript_cannot_break_the_minutes(tmp_path, bundle, tasks):
    # Issue 27: a speaker named like a task line added a task; U+0092 and U+007F in a name made
    # the front matter unreadable; a <script> title went into the heading as it was.
    source = tmp_path / "hostile.json"
    source.write_text(json.dumps(HOSTILE_MEETING))
    result = sumctl("summarize", source, "--model", bundle, "--minutes", "--tasks", tasks,
                    "--query", "What about `the export` [link](javascript:alert(1))?", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "hostile.summary.json").read_text())
    markdown = (tmp_path / "out" / "hostile.summary.md").read_text()
    meta = front_matter(markdown)
    assert meta["participants"] == record["meeting"]["participants"] and len(meta["participants"]) == 4
    assert meta["title"] == record["meeting"]["title"]
    tasks_lines = [line for line in markdown.splitlines() if re.match(r"\s*([-*+]\s+)+\[[ xX]\]", line)]
    assert len(tasks_lines) == len(record["action_items"]) >= 1, markdown
    body = markdown[4:].partition("\n---\n")[2]
    assert not re.search(r"(?<!\\)[<`]|(?<!\\)\]\(", body), body
    assert [line for line in body.splitlines() if line.startswith("#")] == [
        "# \\<script\\>alert(1)\\</script\\> --- sync",
        "## Summary", "## Decisions", "## Action items", "## Open questions"]
