"""`sumctl export t5`: a (FLAN-)T5 checkpoint -> an ONNX bundle with a KV cache, int8 by default.

Steps, each shown as it runs (graph.py does 3 and 4, verify.py does 5):
1. load     - vet the checkpoint (safetensors, model_type t5/mt5, no remote code) and load it;
2. export   - optimum exports the encoder, the first-step decoder and the with-past decoder;
   fuse     - each decoder self-attention block becomes one ONNX Runtime MultiHeadAttention
              node (ORT's T5 fusion; `fuse_attention=False` or a block it cannot match keeps
              the graph as exported);
3. quantize - (int8) dynamic int8 with ORTQuantizer, kernels picked for this CPU; (int8-block)
              8-bit weight-only MatMulNBits everywhere; (int4) 4-bit weight-only MatMulNBits
              in the decoder, the FFN output projections and LM head int8;
4. merge    - the two decoders become one graph (an If on `use_cache_branch`) whose weights
              are stored once; the separate decoder files are dropped;
   store    - the graphs' weights move into one page-aligned weights.bin, each distinct
              tensor once (the encoder and decoder share the token embedding);
5. verify   - the bundle, run by sumctl's own runtime, against the PyTorch model on built-in
              inputs: fp32 must reproduce the greedy tokens exactly, int8 records its agreement,
              int4 records it and must reach INT4_MIN_TOKEN_AGREEMENT;
6. hash     - every file's sha256 goes into the manifest, written last.

Quantizing before merging (not after) is deliberate: the two decoders share their weights, so
their int8 copies are identical bytes and the merge keeps one of each; quantizing the merged
graph instead repeats the quantization nodes in both branches (a larger file, measured).

Everything is built in a hidden folder beside `out` and renamed into place at the end, so a
failed or interrupted export leaves nothing that looks like a bundle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import warnings
from pathlib import Path

from sumctl.runtime.bundle import Bundle, Manifest, package_versions, write_manifest
from sumctl.runtime.bundle.configs import (CONFIG, DECODER, ENCODER, T5_INT4_BLOCK_SIZES, T5_QUANTIZATIONS, TOKENIZER,
                                           WEIGHTS, OnnxT5Config, seq2seq_generation)
from sumctl.exporters.base import Progress, SilentProgress, check_out_dir, export_bundle, one_line
from sumctl.exporters.errors import ExportError
from sumctl.exporters.onnx_t5.graph import (INT4_BLOCK_SIZE, INT4_LAYOUT, INT8_BLOCK_LAYOUT, WEIGHTS_FILE,
                                            fuse_decoder_attention,
                                            host_kernel, merge_decoders, move_onnx, quantize_parts,
                                            quantize_parts_blockwise, remove_onnx, store_weights)
from sumctl.exporters.onnx_t5.verify import (INT4_MIN_TOKEN_AGREEMENT, VERIFY_MAX_NEW_TOKENS,
                                             describe_verification, reference_outputs, verify_bundle)
from sumctl.runtime.prompts import default_templates

from sumctl.exporters.checkpoint import require_architecture, resolve_checkpoint, source_info

T5_MODEL_TYPES = ("t5", "mt5")
TASK = "text2text-generation-with-past"
ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model_merged.onnx"


def export_t5(model: str, out: str | os.PathLike, *, quantize: str = "int8", max_input_tokens: int = 512,
              revision: str | None = None, allow_pickle: bool = False, verify: bool = True,
              verify_max_new_tokens: int = VERIFY_MAX_NEW_TOKENS, verify_inputs: int | None = None,
              label: str = "", name: str | None = None, progress: Progress | None = None,
              min_token_agreement: float | None = None, fuse_attention: bool = True,
              int4_block_size: int = INT4_BLOCK_SIZE) -> Bundle:
    """Export a T5 checkpoint to a verified ONNX bundle at `out`.

    Args:
        model: a checkpoint folder, or a hub id (downloaded once; safetensors only unless
            `allow_pickle`).
        out: the bundle folder to create; it must be absent or empty.
        quantize: "int8" (dynamic, for this CPU's kernels), "int8-block" (weight-only, 8-bit
            blocks; each row's activations quantized on its own, so that a document's summary
            does not depend on the documents batched with it), "int4" (weight-only, 4-bit
            blocks; the FFN output projections and the LM head int8) or "none" (fp32).
        max_input_tokens: the transcript budget per chapter.
        revision: the hub revision to download.
        allow_pickle: accept .bin/.pt weights (pickle runs code: only for checkpoints you trust).
        verify: compare the bundle's greedy tokens with PyTorch's on built-in meeting snippets,
            and record the agreement; False (the speed benchmark's random weights) marks the
            bundle unverified.
        verify_max_new_tokens, verify_inputs: how long and how many of those comparisons.
        label, name: shown beside every summary and in `sumctl models list`.
        progress: reports each step (the CLI renders it); None: silent.
        min_token_agreement: the token agreement with PyTorch below which a quantized bundle is
            refused; None: INT4_MIN_TOKEN_AGREEMENT for int4, no floor for int8.
        fuse_attention: fuse the decoder's self-attention blocks (graph.fuse_decoder_attention);
            False keeps optimum's graph, as bundles were before (to measure the fusion).
        int4_block_size: for int4, the rows of a weight column that share one scale (one of
            T5_INT4_BLOCK_SIZES): larger is smaller and decodes faster, smaller keeps more of
            the weights' precision.
    """
    if quantize not in T5_QUANTIZATIONS:
        raise ExportError(f"unknown --quantize {quantize!r} (use {', '.join(T5_QUANTIZATIONS[:-1])} "
                          f"or {T5_QUANTIZATIONS[-1]})")
    if int4_block_size not in T5_INT4_BLOCK_SIZES:
        raise ExportError(f"unknown int4 block size {int4_block_size!r} (use {', '.join(map(str, T5_INT4_BLOCK_SIZES))})")
    if min_token_agreement is None and quantize == "int4":
        min_token_agreement = INT4_MIN_TOKEN_AGREEMENT
    if max_input_tokens < 16:
        raise ExportError(f"--max-input-tokens {max_input_tokens} is too small (use 16 or more)")
    out = check_out_dir(out)
    path = resolve_checkpoint(model, revision=revision, allow_pickle=allow_pickle)
    config = require_architecture(path, T5_MODEL_TYPES, "t5")
    steps = progress or SilentProgress()

    def build(work: Path) -> Path:
        with _quiet_libraries():
            return _export(model, path, config, work, steps, quantize=quantize,
                           max_input_tokens=max_input_tokens, revision=revision, verify=verify,
                           verify_max_new_tokens=verify_max_new_tokens, verify_inputs=verify_inputs,
                           label=label, name=name or out.name, min_token_agreement=min_token_agreement,
                           fuse_attention=fuse_attention, int4_block_size=int4_block_size).path

    return export_bundle(out, build)


def _export(model_id, path, config, work, steps, *, quantize, max_input_tokens, revision, verify,
            verify_max_new_tokens, verify_inputs, label, name, min_token_agreement, fuse_attention,
            int4_block_size) -> Bundle:
    torch, transformers, onnx_export_from_model = _export_libraries()
    staging, bundle_dir = work / "onnx", work / "bundle"
    bundle_dir.mkdir()

    with steps.step(f"Loading {path.name} ({config.get('model_type')})"):
        torch_model, tokenizer = _load(path, transformers, torch)

    references = None
    if verify:
        # Before the export: optimum's tracing leaves the model configured for it.
        with steps.step("Generating reference outputs with PyTorch"):
            references = reference_outputs(torch_model, tokenizer, default_templates()["medium"],
                                           max_new_tokens=verify_max_new_tokens, count=verify_inputs)

    parts = _export_onnx(onnx_export_from_model, torch_model, path, staging, steps)
    attention = _fuse(parts, torch_model.config, steps) if fuse_attention else \
        {"attention": "unfused", "reason": "not asked (fuse_attention=False)"}
    parts, quant_info = _quantize(parts, quantize, work, steps, int4_block_size)
    _assemble(parts, bundle_dir, torch_model, tokenizer, steps)

    manifest = Manifest(
        backend="onnx-t5",
        source=source_info(model_id, path, revision),
        quantization="fp32" if quantize == "none" else quantize,
        max_input_tokens=max_input_tokens,
        prompts=default_templates(),
        generation=t5_generation_defaults(path),
        backend_config=_backend_config(torch_model.config, tokenizer, quant_info, attention),
        name=name,
        label=label,
        versions=package_versions("onnxruntime", "onnx", "optimum", "optimum-onnx", "transformers",
                                  "torch", "tokenizers"),
    )
    bundle = Bundle(bundle_dir, manifest)

    del torch_model
    if references is not None:
        with steps.step("Verifying the bundle against the PyTorch outputs"):
            manifest.verification = verify_bundle(bundle, references, quantized=quantize != "none",
                                                  min_token_agreement=min_token_agreement, model=model_id)
        steps.note(describe_verification(manifest.verification))
    else:
        manifest.verification = {"verified": False, "reason": "skipped at export (verify=False)"}

    with steps.step("Hashing files and writing the manifest"):
        return write_manifest(bundle_dir, manifest)


def _quantize(parts: dict[str, Path], quantize: str, work: Path, steps,
              int4_block_size: int) -> tuple[dict[str, Path], dict]:
    """The export's graphs quantized as asked ("none": as they are), and what was done."""
    if quantize == "none":
        return parts, {}
    kernel = host_kernel()
    if quantize == "int8":
        with steps.step(f"Quantizing to int8 (dynamic, {kernel} kernels)"):
            return quantize_parts(parts, work / "int8", kernel)
    if quantize == "int4":
        with steps.step(f"Quantizing to int4 (weight-only, blocks of {int4_block_size}; FFN outputs and LM head "
                        f"int8, {kernel})"):
            layout = dataclasses.replace(INT4_LAYOUT, block_size=int4_block_size)
            return quantize_parts_blockwise(parts, work / "int4", kernel, layout)
    with steps.step("Quantizing to int8 in blocks (weight-only; each row's activations on its own)"):
        return quantize_parts_blockwise(parts, work / "int8-block", kernel, INT8_BLOCK_LAYOUT)


def _export_libraries():
    """torch, transformers and optimum's exporter, or what to install to get them."""
    try:
        import torch
        import transformers
        from optimum.exporters.onnx import onnx_export_from_model
    except ImportError as e:
        raise ExportError(f"exporting needs the export extra ({e.name} is missing): "
                          "pip install 'sumctl[export]'") from None
    return torch, transformers, onnx_export_from_model


def _fuse(parts: dict[str, Path], config, steps) -> dict:
    with steps.step("Fusing the decoder's self-attention (ONNX Runtime MultiHeadAttention)"):
        attention = fuse_decoder_attention(parts, heads=config.num_heads, head_dim=config.d_kv,
                                           layers=config.num_decoder_layers)
    if attention["attention"] == "unfused":
        steps.note(f"attention left unfused: {attention['reason']}")
    return attention


def _export_onnx(onnx_export_from_model, torch_model, path: Path, staging: Path, steps) -> dict[str, Path]:
    """optimum's three graphs: the encoder, the first-step decoder, the with-past decoder."""
    with steps.step("Exporting to ONNX with a KV cache (optimum)"):
        try:
            onnx_export_from_model(torch_model, staging, task=TASK, no_post_process=True,
                                   do_validation=False, preprocessors=[])
        except Exception as e:
            raise ExportError(f"{path}: ONNX export failed ({one_line(e)})") from None
        parts = {role: staging / f"{role}.onnx" for role in ("encoder_model", "decoder_model",
                                                              "decoder_with_past_model")}
        missing = [p.name for p in parts.values() if not p.is_file()]
        if missing:
            raise ExportError(f"{path}: the ONNX export did not produce {', '.join(missing)}")
    return parts


def _assemble(parts: dict[str, Path], bundle_dir: Path, torch_model, tokenizer, steps) -> None:
    """The bundle's graphs, tokenizer and config, with the weights stored once."""
    with steps.step("Merging the decoders into one graph (one copy of the weights)"):
        merge_decoders(parts["decoder_model"], parts["decoder_with_past_model"], bundle_dir / DECODER_FILE)
        move_onnx(parts["encoder_model"], bundle_dir / ENCODER_FILE)
        for part in parts.values():  # nothing unmerged may linger, even in the scratch folder
            remove_onnx(part)
        tokenizer.save_pretrained(bundle_dir)
        torch_model.config.save_pretrained(bundle_dir)
        (bundle_dir / "generation_config.json").unlink(missing_ok=True)

    with steps.step("Storing the weights once, in one page-aligned file"):
        storage = store_weights(bundle_dir, [ENCODER_FILE, DECODER_FILE])
    steps.note(f"{storage['tensors']} tensors, {storage['shared']} shared by both graphs "
               f"({storage['shared_bytes'] / 2**20:.0f} MB stored once)")


def _load(path: Path, transformers, torch):
    # safetensors unless the user allowed pickle and nothing else exists (checked earlier).
    use_safetensors = any(path.glob("*.safetensors"))
    try:
        model = transformers.AutoModelForSeq2SeqLM.from_pretrained(
            path, use_safetensors=use_safetensors, trust_remote_code=False, torch_dtype=torch.float32)
    except Exception as e:
        raise ExportError(f"{path}: cannot load the model ({one_line(e)})") from None
    model.eval()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False)
    except Exception as e:
        raise ExportError(f"{path}: cannot load the tokenizer ({one_line(e)}); the folder needs "
                          "tokenizer.json or spiece.model") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{path}: the tokenizer has no fast (tokenizer.json) form, which the runtime "
                          "needs; add tokenizer.json to the checkpoint")
    if tokenizer.eos_token_id != model.config.eos_token_id:
        raise ExportError(f"{path}: the tokenizer's </s> id {tokenizer.eos_token_id} differs from the "
                          f"model's eos_token_id {model.config.eos_token_id}")
    return model, tokenizer


def t5_generation_defaults(path: Path | None) -> dict:
    """sumctl's T5 defaults, overridden by what the fine-tune's generation_config.json sets."""
    try:
        source = json.loads((path / "generation_config.json").read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        source = {}
    return seq2seq_generation(source if isinstance(source, dict) else {})


def _backend_config(config, tokenizer, quant_info: dict, attention: dict) -> dict:
    return OnnxT5Config(
        files={ENCODER: ENCODER_FILE, DECODER: DECODER_FILE, WEIGHTS: WEIGHTS_FILE,
               TOKENIZER: "tokenizer.json", CONFIG: "config.json"},
        special_tokens={"pad": config.pad_token_id, "eos": config.eos_token_id,
                        "decoder_start": config.decoder_start_token_id},
        decoder={"merged": True, "cache_branch_input": "use_cache_branch",
                 "layers": config.num_decoder_layers, "heads": config.num_heads,
                 "head_dim": config.d_kv, "vocab_size": config.vocab_size, **attention},
        model_type=config.model_type,
        clean_up_tokenization_spaces=bool(getattr(tokenizer, "clean_up_tokenization_spaces", False)),
        batch_size=4, quantization=quant_info).to_dict()


@contextlib.contextmanager
def _quiet_libraries():
    """The exporters' tracer warnings and info logs would bury the progress display."""
    try:
        import transformers
    except ImportError:  # _export_libraries says what to install
        transformers = None
    if transformers is not None:
        previous = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
    loggers = [logging.getLogger(n) for n in ("optimum", "onnxruntime", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if transformers is not None:
            transformers.logging.set_verbosity(previous)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)

