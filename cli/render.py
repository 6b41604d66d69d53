"""Terminal display for the commands: every rich progress line lives here, so library code
reports progress through callbacks and draws nothing itself."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator


class StepDisplay:
    """An export's steps, one line each on stderr, with a spinner while a step runs and its
    time after (the exporters' Progress)."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(SpinnerColumn(finished_text="[green]✓"),
                                  TextColumn("{task.description}"), TimeElapsedColumn(),
                                  console=Console(stderr=True))

    def __enter__(self) -> "StepDisplay":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._progress.stop()
        return False

    @contextlib.contextmanager
    def step(self, description: str) -> Iterator[None]:
        task = self._progress.add_task(description, total=1)
        try:
            yield
        except BaseException:
            self._progress.update(task, description=f"[red]{description} (failed)")
            self._progress.stop_task(task)
            raise
        self._progress.update(task, completed=1)

    def note(self, text: str) -> None:
        self._progress.console.print(f"  {text}")


def track(description: str):
    """A wrapper that shows progress through an iterable of documents on stderr (train's
    evaluation passes)."""
    from rich.console import Console
    from rich.progress import track as rich_track

    def wrap(items: Iterable):
        items = list(items)
        return rich_track(items, description=description, total=len(items),
                          console=Console(stderr=True), transient=True)
    return wrap
