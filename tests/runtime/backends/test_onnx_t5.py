"""The ONNX T5 runtime against transformers' own generate, on a random tiny T5 exported for real.

Every comparison runs the same checkpoint through PyTorch (transformers) and through sumctl's
torch-free runtime (fp32 bundle), and wants the same tokens.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from t5_fixtures import one_torch_thread

from sumctl.runtime.backends.base import GenerationOptions
from sumctl.runtime.bundle import load_bundle
from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend
from sumctl.runtime.backends.weight_pages import mapped_regions
from sumctl.runtime.bundle.configs import WEIGHTS
from sumctl.runtime.prompts import fill

pytestmark = pytest.mark.slow

# Picked (for seed 0) so that some outputs end in </s> early, one runs to the limit, and some
# repeat n-grams when nothing stops them.
TEXTS = [
    "Alice: the budget is twelve euros. Bob: okay, next week then.",
    "Carol: the prototype has rubber buttons and a curved case, and marketing wants a fruit theme "
    "for young people.",
    "Dan: yes.",
    "Erin: The speech recognizer error rate decreased on the digits task, but the far-field "
    "microphone is still bad. We need more training data by Friday.",
    "Frank: so the board approved the release date. Grace: the vendor is waiting for the contract.",
]


@pytest.fixture(scope="module")
def backend(tiny_t5_bundle):
    b = OnnxT5Backend(load_bundle(tiny_t5_bundle))
    yield b
    b.close()


def hf_generate(torch_pair, ids: list[int], **options) -> list[int]:
    import torch
    from transformers import GenerationConfig

    model, _ = torch_pair
    config = GenerationConfig(do_sample=False, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                              **options)
    with one_torch_thread(), torch.inference_mode():
        return model.generate(input_ids=torch.tensor([ids]), generation_config=config)[0].tolist()[1:]


def repeats(seq: list[int], n: int) -> int:
    grams = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) - len(set(grams))


def test_tokenization_matches_transformers(backend, tiny_t5_torch):
    _, tokenizer = tiny_t5_torch
    for text in TEXTS + ["Zoë paid 12,50 € for {braces} and   spaces!"]:
        assert backend.encode(text) == tokenizer(text).input_ids
        assert backend.count_tokens(text) == len(tokenizer(text).input_ids) - 1


def test_greedy_matches_transformers_token_for_token(backend, tiny_t5_torch):
    ids = [backend.encode(t) for t in TEXTS]
    ours = [backend.generate_ids([i], max_new_tokens=40)[0] for i in ids]
    theirs = [hf_generate(tiny_t5_torch, i, max_new_tokens=40) for i in ids]
    assert ours == theirs
    # Both ways a generation ends are exercised: </s> before the limit, and the limit.
    assert any(o[-1] == backend.eos_id and len(o) < 40 for o in ours)
    assert any(len(o) == 40 and o[-1] != backend.eos_id for o in ours)


@pytest.mark.parametrize("options", [
    {"num_beams": 4},
    {"num_beams": 4, "no_repeat_ngram_size": 3, "length_penalty": 0.6},
    {"num_beams": 3, "length_penalty": 2.0},
], ids=["beams4", "beams4-ngram3-lp0.6", "beams3-lp2"])
def test_beam_search_matches_transformers(backend, tiny_t5_torch, options):
    ids = [backend.encode(t) for t in TEXTS[:4]]
    ours = [backend.generate_ids([i], max_new_tokens=32, **options)[0] for i in ids]
    theirs = [hf_generate(tiny_t5_torch, i, max_new_tokens=32, **options) for i in ids]
    assert ours == theirs


def test_beam_search_differs_from_greedy_somewhere(backend):
    """Guards the comparison above: beams that silently fell back to greedy would still pass it
    if greedy happened to be optimal, so make sure that is not the case everywhere."""
    ids = [backend.encode(t) for t in TEXTS]
    greedy = backend.generate_ids(ids, max_new_tokens=32)
    beams = backend.generate_ids(ids, max_new_tokens=32, num_beams=4)
    assert greedy != beams


def test_no_repeat_ngram_size(backend, tiny_t5_torch):
    ids = [backend.encode(t) for t in TEXTS]
    free = backend.generate_ids(ids, max_new_tokens=40)
    banned = backend.generate_ids(ids, max_new_tokens=40, no_repeat_ngram_size=2)
    assert any(repeats([backend.start_id] + seq, 2) for seq in free), "nothing to ban: pick other inputs"
    assert all(repeats([backend.start_id] + seq, 2) == 0 for seq in banned)
    assert banned == [hf_generate(tiny_t5_torch, i, max_new_tokens=40, no_repeat_ngram_size=2) for i in ids]


def test_min_new_tokens_forces_the_length(backend):
    ids = [backend.encode(t) for t in TEXTS]
    out = backend.generate_ids(ids, max_new_tokens=24, min_new_tokens=24)
    assert [len(o) for o in out] == [24] * len(TEXTS)
    assert all(backend.eos_id not in o for o in out)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_batching_equals_one_by_one(backend, num_beams):
    # Different lengths, so that rows are padded and finish at different steps.
    ids = [backend.encode(t) for t in TEXTS] + [backend.encode(TEXTS[1] + " " + TEXTS[3])]
    one_by_one = [backend.generate_ids([i], max_new_tokens=32, num_beams=num_beams)[0] for i in ids]
    for batch_size in (2, 4, 8):
        assert backend.generate_ids(ids, max_new_tokens=32, num_beams=num_beams,
                                    batch_size=batch_size) == one_by_one


def test_one_inputs_beams_share_a_single_cross_attention_cache(backend, monkeypatch):
    """At beam 4 the cache is copied per beam only when several inputs share the batch; the
    tokens are checked against transformers and against batching above."""
    cross_rows = []
    make_binding = backend.decoder.io_binding

    def recording_binding():
        binding = make_binding()
        bind = binding.bind_ortvalue_input

        def bind_and_record(name, value):
            if ".encoder." in name and value.shape()[2]:  # the first step binds an empty cache
                cross_rows.append(value.shape()[0])
            bind(name, value)

        binding.bind_ortvalue_input = bind_and_record
        return binding

    monkeypatch.setattr(backend.decoder, "io_binding", recording_binding)
    ids = [backend.encode(t) for t in TEXTS[:2]]
    backend.generate_ids(ids[:1], max_new_tokens=12, min_new_tokens=12, num_beams=4)
    steps_with_a_cache = 12 - 1  # the first step makes it; the last token needs no step
    assert len(cross_rows) == steps_with_a_cache * len(backend.cross_past)
    assert set(cross_rows) == {1}
    cross_rows.clear()
    backend.generate_ids(ids, max_new_tokens=12, min_new_tokens=12, num_beams=4, batch_size=2)
    assert cross_rows and set(cross_rows) == {8}


def test_generate_returns_text_and_token_counts(backend, tiny_t5_bundle):
    bundle = load_bundle(tiny_t5_bundle)
    prompts = [fill(bundle.manifest.prompts["short"], t) for t in TEXTS[:3]]
    out = backend.generate(prompts, GenerationOptions(max_new_tokens=20))
    ids = backend.generate_ids([backend.encode(p) for p in prompts], max_new_tokens=20)
    assert [g.text for g in out] == [backend.decode(i) for i in ids]
    assert [g.prompt_tokens for g in out] == [len(backend.encode(p)) for p in prompts]
    assert [g.output_tokens for g in out] == [len([t for t in i if t != backend.eos_id]) for i in ids]
    assert all(g.text.strip() for g in out)


def test_input_budget_leaves_room_for_the_template_and_eos(backend, tiny_t5_bundle):
    bundle = load_bundle(tiny_t5_bundle)
    template = bundle.manifest.prompts["medium"]
    budget = backend.input_budget(template, 160)
    assert budget == bundle.manifest.max_input_tokens - backend.count_tokens(fill(template, "")) - 1
    words = " ".join(["Alice: we agree on the budget."] * 200).split()
    low, high = 0, len(words)  # the most words that fit the budget
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if backend.count_tokens(" ".join(words[:mid])) <= budget else (low, mid - 1)
    assert 0 < low < len(words)
    assert len(backend.encode(fill(template, " ".join(words[:low])))) <= bundle.manifest.max_input_tokens


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_each_phase_hands_its_weight_pages_back_and_tokens_stay_the_same(tiny_t5_bundle):
    b = OnnxT5Backend(load_bundle(tiny_t5_bundle))
    try:
        # ONNX Runtime maps weights.bin; both graphs' mappings were seen while they loaded.
        regions = b.weight_regions
        assert regions["encoder"] and regions["decoder"] and not regions["encoder"] & regions["decoder"]
        weights = b.bundle.file(WEIGHTS)

        def resident(phase: str) -> int:
            return sum(r.resident_kib for region, r in mapped_regions(weights).items() if region in regions[phase])

        assert b.encoder.get_session_options().enable_cpu_mem_arena is False
        # The encoder packs as it goes; the decoder, one row per call, is prepacked at load.
        assert b.encoder.get_session_options().get_session_config_entry("session.disable_prepacking") == "1"
        with pytest.raises(Exception, match="does not have configuration"):
            b.decoder.get_session_options().get_session_config_entry("session.disable_prepacking")
        ids = [b.encode(t) for t in TEXTS]
        first = b.generate_ids(ids, max_new_tokens=24)
        # Decoding done: the encoder's pages are gone from RSS, the decoder's are still there.
        assert resident("encoder") == 0
        assert resident("decoder") > 0
        b.run_encoder(ids[:1])  # the next document's encoder drops the decoder's pages first
        assert resident("decoder") == 0 == resident("encoder")
        # Pages come back from the file, unchanged: same tokens, again and with beams.
        assert b.generate_ids(ids, max_new_tokens=24) == first
        assert b.generate_ids(ids, max_new_tokens=24, num_beams=3) == \
            [b.generate_ids([i], max_new_tokens=24, num_beams=3)[0] for i in ids]
    finally:
        b.close()


def test_measuring_switches_change_no_token(tiny_t5_bundle, backend):
    """prepack_decoder, shed_weight_pages and steady_heap exist for benchmarks/perf: each turns a
    lever off, and the tokens must not notice."""
    ids = [backend.encode(t) for t in TEXTS[:3]]
    expected = [backend.generate_ids(ids, max_new_tokens=16, num_beams=n) for n in (1, 3)]
    plain = OnnxT5Backend(load_bundle(tiny_t5_bundle), prepack_decoder=False, shed_weight_pages=False,
                          steady_heap=False)
    try:
        # The decoder as the encoder: ORT packs its weights on every call, none at load.
        assert plain.decoder.get_session_options().get_session_config_entry("session.disable_prepacking") == "1"
        assert [plain.generate_ids(ids, max_new_tokens=16, num_beams=n) for n in (1, 3)] == expected
        hidden, mask = plain.run_encoder(ids)
        assert hidden.shape[:2] == mask.shape == (3, max(len(i) for i in ids))
        assert mask.sum() == sum(len(i) for i in ids)
    finally:
        plain.close()


def test_threads_knob_reaches_onnx_runtime(tiny_t5_bundle, backend):
    one = OnnxT5Backend(load_bundle(tiny_t5_bundle), threads=1)
    try:
        assert one.encoder.get_session_options().intra_op_num_threads == 1
        assert one.decoder.get_session_options().intra_op_num_threads == 1
        ids = [backend.encode(TEXTS[0])]
        assert one.generate_ids(ids, max_new_tokens=16) == backend.generate_ids(ids, max_new_tokens=16)
    finally:
        one.close()


def test_int8_bundle_summarizes(tiny_t5_int8_bundle, tmp_path):
    from sumctl.runtime import Summarizer

    source = tmp_path / "meeting.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    summarizer = Summarizer(tiny_t5_int8_bundle, max_summary_tokens=24)
    summary = summarizer.summarize(source, length="short")
    assert summary.text
    assert summary.model["backend"] == "onnx-t5" and summary.model["quantization"] == "int8"
    assert summary.model["label"] == "smoke-test model: random weights"


def test_runtime_generation_imports_no_torch_or_transformers(tiny_t5_bundle):
    probe = f"""
import sys
from sumctl.runtime.bundle import load_bundle
from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend
from sumctl.runtime.backends.base import GenerationOptions
b = OnnxT5Backend(load_bundle({str(tiny_t5_bundle)!r}))
assert b.generate(["Alice: hello there."], GenerationOptions(max_new_tokens=8, num_beams=2))
heavy = [m for m in ("torch", "transformers", "optimum") if m in sys.modules]
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def longest_meeting(qmsum_dir: Path) -> Path:
    files = sorted((qmsum_dir / "val").glob("*.json")) or sorted(qmsum_dir.glob("*/*.json"))
    return max(files, key=lambda p: (p.stat().st_size, p.name))


def test_long_qmsum_meeting_is_chapterized_with_every_turn_in_one_chapter(tiny_t5_bundle, qmsum_dir):
    from sumctl.runtime import Summarizer
    from sumctl.runtime.transcript import read_transcript

    path = longest_meeting(qmsum_dir)
    transcript = read_transcript(path)
    assert transcript.word_count() > 15_000, f"{path.name} is not a long meeting"
    bundle = load_bundle(tiny_t5_bundle)
    small = dataclasses.replace(bundle, manifest=dataclasses.replace(bundle.manifest, max_input_tokens=512))
    summarizer = Summarizer(small, max_summary_tokens=16)
    summary = summarizer.summarize(transcript, length="short")

    top = summary.top_chapters()
    assert len(top) > 20 and summary.levels >= 2
    assert summary.text
    n = len(transcript.turns)
    budget = summarizer.backend.input_budget(small.manifest.prompts["medium"], 16)
    assert all(c.input_tokens <= 512 for c in top)  # whole prompts: template, chapter and </s>
    assert top[0].first_turn == 0 and top[-1].last_turn == n - 1
    for before, after in zip(top, top[1:]):
        if after.first_turn == before.last_turn:
            # Only a turn too long for one chapter is cut, and its parts sit side by side.
            turn = transcript.turns[after.first_turn]
            assert summarizer.backend.count_tokens(turn.render()) > budget
        else:
            assert after.first_turn == before.last_turn + 1
    record = json.loads(json.dumps(summary.to_dict()))
    assert len([c for c in record["chapters"] if c["level"] == 0]) == len(top)
