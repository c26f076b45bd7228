"""Dates and times written in text, Danish and English -> FoundDate. Pure: no I/O, no clock.

Regular expressions only find where a date is written and split it into day, month and year;
dateparser turns the words into a date ("26 januar 2023", "12 May 2023"), and the times
beside it make it a start and an end in the source's zone. A date without a year is the
nearest one after the item was published, with a warning. Nothing is ever dated by the
publication date itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import dateparser

from aggregator.normalise import zone

_MONTHS = (
    "januar|january|jan|februar|february|feb|marts|march|mar|april|apr|maj|may|juni|june|jun|"
    "juli|july|jul|august|aug|september|sept|sep|oktober|october|okt|oct|november|nov|"
    "december|dec"
)
_WEEKDAYS = (
    "mandag|tirsdag|onsdag|torsdag|fredag|lørdag|søndag|monday|tuesday|wednesday|thursday|"
    "friday|saturday|sunday|man|tir|ons|tor|fre|lør|søn|mon|tue|wed|thu|fri|sat|sun"
)
#: Member text is untrusted: a run of spaces is read by one possessive `\s*+` (or `\s++`), never
#: by two quantifiers in a row that could share it (that took quadratic time: a digit and 100 KB
#: of spaces ran for minutes). What follows each of them never begins with a space, so giving
#: nothing back matches exactly what the greedy form matched.
_DAY = r"(?P<{name}>[0-3]?\d)(?:\.|st|nd|rd|th)?"
_LEAD = rf"(?:(?:{_WEEKDAYS})\.?,?\s++)?(?:(?:d\.|den|the)\s++)?"
_DASH = r"\s*+(?:-|–|—|til(?:\s+og\s+med)?(?:\s+den)?|to|until)\s*+"
_YEAR = r"(?:,?\s*(?P<year>(?:19|20)\d\d))?"

#: "26. januar 2023", "Thursday the 26th of January, 2023", "fra den 3. til den 5. juni 2023",
#: "12–14 May 2023", "26 January - 2 February 2023"
_NOT_A_CLOCK = r"(?<!kl\. )(?<!kl )(?<!kl\.)(?<!klokken )(?<!at )(?<!@ )"
_DAY_MONTH = re.compile(
    rf"(?<![\w/.:-]){_NOT_A_CLOCK}{_LEAD}{_DAY.format(name='day')}"
    rf"(?:\s*+(?:(?P<month1>{_MONTHS})\.?)?{_DASH}{_LEAD}{_DAY.format(name='day2')})?"
    rf"\s*+(?:of\s++)?(?P<month>{_MONTHS})\.?(?![\w]){_YEAR}",
    re.IGNORECASE,
)
#: "March 12, 2023", "January 26th 2023", "May 12-14, 2023"
_MONTH_DAY = re.compile(
    rf"(?<![\w]){_LEAD}(?P<month>{_MONTHS})\.?\s++{_DAY.format(name='day')}"
    rf"(?:{_DASH}{_DAY.format(name='day2')})?(?![\d:.]\d){_YEAR}",
    re.IGNORECASE,
)
#: "12/5 2023", "12.05.2023", "12/5-2023", and ISO "2023-05-12"
_NUMERIC = re.compile(
    r"(?<![\w/.:-])(?:(?P<iso_year>(?:19|20)\d\d)-(?P<iso_month>[01]\d)-(?P<iso_day>[0-3]\d)"
    r"|(?P<day>[0-3]?\d)[./](?P<month>[01]?\d)(?:[./-]\s?|\s+)(?P<year>(?:19|20)\d\d|\d\d)(?![\d:]))",
)
_TIME = r"(?P<{h}>[0-2]?\d)(?:[:.](?P<{m}>[0-5]\d))?\s*+(?P<{ap}>a\.?m\.?|p\.?m\.?)?"
#: "13:00 - 14:30", "kl. 13-14.30", "10am–2pm", "from 5:30 pm to 7 pm", "kl. 19"
_TIMES = re.compile(
    r"(?:\b(?:kl\.?|klokken|at|from|fra|@)\s*)?"
    + _TIME.format(h="h1", m="m1", ap="ap1")
    + rf"(?:{_DASH}(?:kl\.?\s*)?"
    + _TIME.format(h="h2", m="m2", ap="ap2")
    + ")?",
    re.IGNORECASE,
)
#: words before a date that make it a deadline, not the event
_DEADLINE = re.compile(
    r"(?:before|by|senest|inden|frist|deadline|tilmelding|register|registration|"
    r"tilmeld|udgivet|published|posted|opdateret|updated)\W*(?:\w+\W+){0,3}$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FoundDate:
    """An event's time found in text."""

    #: aware datetime in the source's zone, or a date for an all-day event
    start: datetime | date
    end: datetime | date
    all_day: bool
    #: the words it was read from
    text: str
    #: the year was not written; taken as the nearest after publication
    year_guessed: bool = False
    #: where the date (and its time) begins and ends in the text
    span: tuple[int, int] = (0, 0)


def find_dates(
    text: str, *, languages: tuple[str, ...], zone_name: str, published: datetime | None
) -> list[FoundDate]:
    """Every event date written in `text`, in order; the first is the likeliest.

    Dates that follow deadline words ("Register before 24th of January") are left out.
    """
    found: list[tuple[int, FoundDate]] = []
    taken: list[tuple[int, int]] = []
    for pattern in (_DAY_MONTH, _MONTH_DAY, _NUMERIC):
        for match in pattern.finditer(text):
            if any(a < match.end() and match.start() < b for a, b in taken):
                continue
            if _DEADLINE.search(text[max(0, match.start() - 40) : match.start()]):
                taken.append(match.span())
                continue
            result = _read(match, text, languages, zone_name, published)
            if result is not None:
                taken.append(match.span())
                found.append((match.start(), result))
    found.sort(key=lambda pair: pair[0])
    dates = _join_ranges(text, [f for _, f in found])
    # a date with a time is likelier the event than a bare date mentioned in passing
    timed = [f for f in dates if not f.all_day]
    return timed + [f for f in dates if f.all_day]


_RANGE_GAP = re.compile(r"\W*(?:-|–|—|til|to|until|through)\W*(?:den\s+|the\s+)?", re.I)
#: a gap longer than this is no range: the two `\W*` around a dash share a run of "- - -",
#: which takes quadratic time when the text between two dates is long
_MAX_RANGE_GAP = 40


def _join_ranges(text: str, dates: list[FoundDate]) -> list[FoundDate]:
    """'fredag 26. januar kl. 17 til søndag 28. januar kl. 13' is one event, not two."""
    joined: list[FoundDate] = []
    for current in dates:
        previous = joined[-1] if joined else None
        if (
            previous is not None
            and previous.all_day == current.all_day
            and current.span[0] - previous.span[1] <= _MAX_RANGE_GAP
            and _RANGE_GAP.fullmatch(text[previous.span[1] : current.span[0]])
            and current.start > previous.start
        ):
            end = current.end if current.all_day else (current.end or current.start)
            joined[-1] = FoundDate(
                previous.start,
                end,
                previous.all_day,
                text[previous.span[0] : current.span[1]].strip(" ,"),
                previous.year_guessed,
                (previous.span[0], current.span[1]),
            )
            continue
        joined.append(current)
    return joined


def _read(
    match: re.Match,
    text: str,
    languages: tuple[str, ...],
    zone_name: str,
    published: datetime | None,
) -> FoundDate | None:
    groups = match.groupdict()
    guessed = False
    if groups.get("iso_year"):
        year, month_word = int(groups["iso_year"]), groups["iso_month"]
        day, day2, month1 = int(groups["iso_day"]), None, None
    else:
        day = int(groups["day"])
        day2 = int(groups["day2"]) if groups.get("day2") else None
        month_word, month1 = groups["month"], groups.get("month1")
        if groups.get("year"):
            year = int(groups["year"])
            year += 2000 if year < 100 else 0
        else:
            year, guessed = None, True
    first = _to_date(day, month1 or month_word, year, languages, published)
    if first is None:
        return None
    if guessed:
        year = first.year
    last = None
    if day2 is not None:
        last = _to_date(day2, month_word, year, languages, published)
        if last is None or last < first or (last - first).days > 60:
            return None
    times = _times_after(text, match.end())
    tz = zone(zone_name)
    if times is None or last is not None and last != first:
        end = (last or first) + timedelta(days=1)
        return FoundDate(first, end, True, match.group(0).strip(), guessed, match.span())
    (h1, m1), second, time_end = times
    start = datetime.combine(first, time(h1, m1), tz)
    end = start
    if second is not None:
        end = datetime.combine(first, time(*second), tz)
        if end <= start:  # "22-02": ends after midnight
            end += timedelta(days=1)
    words = text[match.start() : time_end].strip(" ,")
    return FoundDate(start, end, False, words, guessed, (match.start(), time_end))


@lru_cache(maxsize=4096)
def _month_number(word: str, languages: tuple[str, ...]) -> int | None:
    if word.isdigit():
        return int(word) if 1 <= int(word) <= 12 else None
    parsed = dateparser.parse(f"1 {word} 2000", languages=list(languages) + ["da", "en"])
    return parsed.month if parsed else None


def _to_date(
    day: int, month_word: str, year: int | None, languages, published: datetime | None
) -> date | None:
    month = _month_number(month_word.lower().rstrip("."), tuple(languages))
    if month is None:
        return None
    if year is None:
        if published is None:
            return None
        # the nearest such day on or after publication
        for candidate in (published.year, published.year + 1):
            try:
                value = date(candidate, month, day)
            except ValueError:
                continue
            if value >= published.date():
                return value
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _times_after(
    text: str, position: int
) -> tuple[tuple[int, int], tuple[int, int] | None, int] | None:
    """The time (range) written right after a date: on its line, or on the next when the date
    ends its line; with where the time ends in `text`."""
    window = text[position : position + 80]
    first_line, _, rest = window.partition("\n")
    # the next line only when the date ends its own line
    candidates = first_line if first_line.strip() else first_line + "\n" + rest.split("\n")[0]
    for match in _TIMES.finditer(candidates):
        groups = match.groupdict()
        explicit = (
            groups["m1"] is not None
            or groups["ap1"] is not None
            or re.match(r"\s*(?:kl|klokken|at|from|fra|@)", match.group(0), re.IGNORECASE)
        )
        if not explicit:
            continue
        start = _clock(groups["h1"], groups["m1"], groups["ap1"] or groups["ap2"])
        if start is None:
            continue
        end = None
        if groups["h2"] is not None:
            end = _clock(groups["h2"], groups["m2"], groups["ap2"] or groups["ap1"])
        return start, end, position + match.end()
    return None


def _clock(hour: str, minute: str | None, meridiem: str | None) -> tuple[int, int] | None:
    h, m = int(hour), int(minute or 0)
    if meridiem:
        if not 1 <= h <= 12:
            return None
        pm = meridiem.lower().startswith("p")
        h = h % 12 + (12 if pm else 0)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        return None
    return h, m
