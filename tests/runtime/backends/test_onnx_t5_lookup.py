"""Prompt-lookup decoding in the T5 backend (OnnxT5Backend(lookup=True)): the decoder is fed the
drafts with each step, and the tokens are greedy decoding's, token for token, on an fp32 bundle."""

from __future__ import annotations

import json

import pytest

from sumctl.runtime.backends.base import GenerationOptions
from sumctl.runtime.backends.onnx_t5 import T5_LOOKUP_DEFAULT, OnnxT5Backend
from sumctl.runtime.bundle import load_bundle
from sumctl.runtime.prompts import fill

pytestmark = pytest.mark.slow

INPUTS = 20
MAX_NEW_TOKENS = 32


def _prompts(bundle, dialogsum_file) -> list[list[int]]:
    rows = [json.loads(line) for line in dialogsum_file.read_text(encoding="utf-8").splitlines()[:INPUTS]]
    return [fill(bundle.manifest.prompts["short"], r["dialogue"]) for r in rows]


@pytest.fixture(scope="module")
def backends(tiny_t5_bundle):
    bundle = load_bundle(tiny_t5_bundle)
    plain, lookup = (OnnxT5Backend(bundle, threads=1, lookup=on) for on in (False, True))
    yield bundle, plain, lookup
    plain.close()
    lookup.close()


@pytest.mark.parametrize("ngram", [0, 3])
def test_the_lookup_gives_greedy_tokens_on_20_dialogues(backends, dialogsum_file, ngram):
    """With and without the n-gram ban, which each drafted position must apply as greedy does.
    Kept drafts are what the test is about: a random model repeats itself, and the prompt and its
    own output give drafts that greedy picks."""
    bundle, plain, lookup = backends
    before = dict(lookup.lookup_counts)
    for prompt in _prompts(bundle, dialogsum_file):
        ids = plain.encode(prompt)
        expected = plain.generate_ids([ids], max_new_tokens=MAX_NEW_TOKENS, no_repeat_ngram_size=ngram)
        assert lookup.generate_ids([ids], max_new_tokens=MAX_NEW_TOKENS, no_repeat_ngram_size=ngram) == expected
    counts = {k: lookup.lookup_counts[k] - before[k] for k in before}
    assert counts["kept"] > 0 and counts["drafted"] > counts["kept"], counts
    assert plain.lookup_counts == {"decodes": 0, "drafted": 0, "kept": 0}


def test_the_lookup_keeps_min_new_tokens_and_the_token_limit(backends, dialogsum_file):
    bundle, plain, lookup = backends
    ids = plain.encode(_prompts(bundle, dialogsum_file)[0])
    for limit, minimum in ((1, 0), (5, 0), (MAX_NEW_TOKENS, 20)):
        expected = plain.generate_ids([ids], max_new_tokens=limit, min_new_tokens=minimum)[0]
        got = lookup.generate_ids([ids], max_new_tokens=limit, min_new_tokens=minimum)[0]
        assert got == expected and len(got) <= limit and len(got) >= min(minimum, limit)


def test_the_lookup_is_off_by_default_and_only_for_one_greedy_input(backends, dialogsum_file):
    bundle, plain, lookup = backends
    assert T5_LOOKUP_DEFAULT is False and OnnxT5Backend(bundle, threads=1).lookup is False
    prompts = _prompts(bundle, dialogsum_file)[:2]
    before = dict(lookup.lookup_counts)
    beams = GenerationOptions(max_new_tokens=16, num_beams=2)
    assert lookup.generate(prompts[:1], beams) == plain.generate(prompts[:1], beams)
    greedy = GenerationOptions(max_new_tokens=16)
    assert lookup.generate(prompts, greedy) == plain.generate(prompts, greedy)  # one batch of two
    assert lookup.lookup_counts == before
