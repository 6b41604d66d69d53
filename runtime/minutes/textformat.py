"""The two shapes a model writes minutes in, and how they are read back.

- JSON (GGUF, where llama.cpp constrains decoding to ITEMS_SCHEMA): it always parses, and a
  reply cut short by the token cap is closed after its last whole item.
- Plain text, for models that cannot be constrained (T5, an API): a fixed target format that
  `sumctl train` teaches and a parser that forgives what small models get wrong (case,
  bullets, missing sections, "none", owners before or after the task).

      Decisions: Ship on October 14; Replace the sandbox gateway with a local fake
      Actions: Marco: fix the export (due Friday); Lena: write up the test plan (due tomorrow)
      Open questions: none
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# What a model is asked for: short strings and few items, so that the longest reply allowed
# fits the token cap and the grammar keeps a rambling model inside it.
ITEMS_SCHEMA = {
    "type": "object",
    "properties": {
        "decisions": {"type": "array", "items": {"type": "string", "maxLength": 120}, "maxItems": 4},
        "action_items": {
            "type": "array", "maxItems": 5,
            "items": {"type": "object",
                      "properties": {"task": {"type": "string", "maxLength": 100},
                                     "owner": {"type": "string", "maxLength": 40},
                                     "due": {"type": "string", "maxLength": 24}},
                      "required": ["task", "owner", "due"]}},
        "open_questions": {"type": "array", "items": {"type": "string", "maxLength": 120}, "maxItems": 2},
    },
    "required": ["decisions", "action_items", "open_questions"],
}
ITEMS_MAX_NEW_TOKENS = 448
_NONE = re.compile(r"^\s*(?:none|n/a|na|nothing|-|no \w+)?\s*\.?\s*$", re.I)
_SECTION = re.compile(r"^\s*(?:[-*#>]+\s*)?(decisions?|actions?(?: items?)?|action items?|tasks?|"
                      r"open questions?|questions?)\s*:\s*(.*)$", re.I)


@dataclass
class ProposedAction:
    task: str
    owner: str | None = None
    due: str | None = None


@dataclass
class Proposed:
    """Items as a model proposed them, before any check."""

    decisions: list[str] = field(default_factory=list)
    action_items: list[ProposedAction] = field(default_factory=list)
    open_questions: list[str] = field(default_factory=list)


def format_items(decisions: list[str], actions: list[ProposedAction], questions: list[str]) -> str:
    """The plain-text target: what `sumctl train` teaches a model to write."""
    def action(a: ProposedAction) -> str:
        text = f"{a.owner}: {a.task}" if a.owner else a.task
        return f"{text} (due {a.due})" if a.due else text

    return "\n".join([f"Decisions: {'; '.join(decisions) or 'none'}",
                      f"Actions: {'; '.join(action(a) for a in actions) or 'none'}",
                      f"Open questions: {'; '.join(questions) or 'none'}"])


def format_items_json(decisions: list[str], actions: list[ProposedAction], questions: list[str]) -> str:
    """The JSON target, in ITEMS_SCHEMA's shape, for models decoded under its grammar."""
    return json.dumps({"decisions": decisions,
                       "action_items": [{"task": a.task, "owner": a.owner or "", "due": a.due or ""}
                                        for a in actions],
                       "open_questions": questions}, ensure_ascii=False)


def parse_items(text: str) -> Proposed:
    """Read minutes in the plain-text format, as leniently as a person would."""
    proposed = Proposed()
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            current = _kind(m.group(1))
            rest = m.group(2)
        elif current is None:
            continue
        else:
            rest = line
        sections.setdefault(current, []).extend(_split(rest))
    proposed.decisions = sections.get("decisions", [])
    proposed.open_questions = sections.get("questions", [])
    proposed.action_items = [_action(a) for a in sections.get("actions", [])]
    return proposed


def _kind(header: str) -> str:
    header = header.lower()
    if header.startswith("decision"):
        return "decisions"
    return "questions" if "question" in header else "actions"


def _split(text: str) -> list[str]:
    parts = re.split(r";|\s(?=\d+[.)]\s)|^\s*[-*•]\s*", text)
    return [p.strip(" -*•.\t") for p in parts if p and not _NONE.match(p) and p.strip(" -*•.\t")]


def _action(text: str) -> ProposedAction:
    due = None
    m = re.search(r"\(\s*(?:due|by)\s*:?\s*([^)]+)\)\s*$", text, re.I)
    if m:
        due, text = m.group(1).strip(), text[:m.start()].strip()
    m = re.match(r"^\s*@?([A-Z][\w.'-]*(?: [A-Z][\w.'-]*){0,2})\s*(?::|-|–)\s+(.+)$", text)
    if m:
        return ProposedAction(m.group(2).strip(), m.group(1), due)
    m = re.match(r"^(.+?)\s*\(\s*@?([A-Z][\w.'-]*(?: [A-Z][\w.'-]*){0,2})\s*\)\s*$", text)
    if m:
        return ProposedAction(m.group(1).strip(), m.group(2), due)
    return ProposedAction(text.strip(), None, due)


def parse_items_json(text: str) -> Proposed:
    """Read a reply decoded under ITEMS_SCHEMA's grammar; a reply the token cap cut short is
    closed after its last whole item first."""
    data = json.loads(close_truncated_json(text))
    if not isinstance(data, dict):
        return Proposed()
    strings = lambda key: [s.strip() for s in data.get(key) or [] if isinstance(s, str) and s.strip()]
    actions = []
    for a in data.get("action_items") or []:
        if isinstance(a, dict) and isinstance(a.get("task"), str) and a["task"].strip():
            actions.append(ProposedAction(a["task"].strip(), _text_or_none(a.get("owner")),
                                          _text_or_none(a.get("due"))))
    return Proposed(strings("decisions"), actions, strings("open_questions"))


def _text_or_none(value) -> str | None:
    if not isinstance(value, str) or _NONE.match(value) or value.strip().lower() in ("null", "unknown"):
        return None
    return value.strip()


def close_truncated_json(text: str) -> str:
    """`text` if it parses; otherwise the longest prefix that ends after a whole value inside an
    array or object, with its open brackets closed. The grammar guarantees every prefix is the
    start of valid JSON, so cutting back to such a boundary and closing always parses."""
    text = text.strip()
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    stack: list[str] = []
    in_string = escaped = False
    cut, cut_stack = 0, []
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
            if ch == "[":  # an empty array is a whole value too
                cut, cut_stack = i + 1, list(stack)
        elif ch in "]}":
            stack.pop()
            cut, cut_stack = i + 1, list(stack)
        elif ch == "," and stack:
            cut, cut_stack = i, list(stack)
    # Inside an object, a cut after a key or a value-less member is not valid: walk back to
    # the object's last complete member by dropping incomplete trailing text.
    candidate = text[:cut].rstrip().rstrip(",") + "".join(reversed(cut_stack))
    try:
        json.loads(candidate)
        return candidate
    except ValueError:
        return "{}"


def reply_follows_format(reply: str, json_mode: bool) -> bool:
    """Whether a model's reply has the asked-for shape before any repair: JSON valid against
    ITEMS_SCHEMA, or at least one section of the plain-text format."""
    if not json_mode:
        return any(_SECTION.match(line) for line in reply.splitlines())
    import jsonschema

    try:
        jsonschema.validate(json.loads(reply), ITEMS_SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True
