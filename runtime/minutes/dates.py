"""Due dates: found as phrases in the evidence, resolved to ISO days with dateparser.

A phrase is looked for with a narrow pattern first: dateparser's own search finds dates in
ordinary words ("may", "second", "now"), and a date the speaker did not say is exactly what
must never reach a task. A relative phrase ("Friday", "tomorrow") resolves only against the
meeting's date; without one it is kept as said and the ISO date stays null.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta

_WEEKDAY = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day"
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
DATE_PHRASE = re.compile(
    r"\b(?:"
    rf"\d{{4}}-\d{{2}}-\d{{2}}"
    rf"|{_MONTH}\.?\s+{_DAY}(?:,?\s+\d{{4}})?"
    rf"|{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?"
    rf"|{_WEEKDAY},?\s+(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)(?:\s+(?:of\s+)?{_MONTH})?"
    rf"|(?:(?:this|next|coming)\s+)?{_WEEKDAY}(?:\s+(?:morning|afternoon|evening|night))?"
    r"|tomorrow|today|tonight|end\s+of\s+(?:the\s+)?(?:day|week|month)"
    r"|(?:this|next)\s+week|next\s+month"
    r"|(?:in|within)\s+(?:a|one|two|three|four|\d+)\s+(?:days?|weeks?)"
    r")\b",
    re.I)
# "May" is a month only beside a day; "may" alone is a verb.
_BARE_MAY = re.compile(r"^may$", re.I)
_YEAR = re.compile(r"\b\d{4}\b")
_PART_OF_DAY = re.compile(r"\s+(?:morning|afternoon|evening|night)$", re.I)
_WEEKDAY_AND_DAY = re.compile(rf"^(?P<weekday>{_WEEKDAY}),?\s+(?:the\s+)?(?P<day>\d{{1,2}})(?:st|nd|rd|th)"
                              rf"(?:\s+(?:of\s+)?(?P<month>{_MONTH}))?$", re.I)
_WEEKDAYS = ("mon", "tues", "wednes", "thurs", "fri", "satur", "sun")


def find_date_phrase(text: str) -> str | None:
    """The first date phrase in `text`, as said, or None."""
    for m in DATE_PHRASE.finditer(text):
        if not _BARE_MAY.match(m.group(0)):
            return m.group(0)
    return None


def resolve(phrase: str, meeting_date: str | None) -> str | None:
    """The ISO day a phrase names, relative to the meeting's date; None when it cannot be
    known (a relative phrase or a date without a year, and no meeting date).

    A day that cannot be computed is unresolved too, never an error: "next Monday" after
    9999-12-31 or "last Monday" before 0001-01-01 is past what a date can hold, and a meeting
    date that is not a day cannot anchor anything. One such phrase must not fail a whole
    meeting's minutes; the minutes count it in `dates_unresolved`."""
    try:
        return _resolve(phrase, meeting_date)
    except (OverflowError, ValueError):
        return None


def _resolve(phrase: str, meeting_date: str | None) -> str | None:
    text = _PART_OF_DAY.sub("", " ".join(phrase.lower().split()))
    absolute = bool(_YEAR.search(text))
    if not meeting_date and not absolute:
        return None
    base = date.fromisoformat(meeting_date) if meeting_date else None
    if base is not None:
        if text in ("today", "tonight", "end of day", "end of the day"):
            return base.isoformat()
        if text in ("end of week", "end of the week"):
            return (base + timedelta(days=(4 - base.weekday()) % 7)).isoformat()
        if text in ("end of month", "end of the month"):
            last = calendar.monthrange(base.year, base.month)[1]
            return base.replace(day=last).isoformat()
    if text in ("this week", "next week", "next month"):
        return None  # a span, not a day: kept as said
    if (named := _WEEKDAY_AND_DAY.match(text)) and base is not None:
        return _weekday_and_day(named, base)
    import dateparser  # slow to import: only when a date is actually said

    settings = {"PREFER_DATES_FROM": "future", "RETURN_AS_TIMEZONE_AWARE": False,
                "PREFER_DAY_OF_MONTH": "first", "REQUIRE_PARTS": []}
    if base is not None:
        settings["RELATIVE_BASE"] = datetime(base.year, base.month, base.day)
    parsed = dateparser.parse(re.sub(r"^(?:this|coming)\s+", "", text), languages=["en"],
                              settings=settings)
    if parsed is None:
        return None
    day = parsed.date()
    if base is not None and day < base and not absolute:
        return None  # "Friday" said on a Friday resolves to today, never to the past
    return day.isoformat()


def _weekday_and_day(named: re.Match, base: date) -> str | None:
    """"Friday the 12th": the first such day of the month on or after the meeting, or of the
    month named. The weekday must agree: a speaker who names a Friday that is not the 12th has
    misspoken, and which of the two they meant is not known, so the date stays as said."""
    day = int(named["day"])
    if named["month"]:
        month = _month_number(named["month"])
        year = base.year + (month < base.month)
        candidates = [(year, month)]
    else:
        following = (base.year + base.month // 12, base.month % 12 + 1)
        candidates = [(base.year, base.month), following] if day >= base.day else [following]
    for year, month in candidates:
        if day <= calendar.monthrange(year, month)[1]:
            found = date(year, month, day)
            weekday = _WEEKDAYS.index(named["weekday"].lower().removesuffix("day"))
            return found.isoformat() if found.weekday() == weekday and found >= base else None
    return None


def _month_number(name: str) -> int:
    return next(i for i, full in enumerate(calendar.month_name) if i and full.lower().startswith(name.lower()[:3]))
