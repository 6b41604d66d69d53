"""The minutes of a meeting: what was decided, who does what by when, what is still open.

These are the parts of the canonical summary document that a summary's prose does not give
(the Summary carries them, and outputs.py renders both the JSON record and the Markdown from
it). Every item points at the turns that state it, its evidence, so a reader can check it and
the runtime could: an item whose words are not in its evidence turns never gets here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Evidence:
    """Turns that state an item: indexes into the transcript's turns as written (0-based,
    before cleaning), with their times where the transcript has them."""

    first_turn: int
    last_turn: int
    start: float | None = None
    end: float | None = None

    def overlaps(self, other: "Evidence", slack: int = 0) -> bool:
        return self.first_turn - slack <= other.last_turn and other.first_turn - slack <= self.last_turn

    def union(self, other: "Evidence") -> "Evidence":
        first = self if self.first_turn <= other.first_turn else other
        last = self if self.last_turn >= other.last_turn else other
        return Evidence(first.first_turn, last.last_turn, first.start, last.end)

    def label(self) -> str:
        turns = (f"turn {self.first_turn + 1}" if self.first_turn == self.last_turn
                 else f"turns {self.first_turn + 1}-{self.last_turn + 1}")
        return f"{turns}, {clock(self.start)}" if self.start is not None else turns


@dataclass
class Decision:
    text: str
    evidence: Evidence


@dataclass
class ActionItem:
    task: str
    owner: str | None  # a speaker, or a person named in the evidence turns; else None
    due: str | None  # ISO date, only when the evidence states one that resolves to a day
    evidence: Evidence
    due_text: str | None = None  # the time as said ("Friday"), kept when it cannot be resolved


@dataclass
class OpenQuestion:
    text: str
    evidence: Evidence


@dataclass
class Minutes:
    decisions: list[Decision] = field(default_factory=list)
    action_items: list[ActionItem] = field(default_factory=list)
    open_questions: list[OpenQuestion] = field(default_factory=list)
    # How the items were found (method: cues, hybrid or model) and what the checks removed:
    # candidates considered, items dropped because their words are not in their evidence,
    # owners and dates set to null because the evidence does not state them, duplicates merged.
    extraction: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MeetingInfo:
    title: str | None = None
    date: str | None = None  # ISO date, when the transcript or the user says it
    duration_s: float | None = None  # from the turns' times, when the transcript has them
    participants: list[str] = field(default_factory=list)  # the speakers, in order of first turn


def clock(seconds: float) -> str:
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
