"""`answer_question`: rank a meeting's chapters against a question, answer from the best ones
that fit, and cite them by the turns as written. Real chunking, cleaning, BM25 and Summarizer,
over the extractive baseline (a real backend whose token is a word, so budgets are countable)."""

import json
from pathlib import Path

import pytest

from sumctl.runtime.backends.extractive import build_extractive_bundle
from sumctl.runtime.chunking import chapterize
from sumctl.runtime.errors import InputError
from sumctl.runtime.retrieval import answer_question, rank_chapters
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import Transcript, Turn, read_transcript

STANDUP = Path(__file__).resolve().parents[2] / "examples" / "standup.vtt"
QUESTION = "What did we decide about the kinetic battery?"
GENERIC = ["the budget for the next quarter and the hiring plan", "the office move and the parking",
           "the release notes and the login page", "the customer survey and the pricing page",
           "the server migration and the database backups", "the onboarding docs and training"]


def meeting_with_a_battery_talk() -> tuple[Transcript, list[int]]:
    """42 turns as written: generic talk with a backchannel after every turn (cleaning drops
    those, so cleaned and written turn numbers differ by 2x), and, late on, three turns about
    the kinetic battery. Returns the transcript and the written indexes of those three."""
    turns, battery = [], []
    for i in range(21):
        if i in (15, 16, 17):
            battery.append(len(turns))
            turns.append(Turn("Ann", f"The kinetic battery charges when you shake the remote, "
                                     f"point {i}, and we decided the kinetic battery stays."))
        else:
            turns.append(Turn("Bob", f"We talked about {GENERIC[i % len(GENERIC)]}, item {i}, "
                                     "and agreed to revisit it next week with numbers."))
        turns.append(Turn("Cy", "Yeah, okay, right, sure, yeah, okay."))
    return Transcript(turns=turns, source="battery.txt", format="text", sha256="abc"), battery


@pytest.fixture(scope="module")
def small_input(tmp_path_factory):
    # 150 words of input: the query prompt takes about 30, so a chapter holds five or six turns
    # and the 21 spoken turns make several chapters.
    return build_extractive_bundle(tmp_path_factory.mktemp("b") / "small", max_input_tokens=150)


@pytest.fixture(scope="module")
def roomy(tmp_path_factory):
    return build_extractive_bundle(tmp_path_factory.mktemp("b") / "roomy")


def test_rank_chapters_puts_the_chapter_with_the_distinctive_term_first():
    turns = [Turn("Ann", "The budget for next quarter is flat."),
             Turn("Bob", "Hiring waits until the budget is approved."),
             Turn("Ann", "The kinetic battery replaces the coin cell in the remote."),
             Turn("Bob", "The office move is in March.")]
    chapters = chapterize(turns, 12, lambda text: len(text.split()))
    assert len(chapters) == 4  # one turn a chapter: the ranking, not the packing, is tested
    ranking = rank_chapters(chapters, "Why the kinetic battery?")
    assert ranking[0][0] == 2 and ranking[0][1] > 0
    assert all(score == 0 for _, score in ranking[1:])
    assert sorted(i for i, _ in ranking) == [0, 1, 2, 3]
    # Two chapters share "budget": both outrank the rest, and a word none has scores nothing.
    assert {i for i, _ in rank_chapters(chapters, "the budget")[:2]} == {0, 1}
    assert rank_chapters(chapters, "zebra crossing") == [(0, 0.0), (1, 0.0), (2, 0.0), (3, 0.0)]


def test_a_long_meeting_is_answered_from_the_chapter_about_the_question(small_input):
    transcript, battery = meeting_with_a_battery_talk()
    summarizer = Summarizer(small_input)
    answer = answer_question(summarizer, transcript, QUESTION, length="short")

    assert answer.retrieved and answer.chapters >= 4
    assert 1 <= len(answer.citations) < answer.chapters
    best = max(answer.citations, key=lambda c: c.score)
    # Written turn numbers: with the backchannels counted, the battery turns are inside.
    assert best.first_turn <= battery[0] and battery[-1] <= best.last_turn, (best, battery)
    assert all("kinetic" in transcript.turns[i].text for i in battery)
    cited = [i for c in answer.citations for i in range(c.first_turn, c.last_turn + 1)]
    assert len(cited) < len(transcript.turns) / 2
    assert [c.chapter for c in answer.citations] == sorted(c.chapter for c in answer.citations)
    assert answer.text and answer.question == QUESTION and answer.length == "short"
    assert answer.source == "battery.txt" and answer.source_sha256 == "abc"
    assert answer.model["backend"] == "extractive" and answer.timings["answer_s"] >= 0
    assert best.start is None and best.end is None  # plain text has no times

    record = json.loads(json.dumps(answer.to_dict()))
    assert record["citations"][0].keys() == {"chapter", "first_turn", "last_turn", "start", "end", "score"}
    markdown = answer.to_markdown()
    assert markdown.startswith(f"**Question:** {QUESTION}\n\n{answer.text}")
    assert (f"Sources: chapter {best.chapter + 1} of {answer.chapters} "
            f"(turns {best.first_turn + 1}-{best.last_turn + 1})") in markdown


def test_top_k_caps_the_chapters_read(small_input):
    transcript, _ = meeting_with_a_battery_talk()
    summarizer = Summarizer(small_input)
    roomy_answer = answer_question(summarizer, transcript, QUESTION, length="short", top_k=None)
    one = answer_question(summarizer, transcript, QUESTION, length="short", top_k=1)
    assert len(one.citations) == 1 and one.citations[0] in roomy_answer.citations
    with pytest.raises(InputError, match="top_k=0"):
        answer_question(summarizer, transcript, QUESTION, top_k=0)


def test_without_cleaning_the_chapters_are_the_written_turns(small_input):
    transcript, battery = meeting_with_a_battery_talk()
    answer = answer_question(Summarizer(small_input, clean=False), transcript, QUESTION, length="short")
    best = max(answer.citations, key=lambda c: c.score)
    # The backchannels are part of what the chapters pack, so the talk can straddle two.
    assert any(best.first_turn <= i <= best.last_turn for i in battery), (best, battery)
    assert answer.retrieved and len(answer.citations) < answer.chapters
    # They also take room: more chapters than with cleaning.
    cleaned = answer_question(Summarizer(small_input), transcript, QUESTION, length="short")
    assert answer.chapters > cleaned.chapters


def test_a_meeting_that_fits_is_read_whole_and_says_so(roomy):
    transcript = read_transcript(STANDUP)
    answer = answer_question(Summarizer(roomy), transcript, "Who owns the export fix?")
    assert not answer.retrieved and answer.chapters == 1
    [whole] = answer.citations
    assert (whole.chapter, whole.first_turn, whole.last_turn) == (0, 0, len(transcript.turns) - 1)
    assert whole.score is None
    assert whole.start == transcript.turns[0].start and whole.end == transcript.turns[-1].end
    assert "Sources: the whole meeting (turns 1-" in answer.to_markdown()
    assert "0:01-0:57" in answer.sources_line(), answer.sources_line()


def test_questions_that_leave_no_room_or_ask_nothing_are_refused(small_input):
    transcript, _ = meeting_with_a_battery_talk()
    summarizer = Summarizer(small_input)
    with pytest.raises(InputError, match="the question is empty"):
        answer_question(summarizer, transcript, " \n ")
    with pytest.raises(InputError) as refused:
        answer_question(summarizer, transcript, "why " * 200)
    message = str(refused.value)
    assert message.startswith("battery.txt: the question is 200 tokens")
    assert "model's input budget" in message and "shorten the question" in message
