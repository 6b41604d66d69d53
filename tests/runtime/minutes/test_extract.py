"""The checks every item passes, whoever proposed it: a model that invents owners, dates and
items (a plug-in backend through the real registry) gets none of them past the evidence."""

from pathlib import Path

import pytest

from backend_fixtures import plugin_backend
from sumctl.benchmarks.eval.minutes import load_labelled, score
from sumctl.runtime.backends.extractive import build_extractive_bundle
from sumctl.runtime.outputs import summary_validator
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import parse_text

LABELS = Path(__file__).resolve().parents[2] / "data" / "minutes"

LIAR = '''
from sumctl.runtime.backends.extractive import ExtractiveBackend
from sumctl.runtime.backends.base import Generation


class Liar(ExtractiveBackend):
    """Answers every minutes prompt with invented owners, dates and items, in the text format."""
    name = "liar"
    extractive = False

    def generate(self, prompts, options):
        if "List the decisions" not in prompts[0]:
            return super().generate(prompts, options)
        reply = ("Decisions: The board approved a new office in Lisbon; ship the release on October 14th\\n"
                 "Actions: Bob: own the export fix (due 2026-01-01); Marco: write up the test plan "
                 "(due tomorrow); Lena: buy a boat for the team\\nOpen questions: none")
        return [Generation(reply, 10, 10) for _ in prompts]
'''

MEETING = ("Marco: QA signed off except the export. We ship on October 14th if the export fix lands.\n"
           "Priya: Can you own the export fix, Marco?\nMarco: Yes, I'll take it.\n"
           "Lena: I'll write up the test plan on Friday.\n")


@pytest.fixture
def liar_summarizer(tmp_path, monkeypatch):
    bundle, _ = plugin_backend(tmp_path, monkeypatch, LIAR, "liar_backend", "Liar", name="liar")
    return Summarizer(bundle)


def test_a_model_that_invents_owners_dates_and_items_gets_none_past_the_checks(liar_summarizer):
    minutes = liar_summarizer.minutes(parse_text(MEETING, name="m.txt"), method="model",
                                      meeting_date="2026-10-07")
    tasks = {a.task: a for a in minutes.action_items}
    # Bob is nobody in the meeting; the boat is in no turn; the Lisbon office was never said.
    assert set(tasks) == {"own the export fix", "write up the test plan"}
    assert tasks["own the export fix"].owner is None  # "Bob" is dropped, not swapped for Marco
    assert tasks["own the export fix"].due is None     # the model's 2026-01-01 is not in the turns
    assert tasks["write up the test plan"].owner is None  # Marco did not say it: Lena did
    assert tasks["write up the test plan"].due == "2026-10-09"  # from "on Friday", not "tomorrow"
    assert [d.text for d in minutes.decisions] == ["ship the release on October 14th"]
    counts = minutes.extraction
    assert counts["dropped_by_evidence"] == 2 and counts["owners_removed"] == 2
    assert counts["model_replies"] == counts["model_replies_valid"] == 1


def test_items_said_in_several_chapters_are_merged_once(tmp_path):
    # A 120-token input budget cuts this meeting into chapters; the same task is said in the
    # first and restated in the last, and the recap names both tasks again.
    filler = [f"Sam: The {w} numbers look fine this week and nothing changes there." for w in
              ("north", "south", "east", "west", "central", "online", "retail", "partner",
               "export", "import", "wholesale", "direct", "mobile", "desktop", "enterprise",
               "consumer", "public", "private", "agency", "reseller")]
    lines = (["Priya: Lena, please write up the migration plan by Friday."] + filler
             + ["Lena: Agreed, I will write up the migration plan.",
                "Priya: Tom, please renew the vendor contract.",
                "Priya: So: Lena on the migration plan, Tom on the vendor contract."])
    summarizer = Summarizer(build_extractive_bundle(tmp_path / "b", max_input_tokens=120))
    minutes = summarizer.minutes(parse_text("\n".join(lines), name="m.txt"), meeting_date="2026-10-07")
    assert minutes.extraction["chapters"] >= 3
    assert [(a.task, a.owner, a.due) for a in minutes.action_items] == [
        ("Write up the migration plan by Friday", "Lena", "2026-10-09"),
        ("Renew the vendor contract", "Tom", None)]
    assert minutes.extraction["merged"] == 3


def test_no_invented_owner_or_date_on_meetings_built_to_tempt_one(tmp_path, qmsum_dir):
    """The labelled set's own meetings plant traps (non-speakers who are mentioned, "soon", "at
    some point", days said where the meeting date is unknown, a file without speakers);
    QMSum's AMI meetings add real speech. Checked independently of the runtime's own checks
    (benchmarks/eval/minutes.py re-reads each item's evidence turns)."""
    summarizer = Summarizer(build_extractive_bundle(tmp_path / "b"))
    validator = summary_validator()
    only_minutes = validator.evolve(schema={**validator.schema, "required": ["decisions", "action_items"]})
    meetings = load_labelled(LABELS, qmsum_dir)
    assert len(meetings) == 13
    owners = found = 0
    for meeting in meetings:
        transcript = meeting.transcript()
        record = summarizer.minutes(transcript, meeting_date=meeting.date).to_dict()
        assert not list(only_minutes.iter_errors(record)), meeting.name
        tally = score(record, meeting.labels, transcript, meeting.date)["action_items"]
        assert (tally.invented_owners, tally.invented_dates) == (0, 0), meeting.name
        if not transcript.speakers:  # owners only where the words name someone: never "Speaker 1"
            for a in record["action_items"]:
                said = " ".join(t.text for t in transcript.turns[a["evidence"]["first_turn"]:
                                                                 a["evidence"]["last_turn"] + 1])
                assert a["owner"] is None or a["owner"] in said, meeting.name
        if meeting.date is None:  # nothing relative can resolve: only stated full dates could
            assert all(a["due"] is None for a in record["action_items"]), meeting.name
        owners += sum(a["owner"] is not None for a in record["action_items"])
        found += len(record["action_items"])
    assert found >= 20 and owners >= 10  # the checks did not pass by finding nothing
