"""Where a T5 bundle's decoding step goes: ONNX Runtime's profiler, time per op type.

    python -m sumctl.benchmarks.perf.t5_profile --bundle PATH [--tokens 64] [--threads 2] [--top 14]

One greedy generation of t5_speed's fixed 512-token document, `--tokens` steps forced (no early
stop, no n-gram ban), through the runtime's own backend with ORT's profiler on. For the decoder
it prints each op type's time per decoder call, its share of the nodes' time, and its nodes per
call; for the encoder the same per call. The profiler's own cost is in every figure, so the
total runs above t5_speed's decode figure: read the shares, and what a change could win at most
(issue 30: a past/present buffer shared across steps saves at most what Concat takes; an op
fused away, at most its time). An op type's nodes inside the merged decoder's If are counted
as that op type, not as If. Ends with one line of JSON: `decoder_ms_per_call`,
`encoder_ms_per_call`, and per op type `decoder_<op>_ms` and `decoder_<op>_share`.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

from sumctl.benchmarks.perf.kit import print_headline, snake
from sumctl.benchmarks.perf.t5_speed import document_ids
from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend
from sumctl.runtime.bundle import load_bundle
from sumctl.runtime.errors import SumctlError

# Ops that only hold other ops' nodes: their time is their subgraph's, counted there.
CONTAINERS = {"If", "Loop", "Scan"}


def op_times(profile: Path) -> tuple[int, float, dict[str, float], dict[str, int]]:
    """(calls, microseconds per call, microseconds per op type, nodes per op type) of one
    session's profile: calls are its `model_run` events, nodes its `*_kernel_time` events."""
    events = json.loads(profile.read_text(encoding="utf-8"))
    calls, total = 0, 0.0
    time_by_op: dict[str, float] = collections.Counter()
    nodes_by_op: dict[str, int] = collections.Counter()
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            calls += 1
            total += event["dur"]
        elif event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            if op not in CONTAINERS:
                time_by_op[op] += event["dur"]
                nodes_by_op[op] += 1
    return calls, total / max(calls, 1), dict(time_by_op), dict(nodes_by_op)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="an onnx-t5 bundle folder")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=14, help="op types shown per session")
    args = parser.parse_args(argv)
    try:
        bundle = load_bundle(args.bundle)
    except SumctlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if bundle.manifest.backend != OnnxT5Backend.name:
        print(f"error: {args.bundle}: a {bundle.manifest.backend} bundle; give an onnx-t5 bundle", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as work:
        backend = OnnxT5Backend(bundle, threads=args.threads, lookup=False, profile=str(Path(work) / "t5"))
        document = document_ids(backend.tokenizer.get_vocab_size())
        backend.generate_ids([document], max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                             no_repeat_ngram_size=0)
        sessions = {"decoder": Path(backend.decoder.end_profiling()), "encoder": Path(backend.encoder.end_profiling())}
        found = {name: op_times(path) for name, path in sessions.items()}
        backend.close()
    headline = {"bundle": bundle.display_name, "tokens": args.tokens, "threads": args.threads}
    for name, (calls, per_call, time_by_op, nodes_by_op) in found.items():
        nodes_total = sum(time_by_op.values()) or 1.0
        print(f"{name}: {calls} calls, {per_call / 1000:.2f} ms per call (profiled)")
        print(f"  {'op type':34s} {'ms/call':>8s} {'share':>6s} {'nodes/call':>10s}")
        for op, spent in sorted(time_by_op.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"  {op:34s} {spent / calls / 1000:8.2f} {spent / nodes_total:6.1%} {nodes_by_op[op] / calls:10.0f}")
        headline[f"{name}_ms_per_call"] = round(per_call / 1000, 3)
        if name == "decoder":
            for op, spent in time_by_op.items():
                headline[f"decoder_{snake(op)}_ms"] = round(spent / calls / 1000, 3)
                headline[f"decoder_{snake(op)}_share"] = round(spent / nodes_total, 4)
    print_headline(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
