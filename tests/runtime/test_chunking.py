import pytest

from sumctl.runtime.chunking import chapterize
from sumctl.runtime.errors import InputError
from sumctl.runtime.transcript import Turn, read_transcript


def words(text: str) -> int:
    return len(text.split())


def test_short_transcript_is_one_chapter():
    turns = [Turn("A", "one two three"), Turn("B", "four five")]
    chapters = chapterize(turns, 100, words)
    assert len(chapters) == 1 and chapters[0].turns == turns


def test_chapters_respect_budget_and_turn_boundaries():
    turns = [Turn(f"S{i % 3}", " ".join(["w"] * (5 + i % 7))) for i in range(200)]
    chapters = chapterize(turns, 60, words)
    assert len(chapters) > 1
    assert all(words(c.text()) <= 60 for c in chapters)
    assert [t for c in chapters for t in c.turns] == turns
    assert [c.index for c in chapters] == list(range(len(chapters)))
    for before, after in zip(chapters, chapters[1:]):
        assert after.first_turn == before.last_turn + 1


def test_an_overlong_turn_is_cut_at_sentences_never_dropped():
    long_turn = Turn("Ann", " ".join(f"Sentence number {i} is here." for i in range(50)))
    chapters = chapterize([Turn("Bo", "hi"), long_turn, Turn("Bo", "bye")], 40, words)
    assert all(words(c.text()) <= 40 for c in chapters)
    text = " ".join(t.text for c in chapters for t in c.turns if t.speaker == "Ann")
    assert text == long_turn.text
    assert all(t.speaker == "Ann" for c in chapters for t in c.turns if "Sentence" in t.text)


def test_unpunctuated_monologue_is_cut_at_words():
    turn = Turn(None, " ".join(f"w{i}" for i in range(5000)))
    chapters = chapterize([turn], 100, words)
    assert all(words(c.text()) <= 100 for c in chapters)
    assert " ".join(c.text() for c in chapters) == turn.text


def test_tiny_budget_is_refused():
    with pytest.raises(InputError, match="too small"):
        chapterize([Turn("A", "x")], 4, words)


def test_long_qmsum_meeting_every_turn_in_exactly_one_chapter(qmsum_dir):
    longest = qmsum_dir / "train" / "covid_1.json"  # the longest QMSum meeting: 23.7k words
    if not longest.is_file():
        pytest.skip(f"{longest} not found")
    transcript = read_transcript(longest)
    assert transcript.word_count() > 20_000
    chapters = chapterize(transcript.turns, 512, words)
    assert len(chapters) > 30
    seen = []
    for c in chapters:
        assert words(c.text()) <= 512
        seen.extend(range(c.first_turn, c.last_turn + 1))
    # A turn cut across chapters appears in consecutive chapters; every other turn exactly once.
    assert sorted(set(seen)) == list(range(len(transcript.turns)))
    # Nothing is dropped or reordered (a cut turn repeats only its speaker label).
    assert " ".join(t.text for c in chapters for t in c.turns) == " ".join(t.text for t in transcript.turns)
