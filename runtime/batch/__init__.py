"""`sumctl batch`: a corpus summarized on a process pool or a Ray cluster, exactly once.

options.py  BatchOptions: the bundle, the SummaryOptions and threads a worker needs; ENGINES
storage.py  sources and DEST: local paths, or any filesystem URI pyarrow understands
jobs.py     planning on the driver (keys, done-records, output names) and a worker's steps
local.py    the local engine: a process pool
ray_engine.py  the Ray engine: Ray Data's map_batches over an actor pool (ray imported lazily)
run.py      run_batch(): list, plan, run, report

The engines share everything but the dispatch, so both write the same files as
`sumctl summarize`, through runtime/outputs.py.
"""

from sumctl.runtime.batch.options import ENGINES, BatchOptions


def __getattr__(name: str):
    # run.py brings the planner, the storage and the watcher's shared parts: loaded on first use,
    # so that the CLI can offer ENGINES at start-up for nothing.
    if name in ("BatchReport", "run_batch"):
        from sumctl.runtime.batch import run

        return getattr(run, name)
    raise AttributeError(f"module 'sumctl.runtime.batch' has no attribute {name!r}")


__all__ = ["BatchOptions", "BatchReport", "ENGINES", "run_batch"]
