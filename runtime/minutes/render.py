"""The minutes form of the Markdown: YAML front matter a notes app indexes (Obsidian, a wiki),
then the summary, the decisions, the action items as task lines, and the open questions.

    - [ ] Fix the export (@Marco, due 2026-10-09) _(turns 2-4, 0:07)_            tasks="gfm"
    - [ ] Fix the export (@Marco) 📅 2026-10-09 _(turns 2-4, 0:07)_               tasks="obsidian"
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sumctl.runtime.minutes import TASK_STYLES
from sumctl.runtime.minutes.document import ActionItem

if TYPE_CHECKING:  # only for the annotation: the Summary imports this module
    from sumctl.runtime.summarizer import Summary


def render_minutes(summary: Summary, *, tasks: str = "gfm") -> str:
    """The minutes as Markdown. Every string that comes from a transcript, a user or a model
    reaches the page through an escaper: _yaml_str in the front matter, markdown_text in headings,
    names and items (one line, no Markdown or HTML), markdown_prose in the summary paragraphs (no
    block of its own: no task line, heading, list, quote, fence or front-matter break)."""
    if tasks not in TASK_STYLES:
        raise ValueError(f"unknown task style {tasks!r} (use one of {', '.join(TASK_STYLES)})")
    minutes, meeting = summary.minutes, summary.meeting
    name = Path(summary.source).name
    front = ["---", f"date: {_yaml_date(meeting.date)}",
             f"participants: [{', '.join(_yaml_str(p) for p in meeting.participants)}]",
             "tags: [meeting]", "type: meeting", f"source: {_yaml_str(name)}"]
    if meeting.title:
        front.append(f"title: {_yaml_str(meeting.title)}")
    # The summary's own lines are built by the Summary (its chapter lines escape themselves):
    # give it the escaped text and model name.
    safe = replace(summary, text=markdown_prose(summary.text),
                   model={**summary.model, **{k: markdown_text(summary.model[k]) for k in ("name", "label")
                                              if isinstance(summary.model.get(k), str)}})
    heading = markdown_text(meeting.title) if meeting.title else f"Minutes of {markdown_text(name)}"
    parts = front + ["---", "", f"# {heading}", ""]
    if summary.query:
        parts += [f"**Question:** {markdown_text(summary.query)}", ""]
    parts += ["## Summary", "", safe.text] + safe.dropped_lines() + safe.warning_lines()
    parts += ["", "## Decisions", ""]
    parts += [f"- {markdown_text(d.text)} _({d.evidence.label()})_" for d in minutes.decisions] or ["None recorded."]
    parts += ["", "## Action items", ""]
    parts += [_task_line(a, tasks) for a in minutes.action_items] or ["None recorded."]
    parts += ["", "## Open questions", ""]
    parts += [f"- {markdown_text(q.text)} _({q.evidence.label()})_" for q in minutes.open_questions] or ["None recorded."]
    parts += safe.chapter_lines()
    parts += ["", safe.byline()[:-2] + f"; minutes by {markdown_text(str(minutes.extraction.get('method')))}._"]
    return "\n".join(parts) + "\n"


def _task_line(item: ActionItem, style: str) -> str:
    task = markdown_text(item.task.rstrip("."))
    owner = markdown_text(item.owner) if item.owner else None
    due_text = markdown_text(item.due_text) if item.due_text else None
    # ISO by the minutes' checks; escaped all the same, for the schema is checked after this.
    due = markdown_text(item.due) if item.due else None
    where = f" _({item.evidence.label()})_"
    if style == "obsidian":
        owner = f" (@{owner})" if owner else ""
        due = f" 📅 {due}" if due else (f" (when: {due_text})" if due_text else "")
        return f"- [ ] {task}{owner}{due}{where}"
    notes = [f"@{owner}"] if owner else []
    if due:
        notes.append(f"due {due}")
    elif due_text:
        notes.append(f"when: {due_text}")
    return f"- [ ] {task}" + (f" ({', '.join(notes)})" if notes else "") + where


# What YAML cannot hold as it is, even inside a double-quoted scalar, and what json.dumps leaves
# raw: DEL and the C1 controls (U+0092 is the mojibake apostrophe of "O'Brien"), YAML 1.1's
# extra line breaks (NEL is among the C1), the BOM, lone surrogates and the two non-characters.
# And < > &, as JSON for HTML pages does: a value reads back the same, but a tool that pastes
# the raw front matter into a page (a site generator's <title>) gets no markup from it.
_YAML_RAW = re.compile("[<>&\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]")
# Characters that are no text on a page: controls (tab and newline are collapsed as spaces
# before this), line and paragraph separators, and the bidirectional overrides that make a
# line read other than it is stored.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
# Inside a line: emphasis, code, links and images, raw HTML and entities, Obsidian's comments,
# highlights and math, GitHub's @mentions, table cells and strikethrough. A backslash before
# any ASCII punctuation is a literal in CommonMark, so escaping one too many only costs a glyph.
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>&#|~$%=@!])")
# What makes a line a block other than a paragraph: a list item or task, a heading, a quote,
# a thematic break, a front-matter fence or a code fence (the others are escaped anyway).
_BLOCK_START = re.compile(r"^(?:[-+*>=]|\d{1,9}(?=[.)]))")


def _yaml_date(value: str | None) -> str:
    """A date YAML reads as a date when it is a real one; anything else is a string or null (a
    YAML loader refuses a plain 2026-02-30 outright)."""
    if not value:
        return "null"
    try:
        return datetime.date.fromisoformat(value).isoformat() if len(value) == 10 else _yaml_str(value)
    except ValueError:
        return _yaml_str(value)


def _yaml_str(text: str) -> str:
    """`text` as a YAML double-quoted scalar, on one line: a JSON string is one, and the
    characters JSON writes raw that YAML refuses are escaped the same way."""
    return _YAML_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def markdown_text(text: str) -> str:
    """`text` as literal Markdown text inside one line (a name, a title, an item)."""
    text = " ".join(_INVISIBLE.sub(" ", text).split())
    return _escape_block_start(_INLINE_SPECIAL.sub(r"\\\1", text))


def markdown_prose(text: str) -> str:
    """A model's paragraphs as Markdown paragraphs, each on one line and opening no other block.
    Within a paragraph it is escaped as a name is: a summary is a model's reading of a user's
    input (an injected instruction included), so it gets no Markdown or HTML of its own."""
    paragraphs = re.split(r"\n\s*\n", _INVISIBLE.sub(lambda m: m.group() if m.group() == "\n" else " ", text))
    return "\n\n".join(filter(None, (markdown_text(p) for p in paragraphs)))


def _escape_block_start(line: str) -> str:
    m = _BLOCK_START.match(line)
    if not m:
        return line
    return line[:m.end()] + "\\" + line[m.end():] if m.group()[0].isdigit() else "\\" + line
