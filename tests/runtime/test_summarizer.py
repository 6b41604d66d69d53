import json

import pytest

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.extractive import build_extractive_bundle
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import parse_text, read_transcript

MEETING = "\n".join(
    f"{speaker}: {text}" for speaker, text in [
        ("Priya", "We need to decide the release date for the mobile app this week."),
        ("Marco", "QA signed off on everything except the export feature, which still crashes."),
        ("Priya", "Then the release date depends on the export fix landing by Friday."),
        ("Lena", "The payment tests are flaky because the sandbox gateway times out."),
        ("Marco", "I will own the export fix and report on Thursday."),
    ])


@pytest.fixture(scope="module")
def small_budget_bundle(tmp_path_factory):
    # A 120-word input budget forces chapterization on anything longer than a few turns.
    return build_extractive_bundle(tmp_path_factory.mktemp("b"), max_input_tokens=120)


def test_short_transcript_is_summarized_in_one_chapter(small_budget_bundle):
    summary = Summarizer(small_budget_bundle, length="short").summarize(parse_text(MEETING, name="m.txt"))
    assert summary.text and summary.levels == 1 and len(summary.chapters) == 1
    assert summary.model["backend"] == "extractive" and summary.model["sha256"]
    assert summary.length == "short" and summary.turns == 5
    assert len(summary.text.split()) <= 35


def test_long_meeting_is_chapterized_and_reduced_recursively(small_budget_bundle, qmsum_dir):
    path = sorted((qmsum_dir / "val").glob("*.json"))[0]
    transcript = read_transcript(path)
    summary = Summarizer(small_budget_bundle, length="medium").summarize(transcript)
    level0 = summary.top_chapters()
    assert summary.levels >= 2 and len(level0) > 10
    covered = sorted({i for c in level0 for i in range(c.first_turn, c.last_turn + 1)})
    assert covered == list(range(len(transcript.turns)))
    assert summary.chapters[-1].level == summary.levels - 1 and summary.text == summary.chapters[-1].summary.strip()
    assert summary.input_tokens >= transcript.word_count()
    record = json.loads(json.dumps(summary.to_dict()))
    assert record["source_sha256"] == transcript.sha256 and len(record["chapters"]) == len(summary.chapters)
    assert "## Chapters" in summary.to_markdown()


def test_summarize_many_is_lazy(small_budget_bundle, tmp_path):
    paths = []
    for i in range(3):
        (tmp_path / f"m{i}.txt").write_text(MEETING)
        paths.append(tmp_path / f"m{i}.txt")
    paths.append(tmp_path / "missing.txt")
    results = Summarizer(small_budget_bundle).summarize_many(paths)
    assert [next(results).source for _ in range(3)] == [str(p) for p in paths[:3]]
    with pytest.raises(SumctlError, match="missing.txt: not a file"):
        next(results)


def test_unknown_length_is_refused(small_budget_bundle):
    with pytest.raises(SumctlError, match="unknown summary length 'tiny'"):
        Summarizer(small_budget_bundle, length="tiny")
