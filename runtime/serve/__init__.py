"""`sumctl serve`'s runtime: the durable job store (store.py) and its workers (runner.py).
The HTTP app lives in the CLI layer; nothing here imports a web framework."""

from sumctl.runtime.serve.runner import JobRunner
from sumctl.runtime.serve.store import JobStore, QueueFullError, ServeJob

__all__ = ["JobRunner", "JobStore", "QueueFullError", "ServeJob"]
