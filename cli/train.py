"""`sumctl train` (fine-tune a compact model) and `sumctl train collect` (references from a cloud model)."""

from __future__ import annotations

from pathlib import Path

import click

from sumctl.cli.options import FiniteFloatRange
from sumctl.exporters.train.config import (DEVICES, LONG_INPUT_POLICIES, MAX_SEED, MIN_INPUT_TOKENS,
                                           PRECISIONS)
from sumctl.runtime.bundle.configs import DEFAULT_CONTEXT_TOKENS, DEFAULT_KEY_ENV
from sumctl.runtime.prompts import DEFAULT_LENGTH, LENGTHS

_ALL_LENGTHS = ",".join(LENGTHS)


@click.group("train", invoke_without_command=True, context_settings={"max_content_width": 100})
@click.option("--base", "-b", metavar="PATH_OR_ID",
              help="The checkpoint to fine-tune: a Hugging Face folder or hub id (safetensors only). "
                   "T5/FLAN-T5, or a LLaMA-family chat model (TinyLlama, SmolLM2, LiteLlama).")
@click.option("--data", "-d", type=click.Path(dir_okay=False, path_type=Path), metavar="TRAIN.jsonl",
              help="Training pairs: one {id, transcript, reference[, length]} a line, as for "
                   "`sumctl bench` (transcript = text, or a file path relative to the JSONL).")
@click.option("--eval", "eval_data", type=click.Path(dir_okay=False, path_type=Path), metavar="VAL.jsonl",
              help="Held-out pairs, scored (ROUGE, through the runtime's Summarizer) before and after.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Folder for the fine-tuned checkpoint (and its training/ record). Must be new, "
                   "unless --resume.")
@click.option("--lora/--full", default=True, show_default=True,
              help="Train a LoRA adapter (merged into the base at the end) or every weight.")
@click.option("--epochs", type=FiniteFloatRange(min=0, min_open=True), default=3.0, show_default=True)
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop after this many optimizer steps (overrides --epochs).")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Peak learning rate. Default: 2e-4 with LoRA, 5e-5 with --full.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batches per optimizer step.")
@click.option("--max-input-tokens", type=click.IntRange(min=MIN_INPUT_TOKENS), default=None,
              help="The input budget the exported bundle will use; longer transcripts are "
                   "chapterized as the runtime does. T5: the encoder input (default 512, as "
                   "`export t5`). Causal LMs: the context shared by prompt and summary (default: the "
                   "model's, at most 8192, as the GGUF runtime).")
@click.option("--lengths", default=_ALL_LENGTHS, show_default=True, metavar="LIST",
              help="Which instructions to train: records whose `length` is not listed are left out.")
@click.option("--default-length", type=click.Choice(LENGTHS), default=DEFAULT_LENGTH, show_default=True,
              help="The instruction for records without a `length`.")
@click.option("--long-inputs", type=click.Choice(LONG_INPUT_POLICIES), default="reduce", show_default=True,
              help="Transcripts longer than the input: train on the runtime's reduce input (chapter "
                   "summaries by the base model) -> reference, or leave them out.")
@click.option("--drop-overlong", is_flag=True,
              help="Leave out references longer than their length's summary budget instead of failing.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="auto: CUDA when torch sees a GPU, else CPU.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto: bf16 autocast where the hardware runs it natively (CPUs with AVX-512 BF16 "
                   "or AMX, recent GPUs; 1.5x per step on AVX-512 BF16, benchmarks/perf/train_speed.py), "
                   "fp32 elsewhere.")
@click.option("--group-by-length/--no-group-by-length", default=True, show_default=True,
              help="Batch examples of similar lengths together, so little compute goes to padding.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Same seed, same data: same model.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--save-steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="Checkpoint every N steps (the last two are kept).")
@click.option("--lora-r", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lora-alpha", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lora-dropout", type=FiniteFloatRange(0, 1, max_open=True), default=0.05, show_default=True)
@click.option("--revision", default=None, help="Hub revision of --base.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def train_command(ctx, base, data, eval_data, out, lora, epochs, max_steps, lr, batch_size, grad_accum,
          max_input_tokens, lengths, default_length, long_inputs, drop_overlong, device, precision,
          group_by_length, seed, resume,
          save_steps, lora_r, lora_alpha, lora_dropout, revision, quiet):
    """Fine-tune a compact model on your transcripts and reference summaries.

    The output folder is a Hugging Face checkpoint (LoRA merged) that `sumctl export t5|llama`
    takes directly, plus training/report.json (eval ROUGE before and after, tokens per second) and
    training/loss.png. A LoRA run also keeps the unmerged adapter (peft safetensors) in adapter/.

    \b
    Examples:
      sumctl train collect --endpoint https://api.openai.com/v1 --model gpt-4o \\
          --data transcripts.jsonl --out train.jsonl
      sumctl train --base google/flan-t5-large --data train.jsonl --eval val.jsonl --out ft-t5
      sumctl export t5 --model ft-t5 --out bundles/ft-t5-int8
    """
    if ctx.invoked_subcommand is not None:
        return
    missing = [name for name, value in (("--base", base), ("--data", data), ("--out", out)) if not value]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (see `sumctl train --help`)")
    from sumctl.exporters.train.run import TrainConfig, summary_lines
    from sumctl.exporters.train.run import train as run_training

    config = TrainConfig(base=base, data=data, out=out, eval_data=eval_data, lora=lora, epochs=epochs,
                         max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
                         max_input_tokens=max_input_tokens, lengths=lengths, default_length=default_length,
                         device=device, precision=precision, group_by_length=group_by_length, seed=seed, resume=resume, lora_r=lora_r, lora_alpha=lora_alpha,
                         lora_dropout=lora_dropout, save_steps=save_steps, long_inputs=long_inputs,
                         drop_overlong=drop_overlong, revision=revision, progress=not quiet)
    from sumctl.cli.render import track

    result = run_training(config, track=None if quiet else track)
    for line in summary_lines(result):
        click.echo(line)


@train_command.command("collect")
@click.option("--endpoint", required=True, metavar="URL",
              help="An OpenAI-compatible API, e.g. https://api.openai.com/v1 or a local server.")
@click.option("--model", "-m", "model_name", required=True, metavar="NAME", help="The model name to ask.")
@click.option("--data", "-d", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="TRANSCRIPTS.jsonl", help="One {id, transcript} a line (text, or a file path "
              "relative to the JSONL).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="TRAIN.jsonl", help="The training JSONL to write.")
@click.option("--lengths", default=_ALL_LENGTHS, show_default=True, metavar="LIST",
              help="One reference per transcript per length (ids get a /length suffix when several).")
@click.option("--api-key-env", default=DEFAULT_KEY_ENV, show_default=True, metavar="VAR",
              help="Environment variable holding the API key (never written anywhere).")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Response cache, shared with `sumctl bench`. Default: `cloud-cache` in sumctl's "
                   "data folder.")
@click.option("--context-tokens", type=click.IntRange(min=256), default=DEFAULT_CONTEXT_TOKENS,
              show_default=True, help="The endpoint model's context; longer transcripts are chapterized.")
@click.option("--retries", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def collect_command(endpoint, model_name, data, out, lengths, api_key_env, concurrency, cache,
                    context_tokens, retries, seed, force):
    """Reference summaries from a cloud (or any OpenAI-compatible) model -> TRAIN.jsonl."""
    from tqdm.auto import tqdm

    from sumctl.exporters.train.collect import collect
    from sumctl.runtime.backends.openai_compat import api_key_from_env

    bars = []  # made once the inputs are checked, so that an error stays one line

    def start(total: int) -> None:
        bars.append(tqdm(desc="collect", unit="summary", total=total))

    try:
        result = collect(data, out, endpoint=endpoint, model=model_name, lengths=lengths,
                         api_key=api_key_from_env(api_key_env), concurrency=concurrency,
                         cache_dir=cache, context_tokens=context_tokens, retries=retries, seed=seed,
                         force=force, on_start=start, on_done=lambda _: bars[0].update(1))
    finally:
        for bar in bars:
            bar.close()
    click.echo(f"Wrote {result.written} references for {result.records} transcripts to {result.out} "
               f"({result.calls_made} API calls, {result.cache_hits} from the cache"
               + (f", {result.empty} empty answers left out" if result.empty else "") + ")")


def register(cli: click.Group) -> None:
    cli.add_command(train_command)
