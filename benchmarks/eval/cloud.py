"""Cloud LLM summaries for `sumctl bench`: read from a file, or asked live of an endpoint.

Files: `--cloud gpt-4o=outs.jsonl`, one {"id", "summary"} a line (optionally `latency_s`,
`prompt_tokens`, `completion_tokens`), scored exactly like the local models. Live: through the
runtime's OpenAI-compatible backend (runtime/backends/openai_compat.py), with the same
Summarizer as the local models.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sumctl.benchmarks.eval.files import write_public_text
from sumctl.benchmarks.eval.records import EvalRecord, read_jsonl
from sumctl.runtime.backends.openai_compat import ChatClient, OpenAICompatBackend, cloud_bundle
from sumctl.runtime.bundle.configs import DEFAULT_CONTEXT_TOKENS
from sumctl.runtime.bundle import Bundle
from sumctl.runtime.errors import InputError
from sumctl.runtime.jsonout import strict_dumps
from sumctl.runtime.summarizer import Summarizer


# --- outputs from a file ----------------------------------------------------------------------

# Past these a value is a mistake, not a measurement (a day per summary; far more tokens than
# any context holds), and within them sums and means stay exact.
MAX_LATENCY_S = 86_400.0
MAX_TOKENS = 10**9

@dataclass
class CloudOutput:
    id: str
    summary: str
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    calls: int = 0
    cached_calls: int = 0


def parse_cloud_spec(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise InputError(f"--cloud {spec!r}: expected NAME=OUTPUTS.jsonl, e.g. gpt-4o=outs.jsonl")
    return name.strip(), Path(path.strip()).expanduser()


def load_cloud_outputs(path: str | Path, dataset_ids: list[str]) -> dict[str, CloudOutput]:
    """Read a cloud outputs file and check it covers every evaluated id."""
    path = Path(path)
    _, objects = read_jsonl(path, expected='{"id": ..., "summary": ...}', what="cloud outputs file",
                            make_hint="--cloud NAME=FILE.jsonl, one {\"id\", \"summary\"} a line")
    outputs: dict[str, CloudOutput] = {}
    for where, obj in objects:
        missing = [k for k in ("id", "summary") if k not in obj]
        if missing:
            raise InputError(f"{where}: missing field {', '.join(repr(m) for m in missing)} "
                             "(each line needs id and summary)")
        if not isinstance(obj["summary"], str):
            raise InputError(f"{where}: 'summary' must be a string")
        rid = str(obj["id"])
        if rid in outputs:
            raise InputError(f"{where}: id {rid!r} appears twice (one summary per id)")
        outputs[rid] = CloudOutput(
            rid, obj["summary"].strip(),
            _number(obj.get("latency_s"), where, "latency_s", MAX_LATENCY_S),
            _count(obj.get("prompt_tokens"), where, "prompt_tokens"),
            _count(obj.get("completion_tokens", obj.get("output_tokens")), where, "completion_tokens"))
    wanted = set(dataset_ids)
    absent = [i for i in dataset_ids if i not in outputs]
    if absent:
        overlap = len(wanted & set(outputs))
        hint = ("none of its ids match --data: was it made from another data file?" if not overlap
                else "make the cloud file from the same data, or narrow --data/--limit")
        raise InputError(f"{path}: no summary for {len(absent)} of the {len(dataset_ids)} ids in "
                         f"--data (first: {', '.join(repr(a) for a in absent[:3])}); {hint}")
    return {i: outputs[i] for i in dataset_ids}


def _number(value, where: str, name: str, limit: float) -> float | None:
    """A number from the file, finite and in [0, limit], or a one-line error at its line: the
    file's values are summed and averaged into the report, where one infinity poisons all."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= limit:
        return float(value)
    raise InputError(f"{where}: {name!r} must be a non-negative number (at most {limit:g}), "
                     f"not {_shown(value)}")


def _count(value, where: str, name: str) -> int | None:
    number = _number(value, where, name, MAX_TOKENS)
    return None if number is None else int(number)


def _shown(value) -> str:
    text = repr(value) if isinstance(value, (int, float, str)) else type(value).__name__
    return text if len(text) <= 30 else text[:27] + "..."


def write_cloud_outputs(outputs: list[CloudOutput], path: str | Path) -> Path:
    """Save live outputs in the file format above, so a live run can be re-scored offline."""
    lines = []
    for o in outputs:
        lines.append(strict_dumps({"id": o.id, "summary": o.summary, "latency_s": o.latency_s,
                                   "prompt_tokens": o.prompt_tokens,
                                   "completion_tokens": o.completion_tokens}, ensure_ascii=False))
    path = Path(path)
    write_public_text(path, "\n".join(lines) + "\n")
    return path


def estimate_cost(prompt_tokens: int, completion_tokens: int, price_per_1k: float | None,
                  price_per_1k_output: float | None = None) -> float | None:
    """Cost from user-supplied prices; output tokens use their own price when one is given."""
    if price_per_1k is None:
        return None
    out_price = price_per_1k if price_per_1k_output is None else price_per_1k_output
    return prompt_tokens / 1000 * price_per_1k + completion_tokens / 1000 * out_price


class CloudSummarizer(Summarizer):
    """The Summarizer with its model behind an API: nothing to load, nothing on disk."""

    def __init__(self, bundle: Bundle, backend: OpenAICompatBackend, *, length: str):
        # The bench scores the summary text; minutes would be found and unused.
        super().__init__(bundle, backend=backend, length=length, minutes=False)

    @property
    def model_info(self) -> dict:
        m = self.bundle.manifest
        return {"name": m.name, "label": m.label, "path": m.source.get("endpoint"),
                "backend": m.backend, "quantization": m.quantization, "sha256": None,
                "source": m.source.get("model")}


@dataclass
class LiveResult:
    outputs: list[CloudOutput]
    calls_made: int
    cache_hits: int
    retries: int
    wall_s: float
    errors: list[str] = field(default_factory=list)


def summarize_live(records: list[EvalRecord], client: ChatClient, *, name: str, length: str,
                   context_tokens: int = DEFAULT_CONTEXT_TOKENS,
                   on_done: Callable[[CloudOutput], None] | None = None) -> LiveResult:
    """Summarize every record through the endpoint, `client.concurrency` documents at a time."""
    bundle = cloud_bundle(name, client, context_tokens)
    calls_before, hits_before, retries_before = client.calls_made, client.cache_hits, client.retries

    def one(record: EvalRecord) -> CloudOutput:
        backend = OpenAICompatBackend(bundle, client=client)
        summary = CloudSummarizer(bundle, backend, length=length).summarize(record.transcript, length=length,
                                                                         query=record.query)
        done = backend.completions
        output = CloudOutput(record.id, summary.text, round(sum(c.latency_s for c in done), 4),
                             sum(c.prompt_tokens for c in done), sum(c.completion_tokens for c in done),
                             len(done), sum(c.cached for c in done))
        if on_done:
            on_done(output)
        return output

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=client.concurrency, thread_name_prefix="cloud") as pool:
        outputs = list(pool.map(one, records))
    return LiveResult(outputs, client.calls_made - calls_before, client.cache_hits - hits_before,
                      client.retries - retries_before, round(time.perf_counter() - started, 3))
