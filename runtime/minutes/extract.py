"""Minutes from a transcript: items found chapter by chapter, checked, then merged.

Three ways to find them, measured against hand labels (benchmarks/perf/minutes_quality.py):
- "cues": the commitment, request, assignment and settlement cues of cues.py, no model;
- "hybrid": those candidates, each kept or dropped by the model (a yes/no question about the
  sentence in its context; constrained to those two words on GGUF);
- "model": the model writes the items (JSON under a grammar on GGUF, the plain-text format
  elsewhere), and each finds its evidence in the chapter or is dropped.
Whatever proposes an item, the checks of evidence.py decide whether it stays, and merge.py
folds the chapters' lists into one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sumctl.runtime.backends.base import Backend, GenerationOptions
from sumctl.runtime.chunking import chapterize
from sumctl.runtime.errors import SumctlError
from sumctl.runtime.minutes import METHODS
from sumctl.runtime.minutes.cues import Candidate, Line, People, find_candidates, sentences
from sumctl.runtime.minutes.dates import find_date_phrase, resolve
from sumctl.runtime.minutes.document import (ActionItem, Decision, Evidence, Minutes,
                                             OpenQuestion)
from sumctl.runtime.minutes.evidence import checked_owner, locate, support, supported
from sumctl.runtime.minutes.merge import Mergeable, merge
from sumctl.runtime.minutes.textformat import (ITEMS_MAX_NEW_TOKENS, ITEMS_SCHEMA, parse_items,
                                               parse_items_json, reply_follows_format)
from sumctl.runtime.prompts import fill, minutes_template, verdict_template
from sumctl.runtime.transcript import Turn
from sumctl.runtime.jsonout import strict_dumps

_KINDS = {"decision": "a decision the group made", "action": "a task someone will do after the meeting",
          "question": "a question the meeting left open"}
_YES_NO = strict_dumps({"type": "string", "enum": ["yes", "no"]})
_VERDICT_TOKENS = 4


def default_method(backend: Backend | None) -> str:
    """Each backend's measured best (backends declare it); cues where there is no model."""
    return getattr(backend, "minutes_method", "cues") if backend is not None else "cues"


@dataclass
class _Item:
    kind: str
    text: str
    first: int  # positions in the transcript's cleaned lines
    last: int
    owner: str | None = None
    due_text: str | None = None
    recap: bool = False


def extract_minutes(turns: list[Turn], lines: list[Line], *, method: str = "cues",
                    backend: Backend | None = None, budget: int | None = None,
                    meeting_date: str | None = None) -> Minutes:
    """The decisions, action items and open questions of a transcript.

    Args:
        turns: the transcript's turns as written (evidence points at them, with their times).
        lines: the cleaned turns, each with the index of the turn it came from.
        method: "cues", "hybrid" or "model" (the last two need `backend`).
        budget: the model's input budget for a chapter; None reads the whole transcript as
            one chapter (cues need no model, so they have no budget to keep).
        meeting_date: ISO date that relative dates ("Friday") resolve against.
    """
    if method not in METHODS:
        raise SumctlError(f"unknown minutes method {method!r} (use one of {', '.join(METHODS)})")
    if method != "cues" and backend is None:
        raise SumctlError(f"the {method!r} minutes method needs a model")
    speakers = list(dict.fromkeys(t.speaker for t in turns if t.speaker))
    people = People(speakers, [line.text for line in lines])
    counts = {"method": method, "chapters": 0, "candidates": 0, "rejected_by_model": 0,
              "dropped_by_evidence": 0, "owners_removed": 0, "dates_unresolved": 0, "merged": 0}
    if method == "model":  # how often the model's reply had the shape it was asked for
        counts |= {"model_replies": 0, "model_replies_valid": 0}
    items = _found_items(lines, people, method, backend, budget, counts)
    minutes = Minutes(extraction=counts)
    recaps: set[int] = set()  # ids of action items said in a recap: merged more readily
    for item in items:
        evidence_text = " ".join(line.text for line in lines[item.first:item.last + 1])
        if not supported(item.text, evidence_text):
            counts["dropped_by_evidence"] += 1
            continue
        evidence = _evidence(turns, lines, item)
        if item.kind == "decision":
            minutes.decisions.append(Decision(item.text, evidence))
        elif item.kind == "question":
            minutes.open_questions.append(OpenQuestion(item.text, evidence))
        else:
            action = _action(item, lines, speakers, evidence, evidence_text, meeting_date, counts)
            if item.recap:
                recaps.add(id(action))
            minutes.action_items.append(action)
    minutes.decisions, a = merge(minutes.decisions, lambda d: Mergeable(d.text, None, False))
    minutes.action_items, b = merge(minutes.action_items,
                                    lambda x: Mergeable(x.task, x.owner, id(x) in recaps))
    minutes.open_questions, c = merge(minutes.open_questions, lambda q: Mergeable(q.text, None, False))
    counts["merged"] = a + b + c
    return minutes


def _found_items(lines: list[Line], people: People, method: str, backend: Backend | None,
                 budget: int | None, counts: dict) -> list[_Item]:
    """Every candidate item, chapter by chapter, with its lines counted from the first line."""
    items: list[_Item] = []
    for first, last in _chapters(lines, method, backend, budget):
        counts["chapters"] += 1
        chapter = lines[first:last + 1]
        if method == "model":
            found = _model_items(chapter, backend, counts)
        else:
            found = [_from_candidate(c, recap) for c, recap in _with_recaps(find_candidates(chapter, people))]
            counts["candidates"] += len(found)
            if method == "hybrid":
                found = _model_verdicts(found, chapter, backend, counts)
        for item in found:
            item.first += first
            item.last += first
            items.append(item)
    return items


def _action(item: _Item, lines: list[Line], speakers: list[str], evidence, evidence_text: str,
            meeting_date: str | None, counts: dict) -> ActionItem:
    """An action item whose owner and due date are only what its evidence turns say."""
    evidence_speakers = {line.speaker for line in lines[item.first:item.last + 1] if line.speaker}
    owner = checked_owner(item.owner, speakers, evidence_speakers, evidence_text)
    counts["owners_removed"] += item.owner is not None and owner is None
    due_text = item.due_text if item.due_text and item.due_text.lower() in evidence_text.lower() else None
    due = resolve(due_text, meeting_date) if due_text else None
    counts["dates_unresolved"] += due_text is not None and due is None
    return ActionItem(item.text, owner, due, evidence, due_text)


def lines_from(turns: list[Turn], source_index: list[int] | None) -> list[Line]:
    """Cleaned turns as lines that remember the turn each came from."""
    return [Line(source_index[k] if source_index is not None else k, t.speaker, t.text)
            for k, t in enumerate(turns)]


def _chapters(lines: list[Line], method: str, backend: Backend | None,
              budget: int | None) -> list[tuple[int, int]]:
    """Chapters as ranges of lines: what the model reads at once (the summary's chapters, or
    for the model method, what fits beside its reply). Cues are read in the same chapters,
    so that every method merges across chapters the same way."""
    if backend is None or budget is None:
        return [(0, len(lines) - 1)] if lines else []
    room = budget
    if method == "model":
        template = minutes_template(backend.bundle.manifest.prompts, json_mode=backend.constrains_json)
        room = backend.input_budget(template, ITEMS_MAX_NEW_TOKENS)
    turns = [Turn(line.speaker, line.text) for line in lines]
    return [(c.first_turn, c.last_turn) for c in chapterize(turns, max(64, room), backend.count_tokens)]


def _with_recaps(candidates: list[Candidate]):
    """Each candidate with whether it comes from a sentence that assigns several items."""
    per_sentence: dict[str, int] = {}
    for c in candidates:
        if c.cue == "assignment":
            per_sentence[c.sentences[0]] = per_sentence.get(c.sentences[0], 0) + 1
    for c in candidates:
        yield c, c.cue == "assignment" and per_sentence.get(c.sentences[0], 0) > 1


def _from_candidate(c: Candidate, recap: bool) -> _Item:
    return _Item(c.kind, c.text, c.first, c.last, c.owner, c.due_text, recap)


def _evidence(turns: list[Turn], lines: list[Line], item: _Item) -> Evidence:
    first, last = lines[item.first].turn, lines[item.last].turn
    return Evidence(first, last, turns[first].start, turns[last].end)


def _render(chapter: list[Line]) -> str:
    return "\n".join(f"{line.speaker}: {line.text}" if line.speaker else line.text for line in chapter)


def _model_items(chapter: list[Line], backend: Backend, counts: dict) -> list[_Item]:
    json_mode = backend.constrains_json
    template = minutes_template(backend.bundle.manifest.prompts, json_mode=json_mode)
    options = GenerationOptions(max_new_tokens=ITEMS_MAX_NEW_TOKENS,
                                json_schema=strict_dumps(ITEMS_SCHEMA) if json_mode else None)
    reply = backend.generate([fill(template, _render(chapter))], options)[0].text
    counts["model_replies"] += 1
    counts["model_replies_valid"] += reply_follows_format(reply, json_mode)
    proposed = parse_items_json(reply) if json_mode else parse_items(reply)
    texts = [line.text for line in chapter]
    wanted = ([("decision", d, None, None) for d in proposed.decisions]
              + [("action", a.task, a.owner, a.due) for a in proposed.action_items]
              + [("question", q, None, None) for q in proposed.open_questions])
    counts["candidates"] += len(wanted)
    items = []
    for kind, text, owner, _ in wanted:
        span = locate(text, texts)
        if span is None:
            counts["dropped_by_evidence"] += 1
            continue
        first, last, _ = span
        # The date comes from the evidence, never from the model's reply: from the sentence that
        # states the task, not from anywhere in its turns ("three things today").
        due_text = None
        if kind == "action":
            stated = max((s for t in texts[first:last + 1] for s in sentences(t)),
                         key=lambda s: support(text, s))
            due_text = find_date_phrase(stated)
        items.append(_Item(kind, text, first, last, owner, due_text))
    return items


def _model_verdicts(items: list[_Item], chapter: list[Line], backend: Backend,
                    counts: dict) -> list[_Item]:
    if not items:
        return items
    template = verdict_template(backend.bundle.manifest.prompts)
    options = GenerationOptions(max_new_tokens=_VERDICT_TOKENS,
                                json_schema=_YES_NO if backend.constrains_json else None)
    prompts = []
    for item in items:
        context = _render(chapter[max(0, item.first - 2):item.last + 2])
        # The item and its kind go in before the transcript, whose text may hold any braces.
        prompts.append(fill(template.replace("{item}", item.text).replace("{kind}", _KINDS[item.kind]),
                            context))
    replies = backend.generate(prompts, options)
    kept = [item for item, reply in zip(items, replies) if "yes" in reply.text.lower()[:6]]
    counts["rejected_by_model"] += len(items) - len(kept)
    return kept
