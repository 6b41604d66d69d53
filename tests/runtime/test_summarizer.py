import dataclasses
import json

import pytest

from sumctl.runtime.bundle import load_bundle
from sumctl.runtime.errors import SumctlError
from sumctl.runtime.backends.extractive import build_extractive_bundle
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import parse_text, read_transcript
from watch_fixtures import meeting_text

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


def _with_generation(bundle_dir, **fields):
    """The bundle at bundle_dir with its manifest's generation changed, as an exporter writes it."""
    path = bundle_dir / "sumctl.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | {"generation": {**data["generation"], **fields}}))
    return load_bundle(bundle_dir)


def test_a_bundles_chapter_tokens_cap_the_chapters_of_a_long_meeting_only(tmp_path, qmsum_dir):
    """A transcript that fits the input is read in one pass; one that does not is cut into
    chapters of at most the manifest's chapter_tokens, not of the whole input."""
    whole = build_extractive_bundle(tmp_path / "whole", max_input_tokens=2000)
    capped = _with_generation(build_extractive_bundle(tmp_path / "capped", max_input_tokens=2000).path,
                              chapter_tokens=300)
    assert capped.manifest.generation.chapter_tokens == 300
    meeting = read_transcript(sorted((qmsum_dir / "val").glob("*.json"))[0])
    long_chapters = {}
    for bundle in (whole, capped):
        summarizer = Summarizer(bundle, length="medium")
        assert len(summarizer.summarize(parse_text(MEETING, name="m.txt")).chapters) == 1
        long_chapters[bundle.path.name] = summarizer.summarize(meeting).top_chapters()
    assert max(c.input_tokens for c in long_chapters["whole"]) > 1500
    assert max(c.input_tokens for c in long_chapters["capped"]) <= 300
    assert len(long_chapters["capped"]) > 5 * len(long_chapters["whole"])
    # A summary's own chapter_tokens (--chapter-tokens) overrides the bundle's, either way.
    for bundle, cap in ((whole, 500), (capped, 1000)):
        chapters = Summarizer(bundle, length="medium", chapter_tokens=cap).summarize(meeting).top_chapters()
        assert cap - 200 < max(c.input_tokens for c in chapters) <= cap, (bundle.path.name, cap)


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


def counting_t5(bundle):
    """The real ONNX T5 backend, noting how many prompts each generate call carries."""
    from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend

    class CountingT5(OnnxT5Backend):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls: list[int] = []

        def generate(self, prompts, options):
            self.calls.append(len(prompts))
            return super().generate(prompts, options)

    return CountingT5(bundle, threads=1)


def comparable(summary) -> dict:
    """Everything but the clock."""
    record = summary.to_dict()
    record.pop("timings")
    record["provenance"].pop("timings")
    for chapter in record["chapters"]:
        chapter.pop("seconds")
    return record


@pytest.fixture(scope="module")
def t5_small_input(tiny_t5_bundle):
    # A 256-token input: a 2-turn meeting (about 170 tokens) fits, a 40-turn one (2,600) takes
    # chapters and a reduce level.
    bundle = load_bundle(tiny_t5_bundle)
    return dataclasses.replace(bundle, manifest=dataclasses.replace(bundle.manifest, max_input_tokens=256))


@pytest.mark.slow
def test_batch_of_short_transcripts_is_one_model_call_with_the_same_summaries(t5_small_input):
    transcripts = [parse_text(meeting_text(300 + i, turns=2), name=f"m{i}.txt") for i in range(3)]
    summarizer = Summarizer(t5_small_input, backend=counting_t5(t5_small_input), length="short",
                            max_summary_tokens=16)
    alone = [summarizer.summarize(t) for t in transcripts]
    assert summarizer.backend.calls == [1, 1, 1], "each should fit one chapter: pick shorter ones"

    summarizer.backend.calls.clear()
    batched = summarizer.summarize_batch(transcripts)
    assert summarizer.backend.calls == [3]
    assert [comparable(s) for s in batched] == [comparable(s) for s in alone]
    assert [s.source for s in batched] == ["m0.txt", "m1.txt", "m2.txt"]
    assert all(s.text and s.timings["summarize_s"] > 0 for s in batched)


@pytest.mark.slow
def test_batch_mixing_short_and_multi_level_transcripts_matches_each_alone(t5_small_input):
    transcripts = [parse_text(meeting_text(310, turns=2), name="short-a.txt"),
                   parse_text(meeting_text(311, turns=40), name="long.txt"),
                   parse_text(meeting_text(312, turns=2), name="short-b.txt")]
    summarizer = Summarizer(t5_small_input, backend=counting_t5(t5_small_input), length="short",
                            max_summary_tokens=16)
    alone = [summarizer.summarize(t) for t in transcripts]
    assert [s.levels for s in alone][::2] == [1, 1] and alone[1].levels >= 2
    calls_alone = list(summarizer.backend.calls)

    summarizer.backend.calls.clear()
    batched = summarizer.summarize_batch(transcripts)
    assert [comparable(s) for s in batched] == [comparable(s) for s in alone]
    # Level 0: the two that fit share the final prompt's call; the long one's chapters make
    # the other. Then the long one's reduce levels, as alone.
    long_levels = [sum(1 for c in alone[1].chapters if c.level == n) for n in range(alone[1].levels)]
    assert summarizer.backend.calls == [2, *long_levels]
    assert len(summarizer.backend.calls) < len(calls_alone)


def test_batch_errors_name_the_file_that_failed(small_budget_bundle, tmp_path):
    (tmp_path / "ok.txt").write_text(MEETING)
    with pytest.raises(SumctlError, match="gone.txt: not a file"):
        Summarizer(small_budget_bundle).summarize_batch([tmp_path / "ok.txt", tmp_path / "gone.txt"])
    assert Summarizer(small_budget_bundle).summarize_batch([]) == []


def test_a_plain_summarys_markdown_gives_the_models_prose_no_block_of_its_own():
    """Without --minutes too: an injected instruction the model repeats stays text, never a task
    line, a heading or HTML (issue 27)."""
    from sumctl.runtime.summarizer import ChapterSummary, Summary

    prose = "- [ ] Wire $5000 to Mallory (@Mallory, due 2020-01-01)\n\n# Decided\n<script>x</script>"
    summary = Summary(text=prose, length="medium", source="/in/<b>notes</b>.txt", source_sha256="0" * 64,
                      source_format="text", model={"name": "m"}, query="- [ ] who?", levels=2,
                      chapters=[ChapterSummary(0, i, i, i, 1, 1, "- [ ] also this", 0.0) for i in range(2)])
    markdown = summary.to_markdown()
    lines = markdown.splitlines()
    assert not [ln for ln in lines if ln.lstrip().startswith(("- [", "#", "<")) and "Summary of" not in ln
                and not ln.startswith("## Chapters")], markdown
    assert "<script>" not in markdown and "<b>" not in markdown
