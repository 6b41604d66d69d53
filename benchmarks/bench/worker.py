"""The child process `sumctl bench` runs one local bundle in.

One process per bundle, so each bundle's peak RSS is its own (a process's peak never goes down,
and freed model memory is not always returned to the OS) and its load time starts cold.

    python -m sumctl.benchmarks.bench.worker JOB.json

JOB.json: {"bundle": path, "length": ..., "threads": N|null,
           "records": [{"id": ..., "transcript": Transcript.to_dict()}]}
It answers with one JSON object a line on its original stdout: {"event": "loaded"}, then
{"event": "doc"} per record, then {"event": "done"} (or {"event": "error", "message"}).
Anything else written to stdout (native libraries log there too) is sent to stderr instead, so
it cannot corrupt that channel.
"""

from __future__ import annotations

import json
import os
import sys
import time

from sumctl.benchmarks.eval.memory import peak_rss_bytes
from sumctl.runtime.jsonout import strict_dumps


def current_rss_bytes() -> int | None:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        return None


def main(argv: list[str]) -> int:
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(event: str, **data) -> None:
        channel.write(strict_dumps({"event": event, **data}) + "\n")
        channel.flush()

    from sumctl.runtime.errors import SumctlError

    try:
        with open(argv[0], encoding="utf-8") as f:
            job = json.load(f)
        return run(job, send)
    except SumctlError as e:
        send("error", message=str(e))
        return 2


def run(job: dict, send) -> int:
    from sumctl.runtime.summarizer import Summarizer
    from sumctl.runtime.transcript import Transcript, Turn

    transcripts = [(r["id"], Transcript(turns=[Turn(**t) for t in r["transcript"]["turns"]],
                                        source=r["transcript"]["source"],
                                        format=r["transcript"]["format"],
                                        sha256=r["transcript"]["sha256"]), r.get("query"))
                   for r in job["records"]]
    baseline = current_rss_bytes()
    baseline_peak = peak_rss_bytes()
    started = time.perf_counter()
    # The parent has already checked every file's hash; hashing again would count as load time.
    summarizer = Summarizer(job["bundle"], threads=job.get("threads"), length=job["length"],
                            verify=False, minutes=False)  # the bench scores the summary text
    load_s = time.perf_counter() - started
    send("loaded", load_s=round(load_s, 4), rss_before_load_bytes=baseline,
         peak_before_load_bytes=baseline_peak, rss_after_load_bytes=current_rss_bytes(),
         model=summarizer.model_info)
    for rid, transcript, query in transcripts:
        t0 = time.perf_counter()
        summary = summarizer.summarize(transcript, length=job["length"], query=query)
        latency = time.perf_counter() - t0
        send("doc", id=rid, summary=summary.text, latency_s=round(latency, 4),
             prompt_tokens=sum(c.input_tokens for c in summary.chapters),
             output_tokens=summary.output_tokens, transcript_tokens=summary.input_tokens,
             chapters=len(summary.top_chapters()), levels=summary.levels,
             generations=len(summary.chapters),
             flagged_generations=sum(1 for c in summary.chapters if c.quality_flags),
             retried_generations=sum(1 for c in summary.chapters if c.retried))
    summarizer.close()
    send("done", peak_rss_bytes=peak_rss_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
