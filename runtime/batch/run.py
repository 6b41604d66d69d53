"""`sumctl batch` as a function: list, plan, run on an engine, report.

    from sumctl.runtime.batch import run_batch
    report = run_batch(["transcripts/"], "summaries/", model="bundles/flan-t5-int8",
                       recursive=True, engine="ray")
    print(report.summary())
"""

from __future__ import annotations

import importlib.util
import os
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Callable

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.batch.jobs import BatchStatus, Plan, Result, plan_jobs
from sumctl.runtime.batch.options import ENGINES, BatchOptions
from sumctl.runtime.batch.storage import Destination, list_sources
from sumctl.runtime.machine import plan_openmp_waits, plan_threads, usable_cores
from sumctl.runtime.numbers import percentile
from sumctl.runtime.options import SummaryOptions, check_choice



@dataclass
class BatchReport:
    results: list[Result]
    elapsed: float
    engine: str
    workers: int = 0
    threads: int = 0
    extra: dict = field(default_factory=dict)  # the engine's own facts (Ray: cpus, nodes)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> int:
        return self.count(BatchStatus.FAILED)

    def summary(self) -> dict:
        """The report's JSON line. Per-document times are the workers' wall time for each
        transcript this run summarized or failed (reading, parsing, the model, writing);
        docs_per_s counts those documents over the whole run, start-up included."""
        ran = [r for r in self.results if r.status != BatchStatus.SKIPPED]
        seconds = sorted(r.seconds for r in ran)
        return {
            "documents": len(self.results),
            "summarized": self.count(BatchStatus.SUMMARIZED),
            "failed": self.failed,
            "skipped_done": self.count(BatchStatus.SKIPPED),
            "docs_per_s": round(len(ran) / self.elapsed, 3) if ran and self.elapsed else 0.0,
            "s_per_doc_p50": round(percentile(seconds, 50) or 0.0, 4),
            "s_per_doc_p95": round(percentile(seconds, 95) or 0.0, 4),
            "model_s": round(sum(r.model_seconds for r in ran), 4),
            "elapsed_s": round(self.elapsed, 3),
            "engine": self.engine,
            "workers": self.workers,
            "threads": self.threads,
            **self.extra,
        }


def check_engine(engine: str) -> None:
    """Fail before any work when the engine cannot run here."""
    check_choice("engine", engine, ENGINES)
    # Ray Data is in every Ray wheel; its extra brings pandas and pyarrow. (A submodule's spec
    # would import Ray itself, before the engine could keep a local cluster on loopback.)
    if engine == "ray" and not all(_installed(m) for m in ("ray", "pandas", "pyarrow")):
        raise SumctlError("--engine ray needs Ray Data: pip install 'sumctl[ray]'")


def _installed(module: str) -> bool:
    """Whether a module can be imported, without importing it (Ray takes a second)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent missing, or blocked in sys.modules
        return False


def batch_options(model: str | None, summary: SummaryOptions, threads: int | None = None) -> BatchOptions:
    """The options every worker gets. The bundle is found and its manifest hashed here, but its
    model files are neither read nor verified: a rerun with nothing left to do must not cost a
    model load (each worker verifies the files when it loads them)."""
    from sumctl.runtime.models import resolve_model

    bundle = resolve_model(model, verify=False)
    return BatchOptions(os.path.abspath(bundle.path), bundle.sha256, summary, threads)


def run_batch(sources: list[str], out: str | os.PathLike, *, model: str | None = None,
              engine: str = "local", address: str | None = None, workers: int | None = None,
              threads: int | None = None, recursive: bool = False, retry_failed: bool = False,
              on_plan: Callable[[Plan], None] | None = None,
              on_result: Callable[[Result], None] | None = None,
              options: SummaryOptions | None = None, **option_fields) -> BatchReport:
    """Summarize every transcript under `sources` into `out`, mirroring their folders, each
    exactly once: see jobs.py for how, and SummaryOptions.key_fields for what decides a job's
    key.

    `options` (or SummaryOptions' fields as keywords: length, query, formats, clean, minutes...)
    say how each summary is made, as `sumctl summarize` takes them. They are checked before
    any source is listed, and travel to every worker as they are."""
    check_engine(engine)
    summary = (options or SummaryOptions()).but(**option_fields)
    started = time.perf_counter()
    batch = batch_options(model, summary, threads)
    listed = list_sources([str(s) for s in sources], recursive=recursive)
    dest = Destination.open(out)
    meta: dict = {}
    with dest.lock():
        dest.sweep()
        plan = plan_jobs(listed, dest, batch, retry_failed=retry_failed)
        planned = time.perf_counter()
        if on_plan is not None:
            on_plan(plan)
        results = [*plan.finished, *plan.unreadable]
        if plan.jobs:
            stream = _start(engine, plan, batch, dest, address=address, workers=workers, meta=meta)
            results += _collect(stream, on_result)
        dest.sweep()  # whatever an earlier, killed run's writers left while they were dying
    finished = time.perf_counter()
    # Where the time went: listing, hashing and naming (plan_s); starting the pool or reaching
    # the cluster (start_s); and the jobs, from the first dispatched to the last result (run_s).
    ready = meta.pop("ready_at", planned)
    meta.update(plan_s=round(planned - started, 3), start_s=round(ready - planned, 3),
                run_s=round(finished - ready, 3))
    return BatchReport(results, finished - started, engine,
                       meta.pop("workers", 0), meta.pop("threads", 0), meta)


def _start(engine: str, plan: Plan, batch: BatchOptions, dest: Destination, *, address: str | None,
           workers: int | None, meta: dict):
    """The engine's stream of results for the planned jobs."""
    if engine == "ray":
        from sumctl.runtime.batch.ray_engine import run_ray

        return run_ray(plan.jobs, batch, dest, address=address, workers=workers,
                       threads=batch.threads, meta=meta)
    from sumctl.runtime.batch.local import run_local

    n = workers or max(1, usable_cores() // (batch.threads or 1))
    n = max(1, min(n, len(plan.jobs)))
    # workers x threads within the cores, as `sumctl watch` keeps them.
    threads, _ = plan_threads(n, batch.threads)
    batch = replace(batch, threads=threads)
    meta.update(workers=n, threads=threads)
    plan_openmp_waits(n, threads)  # the spawned workers inherit it
    return run_local(plan.jobs, batch, dest, workers=n, meta=meta)


def _collect(stream, on_result: Callable[[Result], None] | None) -> list[Result]:
    results = []
    try:
        for result in stream:
            results.append(result)
            if on_result is not None:
                on_result(result)
    except BrokenProcessPool:
        raise SumctlError("a worker process died; run the batch again (finished "
                          "transcripts are kept and skipped)") from None
    finally:
        stream.close()
    return results
