"""Options shared by several commands, so they read and behave the same everywhere.

`summary_options` is the one place a summary's options are spelled as flags: each flag, its
help and its choices are written once here, and the decorated command gets one checked
`SummaryOptions` (runtime/options.py) in place of the separate values. A bad value is refused
by click or by SummaryOptions before the command reads any file.
"""

from __future__ import annotations

import functools
import math

import click

from sumctl.runtime.bundle.generation import MIN_CHAPTER_TOKENS
from sumctl.runtime.default_model import CHAPTER_TOKENS
from sumctl.runtime.minutes import METHODS as MINUTES_METHODS, TASK_STYLES
from sumctl.runtime.options import SummaryOptions
from sumctl.runtime.outputs import DEFAULT_FORMATS, OUTPUT_FORMATS
from sumctl.runtime.prompts import DEFAULT_LENGTH, LENGTHS
from sumctl.runtime.transcript import DEFAULT_MAX_BYTES, FORMATS as INPUT_FORMATS

class FiniteFloatRange(click.FloatRange):
    """click.FloatRange without nan and inf, which it takes (and reads 1e999 as inf): a NaN
    setting makes every comparison false (a file that never settles, a --once that never ends)
    and a NaN price turns a report into something that is not JSON."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _option(*decls: str, **attrs):
    """A flag declared once and made anew for each command that takes it."""
    return functools.partial(click.Option, list(decls), **attrs)


def _attach(make_option):
    """A decorator adding one such flag, as click.option would."""
    def decorate(command):
        command.__dict__.setdefault("__click_params__", []).append(make_option())
        return command

    return decorate


model_option = click.option(
    "--model", "-m", metavar="BUNDLE",
    help="A bundle folder made by `sumctl export`, or an installed model's name. "
         "Default: $SUMCTL_MODEL, then the embedded default.")
threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None,
    help="CPU threads for the model. Default: all cores.")
input_format_option = click.option(
    "--input-format", type=click.Choice(INPUT_FORMATS), default=None,
    help="Skip detection and read every input as this format.")

# SummaryOptions' field -> its flag. The order is the order `--help` lists them in.
_SUMMARY_FLAGS = {
    "length": _option(
        "--length", "-l", type=click.Choice(LENGTHS), default=DEFAULT_LENGTH, show_default=True,
        help="Summary length; each has its own instruction prompt, stored in the bundle."),
    "query": _option(
        "--query", "-Q", default=None, metavar="QUESTION",
        help="Answer a question about the meeting instead of summarizing all of it, e.g. "
             "\"What did the group decide about the battery?\". Every chapter of a long "
             "meeting is asked the question, and so is every reduce step."),
    "formats": _option(
        "--format", "-f", "formats", type=click.Choice(OUTPUT_FORMATS), multiple=True,
        help=f"Output formats; repeat for several. Default: {' and '.join(DEFAULT_FORMATS)}. "
             "The JSON record is always written with the others."),
    "num_beams": _option(
        "--beams", "num_beams", type=click.IntRange(min=1), default=None,
        help="Beam width (1: greedy). Default: the bundle's."),
    "max_summary_tokens": _option(
        "--max-summary-tokens", type=click.IntRange(min=1), default=None,
        help="Cap on generated tokens. Default: the bundle's value for --length."),
    "chapter_tokens": _option(
        "--chapter-tokens", type=click.IntRange(min=MIN_CHAPTER_TOKENS), default=None, metavar="N",
        help="Read a transcript too long for the model's input in chapters of at most N tokens. "
             f"Default: the bundle's (the embedded default's: {CHAPTER_TOKENS:,}, near the length "
             "it was fine-tuned on), else as many as the input holds. A transcript that fits is "
             "read whole."),
    "max_bytes": _option(
        "--max-bytes", type=click.IntRange(min=1), default=None,
        help=f"Refuse transcripts larger than this. Default: $SUMCTL_MAX_BYTES or "
             f"{DEFAULT_MAX_BYTES:,}."),
    "clean": _option(
        "--keep-fillers", "clean", is_flag=True, flag_value=False, default=True,
        help="Summarize the transcript as written. Default: turns that are only backchannels "
             "(\"Yeah.\", \"Mm-hmm.\"), fillers (um, uh) and stutters (\"the the\", \"w- we\") "
             "are removed first; chapters and citations still point at the original turns."),
    "minutes": _option(
        "--minutes/--summary-only", "minutes", default=True,
        help="Minutes, the default: YAML front matter (date, participants, tags), the summary, "
             "decisions, action items with owners and due dates, and open questions, each "
             "citing its turns. An owner is a speaker or a person named in those turns, and a "
             "due date one they state; otherwise it is left empty, never guessed. "
             "--summary-only writes the summary paragraph alone, as the Tiny Titans paper's "
             "systems do (and as sumctl did by default before minutes)."),
    "minutes_method": _option(
        "--minutes-method", type=click.Choice(MINUTES_METHODS), default=None,
        help="How minutes find items: `cues` (commitments, requests, assignments and "
             "decisions as people phrase them; no model), `hybrid` (those, each confirmed by "
             "the model) or `model` (the model lists them; JSON held to a grammar on GGUF). "
             "Every item must be found in the turns it cites. Default: the model's measured "
             "best."),
    "tasks": _option(
        "--tasks", type=click.Choice(TASK_STYLES), default="gfm", show_default=True,
        help="How minutes write action items: GitHub task lines "
             "(`- [ ] Fix the export (@Marco, due 2026-10-09)`), or Obsidian Tasks' "
             "`📅 2026-10-09` due dates."),
}
SUMMARY_FIELDS = tuple(_SUMMARY_FLAGS)
length_option = _attach(_SUMMARY_FLAGS["length"])  # for commands that take no other summary option


def summary_options(*fields: str):
    """Add the flags of SummaryOptions' `fields` (default: all of them) to a command, and pass
    the command one `options: SummaryOptions` built from them instead."""
    fields = fields or SUMMARY_FIELDS
    unknown = set(fields) - set(SUMMARY_FIELDS)
    if unknown:
        raise ValueError(f"summary_options: no flag for {sorted(unknown)}")

    def decorate(command):
        @functools.wraps(command)
        def build(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in fields}
            if "formats" in values:
                values["formats"] = tuple(values["formats"]) or DEFAULT_FORMATS
            # Through __wrapped__, so that a test can stand in for the command behind the flags.
            return build.__wrapped__(*args, options=SummaryOptions(**values), **kwargs)

        # click reads __click_params__ bottom-up, like stacked @click.option decorators.
        params = build.__dict__.setdefault("__click_params__", [])
        params.extend(_SUMMARY_FLAGS[name]() for name in reversed(SUMMARY_FIELDS) if name in fields)
        return build

    return decorate
