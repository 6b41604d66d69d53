"""The minutes form of the Markdown: YAML front matter a notes app indexes (Obsidian, a wiki),
then the summary, the decisions, the action items as task lines, and the open questions.

    - [ ] Fix the export (@Marco, due 2026-10-09) _(turns 2-4, 0:07)_            tasks="gfm"
    - [ ] Fix the export (@Marco) 📅 2026-10-09 _(turns 2-4, 0:07)_               tasks="obsidian"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from sumctl.runtime.minutes import TASK_STYLES
from sumctl.runtime.minutes.document import ActionItem

if TYPE_CHECKING:  # only for the annotation: the Summary imports this module
    from sumctl.runtime.summarizer import Summary



def render_minutes(summary: Summary, *, tasks: str = "gfm") -> str:
    if tasks not in TASK_STYLES:
        raise ValueError(f"unknown task style {tasks!r} (use one of {', '.join(TASK_STYLES)})")
    minutes, meeting = summary.minutes, summary.meeting
    name = Path(summary.source).name
    # JSON strings are YAML's double-quoted scalars: a name with a colon or a quote stays one value.
    front = ["---", f"date: {meeting.date or 'null'}",
             f"participants: [{', '.join(json.dumps(p, ensure_ascii=False) for p in meeting.participants)}]",
             "tags: [meeting]", "type: meeting", f"source: {json.dumps(name, ensure_ascii=False)}"]
    if meeting.title:
        front.append(f"title: {json.dumps(meeting.title, ensure_ascii=False)}")
    parts = front + ["---", "", f"# {meeting.title or 'Minutes of ' + name}", ""]
    if summary.query:
        parts += [f"**Question:** {summary.query}", ""]
    parts += ["## Summary", "", summary.text.strip()] + summary.warning_lines()
    parts += ["", "## Decisions", ""]
    parts += [f"- {d.text} _({d.evidence.label()})_" for d in minutes.decisions] or ["None recorded."]
    parts += ["", "## Action items", ""]
    parts += [_task_line(a, tasks) for a in minutes.action_items] or ["None recorded."]
    parts += ["", "## Open questions", ""]
    parts += [f"- {q.text} _({q.evidence.label()})_" for q in minutes.open_questions] or ["None recorded."]
    parts += summary.chapter_lines()
    parts += ["", summary.byline()[:-2] + f"; minutes by {minutes.extraction.get('method')}._"]
    return "\n".join(parts) + "\n"


def _task_line(item: ActionItem, style: str) -> str:
    task = item.task.rstrip(".")
    where = f" _({item.evidence.label()})_"
    if style == "obsidian":
        owner = f" (@{item.owner})" if item.owner else ""
        due = f" 📅 {item.due}" if item.due else (f" (when: {item.due_text})" if item.due_text else "")
        return f"- [ ] {task}{owner}{due}{where}"
    notes = [f"@{item.owner}"] if item.owner else []
    if item.due:
        notes.append(f"due {item.due}")
    elif item.due_text:
        notes.append(f"when: {item.due_text}")
    return f"- [ ] {task}" + (f" ({', '.join(notes)})" if notes else "") + where
