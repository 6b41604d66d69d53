"""`sumctl batch`: a corpus summarized on a process pool or a Ray cluster, exactly once.

options.py  BatchOptions: the bundle and every summarize option a worker needs, and the job key
storage.py  sources and DEST: local paths, or any filesystem URI pyarrow understands
jobs.py     planning on the driver (keys, done-records, output names) and a worker's steps
local.py    the local engine: a process pool
ray_engine.py  the Ray engine: Ray Data's map_batches over an actor pool (ray imported lazily)
run.py      run_batch(): list, plan, run, report

The engines share everything but the dispatch, so both write the same files as
`sumctl summarize`, through runtime/outputs.py.
"""

from sumctl.runtime.batch.options import BatchOptions
from sumctl.runtime.batch.run import ENGINES, BatchReport, run_batch

__all__ = ["BatchOptions", "BatchReport", "ENGINES", "run_batch"]
