"""Prompt-lookup decoding for T5 (issue 30): is it greedy's output, and does it pay?

    python -m sumctl.benchmarks.perf.t5_lookup --work DIR [--large BUNDLE ...] [--drafts 1,2,4]

1. A T5 that has learned something: DIR/trained, the checkpoint that
   `python -m sumctl.benchmarks.perf.t5_int4_agreement --work DIR` trains on DialogSum dev. It is
   exported to fp32, int8, int8-block and int4 (or DIR/bundle-<quant> is reused), and each bundle summarizes
   the held-out dialogues greedily, plain and with the lookup, for each draft length: identical
   summaries, and tokens per decoder call (the most the lookup can save); and plain greedy in
   batches of 4 against each dialogue alone (dynamic int8 shares its scale across a batch).
2. FLAN-T5-Large-sized bundles (--large: t5_speed --keep leaves them in its --workdir): the time
   of one decoder step fed 1 + k new positions against a step fed 1, after a 512-token input and
   32 tokens of output (median of --repeat).
Where both are measured, the projected decode speed-up for draft length k is tokens per call at
k divided by the cost ratio of 1 + k positions. A step of several positions reads the weights
once, so it costs little more than one while decoding is bound by memory.

Run it alone: the second part is a timing. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sumctl.benchmarks.perf.kit import print_headline, snake
from sumctl.benchmarks.perf.t5_int4_agreement import DIALOGSUM, MAX_INPUT_TOKENS, dialogsum_split

QUANTS = ("fp32", "int8", "int8-block", "int4")
MAX_NEW_TOKENS = 64
CACHE_TOKENS = 32  # output tokens already in the cache when a step is timed


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bundles_of(work: Path) -> dict[str, Path]:
    """DIR/bundle-<quant> for each quantization, exported from DIR/trained where missing."""
    from sumctl.exporters.onnx_t5 import export_t5

    paths = {}
    for quant in QUANTS:
        path = work / f"bundle-{quant}"
        if not (path / "sumctl.json").is_file():
            log(f"exporting {quant}")
            export_t5(str(work / "trained"), path, quantize="none" if quant == "fp32" else quant,
                      min_token_agreement=0.0, label=f"DialogSum tiny T5 ({quant}), measured")
        paths[quant] = path
    return paths


def held_out_inputs(backend, held: list[dict], count: int) -> list[list[int]]:
    from sumctl.runtime.prompts import fill

    template = backend.bundle.manifest.prompts["short"]
    inputs = [backend.encode(fill(template, r["transcript"])) for r in held]
    return [ids for ids in inputs if len(ids) <= MAX_INPUT_TOKENS][:count]


def lookup_against_plain(path: Path, held: list[dict], count: int, drafts: list[int], threads: int) -> dict:
    import sumctl.runtime.backends.onnx_t5 as onnx_t5
    from sumctl.runtime.bundle import load_bundle

    bundle = load_bundle(path)
    plain = onnx_t5.OnnxT5Backend(bundle, threads=threads, lookup=False)
    inputs = held_out_inputs(plain, held, count)
    expected = [plain.generate_ids([ids], max_new_tokens=MAX_NEW_TOKENS, no_repeat_ngram_size=3)[0]
                for ids in inputs]
    tokens = sum(len(out) for out in expected)
    # The same inputs in batches of 4: rows that share a step share dynamic int8's activation scale.
    batched = plain.generate_ids(inputs, max_new_tokens=MAX_NEW_TOKENS, no_repeat_ngram_size=3, batch_size=4)
    result = {"inputs": len(inputs), "tokens": tokens,
              "identical_in_batches_of_4": sum(a == b for a, b in zip(batched, expected))}
    for k in drafts:
        lookup = onnx_t5.OnnxT5Backend(bundle, threads=threads, lookup=True, lookup_draft=k)
        got = [lookup.generate_ids([ids], max_new_tokens=MAX_NEW_TOKENS, no_repeat_ngram_size=3)[0]
               for ids in inputs]
        calls = lookup.lookup_counts["decodes"] + len(inputs)  # + each input's first step
        result[f"draft{k}"] = {"identical": sum(a == b for a, b in zip(got, expected)),
                               "tokens_per_call": round(sum(map(len, got)) / calls, 3),
                               "kept_per_draft": round(lookup.lookup_counts["kept"]
                                                       / max(1, lookup.lookup_counts["drafted"]), 3)}
        lookup.close()
    plain.close()
    return result


def step_costs(path: Path, positions: list[int], repeat: int, threads: int) -> dict[int, float]:
    """Median seconds of a decoder step fed each number of positions, at the same cache."""
    import numpy as np

    from sumctl.runtime.backends.onnx_t5 import DecoderState, OnnxT5Backend
    from sumctl.runtime.bundle import load_bundle

    backend = OnnxT5Backend(load_bundle(path), threads=threads)
    rng = np.random.default_rng(0)
    vocab = backend.tokenizer.get_vocab_size()
    ids = rng.integers(5, vocab, size=MAX_INPUT_TOKENS - 1).tolist() + [backend.eos_id]
    hidden, mask = backend.run_encoder([ids])
    state = DecoderState(backend, hidden, mask)
    for token in [backend.start_id] + rng.integers(5, vocab, size=CACHE_TOKENS - 1).tolist():
        state.step(np.array([[token]], dtype=np.int64))
    times: dict[int, list[float]] = {p: [] for p in positions}
    for _ in range(repeat + 1):  # the first round warms up
        for p in positions:
            step = rng.integers(5, vocab, size=(1, p))
            started = time.perf_counter()
            state.step(step, every_position=True)
            times[p].append(time.perf_counter() - started)
            state.keep_positions(CACHE_TOKENS)
    backend.close()
    return {p: statistics.median(t[1:]) for p, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True,
                        help="t5_int4_agreement's --work folder (its trained/ checkpoint)")
    parser.add_argument("--large", type=Path, action="append", default=[],
                        help="a FLAN-T5-Large-sized bundle whose decoder steps are timed (repeatable)")
    parser.add_argument("--drafts", default="1,2,4", help="draft lengths, comma-separated (default 1,2,4)")
    parser.add_argument("--held-out", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    drafts = sorted({int(k) for k in args.drafts.split(",")})
    if not (args.work / "trained" / "config.json").is_file():
        log(f"{args.work}/trained: no trained checkpoint; make one with "
            f"`python -m sumctl.benchmarks.perf.t5_int4_agreement --work {args.work}`")
        return 2
    if not DIALOGSUM.is_file():
        log(f"{DIALOGSUM}: DialogSum dev is missing (it lives in ../shared beside the repo)")
        return 2
    _, held = dialogsum_split()
    headline: dict = {"drafts": drafts, "threads": args.threads}

    print(f"\nheld-out DialogSum dev, greedy, {MAX_NEW_TOKENS} tokens at most, no-repeat 3-grams: "
          "the lookup against plain decoding")
    print(f"{'bundle':<10} {'draft':>5} {'identical':>10} {'tokens/call':>12} {'kept/drafted':>13}")
    tokens_per_call, batch_lines = {}, []
    for quant, path in bundles_of(args.work).items():
        r = lookup_against_plain(path, held, args.held_out, drafts, threads=1)
        for k in drafts:
            d = r[f"draft{k}"]
            print(f"{quant:<10} {k:>5} {d['identical']:>5}/{r['inputs']:<4} {d['tokens_per_call']:>12.2f} "
                  f"{d['kept_per_draft']:>13.2f}")
            headline.update({f"{snake(quant)}_draft{k}_{key}": v for key, v in d.items()})
            if quant == "fp32":  # the choices are greedy's only there: see onnx_t5._greedy_lookup
                tokens_per_call[k] = d["tokens_per_call"]
        headline[f"{snake(quant)}_held_out"] = r["inputs"]
        headline[f"{snake(quant)}_identical_in_batches_of_4"] = r["identical_in_batches_of_4"]
        batch_lines.append(f"{quant:<10} {r['identical_in_batches_of_4']:>5}/{r['inputs']}")

    print("\nplain greedy in batches of 4 against each input alone: identical summaries")
    print("\n".join(batch_lines))

    for path in args.large:
        name = path.name.replace("-", "_")
        costs = step_costs(path, [1] + [1 + k for k in drafts], args.repeat, args.threads)
        print(f"\n{path.name}: one decoder step, {MAX_INPUT_TOKENS} input tokens, {CACHE_TOKENS} in the cache, "
              f"{args.threads} threads, median of {args.repeat}")
        print(f"{'positions':>9} {'ms':>8} {'x one':>6} {'projected decode speed-up':>26}")
        for p, seconds in costs.items():
            ratio = seconds / costs[1]
            projected = tokens_per_call[p - 1] / ratio if p > 1 else 1.0
            print(f"{p:>9} {seconds * 1e3:>8.1f} {ratio:>6.2f} {projected:>26.2f}")
            headline[f"{name}_step{p}_ms"] = round(seconds * 1e3, 2)
            if p > 1:
                headline[f"{name}_draft{p - 1}_projected_speedup"] = round(projected, 3)
    if args.large:
        print("projected speed-up: the fp32 tiny T5's tokens per call over the step's cost against one position")
    print_headline(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
