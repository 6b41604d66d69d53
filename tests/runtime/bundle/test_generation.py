"""A manifest's `generation`, typed: the old spellings still read, the JSON form written is the
one older sumctl versions read, and a bad value is one line naming the manifest and the key."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from sumctl.runtime.backends.base import GenerationOptions
from sumctl.runtime.backends.extractive import build_extractive_bundle
from sumctl.runtime.bundle import (GGUF_QUANT_TYPES, MANIFEST_NAME, T5_QUANTIZATIONS,
                                   GenerationDefaults, Manifest, causal_generation, load_bundle,
                                   seq2seq_generation, seq2seq_generation_for)
from sumctl.runtime.errors import BundleError
from sumctl.runtime.prompts import LENGTHS, MAX_NEW_TOKENS

# What sumctl wrote before `generation` was typed, per writer.
TODAY_CAUSAL = {"max_new_tokens": {"long": 384, "medium": 160, "short": 64}, "num_beams": 1,
                "no_repeat_ngram_size": 0, "length_penalty": 1.0, "temperature": 0.0, "seed": 0,
                "repeat_penalty": 1.1}
TODAY_T5 = {"max_new_tokens": {"long": 384, "medium": 160, "short": 64}, "num_beams": 1,
            "no_repeat_ngram_size": 3, "length_penalty": 1.0}


def test_the_old_penalty_key_and_an_int_budget_are_read():
    defaults = GenerationDefaults.from_dict({"max_new_tokens": 100, "repeat_penalty": 1.3}, "m.json")
    assert defaults.repetition_penalty == 1.3
    assert dict(defaults.max_new_tokens) == dict.fromkeys(LENGTHS, 100)
    assert [defaults.max_new_tokens_for(length) for length in LENGTHS] == [100] * len(LENGTHS)
    assert GenerationDefaults.from_dict({"repetition_penalty": 1.2}, "m.json").repetition_penalty == 1.2
    both = {"repeat_penalty": 1.2, "repetition_penalty": 1.2}
    assert GenerationDefaults.from_dict(both, "m.json").repetition_penalty == 1.2


def test_todays_generation_dicts_read_as_they_were_meant():
    causal = GenerationDefaults.from_dict(TODAY_CAUSAL, "m.json")
    assert causal == causal_generation()
    assert (causal.seed, causal.temperature, causal.repetition_penalty) == (0, 0.0, 1.1)
    t5 = GenerationDefaults.from_dict(TODAY_T5, "m.json")
    assert t5 == seq2seq_generation()
    # What a T5 manifest never said is what its readers assumed: no penalty, greedy.
    assert (t5.no_repeat_ngram_size, t5.repetition_penalty, t5.temperature) == (3, 1.0, 0.0)
    # A manifest without budgets, or with some, gets sumctl's for the lengths it does not name.
    assert dict(GenerationDefaults.from_dict({}, "m.json").max_new_tokens) == MAX_NEW_TOKENS
    partial = GenerationDefaults.from_dict({"max_new_tokens": {"short": 20}}, "m.json")
    assert partial.max_new_tokens_for("short") == 20
    assert partial.max_new_tokens_for("long") == MAX_NEW_TOKENS["long"]


def test_the_written_form_is_todays_so_exports_keep_their_bytes():
    assert json.dumps(causal_generation().to_dict()) == json.dumps(TODAY_CAUSAL)
    assert seq2seq_generation().to_dict()["repeat_penalty"] == 1.0  # the old name, read by old sumctl
    assert "repetition_penalty" not in seq2seq_generation().to_dict()


@pytest.mark.parametrize("defaults", [
    causal_generation(),
    seq2seq_generation({"num_beams": 4, "length_penalty": 0.8}),
    GenerationDefaults.from_dict({"max_new_tokens": {"short": 9, "tiny": 5}, "seed": 7,
                                  "added_by_a_newer_sumctl": {"x": [1]}}, "m.json"),
    GenerationDefaults(chapter_tokens=1536),
])
def test_a_round_trip_keeps_every_value_and_unknown_keys(defaults):
    data = defaults.to_dict()
    again = GenerationDefaults.from_dict(json.loads(json.dumps(data)), "m.json")
    assert again == defaults and again.to_dict() == data
    assert pickle.loads(pickle.dumps(defaults)) == defaults  # a bundle crosses into workers


def test_a_manifest_round_trips_through_its_file(tmp_path):
    bundle = build_extractive_bundle(tmp_path / "b")
    written = json.loads((bundle.path / MANIFEST_NAME).read_text())
    assert written["generation"]["max_new_tokens"] == {"long": 200, "medium": 90, "short": 35}
    loaded = load_bundle(bundle.path).manifest
    assert loaded.generation == bundle.manifest.generation
    assert loaded.generation.max_new_tokens_for("short") == 35
    assert loaded.to_dict() == written


def test_the_defaults_cannot_be_changed_in_place():
    defaults = causal_generation()
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.seed = 1
    with pytest.raises(TypeError):
        defaults.max_new_tokens["short"] = 1


@pytest.mark.parametrize("generation, key", [
    ({"num_beams": 0}, "num_beams 0"),
    ({"num_beams": 2.5}, "num_beams 2.5"),
    ({"num_beams": True}, "num_beams True"),
    ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size -1"),
    ({"length_penalty": float("nan")}, "length_penalty nan"),
    ({"length_penalty": "1"}, "length_penalty '1'"),
    ({"temperature": -0.5}, "temperature -0.5"),
    ({"temperature": float("inf")}, "temperature inf"),
    ({"repeat_penalty": 0}, "repeat_penalty 0"),
    ({"repetition_penalty": -1.0}, "repetition_penalty -1.0"),
    ({"seed": -1}, "seed -1"),
    ({"chapter_tokens": 63}, "chapter_tokens 63"),
    ({"chapter_tokens": 1e3}, "chapter_tokens 1000.0"),
    ({"max_new_tokens": 0}, "max_new_tokens 0"),
    ({"max_new_tokens": {"short": "64"}}, "max_new_tokens short '64'"),
    ({"max_new_tokens": [64]}, "max_new_tokens [64]"),
    ({"repeat_penalty": 1.1, "repetition_penalty": 1.3}, "both repeat_penalty and repetition_penalty"),
])
def test_a_bad_value_is_refused_in_one_line_naming_the_manifest_and_key(tmp_path, generation, key):
    bundle = build_extractive_bundle(tmp_path / "b")
    path = bundle.path / MANIFEST_NAME
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | {"generation": generation}))
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle.path, verify=False)
    message = str(caught.value)
    assert message.startswith(f"{path}: generation ") and key in message and "\n" not in message


def test_a_manifest_built_in_memory_may_give_the_json_form():
    manifest = Manifest(backend="x", source={}, quantization="none", max_input_tokens=10,
                        generation={"max_new_tokens": 30, "repeat_penalty": 1.2})
    assert manifest.generation.repetition_penalty == 1.2
    assert manifest.to_dict()["generation"]["max_new_tokens"] == dict.fromkeys(LENGTHS, 30)
    with pytest.raises(BundleError, match="the manifest of x: generation num_beams 0 "):
        Manifest(backend="x", source={}, quantization="none", max_input_tokens=10,
                 generation={"num_beams": 0})


def test_a_t5_checkpoint_overrides_what_its_generation_config_sets(tmp_path):
    assert seq2seq_generation_for(tmp_path) == seq2seq_generation() == seq2seq_generation_for(None)
    config = tmp_path / "generation_config.json"
    config.write_text(json.dumps({"num_beams": 4, "length_penalty": 0.6, "max_length": 20}))
    assert seq2seq_generation_for(tmp_path) == seq2seq_generation({"num_beams": 4, "length_penalty": 0.6})
    assert seq2seq_generation_for(tmp_path).num_beams == 4
    config.write_text(json.dumps({"no_repeat_ngram_size": -2}))
    with pytest.raises(BundleError, match=f"^{config}: generation no_repeat_ngram_size -2 "):
        seq2seq_generation_for(tmp_path)


def test_options_take_the_defaults_of_a_length_and_the_overrides_given():
    defaults = seq2seq_generation({"num_beams": 4})
    options = GenerationOptions.from_defaults(defaults, "short", num_beams=None, length_penalty=2.0)
    assert options == GenerationOptions(max_new_tokens=64, num_beams=4, no_repeat_ngram_size=3,
                                        length_penalty=2.0)
    assert GenerationOptions.from_defaults(defaults, "long", max_new_tokens=10).max_new_tokens == 10


def test_the_export_choices_are_declared_once():
    from sumctl.exporters.gguf import QUANT_TYPES

    assert QUANT_TYPES is GGUF_QUANT_TYPES and "Q4_K_M" in GGUF_QUANT_TYPES
    assert T5_QUANTIZATIONS == ("int8", "int8-block", "int4", "none")
