"""`sumctl export llama`: real transformers, real gguf-py, real llama.cpp (quantizer and runtime)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from sumctl.cli.main import cli
from sumctl.runtime.bundle import load_bundle
from sumctl.exporters.errors import ExportError

pytestmark = pytest.mark.slow

# Not the exporter's own check prompts: the round trip is judged on text it never saw.
ROUND_TRIP_PROMPTS = (
    "#Person1#: Hello, I'd like to book a table for two at seven tonight.\n"
    "#Person2#: Certainly. May I have your name, please?\n#Person1#: It's Johnson.",
    "Project sync. Maria: The vendor contract expires in June. Tom: Legal wants a 30-day review, "
    "so we should start renewing it next week. Maria: Agreed, Tom owns it.",
    "In the second quarter revenue grew 12 percent, driven by the enterprise plan.",
)


def _llama(path, *, logits_all=False, n_ctx=512):
    import llama_cpp

    return llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=logits_all,
                           n_threads=2, n_threads_batch=2, verbose=False)


def _gguf_logits(llm, ids):
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def _hf_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def test_smollm2_round_trip_f16_logits_match_transformers(smollm2_f16_bundle, smollm2_hf_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2_hf_checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf_checkpoint)
    llm = _llama(smollm2_f16_bundle.file("model"), logits_all=True)
    agree = positions = 0
    worst = 0.0
    for text in ROUND_TRIP_PROMPTS:
        ids = tokenizer(text).input_ids
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == ids, "tokenizers disagree"
        ref, got = _hf_logits(model, ids), _gguf_logits(llm, ids)
        worst = max(worst, float(np.abs(ref - got).max()))
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        positions += len(ids)
    llm.close()
    assert agree / positions >= 0.99, f"top-1 agreement {agree / positions:.3f} over {positions} positions"
    # SmolLM2's logits reach about 40; F16 weights move them by under 0.1 in our runs.
    assert worst < 0.5, f"max |logit diff| {worst:.3f}"

    v = smollm2_f16_bundle.manifest.verification
    assert v["top1_agreement"] >= 0.99 and v["tokenizer_agreement"] == 1.0
    assert 0 < v["max_abs_diff"] < 0.5 and v["positions"] > 100
    manifest = smollm2_f16_bundle.manifest
    assert manifest.backend == "gguf" and manifest.quantization == "F16"
    assert manifest.backend_config["chat_template"] is True
    assert manifest.backend_config["tokenizer"] == {"model": "gpt2", "pre": "smollm", "size": 49152}
    assert manifest.backend_config["n_ctx_train"] == 8192
    assert list(manifest.files) == ["model-F16.gguf"]


def test_gguf_metadata_carries_hparams_vocab_and_chat_template(smollm2_f16_bundle, smollm2_gguf_path):
    from sumctl.runtime.backends.gguf_file import read_gguf_header

    ours = read_gguf_header(smollm2_f16_bundle.file("model"))
    shipped = read_gguf_header(smollm2_gguf_path)

    def value(header, key):
        return header.fields[key]

    for key in ("llama.block_count", "llama.context_length", "llama.embedding_length",
                "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
                "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model",
                "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.chat_template"):
        assert value(ours, key) == pytest.approx(value(shipped, key)), key
    assert value(ours, "tokenizer.ggml.tokens") == value(shipped, "tokenizer.ggml.tokens")
    assert value(ours, "tokenizer.ggml.token_type") == value(shipped, "tokenizer.ggml.token_type")
    assert value(ours, "tokenizer.ggml.merges") == value(shipped, "tokenizer.ggml.merges")
    assert not value(ours, "tokenizer.ggml.add_bos_token")
    assert "output.weight" not in {t.name for t in ours.tensors}  # tied to token_embd


def test_quantized_bundles_are_smaller_and_close_to_f16(smollm2_q8_bundle, smollm2_q4km_bundle,
                                                        smollm2_f16_bundle):
    sizes = {b.manifest.quantization: b.file("model").stat().st_size
             for b in (smollm2_f16_bundle, smollm2_q8_bundle, smollm2_q4km_bundle)}
    assert sizes["Q4_K_M"] < sizes["Q8_0"] < 0.6 * sizes["F16"]
    for bundle in (smollm2_q8_bundle, smollm2_q4km_bundle):
        assert list(bundle.manifest.files) == [f"model-{bundle.manifest.quantization}.gguf"]
        v = bundle.manifest.verification
        assert v["top1_agreement"] >= 0.99  # the F16 check that gated the quantization
        assert v["quantized"]["top1_agreement"] >= 0.7, v["quantized"]
    assert (smollm2_q8_bundle.manifest.verification["quantized"]["mean_abs_diff"]
            < smollm2_q4km_bundle.manifest.verification["quantized"]["mean_abs_diff"])


def test_lora_adapter_is_merged_before_conversion(tiny_llama_checkpoint, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_checkpoint).eval()
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama_checkpoint),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                   init_lora_weights=False))  # random, nonzero B: the adapter changes the model
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_llama_checkpoint)
    merged = peft_model.merge_and_unload().eval()

    bundle = _export_cli(adapter_dir, tmp_path / "bundle", "F16")
    assert bundle.manifest.source["adapter"]["peft_type"] == "LORA"
    assert bundle.manifest.source["base"]["path"] == str(tiny_llama_checkpoint.resolve())

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_checkpoint)
    ids = tokenizer(ROUND_TRIP_PROMPTS[1]).input_ids
    llm = _llama(bundle.file("model"), logits_all=True)
    got = _gguf_logits(llm, ids)
    llm.close()
    to_merged = np.abs(got - _hf_logits(merged, ids)).max()
    to_base = np.abs(got - _hf_logits(base, ids)).max()
    assert to_merged < 0.2 * to_base, (to_merged, to_base)
    assert (got.argmax(-1) == _hf_logits(merged, ids).argmax(-1)).mean() >= 0.95


def test_mistral_exports_as_llama(smollm2_hf_checkpoint, tmp_path):
    from gguf_fixtures import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path / "hf", smollm2_hf_checkpoint, model_type="mistral",
                                      sliding_window=256)
    bundle = _export_cli(checkpoint, tmp_path / "bundle", "Q8_0")
    assert bundle.manifest.backend_config["source_model_type"] == "mistral"
    # Full attention equals a 256-token sliding window only within 256 tokens.
    assert bundle.manifest.backend_config["n_ctx_train"] == 256
    assert bundle.manifest.verification["top1_agreement"] >= 0.95


def test_sentencepiece_vocabulary_like_tinyllama(dialogsum_file, tmp_path):
    """TinyLlama's kind of vocabulary (SentencePiece, tokenizer.ggml.model "llama"), tokenized
    by llama.cpp exactly as by transformers and by sentencepiece itself."""
    import sentencepiece as spm
    from gguf_fixtures import make_sentencepiece_checkpoint
    from sumctl.exporters.gguf import export_llama

    corpus = "\n".join(json.loads(line)["dialogue"] for line in dialogsum_file.read_text().splitlines())
    checkpoint = make_sentencepiece_checkpoint(tmp_path / "hf", corpus)
    bundle = export_llama(str(checkpoint), tmp_path / "bundle", quant="Q8_0")
    config = bundle.manifest.backend_config
    assert config["tokenizer"] == {"model": "llama", "pre": "default", "size": 2000}
    assert config["n_ctx_train"] == 2048 and config["chat_template"] is True
    assert bundle.manifest.verification["tokenizer_agreement"] == 1.0
    assert bundle.manifest.verification["top1_agreement"] >= 0.95

    sp = spm.SentencePieceProcessor(model_file=str(checkpoint / "tokenizer.model"))
    llm = _llama(bundle.file("model"))
    for text in ROUND_TRIP_PROMPTS:
        assert llm.tokenize(text.encode(), add_bos=True) == [1] + sp.encode(text)
    llm.close()


def test_tokenizer_mismatch_fails_the_export(dialogsum_file, tmp_path):
    """An HF tokenizer that drops SentencePiece's leading space tokenizes unlike llama.cpp will:
    the runtime would feed the model other ids than it was trained on, so the export stops."""
    from gguf_fixtures import make_sentencepiece_checkpoint
    from sumctl.exporters.gguf import export_llama

    corpus = "\n".join(json.loads(line)["dialogue"] for line in dialogsum_file.read_text().splitlines())
    checkpoint = make_sentencepiece_checkpoint(tmp_path / "hf", corpus, add_prefix_space=False)
    with pytest.raises(ExportError, match="check prompts differently from transformers"):
        export_llama(str(checkpoint), tmp_path / "bundle", quant="Q8_0")
    assert not (tmp_path / "bundle").exists()


def test_broken_conversion_fails_the_export(tiny_llama_checkpoint, tmp_path, monkeypatch):
    """Skipping the rotary permutation is the classic silent GGUF bug; verification must stop it."""
    from sumctl.exporters.gguf import export_llama, writer

    monkeypatch.setattr(writer, "interleave_rope_rows", lambda w, n_head: w)
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="does not match transformers"):
        export_llama(str(tiny_llama_checkpoint), out, quant="Q8_0")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")], "temp folder left behind"


def test_unsupported_architecture_is_named(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=128, n_positions=64)) \
        .save_pretrained(tmp_path / "gpt2", safe_serialization=True)
    result = CliRunner().invoke(cli, ["export", "llama", "--model", str(tmp_path / "gpt2"),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "Error:" in result.output and "'gpt2'" in result.output and "GPT2LMHeadModel" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_existing_output_is_never_overwritten(tiny_llama_checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        from sumctl.exporters.gguf import export_llama

        export_llama(str(tiny_llama_checkpoint), out, quant="Q8_0")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def _export_cli(model, out, quant, *extra):
    result = CliRunner().invoke(cli, ["export", "llama", "--model", str(model), "--out", str(out),
                                      "--quant", quant, *extra])
    assert result.exit_code == 0, result.output
    assert f"Bundle written to {out}" in result.output
    return load_bundle(out)


def test_byte_fallback_without_byte_tokens_is_refused_before_llama_cpp(smollm2_hf_checkpoint,
                                                                      tmp_path):
    """transformers' own GGUF import writes SmolLM2's byte-level BPE with byte_fallback on and
    no <0xNN> tokens: llama.cpp would abort on it. The export says so in one line, and leaves
    nothing behind."""
    import subprocess
    import sys

    from gguf_fixtures import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path / "hf", smollm2_hf_checkpoint)
    tokenizer = checkpoint / "tokenizer.json"
    data = json.loads(tokenizer.read_text())
    data["model"]["byte_fallback"] = True
    tokenizer.write_text(json.dumps(data))
    result = subprocess.run(
        [sys.executable, "-c", "from sumctl.cli.main import cli; cli(prog_name='sumctl')",
         "export", "llama", "--model", str(checkpoint), "--out", str(tmp_path / "bundle"),
         "--quant", "Q8_0"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "terminate called" not in result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")]
    assert str(tokenizer) in line and "byte_fallback" in line and '"byte_fallback": false' in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_a_native_abort_in_llama_cpp_is_one_line_not_a_crash(smollm2_gguf_path, tmp_path):
    """Whatever slips past the checks, llama.cpp runs in a child: its abort is an ExportError."""
    from gguf_fixtures import rewrite_gguf_tokenizer_model
    from sumctl.exporters.gguf.child import run_in_child

    bad = rewrite_gguf_tokenizer_model(smollm2_gguf_path, tmp_path / "bad.gguf", "llama")
    request = {"gguf": str(bad), "threads": 1,
               "texts": [{"text": "café ☃ 😀", "add_bos": True, "special": False, "ids": [1, 2]}]}
    with pytest.raises(ExportError) as caught:
        run_in_child("logits", request, subject=bad, doing="loading and running the GGUF")
    message = str(caught.value)
    assert message.startswith(f"{bad}: llama.cpp crashed (SIGABRT) while loading and running")
    assert "out_of_range" in message or "unordered_map" in message
    assert "\n" not in message
    good = dict(request, gguf=str(smollm2_gguf_path))
    result = run_in_child("logits", good, subject=smollm2_gguf_path, doing="running")
    assert result["logits_0"].shape[0] == 2 and len(result["tokens_0"]) > 3


def _random_adapter(checkpoint, out, *, target_modules="all-linear", seed=1):
    """A peft LoRA adapter with random, nonzero B (peft starts B at zero: no change at all)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(checkpoint),
                                LoraConfig(r=4, lora_alpha=8, target_modules=target_modules,
                                           init_lora_weights=False))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    return peft_model.merge_and_unload().eval()


def test_lora_gguf_adapter_on_the_base_gguf_matches_the_merged_model(tiny_llama_checkpoint, tmp_path):
    """The adapter as its own GGUF, applied by llama.cpp at load, computes what transformers
    computes with the adapter merged: q and k included (their B rows take the rope layout)."""
    from sumctl.exporters.gguf import export_lora_gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_bundle = _export_cli(tiny_llama_checkpoint, tmp_path / "base", "F16")
    merged = _random_adapter(tiny_llama_checkpoint, tmp_path / "adapter")
    lora = tmp_path / "adapter.gguf"
    info = export_lora_gguf(tmp_path / "adapter", tiny_llama_checkpoint, lora, threads=2)
    assert info["adapted_tensors"] == 2 * 7  # q k v o gate up down in each of 2 layers
    assert info["verification"]["effect_relative_error"] < 0.05, info["verification"]

    import llama_cpp

    ids = AutoTokenizer.from_pretrained(tiny_llama_checkpoint)(ROUND_TRIP_PROMPTS[1]).input_ids
    llm = llama_cpp.Llama(str(base_bundle.file("model")), n_ctx=512, n_batch=512, logits_all=True,
                          n_threads=2, verbose=False, lora_path=str(lora))
    got = _gguf_logits(llm, ids)
    llm.close()
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_checkpoint).eval()
    to_merged = np.abs(got - _hf_logits(merged, ids)).max()
    to_base = np.abs(got - _hf_logits(base, ids)).max()
    assert to_merged < 0.1 * to_base, (to_merged, to_base)
    assert (got.argmax(-1) == _hf_logits(merged, ids).argmax(-1)).mean() >= 0.95


def test_a_lora_gguf_with_the_wrong_layout_is_refused(tiny_llama_checkpoint, tmp_path, monkeypatch):
    """B's q/k rows left in the HF layout: llama.cpp loads it and computes nonsense. The check
    against the merged model stops it, and nothing is left at the destination."""
    from sumctl.exporters.gguf import lora as gguf_lora

    _random_adapter(tiny_llama_checkpoint, tmp_path / "adapter", target_modules=["q_proj", "k_proj"])
    # The adapter's writer loses the rope layout; the F16 base it is checked on (writer.py's
    # own interleave_rope_rows) stays right.
    monkeypatch.setattr(gguf_lora, "interleave_rope_rows", lambda w, n_head: w)
    lora = tmp_path / "adapter.gguf"
    with pytest.raises(ExportError, match="does not match the merged model"):
        gguf_lora.export_lora_gguf(tmp_path / "adapter", tiny_llama_checkpoint, lora, threads=2)
    assert not lora.exists() and not list(tmp_path.glob(".adapter.gguf*"))


def test_a_bf16_export_holds_bf16_matrices_checked_against_the_source(tiny_llama_checkpoint, tmp_path):
    """--quant BF16 (the type the embedded default is merged as where the CPU multiplies it):
    llama.cpp's quantizer from the verified F16 file, every weight matrix BF16, the norms F32, and
    the quantized file measured against transformers like any other type."""
    bundle = _export_cli(tiny_llama_checkpoint, tmp_path / "bundle", "BF16")
    m = bundle.manifest
    assert m.quantization == "BF16" and list(m.files) == ["model-BF16.gguf"]
    types = m.backend_config["tensor_types"]
    assert set(types) == {"BF16", "F32"} and types["BF16"] > types["F32"], types
    # Random weights, tiny margins: BF16's rounding flips about 1 next token in 20 (Q8_0's
    # bundles are held to 0.7 above).
    assert m.verification["quantized"]["top1_agreement"] >= 0.9, m.verification
    assert m.verification["quantized"]["mean_abs_diff"] < 0.01 * m.verification["logit_scale"]


def test_flash_attention_is_verified_with_and_recorded_for_the_backend(tiny_llama_checkpoint, tmp_path):
    """--flash-attention: the bundle's manifest asks the backend for llama.cpp's fused attention,
    and the verification against transformers ran with it; an export without the flag keeps
    the plain attention and a manifest without the key."""
    import llama_cpp

    from sumctl.runtime.backends.gguf import GgufBackend

    fused = _export_cli(tiny_llama_checkpoint, tmp_path / "fused", "F16", "--flash-attention")
    plain = _export_cli(tiny_llama_checkpoint, tmp_path / "plain", "F16")
    assert fused.manifest.backend_config["flash_attention"] is True
    assert "flash_attention" not in plain.manifest.backend_config
    assert (fused.manifest.verification["attention"], plain.manifest.verification["attention"]) == ("fused", "plain")
    for bundle in (fused, plain):
        assert bundle.manifest.verification["top1_agreement"] >= bundle.manifest.verification["min_top1_agreement"]
    backend = GgufBackend(fused, threads=1)
    try:
        assert backend.llm.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    finally:
        backend.close()
