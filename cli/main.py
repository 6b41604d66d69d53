"""The `sumctl` command. Each subcommand lives in its own module and stays thin: it parses
options and calls into sumctl.runtime or sumctl.exporters."""

from __future__ import annotations

import sys

import click

from sumctl.runtime.errors import SumctlError


class SumctlGroup(click.Group):
    """Turns errors a user can fix into one line on stderr and exit status 1, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SumctlError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(cls=SumctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sumctl")
def cli():
    """sumctl: summarize meeting transcripts on your own CPU, with compact fine-tuned models.

    \b
    Typical use:
      sumctl export t5 --model ./my-flan-t5 --out bundles/flan-t5-int8
      sumctl summarize meeting.vtt --model bundles/flan-t5-int8 --length short
      sumctl watch ./transcripts --model bundles/flan-t5-int8
      sumctl batch ./transcripts -r --out summaries/ --engine ray
      sumctl bench --data eval.jsonl --model bundles/flan-t5-int8
      sumctl serve --model bundles/flan-t5-int8   # an HTTP API and a page on 127.0.0.1:8765

    With no --model, the embedded default is used: SmolLM2-135M-Instruct with the meeting
    adapter fine-tuned on QMSum that ships in sumctl, when `sumctl[demo]` is installed
    (`--model smollm2-135m-instruct` runs it zero-shot), otherwise an extractive baseline. Every
    summary says which model wrote it; `sumctl models list` says which default is active.
    """


def _register() -> None:
    from sumctl.cli import ask, batch, export, models, summarize

    for module in (summarize, ask, batch, export, models):
        module.register(cli)
    for optional in ("watch", "bench", "train", "serve"):
        try:
            module = __import__(f"sumctl.cli.{optional}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"sumctl.cli.{optional}":
                raise
            continue
        module.register(cli)


_register()
