"""Issue 27, types in training data: `sumctl train` on a record whose field has the wrong JSON type
is one line naming the file, the line and the field, never a TypeError traceback, and it is
refused before a model loads (nothing is written)."""

from __future__ import annotations

import json

import pytest
from cli_fixtures import assert_one_line_error
from train_fixtures import train_records, write_jsonl
from watch_fixtures import run

pytestmark = pytest.mark.timeout(600)

TASK = {"task": "Send the plan", "owner": "Ann"}


@pytest.mark.parametrize("field, value, says", [
    ("action_items", 5, "'action_items' is a number (5)"),         # the issue's: a TypeError
    ("action_items", True, "'action_items' is true"),               # the issue's
    ("action_items", False, "'action_items' is false"),             # falsy: was silently no items
    ("action_items", 0, "'action_items' is a number (0)"),
    ("action_items", "Send the plan", "'action_items' is text"),    # was one task per character
    ("action_items", TASK, "'action_items' is an object"),          # was one task per key
    ("action_items", [5], "each of 'action_items' needs a 'task' text"),
    ("action_items", [{"task": "x", "due_text": 5}], "'due_text' must be text or null"),
    ("action_items", [{"task": "x", "owner": ["Ann"]}], "'owner'"),
    ("decisions", 1.5, "'decisions' is a number (1.5)"),
    ("decisions", "", "'decisions' is text"),
    ("open_questions", {"text": "Why?"}, "'open_questions' is an object"),
    ("open_questions", [None], "'open_questions' must be a list of texts"),
    ("query", 5, "'query' is a number (5)"),
    ("query", ["What was decided?"], "'query' is a list"),
    ("length", 5, "'length' is 5"),
    ("reduce_input", 5, "'reduce_input' must be non-empty text"),
    ("reference", 5, "'reference' must be a non-empty string"),
    ("transcript", ["Ann: hi."], "'transcript' must be the transcript text"),
    ("id", True, "'id' must be a non-empty string or number"),
], ids=lambda v: json.dumps(v)[:30] if not isinstance(v, str) or len(v) < 30 else v[:30])
def test_a_field_of_the_wrong_type_is_one_line_naming_file_line_and_field(
        train_t5_base, tmp_path, field, value, says):
    records = train_records(5)
    records[2][field] = value
    data = write_jsonl(tmp_path / "train.jsonl", records)
    result = run("train", "--base", train_t5_base, "--data", data, "--out", tmp_path / "out")
    line = assert_one_line_error(result, f"{data}:3:", says)
    assert field in line or field == "action_items"  # items name their own field
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e999"])
def test_a_number_that_is_not_finite_in_training_data_is_one_line(train_t5_base, tmp_path,
                                                                   literal):
    lines = [json.dumps(r) for r in train_records(5)]
    lines[1] = lines[1][:-1] + f', "meta": {{"score": {literal}}}}}'
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(lines) + "\n")
    result = run("train", "--base", train_t5_base, "--data", data, "--out", tmp_path / "out")
    assert_one_line_error(result, f"{data}:2:", literal)
    assert not (tmp_path / "out").exists()
