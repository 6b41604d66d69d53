"""`sumctl train` of a LoRA on a tiny random Gemma 3 (the real model's layout and vocabulary
kind, a few thousand parameters), exported as a llama.cpp LoRA GGUF that llama.cpp loads and that
computes what the merged model does.

The real Gemma-3-270M is not converted here: its HF checkpoint takes minutes to build. The
real-model path (hf_checkpoint_from_gguf, training, the adapter's logits check on the real
weights, the bundle) is `python -m sumctl.benchmarks.perf.train_default --base gemma3
--max-steps 1 --eval-limit 1`; the real GGUF with a LoRA in a bundle is
tests/runtime/backends/test_gemma3_bundle.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from gguf_fixtures import merge_pair, require_export_stack

pytestmark = pytest.mark.timeout(300)

SPACE = "\u2581"  # SentencePiece's space


def tiny_records() -> list[dict]:
    return [{"id": f"g{i}", "transcript": transcript, "reference": reference} for i, (transcript, reference) in
            enumerate([("Alice: The budget is ten percent over.\nBob: Then we cut travel.",
                        "The team will cut travel to meet the budget."),
                       ("Carol: The launch moves to March.\nDan: I will update the roadmap.",
                        "The launch moves to March; Dan updates the roadmap."),
                       ("Erin: Users want a fancy look.\nFrank: And a scroll wheel.",
                        "Users want a fancy look and a scroll wheel."),
                       ("Grace: The survey results came in.\nHeidi: Most parents agreed.",
                        "Most parents agreed in the survey.")])]


def sentencepiece_bpe_vocabulary(texts: list[str], n_merges: int) -> tuple[list[str], list[float]]:
    """Gemma's vocabulary kind in miniature: characters, then the tokens of n_merges BPE merges
    over the texts (spaces as U+2581, merges across them as Gemma's do), each scoring minus its
    rank, so that llama.cpp's highest-score-first merging replays them."""
    sequences = [list(t.replace(" ", SPACE)) for t in texts]
    tokens = sorted({c for s in sequences for c in s if c != "\n"})
    scores = [-float(n_merges)] * len(tokens)
    for rank in range(n_merges):
        pairs = Counter((a, b) for s in sequences for a, b in zip(s, s[1:]) if "\n" not in a + b)
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merge_pair(sequences, a, b)
        if a + b not in tokens:
            tokens.append(a + b)
            scores.append(-float(rank))
    return tokens, scores


def write_vocabulary_gguf(path: Path, texts: list[str]) -> Path:
    """A gemma3 GGUF holding only a vocabulary, the input tokenizer_from_gguf rebuilds an HF
    tokenizer from, as it does for the real model."""
    import gguf

    normal, scores = sentencepiece_bpe_vocabulary(texts, 120)
    control = ["<pad>", "<eos>", "<bos>", "<unk>"]
    tokens = control + [f"<0x{b:02X}>" for b in range(256)] + normal
    types = ([gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.UNKNOWN] + [gguf.TokenType.BYTE] * 256
             + [gguf.TokenType.NORMAL] * len(normal))
    writer = gguf.GGUFWriter(path, "gemma3")
    writer.add_context_length(512)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * (len(control) + 256) + scores)
    writer.add_token_types(types)
    writer.add_pad_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_bos_token_id(2)
    writer.add_unk_token_id(3)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gemma3_hf(tmp_path_factory) -> Path:
    require_export_stack("torch", "transformers", "peft", "gguf")
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from sumctl.benchmarks.perf.models import tokenizer_from_gguf

    work = tmp_path_factory.mktemp("tiny-gemma3")
    texts = [r[k] for r in tiny_records() for k in ("transcript", "reference")]
    tokenizer = tokenizer_from_gguf(write_vocabulary_gguf(work / "vocab.gguf", texts))
    # The real model's shape in miniature: one KV head, head_dim apart from hidden/heads, and
    # query_pre_attn_scalar = head_dim, the attention scale llama.cpp assumes for gemma3.
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                              head_dim=48, query_pre_attn_scalar=48, max_position_embeddings=512,
                              sliding_window=512, pad_token_id=0, eos_token_id=1, bos_token_id=2,
                              tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    # Random norm weights: Gemma's (1 + w) scaling, stored +1 in GGUF, must show if wrong.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(0, 0.3)
    out = work / "hf"
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def test_gemma3_lora_trains_exports_and_llama_cpp_applies_it(tiny_gemma3_hf, tmp_path):
    import torch

    from sumctl.exporters.gguf import export_lora_gguf
    from sumctl.exporters.train.run import TrainConfig, train

    assert json.loads((tiny_gemma3_hf / "config.json").read_text())["model_type"] == "gemma3_text"
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_records()), encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        # A high learning rate, so that two steps leave an adapter whose effect is well above
        # F16 rounding and a wrong layout would show.
        result = train(TrainConfig(base=str(tiny_gemma3_hf), data=data, out=tmp_path / "ft", batch_size=2,
                                   max_steps=2, lr=5e-2, save_steps=100, progress=False,
                                   default_length="short", max_input_tokens=256))
    finally:
        torch.set_num_threads(threads)
    report = result.report
    assert report["model_type"] == "gemma3_text" and report["steps"] == 2
    assert all(p["loss"] == p["loss"] and p["loss"] < 20 for p in report["loss_curve"])

    adapter = tmp_path / "adapter.gguf"
    info = export_lora_gguf(tmp_path / "ft" / "adapter", tiny_gemma3_hf, adapter, threads=2)
    check = info["verification"]
    assert check["tokenizer_mismatches"] == 0
    assert check["effect_mean_abs"] > 0.05 and check["effect_relative_error"] < 0.1, info
    assert info["adapted_tensors"] == 2 * 7  # q, k, v, o, gate, up, down in each layer
