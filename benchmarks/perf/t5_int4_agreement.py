"""int4 against int8 on a T5 that has learned something (issue 30).

    python -m sumctl.benchmarks.perf.t5_int4_agreement [--work DIR] [--epochs 30] [--held-out 40]
        [--int4-blocks 32,128]

Random weights leave a T5's top logits nearly tied, so any quantization flips most greedy
choices and the tests' random tiny T5 says little about int4 against int8. This trains one that
has margins, then measures both:
  1. a small T5 (d_model 128, 4 layers; the tests' tokenizer) trained from scratch with
     `sumctl train --full`, as a user types it, on the first 450 DialogSum dev dialogues (short
     summaries; DialogSum is non-commercial, and this model is measured and thrown away);
  2. `export_t5` to int8 and to int4, each verified as every export is (the built-in inputs);
     `--int4-blocks` exports int4 once per block size (`sumctl export t5 --int4-block`), named
     int4 for the default and int4-b<size> for the others;
  3. PyTorch fp32's greedy summaries of --held-out of the other 50 dialogues, which the training
     never saw (those whose prompt fits the 512-token input), against each bundle's, run by sumctl's runtime: the share of equal tokens, the share
     of identical summaries and ROUGE-L between the two (exporters/onnx_t5/verify.py's measures).
fp32's ROUGE-L against the human summaries shows that the model learned the task.

Training takes the CPU: run it alone if its time matters. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sumctl.benchmarks.perf.kit import print_headline, snake
from sumctl.exporters.onnx_t5.graph import INT4_BLOCK_SIZE
from sumctl.runtime.bundle.configs import T5_INT4_BLOCK_SIZES
from sumctl.runtime.jsonout import strict_dumps
from sumctl.runtime.machine import machine_line

DIALOGSUM = Path(__file__).resolve().parents[3] / "shared" / "data" / "dialogsum" / "dialogsum.dev.jsonl"
TRAIN_DIALOGUES = 450
MAX_INPUT_TOKENS = 512  # export_t5's default input budget


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def dialogsum_split() -> tuple[list[dict], list[dict]]:
    """DialogSum dev as training records: the first TRAIN_DIALOGUES to train on, the rest held out."""
    rows = [json.loads(line) for line in DIALOGSUM.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [{"id": r["fname"], "transcript": r["dialogue"], "reference": r["summary"], "length": "short"}
               for r in rows]
    return records[:TRAIN_DIALOGUES], records[TRAIN_DIALOGUES:]


def write_training_data(work: Path) -> tuple[Path, list[dict]]:
    training, held = dialogsum_split()
    data = work / "train.jsonl"
    data.write_text("".join(strict_dumps(r) + "\n" for r in training), encoding="utf-8")
    return data, held


def train(base: Path, data: Path, out: Path, args) -> float:
    command = [sys.executable, "-m", "sumctl.cli", "train", "--base", str(base), "--data", str(data),
               "--out", str(out), "--full", "--epochs", str(args.epochs), "--lr", "1e-3", "--batch-size", "8",
               "--default-length", "short", "--lengths", "short", "--long-inputs", "skip", "--drop-overlong",
               "--precision", "fp32", "--save-steps", "100000", "--seed", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"sumctl train failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def held_out_agreement(checkpoint: Path, bundles: dict[str, Path], held: list[dict], count: int) -> dict:
    import torch
    from rouge_score import rouge_scorer
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from sumctl.exporters.onnx_t5.verify import reference_outputs, verify_bundle
    from sumctl.runtime.bundle import load_bundle
    from sumctl.runtime.prompts import default_templates, fill

    model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    template = default_templates()["short"]
    # What the runtime would feed the model whole: a longer dialogue would be chapterized.
    held = [r for r in held if len(tokenizer(fill(template, r["transcript"])).input_ids) <= MAX_INPUT_TOKENS][:count]
    with torch.inference_mode():
        references = reference_outputs(model, tokenizer, template, max_new_tokens=64,
                                       inputs=[r["transcript"] for r in held])
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    learned = sum(scorer.score(r["reference"], ref["text"])["rougeL"].fmeasure
                  for r, ref in zip(held, references)) / len(held)
    results = {"held_out": len(held), "fp32_rouge_l_vs_human": round(100 * learned, 1)}
    for name, path in bundles.items():
        v = verify_bundle(load_bundle(path), references, quantized=True)
        results[name] = {"token_agreement": v["token_agreement"], "rouge_l_vs_fp32": v["rouge_l"],
                         "identical": round(sum(p["identical"] for p in v["per_input"]) / len(held), 4)}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--epochs", type=float, default=30.0)
    parser.add_argument("--held-out", type=int, default=40, help="at most this many of the 50 held out")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--int4-blocks", default=str(INT4_BLOCK_SIZE),
                        help=f"comma list of int4 block sizes, of {', '.join(map(str, T5_INT4_BLOCK_SIZES))}")
    args = parser.parse_args(argv)
    blocks = [int(b) for b in args.int4_blocks.split(",") if b.strip()]
    if not blocks or any(b not in T5_INT4_BLOCK_SIZES for b in blocks):
        log(f"--int4-blocks {args.int4_blocks!r}: use a comma list of {', '.join(map(str, T5_INT4_BLOCK_SIZES))}")
        return 2
    exports = {"int8": ("int8", INT4_BLOCK_SIZE),
               **{("int4" if b == INT4_BLOCK_SIZE else f"int4-b{b}"): ("int4", b) for b in blocks}}
    if not DIALOGSUM.is_file():
        log(f"{DIALOGSUM}: DialogSum dev is missing (it lives in ../shared beside the repo)")
        return 2
    log(machine_line())

    import torch

    from sumctl.benchmarks.perf.models import build_tiny_t5
    from sumctl.exporters.onnx_t5 import export_t5

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        base = build_tiny_t5(work / "base", seed=0, d_model=args.d_model, d_ff=4 * args.d_model,
                             num_layers=args.layers, num_heads=4, d_kv=args.d_model // 4)
        data, held = write_training_data(work)
        log(f"training {args.epochs:g} epochs on {TRAIN_DIALOGUES} dialogues")
        seconds = train(base, data, work / "trained", args)
        bundles = {}
        for quant, (quantize, block) in exports.items():
            bundle = export_t5(str(work / "trained"), work / f"bundle-{quant}", quantize=quantize,
                               int4_block_size=block, min_token_agreement=0.0,
                               label=f"DialogSum tiny T5 ({quant}), measured")
            bundles[quant] = bundle.path
            v = bundle.manifest.verification
            log(f"{quant}: built-in inputs, token agreement {v['token_agreement']:.1%}, ROUGE-L {v['rouge_l']:.3f}")
        results = held_out_agreement(work / "trained", bundles, held, args.held_out)

    print(f"\nheld-out DialogSum dev ({results['held_out']} dialogues), greedy, against PyTorch fp32 "
          f"(fp32's ROUGE-L against the human summaries: {results['fp32_rouge_l_vs_human']})")
    print(f"{'bundle':<8} {'token agreement':>16} {'identical':>10} {'ROUGE-L vs fp32':>16}")
    for quant in exports:
        r = results[quant]
        print(f"{quant:<8} {r['token_agreement']:>16.1%} {r['identical']:>10.1%} {r['rouge_l_vs_fp32']:>16.3f}")
    print_headline({"held_out": results["held_out"], "epochs": args.epochs, "d_model": args.d_model,
                    "layers": args.layers, "train_seconds": round(seconds, 1),
                    "fp32_rouge_l_vs_human": results["fp32_rouge_l_vs_human"],
                    **{f"{snake(q)}_{k}": v for q in exports for k, v in results[q].items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
