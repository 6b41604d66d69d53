"""`sumctl batch SOURCE... --out DEST`: a corpus, on this machine's cores or a Ray cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sumctl.runtime.batch import ENGINES

from sumctl.cli.options import model_option, summary_options
from sumctl.runtime.jsonout import strict_dumps


@click.command()
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--out", "-o", required=True, metavar="DEST",
              help="Folder (or filesystem URI) for the summaries, mirroring each SOURCE folder's "
                   "tree. Each job's done-record is kept beside its outputs, in .sumctl/done/.")
@model_option
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="local: a process pool on this machine. ray: Ray Data on the cluster at "
                   "--address, or on a local one bound to 127.0.0.1 (pip install 'sumctl[ray]').")
@click.option("--address", default=None, metavar="ADDR",
              help="A running Ray cluster (`ray start --head` prints it), e.g. 10.0.0.5:6379 or "
                   "auto. Default: start a local cluster for this run.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=None,
              help="Processes (local) or actors (ray), each loading the model once. Default: "
                   "the cores (or the cluster's CPUs) divided by --threads.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per worker. Default: local, cores / workers; ray, 1. "
                   "workers x threads is kept within the CPUs.")
@click.option("--recursive", "-r", is_flag=True, help="Also summarize the subfolders of SOURCE folders.")
@click.option("--retry-failed", is_flag=True,
              help="Try again the transcripts that failed in an earlier run (by default a failure "
                   "is done, with its .error.txt, until its content changes).")
@summary_options()
@click.option("--quiet", "-q", is_flag=True, help="Print only the final JSON line.")
def batch(sources, out, model, engine, address, workers, threads, recursive, retry_failed,
          options, quiet):
    """Summarize every transcript under SOURCE... into DEST, exactly once, on many cores or
    many machines.

    SOURCE is a file, a folder (--recursive for its subfolders), a glob pattern, or a
    filesystem URI that pyarrow understands (s3://bucket/prefix); so may DEST be. The outputs
    are the files `sumctl summarize --out` writes, under DEST in the folders' own tree.

    \b
    Exactly once:
      - A job is keyed by the transcript's sha256, the bundle's hash and what changes
        the output (--length, --query, --summary-only, --keep-fillers, --format...), the
        same rule as `sumctl watch`. When its outputs are written, a done-record is written beside them; a
        rerun skips done jobs without loading the model.
      - Killed at any moment, a rerun finishes the rest: every output once, no
        temporary left behind. On Ray, an actor that dies is restarted and its work
        retried, with no duplicate.
      - A bad transcript gets its .error.txt and a row in the report; the batch goes on
        and exits 0.

    \b
    Examples:
      sumctl batch transcripts/ -r --out summaries/
      sumctl batch 'calls/2026-*.vtt' --out summaries/ --length short --workers 2
      sumctl batch meetings/ -r --out minutes/ --tasks obsidian
      sumctl batch calls/ -r --out summaries/ --summary-only   # the summary paragraph alone
      ray start --head --num-cpus 8        # on each machine: ray start --address HEAD:6379
      sumctl batch /shared/transcripts -r --out /shared/summaries --engine ray --address auto
    """
    from sumctl.runtime.batch import run_batch
    from sumctl.runtime.batch.run import check_engine

    check_engine(engine)
    progress = _Progress() if not quiet and engine == "local" and sys.stderr.isatty() else None
    try:
        report = run_batch(
            list(sources), out, model=model, engine=engine, address=address, workers=workers,
            threads=threads, recursive=recursive, retry_failed=retry_failed, options=options,
            on_plan=progress.plan if progress else None,
            on_result=progress.update if progress else None)
    finally:
        if progress:
            progress.stop()
    if not quiet:
        _print_table(report, out)
    click.echo(strict_dumps(report.summary()))


class _Progress:
    """A progress bar on a terminal for the local engine (Ray draws its own)."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("summarizing"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.task = None

    def plan(self, plan) -> None:
        self.task = self.bar.add_task("batch", total=len(plan.jobs))
        self.bar.start()

    def update(self, result) -> None:
        if self.task is not None:
            self.bar.advance(self.task)

    def stop(self) -> None:
        self.bar.stop()


def _print_table(report, out) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False)
    labels = {"summarized": "summarized", "failed": "FAILED", "skipped_done": "done before"}
    problems = sorted((r for r in report.results if r.status == "failed"), key=lambda r: r.source)
    ok = sorted((r for r in report.results if r.status == "summarized"), key=lambda r: r.source)
    limit = 50
    rows = (problems + ok)[:limit]
    if rows:
        table = Table(title=f"sumctl batch --out {out}")
        table.add_column("Transcript", overflow="fold")
        table.add_column("Result")
        table.add_column("Seconds", justify="right")
        table.add_column("Output / reason", overflow="fold")
        for r in rows:
            detail = r.outputs[0] if r.outputs else r.reason
            table.add_row(_short(r.source), labels[r.status], f"{r.seconds:.2f}" if r.seconds else "", detail)
        shown = len(problems) + len(ok)
        if shown > limit:
            table.caption = f"... and {shown - limit} more"
        console.print(table)
    s = report.summary()
    console.print(
        f"{s['summarized']} summarized, {s['failed']} failed, {s['skipped_done']} done before; "
        f"{s['elapsed_s']:.1f} s on {report.engine}"
        + (f" ({report.workers} worker(s) x {report.threads} thread(s))" if report.workers else "")
        + (f": {s['docs_per_s']:.2f} docs/s, {s['s_per_doc_p50']:.2f} s/doc p50, "
           f"{s['s_per_doc_p95']:.2f} s p95, {s['model_s']:.1f} s in the model"
           if s["summarized"] + s["failed"] else ""))


def _short(source: str) -> str:
    try:
        return str(Path(source).relative_to(Path.cwd()))
    except ValueError:
        return source


def register(cli: click.Group) -> None:
    cli.add_command(batch)
