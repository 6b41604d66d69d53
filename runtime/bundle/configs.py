"""What a manifest's `backend_config` and `generation` hold, declared once for every backend.

Exporters build these classes and write `to_dict()`; backends read them back with `from_dict`,
which refuses a config that lacks what the backend needs with one line naming the manifest.
Keys a newer sumctl may add are kept in `extra`, so an old bundle read and written again loses
nothing. `generation` defaults live here per model family, so an exporter, the embedded
default and `sumctl train` cannot drift apart; so do the quantizations `sumctl export` offers,
which the CLI's choices and the exporters' checks both read.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from sumctl.runtime.bundle.generation import GenerationDefaults
from sumctl.runtime.bundle.manifest import Manifest
from sumctl.runtime.errors import BundleError
from sumctl.runtime.prompts import MAX_NEW_TOKENS, default_templates

# File roles: the keys of backend_config["files"], opened through Bundle.file(role).
MODEL = "model"          # a GGUF: weights, vocabulary and chat template
ADAPTER = "adapter"      # a llama.cpp LoRA adapter GGUF, applied to MODEL at load
ENCODER = "encoder"      # ONNX graphs of a seq2seq model...
DECODER = "decoder"      # ...the decoder merged with its cache branch
WEIGHTS = "weights"      # the graphs' shared external weights, mapped, not copied
TOKENIZER = "tokenizer"  # tokenizer.json
CONFIG = "config"        # the source model's config.json, or a backend's own settings

# llama.cpp's quantizer types a GGUF export may ask for ("F16": none), and an ONNX T5 export's.
# BF16 is F16's size and reads a prompt faster where the CPU multiplies BF16 natively (AVX-512
# BF16, AMX: the embedded default, default_model.MERGE_TYPE_NATIVE_BF16); elsewhere llama.cpp
# widens it in software.
GGUF_QUANT_TYPES = ("Q4_K_M", "Q5_K_M", "Q8_0", "BF16", "F16")
T5_QUANTIZATIONS = ("int8", "int8-block", "int4", "none")
# Rows of a weight column that share one scale in an int4 export (MatMulNBits' block_size), and
# the default (exporters/onnx_t5/graph.py says why).
T5_INT4_BLOCK_SIZES = (16, 32, 64, 128)
T5_INT4_BLOCK_SIZE = 32
# FLAN-T5's encoder input, as it was trained: a longer transcript is chapterized to fit.
T5_MAX_INPUT_TOKENS = 512

# llama.cpp's context is capped: a KV cache for 8k tokens is already larger than a 135M model.
N_CTX_CAP = 8192
# Greedy decoding of small models loops ("Priya: Can you own ..." five times over). llama.cpp's
# own default penalty (over the last 64 generated tokens, not the transcript) stops that; 1.2
# already made SmolLM2-135M drop facts. Stored per bundle: a fine-tuned model may want 1.0.
REPEAT_PENALTY = 1.1
# T5's settings, unless the fine-tune's generation_config.json says otherwise.
SEQ2SEQ_GENERATION = {"num_beams": 1, "no_repeat_ngram_size": 3, "length_penalty": 1.0}


def seq2seq_generation(overrides: dict | None = None,
                       where: str = "the checkpoint's generation_config.json") -> GenerationDefaults:
    """A T5 bundle's `generation`: sumctl's defaults, overridden by the numeric settings of a
    fine-tune's own generation config (`where`, named if one of them is out of range)."""
    generation = dict(SEQ2SEQ_GENERATION)
    for key in SEQ2SEQ_GENERATION:
        value = (overrides or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            generation[key] = value
    return GenerationDefaults.from_dict(generation, where)


def seq2seq_generation_for(checkpoint: Path | None) -> GenerationDefaults:
    """seq2seq_generation for a checkpoint folder: what its generation_config.json sets, where
    it has one that reads (a checkpoint without one is common, and no reason to refuse it)."""
    if checkpoint is None:
        return seq2seq_generation()
    path = Path(checkpoint) / "generation_config.json"
    try:
        source = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        source = {}
    return seq2seq_generation(source if isinstance(source, dict) else {}, str(path))


def causal_generation(*, repeat_penalty: float | None = REPEAT_PENALTY,
                      chapter_tokens: int | None = None) -> GenerationDefaults:
    """A causal LM's `generation`: greedy with a fixed seed, so a summary is reproducible
    (llama.cpp has no n-gram blocking), and a mild repetition penalty (None: none); chapters of
    a long transcript as large as the input holds, or `chapter_tokens`."""
    return GenerationDefaults(no_repeat_ngram_size=0, temperature=0.0, seed=0,
                              repetition_penalty=1.0 if repeat_penalty is None else repeat_penalty,
                              chapter_tokens=chapter_tokens)


def gguf_max_input_tokens(n_ctx_train: int) -> int:
    """The transcript budget of a GGUF bundle: the capped context less the longest summary."""
    return min(n_ctx_train, N_CTX_CAP) - max(MAX_NEW_TOKENS.values())


@dataclass
class _BackendConfig:
    """to_dict/from_dict shared by every backend's config."""

    backend: ClassVar[str] = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        extra = data.pop("extra", {})
        return {**{k: v for k, v in data.items() if v is not None}, **extra}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "_BackendConfig":
        if not isinstance(data, dict):
            raise BundleError(f"{where}: backend_config must be a JSON object (re-export the model)")
        names = {f.name for f in fields(cls)} - {"extra"}
        required = [f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING and f.name != "extra"]
        missing = [name for name in required if data.get(name) is None]
        if missing:
            raise BundleError(f"{where}: backend_config lacks {', '.join(missing)} for the "
                              f"{cls.backend} backend (re-export the model)")
        config = cls(**{k: v for k, v in data.items() if k in names},
                     extra={k: v for k, v in data.items() if k not in names})
        config.check(where)
        return config

    def check(self, where: str) -> None:
        """Refuse values of the wrong type, naming the field (overridden where it matters)."""


@dataclass
class GgufConfig(_BackendConfig):
    backend: ClassVar[str] = "gguf"

    files: dict
    architecture: str = "llama"
    n_ctx_train: int | None = None
    n_ctx_cap: int = N_CTX_CAP
    chat_template: str | None = None
    tokenizer: dict = field(default_factory=dict)
    file_roles: dict = field(default_factory=dict)
    adapter_scale: float | None = None
    source_model_type: str | None = None
    tensor_types: dict | None = None
    # llama.cpp's fused attention: faster on long prompts, but its sums round differently, so a
    # greedy summary may change; on only where a bundle says so (the embedded default, whose
    # quality was measured with it), so that other bundles keep their tokens. None: off, and
    # absent from the manifest.
    flash_attention: bool | None = None
    extra: dict = field(default_factory=dict)

    def check(self, where: str) -> None:
        for name in ("n_ctx_train", "n_ctx_cap"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise BundleError(f"{where}: backend_config {name} {value!r} is not a positive "
                                  "whole number (re-export the model)")
        if self.flash_attention is not None and not isinstance(self.flash_attention, bool):
            raise BundleError(f"{where}: backend_config flash_attention {self.flash_attention!r} is "
                              "not true or false (re-export the model)")


@dataclass
class OnnxT5Config(_BackendConfig):
    backend: ClassVar[str] = "onnx-t5"

    files: dict
    special_tokens: dict  # pad, eos and decoder_start token ids
    decoder: dict = field(default_factory=dict)  # merged, cache_branch_input, layers, heads...
    model_type: str = "t5"
    clean_up_tokenization_spaces: bool = False
    batch_size: int = 4
    quantization: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def check(self, where: str) -> None:
        try:
            [int(self.special_tokens[k]) for k in ("pad", "eos", "decoder_start")]
        except (KeyError, TypeError, ValueError):
            raise BundleError(f"{where}: backend_config lacks special token ids (re-export the "
                              "model)") from None


@dataclass
class ExtractiveConfig(_BackendConfig):
    backend: ClassVar[str] = "extractive"

    files: dict
    extra: dict = field(default_factory=dict)


# An endpoint's defaults: its key's environment variable and the context sumctl budgets for.
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_CONTEXT_TOKENS = 8192


@dataclass
class OpenAICompatConfig(_BackendConfig):
    backend: ClassVar[str] = "openai-compat"

    endpoint: str
    model: str
    context_tokens: int = DEFAULT_CONTEXT_TOKENS
    api_key_env: str | None = DEFAULT_KEY_ENV
    files: dict = field(default_factory=dict)  # nothing on disk: the model is behind the API
    extra: dict = field(default_factory=dict)


def gguf_manifest(*, model_file: str, quantization: str, n_ctx_train: int, source: dict, name: str,
                  label: str, chat_template: str | None, tokenizer: dict, versions: dict,
                  verification: dict | None = None, adapter_file: str | None = None,
                  chapter_tokens: int | None = None, **config) -> Manifest:
    """The manifest of every GGUF bundle, exported (`sumctl export llama`) or built around a
    shipped GGUF (the embedded default): one place for its budgets, prompts and generation.

    Args:
        model_file, adapter_file: the GGUF and the optional LoRA GGUF, relative to the bundle.
        quantization: what the model file holds ("Q4_K_M", "Q4_1+LoRA"...).
        n_ctx_train: the model's training context, before N_CTX_CAP.
        chapter_tokens: the generation's cap on a long transcript's chapters (None: the input).
        config: further GgufConfig fields (source_model_type, tensor_types...).
    """
    files, roles = {MODEL: model_file}, {MODEL: f"GGUF {quantization}: weights, vocabulary, chat template"}
    if adapter_file is not None:
        files[ADAPTER] = adapter_file
        roles[ADAPTER] = "llama.cpp LoRA adapter GGUF, applied to the model at load"
    backend_config = GgufConfig(files=files, n_ctx_train=n_ctx_train, chat_template=chat_template,
                                tokenizer=tokenizer, file_roles=roles, **config)
    return Manifest(backend=GgufConfig.backend, source=source, quantization=quantization,
                    max_input_tokens=gguf_max_input_tokens(n_ctx_train), prompts=default_templates(),
                    generation=causal_generation(chapter_tokens=chapter_tokens), verification=verification or {},
                    backend_config=backend_config.to_dict(), name=name, label=label,
                    versions=versions)
