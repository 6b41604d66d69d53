"""write_gguf with a byte-fallback SentencePiece-style BPE tokenizer.json (Llama 2's and Gemma's
kind, without a tokenizer.model): llama.cpp merges the pair whose token scores highest, so the
scores must replay the BPE's merge order, or llama.cpp splits words differently from the
tokenizer the model was trained with."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from gguf_fixtures import merge_pair, require_export_stack

pytestmark = pytest.mark.timeout(120)

SPACE = "\u2581"
CORPUS = ["The budget is ten percent over, so we cut travel and hotel costs.",
          "The launch moves to March; Dan updates the roadmap and the release notes.",
          "Users want a fancy look and a scroll wheel, and the remote should be spongy.",
          "Most parents agreed in the survey that the buttons were too small to press.",
          "Marketing presented the trends: fruit and vegetables, and a spongy feel."]
# Unseen sentences as well: where merge order matters most, words the merges only partly cover.
TEXTS = CORPUS + ["The industrial designer proposed a kinetic battery and a rubber case.",
                  "Budgets, roadmaps and surveys: the team rescheduled the travelling plans."]


def bpe_merges(texts: list[str], n_merges: int) -> list[tuple[str, str]]:
    """A BPE's merges over the texts as Llama 2's tokenizer sees them (a leading space, spaces as
    U+2581, one sequence per text)."""
    sequences = [list(SPACE + t.replace(" ", SPACE)) for t in texts]
    merges, made = [], set()
    for _ in range(n_merges):
        pairs = Counter((a, b) for s in sequences for a, b in zip(s, s[1:]))
        candidates = [(n, pair) for pair, n in pairs.items() if pair[0] + pair[1] not in made]
        if not candidates:
            break
        _, (a, b) = max(candidates)
        merges.append((a, b))
        made.add(a + b)
        merge_pair(sequences, a, b)
    return merges


@pytest.fixture(scope="module")
def byte_fallback_checkpoint(tmp_path_factory) -> Path:
    require_export_stack("torch", "transformers", "gguf", "tokenizers")
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    merges = bpe_merges(CORPUS, 150)
    chars = sorted({c for t in CORPUS for c in SPACE + t.replace(" ", SPACE)})
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
                                        + chars + [a + b for a, b in merges])}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    bpe.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    bpe.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    out = tmp_path_factory.mktemp("byte-fallback") / "hf"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(out)
    assert json.loads((out / "tokenizer.json").read_text())["model"]["byte_fallback"]
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


def test_llama_cpp_splits_byte_fallback_bpe_text_as_the_tokenizer_does(byte_fallback_checkpoint, tmp_path):
    import llama_cpp
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sumctl.exporters.gguf.writer import write_gguf

    model = AutoModelForCausalLM.from_pretrained(byte_fallback_checkpoint)
    path = tmp_path / "model.gguf"
    info = write_gguf(model, byte_fallback_checkpoint, path)
    assert info.tokenizer_model == "llama"
    tokenizer = AutoTokenizer.from_pretrained(byte_fallback_checkpoint)
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    try:
        for text in TEXTS:
            expected = tokenizer(text, add_special_tokens=False).input_ids
            got = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            assert got == expected, (text, tokenizer.convert_ids_to_tokens(expected),
                                     tokenizer.convert_ids_to_tokens(got))
    finally:
        llm.close()
