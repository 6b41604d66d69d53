import random
import re
import time

import pytest

from sumctl.runtime.chunking import chapterize
from sumctl.runtime.errors import InputError
from sumctl.runtime.transcript import Turn, parse_text, read_transcript


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


def one_by_one(parts: list[str], room: int, count) -> list[str]:
    """How _split_turn packed sentences before issue 27: re-count after every appended part."""
    packed: list[str] = []
    for part in parts:
        candidate = f"{packed[-1]} {part}" if packed else part
        if packed and count(candidate) <= room:
            packed[-1] = candidate
        else:
            packed.append(part)
    return packed


@pytest.fixture(scope="module")
def words_backend(tmp_path_factory):
    from sumctl.runtime.backends.extractive import ExtractiveBackend, build_extractive_bundle

    return ExtractiveBackend(build_extractive_bundle(tmp_path_factory.mktemp("b") / "extractive"))


def test_a_20000_cue_monologue_is_chaptered_in_seconds_and_every_chapter_fits(words_backend):
    # Issue 27: 142 s, all in re-counting the growing piece (80,018 counts of up to 200k words).
    from sumctl.benchmarks.perf.chunking_speed import one_speaker_vtt
    from sumctl.runtime.prompts import default_templates

    turns = parse_text(one_speaker_vtt(20_000), name="long.vtt").turns
    assert len(turns) == 1
    count = words_backend.count_tokens
    for budget in (words_backend.input_budget(default_templates()["medium"], 90), 2_000):
        started = time.perf_counter()
        chapters = chapterize(turns, budget, count)
        assert time.perf_counter() - started < 10
        assert len(chapters) > 1 and all(count(c.text()) <= budget for c in chapters)
        assert " ".join(t.text for c in chapters for t in c.turns) == turns[0].text


@pytest.mark.parametrize("count", [
    words,
    lambda text: len(text.split()) + 2,  # a BOS and an EOS on every call: parts over-count
    lambda text: (len(text) + 3) // 4,  # characters: a joined text counts the spaces
    lambda text: len(re.findall(r"\w+|[^\w\s]", text)),  # punctuation its own token
], ids=["words", "bos_eos", "chars", "punct"])
def test_cut_pieces_are_the_ones_appending_sentence_by_sentence_gives(count):
    rng = random.Random(27)
    vocab = "the export fails Marco will fix it by Friday does ship ok antidisestablishment 2026-10-09".split()
    for _ in range(60):
        sentences = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 6))) + rng.choice(".!?")
                     for _ in range(rng.randint(5, 120))]
        turn = Turn(rng.choice(["Ann", None]), " ".join(sentences))
        budget = rng.randint(40, 150)
        chapters = chapterize([turn], budget, count)
        assert all(count(c.text()) <= budget for c in chapters)
        if len(chapters) == 1:
            continue
        label = count(f"{turn.speaker}: ") if turn.speaker else 0
        expected = one_by_one(sentences, max(4, budget - label - 2), count)
        assert [t.text for c in chapters for t in c.turns] == expected
