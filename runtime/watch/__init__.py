"""`sumctl watch`: every transcript dropped in a folder is summarized exactly once.

The rooms: config.py (WatchConfig, what the CLI builds), discovery.py (finding, filtering and
settling files; the security rules), jobs.py (one file's read, claim, parse, summarize,
deliver or fail), watcher.py (the loop, the worker pool, signals, pausing for a full disk)
and state.py (the durable job store behind "exactly once").
"""

from sumctl.runtime.watch.config import DEFAULT_INCLUDE, WatchConfig
from sumctl.runtime.watch.discovery import skip_reason
from sumctl.runtime.watch.jobs import Outcome, Status
from sumctl.runtime.watch.state import STATE_DIR, ClaimDecision, JobStatus, State, default_state_path
from sumctl.runtime.watch.watcher import Watcher, WatchReport

__all__ = ["DEFAULT_INCLUDE", "STATE_DIR", "ClaimDecision", "JobStatus", "Outcome", "State", "Status",
           "WatchConfig", "WatchReport", "Watcher", "default_state_path", "skip_reason"]
