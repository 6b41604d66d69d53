"""`sumctl ask MEETING QUESTION`"""

from __future__ import annotations


import click

from sumctl.runtime.jsonout import strict_dumps

from sumctl.cli.options import input_format_option, model_option, summary_options, threads_option


@click.command()
@click.argument("meeting", metavar="MEETING")
@click.argument("question", metavar="QUESTION")
@model_option
@threads_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the answer as one JSON record: the answer, the cited chapters with "
                   "their turn ranges (0-based), times and BM25 scores, the model and timings.")
@input_format_option
@summary_options("length", "clean", "max_bytes")
def ask(meeting, question, model, threads, as_json, input_format, options):
    """Answer a question about a meeting, citing the turns it read.

    MEETING is a transcript file (plain text, WebVTT, SRT, JSON or DialogSum). A meeting longer
    than the model's input is cut into chapters on speaker turns; the chapters are ranked
    against the question (BM25), and the best ones that fit the model's input together are
    read, in their order in the meeting, to write one answer. The answer ends with the
    chapters it read: their turn numbers (1-based, as the transcript is written) and times. A
    meeting that fits the input is read whole.

    \b
    Examples:
      sumctl ask standup.vtt "What did we decide about the release date?"
      sumctl ask ES2009d.json "What did the group think about the battery?" --length short
      sumctl ask meeting.json "Who owns the export fix?" --json > answer.json
    """
    from sumctl.runtime.retrieval import answer_question, check_question
    from sumctl.runtime.summarizer import Summarizer
    from sumctl.runtime.transcript import read_transcript

    # Fail fast, before a model loads: a missing file or an empty question costs nothing.
    transcript = read_transcript(meeting, fmt=input_format, max_bytes=options.max_bytes)
    question = check_question(question, meeting)
    # An answer is prose about the question; minutes would be found and thrown away.
    summarizer = Summarizer(model, options.but(minutes=False), threads=threads)
    try:
        answer = answer_question(summarizer, transcript, question, length=options.length)
    finally:
        summarizer.close()
    # After the answer, not before: an error stays the one line on stderr.
    click.echo(f"Model: {summarizer.bundle.display_name}", err=True)
    if as_json:
        click.echo(strict_dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return
    click.echo(answer.text.strip())
    click.echo()
    click.echo(answer.sources_line())


def register(cli: click.Group) -> None:
    cli.add_command(ask)
