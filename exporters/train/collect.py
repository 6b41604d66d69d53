"""`sumctl train collect`: reference summaries from a strong model behind an OpenAI-compatible API.

Tiny Titans distills GPT-4's summaries into a compact model. This asks any OpenAI-compatible
endpoint for a summary of each transcript at each requested length and writes the training JSONL
(`sumctl train --data`). It is the bench's live cloud path (sumctl.runtime.cloud): the same
prompts, the same chapterization of long transcripts, the same retries, and the same on-disk
response cache, so a rerun (or a bench of the same endpoint) costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sumctl.runtime.fsutil import atomic_write_text
from sumctl.benchmarks.eval.cloud import summarize_live
from sumctl.runtime.backends.openai_compat import ChatClient
from sumctl.runtime.bundle.configs import DEFAULT_CONTEXT_TOKENS
from sumctl.runtime.errors import InputError
from sumctl.benchmarks.eval.records import EvalRecord, check_unique, parse_record, read_jsonl
from sumctl.runtime.store import data_dir

from sumctl.exporters.errors import TrainError
from sumctl.exporters.train.config import parse_lengths
from sumctl.runtime.jsonout import strict_dumps

_NO_REFERENCE = "(no reference)"


@dataclass
class CollectResult:
    out: Path
    records: int
    written: int
    empty: int
    calls_made: int
    cache_hits: int


def load_transcripts(path: str | Path) -> tuple[list[EvalRecord], dict[str, dict]]:
    """{id, transcript} lines (a `reference` is allowed and ignored), checked like bench data.

    Returns the records and each one's original JSON object, to carry its other fields over."""
    path = Path(path)
    _, objects = read_jsonl(path, expected='{"id", "transcript"}')
    records, originals, seen = [], {}, {}
    for where, obj in objects:
        # The bench's record parser, given a placeholder reference: one set of rules for ids and
        # for transcripts given as text or as a path.
        record = parse_record({**obj, "reference": _NO_REFERENCE}, where, path.parent)
        check_unique(seen, record.id, where)
        records.append(record)
        originals[record.id] = obj
    if not records:
        raise InputError(f"{path}: no records (expected one {{\"id\", \"transcript\"}} object a line)")
    return records, originals


def collect(data: str | Path, out: str | Path, *, endpoint: str, model: str, lengths="long,medium,short",
            api_key: str | None = None, concurrency: int = 4, cache_dir: str | Path | None = None,
            context_tokens: int = DEFAULT_CONTEXT_TOKENS, retries: int = 5, timeout: float = 300.0,
            seed: int = 0, force: bool = False, on_start: Callable[[int], None] | None = None,
            on_done: Callable[[str], None] | None = None) -> CollectResult:
    """Ask the endpoint for each record at each length; write the training JSONL at `out`.
    `on_start(total)` is called once the inputs are checked, `on_done(length)` per summary."""
    data, out = Path(data), Path(out)
    lengths = parse_lengths(lengths)
    if out.exists() and not force:
        raise TrainError(f"{out}: already exists (choose another --out, or pass --force to replace it)")
    records, originals = load_transcripts(data)
    cache = Path(cache_dir) if cache_dir else data_dir() / "cloud-cache"
    # The bench's settings for live calls, so both share cache entries.
    client = ChatClient(endpoint, model, api_key=api_key, concurrency=concurrency, timeout=timeout,
                        max_retries=retries, cache_dir=cache,
                        params={"temperature": 0.0, "seed": seed})
    if on_start:
        on_start(len(records) * len(lengths))
    lines, empty = [], 0
    for length in lengths:
        live = summarize_live(records, client, name=model, length=length, context_tokens=context_tokens,
                              on_done=(lambda o: on_done(length)) if on_done else None)
        for record, output in zip(records, live.outputs):
            if not output.summary.strip():
                empty += 1
                continue
            original = originals[record.id]
            transcript = original["transcript"]
            if record.transcript_path is not None:
                # Keep the path valid from the new file's folder.
                transcript = os.path.relpath((data.parent / record.transcript_path).resolve(),
                                             out.resolve().parent)
            extra = {k: v for k, v in original.items()
                     if k not in ("id", "transcript", "reference", "length", "meta")}
            meta = dict(original.get("meta") or {}) if isinstance(original.get("meta"), dict) else {}
            meta["collected"] = {"model": model, "endpoint": client.url, "source_id": record.id,
                                 "prompt_tokens": output.prompt_tokens,
                                 "completion_tokens": output.completion_tokens}
            rid = record.id if len(lengths) == 1 else f"{record.id}/{length}"
            lines.append(strict_dumps({"id": rid, "transcript": transcript, "reference": output.summary,
                                       "length": length, **extra, "meta": meta}, ensure_ascii=False))
    if not lines:
        raise TrainError(f"{client.url}: the model returned only empty summaries; nothing to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines) + "\n")
    return CollectResult(out, len(records), len(lines), empty, client.calls_made, client.cache_hits)
