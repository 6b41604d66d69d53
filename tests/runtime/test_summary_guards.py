"""The Summarizer's guards, end to end: a degenerate generation is retried once with stronger
settings, flagged if it stays degenerate, and never passed into the reduce step as a loop.
The model is a plug-in backend registered through the real registry, that loops on demand."""

from __future__ import annotations

import re

import pytest

from backend_fixtures import plugin_backend

from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import Transcript, Turn

LOOPER = '''
from sumctl.runtime.backends.extractive import ExtractiveBackend
from sumctl.runtime.backends.base import Generation

class LooperBackend(ExtractiveBackend):
    """Loops ("Grad A: Mm-hmm." would be a chapter's fate) unless told to stop repeating;
    with `stubborn`, loops anyway."""
    name = "looper-test"
    extractive = False
    honours_stronger = True
    prompts = []
    stubborn = False

    def generate(self, prompts, options):
        LooperBackend.prompts.extend((p, options) for p in prompts)
        if options.repetition_penalty is None or LooperBackend.stubborn:
            return [Generation("The team agreed. " * 30, 10, 90) for p in prompts]
        return [Generation("The team agreed to ship the export fix on Friday.", 10, 11)
                for p in prompts]
'''


@pytest.fixture
def looper(tmp_path, monkeypatch):
    return plugin_backend(tmp_path, monkeypatch, LOOPER, "sumctl_looper_test", "LooperBackend",
                          name="looper-test", max_input_tokens=60)


def meeting(turns: int) -> Transcript:
    return Transcript([Turn("Marco" if i % 2 else "Lena",
                            # Says what the fake model writes, so that the faithfulness check
                            # keeps it and only the loop guards act.
                            f"Item {i}: we reviewed the payment tests. Friday is when we agreed "
                            f"that the export fix will ship, number {i}.")
                       for i in range(turns)], "standup.txt", "text")


def test_a_loop_is_retried_with_stronger_settings_and_the_retry_kept(looper):
    bundle, backend = looper
    summary = Summarizer(bundle).summarize(meeting(2))
    assert summary.text == "The team agreed to ship the export fix on Friday."
    assert summary.quality_flags == [] and summary.chapters[-1].retried
    first, second = backend.prompts
    assert first[1].repetition_penalty is None and second[1].repetition_penalty >= 1.3
    assert second[1].no_repeat_ngram_size in (2, 3)


def test_a_stubborn_loop_is_flagged_and_cut_before_the_reduce_step(looper):
    bundle, backend = looper
    backend.stubborn = True
    summary = Summarizer(bundle).summarize(meeting(12))
    assert summary.levels >= 2
    level0 = summary.top_chapters()
    assert len(level0) > 1 and all(c.quality_flags == ["loop"] and c.retried for c in level0)
    assert "loop" in summary.quality_flags
    # What the reduce step was given holds each chapter's loop once, not thirty times.
    reduce_prompts = [p for p, options in backend.prompts[2 * len(level0):]]
    assert reduce_prompts and all(len(re.findall("The team agreed", p)) <= len(level0)
                                  for p in reduce_prompts)
    markdown = summary.to_markdown()
    assert "**Warning:** this summary looks degenerate (loop" in markdown
    assert "(flagged: loop)" in markdown
    record = summary.to_dict()
    assert "loop" in record["quality_flags"] and record["chapters"][0]["retried"] is True


def test_guard_off_passes_output_through_and_measure_only_flags(looper):
    bundle, backend = looper
    summary = Summarizer(bundle, guard="off").summarize(meeting(2))
    assert summary.text.startswith("The team agreed. The team agreed.")
    assert summary.quality_flags == [] and len(backend.prompts) == 1
    measured = Summarizer(bundle, guard="measure").summarize(meeting(2))
    assert measured.text == summary.text and measured.quality_flags == ["loop"]
    assert len(backend.prompts) == 2 and not measured.chapters[0].retried


def test_the_query_is_asked_of_every_chapter_and_every_reduce_level(looper):
    from sumctl.runtime.bundle import load_bundle, write_manifest
    from sumctl.runtime.prompts import query_key

    bundle, backend = looper
    question = "What did the group decide about the export fix?"
    summary = Summarizer(bundle).summarize(meeting(12), query=question)
    assert summary.levels >= 2 and summary.query == question
    levels = {c.level for c in summary.chapters}
    assert len(levels) >= 2 and len(backend.prompts) >= len(summary.chapters)
    assert all(f"Question: {question}" in prompt for prompt, _ in backend.prompts)
    assert f"**Question:** {question}" in summary.to_markdown()
    # Without a question: the plain prompts, no question anywhere.
    backend.prompts.clear()
    plain = Summarizer(bundle).summarize(meeting(12))
    assert plain.query is None and not any("Question:" in p for p, _ in backend.prompts)
    # A bundle exported before query prompts existed gets the default query prompt.
    old = load_bundle(bundle)
    for length in ("long", "medium", "short"):
        old.manifest.prompts.pop(query_key(length), None)
    write_manifest(old.path, old.manifest)
    backend.prompts.clear()
    Summarizer(bundle).summarize(meeting(2), query=question)
    assert all(f"Question: {question}" in p for p, _ in backend.prompts)
