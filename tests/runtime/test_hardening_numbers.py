"""Issue 27, numbers at the edge: a date that cannot be computed is left unresolved (and
counted), never an exception that fails the whole meeting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from watch_fixtures import run, summary_records

from sumctl.runtime.minutes.dates import resolve

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "standup.vtt"


@pytest.mark.parametrize("phrase, meeting", [
    ("by Friday", "9999-12-31"),       # the case: past the last day a date can hold
    ("next Monday", "9999-12-31"),
    ("Friday", "9999-12-31"),
    ("coming Sunday", "9999-12-31"),
    ("last Monday", "0001-01-01"),     # before the first
    ("Friday", "2024-13-01"),          # a meeting date that is no day: nothing to anchor on
    ("Friday", "2024-02-30"),
    ("tomorrow", "not a date"),
    ("Friday", ""),                   # an empty date is no date, not today
])
def test_a_day_past_what_a_date_can_hold_is_unresolved(phrase, meeting):
    assert resolve(phrase, meeting) is None


@pytest.mark.parametrize("phrase, meeting, day", [
    ("today", "0001-01-01", "0001-01-01"),  # the edges themselves still resolve
    ("end of the week", "9999-12-31", "9999-12-31"),
    ("Friday", "0001-01-01", "0001-01-05"),
    ("2024-02-29", None, "2024-02-29"),
])
def test_days_at_the_edges_that_exist_still_resolve(phrase, meeting, day):
    assert resolve(phrase, meeting) == day


def _dates_unresolved(record: dict) -> int:
    found = [v for k, v in _walk(record) if k == "dates_unresolved"]
    assert len(found) == 1, record
    return found[0]


def _walk(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_summarize_minutes_dated_9999_12_31_leaves_its_days_unresolved(tmp_path,
                                                                       extractive_bundle_dir):
    result = run("summarize", EXAMPLE, "--model", extractive_bundle_dir, "--minutes",
                 "--date", "9999-12-31", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "standup.summary.json").read_text())
    assert record["action_items"] and all(a["due"] is None for a in record["action_items"])
    assert _dates_unresolved(record) >= 2  # "by Friday", "tomorrow": said, kept as said


@pytest.mark.parametrize("day, unresolved", [("9999-12-31", True), ("0001-01-01", False)])
def test_watch_minutes_of_a_meeting_at_the_ends_of_the_calendar_summarizes_it(
        tmp_path, extractive_bundle_dir, day, unresolved):
    inbox = tmp_path / "in"
    inbox.mkdir()
    shutil.copy(EXAMPLE, inbox / f"{day} standup.vtt")  # the date in the name is the meeting's
    result = run("watch", inbox, "--model", extractive_bundle_dir, "--once", "--minutes",
                 "--settle", "0.2")
    assert result.returncode == 0, result.stderr
    (record,) = summary_records(inbox).values()
    assert record["meeting"]["date"] == day
    assert (_dates_unresolved(record) > 0) == unresolved  # days after 0001-01-01 exist


@pytest.mark.parametrize("value", ["2024-02-30", "10000-01-01", "0000-01-01", "tomorrow"])
def test_a_date_that_is_no_day_on_the_command_line_is_refused(tmp_path, extractive_bundle_dir,
                                                              value):
    result = run("summarize", EXAMPLE, "--model", extractive_bundle_dir, "--minutes",
                 "--date", value, "--out", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--date" in result.stderr.splitlines()[-1]
    assert not list(tmp_path.iterdir())
