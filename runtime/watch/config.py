"""What `sumctl watch` is told to do, checked once, before anything is opened."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sumctl.runtime.bundle import Bundle
from sumctl.runtime.errors import SumctlError
from sumctl.runtime.machine import plan_threads
from sumctl.runtime.options import SummaryOptions
from sumctl.runtime.watch.state import STATE_DIR, default_state_path

DEFAULT_INCLUDE = ("*.txt", "*.vtt", "*.srt", "*.json")


@dataclass(frozen=True)
class WatchConfig:
    """One watcher's settings. Built by the CLI (or a script), validated on construction, and
    normalised: paths are real paths, defaults are filled in, threads fit the cores.

    Args:
        folder: the folder to watch; it must exist.
        model: a bundle folder, an installed model's name, a loaded Bundle, or None for
            $SUMCTL_MODEL and then the embedded default.
        out: where outputs go, mirroring each input's subfolder; None: beside each input.
        summary: how each file is summarized and written (SummaryOptions: length, minutes,
            formats, the byte cap...), as `sumctl summarize` takes it.
        workers: model instances, each in its own thread (each loads the model once).
        threads: threads per worker; None: the cores shared out. More than fits is clamped,
            with `threads_warning` saying so.
        batch: files one model call may summarize together.
        state_path: the SQLite job store; None: `<folder>/.sumctl/state.db`.
        recursive: watch subfolders too.
        include, exclude: glob patterns on names or paths relative to the folder; include
            defaults to DEFAULT_INCLUDE.
        settle_seconds: how long size and mtime must stand still before a file is read.
        max_attempts, backoff_seconds: retries of a failed file, backing off 4x each time.
        once: summarize the backlog, then return.
        poll: poll the folder instead of inotify (network filesystems).
        rescan_seconds: a full rescan this often, for events the OS dropped; 0: never.
        grace_seconds: how long a stop waits for the jobs in flight.
        retry_failed: give failed jobs a fresh set of attempts at start.
        webhook: an http(s) URL that gets a signed event (runtime/webhooks.py) for each file
            summarized or failed; None: no events.
        webhook_secret: the events' signing key; None: $SUMCTL_WEBHOOK_SECRET, else one made
            once and kept beside the state (`webhook-secret`, 0600).
    """

    folder: Path
    model: str | os.PathLike | Bundle | None = None
    out: Path | None = None
    summary: SummaryOptions = field(default_factory=SummaryOptions)
    workers: int = 1
    threads: int | None = None
    batch: int = 1
    state_path: Path | None = None
    recursive: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    settle_seconds: float = 2.0
    max_attempts: int = 3
    backoff_seconds: float = 30.0
    once: bool = False
    poll: bool = False
    rescan_seconds: float = 300.0
    grace_seconds: float = 30.0
    retry_failed: bool = False
    webhook: str | None = None
    webhook_secret: str | None = None
    # Filled in on construction.
    root: Path = field(init=False)  # the folder's real path: every path is compared in it
    threads_warning: str | None = field(init=False, default=None)

    @property
    def variant(self) -> str:
        """What a job is keyed by besides its content and model (SummaryOptions.variant): it
        claims jobs and finds them, the one key for both."""
        return self.summary.variant()

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        folder = Path(self.folder).expanduser()
        if not folder.is_dir():
            raise SumctlError(f"{folder}: no such folder (pass the folder to watch)")
        if not isinstance(self.summary, SummaryOptions):
            raise SumctlError("WatchConfig(summary=...) takes a SummaryOptions")
        if self.workers < 1:
            raise SumctlError(f"--workers {self.workers}: need at least one worker")
        if self.batch < 1:
            raise SumctlError(f"--batch {self.batch}: need at least one file per batch")
        if self.max_attempts < 1:
            raise SumctlError(f"--max-attempts {self.max_attempts}: need at least one attempt")
        if self.webhook is not None:
            from sumctl.runtime.webhooks import check_webhook_url

            check_webhook_url(self.webhook)
        elif self.webhook_secret is not None:
            raise SumctlError("--webhook-secret: signs webhooks, but there is no --webhook URL "
                              "(add --webhook URL, or drop the secret)")
        put("folder", folder)
        # A folder reached through a symlink (/srv/inbox -> /data/inbox) still contains its files.
        put("root", Path(os.path.realpath(folder)))
        if self.out is not None:
            put("out", Path(os.path.realpath(Path(self.out).expanduser())))
        if self.state_path is None and os.path.islink(self.root / STATE_DIR):
            # Anyone who can write the folder could point it anywhere and have us write there.
            raise SumctlError(f"{self.root / STATE_DIR}: is a symlink; remove it, or pass "
                              "--state PATH to keep the state elsewhere")
        put("state_path", Path(self.state_path).expanduser() if self.state_path
            else default_state_path(self.root))
        threads, warning = plan_threads(self.workers, self.threads)
        put("threads", threads)
        put("threads_warning", warning)
        put("include", tuple(self.include) or DEFAULT_INCLUDE)
        put("exclude", tuple(self.exclude))
        put("settle_seconds", max(0.0, self.settle_seconds))
