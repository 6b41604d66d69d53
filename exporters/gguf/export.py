"""`sumctl export llama`: a LLaMA-family checkpoint (or a peft LoRA adapter folder, merged
into its base) to a verified GGUF bundle. The F16 file is written by writer.py, checked against
transformers and quantized by llama.cpp (verify.py); the bundle's manifest comes from the one
GGUF manifest builder of runtime/bundle/configs.py."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sumctl.runtime.errors import first_line
from sumctl.runtime.machine import usable_cores
from sumctl.runtime.bundle.configs import gguf_manifest
from sumctl.runtime.bundle import Bundle, package_versions, write_manifest
from sumctl.exporters.base import Progress, SilentProgress, check_out_dir, export_bundle
from sumctl.exporters.errors import ExportError
from sumctl.exporters.gguf.lora import ADAPTER_CONFIG
from sumctl.exporters.gguf.verify import (MAX_ABS_DIFF_FRACTION, MIN_TOP1_AGREEMENT, QUANT_TYPES,
                                          compare_logits, comparison_summary, quantize_gguf,
                                          tensor_types, verify_gguf)
from sumctl.exporters.gguf.writer import context_length, write_gguf

from sumctl.exporters.checkpoint import (HUB_PATTERNS, PICKLE_WEIGHTS, check_weights, require_architecture,
                                         resolve_checkpoint, source_info)


# Mistral is the llama graph plus a sliding window; see context_length for how the window is kept.
LLAMA_MODEL_TYPES = ("llama", "mistral")


# --------------------------------------------------------------------------------------------
# The export


def export_llama(model: str, out: str | os.PathLike, *, quant: str = "Q4_K_M",
                 flash_attention: bool = False, revision: str | None = None,
                 allow_pickle: bool = False, threads: int | None = None,
                 progress: Progress | None = None) -> Bundle:
    """Export a LLaMA-family checkpoint to a verified GGUF bundle at `out`.

    Args:
        model: a checkpoint folder or hub id; a peft LoRA adapter folder is merged into its
            base first.
        out: the bundle folder to create; it must be absent or empty.
        quant: one of QUANT_TYPES, by llama.cpp's own quantizer ("F16": none).
        flash_attention: the bundle reads with llama.cpp's fused attention (GgufConfig), and is
            verified with it.
        revision, allow_pickle: as for export_t5.
        threads: llama.cpp's threads for verification and quantization (default: all cores).
        progress: reports each step (the CLI renders it); None: silent.
    """
    if quant not in QUANT_TYPES:
        raise ExportError(f"unknown quantization {quant!r} (use one of {', '.join(QUANT_TYPES)})")
    out = check_out_dir(out)
    threads = threads or usable_cores()
    steps = progress or SilentProgress()
    with steps.step("Resolving the checkpoint"):
        source = _locate(model, revision=revision, allow_pickle=allow_pickle)
    with steps.step("Loading it in transformers" + (" and merging the LoRA adapter"
                                                    if source.adapter else "")):
        hf_model, tokenizer = _load_hf(source, allow_pickle=allow_pickle)

    references: dict = {}  # transformers' logits, computed once for both comparisons

    def build(work: Path) -> Path:
        f16 = work / "model-F16.gguf"
        with steps.step("Converting to GGUF F16 with gguf-py"):
            vocab = write_gguf(hf_model, source.tokenizer_dir, f16, name=source.display_name)
        with steps.step("Verifying the F16 GGUF in llama.cpp against transformers"):
            verification = verify_gguf(hf_model, tokenizer, f16, threads=threads, references=references,
                                       flash_attention=flash_attention)
            _enforce(verification, f16, source.display_name)
        final = f16
        if quant != "F16":
            final = work / f"model-{quant}.gguf"
            with steps.step(f"Quantizing to {quant} with llama.cpp"):
                quantize_gguf(f16, final, quant, threads=threads)
            with steps.step(f"Measuring {quant} against transformers"):
                verification["quantized"] = comparison_summary(
                    compare_logits(hf_model, tokenizer, final, threads=threads, references=references,
                                   flash_attention=flash_attention))
            f16.unlink()
        with steps.step("Writing the manifest"):
            write_manifest(work, _manifest(final, quant, hf_model.config, source, vocab, verification,
                                           name=out.name, flash_attention=flash_attention))
        return work

    return export_bundle(out, build)


def _manifest(final: Path, quant: str, config, source: "_Source", vocab, verification: dict, *,
              name: str, flash_attention: bool):
    return gguf_manifest(
        model_file=final.name, quantization=quant, n_ctx_train=context_length(config),
        source=source.info(), name=name, label=f"{source.display_name} {quant} GGUF",
        chat_template=vocab.chat_template,
        tokenizer={"model": vocab.tokenizer_model, "pre": vocab.pre, "size": vocab.size},
        verification=verification, source_model_type=config.model_type,
        tensor_types=tensor_types(final), flash_attention=True if flash_attention else None,
        versions=package_versions("torch", "transformers", "gguf", "llama-cpp-python", "peft"))


def _enforce(verification: dict, path: Path, what: str) -> None:
    problems = []
    if verification["tokenizer_agreement"] < 1.0:
        problems.append(f"llama.cpp tokenizes {verification['tokenizer_mismatches']} of the "
                        f"{verification['prompts']} check prompts differently from transformers")
    if verification["top1_agreement"] < MIN_TOP1_AGREEMENT:
        problems.append(f"top-1 agreement {verification['top1_agreement']:.3f} < {MIN_TOP1_AGREEMENT}")
    limit = MAX_ABS_DIFF_FRACTION * verification["logit_scale"]
    if not verification["max_abs_diff"] <= limit:  # `not <=` also catches NaN
        problems.append(f"max |logit diff| {verification['max_abs_diff']:.3g} > {limit:.3g}")
    if problems:
        raise ExportError(f"{what}: the GGUF conversion does not match transformers ("
                          + "; ".join(problems) + "); nothing was written. Please report this "
                          "with the checkpoint's config.json")


# --------------------------------------------------------------------------------------------
# Finding and loading the source


@dataclass
class _Source:
    spec: str
    path: Path  # the checkpoint folder, or the adapter folder
    revision: str | None
    adapter: dict | None = None  # adapter_config.json
    base_spec: str | None = None
    base_path: Path | None = None

    @property
    def model_path(self) -> Path:
        return self.base_path if self.adapter else self.path

    @property
    def tokenizer_dir(self) -> Path:
        if self.adapter and any((self.path / f).is_file() for f in ("tokenizer.json", "tokenizer.model")):
            return self.path
        return self.model_path

    @property
    def display_name(self) -> str:
        return Path(self.spec.rstrip("/")).name or self.spec

    def info(self) -> dict:
        info = source_info(self.spec, self.path, self.revision)
        if self.adapter:
            info["adapter"] = {k: self.adapter.get(k) for k in
                               ("peft_type", "r", "lora_alpha", "target_modules", "base_model_name_or_path")}
            info["base"] = source_info(self.base_spec, self.base_path, self.adapter.get("revision"))
        return info


def _locate(model: str, *, revision: str | None, allow_pickle: bool) -> _Source:
    path = Path(model).expanduser()
    if not path.exists() and _looks_like_hub_id(model):
        path = _download(model, revision=revision, allow_pickle=allow_pickle)
    if path.is_dir() and (path / ADAPTER_CONFIG).is_file():
        check_weights(path, allow_pickle=allow_pickle)
        try:
            adapter = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ExportError(f"{path / ADAPTER_CONFIG}: unreadable ({e})") from None
        base_spec = adapter.get("base_model_name_or_path")
        if not base_spec:
            raise ExportError(f"{path / ADAPTER_CONFIG}: no base_model_name_or_path; "
                              "set it to the base checkpoint's folder or hub id")
        base_path = resolve_checkpoint(base_spec, revision=adapter.get("revision"), allow_pickle=allow_pickle)
        require_architecture(base_path, LLAMA_MODEL_TYPES, "llama")
        return _Source(model, path, revision, adapter, base_spec, base_path)
    resolved = resolve_checkpoint(str(path) if path.exists() else model, revision=revision,
                                  allow_pickle=allow_pickle)
    require_architecture(resolved, LLAMA_MODEL_TYPES, "llama")
    return _Source(model, resolved, revision)


def _looks_like_hub_id(model: str) -> bool:
    return not model.startswith((".", "/", "~")) and model.count("/") == 1


def _download(model: str, *, revision: str | None, allow_pickle: bool) -> Path:
    # Same file filter as checkpoint.resolve_checkpoint, but an adapter repo has no config.json,
    # so the folder is inspected here before either kind is vetted.
    try:
        from huggingface_hub import snapshot_download

        patterns = HUB_PATTERNS + (list(PICKLE_WEIGHTS) if allow_pickle else [])
        return Path(snapshot_download(model, revision=revision, allow_patterns=patterns))
    except Exception as e:
        raise ExportError(f"{model}: not a local folder, and the hub download failed "
                          f"({type(e).__name__}: {first_line(e, 160)})") from None


def _load_hf(source: _Source, *, allow_pickle: bool):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(path: Path):
        safe = any(path.glob("*.safetensors"))
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, use_safetensors=safe or not allow_pickle,
            trust_remote_code=False, low_cpu_mem_usage=True)

    try:
        model = load(source.model_path)
        if source.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, source.path, is_trainable=False)
            model = model.merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(source.tokenizer_dir, trust_remote_code=False)
    except ExportError:
        raise
    except Exception as e:
        what = "the LoRA adapter" if source.adapter else "the checkpoint"
        raise ExportError(f"{source.path}: transformers could not load {what} "
                          f"({type(e).__name__}: {first_line(e, 200)})") from None
    model.eval()
    return model, tokenizer
