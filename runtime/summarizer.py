"""The Summarizer: one loaded model bundle, and transcripts of any length in, summaries out.

    from sumctl.runtime import Summarizer
    summarizer = Summarizer("bundles/flan-t5-int8", threads=2, length="short")  # SummaryOptions' fields
    summary = summarizer.summarize("meeting.vtt")
    for summary in summarizer.summarize_many(paths):  # lazy, one at a time
        ...
    summaries = summarizer.summarize_batch(paths)  # several at once: the model batches them

Turns that say nothing (backchannels, fillers, stutters) are cleaned out first (cleaning.py;
clean=False keeps them). A transcript longer than the model's input is chapterized on speaker
turns; each chapter is summarized, then the chapter summaries are summarized again,
recursively, until they fit. Every generation is checked for loops, copies and transcript-
shaped replies (guards.py): a degenerate one is retried once with stronger anti-repetition
settings, then flagged, and a loop is cut short before it reaches the next level.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Iterable, Iterator

from sumctl.runtime.backends.base import Backend, Generation, GenerationOptions, backend_class
from sumctl.runtime.bundle import Bundle, package_versions
from sumctl.runtime.chunking import MIN_INPUT_BUDGET, Chapter, chapterize, source_spans
from sumctl.runtime.cleaning import clean_turns
from sumctl.runtime.errors import InputError, SumctlError
from sumctl.runtime.faithfulness import check_summary, keep_supported
from sumctl.runtime.guards import LOOP, cut_loop, quality_flags
from sumctl.runtime.minutes.document import MeetingInfo, Minutes
from sumctl.runtime.minutes.extract import default_method, extract_minutes, lines_from
from sumctl.runtime.minutes.render import markdown_prose, markdown_text, render_minutes
from sumctl.runtime.models import resolve_model
from sumctl.runtime.options import SummaryOptions, check_choice
from sumctl.runtime.prompts import LENGTHS, fill, template_for
from sumctl.runtime.transcript import Transcript, Turn, read_transcript

MAX_LEVELS = 8
GUARD_MODES = ("retry", "measure", "off")
UNSUPPORTED = "unsupported"  # a quality flag: no sentence of the summary is borne out by the meeting


@dataclass
class ChapterSummary:
    level: int  # 0: chapters of the transcript; 1+: chapters of summaries
    index: int
    first_turn: int  # at level 0, indexes into the transcript's turns; above, into the level below
    last_turn: int
    input_tokens: int
    output_tokens: int
    summary: str
    seconds: float
    quality_flags: list[str] = field(default_factory=list)  # still degenerate after a retry
    retried: bool = False  # the first generation was degenerate and was redone
    start: float | None = None  # at level 0, the chapter's times, when the transcript has them
    end: float | None = None


@dataclass
class Summary:
    text: str
    length: str
    source: str
    source_sha256: str
    source_format: str
    model: dict
    chapters: list[ChapterSummary] = field(default_factory=list)
    levels: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    timings: dict = field(default_factory=dict)
    turns: int = 0
    words: int = 0
    quality_flags: list[str] = field(default_factory=list)  # of the final summary
    cleaning: dict = field(default_factory=dict)  # what cleaning removed; empty when off
    query: str | None = None  # the question a query-focused summary answers
    meeting: MeetingInfo = field(default_factory=MeetingInfo)
    minutes: Minutes | None = None  # decisions, action items, open questions (minutes=True)
    # Its sentences checked against the transcript (faithfulness.py): how many, which were found
    # unsupported and why; None where unchecked (guard "off", an extractive backend).
    faithfulness: dict | None = None
    # What made it, as faster-whisper returns its options with a transcription. Not part of
    # the record: the record's provenance already says what changed the text.
    options: SummaryOptions = field(default_factory=SummaryOptions, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The JSON record (runtime/schemas/summary.schema.json describes it). The fields of
        the first format keep their names; the canonical document's are beside them: `summary`,
        `meeting`, `provenance` and, for minutes, `decisions`, `action_items`,
        `open_questions` and `extraction`."""
        record = asdict(self)
        minutes = record.pop("minutes")
        record.pop("options")
        if record["faithfulness"] is None:  # as records were before the check
            record.pop("faithfulness")
        record["summary"] = self.text
        record["provenance"] = {
            "model": self.model.get("name"), "bundle_sha256": self.model.get("sha256"),
            "backend": self.model.get("backend"), "length": self.length, "query": self.query,
            "minutes_method": (minutes or {}).get("extraction", {}).get("method"),
            "timings": self.timings, "sumctl_version": sumctl_version()}
        if minutes is not None:
            record.update(minutes)
        return record

    def to_markdown(self, *, tasks: str | None = None) -> str:
        """The Markdown: the summary; with minutes, the minutes form (front matter, decisions,
        action items as task lines, open questions) in `tasks` style ("gfm" or "obsidian";
        default: the summary's options')."""
        if self.minutes is not None:
            return render_minutes(self, tasks=tasks or self.options.tasks)
        # Escaped like the minutes: a summary is a model's reading of a user's input (an injected
        # instruction included), so none of it may become a task line, a heading or HTML.
        parts = [f"# Summary of {markdown_text(Path(self.source).name)}", ""]
        if self.query:
            parts += [f"**Question:** {markdown_text(self.query)}", ""]
        parts += [markdown_prose(self.text.strip()), "", self.byline()]
        parts += self.dropped_lines() + self.warning_lines() + self.chapter_lines()
        return "\n".join(parts) + "\n"

    def byline(self) -> str:
        return (f"_{self.length} summary by {self.model['name']}"
                + (f" ({self.model['label']})" if self.model.get("label") else "")
                + f"; {self.words:,} words in {len(self.top_chapters())} chapter(s), "
                f"{self.timings.get('summarize_s', 0):.1f} s._")

    def dropped_lines(self) -> list[str]:
        record = self.faithfulness or {}
        dropped = record.get("sentences", 0) - record.get("kept", 0)
        if dropped <= 0:
            return []
        return ["", f"_{dropped} sentence{'s' if dropped > 1 else ''} dropped: not supported by "
                    "the transcript._"]

    def warning_lines(self) -> list[str]:
        degenerate = [f for f in self.quality_flags if f != UNSUPPORTED]
        lines = []
        if degenerate:
            lines += ["", f"> **Warning:** this summary looks degenerate "
                          f"({', '.join(degenerate)}) even after a retry; read the "
                          "transcript, or try another model or --length."]
        if UNSUPPORTED in self.quality_flags:
            lines += ["", "> **Warning:** no sentence of this summary is borne out by the "
                          "transcript; the one kept is the closest. Read the transcript."]
        return lines

    def chapter_lines(self) -> list[str]:
        if self.levels <= 1 and len(self.top_chapters()) <= 1:
            return []
        lines = ["", "## Chapters", ""]
        for c in self.top_chapters():
            flag = f" _(flagged: {', '.join(c.quality_flags)})_" if c.quality_flags else ""
            lines.append(f"{c.index + 1}. (turns {c.first_turn + 1}-{c.last_turn + 1}) "
                         f"{markdown_text(c.summary.strip())}{flag}")
        return lines

    def top_chapters(self) -> list[ChapterSummary]:
        return [c for c in self.chapters if c.level == 0]


class Summarizer:
    """A loaded bundle with the knobs users need. Load once, summarize many.

    Args:
        model: a bundle folder, an installed model's name, a loaded Bundle, or None for
            $SUMCTL_MODEL and then the embedded default.
        options: how every summary is made (SummaryOptions: length, query, cleaning, minutes,
            beams, the summary budget...); the keyword arguments named like its fields change
            single fields of it, so `Summarizer(m, length="short")` reads as it says.
        threads: the backend's CPU threads (None: the backend's choice, usually every core).
        no_repeat_ngram_size, length_penalty: override the bundle's generation defaults, for
            measurement; not options a person asks of a summary.
        verify: check every file of the bundle against its sha256 before loading.
        backend: an already-built model for `model` (a Bundle), e.g. one behind an API or in
            memory; the Summarizer then loads nothing itself.
        guard: "retry" degenerate generations once with stronger settings, flag what stays
            degenerate and cut loops before the reduce step; "measure": only flag (the output
            is the model's own, for measuring failure rates); "off".
    """

    def __init__(self, model: str | os.PathLike | Bundle | None = None,
                 options: SummaryOptions | None = None, *, threads: int | None = None,
                 no_repeat_ngram_size: int | None = None, length_penalty: float | None = None,
                 verify: bool = True, backend: Backend | None = None, guard: str = "retry",
                 **option_fields):
        if guard not in GUARD_MODES:
            raise SumctlError(f"unknown guard mode {guard!r} (use one of {', '.join(GUARD_MODES)})")
        self.options = (options or SummaryOptions()).but(**option_fields)
        started = time.perf_counter()
        self.bundle = model if isinstance(model, Bundle) else resolve_model(model, verify=verify)
        self.backend: Backend = backend or backend_class(self.bundle.manifest.backend)(self.bundle, threads=threads)
        self.load_seconds = time.perf_counter() - started
        self.threads = threads
        self.guard = guard
        self._overrides = {"no_repeat_ngram_size": no_repeat_ngram_size, "length_penalty": length_penalty}

    @property
    def length(self) -> str:
        return self.options.length

    @property
    def clean(self) -> bool:
        return self.options.clean

    @property
    def model_info(self) -> dict:
        m = self.bundle.manifest
        return {"name": m.name or self.bundle.path.name, "label": m.label, "path": str(self.bundle.path),
                "backend": m.backend, "quantization": m.quantization, "sha256": self.bundle.sha256,
                "source": m.source.get("model")}

    def generation_options(self, options: SummaryOptions) -> GenerationOptions:
        """The bundle's generation defaults for the summary's length, with what it overrides."""
        return GenerationOptions.from_defaults(
            self.bundle.manifest.generation, options.length,
            **{"num_beams": options.num_beams, "max_new_tokens": options.max_summary_tokens,
               **self._overrides})

    def options_for(self, options: SummaryOptions | None = None, **option_fields) -> SummaryOptions:
        """One call's options: this Summarizer's (or `options`), with single fields changed.
        A field passed as None keeps its value (`length=None` is "the default length")."""
        return (options or self.options).but(**{k: v for k, v in option_fields.items() if v is not None})

    def summarize(self, source: Transcript | str | os.PathLike, options: SummaryOptions | None = None,
                  *, meeting_date: str | None = None, **option_fields) -> Summary:
        """The summary of one transcript; with a `query`, the answer to that question about it
        (every chapter and every reduce level is asked the same question).

        With `minutes`, also its decisions, action items and open questions, found by
        `minutes_method` ("cues", "hybrid", "model"; default: the backend's measured best);
        `meeting_date` (ISO) is what relative dates resolve against, where the transcript does
        not say it. `options` and the keyword arguments are as for the constructor."""
        return self.summarize_batch([source], options, meeting_date=meeting_date, **option_fields)[0]

    def summarize_batch(self, sources: Iterable[Transcript | str | os.PathLike],
                        options: SummaryOptions | None = None, *, meeting_date: str | None = None,
                        **option_fields) -> list[Summary]:
        """Summaries of several transcripts, each the same as `summarize` gives it alone (with a
        deterministic backend), with their chapters sent to the backend together: one `generate`
        call per reduce level and prompt kind rather than one per file, so a batching backend
        (ONNX T5) fills its batches across files. Raises on the first file that fails; callers
        that need one outcome per file retry those one at a time."""
        options = self.options_for(options, **option_fields)
        transcripts = [s if isinstance(s, Transcript) else read_transcript(s, max_bytes=options.max_bytes)
                       for s in sources]
        method = options.minutes_method or default_method(self.backend)  # options checked its own
        started = time.perf_counter()
        plan = self._plan(options)
        jobs = [self._job(t, options) for t in transcripts]
        self._reduce(jobs, plan)
        # Each file is charged its own chapters' share of the model calls and an even share of
        # the rest, so that the files' times add up to the batch's and one file alone gets the
        # wall time, as before batching.
        elapsed = time.perf_counter() - started
        model_seconds = [sum(r.seconds for r in j.records) for j in jobs]
        overhead = max(0.0, elapsed - sum(model_seconds)) / max(1, len(jobs))
        summaries = [self._summary(job, options, seconds + overhead)
                     for job, seconds in zip(jobs, model_seconds)]
        for job, summary in zip(jobs, summaries):
            summary.meeting.date = meeting_date or summary.meeting.date  # the user's word wins
            # The extractive backend's sentences are the transcript's own: nothing to check.
            if self.guard != "off" and not self.backend.extractive:
                begun = time.perf_counter()
                self._check_faithfulness(job, summary)
                summary.timings["faithfulness_s"] = round(time.perf_counter() - begun, 4)
        if options.minutes:
            for job, summary in zip(jobs, summaries):
                begun = time.perf_counter()
                summary.minutes = self._minutes(job.transcript, job.spoken, job.source_index, method,
                                                summary.meeting.date, plan.chapter_budget)
                summary.timings["minutes_s"] = round(time.perf_counter() - begun, 4)
        return summaries

    def _plan(self, options: SummaryOptions) -> _Plan:
        """The prompts, token caps and input budgets of a summary of this kind, or a one-line
        error when the prompt leaves too little room for any transcript."""
        final = self.generation_options(options)
        query = options.query
        prompts = self.bundle.manifest.prompts
        template = template_for(prompts, options.length, query)
        # Chapter summaries feed another round, so they get the detailed instruction and a cap
        # that guarantees each round shrinks the text; a question is asked of every chapter.
        chapter_template = template_for(prompts, "long" if options.length == "long" else "medium", query)
        budget = self.backend.input_budget(template, final.max_new_tokens)
        chapter_budget = self.backend.input_budget(chapter_template, final.max_new_tokens)
        chapter_tokens = options.chapter_tokens or self.bundle.manifest.generation.chapter_tokens
        chapter_budget = min(chapter_budget, chapter_tokens or chapter_budget)
        if min(budget, chapter_budget) < MIN_INPUT_BUDGET:
            raise InputError(
                f"{self.bundle.display_name}: the prompt{' and the question' if query else ''} and "
                f"a {final.max_new_tokens}-token summary leave {min(budget, chapter_budget)} tokens of "
                f"the model's input for the transcript (at least {MIN_INPUT_BUDGET} needed); "
                + ("shorten the question, " if query else "") + "lower --max-summary-tokens, "
                "or use a model with a longer input")
        step = replace(final, max_new_tokens=max(16, min(final.max_new_tokens, chapter_budget // 4)))
        return _Plan(template, chapter_template, budget, chapter_budget, final, step)

    @staticmethod
    def _job(transcript: Transcript, options: SummaryOptions) -> _Job:
        """A transcript's first level: its turns, cleaned unless the options keep them."""
        job = _Job(transcript, transcript.turns)
        if options.clean:
            cleaned = clean_turns(job.turns)
            job.turns, job.source_index = cleaned.turns, cleaned.source_index
            job.cleaning = cleaned.report(len(transcript.turns))
        job.spoken = job.turns
        return job

    def _reduce(self, jobs: list[_Job], plan: _Plan) -> None:
        """Summarize level by level until every job's text fits one chapter."""
        for level in range(MAX_LEVELS):
            active = [j for j in jobs if j.top is None]
            if not active:
                return
            # A file that fits is summarized with the final prompt, one that does not is cut into
            # chapters for the chapter prompt: the two differ in prompt and token cap, so they
            # make two calls at most, whatever the number of files.
            finishing: list[tuple[_Job, list[Chapter]]] = []
            reducing: list[tuple[_Job, list[Chapter]]] = []
            for job in active:
                chapters = chapterize(job.turns, plan.budget, self.backend.count_tokens)
                if job.input_tokens is None:
                    job.input_tokens = sum(c.tokens for c in chapters)
                if len(chapters) == 1:
                    finishing.append((job, chapters))
                else:
                    reducing.append((job, chapterize(job.turns, plan.chapter_budget,
                                                     self.backend.count_tokens)))
            self._level(finishing, plan.template, plan.final, level, finishing=True)
            self._level(reducing, plan.chapter_template, plan.step, level, finishing=False)
        unfinished = next((j for j in jobs if j.top is None), None)
        if unfinished is not None:
            raise SumctlError(f"{unfinished.transcript.source}: summaries did not fit "
                              f"{self.bundle.path}'s input after {MAX_LEVELS} rounds; "
                              "lower --max-summary-tokens")

    def _level(self, group: list[tuple[_Job, list[Chapter]]], template: str,
               options: GenerationOptions, level: int, *, finishing: bool) -> None:
        """One model call for a group's chapters, each job given its share: its final summary,
        or its chapter summaries as the next level's turns."""
        if not group:
            return
        done = self._run([c for _, chapters in group for c in chapters], template, options, level)
        at = 0
        for job, chapters in group:
            mine = done[at:at + len(chapters)]
            at += len(chapters)
            if level == 0:
                if job.source_index is not None:
                    _map_to_source(mine, job.source_index, len(job.transcript.turns))
                _add_times(mine, job.transcript.turns)
            job.records += mine
            if finishing:
                job.top = mine[-1]
                continue
            # Never pass a loop up as it is: what came before it repeats is what it said.
            job.turns = [Turn(None, text) for text in
                         (_passed_on(r, self.guard == "retry") for r in mine) if text]
            if not job.turns:
                raise SumctlError(f"{job.transcript.source}: the model produced empty "
                                  f"summaries for every chapter; try another model or --length")

    def _check_faithfulness(self, job: _Job, summary: Summary) -> None:
        """Check the final summary's sentences against the spoken turns it was made from; under
        guard "retry", drop those the turns do not bear out, keeping the best one if none is."""
        speakers = [t.speaker for t in job.transcript.turns if t.speaker]
        checks = check_summary(summary.text, job.spoken, speakers=speakers, query=summary.query)
        unsupported = [c for c in checks if not c.supported]
        kept = len(checks)  # under "measure", every sentence stays: `dropped` says what would go
        if self.guard == "retry" and unsupported:
            if len(unsupported) == len(checks):
                best = max(checks, key=lambda c: (-len(c.problems), c.support))
                checks = [replace(c, supported=c is best) for c in checks]
                summary.quality_flags.append(UNSUPPORTED)
            summary.text = keep_supported(summary.text, checks)
            kept = sum(c.supported for c in checks)
        summary.faithfulness = {
            "sentences": len(checks), "kept": kept, "guard": self.guard,
            "dropped": [{"sentence": c.sentence, "problems": list(c.problems),
                         "turns": _source_span(c.turns, job.source_index)}
                        for c in checks if not c.supported]}

    def minutes(self, source: Transcript | str | os.PathLike, *, method: str | None = None,
                meeting_date: str | None = None, length: str | None = None) -> Minutes:
        """Only the minutes of a transcript (decisions, action items, open questions), without
        its summary: what `summarize(minutes=True)` adds, for scripts and measurement."""
        options = self.options_for(length=length, minutes_method=method)
        transcript = source if isinstance(source, Transcript) else read_transcript(source, max_bytes=options.max_bytes)
        job = self._job(transcript, options)
        return self._minutes(transcript, job.spoken, job.source_index,
                             options.minutes_method or default_method(self.backend),
                             meeting_date or transcript.date, self._plan(options).chapter_budget)

    def _minutes(self, transcript: Transcript, spoken: list[Turn], source_index: list[int] | None,
                 method: str, meeting_date: str | None, budget: int) -> Minutes:
        return extract_minutes(transcript.turns, lines_from(spoken, source_index), method=method,
                               backend=self.backend, budget=budget, meeting_date=meeting_date)

    def _summary(self, job: _Job, options: SummaryOptions, seconds: float) -> Summary:
        transcript, top, records = job.transcript, job.top, job.records
        return Summary(
            text=top.summary.strip(), length=options.length, source=transcript.source,
            source_sha256=transcript.sha256, source_format=transcript.format, model=self.model_info,
            chapters=records, levels=top.level + 1, input_tokens=job.input_tokens or 0,
            output_tokens=sum(r.output_tokens for r in records),
            timings={"load_s": round(self.load_seconds, 4), "summarize_s": round(seconds, 4)},
            turns=len(transcript.turns), words=transcript.word_count(),
            quality_flags=list(top.quality_flags), cleaning=job.cleaning, query=options.query,
            meeting=MeetingInfo(title=transcript.title, date=transcript.date,
                                duration_s=transcript.duration_s, participants=transcript.participants),
            options=options,
        )

    def summarize_many(self, sources: Iterable[Transcript | str | os.PathLike],
                       options: SummaryOptions | None = None, **option_fields) -> Iterator[Summary]:
        """Summaries one at a time, as `summarize` gives them, for a stream of transcripts."""
        options = self.options_for(options, **option_fields)
        for source in sources:
            yield self.summarize(source, options)

    def _run(self, chapters: list[Chapter], template: str, options: GenerationOptions,
             level: int) -> list[ChapterSummary]:
        started = time.perf_counter()
        texts = [c.text() for c in chapters]  # each rendered once: prompt, guard and retry
        generations: list[Generation] = []
        flags: list[list[str]] = []
        redo: set[int] = set()
        groups = ([[i] for i in range(len(chapters))] if self.backend.retries_each_at_once
                  else [list(range(len(chapters)))])
        for group in groups:
            got, got_flags, retried = self._generate_group([chapters[i] for i in group],
                                                           [texts[i] for i in group], template, options)
            generations += got
            flags += got_flags
            redo.update(group[j] for j in retried)
        each = (time.perf_counter() - started) / max(1, len(chapters))
        return [ChapterSummary(level, c.index, c.first_turn, c.last_turn, g.prompt_tokens,
                               g.output_tokens, g.text, round(each, 4), f, i in redo)
                for i, (c, g, f) in enumerate(zip(chapters, generations, flags))]

    def _generate_group(self, chapters: list[Chapter], texts: list[str], template: str,
                        options: GenerationOptions) -> tuple[list[Generation], list[list[str]], list[int]]:
        """These chapters in one call, then the degenerate ones again in another with stronger
        settings, a retry kept where it is no worse: their generations and flags, and the
        positions retried."""
        generations = self.backend.generate([fill(template, t) for t in texts], options)
        flags = [self._flags(g.text, t, c) for c, t, g in zip(chapters, texts, generations)]
        retry = self.guard == "retry" and self.backend.honours_stronger
        redo = [i for i, f in enumerate(flags) if f] if retry else []
        if redo:
            again = self.backend.generate([fill(template, texts[i]) for i in redo], options.stronger())
            for i, g in zip(redo, again):
                retry_flags = self._flags(g.text, texts[i], chapters[i])
                if len(retry_flags) <= len(flags[i]):  # the retry is no worse: take it
                    generations[i], flags[i] = g, retry_flags
        return generations, flags, redo

    def _flags(self, text: str, source: str, chapter: Chapter) -> list[str]:
        if self.guard == "off":
            return []
        flags = quality_flags(text, source, {t.speaker for t in chapter.turns if t.speaker})
        return [f for f in flags if f == LOOP] if self.backend.extractive else flags

    def close(self) -> None:
        self.backend.close()


@dataclass(frozen=True)
class _Plan:
    """What every transcript of one kind of summary is summarized with."""

    template: str               # the final summary's prompt
    chapter_template: str       # a chapter's, whose summary feeds the next level
    budget: int                 # transcript tokens that fit the final prompt
    chapter_budget: int
    final: GenerationOptions
    step: GenerationOptions     # a chapter's: capped so that every level shrinks the text


@dataclass
class _Job:
    """One transcript's progress through the reduce levels of a batch."""

    transcript: Transcript
    turns: list[Turn]  # what this level summarizes: the transcript's turns, then summaries
    records: list[ChapterSummary] = field(default_factory=list)
    input_tokens: int | None = None
    source_index: list[int] | None = None  # cleaned turn -> transcript turn, at level 0
    spoken: list[Turn] = field(default_factory=list)  # the cleaned turns: what minutes read
    cleaning: dict = field(default_factory=dict)
    top: ChapterSummary | None = None  # the final summary, once it fits one chapter


def _map_to_source(records: list[ChapterSummary], source_index: list[int], turns: int) -> None:
    """Chapters of cleaned turns point at the transcript as written (chunking.source_spans)."""
    spans = source_spans([(r.first_turn, r.last_turn) for r in records], source_index, turns)
    for record, (first, last) in zip(records, spans):
        record.first_turn, record.last_turn = first, last


def _source_span(span: tuple[int, int] | None, source_index: list[int] | None) -> list[int] | None:
    """A span of cleaned turns as the transcript's own turn indexes, as the minutes cite them."""
    if span is None:
        return None
    return [source_index[i] for i in span] if source_index is not None else list(span)


def _add_times(records: list[ChapterSummary], turns: list[Turn]) -> None:
    for record in records:
        record.start = turns[record.first_turn].start
        record.end = turns[record.last_turn].end


@cache
def sumctl_version() -> str | None:
    return package_versions().get("sumctl")


def _passed_on(record: ChapterSummary, cut: bool) -> str:
    text = record.summary.strip()
    return cut_loop(text) if cut and LOOP in record.quality_flags else text


def check_length(length: str) -> None:
    check_choice("summary length", length, LENGTHS)
