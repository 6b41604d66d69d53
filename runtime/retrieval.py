"""Asking a long meeting a question: answer from the chapters that matter, not from all of it.

    from sumctl.runtime import Summarizer, read_transcript
    from sumctl.runtime.retrieval import answer_question
    answer = answer_question(Summarizer(), read_transcript("meeting.vtt"),
                             "What did we decide about the battery?", length="short")
    print(answer.to_markdown())

A small model's input holds a part of a long meeting, and asking every chapter the question
(`summarize --query`) makes the answer a summary of summaries, mostly of chapters that never
touch the question. Here the cleaned meeting is cut into chapters the size of the model's input
for the question's prompt, the chapters are ranked against the question with BM25, and the best
of them that fit the input together are answered from in one generation, in transcript order.
A meeting that fits the input whole is answered whole, and the answer says so.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sumctl.runtime.chunking import MIN_INPUT_BUDGET, Chapter, CountTokens, chapterize, source_spans
from sumctl.runtime.minutes.document import clock
from sumctl.runtime.cleaning import clean_turns
from sumctl.runtime.errors import InputError
from sumctl.runtime.lexical import Bm25Index
from sumctl.runtime.prompts import template_for
from sumctl.runtime.summarizer import Summarizer, check_length
from sumctl.runtime.transcript import Transcript, Turn, clean_string


@dataclass
class Citation:
    chapter: int  # 0-based, among the meeting's chapters
    first_turn: int  # 0-based, into the transcript's turns as written (before cleaning)
    last_turn: int
    start: float | None  # seconds, where the turns have times
    end: float | None
    score: float | None  # BM25 against the question; None when the whole meeting was read


@dataclass
class Answer:
    question: str
    text: str
    length: str
    source: str
    source_sha256: str
    citations: list[Citation]
    retrieved: bool  # False: the whole meeting fit the model's input and was read
    chapters: int  # how many chapters the meeting makes for this question and model
    model: dict
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def sources_line(self) -> str:
        if not self.retrieved:
            c = self.citations[0]
            return (f"Sources: the whole meeting (turns {_turns(c)}{_times(c)}); it fits the "
                    "model's input, so nothing was left out.")
        return "Sources: " + "; ".join(f"chapter {c.chapter + 1} of {self.chapters} "
                                       f"(turns {_turns(c)}{_times(c)})" for c in self.citations)

    def to_markdown(self) -> str:
        byline = (f"_{self.length} answer by {self.model['name']}"
                  + (f" ({self.model['label']})" if self.model.get("label") else "")
                  + f" from {Path(self.source).name}, {self.timings.get('answer_s', 0):.1f} s._")
        return "\n".join([f"**Question:** {self.question}", "", self.text.strip(), "",
                          self.sources_line(), "", byline]) + "\n"


def rank_chapters(chapters: list[Chapter], question: str) -> list[tuple[int, float]]:
    """(position in `chapters`, BM25 score) for every chapter, best first; ties keep
    transcript order. A question that shares no word with the meeting scores 0 everywhere."""
    scores = Bm25Index([c.text() for c in chapters]).scores(question)
    return sorted(enumerate(scores), key=lambda pair: (-pair[1], pair[0]))


def check_question(question: str, source: str) -> str:
    """The question with its whitespace normalized, or an InputError naming `source` when there
    is nothing to ask."""
    # The command line can hand over bytes that are not UTF-8: the transcripts' rule keeps them.
    question = " ".join(clean_string(question).split())
    if not question:
        raise InputError(f"{source}: the question is empty; ask something the meeting answers, "
                         "e.g. sumctl ask meeting.vtt \"What did we decide about the battery?\"")
    return question


def answer_question(summarizer: Summarizer, transcript: Transcript, question: str, *,
                    length: str = "medium", top_k: int | None = None) -> Answer:
    """The answer to `question` from the chapters of `transcript` that BM25 ranks best and that
    fit the model's input together (at most `top_k` of them), or from the whole meeting when
    it fits."""
    question = check_question(question, transcript.source)
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k={top_k}: take at least one chapter")
    check_length(length)
    started = time.perf_counter()
    meeting = _Chapters.of(summarizer, transcript, question, length)
    if len(meeting.chapters) == 1:
        chosen, scores = [0], {0: None}
    else:
        ranking = rank_chapters(meeting.chapters, question)
        chosen, scores = meeting.choose(ranking, top_k), dict(ranking)
    retrieve_seconds = time.perf_counter() - started

    # The chosen chapters go to the Summarizer as the turns were written, not as cleaned here:
    # it cleans them itself, turn by turn, to the same text we measured (so they still fit),
    # under the caller's own settings (cleaning on or off, guards, token caps), and the turn
    # counts and cleaning report in its record then describe written turns, like our citations.
    # Passing our cleaned turns would need a second Summarizer with clean=False, which would
    # drop the caller's overrides.
    excerpt = dataclasses.replace(transcript, turns=[transcript.turns[i]
                                                     for i in meeting.written_turns(chosen)])
    summary = summarizer.summarize(excerpt, query=question, length=length)
    return Answer(
        question=question, text=summary.text, length=length, source=transcript.source,
        source_sha256=transcript.sha256,
        citations=[_citation(k, meeting.spans[k], transcript.turns, scores[k]) for k in chosen],
        retrieved=len(meeting.chapters) > 1, chapters=len(meeting.chapters),
        model=summarizer.model_info,
        timings={"load_s": round(summarizer.load_seconds, 4),
                 "retrieve_s": round(retrieve_seconds, 4),
                 "answer_s": round(summary.timings.get("summarize_s", 0.0), 4)})


@dataclass
class _Chapters:
    """A meeting cut for one question: its chapters, measured on the text the model would read,
    and where each lies in the turns as written."""

    chapters: list[Chapter]
    spans: list[tuple[int, int]]  # each chapter's first and last written turn
    turns: list[Turn]  # what was chapterized: the cleaned turns, unless cleaning is off
    source_index: list[int]  # for each of those, the written turn it came from
    budget: int
    count_tokens: CountTokens

    @classmethod
    def of(cls, summarizer: Summarizer, transcript: Transcript, question: str,
           length: str) -> _Chapters:
        budget = _input_budget(summarizer, transcript, question, length)
        if summarizer.clean:
            cleaned = clean_turns(transcript.turns)
            turns, source_index = cleaned.turns, cleaned.source_index
        else:
            turns, source_index = list(transcript.turns), list(range(len(transcript.turns)))
        count = summarizer.backend.count_tokens
        chapters = chapterize(turns, budget, count)
        return cls(chapters, source_spans([(c.first_turn, c.last_turn) for c in chapters], source_index,
                                        len(transcript.turns)),
                   turns, source_index, budget, count)

    def choose(self, ranking: list[tuple[int, float]], top_k: int | None) -> list[int]:
        """The best-ranked chapters while they fit one input together (the best one always),
        in transcript order."""
        chosen: list[int] = []
        for index, score in ranking[:top_k]:
            # A chapter that shares no word with the question would only dilute the answer.
            if chosen and (score <= 0 or not self.fit(chosen + [index])):
                break
            chosen.append(index)
        return sorted(chosen)

    def written_turns(self, chosen: list[int]) -> list[int]:
        return sorted({i for k in chosen for i in range(self.spans[k][0], self.spans[k][1] + 1)})

    def fit(self, chosen: list[int]) -> bool:
        """Whether these chapters, read together, make one chapter for the Summarizer: the test
        it applies before answering in one generation."""
        written = set(self.written_turns(chosen))
        together = [t for t, i in zip(self.turns, self.source_index) if i in written]
        return len(chapterize(together, self.budget, self.count_tokens)) == 1


def _input_budget(summarizer: Summarizer, transcript: Transcript, question: str, length: str) -> int:
    """The transcript tokens one query prompt holds: the budget the Summarizer uses, so that
    what is chosen here is answered in one generation."""
    options = summarizer.generation_options(summarizer.options_for(length=length))
    template = template_for(summarizer.bundle.manifest.prompts, length, question)
    budget = summarizer.backend.input_budget(template, options.max_new_tokens)
    if budget < MIN_INPUT_BUDGET:
        asked = summarizer.backend.count_tokens(question)
        raise InputError(
            f"{transcript.source}: the question is {asked:,} tokens, and the model's input budget "
            f"for the question and the meeting together is {budget + asked:,} tokens (after the "
            f"instruction and a {options.max_new_tokens}-token answer), which leaves "
            f"{max(budget, 0)} for the meeting (at least {MIN_INPUT_BUDGET} needed); shorten the "
            "question")
    return budget


def _citation(chapter: int, span: tuple[int, int], turns: list[Turn], score: float | None) -> Citation:
    first, last = span
    starts = [t.start for t in turns[first:last + 1] if t.start is not None]
    ends = [t.end if t.end is not None else t.start for t in turns[first:last + 1]
            if t.start is not None or t.end is not None]
    return Citation(chapter, first, last, starts[0] if starts else None, ends[-1] if ends else None,
                    None if score is None else round(score, 4))


def _turns(c: Citation) -> str:
    return f"{c.first_turn + 1}-{c.last_turn + 1}"


def _times(c: Citation) -> str:
    if c.start is None or c.end is None:
        return ""
    return f", {clock(c.start)}-{clock(c.end)}"

