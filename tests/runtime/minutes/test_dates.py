import pytest

from sumctl.runtime.minutes.dates import find_date_phrase, resolve


@pytest.mark.parametrize("text, phrase", [
    ("Send it by Friday afternoon.", "Friday afternoon"),
    ("We ship on October 14th if the fix lands.", "October 14th"),
    ("Due 2027-01-15, please.", "2027-01-15"),
    ("Finish by end of the week.", "end of the week"),
    ("It may take a while and we'll see later.", None),
    ("Do it in the second sprint, maybe next quarter.", None),
    ("Share it tomorrow.", "tomorrow"),
    ("Draw up a rota by Friday the 12th.", "Friday the 12th"),
])
def test_only_phrases_that_name_a_day_are_dates(text, phrase):
    assert find_date_phrase(text) == phrase


@pytest.mark.parametrize("phrase, meeting, day", [
    ("Friday", "2026-10-07", "2026-10-09"),        # a Wednesday meeting: the coming Friday
    ("tomorrow", "2026-10-07", "2026-10-08"),
    ("end of the week", "2026-10-07", "2026-10-09"),
    ("end of month", "2026-02-10", "2026-02-28"),
    ("October 14th", "2026-10-07", "2026-10-14"),
    ("next week", "2026-10-07", None),              # a span, not a day
    ("Friday", None, None),                         # relative, and no meeting date
    ("January 15, 2027", None, "2027-01-15"),       # absolute
    ("Friday the 12th", "2027-03-04", "2027-03-12"),  # the day said, not the coming Friday (the 5th)
    ("Monday 5th of April", "2027-03-04", "2027-04-05"),
    ("Saturday the 3rd", "2027-03-04", "2027-04-03"),   # past in this month: next month's
    ("Wednesday the 3rd", "2027-03-04", None),          # 3 March is past and 3 April a Saturday
    ("Friday the 13th", "2027-03-04", None),          # no Friday is the 13th: misspoken, kept as said
])
def test_resolution_is_relative_to_the_meeting_and_never_guessed(phrase, meeting, day):
    assert resolve(phrase, meeting) == day
