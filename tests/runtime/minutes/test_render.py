"""The minutes' Markdown is written by escapers, never by pasting user text: no name, title,
item or summary sentence can add a task line, a heading, a block, a link, HTML or a front-matter
break, and the front matter always reads back as YAML with every value as it was (issue 27)."""

import json
import re

import pytest
import yaml
from markdown_it import MarkdownIt

from sumctl.runtime.backends.extractive import build_extractive_bundle
from sumctl.runtime.minutes import TASK_STYLES, render_minutes
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import parse_text

MALLORY = "- [ ] Wire $5000 to Mallory (@Mallory, due 2020-01-01)"
# What a name, a title or an item may hold: the cases, then other ways in.
HOSTILE = [
    MALLORY,
    "O\u0092Brien",  # the mojibake apostrophe: a C1 control
    "Del\u007fete",
    "<script>alert(1)</script>",
    "Nul\x00l Bell\x07 Esc\x1b[31m",
    "NEL\u0085 LS\u2028 PS\u2029 BOM\ufeff",
    "Two\nlines\n- [x] done (@Eve)",
    "Carriage\r- [ ] return",
    "```\ncode fence",
    "`tick` and ``double``",
    "[click](javascript:alert(1))",
    "[pay here](https://evil.example/pay)",
    "<https://evil.example/autolink>",
    "![img](http://evil/x.png)",
    "---",
    "--- title: evil\n---",
    "# Heading",
    "## Decisions",
    "> quote",
    "1. numbered",
    "| a | b |\n|---|---|",
    "@Mallory please pay",
    "**bold** _em_ ~~strike~~ ==mark== %%hidden%% $x^2$",
    "&lt;entity&gt; &amp;",
    "\u202eevil reversed",
    "   indented    code",
    "\\- [ ] backslash first",
    "key: value # not a comment",
    "'single' \"double\" {braces}",
]
TASK = re.compile(r"^\s*(?:(?:[-*+]|\d+[.)])\s+)+\[[ xX]\]", re.M)

MEETING = {"title": "Standup", "date": "2026-10-07", "turns": [
    {"speaker": "Priya", "text": "Let's go through the export problem first."},
    {"speaker": "Marco", "text": "The export still fails on large files, so I will fix the export by Friday."},
    {"speaker": "Lena", "text": "I will write up the test plan and share it tomorrow."},
    {"speaker": "Sam", "text": "We agreed to ship the release on October 14."},
    {"speaker": "Priya", "text": "Does anyone know whether the gateway can be replaced?"},
]}


@pytest.fixture(scope="module")
def summarizer(tmp_path_factory):
    return Summarizer(build_extractive_bundle(tmp_path_factory.mktemp("b") / "extractive"))


def minutes(summarizer, **meeting):
    data = {**MEETING, **meeting}
    summary = summarizer.summarize(parse_text(json.dumps(data), name="standup.json"), minutes=True)
    assert summary.minutes.action_items and summary.minutes.decisions
    return summary


def split(markdown: str) -> tuple[dict, str]:
    assert markdown.startswith("---\n")
    head, fence, body = markdown[4:].partition("\n---\n")
    assert fence
    return yaml.safe_load(head), body


def shown(text: str) -> str:
    """What a reader should see of `text`: every character, on one line (what is no text on a
    page, a control or a direction override, as a space)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def inline_texts(markdown: str) -> list[str]:
    """The text of every paragraph, heading and item as a reader sees it, asserting that each
    is plain text: no emphasis, code, link, image or HTML came out of the Markdown."""
    out = []
    for token in MarkdownIt("commonmark").parse(split(markdown)[1]):
        if token.type == "inline":
            kinds = {c.type for c in token.children} - {"text", "softbreak"}
            # The renderer's own: the evidence is in italics, the question's label in bold.
            assert kinds <= {"em_open", "em_close", "strong_open", "strong_close"}, token.content
            out.append("".join(c.content for c in token.children if c.type == "text"))
    return out


def check_structure(markdown: str, summary) -> dict:
    """The front matter as read back; asserts the body has only the blocks the renderer makes."""
    meta, body = split(markdown)
    assert len(TASK.findall(markdown)) == len(summary.minutes.action_items), markdown
    tokens = MarkdownIt("commonmark").parse(body)
    headings = [t.tag for t in tokens if t.type == "heading_open"]
    assert headings == ["h1"] + ["h2"] * (4 + bool(summary.chapter_lines())), markdown
    kinds = {t.type for t in tokens}
    assert not kinds & {"html_block", "fence", "code_block", "hr", "blockquote_open", "table_open"}, markdown
    inline = {c.type for t in tokens if t.type == "inline" for c in t.children}
    assert not inline & {"html_inline", "link_open", "image", "code_inline"}, markdown
    assert "<" not in markdown.partition("\n---\n")[0] and not re.search(r"(?<!\\)<", body)
    items = [t for t in tokens if t.type == "list_item_open"]
    minutes = summary.minutes
    chapters = len(summary.top_chapters()) if summary.chapter_lines() else 0
    assert len(items) == (len(minutes.decisions) + len(minutes.action_items)
                          + len(minutes.open_questions) + chapters), markdown
    # Unescaped, a link's brackets or an @mention mean something to some renderer even where
    # CommonMark refuses it (a javascript: URL, GitHub's mentions); only owners get an "@".
    assert not re.search(r"(?<!\\)\]\(", body), body
    owners = sum(1 for a in minutes.action_items if a.owner)
    assert len(re.findall(r"(?<!\\)@", body)) == owners, body
    for line in body.splitlines():
        assert not re.match(r"\s*(---|\*\*\*|___|===)", line), line
    return meta


@pytest.mark.parametrize("tasks", TASK_STYLES)
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_and_title_stay_one_value_and_add_no_markdown(summarizer, name, tasks):
    summary = minutes(summarizer)
    summary.meeting.title = f"Standup {name}"
    summary.meeting.participants = [name, "Marco", f"{name} Jr"]
    summary.minutes.action_items[0].owner = name
    summary.minutes.action_items[0].due, summary.minutes.action_items[0].due_text = None, name
    summary.minutes.action_items[-1].task = f"Pay {name}"
    summary.minutes.action_items[-1].due = name  # not ISO: the schema refuses it, but only after
    summary.minutes.decisions[0].text = name
    summary.query = name
    markdown = render_minutes(summary, tasks=tasks)
    meta = check_structure(markdown, summary)
    assert meta["title"] == f"Standup {name}"
    texts = inline_texts(markdown)
    assert texts[0] == shown(f"Standup {name}")  # the heading
    assert f"Question: {shown(name)}" in texts
    assert any(t.startswith(f"[ ] Pay {shown(name)}".rstrip(".")) for t in texts), texts
    assert any(t.startswith(shown(name)) for t in texts[3:]), texts  # the decision
    assert meta["participants"] == [name, "Marco", f"{name} Jr"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_name_and_date_keep_the_front_matter_yaml(summarizer, name):
    summary = minutes(summarizer)
    summary.source = f"/in/{name.replace('/', '_')}.json"
    summary.meeting.date, summary.meeting.title = name, None
    markdown = render_minutes(summary)
    meta = check_structure(markdown, summary)
    assert meta["source"] == f"{name.replace('/', '_')}.json" and meta["date"] == name
    assert inline_texts(markdown)[0] == shown(f"Minutes of {name.replace('/', '_')}.json")


@pytest.mark.parametrize("date", ["2026-02-30", "2026-10-07T10:00", "0000-00-00"])
def test_a_date_that_is_not_a_day_is_a_string_not_a_broken_front_matter(summarizer, date):
    summary = minutes(summarizer)
    summary.meeting.date = date
    assert check_structure(render_minutes(summary), summary)["date"] == date


def test_a_real_date_stays_a_yaml_date(summarizer):
    meta = check_structure(render_minutes(minutes(summarizer)), minutes(summarizer))
    assert str(meta["date"]) == "2026-10-07" and not isinstance(meta["date"], str)


PROSE = ("The team met.\n- [ ] Assign every action item to Mallory (@Mallory, due 2020-01-01)\n"
         "# Owned\n---\ntitle: evil\n---\n```\n<script>alert(1)</script>\n"
         "[click](javascript:alert(1))\n> quoted\n1. one\n    indented code\n\n\n===\n* [x] done")


@pytest.mark.parametrize("tasks", TASK_STYLES)
def test_no_summary_prose_becomes_a_task_heading_or_front_matter_break(summarizer, tasks):
    summary = minutes(summarizer)
    summary.text = PROSE
    for chapter in summary.chapters:
        chapter.summary = PROSE
    summary.levels = 2  # the chapter list is rendered too
    markdown = render_minutes(summary, tasks=tasks)
    check_structure(markdown, summary)
    assert "Assign every action item to Mallory" in markdown  # escaped, not dropped


def test_ordinary_minutes_read_as_before(summarizer):
    summary = minutes(summarizer)
    markdown = render_minutes(summary)
    meta = check_structure(markdown, summary)
    assert meta["participants"] == ["Priya", "Marco", "Lena", "Sam"] and meta["title"] == "Standup"
    assert "# Standup\n" in markdown
    assert "- [ ] Fix the export by Friday (@Marco, due 2026-10-09) _(turn 2)_" in markdown
