"""benchmarks/eval/faithfulness_labels.json and the scoring of benchmarks/perf/faithfulness.py,
without a model."""

from __future__ import annotations

import pytest

from sumctl.benchmarks.perf import faithfulness


@pytest.fixture(scope="module")
def labels():
    return faithfulness.load_labels()


def test_labels_file_has_the_thirty_items_each_sentence_labelled(labels):
    assert labels["set"].startswith("qmsum val specific, seed 0, first 30")
    assert labels["labelled_by"].startswith("reading, sentence by sentence")
    items = labels["items"]
    assert len(items) == 30
    assert len({item["id"] for item in items}) == 30
    for item in items:
        assert item["id"] and item["query"]
        assert item["sentences"], item["id"]
        for s in item["sentences"]:
            assert s["text"].strip() == s["text"] and s["text"]
            assert s["label"] in faithfulness.LABEL_VALUES, (item["id"], s)
            if s["label"] == "unsupported":
                assert s.get("reason", "").strip(), (item["id"], s["text"])


def test_labels_hold_no_transcript_text(labels):
    allowed = {"id", "query", "sentences"}
    for item in labels["items"]:
        assert set(item) <= allowed, set(item) - allowed
        for s in item["sentences"]:
            assert set(s) <= {"text", "label", "reason"}


def test_labelled_items_are_the_seeded_sample_of_quality_py(labels):
    """The ids are quality.py's seed-0 QMSum sample, first 30, in order (where ../shared has it)."""
    if not (faithfulness.SHARED / "qmsum" / "val").is_dir():
        pytest.skip("../shared/data/qmsum is not here")
    items = faithfulness.load_items()
    assert [r["id"] for r in items] == [item["id"] for item in labels["items"]]
    assert [r["query"] for r in items] == [item["query"] for item in labels["items"]]


TINY_LABELS = {"items": [
    {"id": "a/q0", "query": "q", "sentences": [
        {"text": "The team discussed the remote.", "label": "supported"},
        {"text": "They chose yellow.", "label": "supported"}]},
    {"id": "b/q1", "query": "q", "sentences": [
        {"text": "Marketing agreed on the budget.", "label": "unsupported",
         "reason": "Marketing disagreed"},
        {"text": "The price is 25 euros.", "label": "supported"},
        {"text": "The launch is in May.", "label": "unsupported", "reason": "no date was said"}]}]}


def test_score_counts_and_rate_on_a_hand_made_pair():
    summaries = [{"id": "a/q0", "summary": "The team discussed the remote. They chose yellow."},
                 {"id": "b/q1", "summary": "Marketing agreed on the budget. The price is 25 euros. "
                                           "The launch is in May. Everyone was happy."}]
    result = faithfulness.score(summaries, TINY_LABELS)
    assert (result["sentences"], result["labelled"], result["unsupported"], result["unlabelled"]) \
        == (6, 5, 2, 1)
    assert result["unlabelled_sentences"] == [{"id": "b/q1", "text": "Everyone was happy."}]
    assert result["items_with_unsupported"] == 1
    rate = result["unsupported_rate"]
    assert rate["mean"] == pytest.approx(2 / 5)
    assert 0 <= rate["low"] <= rate["mean"] <= rate["high"] <= 1


def test_score_matches_sentences_by_item_and_exact_text():
    """A sentence labelled under another item, or differing by a word, is unlabelled."""
    summaries = [{"id": "a/q0", "summary": "Marketing agreed on the budget. They chose yellow!"}]
    result = faithfulness.score(summaries, TINY_LABELS)
    assert (result["labelled"], result["unsupported"], result["unlabelled"]) == (0, 0, 2)
    assert result["unsupported_rate"]["mean"] is None


def test_score_drops_an_unsupported_sentence_to_a_lower_rate():
    """What a fix that drops unsupported sentences would be scored by: same labels, fewer hits."""
    before = [{"id": "b/q1", "summary": "Marketing agreed on the budget. The price is 25 euros."}]
    after = [{"id": "b/q1", "summary": "The price is 25 euros."}]
    assert faithfulness.score(before, TINY_LABELS)["unsupported_rate"]["mean"] == pytest.approx(0.5)
    assert faithfulness.score(after, TINY_LABELS)["unsupported_rate"]["mean"] == 0.0


def test_interval_is_pooled_over_sentences_and_resamples_items():
    # One item 1 of 1 unsupported, one 0 of 9: pooled 10%, where a mean of item rates says 50%.
    rate = faithfulness.ratio_interval([1, 0], [1, 9], seed=0)
    assert rate["mean"] == pytest.approx(0.1)
    assert rate["low"] == 0.0 and rate["high"] == 1.0
    assert faithfulness.ratio_interval([1, 0], [1, 9], seed=0) == rate


def test_labelled_summaries_rejoined_score_as_their_labels(labels):
    """Each item's sentences, joined back into its summary, split into the same sentences (so the
    file's texts are what the splitter gives) and score as the labels count them."""
    summaries = [{"id": item["id"], "summary": " ".join(s["text"] for s in item["sentences"])}
                 for item in labels["items"]]
    result = faithfulness.score(summaries, labels)
    total = sum(len(item["sentences"]) for item in labels["items"])
    unsupported = sum(s["label"] == "unsupported" for item in labels["items"] for s in item["sentences"])
    assert (result["sentences"], result["labelled"], result["unlabelled"]) == (total, total, 0)
    assert result["unsupported"] == unsupported
    assert result["unsupported_rate"]["mean"] == pytest.approx(unsupported / total)
