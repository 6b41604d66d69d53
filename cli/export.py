"""`sumctl export t5|llama`: a fine-tuned checkpoint -> a verified, self-describing bundle."""

from __future__ import annotations

from pathlib import Path

import click

from sumctl.runtime.bundle.configs import (GGUF_QUANT_TYPES, T5_INT4_BLOCK_SIZE, T5_INT4_BLOCK_SIZES, T5_MAX_INPUT_TOKENS,
                                           T5_QUANTIZATIONS)


@click.group()
def export():
    """Export a fine-tuned checkpoint to a bundle the runtime can load.

    \b
    FLAN-T5 (and other T5) checkpoints become int8 ONNX with a KV cache:
      sumctl export t5 --model ./flan-t5-large-ft --out bundles/flan-t5-int8
    LLaMA-family checkpoints (TinyLlama, SmolLM, LiteLlama) become quantized GGUF:
      sumctl export llama --model ./tinyllama-ft --out bundles/tinyllama-q4 --quant Q4_K_M

    Every bundle is checked against its source model before it is written, and the result is
    recorded in its manifest (sumctl.json).
    """


def out_option(f):
    return click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
                        help="Bundle folder to create. It must not exist yet, or be empty.")(f)


def source_options(f):
    f = click.option("--allow-pickle", is_flag=True,
                     help="Accept pickle weights (*.bin). Only for checkpoints you trust: "
                          "pickle can run code.")(f)
    f = click.option("--revision", default=None, help="Hub revision (branch, tag or commit).")(f)
    f = click.option("--model", "-m", required=True, metavar="PATH_OR_ID",
                     help="A Hugging Face checkpoint folder, or a hub id (needs internet).")(f)
    return f


@export.command("t5")
@source_options
@out_option
@click.option("--quantize", type=click.Choice(T5_QUANTIZATIONS), default="int8", show_default=True,
              help="int8: dynamic, with the kernel set picked for this CPU. int8-block: 8-bit "
                   "weights in blocks, each row's activations quantized on its own, so a summary "
                   "does not depend on the documents batched with it. int4: 4-bit weights "
                   "(FFN outputs and LM head int8), refused if it agrees too little with fp32.")
@click.option("--int4-block", type=click.Choice([str(n) for n in T5_INT4_BLOCK_SIZES]),
              default=str(T5_INT4_BLOCK_SIZE), show_default=True,
              help="With --quantize int4: the rows of a weight column that share one scale. Larger "
                   "is smaller and decodes faster (FLAN-T5-Large: 128 about 10% faster per token "
                   "than 32, in the README's t5_speed run); smaller keeps more precision. The "
                   "export's agreement check judges the result either way.")
@click.option("--max-input-tokens", type=click.IntRange(min=16), default=T5_MAX_INPUT_TOKENS, show_default=True,
              help="The model's input budget; longer transcripts are chapterized.")
def export_t5_command(model, revision, allow_pickle, out, quantize, int4_block, max_input_tokens):
    """A T5 / FLAN-T5 checkpoint -> ONNX (KV cache, one decoder weight copy), int8 by default."""
    from sumctl.cli.render import StepDisplay
    from sumctl.exporters.onnx_t5 import export_t5

    with StepDisplay() as steps:
        bundle = export_t5(model, out, quantize=quantize, max_input_tokens=max_input_tokens,
                           revision=revision, allow_pickle=allow_pickle, progress=steps,
                           int4_block_size=int(int4_block))
    click.echo(f"Bundle written to {bundle.path}")


@export.command("llama")
@source_options
@out_option
@click.option("--quant", type=click.Choice(GGUF_QUANT_TYPES), default="Q4_K_M",
              show_default=True, help="llama.cpp quantization type.")
@click.option("--flash-attention", is_flag=True,
              help="Read the model with llama.cpp's fused (flash) attention, and verify it so. "
                   "The embedded default does: with BF16 weights on AVX-512 BF16 it read prompts "
                   "1.4x as fast; on AVX2 it gave a Q4_K_M model +10% prompt and -6% decode speed.")
def export_llama_command(model, revision, allow_pickle, out, quant, flash_attention):
    """A LLaMA-architecture checkpoint (or a LoRA adapter folder) -> quantized GGUF."""
    from sumctl.cli.render import StepDisplay
    from sumctl.exporters.gguf import export_llama

    with StepDisplay() as steps:
        bundle = export_llama(model, out, quant=quant, flash_attention=flash_attention,
                              revision=revision, allow_pickle=allow_pickle, progress=steps)
    click.echo(f"Bundle written to {bundle.path}")


def register(cli: click.Group) -> None:
    cli.add_command(export)
