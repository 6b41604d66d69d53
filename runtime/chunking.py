"""Chapterization: split a transcript that is longer than the model's input on speaker-turn
boundaries, so that no text is ever silently truncated.

Tiny Titans chapterizes transcripts longer than the context and summarizes the chapters; the
Summarizer then summarizes the chapter summaries, recursively, until the result fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from sumctl.runtime.errors import InputError
from sumctl.runtime.transcript import Turn

# Fewer transcript tokens than this per call cannot hold a sentence of a meeting.
MIN_INPUT_BUDGET = 8

CountTokens = Callable[[str], int]


@dataclass
class Chapter:
    index: int
    turns: list[Turn]
    first_turn: int  # index into the source turns; a turn split across chapters repeats
    last_turn: int
    tokens: int

    def text(self) -> str:
        return render(self.turns)


def render(turns: list[Turn]) -> str:
    return "\n".join(t.render() for t in turns)


def chapterize(turns: list[Turn], budget: int, count_tokens: CountTokens) -> list[Chapter]:
    """Pack consecutive turns into chapters of at most `budget` tokens.

    Only a single turn longer than the budget is cut, at sentence (then word) boundaries.
    """
    if budget < MIN_INPUT_BUDGET:
        raise InputError(f"an input budget of {budget} tokens is too small to summarize anything "
                         f"(at least {MIN_INPUT_BUDGET}); use a model with a longer input")
    pieces: list[tuple[int, Turn, int]] = []  # (source turn index, turn or part of it, tokens)
    for i, turn in enumerate(turns):
        n = count_tokens(turn.render())
        if n <= budget:
            pieces.append((i, turn, n))
        else:
            pieces.extend((i, part, count_tokens(part.render()))
                          for part in _split_turn(turn, budget, count_tokens))

    chapters: list[Chapter] = []
    current: list[tuple[int, Turn, int]] = []
    used = 0
    for piece in pieces:
        cost = piece[2] + (1 if current else 0)  # +1: the newline between turns
        if current and used + cost > budget:
            chapters.extend(_close(current, len(chapters), budget, count_tokens))
            current, used = [], 0
            cost = piece[2]
        current.append(piece)
        used += cost
    if current:
        chapters.extend(_close(current, len(chapters), budget, count_tokens))
    return chapters


def _close(pieces, index: int, budget: int, count_tokens: CountTokens) -> list[Chapter]:
    """Make a chapter, re-counting the joined text: tokenizers do not always add up per turn."""
    turns = [p[1] for p in pieces]
    tokens = count_tokens(render(turns))
    if tokens > budget and len(pieces) > 1:
        half = len(pieces) // 2
        left = _close(pieces[:half], index, budget, count_tokens)
        return left + _close(pieces[half:], index + len(left), budget, count_tokens)
    return [Chapter(index, turns, pieces[0][0], pieces[-1][0], tokens)]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _split_turn(turn: Turn, budget: int, count_tokens: CountTokens) -> list[Turn]:
    # Leave room for the speaker label, which every part repeats.
    label_cost = count_tokens(f"{turn.speaker}: ") if turn.speaker else 0
    room = max(4, budget - label_cost - 2)
    units = _SENTENCE_END.split(turn.text)
    parts: list[str] = []
    costs: list[int] = []
    for unit in units:
        n = count_tokens(unit)
        if n <= room:
            parts.append(unit)
            costs.append(n)
        else:
            pieces = _split_words(unit, room, count_tokens)
            parts.extend(pieces)
            costs.extend(count_tokens(p) for p in pieces)
    return [Turn(turn.speaker, text, turn.start, turn.end)
            for text in _pack(parts, costs, room, count_tokens)]


def _pack(parts: list[str], costs: list[int], room: int, count_tokens: CountTokens) -> list[str]:
    """Join consecutive parts with spaces into pieces of at most `room` tokens, each piece as long
    as it can be: what appending parts one by one while the joined text still fits gives, as
    long as a longer text never counts fewer tokens.

    Re-counting the growing piece after every part made one long turn quadratic (issue 27: 20,000
    cues took 142 s). Instead the per-part counts, taken once, guess where a piece ends, and
    exact counts of the joined text confirm it: two counts per piece when the guess is right,
    a galloping then binary search when the tokenizer does not add up per part; `costs` are
    the parts' own counts."""
    # A count of the empty text is what every call adds (a BOS token); joined text pays it once.
    overhead = count_tokens("") if parts else 0
    packed: list[str] = []
    start = 0
    while start < len(parts):
        end, used = start + 1, costs[start]
        while end < len(parts) and used + costs[end] - overhead <= room:
            used += costs[end] - overhead
            end += 1

        def fits(stop: int) -> bool:
            return stop == start + 1 or count_tokens(" ".join(parts[start:stop])) <= room

        end = _last_true(fits, start + 1, end, len(parts))
        packed.append(" ".join(parts[start:end]))
        start = end
    return packed


def _last_true(holds: Callable[[int], bool], low: int, guess: int, high: int) -> int:
    """The largest n in [low, high] for which holds(n), given that holds(low) and that holds is
    true up to some n and false after it; `guess` is where to look first."""
    if holds(guess):
        good, step = guess, 1
        while good + step <= high and holds(good + step):
            good, step = good + step, step * 2
        bad = min(good + step, high + 1)
    else:
        good, bad = low, guess
    while bad - good > 1:
        mid = (good + bad) // 2
        if holds(mid):
            good = mid
        else:
            bad = mid
    return good


def _split_words(text: str, room: int, count_tokens: CountTokens) -> list[str]:
    # Per-word counts make this linear; the joined text is re-counted and shrunk if needed.
    words, out, start = text.split(), [], 0
    costs = [count_tokens(w) for w in words]
    while start < len(words):
        end, used = start, 0
        while end < len(words) and (end == start or used + costs[end] <= room):
            used += costs[end]
            end += 1
        while end - start > 1 and count_tokens(" ".join(words[start:end])) > room:
            end -= 1
        out.append(" ".join(words[start:end]))
        start = end
    return out


def source_spans(ranges: list[tuple[int, int]], source_index: list[int], turns: int) -> list[tuple[int, int]]:
    """Chapters of cleaned turns, given as (first, last) cleaned indexes, as ranges of the
    transcript's turns as written. A turn cleaning dropped belongs to the chapter after it (the
    last chapter takes the trailing ones), so the chapters still cover every turn, in order; a
    turn too long for one chapter belongs to both chapters it was split across."""
    spans, previous_last = [], -1
    for k, (first, last) in enumerate(ranges):
        written_first = (source_index[first] if first == previous_last
                         else source_index[first - 1] + 1 if first > 0 else 0)
        previous_last = last
        spans.append((written_first, turns - 1 if k == len(ranges) - 1 else source_index[last]))
    return spans
