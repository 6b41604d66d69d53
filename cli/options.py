"""Options shared by several commands, so they read and behave the same everywhere."""

from __future__ import annotations

import click

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
