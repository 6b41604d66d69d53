"""Cue extraction on small meetings whose right answer is plain (real parser, real cleaning)."""

from sumctl.runtime.cleaning import clean_turns
from sumctl.runtime.minutes import extract_minutes, lines_from
from sumctl.runtime.transcript import parse_text


def minutes_of(text: str, *, date: str | None = None, name: str = "m.txt"):
    transcript = parse_text(text, name=name)
    cleaned = clean_turns(transcript.turns)
    return transcript, extract_minutes(transcript.turns, lines_from(cleaned.turns, cleaned.source_index),
                                       meeting_date=date)


def actions(minutes):
    return [(a.task, a.owner, a.due) for a in minutes.action_items]


def test_a_request_accepted_in_the_next_turn_is_owned_by_who_accepted_it():
    _, m = minutes_of("Priya: Can someone update the pricing page?\nTom: Sure, I'll do it.\n"
                      "Priya: Great, thanks.")
    assert actions(m) == [("Update the pricing page", "Tom", None)]
    assert (m.action_items[0].evidence.first_turn, m.action_items[0].evidence.last_turn) == (0, 1)


def test_a_request_names_its_owner_and_a_demonstrative_points_back_to_the_task():
    transcript, m = minutes_of(
        "Marco: We can ship on October 14th if the export fix lands by Friday.\n"
        "Priya: Can you own that fix, Marco?\nMarco: Yes, I'll take it.", date="2026-10-07")
    assert actions(m) == [("Own the export fix", "Marco", "2026-10-09")]
    assert m.action_items[0].due_text == "Friday"
    assert m.action_items[0].evidence.first_turn == 0 and m.action_items[0].evidence.last_turn == 2


def test_commitments_and_assignments_get_their_speaker_or_the_named_person():
    _, m = minutes_of("Ana: I'll send the draft contract to legal by Thursday.\n"
                      "Ben: Ana will also book the room for the workshop.\n"
                      "Ben: I'll show you the slides now.", date="2026-11-16")
    assert actions(m) == [("Send the draft contract to legal by Thursday", "Ana", "2026-11-19"),
                          ("Book the room for the workshop", "Ana", None)]


def test_a_recap_repeats_items_without_duplicating_them_and_splits_two_tasks():
    _, m = minutes_of("Priya: Lena, please write up the test plan and share it tomorrow.\n"
                      "Sam: I'll schedule the interviews for Thursday.\n"
                      "Priya: So: Lena on the test plan and the interview, Sam schedules the interviews.")
    assert [(a.task, a.owner) for a in m.action_items] == [
        ("Write up the test plan and share it tomorrow", "Lena"),
        ("Schedule the interviews for Thursday", "Sam"),
        ("The interview", "Lena")]
    assert m.extraction["merged"] == 2


def test_nobody_owns_an_unassigned_task_and_vague_timing_is_no_date():
    _, m = minutes_of("Ravi: Someone should look at the server logs soon.\n"
                      "Mei: We need to update the docs at some point.\n", date="2026-10-07")
    assert [(a.task, a.owner, a.due, a.due_text) for a in m.action_items] == [
        ("Look at the server logs soon", None, None, None), ("Update the docs", None, None, None)]


def test_without_speakers_every_owner_is_null_even_for_first_person_commitments():
    transcript, m = minutes_of("I'll send the agenda by Friday.\n\nCan you book the venue?\n\n"
                               "Yes, I'll take it.\n\nWe decided to go with the lakeside hotel.",
                               date="2026-03-02")
    assert transcript.speakers == []
    assert m.action_items and all(a.owner is None for a in m.action_items)
    assert m.action_items[0].due == "2026-03-06"
    assert [d.text for d in m.decisions] == ["The team decided to go with the lakeside hotel."]


def test_decisions_and_what_was_left_open_and_what_was_not_decided():
    _, m = minutes_of("Olga: Should we buy three-year reserved instances?\nRaj: Not now, the numbers are unclear.\n"
                      "Olga: Let's agree to cap cloud spend at forty thousand a month.\n"
                      "Raj: We haven't decided who pays for the monitoring tool.\n"
                      "Olga: Who owns the vendor contract?\nRaj: I don't know.")
    assert [d.text for d in m.decisions] == ["Agreed: to cap cloud spend at forty thousand a month."]
    assert [q.text for q in m.open_questions] == ["We haven't decided who pays for the monitoring tool.",
                                                   "Who owns the vendor contract?"]


def test_a_relative_date_without_a_meeting_date_is_kept_as_said_not_resolved():
    _, m = minutes_of("Ana: I'll send the invoice on Friday.")
    assert [(a.due, a.due_text) for a in m.action_items] == [(None, "Friday")]
    _, m = minutes_of("Ana: I'll send the invoice by 2027-01-15.")
    assert [(a.due, a.due_text) for a in m.action_items] == [("2027-01-15", "2027-01-15")]


def test_people_named_mid_sentence_with_what_they_will_do_each_get_their_task():
    """AMI's end-of-meeting round: roles named mid-sentence, one after the other, and a role's
    title said in full ("the User Interface Designer"); each task stops at the next person."""
    _, m = minutes_of(
        "Marketing: Look, the look of it matters.\nUser Interface: Mm-hmm, the buttons too.\n"
        "Project Manager: In the meantime, the Industrial Designer over here is gonna work on the "
        "look and feel design, the User Interface Designer will work on the user interface design "
        "and the Marketing Expert is going to work on product evaluation.\n"
        "Industrial Designer: Okay.")
    assert [(a.task, a.owner) for a in m.action_items] == [
        ("Work on the look and feel design", "Industrial Designer"),
        ("Work on the user interface design", "User Interface"),
        ("Work on product evaluation", "Marketing")]


def test_group_work_is_an_item_only_when_it_is_for_after_the_meeting():
    _, m = minutes_of("Ana: We need to look at the budget now.\n"
                      "Ben: Individually we'll have to come up with ideas for the next meeting.\n"
                      "Ana: We should revisit the colour palette later.")
    assert [(a.task, a.owner) for a in m.action_items] == [("Come up with ideas", None),
                                                           ("Revisit the colour palette", None)]


def test_going_for_and_sticking_with_are_decisions_but_a_question_without_its_mark_is_not():
    _, m = minutes_of("Kim: Do we wanna go for the rubber case, or plastic.\n"
                      "Lee: Let's go for a plastic case with recycled plastic.\n"
                      "Kim: We just stick with two batteries.")
    assert [d.text for d in m.decisions] == ["The team will go for a plastic case with recycled plastic.",
                                             "The team just stick with two batteries."]


def test_an_assent_restating_the_choice_is_a_decision_but_a_condition_is_not():
    _, m = minutes_of("Lucia: One year or three?\nPiotr: One year, agreed.\n"
                      "Lucia: We ship on the 14th.\nPiotr: Agreed, as long as the crashes get fixed.")
    assert [d.text for d in m.decisions] == ["Agreed: One year."]
