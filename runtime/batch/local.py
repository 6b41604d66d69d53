"""The local engine: a pool of processes on this machine, each with one Summarizer.

Workers are started with `spawn` (a fresh interpreter, no threads inherited from the driver)
and load the bundle once, in their initializer. On Linux each asks the kernel to kill it when
the driver dies (PR_SET_PDEATHSIG), so a killed driver leaves no worker writing behind it: at
most a temporary file, which the next run sweeps.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Iterator

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.batch.jobs import PlannedJob, Result, Worker
from sumctl.runtime.batch.options import BatchOptions
from sumctl.runtime.batch.storage import Destination

_PR_SET_PDEATHSIG = 1
_worker: Worker | None = None
_load_error: str | None = None


def _die_with_parent(parent: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the driver died before the request was in place
        os._exit(1)


def _init(parent: int, options: BatchOptions, dest: Destination) -> None:
    global _worker, _load_error
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    try:
        _worker = Worker(options, dest, engine="local")
    except SumctlError as e:
        _load_error = str(e)
    except Exception as e:
        _load_error = f"{options.model}: cannot load the model ({type(e).__name__}: {e})"


def _run(job: PlannedJob) -> dict:
    if _worker is None:
        raise SumctlError(_load_error or "the worker has no model")
    return _worker.run(job).to_dict()


def run_local(jobs: list[PlannedJob], options: BatchOptions, dest: Destination, *,
              workers: int, meta: dict | None = None) -> Iterator[Result]:
    """Each job's result, as workers finish them. A worker that cannot load the model stops
    the batch with that error (it is nobody's transcript's fault). `meta` gets `ready_at`, the
    moment jobs are dispatched (workers start and load the model from then on)."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init,
                               initargs=(os.getpid(), options, dest))
    if meta is not None:
        meta["ready_at"] = time.perf_counter()
    try:
        pending = {pool.submit(_run, job) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield Result.from_dict(future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
