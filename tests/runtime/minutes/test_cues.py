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


def test_a_proposal_another_speaker_takes_up_is_a_decision_and_one_turned_down_or_put_off_is_not():
    _, m = minutes_of("Grace: I propose we open on Sundays from one to five as a trial.\nTom: I second that.\n"
                      "Omar: Why don't we get a second quote for the roof?\nTom: Makes sense to me.\n"
                      "Grace: Let's rent the corner room to a coffee cart.\nTom: Maybe, but the noise would carry.\n"
                      "Nadia: Let's leave the cafe for now.\nGrace: Sounds good.\n"
                      "Nadia: Let's move on to the roof.\nTom: Agreed.")
    assert [(d.text, d.evidence.first_turn, d.evidence.last_turn) for d in m.decisions] == [
        ("Agreed: open on Sundays from one to five as a trial.", 0, 1),
        ("Agreed: get a second quote for the roof.", 2, 3)]


def test_a_plan_stated_is_a_decision_and_nobody_having_decided_is_not():
    _, m = minutes_of("Nadia: The plan is to hold the book sale on Saturday in the main hall.\n"
                      "Raj: Nobody has decided that yet.\n"
                      "Nadia: The plan is to go through the agenda first.")
    assert [d.text for d in m.decisions] == ["The plan is to hold the book sale on Saturday in the main hall."]


def test_work_handed_over_by_naming_it_goes_to_whom_it_names():
    _, m = minutes_of("Nadia: Tom, the posters for the sale are yours. The look and feel design is for Kate.\n"
                      "Nadia: Grace, you have to confirm the hall booking with the council.\n"
                      "Kate: You have to press it twice to book a room.\nTom: Will do.")
    assert [(a.task, a.owner) for a in m.action_items] == [
        ("The posters for the sale", "Tom"), ("The look and feel design", "Kate"),
        ("Confirm the hall booking with the council", "Grace")]


def test_work_handed_out_at_the_close_without_names_has_no_owner():
    """AMI's closing round: "you" is whoever the chair looks at, which a transcript does not say."""
    _, m = minutes_of("Project Manager: We've got another meeting in thirty minutes, so\nIndustrial Designer: Alright.\n"
                      "Project Manager: you're looking at the technical functions design, and for you it's the "
                      "user requirements specification.\n"
                      "Marketing: You're looking at the screen when you press it.")
    assert [(a.task, a.owner) for a in m.action_items] == [
        ("Look at the technical functions design", None), ("The user requirements specification", None)]


def test_presenting_finding_and_a_verb_with_only_a_pronoun_are_no_tasks():
    _, m = minutes_of("Ana: I'm gonna tell you something about the findings.\nBen: Everyone will say I'll buy it.\n"
                      "Ana: You'll find the next minutes in the shared folder.\nBen: I'll send the findings to legal.")
    assert [(a.task, a.owner) for a in m.action_items] == [("Send the findings to legal", "Ben")]


def test_a_task_whose_speech_broke_off_is_left_out_but_short_words_and_abbreviations_stay():
    _, m = minutes_of("Ana: I'm gonna save th a copy of the logo.\nBen: I'll do some I'll rub the features.\n"
                      "Ana: I'll send the pdf to hr and review the pr, plan b if legal objects.\n"
                      "Ben: I'll book the x ray for Tuesday.")
    assert [(a.task, a.owner) for a in m.action_items] == [
        ("Send the pdf to hr and review the pr, plan b if legal objects", "Ana"),
        ("Book the x ray for Tuesday", "Ben")]


def test_an_answer_that_only_moves_on_or_muses_takes_no_proposal_up():
    _, m = minutes_of("Grace: Let's move the book sale to the main hall.\nTom: Let's talk about the budget first.\n"
                      "Omar: Why don't we print the posters in colour?\nTom: I think it is risky.\n"
                      "Nadia: We decided to start the migration in May.")
    assert [d.text for d in m.decisions] == ["The team decided to start the migration in May."]


def test_a_recapped_task_named_by_its_noun_takes_the_date_said_where_it_was_raised():
    transcript, m = minutes_of(
        "Sam: We have two candidates. Interviews are Thursday. I need one more interviewer.\n"
        "Lena: I can do it.\n"
        "Priya: So: Marco on the export fix, Lena on the interview.", date="2026-10-07")
    assert ("The interview", "Lena", "2026-10-08") in actions(m)
    item = next(a for a in m.action_items if a.task == "The interview")
    assert item.due_text == "Thursday" and item.evidence.first_turn == 0 and item.evidence.last_turn == 2


def test_a_recapped_task_with_no_dated_mention_before_it_stays_undated():
    _, m = minutes_of(
        "Sam: We have two candidates for the role. Thursday is the all-hands.\n"
        "Priya: So: Marco on the export fix, Lena on the interview.", date="2026-10-07")
    assert ("The interview", "Lena", None) in actions(m)
