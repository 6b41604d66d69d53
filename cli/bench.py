"""`sumctl bench` and `sumctl bench prepare qmsum|dialogsum`."""

from __future__ import annotations

from pathlib import Path

import click

from sumctl.runtime.bundle.configs import DEFAULT_CONTEXT_TOKENS, DEFAULT_KEY_ENV

from sumctl.cli.options import FiniteFloatRange, length_option


@click.group(invoke_without_command=True, context_settings={"max_content_width": 100})
@click.option("--data", "-d", type=click.Path(dir_okay=False, path_type=Path), metavar="DATA.jsonl",
              help="Evaluation set: one {id, transcript, reference} a line. `transcript` is the text, "
                   "or a transcript file's path relative to DATA. Make one with `sumctl bench prepare`.")
@click.option("--model", "-m", "models", multiple=True, metavar="BUNDLE",
              help="A local bundle folder or installed model name. Repeat to compare several; each "
                   "runs in its own process.")
@click.option("--cloud", "clouds", multiple=True, metavar="NAME=OUTPUTS.jsonl",
              help="Cloud summaries from a file of {id, summary} lines (optionally latency_s, "
                   "prompt_tokens, completion_tokens). Repeatable.")
@click.option("--cloud-endpoint", metavar="URL",
              help="An OpenAI-compatible API (e.g. https://api.openai.com/v1) to ask live, with the "
                   "local models' prompts.")
@click.option("--cloud-model", metavar="NAME", help="The model name to send to --cloud-endpoint.")
@click.option("--cloud-name", metavar="NAME", help="The live system's name in the report. "
              "Default: --cloud-model.")
@click.option("--cloud-concurrency", type=click.IntRange(min=1), default=4, show_default=True,
              help="Documents summarized in parallel against the endpoint.")
@click.option("--cloud-api-key-env", default=DEFAULT_KEY_ENV, show_default=True, metavar="VAR",
              help="Environment variable holding the API key (never written anywhere).")
@click.option("--cloud-cache", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Response cache; a rerun with the same prompts makes no calls. "
                   "Default: `cloud-cache` in sumctl's data folder.")
@click.option("--cloud-context-tokens", type=click.IntRange(min=256), default=DEFAULT_CONTEXT_TOKENS,
              show_default=True, help="The endpoint model's context; longer transcripts are "
              "chapterized like for local models.")
@click.option("--cloud-retries", type=click.IntRange(min=0), default=5, show_default=True,
              help="Retries on 429, 5xx and connection errors, with exponential backoff.")
@click.option("--price-per-1k", type=FiniteFloatRange(min=0), default=None, metavar="USD",
              help="Cloud price per 1,000 tokens, for the cost estimate.")
@click.option("--price-per-1k-output", type=FiniteFloatRange(min=0), default=None, metavar="USD",
              help="A separate price per 1,000 generated tokens. Default: --price-per-1k.")
@length_option
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Evaluate only the first N records.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Report folder. Default: ./bench-<date>-<time>.")
@click.option("--force", is_flag=True, help="Replace a report already in --out.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the bootstrap intervals and the live API's sampling.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per local model. Default: the backend's (all cores).")
@click.option("--bertscore/--no-bertscore", default=True, show_default=True,
              help="Add BERTScore when bert-score and its model are already on this machine "
                   "(never downloads; the report says when it was skipped).")
@click.option("--memory-runs", type=click.IntRange(min=1), default=5, show_default=True, metavar="N",
              help="Measure each local model's peak RSS in N fresh processes: the full run, then "
                   "N-1 more on the first 3 documents. The report gives the worst, with min and median.")
@click.pass_context
def bench(ctx, data, models, clouds, cloud_endpoint, cloud_model, cloud_name, cloud_concurrency,
          cloud_api_key_env, cloud_cache, cloud_context_tokens, cloud_retries, price_per_1k,
          price_per_1k_output, length, limit, out, force, seed, threads, bertscore, memory_runs):
    """Compare local bundles with cloud LLMs: ROUGE, latency, memory and cost.

    Every system summarizes (or has summarized) the same transcripts and is scored against the
    same references: ROUGE-1/2/Lsum (rouge-score, stemmed) with 95% bootstrap intervals, summary
    length and compression. Local bundles each run in a child process, which gives their load
    time, latency per document (p50/p95/mean), tokens per second and peak memory. Cloud systems
    come from files of outputs, or live from an OpenAI-compatible API with the same prompts.

    Writes report.md, report.json, per_document.csv and PNG plots to --out, then prints a table.

    \b
    Examples:
      sumctl bench prepare dialogsum dialogsum.dev.jsonl --out dialogsum.jsonl
      sumctl bench --data dialogsum.jsonl --limit 50 \\
          --model bundles/flan-t5-int8 --model bundles/smollm2-q4 \\
          --cloud gpt-4o=gpt4o-outputs.jsonl --out bench-dialogsum
      OPENAI_API_KEY=... sumctl bench --data qmsum-val.jsonl --model bundles/flan-t5-int8 \\
          --cloud-endpoint https://api.openai.com/v1 --cloud-model gpt-4o-mini \\
          --price-per-1k 0.00015 --cloud-concurrency 8

    \b
    Any OpenAI-compatible server works, e.g. a local llama.cpp server:
      python -m llama_cpp.server --model model.gguf --port 8000
      sumctl bench --data eval.jsonl --model bundles/flan-t5-int8 \\
          --cloud-endpoint http://127.0.0.1:8000/v1 --cloud-model local-gguf

    Rerunning the same live bench reads the answers from the cache: no calls, no cost.
    """
    if ctx.invoked_subcommand is not None:
        return
    if data is None:
        raise click.UsageError("Missing option '--data' (an evaluation JSONL; see "
                               "`sumctl bench prepare --help`).")
    _require_bench_extra()
    from sumctl.benchmarks.bench.runner import BenchConfig, run_bench

    config = BenchConfig(
        data=data, models=list(models), clouds=list(clouds), cloud_endpoint=cloud_endpoint,
        cloud_model=cloud_model, cloud_name=cloud_name, cloud_concurrency=cloud_concurrency,
        cloud_api_key_env=cloud_api_key_env, cloud_cache=cloud_cache,
        cloud_context_tokens=cloud_context_tokens, cloud_retries=cloud_retries,
        price_per_1k=price_per_1k, price_per_1k_output=price_per_1k_output, length=length,
        limit=limit, out=out, seed=seed, threads=threads, force=force, bertscore=bertscore,
        memory_runs=memory_runs)
    with RichProgress() as progress:
        result = run_bench(config, progress)
    print_table(result)


class RichProgress:
    """A progress bar per system on stderr, so stdout carries only the table."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self._tasks: dict[str, int] = {}

    def __enter__(self):
        self._progress.start()
        return self

    def __exit__(self, *exc):
        self._progress.stop()

    def start(self, system: str, total: int) -> None:
        self._tasks[system] = self._progress.add_task(system, total=total)

    def advance(self, system: str) -> None:
        self._progress.advance(self._tasks[system])

    def note(self, message: str) -> None:
        self._progress.console.print(message)


def _require_bench_extra() -> None:
    """The edge install leaves out what only measures: say how to add it, in one line. (Plots
    and the machine's memory figures are skipped, with a note, where matplotlib and psutil are
    missing; scores cannot be.)"""
    import importlib.util

    if importlib.util.find_spec("rouge_score") is None:
        raise click.ClickException("sumctl bench scores with rouge-score, which the edge install "
                                   "leaves out: pip install 'sumctl[bench]'")


def print_table(result) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from sumctl.benchmarks.bench.report import COST_COLUMNS, QUALITY_COLUMNS, table_rows

    rows = table_rows(result.systems)
    ds = result.dataset
    console = Console()
    title = (f"sumctl bench: {len(ds.records)} documents from {ds.path.name}, "
             f"{result.environment['length']} summaries")
    for columns, heading, caption in (
            (QUALITY_COLUMNS, title, "ROUGE: F1 × 100, mean [95% CI]."),
            (COST_COLUMNS, "Speed, memory and cost",
             "p50/p95/Mean: seconds per document. Load: seconds.")):
        # Columns nobody has a value for (e.g. Cost with no cloud) only take room.
        shown = [c for c in columns if any(r[c] != "–" for r in rows)]
        table = Table(title=heading, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False,
                      collapse_padding=True)
        for c in shown:
            if c == "System":
                table.add_column(c, no_wrap=True, min_width=min(28, max(len(r[c]) for r in rows)))
            else:  # a ROUGE cell may wrap its interval under the mean on a narrow terminal
                table.add_column(c, justify="left" if c == "Kind" else "right",
                                 no_wrap=not c.startswith("ROUGE"))
        for r in rows:
            table.add_row(*(r[c] for c in shown))
        console.print(table)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/dim]")
    console.print(f"Report: {result.files['md']}")


@bench.group()
def prepare():
    """Convert a public summarization set into a bench DATA.jsonl.

    \b
    Examples:
      sumctl bench prepare qmsum QMSum/data/ALL --split val --out qmsum-val.jsonl
      sumctl bench prepare qmsum QMSum/data/ALL --split val --specific --out qmsum-val-spec.jsonl
      sumctl bench prepare dialogsum DialogSum_Data/dialogsum.dev.jsonl --out dialogsum-dev.jsonl
    """


def _out_option(f):
    f = click.option("--force", is_flag=True, help="Replace --out if it exists.")(f)
    return click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
                        metavar="FILE.jsonl", help="The JSONL to write.")(f)


@prepare.command("qmsum")
@click.argument("directory", type=click.Path(path_type=Path), metavar="DIR")
@click.option("--specific", is_flag=True,
              help="One record per specific query: the turns of its relevant_text_span as the "
                   "transcript, its answer as the reference. Default: one record per meeting with "
                   "the general query's answer.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None,
              help="Read DIR/<split>/*.json. Default: DIR/*.json, or every split under DIR.")
@_out_option
def prepare_qmsum_command(directory, specific, split, out, force):
    """QMSum meetings (DIR of *.json, or of train/ val/ test/ folders) -> DATA.jsonl."""
    from sumctl.benchmarks.eval.datasets import prepare_qmsum, write_jsonl

    records = prepare_qmsum(directory, specific=specific, split=split)
    write_jsonl(records, out, force=force)
    click.echo(f"Wrote {len(records)} records to {out}")


@prepare.command("dialogsum")
@click.argument("file", type=click.Path(path_type=Path), metavar="FILE")
@_out_option
def prepare_dialogsum_command(file, out, force):
    """DialogSum JSONL ({fname, dialogue, summary, topic}) -> DATA.jsonl."""
    from sumctl.benchmarks.eval.datasets import prepare_dialogsum, write_jsonl

    records = prepare_dialogsum(file)
    write_jsonl(records, out, force=force)
    click.echo(f"Wrote {len(records)} records to {out}")


def register(cli: click.Group) -> None:
    cli.add_command(bench)
