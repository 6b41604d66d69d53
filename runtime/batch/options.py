"""What every worker of a batch needs to summarize a transcript the way `sumctl summarize` does.

One frozen dataclass travels to every worker (a pool process or a Ray actor): the bundle by
path, and each option that shapes a summary. A new summarize option (say `minutes: bool`) is
one field here, one entry in `key_fields` (when it changes the output) and one in whichever of
`summarizer_kwargs`, `summarize_kwargs` or `write_kwargs` takes it, plus its click option in
cli/batch.py: run_batch() and both engines pass the dataclass through without naming fields.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from sumctl.runtime.prompts import DEFAULT_LENGTH

DEFAULT_FORMATS = ("md", "json")


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
        length, query, formats, clean, num_beams, max_summary_tokens, max_bytes: as
            `sumctl summarize` takes them (`clean=False` is --keep-fillers).
        minutes, minutes_method, tasks: the minutes form, as `sumctl summarize --minutes`.
        threads: CPU threads per worker; not part of the output, so not part of the key.
    """

    model: str
    model_sha256: str
    length: str = DEFAULT_LENGTH
    query: str | None = None
    formats: tuple[str, ...] = DEFAULT_FORMATS
    clean: bool = True
    num_beams: int | None = None
    max_summary_tokens: int | None = None
    max_bytes: int | None = None
    minutes: bool = False
    minutes_method: str | None = None
    tasks: str = "gfm"
    threads: int | None = None

    def __post_init__(self):
        # The summarizer asks a blank question as no question, and folds its whitespace.
        query = " ".join(self.query.split()) if self.query and self.query.strip() else None
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "formats", tuple(dict.fromkeys(self.formats)) or DEFAULT_FORMATS)

    def key_fields(self) -> dict:
        """What a job's key holds besides the content's hash. The watcher's key (bundle hash,
        length) plus the question, as the issue asks; every other option that changes the
        outputs is added only when it is not the default, so that adding an option never
        changes the keys (and redoes the work) of the batches that did not use it."""
        fields = {"model": self.model_sha256, "length": self.length, "query": self.query}
        extras = {"clean": self.clean, "num_beams": self.num_beams,
                  "max_summary_tokens": self.max_summary_tokens,
                  "formats": sorted(self.formats), "minutes": self.minutes,
                  "minutes_method": self.minutes_method, "tasks": self.tasks}
        defaults = {"clean": True, "num_beams": None, "max_summary_tokens": None,
                    "formats": sorted(DEFAULT_FORMATS), "minutes": False, "minutes_method": None,
                    "tasks": "gfm"}
        fields.update({k: v for k, v in extras.items() if v != defaults[k]})
        return fields

    def job_key(self, content_sha256: str) -> str:
        """The job's key: a hash of the content's hash and key_fields()."""
        data = json.dumps({"sha256": content_sha256, **self.key_fields()}, sort_keys=True)
        return hashlib.sha256(data.encode("utf-8")).hexdigest()

    def summarizer_kwargs(self) -> dict:
        """Keyword arguments of Summarizer(model, ...): what is fixed when a worker loads."""
        return {"threads": self.threads, "num_beams": self.num_beams,
                "max_summary_tokens": self.max_summary_tokens, "length": self.length,
                "clean": self.clean}

    def summarize_kwargs(self) -> dict:
        """Keyword arguments of Summarizer.summarize(transcript, ...): what each call asks."""
        return {"query": self.query, "minutes": self.minutes, "minutes_method": self.minutes_method}

    def write_kwargs(self) -> dict:
        """Keyword arguments of outputs.write_summary(...) beyond the summary, its folder, stem,
        formats and source key."""
        return {"tasks": self.tasks}

    def to_dict(self) -> dict:
        return asdict(self) | {"formats": list(self.formats)}

    @classmethod
    def from_dict(cls, data: dict) -> "BatchOptions":
        return cls(**{**data, "formats": tuple(data.get("formats") or DEFAULT_FORMATS)})
