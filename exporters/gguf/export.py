"""`sumctl export llama`: a LLaMA-family checkpoint (or a LoRA adapter on one) -> a GGUF bundle.

The checkpoint is loaded in transformers (a LoRA adapter is merged into its base first), written
as GGUF F16 with gguf-py, checked against transformers by running the F16 file in llama.cpp,
and only then quantized by llama.cpp's own quantizer. A conversion that disagrees with its
source fails the export instead of shipping.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# llama.cpp is imported through the runtime, which sets how its threads wait.
from sumctl.runtime.backends.gguf import cpu_count, import_llama_cpp
from sumctl.runtime.bundle.configs import gguf_manifest
from sumctl.runtime.bundle import Bundle, package_versions, write_manifest
from sumctl.exporters.base import Progress, SilentProgress, check_out_dir, export_bundle
from sumctl.exporters.errors import ExportError

from sumctl.exporters.checkpoint import (HUB_PATTERNS, PICKLE_WEIGHTS, check_weights, require_architecture,
                         resolve_checkpoint, source_info)
from sumctl.exporters.gguf.child import run_in_child

# Mistral is the llama graph plus a sliding window; see _context_length for how the window is kept.
SUPPORTED_MODEL_TYPES = ("llama", "mistral")
QUANT_TYPES = ("Q4_K_M", "Q5_K_M", "Q8_0", "F16")
ADAPTER_CONFIG = "adapter_config.json"

# Verification thresholds. F16 rounding moves logits by a few hundredths and flips the top
# token only where two candidates are nearly tied; a wrong permutation, a swapped tensor or a
# bad vocab moves them by whole units and breaks most top-1 agreements.
MIN_TOP1_AGREEMENT = 0.95
MAX_ABS_DIFF_FRACTION = 0.1  # of the largest |logit| transformers produced
# A LoRA GGUF's effect on llama.cpp's logits may differ from the merged model's by at most this
# share of it (mean |difference| / mean |effect|), on an F16 base. F16 rounding leaves a few
# percent; unpermuted q/k rows or a wrong scale leave 50% or more.
MAX_ADAPTER_EFFECT_ERROR = 0.25
# ...unless the adapter's effect is so small that what is left is F16 rounding (mean |logit
# difference|), where the relative error means nothing and a wrong layout could do no harm.
ADAPTER_NOISE_FLOOR = 0.02

VERIFY_PROMPTS = (
    "Alice: Let's start with the budget. We are about ten percent over for the quarter.",
    "The team agreed to move the product launch to March, and Bob will update the roadmap.",
    "#Person1#: Did you finish the report?\n#Person2#: Not yet, I need two more days.",
    "Summarize the following meeting transcript in one or two sentences.\n\nCarol: The new "
    "onboarding flow cut support tickets by a third. Dan: Then we ship it to everyone on Monday.",
)

log = logging.getLogger(__name__)


@dataclass
class VocabInfo:
    tokenizer_model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    pre: str
    size: int
    chat_template: bool


# --------------------------------------------------------------------------------------------
# The export


def export_llama(model: str, out: str | os.PathLike, *, quant: str = "Q4_K_M",
                 revision: str | None = None, allow_pickle: bool = False,
                 threads: int | None = None, progress: Progress | None = None) -> Bundle:
    """Export a LLaMA-family checkpoint to a verified GGUF bundle at `out`.

    Args:
        model: a checkpoint folder or hub id; a peft LoRA adapter folder is merged into its
            base first.
        out: the bundle folder to create; it must be absent or empty.
        quant: one of QUANT_TYPES, by llama.cpp's own quantizer ("F16": none).
        revision, allow_pickle: as for export_t5.
        threads: llama.cpp's threads for verification and quantization (default: all cores).
        progress: reports each step (the CLI renders it); None: silent.
    """
    if quant not in QUANT_TYPES:
        raise ExportError(f"unknown quantization {quant!r} (use one of {', '.join(QUANT_TYPES)})")
    out = check_out_dir(out)
    threads = threads or cpu_count()
    steps = progress or SilentProgress()
    with steps.step("Resolving the checkpoint"):
        source = _locate(model, revision=revision, allow_pickle=allow_pickle)
    with steps.step("Loading it in transformers" + (" and merging the LoRA adapter"
                                                    if source.adapter else "")):
        hf_model, tokenizer = _load_hf(source, allow_pickle=allow_pickle)

    def build(work: Path) -> Path:
        f16 = work / "model-F16.gguf"
        with steps.step("Converting to GGUF F16 with gguf-py"):
            vocab = write_gguf(hf_model, source.tokenizer_dir, f16, name=source.display_name)
        with steps.step("Verifying the F16 GGUF in llama.cpp against transformers"):
            verification = verify_gguf(hf_model, tokenizer, f16, threads=threads)
            _enforce(verification, f16, source.display_name)
        final = f16
        if quant != "F16":
            final = work / f"model-{quant}.gguf"
            with steps.step(f"Quantizing to {quant} with llama.cpp"):
                quantize_gguf(f16, final, quant, threads=threads)
            with steps.step(f"Measuring {quant} against transformers"):
                verification["quantized"] = _summary(
                    compare_logits(hf_model, tokenizer, final, threads=threads))
            f16.unlink()
        with steps.step("Writing the manifest"):
            config = hf_model.config
            manifest = gguf_manifest(
                model_file=final.name, quantization=quant, n_ctx_train=_context_length(config),
                source=source.info(), name=out.name, label=f"{source.display_name} {quant} GGUF",
                chat_template=vocab.chat_template,
                tokenizer={"model": vocab.tokenizer_model, "pre": vocab.pre, "size": vocab.size},
                verification=verification, source_model_type=config.model_type,
                tensor_types=tensor_types(final),
                versions=package_versions("torch", "transformers", "gguf", "llama-cpp-python",
                                          "peft"))
            write_manifest(work, manifest)
        return work

    return export_bundle(out, build)


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
        require_architecture(base_path, SUPPORTED_MODEL_TYPES, "llama")
        return _Source(model, path, revision, adapter, base_spec, base_path)
    resolved = resolve_checkpoint(str(path) if path.exists() else model, revision=revision,
                                  allow_pickle=allow_pickle)
    require_architecture(resolved, SUPPORTED_MODEL_TYPES, "llama")
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
                          f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None


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
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    model.eval()
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# HF -> GGUF F16


def write_gguf(model, tokenizer_dir: Path, path: Path, *, name: str = "") -> VocabInfo:
    """Write an HF Llama/Mistral model (already in memory, fp32) as GGUF F16."""
    import gguf
    import numpy as np

    config = model.config
    _check_config(config)
    n_head = config.num_attention_heads
    n_head_kv = getattr(config, "num_key_value_heads", None) or n_head
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    n_layers = config.num_hidden_layers

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name or config.model_type)
    writer.add_context_length(_context_length(config))
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    scaling = _rope_scaling(config)
    if scaling is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(scaling)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    vocab = _add_vocab(writer, tokenizer_dir, config.vocab_size)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(f"{hf_name}: a tensor the llama GGUF layout has no place for "
                              f"(model_type {config.model_type!r}); this checkpoint is not plain llama")
        data = tensor.detach().to("cpu").float().numpy()
        # HF keeps each head's rotary pairs as two halves; llama.cpp's rope (the original
        # Meta layout) wants them interleaved, so the q and k rows are reordered per head.
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = interleave_rope_rows(data, n_head)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = interleave_rope_rows(data, n_head_kv)
        data = data.astype(np.float16 if data.ndim > 1 else np.float32)
        if not np.isfinite(data).all():
            raise ExportError(f"{hf_name}: values outside the float16 range (or NaN); this "
                              "checkpoint cannot be stored as GGUF F16")
        writer.add_tensor(gguf_name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return vocab


def interleave_rope_rows(w, n_head: int):
    rows = w.shape[0]
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2)
             .reshape(w.shape))


# --------------------------------------------------------------------------------------------
# A peft LoRA adapter -> a llama.cpp LoRA GGUF, applied to the base GGUF at load time

LORA_SUFFIXES = {"lora_A": "lora_a", "lora_B": "lora_b"}
PEFT_PREFIX = "base_model.model."


def write_lora_gguf(adapter_dir: Path, config, path: Path, *, name: str = "") -> dict:
    """Write the peft LoRA adapter in `adapter_dir` (safetensors) for a base whose HF config is
    `config`, as a llama.cpp LoRA GGUF (general.type = adapter) with F16 A and B matrices.

    llama.cpp adds scale * B(Ax) to each adapted weight's output, scale = alpha / r, as peft
    does; A and B keep peft's shapes. The base GGUF's q and k rows are in the interleaved rope
    layout (write_gguf), so B's rows, the output side, are reordered the same way; A, the input
    side, is not. Returns what the manifest records about the adapter."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir, path = Path(adapter_dir), Path(path)
    settings = _read_json(adapter_dir / ADAPTER_CONFIG)
    weights = adapter_dir / "adapter_model.safetensors"
    if settings is None or not weights.is_file():
        raise ExportError(f"{adapter_dir}: not a peft LoRA adapter folder (needs {ADAPTER_CONFIG} "
                          "and adapter_model.safetensors, as `sumctl train` writes in OUT/adapter)")
    unsupported = [k for k in ("use_dora", "use_rslora") if settings.get(k)]
    if settings.get("peft_type") != "LORA" or unsupported:
        raise ExportError(f"{adapter_dir / ADAPTER_CONFIG}: a {settings.get('peft_type')} adapter"
                          f"{' with ' + ', '.join(unsupported) if unsupported else ''}; llama.cpp "
                          "applies plain LoRA only (merge it instead: sumctl export llama --model "
                          f"{adapter_dir})")
    _check_config(config)
    n_head = config.num_attention_heads
    n_head_kv = getattr(config, "num_key_value_heads", None) or n_head
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(settings["lora_alpha"]))
    writer.add_name(name or adapter_dir.name)
    adapted = set()
    for peft_name, data in sorted(load_file(str(weights)).items()):
        module, _, kind = peft_name.removeprefix(PEFT_PREFIX).rpartition(".lora_")
        kind = "lora_" + kind.removesuffix(".weight")
        base_name = f"{module}.weight"
        gguf_name = names.get_name(base_name, try_suffixes=(".weight",))
        if kind not in LORA_SUFFIXES or gguf_name is None:
            raise ExportError(f"{weights}: tensor {peft_name!r} has no place in a llama LoRA GGUF "
                              "(only lora_A/lora_B of the llama linear layers do)")
        data = data.astype(np.float32)
        if kind == "lora_B" and module.endswith("q_proj"):
            data = interleave_rope_rows(data, n_head)
        elif kind == "lora_B" and module.endswith("k_proj"):
            data = interleave_rope_rows(data, n_head_kv)
        data = data.astype(np.float16)
        if not np.isfinite(data).all():
            raise ExportError(f"{weights}: {peft_name} has values outside the float16 range")
        writer.add_tensor(f"{gguf_name}.{LORA_SUFFIXES[kind]}", data)
        adapted.add(gguf_name)
    if not adapted:
        raise ExportError(f"{weights}: holds no LoRA tensors")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"format": "llama.cpp LoRA GGUF, F16", "r": settings.get("r"),
            "lora_alpha": settings["lora_alpha"], "adapted_tensors": len(adapted),
            "target_modules": settings.get("target_modules")}


def verify_lora_gguf(base_model, merged_model, tokenizer, base_gguf: Path, lora_gguf: Path, *,
                     threads: int | None = None) -> dict:
    """What the adapter changes, in llama.cpp and in transformers, compared.

    llama.cpp runs the base as GGUF F16 with the adapter and without it; transformers runs the
    merged model and the base. The adapter's effect on the logits is the difference of each
    pair, and the two must match: a wrongly laid-out adapter (q/k rows not in the rope layout, a
    wrong scale) shows as a large error. The base is F16, not the quantized file the bundle
    runs, because a quantized base's rounding (it quantizes activations too) would drown a small
    adapter's effect; the adapter applies to either the same way."""
    import numpy as np

    items = _check_items(tokenizer, VERIFY_PROMPTS)
    with_adapter = _llama_logits(base_gguf, items, threads=threads, lora=lora_gguf)
    without = _llama_logits(base_gguf, items, threads=threads)
    error = effect = 0.0
    logits = 0
    agree_with = agree_without = positions = mismatches = 0
    for i, item in enumerate(items):
        ids = item["ids"]
        if with_adapter[f"tokens_{i}"].tolist() != list(ids):
            mismatches += 1
        merged, base = _hf_logits(merged_model, ids), _hf_logits(base_model, ids)
        got_with, got_without = with_adapter[f"logits_{i}"], without[f"logits_{i}"]
        error += float(np.abs((got_with - got_without) - (merged - base)).sum())
        effect += float(np.abs(merged - base).sum())
        logits += merged.size
        agree_with += int((got_with.argmax(-1) == merged.argmax(-1)).sum())
        agree_without += int((got_without.argmax(-1) == base.argmax(-1)).sum())
        positions += len(ids)
    result = {"method": "next-token logits at every position: the adapter's effect in llama.cpp "
                        "(base GGUF with it minus without it) against its effect in transformers "
                        "fp32 (merged model minus base), same token ids",
              "effect_mean_abs": round(effect / max(logits, 1), 6),
              "error_mean_abs": round(error / max(logits, 1), 6),
              "effect_relative_error": round(error / effect, 6) if effect > 0 else None,
              "top1_agreement_with_adapter": round(agree_with / positions, 6),
              "top1_agreement_base": round(agree_without / positions, 6),
              "tokenizer_mismatches": mismatches,
              "max_effect_relative_error": MAX_ADAPTER_EFFECT_ERROR}
    problems = []
    if effect == 0:
        problems.append("the adapter changes nothing (all of B is zero: an untrained adapter?)")
    elif not (error / effect <= MAX_ADAPTER_EFFECT_ERROR
              or error / logits <= ADAPTER_NOISE_FLOOR):
        problems.append(f"its effect on the logits is {error / effect:.2f} off, relative to the "
                        f"merged model's ({MAX_ADAPTER_EFFECT_ERROR} allowed)")
    if agree_with < agree_without - 0.05 * positions:
        problems.append(f"top-1 agreement {agree_with / positions:.3f} with the adapter, "
                        f"{agree_without / positions:.3f} for the base alone")
    if mismatches:
        problems.append(f"llama.cpp tokenizes {mismatches} check prompt(s) differently")
    if problems:
        raise ExportError(f"{lora_gguf}: llama.cpp with this adapter does not match the merged "
                          "model (" + "; ".join(problems) + "); nothing was written. Please report "
                          "this with the adapter's adapter_config.json")
    return result



def export_lora_gguf(adapter_dir: str | os.PathLike, base_hf: str | os.PathLike, out: str | os.PathLike,
                     *, threads: int | None = None) -> dict:
    """The adapter in `adapter_dir` (trained on the HF checkpoint `base_hf`) as a LoRA GGUF at
    `out`, verified in llama.cpp on the base written as GGUF F16. Written beside `out` and
    renamed into place only once verified."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial")

    def load():
        return AutoModelForCausalLM.from_pretrained(base_hf, dtype=torch.float32, use_safetensors=True,
                                                    trust_remote_code=False).eval()

    base = load()
    work = Path(tempfile.mkdtemp(prefix="sumctl-lora-check-"))
    try:
        info = write_lora_gguf(Path(adapter_dir), base.config, tmp, name=out.stem)
        base_f16 = work / "base-F16.gguf"
        write_gguf(base, Path(base_hf), base_f16)
        merged = PeftModel.from_pretrained(load(), adapter_dir, is_trainable=False).merge_and_unload()
        merged.eval()
        tokenizer = AutoTokenizer.from_pretrained(base_hf, trust_remote_code=False)
        try:
            info["verification"] = verify_lora_gguf(base, merged, tokenizer, base_f16, tmp,
                                                    threads=threads or cpu_count())
        except ExportError as e:  # name the file the user asked for, not our temporary
            raise ExportError(str(e).replace(str(tmp), str(out))) from None
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    return info


def _check_config(config) -> None:
    act = getattr(config, "hidden_act", "silu")
    if act != "silu":
        raise ExportError(f"hidden_act {act!r} is not supported (llama GGUF uses SiLU)")
    _rope_scaling(config)


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None)  # newer transformers
    if isinstance(params, dict) and "rope_theta" in params:
        return params["rope_theta"]
    return getattr(config, "rope_theta", 10000.0)


def _rope_scaling(config) -> float | None:
    scaling = getattr(config, "rope_scaling", None) or getattr(config, "rope_parameters", None)
    if not scaling:
        return None
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    if kind == "default":
        return None
    if kind == "linear":
        return float(scaling["factor"])
    raise ExportError(f"rope_scaling type {kind!r} is not supported yet (supported: none, linear)")


def _context_length(config) -> int:
    n_ctx = int(config.max_position_embeddings)
    window = getattr(config, "sliding_window", None)
    # llama.cpp runs Mistral as plain llama (full attention). Within one window the two are
    # identical, so the window becomes the context length rather than a silent difference.
    if getattr(config, "model_type", "") == "mistral" and window:
        n_ctx = min(n_ctx, int(window))
    return n_ctx


# --------------------------------------------------------------------------------------------
# Vocabulary


def _add_vocab(writer, tokenizer_dir: Path, vocab_size: int) -> VocabInfo:
    import gguf
    from gguf.vocab import BpeVocab, LlamaHfVocab, SentencePieceVocab

    tj = _read_json(tokenizer_dir / "tokenizer.json")
    model = (tj or {}).get("model", {})
    kind = None
    if model.get("type") == "BPE" and not model.get("byte_fallback", False):
        if (tj.get("decoder") or {}).get("type") != "ByteLevel":
            raise ExportError(f"{tokenizer_dir / 'tokenizer.json'}: a BPE tokenizer without a "
                              "ByteLevel decoder is not supported")
        vocab, kind, pre = BpeVocab(tokenizer_dir), "gpt2", _bpe_pre_tokenizer(tj, tokenizer_dir)
    elif _is_sentencepiece(tokenizer_dir / "tokenizer.model"):
        vocab, kind, pre = SentencePieceVocab(tokenizer_dir), "llama", "default"
    elif model.get("type") == "BPE" and model.get("byte_fallback"):
        _check_byte_tokens(tj, tokenizer_dir / "tokenizer.json")
        vocab, kind, pre = LlamaHfVocab(tokenizer_dir), "llama", "default"
    if kind is None:
        found = model.get("type") or ("none" if tj is None else "unknown")
        raise ExportError(f"{tokenizer_dir}: tokenizer type {found!r} is not supported (need a "
                          "byte-level BPE tokenizer.json or a SentencePiece tokenizer.model)")

    tokens, scores, types = [], [], []
    for text, score, toktype in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(toktype)
    if kind == "gpt2" and tj:
        # BpeVocab keeps added tokens that are already in the base vocab (SmolLM's
        # <|im_start|>, <|im_end|>) as NORMAL; llama.cpp would then split them into pieces
        # inside a chat prompt. tokenizer.json says which of them are special.
        for added in tj.get("added_tokens", []):
            i = added.get("id")
            if isinstance(i, int) and i < len(types):
                types[i] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    if len(tokens) > vocab_size:
        raise ExportError(f"{tokenizer_dir}: the tokenizer has {len(tokens)} tokens but the model's "
                          f"embedding has only {vocab_size} rows")
    for i in range(len(tokens), vocab_size):  # embedding rows padded past the tokenizer
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)

    writer.add_tokenizer_model(kind)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    if kind == "llama":
        writer.add_token_scores(scores)
    writer.add_token_types(types)

    special = gguf.SpecialVocab(tokenizer_dir, load_merges=(kind == "gpt2"), n_vocab=len(tokens))
    if "bos" not in special.add_special_token or "eos" not in special.add_special_token:
        add_bos, add_eos = _hf_adds_special(tokenizer_dir)
        special.add_special_token.setdefault("bos", add_bos)
        special.add_special_token.setdefault("eos", add_eos)
    special.add_to_gguf(writer, quiet=True)
    return VocabInfo(kind, pre, len(tokens), bool(special.chat_template))


def _check_byte_tokens(tj: dict, where: Path) -> None:
    """A byte-fallback BPE becomes a llama (SentencePiece-style) vocabulary in GGUF, and
    llama.cpp then looks up `<0x00>`...`<0xFF>` for every byte it cannot match: a vocabulary
    without them aborts llama.cpp (std::out_of_range in byte_to_token). transformers' own GGUF
    import writes exactly such a tokenizer.json for byte-level models (SmolLM2, GPT-2)."""
    vocab = (tj.get("model") or {}).get("vocab") or {}
    present = set(vocab) if isinstance(vocab, dict) else set()
    present.update(t.get("content") for t in tj.get("added_tokens", []) if isinstance(t, dict))
    missing = [b for b in range(256) if f"<0x{b:02X}>" not in present]
    if not missing:
        return
    byte_level = (tj.get("decoder") or {}).get("type") == "ByteLevel"
    fix = ('it is a byte-level BPE (ByteLevel decoder): set "byte_fallback": false in its '
           '"model" section, or take tokenizer.json from the original checkpoint'
           if byte_level else "add the 256 <0xNN> byte tokens, or take tokenizer.json from the "
           "original checkpoint")
    raise ExportError(f"{where}: says byte_fallback but lacks {len(missing)} of the 256 byte "
                      f"tokens (<0x{missing[0]:02X}>...) that llama.cpp needs; {fix}")


# Pre-tokenizers llama.cpp implements, recognised by their tokenizer.json shape.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
                 r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _bpe_pre_tokenizer(tj: dict, where: Path) -> str:
    pre = tj.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    shape = [p.get("type") for p in parts]
    if shape == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt2"
    if (shape == ["Digits", "ByteLevel"] and parts[0].get("individual_digits")
            and parts[1].get("use_regex", True)):
        return "smollm"
    if (shape == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True)
            and (parts[0].get("pattern") or {}).get("Regex") == _LLAMA3_SPLIT):
        return "llama-bpe"
    raise ExportError(f"{where / 'tokenizer.json'}: pre-tokenizer {'+'.join(map(str, shape)) or 'none'} "
                      "has no llama.cpp equivalent sumctl knows (supported: gpt2, smollm, llama-bpe)")


def _is_sentencepiece(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        if f.read(4) == b"GGUF":  # transformers' GGUF import saves the GGUF itself under this name
            return False
    try:
        from sentencepiece import SentencePieceProcessor

        SentencePieceProcessor().LoadFromFile(str(path))
        return True
    except Exception:
        return False


def _hf_adds_special(tokenizer_dir: Path) -> tuple[bool, bool]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    ids = tok("a", add_special_tokens=True).input_ids
    bare = tok("a", add_special_tokens=False).input_ids
    add_bos = tok.bos_token_id is not None and len(ids) > len(bare) and ids[0] == tok.bos_token_id
    add_eos = tok.eos_token_id is not None and len(ids) > len(bare) and ids[-1] == tok.eos_token_id
    return add_bos, add_eos


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: unreadable ({e})") from None


# --------------------------------------------------------------------------------------------
# Verification: llama.cpp on the GGUF against transformers on the source


def compare_logits(hf_model, tokenizer, gguf_path: Path, *, threads: int | None = None,
                   prompts: tuple[str, ...] = VERIFY_PROMPTS) -> dict:
    """Next-token logits at every position of each prompt, from both engines on the same
    token ids; and whether llama.cpp's tokenizer yields those ids. llama.cpp runs in a child
    process (gguf/child.py), so a file it aborts on costs an error line, not sumctl."""
    import numpy as np

    items = _check_items(tokenizer, prompts)
    got_all = _llama_logits(gguf_path, items, threads=threads)
    max_diff, scale, agree, positions, mismatches, sum_diff = 0.0, 0.0, 0, 0, 0, 0.0
    for i, item in enumerate(items):
        ids = item["ids"]
        if got_all[f"tokens_{i}"].tolist() != list(ids):
            mismatches += 1
        ref = _hf_logits(hf_model, ids)
        got = got_all[f"logits_{i}"]
        diff = np.abs(got - ref)
        max_diff = max(max_diff, float(diff.max()))
        sum_diff += float(diff.mean()) * len(ids)
        scale = max(scale, float(np.abs(ref).max()))
        agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
        positions += len(ids)
    return {"prompts": len(items), "positions": positions, "top1_agreement": agree / positions,
            "max_abs_diff": max_diff, "mean_abs_diff": sum_diff / positions,
            "logit_scale": scale, "tokenizer_agreement": (len(items) - mismatches) / len(items),
            "tokenizer_mismatches": mismatches}


def _check_items(tokenizer, prompts: tuple[str, ...]) -> list[dict]:
    """The check prompts as plain text, and the last one inside the chat template too."""
    texts = list(prompts)
    chat = getattr(tokenizer, "chat_template", None)
    if chat:
        texts.append(tokenizer.apply_chat_template(
            [{"role": "user", "content": prompts[-1]}], tokenize=False, add_generation_prompt=True))
    items = []
    for i, text in enumerate(texts):
        is_chat = bool(chat and i == len(prompts))
        items.append({"text": text, "add_bos": not is_chat, "special": is_chat,
                      "ids": tokenizer(text, add_special_tokens=not is_chat).input_ids})
    return items


def _llama_logits(gguf_path: Path, items: list[dict], *, threads: int | None, lora: Path | None = None) -> dict:
    return run_in_child("logits", {"gguf": str(gguf_path), "threads": threads, "texts": items,
                                   "lora": str(lora) if lora else None},
                        subject=lora or gguf_path,
                        doing="loading and running the GGUF" + (" with the adapter" if lora else ""))


def _hf_logits(model, ids: list[int]):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def verify_gguf(hf_model, tokenizer, gguf_path: Path, *, threads: int | None = None) -> dict:
    result = compare_logits(hf_model, tokenizer, gguf_path, threads=threads)
    result = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}
    result.update({"method": "next-token logits at every position, llama.cpp on the F16 GGUF vs "
                             "transformers fp32 on the source, same token ids",
                   "min_top1_agreement": MIN_TOP1_AGREEMENT,
                   "max_abs_diff_fraction": MAX_ABS_DIFF_FRACTION})
    return result


def _summary(result: dict) -> dict:
    return {k: round(result[k], 6) for k in ("top1_agreement", "max_abs_diff", "mean_abs_diff")}


def open_llama(path: Path, *, threads: int | None, n_ctx: int, logits_all: bool = False,
               lora: Path | None = None):
    llama_cpp = import_llama_cpp()

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    try:
        return llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads,
                               n_threads_batch=threads, logits_all=logits_all, seed=0, verbose=False,
                               lora_path=str(lora) if lora else None)
    except (ValueError, RuntimeError) as e:
        raise ExportError(f"{lora or path}: llama.cpp cannot load the GGUF just written ({e})") from None


# --------------------------------------------------------------------------------------------
# Quantization with llama.cpp's quantizer


def quantize_gguf(src: Path, dst: Path, quant: str, *, threads: int | None = None) -> None:
    """llama.cpp's quantizer, in a child process (see compare_logits)."""
    if quant not in QUANT_TYPES or quant == "F16":
        raise ExportError(f"unknown quantization {quant!r} (use one of "
                          f"{', '.join(q for q in QUANT_TYPES if q != 'F16')})")
    run_in_child("quantize", {"src": str(src), "dst": str(dst), "quant": quant,
                              "threads": threads or cpu_count()},
                 subject=src, doing=f"quantizing to {quant}")


def quantize_in_process(src: Path, dst: Path, quant: str, *, threads: int | None = None) -> None:
    llama_cpp = import_llama_cpp()

    ftypes = {"Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
              "Q5_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M,
              "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}
    if quant not in ftypes:
        raise ExportError(f"unknown quantization {quant!r} (use one of {', '.join(ftypes)})")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    params.nthread = threads or cpu_count()
    # The quantizer writes a line per tensor (and one per fallback type, e.g. SmolLM2's 576-wide
    # rows cannot take 256-wide K-quant blocks) straight to stderr; tensor_types() records
    # the outcome in the manifest instead.
    with _stderr_to_devnull():
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        raise ExportError(f"{src}: llama.cpp's quantizer failed for {quant} (code {rc})")


@contextlib.contextmanager
def _stderr_to_devnull():
    """Silence C code writing to file descriptor 2 (Python's sys.stderr is flushed first)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each GGML type a GGUF holds (K-quant mixes fall back per tensor)."""
    import gguf

    counts: dict[str, int] = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))
