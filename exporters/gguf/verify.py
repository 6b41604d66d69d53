"""llama.cpp on a GGUF against transformers on its source (next-token logits, top-1 agreement),
and llama.cpp's quantizer. Both run llama.cpp in a child process (child.py), so a file it
aborts on costs an error line, not sumctl."""

from __future__ import annotations

import logging
from pathlib import Path

# llama.cpp is imported through the runtime, which sets how its threads wait.
from sumctl.runtime.backends.gguf import import_llama_cpp
from sumctl.runtime.backends.gguf_merge import quantize
from sumctl.runtime.errors import BundleError
from sumctl.runtime.machine import usable_cores
from sumctl.exporters.errors import ExportError

from sumctl.exporters.gguf.child import run_in_child


from sumctl.runtime.bundle import GGUF_QUANT_TYPES as QUANT_TYPES
# Verification thresholds. F16 rounding moves logits by a few hundredths and flips the top
# token only where two candidates are nearly tied; a wrong permutation, a swapped tensor or a
# bad vocab moves them by whole units and breaks most top-1 agreements.
MIN_TOP1_AGREEMENT = 0.95
MAX_ABS_DIFF_FRACTION = 0.1  # of the largest |logit| transformers produced
VERIFY_PROMPTS = (
    "Alice: Let's start with the budget. We are about ten percent over for the quarter.",
    "The team agreed to move the product launch to March, and Bob will update the roadmap.",
    "#Person1#: Did you finish the report?\n#Person2#: Not yet, I need two more days.",
    "Summarize the following meeting transcript in one or two sentences.\n\nCarol: The new "
    "onboarding flow cut support tickets by a third. Dan: Then we ship it to everyone on Monday.",
)


# --------------------------------------------------------------------------------------------
# Verification: llama.cpp on the GGUF against transformers on the source


def compare_logits(hf_model, tokenizer, gguf_path: Path, *, threads: int | None = None,
                   prompts: tuple[str, ...] = VERIFY_PROMPTS, references: dict | None = None,
                   flash_attention: bool = False) -> dict:
    """Next-token logits at every position of each prompt, from both engines on the same
    token ids; and whether llama.cpp's tokenizer yields those ids. llama.cpp runs in a child
    process (gguf/child.py), so a file it aborts on costs an error line, not sumctl.
    `references`: a dict the caller keeps for one unchanged `hf_model`; transformers' logits
    are stored in it by token ids and reused from it (one export compares two GGUFs).
    `flash_attention`: llama.cpp reads with its fused attention, as the bundle will."""
    import numpy as np

    items = check_items(tokenizer, prompts)
    got_all = llama_logits(gguf_path, items, threads=threads, flash_attention=flash_attention)
    max_diff, scale, agree, positions, mismatches, sum_diff = 0.0, 0.0, 0, 0, 0, 0.0
    for i, item in enumerate(items):
        ids = item["ids"]
        if got_all[f"tokens_{i}"].tolist() != list(ids):
            mismatches += 1
        ref = _reference_logits(hf_model, ids, references)
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


def check_items(tokenizer, prompts: tuple[str, ...]) -> list[dict]:
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


def llama_logits(gguf_path: Path, items: list[dict], *, threads: int | None, lora: Path | None = None,
                 flash_attention: bool = False) -> dict:
    return run_in_child("logits", {"gguf": str(gguf_path), "threads": threads, "texts": items,
                                   "lora": str(lora) if lora else None, "flash_attn": flash_attention},
                        subject=lora or gguf_path,
                        doing="loading and running the GGUF" + (" with the adapter" if lora else ""))


def _reference_logits(model, ids: list[int], references: dict | None):
    if references is None:
        return hf_logits(model, ids)
    if tuple(ids) not in references:
        references[tuple(ids)] = hf_logits(model, ids)
    return references[tuple(ids)]


def hf_logits(model, ids: list[int]):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def verify_gguf(hf_model, tokenizer, gguf_path: Path, *, threads: int | None = None,
                references: dict | None = None, flash_attention: bool = False) -> dict:
    result = compare_logits(hf_model, tokenizer, gguf_path, threads=threads, references=references,
                            flash_attention=flash_attention)
    result = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}
    result.update({"method": "next-token logits at every position, llama.cpp on the F16 GGUF vs "
                             "transformers fp32 on the source, same token ids",
                   "min_top1_agreement": MIN_TOP1_AGREEMENT,
                   "max_abs_diff_fraction": MAX_ABS_DIFF_FRACTION,
                   "attention": "fused" if flash_attention else "plain"})
    return result


def comparison_summary(result: dict) -> dict:
    return {k: round(result[k], 6) for k in ("top1_agreement", "max_abs_diff", "mean_abs_diff")}


def open_llama(path: Path, *, threads: int | None, n_ctx: int, logits_all: bool = False,
               lora: Path | None = None, flash_attention: bool = False):
    llama_cpp = import_llama_cpp()

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    try:
        return llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads,
                               n_threads_batch=threads, logits_all=logits_all, seed=0, verbose=False,
                               lora_path=str(lora) if lora else None, flash_attn=flash_attention)
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
                              "threads": threads or usable_cores()},
                 subject=src, doing=f"quantizing to {quant}")


def quantize_in_process(src: Path, dst: Path, quant: str, *, threads: int | None = None) -> None:
    """The runtime's quantizer (one table of llama.cpp's types), its errors as an export's; the
    child process runs it once quantize_gguf has checked `quant`."""
    try:
        quantize(src, dst, quant, threads=threads)
    except BundleError as e:
        raise ExportError(str(e)) from None


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each GGML type a GGUF holds (K-quant mixes fall back per tensor)."""
    from sumctl.runtime.backends.gguf_file import read_gguf_header

    counts: dict[str, int] = {}
    for t in read_gguf_header(path).tensors:
        counts[t.type_name] = counts.get(t.type_name, 0) + 1
    return dict(sorted(counts.items()))
