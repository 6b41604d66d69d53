"""Issue 27, numbers read from files: the bench's dataset converters (QMSum, DialogSum) read a
number only if it is finite; NaN, Infinity or 1e999 is one line naming the file (and line)."""

from __future__ import annotations

import json

import pytest
from cli_fixtures import assert_one_line_error
from watch_fixtures import run

from sumctl.benchmarks.eval.datasets import prepare_dialogsum, prepare_qmsum
from sumctl.runtime.errors import InputError

TURNS = [{"speaker": "Ann", "content": "We ship on Friday."},
         {"speaker": "Bob", "content": "I fix the login bug."}]


def qmsum_meeting(folder, span: str, extra: str = "") -> None:
    folder.mkdir(exist_ok=True)
    query = ('{"query": "What ships?", "answer": "The release ships on Friday.", '
             f'"relevant_text_span": [[{span}]]}}')
    (folder / "m1.json").write_text(
        f'{{"meeting_transcripts": {json.dumps(TURNS)}, "general_query_list": [], '
        f'"specific_query_list": [{query}]{extra}}}')


def test_a_sane_qmsum_span_is_read(tmp_path):
    qmsum_meeting(tmp_path / "q", '"0", "1"')
    [record] = prepare_qmsum(tmp_path / "q", specific=True)
    assert record["reference"] == "The release ships on Friday."


@pytest.mark.parametrize("span, extra", [
    ("1e999, 1", ""),                         # int(inf): an OverflowError traceback before
    ('"0", "1"', ', "meta": {"score": NaN}'),
    ('"0", "1"', ', "duration": -Infinity'),
])
def test_a_qmsum_number_that_is_not_finite_is_one_line(tmp_path, span, extra):
    qmsum_meeting(tmp_path / "q", span, extra)
    with pytest.raises(InputError) as e:
        prepare_qmsum(tmp_path / "q", specific=True)
    assert "m1.json" in str(e.value)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e999"])
def test_a_dialogsum_number_that_is_not_finite_is_one_line(tmp_path, literal):
    data = tmp_path / "d.jsonl"
    data.write_text('{"fname": "a", "dialogue": "#P1#: Hi.", "summary": "Hi."}\n'
                    f'{{"fname": "b", "dialogue": "#P1#: Bye.", "summary": "Bye.", "w": {literal}}}\n')
    with pytest.raises(InputError, match=r"d\.jsonl:2: not valid JSON"):
        prepare_dialogsum(data)
    result = run("bench", "prepare", "dialogsum", data, "--out", tmp_path / "out.jsonl")
    assert_one_line_error(result, f"{data}:2:", literal)
    assert not (tmp_path / "out.jsonl").exists()
