"""What every worker of a batch needs to summarize a transcript the way `sumctl summarize` does.

One frozen dataclass travels to every worker (a pool process or a Ray actor): the bundle by
path, its hash, the threads, and the SummaryOptions that shape every summary. A new summary
option is a field of SummaryOptions (runtime/options.py) and nothing here: run_batch() and both
engines pass the dataclass through without naming its fields.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.options import SummaryOptions
from sumctl.runtime.jsonout import strict_dumps

# Where a batch runs: a process pool on this machine, or Ray Data on a cluster.
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class BatchOptions:
    """How to summarize and write every transcript of one batch.

    Args:
        model: the bundle folder, as resolved on the driver (an absolute path). Workers load it
            by that path, so on a cluster it must be on a filesystem every node shares (or at
            the same path on each node): see `model_sha256`.
        model_sha256: the bundle's manifest hash, read on the driver. It is part of every job's
            key, and each worker checks the bundle it loads against it, so a node with another
            bundle at that path fails loudly instead of writing other summaries.
        summary: how each summary is made and written, as `sumctl summarize` takes it.
        threads: CPU threads per worker; not part of the output, so not part of the key.
    """

    model: str
    model_sha256: str
    summary: SummaryOptions = field(default_factory=SummaryOptions)
    threads: int | None = None

    def __post_init__(self):
        if not isinstance(self.summary, SummaryOptions):
            raise SumctlError("BatchOptions(summary=...) takes a SummaryOptions")

    def key_fields(self) -> dict:
        """What a job's key holds besides the content's hash: the bundle's hash and what changes
        the outputs (SummaryOptions.key_fields, the one rule `sumctl watch` keys by too)."""
        return {"model": self.model_sha256, **self.summary.key_fields()}

    def job_key(self, content_sha256: str) -> str:
        """The job's key: a hash of the content's hash and key_fields()."""
        data = strict_dumps({"sha256": content_sha256, **self.key_fields()}, sort_keys=True)
        return hashlib.sha256(data.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict:
        return {"model": self.model, "model_sha256": self.model_sha256,
                "summary": self.summary.to_dict(), "threads": self.threads}

    @classmethod
    def from_dict(cls, data: dict) -> BatchOptions:
        return cls(**{**data, "summary": SummaryOptions.from_dict(data["summary"])})
