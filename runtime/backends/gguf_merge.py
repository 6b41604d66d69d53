"""A llama.cpp LoRA adapter GGUF merged into its base GGUF's weights, so that the model decodes at
the speed of a plain model instead of paying the adapter's two extra matmuls per weight.

The merge follows llama.cpp's own convention for LoRA GGUFs (llama-adapter.cpp, llm_build_lora_mm):
for a base weight `W` (GGUF shape [n_in, n_out], numpy (n_out, n_in)) the adapter holds
`W.lora_a` (numpy (r, n_in)) and `W.lora_b` (numpy (n_out, r)), and llama.cpp computes
`W x + s * B (A x)` with `s = adapter_scale * alpha / r` (`alpha` the adapter's `adapter.lora.alpha`,
`r` B's GGUF ne[0]; `s = adapter_scale` where alpha is 0). The merged weight is
`W + s * (B @ A)`, computed in float32 from W dequantized by gguf-py (both files read by llama.cpp's
parser, gguf_file.py, their tensors mapped), written as F16 (or F32 and
then quantized by llama.cpp's own quantizer). Every metadata value and every tensor without a
LoRA pair is copied unchanged, except `general.file_type`, which names what the file now holds.

numpy and gguf are imported where they are used: starting the CLI imports neither.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import time
from pathlib import Path

from sumctl.runtime.bundle.configs import GGUF_QUANT_TYPES
from sumctl.runtime.errors import BundleError
from sumctl.runtime.fsutil import stderr_silenced

# What a merged model can be written as, declared once. F16 is the most faithful (the Q4_1 base
# dequantizes to values F16 holds to ~1e-3 relative, and the small LoRA delta survives per
# weight); Q8_0 rounds each weight by more than the delta (mean 0.0014 against 0.0004), but the
# delta is low-rank and systematic, and the logits keep it: against llama.cpp applying the
# adapter to the Q4_1 base, the Q8_0 merge agrees on 95.0% of next tokens (mean |logit diff|
# 0.19) and the F16 merge on 95.6% (0.15), both at that path's own floor (the Q4_1 base against
# the same weights as F16: 95.0%, 0.19), with an adapter effect of 1.86.
# Q8_0 is the default: the issue is the adapter's decode cost, and on 2 AVX2 threads (llama-cpp-
# python) Q8_0 decoded at 83 tokens/s and prompted at 388 where Q4_1 + the adapter at load gave 77
# and 238, while F16 prompted at 520 but decoded at 66, slower than before; Q8_0 is also 145 MB
# to F16's 244. And on examples/standup.vtt F16's greedy summary failed issue 28's acceptance
# (its second sentence unsupported and dropped, the first copied: 68% copy coverage) where
# Q8_0's passed (29.5%, against 28.3% for Q4_1 + the adapter at load).
# Those figures are for a merge into the shipped Q4_1. The embedded default now serves its base
# widened to F16 and merges into that as F16 (default_model.MERGE_TYPE, which says why), or as
# BF16 where the CPU multiplies BF16 natively.
# A 4-bit type is not offered: requantizing to 4 bits would erase most of the delta.
# BF16 keeps F16's layout at 8 bits of mantissa instead of 11, and where the CPU has AVX-512 BF16
# (machine.cpu_has_bf16) llama.cpp multiplies it natively instead of widening each F16 weight to
# F32 (default_model.merge_type_here says what that buys the embedded default).
MERGE_TYPES = ("F16", "BF16", "Q8_0")
DEFAULT_MERGE_TYPE = "Q8_0"
# Bumped when the merge itself changes, so that a store's copy built the old way is rebuilt.
MERGE_METHOD = "lora-merge-1: W + adapter_scale * alpha / r * (B @ A), float32, gguf-py"
LORA_A, LORA_B = ".lora_a", ".lora_b"
# What quantize() writes: an export's types, and Q4_0, which a requantized base may be
# (default_model's adapter record).
QUANTIZER_TYPES = GGUF_QUANT_TYPES + ("Q4_0",)
# The text the merged model and base + adapter are compared on: a short meeting in the chat
# template SmolLM2 uses (any model reads it as tokens; the template only makes it realistic).
VERIFY_TEXT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nSummarize this meeting in a few sentences.\n\n"
    "Priya: Morning everyone. Quick standup, then we decide about the release date.\n"
    "Marco: I finished the export fix yesterday; the tests pass on Linux, Windows is still running.\n"
    "Lena: I'm drafting the migration plan for the billing service and will share it on Thursday.\n"
    "Sam: The staging cluster ran out of disk twice. I'll add monitoring and clean the old images.\n"
    "Priya: Then we move the release to October 14, a Friday, so the Windows run can finish.\n"
    "Marco: Fine by me.<|im_end|>\n<|im_start|>assistant\n")


def merge_lora(base: Path, adapter: Path, out: Path, *, out_type: str = DEFAULT_MERGE_TYPE,
               adapter_scale: float = 1.0, threads: int | None = None) -> dict:
    """Write `out`, the base GGUF with the LoRA adapter GGUF merged into it, as `out_type`
    (one of MERGE_TYPES). Written to a temporary file beside `out` and renamed into place.
    Returns what was done: the tensors merged, alpha, rank, scale, seconds and bytes."""
    if out_type not in MERGE_TYPES:
        raise BundleError(f"cannot merge a LoRA into {out_type!r} (use one of {', '.join(MERGE_TYPES)})")
    started = time.perf_counter()
    base, adapter, out = Path(base), Path(adapter), Path(out)
    base_header, pairs, alpha = _read_pair(base, adapter)
    # F16 is written directly; BF16 and Q8_0 are written as F32 and then quantized by llama.cpp.
    direct = out_type == "F16"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(tmp_name)
    stage = tmp if direct else tmp.with_suffix(".f32.partial")
    try:
        ranks = _write_merged(base_header, pairs, stage, adapter=adapter, f16=direct,
                              scale=lambda rank: adapter_scale * (alpha / rank if alpha else 1.0))
        if not direct:
            quantize(stage, tmp, out_type, threads=threads)
            stage.unlink()
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would follow the file to its name
        os.replace(tmp, out)
    except BaseException:
        for path in {tmp, stage}:
            path.unlink(missing_ok=True)
        raise
    return {"method": MERGE_METHOD, "type": out_type, "merged_tensors": len(pairs), "alpha": alpha,
            "rank": sorted(ranks)[0] if len(ranks) == 1 else sorted(ranks),
            "adapter_scale": adapter_scale, "seconds": round(time.perf_counter() - started, 2),
            "bytes": out.stat().st_size}


def _read_pair(base: Path, adapter: Path):
    """The base's header, the adapter's (A, B) arrays by base tensor, and its alpha, once the
    adapter is known to be a LoRA for this very model. Both files are read by llama.cpp's own
    parser, their tensors mapped, not copied."""
    from sumctl.runtime.backends.gguf_file import read_gguf_header

    base_header, lora_header = read_gguf_header(base), read_gguf_header(adapter)
    alpha = lora_header.get("adapter.lora.alpha", 0.0)
    if lora_header.get("adapter.type", "lora") != "lora":
        raise BundleError(f"{adapter}: not a LoRA adapter GGUF (adapter.type is not 'lora')")
    if lora_header.get("general.architecture") != base_header.get("general.architecture"):
        raise BundleError(f"{adapter}: the adapter is for another architecture than {base.name}")
    pairs = _lora_pairs(lora_header, adapter)
    missing = sorted(set(pairs) - {t.name for t in base_header.tensors})
    if missing:
        raise BundleError(f"{adapter}: adapts {missing[0]}, which {base.name} does not have; the "
                          "adapter is not made for this model")
    if "token_embd.weight" in pairs:  # llama.cpp applies it to get_rows, not as a matmul
        raise BundleError(f"{adapter}: an adapter of the token embeddings cannot be merged")
    return base_header, pairs, alpha


def _write_merged(base, pairs: dict, stage: Path, *, adapter: Path, f16: bool, scale) -> set[int]:
    """Write the base's metadata and tensors to `stage`, each adapted tensor as W + scale(r)·B·A
    in F16 (f16) or F32; returns the adapter's ranks."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter, Keys, LlamaFileType
    from gguf.quants import dequantize

    dtype, raw = (np.float16, GGMLQuantizationType.F16) if f16 else (np.float32, GGMLQuantizationType.F32)
    ranks: set[int] = set()

    def merged(info, data):
        weight = dequantize(data, GGMLQuantizationType(info.type_id)).astype(np.float32, copy=False)
        a_data, b_data = pairs[info.name]
        a = np.asarray(a_data, dtype=np.float32)  # (r, n_in)
        b = np.asarray(b_data, dtype=np.float32)  # (n_out, r)
        rank = b.shape[1]
        if a.shape != (rank, weight.shape[1]) or b.shape[0] != weight.shape[0]:
            raise BundleError(f"{adapter}: {info.name}'s LoRA has shapes {a.shape} x {b.shape}, which "
                              f"do not fit the base's {weight.shape}; not made for this model")
        ranks.add(rank)
        return (weight + np.float32(scale(rank)) * (b @ a)).astype(dtype)

    writer = GGUFWriter(stage, base.get(Keys.General.ARCHITECTURE))
    for key, value in base.fields.items():
        # The writer writes the architecture itself; general.file_type is set below.
        if key in (Keys.General.ARCHITECTURE, Keys.General.FILE_TYPE):
            continue
        kind, item = base.field_types[key]
        writer.add_key_value(key, value, GGUFValueType(kind),
                             sub_type=GGUFValueType(item) if item is not None else None)
    writer.add_file_type(LlamaFileType.MOSTLY_F16 if f16 else LlamaFileType.ALL_F32)
    tensors = [(info, base.tensor_data(info)) for info in base.tensors]
    for info, data in tensors:
        if info.name in pairs:
            shape = tuple(reversed(info.shape))  # numpy order: (n_out, n_in)
            writer.add_tensor_info(info.name, shape, np.dtype(dtype),
                                   int(np.prod(shape)) * np.dtype(dtype).itemsize, raw)
        else:
            writer.add_tensor_info(info.name, data.shape, data.dtype, data.nbytes,
                                   GGMLQuantizationType(info.type_id))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for info, data in tensors:
        writer.write_tensor_data(merged(info, data) if info.name in pairs else data)
    writer.close()
    return ranks


def quantize(src: Path, dst: Path, quant: str, *, threads: int | None = None,
             requantize: bool = False) -> None:
    """llama.cpp's quantizer, to one of QUANTIZER_TYPES (tensors already of the type, such as a
    Q8_0 embedding, are copied; a K-quant falls back per tensor where a row does not fit its
    blocks, e.g. SmolLM2's 576-wide rows).
    With `requantize`, quantized tensors of another type are converted too (Q4_1 to F16 or Q4_0):
    the same bytes on every run measured here; where the result must match a record, its hash is
    checked where it is made."""
    from sumctl.runtime.backends.gguf import import_llama_cpp, quiet_llama_cpp
    from sumctl.runtime.machine import usable_cores

    if quant not in QUANTIZER_TYPES:
        raise BundleError(f"unknown quantization {quant!r} (use one of {', '.join(QUANTIZER_TYPES)})")
    llama_cpp = import_llama_cpp()
    quiet_llama_cpp()  # else its per-tensor lines reach Python's sys.stderr, past stderr_silenced
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")  # llama.h's names, one pattern
    params.nthread = threads or usable_cores()
    params.allow_requantize = requantize
    with stderr_silenced():
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not Path(dst).is_file():
        raise BundleError(f"{src}: llama.cpp's quantizer failed for {quant} (code {rc})")


def check_merged_logits(merged: Path, base: Path, adapter: Path, *, adapter_scale: float = 1.0,
                   text: str = VERIFY_TEXT, threads: int | None = None, effect: bool = True) -> dict:
    """The merged model against llama.cpp applying the adapter to the base, on the same tokens:
    next-token logits at every position of `text`, their top-1 agreement and the largest and
    mean absolute difference, and (with `effect`, one more evaluation) the adapter's own effect,
    mean |base+adapter - base|, to read the difference against."""
    import numpy as np

    from sumctl.runtime.backends.gguf import import_llama_cpp
    from sumctl.runtime.machine import usable_cores

    threads = threads or usable_cores()
    llama_cpp = import_llama_cpp(threads=threads)

    def logits(path: Path, lora: Path | None) -> tuple[list[int], "np.ndarray"]:
        kwargs = {"lora_path": str(lora), "lora_scale": adapter_scale} if lora is not None else {}
        with stderr_silenced():
            llm = llama_cpp.Llama(str(path), n_ctx=512, n_batch=512, n_threads=threads,
                                  n_threads_batch=threads, logits_all=True, verbose=False, **kwargs)
        try:
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            llm.eval(tokens)
            return tokens, np.array(llm.scores[:len(tokens)], dtype=np.float32)
        finally:
            llm.close()

    tokens, with_merge = logits(merged, None)
    same_tokens, with_adapter = logits(base, adapter)
    if tokens != same_tokens:
        raise BundleError(f"{merged}: the merged model tokenizes differently from {base.name}")
    diff = np.abs(with_merge - with_adapter)
    result = {"method": "next-token logits at every position of a fixed meeting prompt (runtime/"
                        "backends/gguf_merge.py VERIFY_TEXT unless told): the merged GGUF against "
                        "llama.cpp applying the LoRA adapter to the base GGUF at load, same token ids",
              "positions": len(tokens),
              "top1_agreement": float(np.mean(with_merge.argmax(1) == with_adapter.argmax(1))),
              "max_abs_diff": round(float(diff.max()), 6),
              "mean_abs_diff": round(float(diff.mean()), 6)}
    if effect:
        without = logits(base, None)[1]
        result["adapter_effect_mean_abs"] = round(float(np.abs(with_adapter - without).mean()), 6)
    return result


def _lora_pairs(header, adapter: Path) -> dict:
    """{base tensor name: (lora_a array, lora_b array)} of an adapter GGUF, mapped from the file."""
    a = {t.name[:-len(LORA_A)]: t for t in header.tensors if t.name.endswith(LORA_A)}
    b = {t.name[:-len(LORA_B)]: t for t in header.tensors if t.name.endswith(LORA_B)}
    if not a or set(a) != set(b):
        raise BundleError(f"{adapter}: not a LoRA adapter GGUF (no matching .lora_a/.lora_b tensors)")
    return {name: (header.tensor_data(a[name]), header.tensor_data(b[name])) for name in a}


