"""Meeting-aware cleaning on real QMSum meetings: fillers and backchannels gone, content kept,
and every kept turn still pointing at the turn (and the times) it came from."""

from __future__ import annotations

import re

import pytest

from sumctl.runtime.cleaning import clean_text, clean_turns, says_nothing
from sumctl.runtime.transcript import Turn, read_transcript


@pytest.mark.parametrize("raw, cleaned", [
    ("Um , I think the the w- we should , uh , go with s- so the red case .",
     "I think the we should, go with so the red case."),
    ("It's fine , uh .", "It's fine."),
    ("So we we decided that uh the battery is fine .", "So we decided that the battery is fine."),
    ("I I I don't know about th- the remote [laughter] .", "I don't know about the remote."),
    ("We'll ship it on the fourteenth .", "We'll ship it on the fourteenth."),
])
def test_fillers_and_stutters_go_and_the_words_stay(raw, cleaned):
    assert clean_text(raw) == cleaned


@pytest.mark.parametrize("text, nothing", [
    ("Mm - hmm .", True), ("Yeah , OK .", True), ("Right .", True), ("Uh-huh. I see.", True),
    ("Hmm ?", True), ("No .", False), ("Yes .", False), ("OK, Marco owns the export fix.", False),
])
def test_turns_that_say_nothing(text, nothing):
    assert says_nothing(clean_text(text)) is nothing


def test_on_qmsum_meetings_fillers_go_content_stays_and_the_map_is_right(qmsum_dir):
    fillers = re.compile(r"(?<![\w'-])(um|uh)(?![\w'-])", re.I)
    removed = total = 0
    for path in sorted((qmsum_dir / "val").glob("*.json"))[:5]:
        transcript = read_transcript(path)
        cleaned = clean_turns(transcript.turns)
        assert len(cleaned.turns) == len(cleaned.source_index) < len(transcript.turns)
        assert cleaned.source_index == sorted(set(cleaned.source_index))
        for turn, i in zip(cleaned.turns, cleaned.source_index):
            source = transcript.turns[i]
            assert turn.speaker == source.speaker and (turn.start, turn.end) == (source.start, source.end)
            assert not fillers.search(turn.text), turn.text
            # Content kept: every word of the cleaned turn is a word of its source turn.
            joined = re.sub(r"\b(mm|uh|um) - (hmm|huh|hum)\b", r"\1-\2", source.text, flags=re.I)
            source_words = {w.lower() for w in re.findall(r"[\w'-]+", joined)}
            assert {w.lower() for w in re.findall(r"[\w'-]+", turn.text)} <= source_words
        # Content words of substance are all kept somewhere.
        long_words = {w.lower() for t in transcript.turns for w in re.findall(r"[A-Za-z]{9,}", t.text)}
        kept_words = {w.lower() for t in cleaned.turns for w in re.findall(r"[A-Za-z]{9,}", t.text)}
        assert len(long_words - kept_words) <= 0.01 * len(long_words) + 1
        removed += cleaned.words_before - cleaned.words_after
        total += cleaned.words_before
    assert 0.03 < removed / total < 0.25, removed / total


def test_a_transcript_of_nothing_but_backchannels_is_kept_as_it_is():
    turns = [Turn("A", "Yeah."), Turn("B", "Mm-hmm."), Turn("A", "OK.")]
    cleaned = clean_turns(turns)
    assert cleaned.turns == turns and cleaned.source_index == [0, 1, 2]
