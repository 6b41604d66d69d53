"""`sumctl summarize FILE...`"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sumctl.runtime.fsutil import display_name
from sumctl.runtime.jsonout import strict_dumps
from sumctl.runtime.outputs import OutputFolder, claim_stem, output_place, write_summary
from sumctl.runtime.transcript import parse_bytes, read_transcript

from sumctl.cli.options import input_format_option, model_option, summary_options, threads_option


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@model_option
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the summary files. Default: beside each input "
                   "(stdin: print only).")
@threads_option
@input_format_option
@summary_options()
@click.option("--date", "meeting_date", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              metavar="YYYY-MM-DD",
              help="The meeting's date, which relative due dates (\"by Friday\") resolve against. "
                   "Default: a JSON transcript's `date`, or a date in the file's name.")
@click.option("--quiet", "-q", is_flag=True, help="Do not print the summaries.")
def summarize(files, model, out_dir, threads, input_format, options, meeting_date, quiet):
    """Summarize transcript files (plain text, WebVTT, SRT, JSON or DialogSum `#Person1#:`).

    Each FILE gets `<stem>.summary.md` and `<stem>.summary.json` (the summary, its chapters,
    the model, timings and token counts). Use `-` to read one transcript from stdin.
    Transcripts longer than the model's input are split into chapters on speaker turns and
    summarized recursively; nothing is truncated. Inputs are never modified or overwritten.

    The Markdown is meeting minutes: front matter for Obsidian or a wiki, the summary,
    decisions, action items as task lines with owners and due dates, and open questions. The
    JSON carries the same items with the turns that state them (schema:
    runtime/schemas/summary.schema.json). --summary-only writes the summary paragraph alone.

    \b
    Examples:
      sumctl summarize meeting.vtt
      sumctl summarize meeting.vtt --date 2026-10-07   # due dates resolve against it
      sumctl summarize meeting.vtt --summary-only
      sumctl summarize *.json --model bundles/flan-t5-int8 --length short --out summaries/
      cat notes.txt | sumctl summarize - --format txt
    """
    from sumctl.runtime.summarizer import Summarizer

    # Read everything first: a bad file fails fast, before a model loads.
    transcripts = []
    for name in files:
        if name == "-":
            transcripts.append((None, parse_bytes(sys.stdin.buffer.read(), name="<stdin>",
                                                  fmt=input_format, max_bytes=options.max_bytes)))
        else:
            transcripts.append((Path(name), read_transcript(name, fmt=input_format,
                                                            max_bytes=options.max_bytes)))

    summarizer = Summarizer(model, options, threads=threads)
    if not quiet:
        click.echo(f"Model: {summarizer.bundle.display_name}", err=True)
    protected = {p.resolve() for p, _ in transcripts if p is not None}
    taken: set[Path] = set()
    for path, transcript in transcripts:
        summary = summarizer.summarize(
            transcript, meeting_date=meeting_date.date().isoformat() if meeting_date else None)
        if not quiet:
            if len(transcripts) > 1:
                click.secho(f"== {transcript.source}", bold=True)
            click.echo(summary.to_markdown().strip() if options.minutes else summary.text.strip())
        if path is None and out_dir is None:  # stdin with nowhere to write: print only
            if quiet:
                click.echo(strict_dumps(summary.to_dict(), ensure_ascii=False))
            continue
        place = output_place(path, out=out_dir)
        with OutputFolder(place.folder) as folder:
            stem = claim_stem(folder, place.base_stem, place.source_key, options.formats, taken,
                              protected)
            written = write_summary(summary, folder, stem, options.formats,
                                    source_key=place.source_key)
        taken.update(p.resolve() for p in written)
        for p in written:
            click.echo(f"wrote {display_name(p)}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(summarize)
