"""A summary's options: what a person asks of one summary, declared, checked and keyed once.

    from sumctl.runtime import SummaryOptions, Summarizer
    options = SummaryOptions(length="short")  # minutes: the summary, decisions, action items
    plain = SummaryOptions(minutes=False)     # the summary paragraph alone
    summary = Summarizer("bundles/flan-t5-int8", options).summarize("meeting.vtt")
    summary.options  # what made it

`sumctl summarize`, `watch` and `batch` build one SummaryOptions from the same click options
(cli/options.py), and the Summarizer, `WatchConfig` and `BatchOptions` carry it as it is. A bad
value is refused here, before any file is read or any model is loaded.

`key_fields()` is the one rule for what changes an output: `watch` and `batch` both skip a
transcript whose content was already done under the same key, and redo it when the key
differs. Each writes the rule its own way (batch a hash in a done-record, watch a text column in
its SQLite state), and both spellings are kept as earlier versions wrote them, so that upgrading
sumctl never redoes finished work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from sumctl.runtime.bundle.generation import MIN_CHAPTER_TOKENS, is_chapter_tokens
from sumctl.runtime.errors import SumctlError
from sumctl.runtime.minutes import METHODS as MINUTES_METHODS, TASK_STYLES
from sumctl.runtime.outputs import DEFAULT_FORMATS, OUTPUT_FORMATS
from sumctl.runtime.prompts import DEFAULT_LENGTH, LENGTHS
from sumctl.runtime.transcript import clean_string, max_bytes_default
from sumctl.runtime.jsonout import strict_dumps

# The fields that change nothing written when they keep these values. A key leaves them out,
# so that adding an option never changes (and redoes) the jobs of runs that did not use it.
# `minutes` stays neutral at False although minutes became the default: a key written before
# then without it means a plain summary, and still does. So a default run redoes each file that
# an earlier default run summarized once, to add its minutes, and a `--summary-only` run (the
# old default) redoes nothing.
_NEUTRAL = {"clean": True, "num_beams": None, "max_summary_tokens": None, "chapter_tokens": None,
            "formats": sorted(DEFAULT_FORMATS), "minutes": False, "minutes_method": None,
            "tasks": "gfm"}


@dataclass(frozen=True)
class SummaryOptions:
    """How one summary is made and written.

    Args:
        length: "long", "medium" or "short"; each has its own instruction prompt.
        query: a question to answer about the meeting instead of summarizing all of it; blank
            is no question, and whitespace is folded.
        clean: drop backchannel turns, fillers and stutters first (`--keep-fillers` is False).
        minutes: meeting minutes (the default): the summary with the decisions, action items
            and open questions found in the turns (runtime/minutes/); False: the summary
            paragraph alone, as the Tiny Titans paper's systems write it.
        minutes_method: how minutes are found ("cues", "hybrid", "model"); None: the backend's
            measured best.
        tasks: how the minutes' Markdown writes action items, "gfm" or "obsidian".
        formats: the files written, of OUTPUT_FORMATS; empty: DEFAULT_FORMATS.
        num_beams, max_summary_tokens, chapter_tokens: override the bundle's generation
            defaults (chapter_tokens: the most transcript tokens in a chapter of a transcript
            too long for one pass).
        max_bytes: inputs larger than this are refused; None: $SUMCTL_MAX_BYTES or the
            default, read once, here.
    """

    length: str = DEFAULT_LENGTH
    query: str | None = None
    clean: bool = True
    minutes: bool = True
    minutes_method: str | None = None
    tasks: str = "gfm"
    formats: tuple[str, ...] = DEFAULT_FORMATS
    num_beams: int | None = None
    max_summary_tokens: int | None = None
    chapter_tokens: int | None = None
    max_bytes: int | None = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        check_choice("summary length", self.length, LENGTHS)
        if self.minutes_method is not None:
            check_choice("minutes method", self.minutes_method, MINUTES_METHODS)
        check_choice("task style", self.tasks, TASK_STYLES)
        if isinstance(self.formats, str):  # ("md") is a string, not a tuple of one
            put("formats", (self.formats,))
        for fmt in self.formats:
            check_choice("output format", fmt, OUTPUT_FORMATS)
        for name, flag in (("num_beams", "--beams"), ("max_summary_tokens", "--max-summary-tokens"),
                           ("max_bytes", "--max-bytes")):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SumctlError(f"{flag} {value!r}: must be a whole number of at least 1")
        if not is_chapter_tokens(self.chapter_tokens):
            raise SumctlError(f"--chapter-tokens {self.chapter_tokens!r}: must be a whole number of at "
                              f"least {MIN_CHAPTER_TOKENS}")
        if self.query is not None and not isinstance(self.query, str):
            raise SumctlError(f"--query {self.query!r}: must be text")
        # The summarizer asks a blank question as no question, and folds its whitespace; a
        # question that is not UTF-8 is kept as transcript strings are (transcript.clean_string).
        put("query", " ".join(clean_string(self.query).split()) or None if self.query else None)
        put("formats", tuple(dict.fromkeys(self.formats)) or DEFAULT_FORMATS)
        put("max_bytes", max_bytes_default() if self.max_bytes is None else self.max_bytes)

    def but(self, **changes) -> SummaryOptions:
        """A copy with some fields changed, checked like a new one; an unknown field is a
        SumctlError naming it, as a wrong keyword from a script should be."""
        unknown = set(changes) - FIELDS
        if unknown:
            raise SumctlError(f"unknown summary option {sorted(unknown)[0]!r} "
                              f"(use one of {', '.join(sorted(FIELDS))})")
        return replace(self, **changes) if changes else self

    def key_fields(self) -> dict:
        """What a job's key holds besides the content and the model: the length and the
        question always, and every other field that changes what is written only when it is
        not neutral. The minutes' method and task style change nothing without minutes."""
        extras = {"clean": self.clean, "num_beams": self.num_beams,
                  "max_summary_tokens": self.max_summary_tokens, "chapter_tokens": self.chapter_tokens,
                  "formats": sorted(self.formats),
                  "minutes": self.minutes}
        if self.minutes:
            extras.update(minutes_method=self.minutes_method, tasks=self.tasks)
        return {"length": self.length, "query": self.query,
                **{k: v for k, v in extras.items() if v != _NEUTRAL[k]}}

    def variant(self) -> str:
        """key_fields() as one line of text, for the watcher's state: the length, then
        `minutes:<method>:<tasks>` and `keep-fillers` (as builds before SummaryOptions wrote
        them), then any other field as `name=<json>`."""
        key = self.key_fields()
        parts = [key.pop("length")]
        if key.pop("minutes", False):
            parts.append(f"minutes:{key.pop('minutes_method', None) or 'default'}:"
                         f"{key.pop('tasks', 'gfm')}")
        if key.pop("clean", True) is False:
            parts.append("keep-fillers")
        parts += [f"{name}={strict_dumps(value, ensure_ascii=False)}"
                  for name, value in key.items() if value is not None]
        return "+".join(parts)

    def to_dict(self) -> dict:
        return asdict(self) | {"formats": list(self.formats)}

    @classmethod
    def from_dict(cls, data: dict) -> SummaryOptions:
        return cls(**{**data, "formats": tuple(data.get("formats") or DEFAULT_FORMATS)})


FIELDS = frozenset(f.name for f in fields(SummaryOptions))


def check_choice(what: str, value, choices: tuple[str, ...]) -> None:
    """One line for a value that is not one of its choices, the same for every option."""
    if value not in choices:
        raise SumctlError(f"unknown {what} {value!r} (use one of {', '.join(choices)})")
