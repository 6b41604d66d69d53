"""A peft LoRA adapter -> a llama.cpp LoRA GGUF, applied to the base GGUF at load time, and
verified by its effect on llama.cpp's logits against the merged model's in transformers."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sumctl.runtime.machine import usable_cores
from sumctl.exporters.errors import ExportError
from sumctl.exporters.gguf.verify import VERIFY_PROMPTS, check_items, hf_logits, llama_logits
from sumctl.exporters.gguf.writer import (check_config, head_counts, interleave_rope_rows, read_json,
                                         write_file, write_gguf)


ADAPTER_CONFIG = "adapter_config.json"
# A LoRA GGUF's effect on llama.cpp's logits may differ from the merged model's by at most this
# share of it (mean |difference| / mean |effect|), on an F16 base. F16 rounding leaves a few
# percent; unpermuted q/k rows or a wrong scale leave 50% or more.
MAX_ADAPTER_EFFECT_ERROR = 0.25
# ...unless the adapter's effect is so small that what is left is F16 rounding (mean |logit
# difference|), where the relative error means nothing and a wrong layout could do no harm.
ADAPTER_NOISE_FLOOR = 0.02


# --------------------------------------------------------------------------------------------
# A peft LoRA adapter -> a llama.cpp LoRA GGUF, applied to the base GGUF at load time

LORA_SUFFIXES = {"lora_A": "lora_a", "lora_B": "lora_b"}
PEFT_PREFIX = "base_model.model."
# HF model_type -> llama.cpp architecture of the base GGUF the adapter applies to.
LORA_ARCHITECTURES = {"llama": "llama", "mistral": "llama", "gemma3_text": "gemma3"}


def lora_architecture(config):
    """The gguf MODEL_ARCH of a base model, or why its adapter cannot be written."""
    import gguf

    arch = LORA_ARCHITECTURES.get(getattr(config, "model_type", None))
    if arch is None:
        raise ExportError(f"model_type {config.model_type!r}: no llama.cpp LoRA layout known "
                          f"(supported: {', '.join(LORA_ARCHITECTURES)})")
    if arch == "llama":
        check_config(config)
    return next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)


def write_lora_gguf(adapter_dir: Path, config, path: Path, *, name: str = "") -> dict:
    """Write the peft LoRA adapter in `adapter_dir` (safetensors) for a base whose HF config is
    `config`, as a llama.cpp LoRA GGUF (general.type = adapter) with F16 A and B matrices.

    llama.cpp adds scale * B(Ax) to each adapted weight's output, scale = alpha / r, as peft
    does; A and B keep peft's shapes. A llama base GGUF's q and k rows are in the interleaved
    rope layout (write_gguf), so B's rows, the output side, are reordered the same way; A, the
    input side, is not. Gemma 3's rope is NeoX-style (HF's halves) in llama.cpp, so its rows stay
    as they are; its norm weights (+1 in GGUF) and tied, scaled embedding are no adapter's
    business: peft's all-linear leaves the embedding and the output head alone. Returns what the
    manifest records about the adapter."""
    import gguf

    adapter_dir, path = Path(adapter_dir), Path(path)
    settings, weights = _read_adapter(adapter_dir)
    arch = lora_architecture(config)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(settings["lora_alpha"]))
    writer.add_name(name or adapter_dir.name)
    adapted = _add_lora_tensors(writer, config, weights, arch)
    if not adapted:
        raise ExportError(f"{weights}: holds no LoRA tensors")
    write_file(writer)
    return {"format": "llama.cpp LoRA GGUF, F16", "r": settings.get("r"),
            "lora_alpha": settings["lora_alpha"], "adapted_tensors": len(adapted),
            "target_modules": settings.get("target_modules")}


def _read_adapter(adapter_dir: Path) -> tuple[dict, Path]:
    """A plain peft LoRA adapter's settings and its weights file, or why llama.cpp cannot apply it."""
    settings = read_json(adapter_dir / ADAPTER_CONFIG)
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
    return settings, weights


def _add_lora_tensors(writer, config, weights: Path, arch) -> set[str]:
    """Add each A and B matrix as F16; returns the base tensors the adapter changes."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    n_head, n_head_kv = head_counts(config)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    interleaved = arch == gguf.MODEL_ARCH.LLAMA
    adapted = set()
    for peft_name, data in sorted(load_file(str(weights)).items()):
        module, _, kind = peft_name.removeprefix(PEFT_PREFIX).rpartition(".lora_")
        kind = "lora_" + kind.removesuffix(".weight")
        base_name = f"{module}.weight"
        gguf_name = names.get_name(base_name, try_suffixes=(".weight",))
        if kind not in LORA_SUFFIXES or gguf_name is None:
            raise ExportError(f"{weights}: tensor {peft_name!r} has no place in a "
                              f"{gguf.MODEL_ARCH_NAMES[arch]} LoRA GGUF (only lora_A/lora_B of the "
                              "linear layers do)")
        data = data.astype(np.float32)
        if interleaved and kind == "lora_B" and module.endswith("q_proj"):
            data = interleave_rope_rows(data, n_head)
        elif interleaved and kind == "lora_B" and module.endswith("k_proj"):
            data = interleave_rope_rows(data, n_head_kv)
        data = data.astype(np.float16)
        if not np.isfinite(data).all():
            raise ExportError(f"{weights}: {peft_name} has values outside the float16 range")
        writer.add_tensor(f"{gguf_name}.{LORA_SUFFIXES[kind]}", data)
        adapted.add(gguf_name)
    return adapted


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

    items = check_items(tokenizer, VERIFY_PROMPTS)
    with_adapter = llama_logits(base_gguf, items, threads=threads, lora=lora_gguf)
    without = llama_logits(base_gguf, items, threads=threads)
    error = effect = 0.0
    logits = 0
    agree_with = agree_without = positions = mismatches = 0
    for i, item in enumerate(items):
        ids = item["ids"]
        if with_adapter[f"tokens_{i}"].tolist() != list(ids):
            mismatches += 1
        merged, base = hf_logits(merged_model, ids), hf_logits(base_model, ids)
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
        tokenizer = AutoTokenizer.from_pretrained(base_hf, trust_remote_code=False)
        if base.config.model_type == "gemma3_text":
            write_gemma3_base_gguf(base, tokenizer, base_f16)
        else:
            write_gguf(base, Path(base_hf), base_f16)
        merged = PeftModel.from_pretrained(load(), adapter_dir, is_trainable=False).merge_and_unload()
        merged.eval()
        try:
            info["verification"] = verify_lora_gguf(base, merged, tokenizer, base_f16, tmp,
                                                    threads=threads or usable_cores())
        except ExportError as e:  # name the file the user asked for, not our temporary
            raise ExportError(str(e).replace(str(tmp), str(out))) from None
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    return info


# --------------------------------------------------------------------------------------------
# A Gemma 3 base as GGUF F16, for the adapter's check (write_gguf writes llama only)


def write_gemma3_base_gguf(model, tokenizer, path: Path) -> None:
    """The HF Gemma3ForCausalLM `model` as a gemma3 GGUF F16 that llama.cpp runs as it runs
    Google's: the keys and tensors llama.cpp's converter writes (convert_hf_to_gguf.py, Gemma3Model)."""
    import gguf

    config = model.config
    arch = gguf.MODEL_ARCH.GEMMA3
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name("gemma3 base (adapter check)")
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(float(config.rope_theta))
    writer.add_sliding_window(int(config.sliding_window))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    _add_spm_vocab(writer, tokenizer)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight":  # tied to the embedding
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight",))
        if gguf_name is None:
            raise ExportError(f"{hf_name}: a tensor the gemma3 GGUF layout has no place for")
        data = tensor.detach().float().numpy()
        if hf_name.endswith("norm.weight"):
            data = data + 1.0  # Gemma's RMSNorm scales by (1 + w); llama.cpp's by w
        writer.add_tensor(gguf_name, data.astype("float16" if data.ndim > 1 else "float32"))
    write_file(writer)


def _add_spm_vocab(writer, tokenizer) -> None:
    """A byte-fallback BPE tokenizer as llama.cpp's SentencePiece vocabulary. llama.cpp merges
    the pair whose token scores highest, so each token scores minus the rank of the first merge
    that makes it: the order in which the BPE merges (gguf's LlamaHfVocab gives every token
    -1000, and llama.cpp would then merge left to right)."""
    import json
    import re

    import gguf

    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    first = {}
    for rank, merge in enumerate(model["merges"]):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        first.setdefault(left + right, rank)
    added = {t.content: t.special for t in tokenizer.added_tokens_decoder.values()}
    tokens, scores, types = [], [], []
    for text in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))):
        tokens.append(text)
        if text in added:
            types.append(gguf.TokenType.CONTROL if added[text] else gguf.TokenType.USER_DEFINED)
            scores.append(-1000.0)
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", text):
            types.append(gguf.TokenType.BYTE)
            scores.append(0.0)
        else:
            types.append(gguf.TokenType.NORMAL)
            scores.append(-float(first.get(text, len(model["merges"]))))
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    for key, value in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                       ("unk", tokenizer.unk_token_id), ("pad", tokenizer.pad_token_id)):
        if value is not None:
            getattr(writer, f"add_{key}_token_id")(value)
    bos = tokenizer.bos_token_id
    writer.add_add_bos_token(bos is not None and tokenizer("a").input_ids[:1] == [bos])
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
