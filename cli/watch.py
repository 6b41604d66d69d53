"""`sumctl watch DIR` and `sumctl status DIR`: the folder runtime and its report."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import click

from sumctl.runtime.fsutil import display_name
from sumctl.runtime.jsonout import strict_dumps

from sumctl.cli.options import FiniteFloatRange, model_option, summary_options

_JSON_FIELDS = ("event", "path", "sha256", "reason", "seconds", "model_seconds", "outputs",
                "attempts", "next_retry", "count", "signal", "model", "workers", "threads", "batch")


class JsonLines(logging.Formatter):
    """One JSON object per line, for journald, Loki, jq..."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        for key in _JSON_FIELDS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return strict_dumps(entry, ensure_ascii=False, default=str)


def configure_logging(*, json_lines: bool, verbose: bool, console=None) -> logging.Handler:
    logger = logging.getLogger("sumctl")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    if json_lines:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines())
    elif console is not None:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, markup=False,
                              log_time_format="%H:%M:%S")
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    return handler


@click.command()
@click.argument("folder", metavar="DIR",
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_option
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the summaries, mirroring DIR's subfolders. Default: beside each "
                   "transcript. Never read back as input.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=1, show_default=True,
              help="Transcripts summarized at once; each worker loads the model once.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per worker. Default: cores / workers. workers x threads is kept "
                   "within the cores.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Up to N queued transcripts per worker go through the model together (a lone "
                   "file never waits for company). Raise it to 4-8 for throughput on CPU when "
                   "many files queue: T5 decoding a batch reuses each weight read for several "
                   "documents.")
@click.option("--once", is_flag=True,
              help="Summarize the backlog, print a table and exit (for cron and CI). Exit status "
                   "1 if any file failed.")
@click.option("--recursive", "-r", is_flag=True, help="Also watch subfolders.")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Only files matching GLOB (name or path relative to DIR); repeatable. "
                   "Default: *.txt *.vtt *.srt *.json.")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Skip files matching GLOB (name or relative path); repeatable.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The job database. Default: DIR/.sumctl/state.db.")
@click.option("--settle", "settle_seconds", type=FiniteFloatRange(min=0), default=2.0,
              show_default=True, metavar="SECONDS",
              help="A file is read only after its size and mtime stood still this long. Make it "
                   "longer than the longest pause of whatever writes into DIR.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True,
              help="Tries per file (with backoff) before it is left alone until it changes.")
@click.option("--backoff", "backoff_seconds", type=FiniteFloatRange(min=0), default=30.0,
              show_default=True, metavar="SECONDS",
              help="Wait before the first retry; each next wait is 4x longer (at most a day).")
@click.option("--retry-failed", is_flag=True,
              help="Give files that gave up a fresh set of attempts (after raising --max-bytes "
                   "or fixing the model).")
@click.option("--poll", is_flag=True,
              help="Poll the folder instead of OS events (NFS, SMB and other network mounts).")
@click.option("--rescan", "rescan_seconds", type=FiniteFloatRange(min=0), default=300.0,
              show_default=True, metavar="SECONDS",
              help="Rescan the folder this often, catching events the OS dropped (0: never).")
@click.option("--grace", "grace_seconds", type=FiniteFloatRange(min=0), default=30.0,
              show_default=True, metavar="SECONDS",
              help="On SIGINT/SIGTERM/SIGHUP, wait this long for jobs in flight before "
                   "abandoning them.")
@click.option("--webhook", metavar="URL", default=None,
              help="POST a signed JSON event to URL (http or https) for each transcript "
                   "summarized (job.done) or failed (job.failed). Events wait in "
                   "DIR/.sumctl/webhooks.db until URL answers 2xx: retried with backoff, also "
                   "after a restart.")
@click.option("--webhook-secret", metavar="SECRET", default=None,
              help="The HMAC-SHA256 key of each event's Sumctl-Signature header. Default: "
                   "$SUMCTL_WEBHOOK_SECRET, else one made once and kept in "
                   "DIR/.sumctl/webhook-secret (0600).")
@summary_options()
@click.option("--log-json", is_flag=True, help="Log JSON lines to stderr (for journald, Loki, jq).")
@click.option("--verbose", "-v", is_flag=True, help="Also log skipped files and tracebacks.")
def watch(folder, model, out, workers, threads, batch, once, recursive, include, exclude,
          state_path, settle_seconds, max_attempts, backoff_seconds, retry_failed, poll,
          rescan_seconds, grace_seconds, webhook, webhook_secret, options, log_json, verbose):
    """Summarize every transcript in DIR, exactly once, and keep watching it.

    Transcripts already in DIR are summarized first; then new and changed files are
    summarized as they arrive. Each gets `<stem>.summary.md` (meeting minutes; the summary
    alone with --summary-only) and `<stem>.summary.json` (the summary, the minutes' items, the source's path and sha256, the model bundle and its hash, timings
    and chapters). Two sources with one stem get `a.summary.*` and `a-2.summary.*`.

    \b
    What makes it safe to leave running:
      - Jobs are keyed by content hash + model + what changes the output (--length,
        --query, --summary-only, --keep-fillers, --format...) in DIR/.sumctl/state.db (SQLite):
        a renamed file is not summarized again, an edited one is, and a kill -9 or a
        power cut loses nothing (an interrupted job is redone at the next start).
      - A file is read only once it stopped changing (--settle); temporary names
        (.part, .tmp, .crdownload, ~$x, dotfiles) are never read.
      - Outputs are written to a temporary file and renamed: never half-written.
      - A file that cannot be read gets `<stem>.error.txt` with the reason; it is retried
        with backoff (--max-attempts), then left alone until it changes.
      - Every path is judged by where it really leads: a symlink (to a file or a
        folder, anywhere on the way) that leads out of DIR, a symlink loop, a FIFO or a
        socket is refused, logged and counted in `sumctl status`; one bad path never
        stops the watcher. Outputs are never written through a symlink either.
      - A full disk pauses work with one log line; it resumes once space is back, and
        the files it interrupted lose no attempt. With --once (cron, CI) there is nobody
        to wait for: a full disk exits non-zero at once, with one line naming the folder;
        the files it interrupted stay pending for the next run.
      - SIGINT, SIGTERM and SIGHUP finish the jobs in flight and exit 0 (a second signal
        abandons them: they stay pending). SIGHUP does not reopen logs: sumctl logs to
        stderr, which journald or your shell owns.
      - One watcher per folder: a second one is refused even with another --state
        (it would summarize everything again). Nested trees (a recursive watch of a
        parent and a watch of its child) are not detected: do not overlap them.
      - Files named like outputs (`x.summary.json`, `x.error.txt`) are skipped only if
        sumctl wrote them (their content says so); anything else skipped is logged.
      - With --webhook, each file summarized or failed is announced at least once, even
        if the receiver is down for a while: events are kept until it answers 2xx. Each
        carries a Sumctl-Event-Id (the same on every retry) and a Sumctl-Signature,
        `t=<unix time>,v1=<HMAC-SHA256 of "<t>." + body>`, to check before trusting it.

    \b
    Examples:
      sumctl watch ~/Meetings
      sumctl watch /srv/transcripts --model bundles/flan-t5-int8 --workers 2 -r
      sumctl watch inbox/ --out summaries/ --length short --include '*.vtt'
      sumctl watch ~/Meetings --tasks obsidian       # minutes into an Obsidian vault
      sumctl watch /srv/transcripts --batch 4         # a busy folder, on CPU
      sumctl watch inbox/ --once --log-json          # cron / CI: the backlog, then exit
      sumctl watch inbox/ --webhook https://chat.example.com/hooks/sumctl
      sumctl status inbox/                            # done / failed / pending, last errors
    """
    from rich.console import Console

    from sumctl.runtime.watch import WatchConfig, Watcher

    interactive = sys.stderr.isatty() and not log_json
    console = Console(stderr=True) if interactive else None
    configure_logging(json_lines=log_json, verbose=verbose, console=console)
    progress = _Progress(console, once) if interactive else None
    config = WatchConfig(
        folder, model=model, out=out, summary=options, workers=workers, threads=threads,
        batch=batch, state_path=state_path, recursive=recursive, include=tuple(include),
        exclude=tuple(exclude), settle_seconds=settle_seconds, max_attempts=max_attempts,
        backoff_seconds=backoff_seconds, once=once, poll=poll, rescan_seconds=rescan_seconds,
        grace_seconds=grace_seconds, retry_failed=retry_failed, webhook=webhook,
        webhook_secret=webhook_secret)
    watcher = Watcher(config, on_outcome=progress.update if progress else None)
    if progress:
        progress.start()
    try:
        report = watcher.run()
    finally:
        if progress:
            progress.stop()
    logging.getLogger("sumctl.watch").info(
        "stopped (%s): %d summarized, %d failed in %.1f s", report.stopped_by or "done",
        report.summarized, report.failed, report.elapsed,
        extra={"event": "stopped", "count": report.summarized})
    if once:
        _print_table(report, folder)
    if report.abandoned:
        # Worker threads are still inside native model code that cannot be interrupted; the
        # state is closed and consistent, so leave without waiting for them.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    if once and report.failed + report.count("refused"):
        raise click.ClickException(
            f"{report.failed + report.count('refused')} file(s) could not be summarized "
            "(see the table, the *.error.txt files, or `sumctl status`)")


class _Progress:
    """A live status line on a terminal: what is done, failing, queued and settling."""

    def __init__(self, console, once: bool):
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.once = once
        self.counts = {"summarized": 0, "failed": 0, "refused": 0, "already": 0}
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                            console=console, transient=True)
        self.task = self.bar.add_task("starting", total=None)

    def start(self) -> None:
        self.bar.start()

    def stop(self) -> None:
        self.bar.stop()

    def update(self, outcome, watcher) -> None:
        key = "failed" if outcome.status == "gave_up" else outcome.status
        if key in self.counts:
            self.counts[key] += 1
        c = self.counts
        self.bar.update(self.task, description=(
            f"{'backlog' if self.once else 'watching'}: {c['summarized']} summarized, "
            f"{c['failed']} failed, {c['refused']} refused, {c['already']} already done; "
            f"{watcher.busy} in queue, {len(watcher.settling)} settling"))


def _print_table(report, folder: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    labels = {"summarized": "summarized", "failed": "FAILED", "gave_up": "FAILED (gave up)",
              "refused": "REFUSED", "already": "already done", "wait": "failed, retry later"}
    rows = [o for o in report.outcomes.values() if o.status in labels]
    shown = [o for o in rows if o.status != "already"]
    problems = sorted((o for o in shown if o.status != "summarized"), key=lambda o: o.path)
    ok = sorted((o for o in shown if o.status == "summarized"), key=lambda o: o.path)
    limit = 50
    table = Table(title=f"sumctl watch --once: {folder}", show_lines=False)
    table.add_column("File", overflow="fold")
    table.add_column("Result")
    table.add_column("Seconds", justify="right")
    table.add_column("Output / reason", overflow="fold")
    root = Path(os.path.realpath(folder))
    for o in (problems + ok)[:limit]:
        try:
            name = str(Path(o.path).relative_to(root))
        except ValueError:
            name = o.path
        detail = Path(o.outputs[0]).name if o.outputs else o.reason
        table.add_row(display_name(name), labels[o.status], f"{o.seconds:.2f}" if o.seconds else "",
                      display_name(detail))
    if len(shown) > limit:
        table.caption = f"... and {len(shown) - limit} more"
    if shown:
        console.print(table)
    model_s = sum(o.model_seconds for o in ok)
    console.print(
        f"{len(ok)} summarized, {report.failed} failed, {report.count('refused')} refused, "
        f"{report.count('already')} already done"
        + (f", {report.recovered} recovered after a crash" if report.recovered else "")
        + (f", {sum(report.skipped.values())} skipped ("
           + ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())) + ")"
           if report.skipped else "")
        + f"; {report.elapsed:.1f} s"
        + (f" ({len(ok) / report.elapsed:.1f} files/s, {model_s:.1f} s in the model)"
           if ok and report.elapsed else ""))


@click.command()
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The job database. Default: DIR/.sumctl/state.db.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--errors", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many recent errors and refusals to list.")
def status(folder, state_path, as_json, errors):
    """Report on a watched folder: done, failed and pending jobs, the last errors, throughput.

    Reads the state database of `sumctl watch DIR` (safe while the watcher runs).

    \b
    Examples:
      sumctl status ~/Meetings
      sumctl status inbox/ --json | jq .counts
    """
    from sumctl.runtime.watch.state import State, default_state_path

    root = Path(os.path.realpath(folder))
    path = state_path or default_state_path(root)
    state = State(path, readonly=True)
    try:
        report = state.report(errors=errors)
    finally:
        state.close()
    if as_json:
        click.echo(strict_dumps(report, indent=2))
        return

    def rel(p: str) -> str:
        try:
            return str(Path(p).relative_to(root))
        except ValueError:
            return p

    def clock(t: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"

    c = report["counts"]
    pid = report["running_pid"]
    click.echo(f"State: {report['state']} ("
               + (f"watcher running, pid {pid}" if pid else "no watcher running") + ")")
    click.echo(f"Done: {c['done']}  Pending: {c['pending'] + c['running']} "
               f"({c['running']} in flight)  Failed: {c['failed']} ({c['retrying']} retrying, "
               f"{c['gave_up']} gave up)  Refused: {c['refused']}")
    for label, key in (("last hour", "last_hour"), ("last day", "last_day")):
        w = report["throughput"][key]
        if w["done"]:
            click.echo(f"Throughput, {label}: {w['done']} summarized ({w['per_hour']:g}/h), "
                       f"{w['mean_seconds']:.2f} s per file, {w['mean_model_seconds']:.2f} s "
                       "of it in the model")
    if report["throughput"]["last_done_at"]:
        click.echo(f"Last summary: {clock(report['throughput']['last_done_at'])}")
    if report["last_errors"]:
        click.echo("Last errors:")
        for e in report["last_errors"]:
            retry = (f"retry at {clock(e['next_retry'])}" if e["next_retry"]
                     else "gave up until the file changes")
            click.echo(f"  {rel(e['path'])} ({e['attempts']} attempt(s), {retry}): {e['error']}")
    if report["refusals"]:
        click.echo("Refused:")
        for r in report["refusals"]:
            click.echo(f"  {rel(r['path'])}: {r['reason']}")


def register(cli: click.Group) -> None:
    cli.add_command(watch)
    cli.add_command(status)
