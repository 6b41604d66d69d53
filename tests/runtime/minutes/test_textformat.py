"""The two reply shapes: the plain-text target format and the grammar-held JSON."""

import json

import jsonschema
import pytest

from sumctl.runtime.minutes.textformat import (ITEMS_SCHEMA, ProposedAction, close_truncated_json,
                                               format_items, format_items_json, parse_items,
                                               parse_items_json)

ACTIONS = [ProposedAction("fix the export", "Marco", "Friday"), ProposedAction("update the docs")]


def test_the_text_target_reads_back_as_written():
    text = format_items(["Ship on October 14", "Use a local fake in CI"], ACTIONS, [])
    assert text.splitlines()[-1] == "Open questions: none"
    parsed = parse_items(text)
    assert parsed.decisions == ["Ship on October 14", "Use a local fake in CI"]
    assert parsed.action_items == ACTIONS and parsed.open_questions == []


def test_the_parser_forgives_what_small_models_write():
    parsed = parse_items("DECISIONS: none.\n- action items:\n* Marco - fix the export (by Friday)\n"
                         "* update the docs (Lena)\nquestions: who pays?; N/A\nSome trailing chatter")
    assert parsed.decisions == []
    assert parsed.action_items == [ProposedAction("fix the export", "Marco", "Friday"),
                                   ProposedAction("update the docs", "Lena")]
    assert parsed.open_questions == ["who pays?", "Some trailing chatter"]
    assert parse_items("I could not find anything.") == parse_items("")


def test_the_json_target_follows_the_schema_the_grammar_enforces():
    reply = format_items_json(["Ship on October 14"], ACTIONS, ["Who pays?"])
    jsonschema.validate(json.loads(reply), ITEMS_SCHEMA)
    assert parse_items_json(reply).action_items == ACTIONS


def test_every_prefix_of_a_valid_reply_closes_into_json_that_parses():
    """What the token cap leaves of a grammar-held reply is always a prefix of valid JSON."""
    reply = format_items_json(["Ship on October 14", 'Say "no" to skins'], ACTIONS, ["Who pays?"])
    for cut in range(len(reply) + 1):
        closed = close_truncated_json(reply[:cut])
        data = json.loads(closed)
        assert isinstance(data, dict)
        parse_items_json(reply[:cut])  # and reads without raising
    assert close_truncated_json(reply) == reply


@pytest.mark.parametrize("prefix, items", [
    ('{"decisions": ["a", "b', ["a"]),
    ('{"decisions": ["a"], "action_items": [{"task": "x", "owner": "Bo', ["a"]),
    ('{"decis', []),
])
def test_a_cut_reply_keeps_its_whole_items(prefix, items):
    assert parse_items_json(prefix).decisions == items
