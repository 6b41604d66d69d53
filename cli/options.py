"""Options shared by several commands, so they read and behave the same everywhere."""

from __future__ import annotations

import click

from sumctl.runtime.minutes import METHODS as MINUTES_METHODS, TASK_STYLES
from sumctl.runtime.prompts import DEFAULT_LENGTH, LENGTHS

model_option = click.option(
    "--model", "-m", metavar="BUNDLE",
    help="A bundle folder made by `sumctl export`, or an installed model's name. "
         "Default: $SUMCTL_MODEL, then the embedded default.")
length_option = click.option(
    "--length", "-l", type=click.Choice(LENGTHS), default=DEFAULT_LENGTH, show_default=True,
    help="Summary length; each has its own instruction prompt, stored in the bundle.")
threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None,
    help="CPU threads for the model. Default: all cores.")


def minutes_options(command):
    """--minutes, --minutes-method and --tasks, for the commands that write summaries."""
    command = click.option(
        "--tasks", type=click.Choice(TASK_STYLES), default="gfm", show_default=True,
        help="How --minutes writes action items: GitHub task lines "
             "(`- [ ] Fix the export (@Marco, due 2026-10-09)`), or Obsidian Tasks' "
             "`📅 2026-10-09` due dates.")(command)
    command = click.option(
        "--minutes-method", type=click.Choice(MINUTES_METHODS), default=None,
        help="How --minutes finds items: `cues` (commitments, requests, assignments and "
             "decisions as people phrase them; no model), `hybrid` (those, each confirmed by "
             "the model) or `model` (the model lists them; JSON held to a grammar on GGUF). "
             "Every item must be found in the turns it cites. Default: the model's measured "
             "best.")(command)
    return click.option(
        "--minutes", is_flag=True,
        help="Write meeting minutes: YAML front matter (date, participants, tags), the summary, "
             "decisions, action items with owners and due dates, and open questions, each "
             "citing its turns. An owner is a speaker or a person named in those turns, and a "
             "due date one they state; otherwise it is left empty, never guessed.")(command)
