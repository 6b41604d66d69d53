"""The extractive baseline selects from the transcript only: never from the instruction or the
question that sumctl's prompts wrap around it (issue 27, case 9)."""

import re

import pytest

from sumctl.runtime.backends.base import GenerationOptions
from sumctl.runtime.backends.extractive import ExtractiveBackend, build_extractive_bundle
from sumctl.runtime.prompts import LENGTHS, VERDICT_INSTRUCTION, default_templates, fill
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import parse_text

MEETING = """Priya: Good morning, let's go through the export problem first.
Marco: The export still fails on large files, so I will own the export fix this week.
Lena: I will write up the test plan and share it tomorrow with everyone.
Sam: We agreed to ship the release on October fourteenth after the review.
Priya: Does anyone know whether the sandbox gateway can be replaced by a local fake?
"""
SENTENCES = {s.split(": ", 1)[1] for s in MEETING.splitlines()}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_extractive_bundle(tmp_path_factory.mktemp("bundle") / "extractive")


def from_transcript_only(text: str) -> bool:
    """Every sentence of `text` is a sentence of the meeting (or the end of one, after a name)."""
    pieces = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]
    return bool(pieces) and all(any(p.endswith(s) or s.startswith(p) for s in SENTENCES) for p in pieces)


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("query", [
    "What did Marco say about the export?",
    # A question that is itself long and "central": it shares every content word of the meeting.
    "Who will own the export fix, write up the test plan, share it tomorrow, and ship the "
    "release on October fourteenth after the review of the sandbox gateway?",
])
def test_a_query_answer_quotes_the_transcript_never_the_prompt(bundle, length, query):
    summary = Summarizer(bundle, length=length).summarize(parse_text(MEETING, name="m.txt"), query=query)
    assert summary.query == query
    assert "Answer the question" not in summary.text and "Question:" not in summary.text
    assert query not in summary.text and "using only what the transcript says" not in summary.text
    assert from_transcript_only(summary.text), summary.text


@pytest.mark.parametrize("key", sorted(default_templates()))
def test_every_default_template_is_taken_off_the_transcript(bundle, key):
    # A question with braces, a colon and a break marker: any text may fill the query slot.
    template = default_templates()[key].replace("{query}", "What about {braces}: --- the export?")
    [generation] = ExtractiveBackend(bundle).generate([fill(template, MEETING)],
                                                      GenerationOptions(max_new_tokens=60))
    assert from_transcript_only(generation.text), generation.text


def test_a_hybrid_verdict_prompt_is_taken_off_the_transcript(bundle):
    backend = ExtractiveBackend(bundle)
    prompt = fill(VERDICT_INSTRUCTION.replace("{item}", "Marco owns the export fix and ships it")
                  .replace("{kind}", "an action item"), MEETING)
    [generation] = backend.generate([prompt], GenerationOptions(max_new_tokens=60))
    assert "Answer yes or no" not in generation.text and "Is \"" not in generation.text
    assert from_transcript_only(generation.text), generation.text


def test_a_bare_prompt_is_summarized_as_before(bundle):
    backend = ExtractiveBackend(bundle)
    [generation] = backend.generate([MEETING], GenerationOptions(max_new_tokens=60))
    assert from_transcript_only(generation.text)
    assert generation.prompt_tokens == len(MEETING.split())
