"""The parse's own fast paths read exactly what the libraries read (issue 15).

- parse/tree.py: icalendar's parser splitting plain lines itself and leaving out the
  properties of events nobody reads. Same lines, same splits, and a tree with the same
  components, errors and values of every property it keeps; the text the library rejects
  it rejects too.
- parse/recurrence.py: a lone event without rules read as a SingleEvent, the grouping by
  UID done as recurring-ical-events does it, x-wr-timezone's walk left out where it would
  move nothing. Same occurrences, same calendars.
- parse_calendar as a whole: the same ParsedFeed as with every step done by the libraries.

On generated calendars (hostile ones from tests/fuzz, members from bench/generate.py) and on
every .ics of ../shared/corpus, tests/data, tests/fuzz and the demo feeds.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
import x_wr_timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar.parser import Contentline, Contentlines
from recurring_ical_events import ComponentsWithName

from aggregator.model import Limits, ParsedFeed
from aggregator.parse import decode_body, recurrence
from aggregator.parse import ical as ical_module
from aggregator.parse.ical import parse_calendar
from aggregator.parse.recurrence import SingleEvent, WrittenEvent, WrittenSeries, to_standard
from aggregator.parse.tree import READ, _TrimmedParser, unfold
from bench.generate import calendar as member_calendar
from bench.generate import member
from tests.conftest import CORPUS, DATA, FEEDS, NOW, ROOT
from tests.fuzz import strategies as s

FILES = sorted(
    {
        *CORPUS.rglob("*.ics"),
        *DATA.rglob("*.ics"),
        *(ROOT / "tests" / "fuzz").glob("*.ics"),
        *(ROOT / "tests" / "fixtures").rglob("*.ics"),
        *FEEDS.glob("*.ics"),
    }
)
#: members as bench/generate.py writes them (Google, Outlook with a Windows zone, Nextcloud)
MEMBERS = [member_calendar(1, member(n), 40, 12, NOW.date()) for n in range(1, 9)]
HORIZON = Limits()
#: for generated calendars: a hostile one repeats a rule every second hundreds of times, and
#: is read twice per example
SMALL = Limits(past_days=30, future_days=90, max_occurrences=300)
PROPERTY = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def texts() -> list[tuple[str, str]]:
    found = [(path.name, decode_body(path.read_bytes())[0]) for path in FILES]
    return found + [(f"member {n}", text) for n, text in enumerate(MEMBERS, 1)]


TEXTS = texts()
IDS = [name for name, _ in TEXTS]


def test_every_file_is_read() -> None:
    assert len(FILES) > 90  # the corpus is there: the equalities below are about something


# -- lines --------------------------------------------------------------------------------

_LINE_CHARS = st.sampled_from(list('AZaz09-.;:=,"\\ \t/é\r') + ["TZID", "VALUE=DATE", "X-"])


@PROPERTY
@given(st.lists(st.sampled_from(["a", ":", "\r", "\n", " ", "\t", "\r\n", "\n "]), max_size=40))
def test_unfolding_is_the_library_s(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert unfold(text) == [str(line) for line in Contentlines.from_ical(text) if line]


def test_unfolding_the_corpus_is_the_library_s() -> None:
    for _, text in TEXTS:
        assert unfold(text) == [str(line) for line in Contentlines.from_ical(text) if line]


@PROPERTY
@given(st.lists(_LINE_CHARS, max_size=30).map("".join))
def test_a_line_is_split_as_the_library_splits_it(line: str) -> None:
    assert_same_split(line)


def test_the_corpus_lines_are_split_as_the_library_splits_them() -> None:
    for _, text in TEXTS:
        for line in unfold(text):
            assert_same_split(line)


def assert_same_split(line: str) -> None:
    ours = _TrimmedParser("")._split(line)
    try:
        theirs = Contentline(line).raw_parts()
    except ValueError:
        assert ours is None  # the library's error is for the library to say
        return
    if ours is not None:
        assert (ours[0], dict(ours[1]), ours[2]) == (theirs[0], dict(theirs[1]), theirs[2])
        assert type(ours[1]) is type(theirs[1])


# -- the component tree -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text"), TEXTS, ids=IDS)
def test_the_tree_of_a_file_is_the_library_s(name: str, text: str) -> None:
    assert_same_tree(text)


@PROPERTY
@given(s.calendars())
def test_the_tree_of_a_generated_calendar_is_the_library_s(text: str) -> None:
    assert_same_tree(text)


def assert_same_tree(text: str) -> None:
    icalendar.timezone.tzp.use_default()
    try:
        theirs = icalendar.Calendar.from_ical(text, multiple=True)
    except Exception:  # noqa: BLE001
        icalendar.timezone.tzp.use_default()
        with pytest.raises(Exception):  # noqa: B017, PT011  (what the library raises on)
            _TrimmedParser(text).parse()
        return
    icalendar.timezone.tzp.use_default()
    ours = _TrimmedParser(text).parse()
    assert len(ours) == len(theirs)
    for mine, library in zip(ours, theirs, strict=True):
        assert_same_component(mine, library)


def assert_same_component(ours, theirs) -> None:
    assert (type(ours), ours.name) == (type(theirs), theirs.name)
    assert ours.errors == theirs.errors
    for name in theirs:
        if name in ours:
            assert_same_value(ours[name], theirs[name])
        else:  # left out: a property of an event nobody reads
            assert theirs.name in ("VEVENT", "VALARM") and name not in READ, name
    assert set(ours) <= set(theirs)
    assert len(ours.subcomponents) == len(theirs.subcomponents)
    for mine, library in zip(ours.subcomponents, theirs.subcomponents, strict=True):
        assert_same_component(mine, library)


def assert_same_value(ours, theirs) -> None:
    assert type(ours) is type(theirs)
    if isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for mine, library in zip(ours, theirs, strict=True):
            assert_same_value(mine, library)
        return
    assert ours.to_ical() == theirs.to_ical()
    assert dict(ours.params) == dict(theirs.params)
    assert repr(outcome(lambda: ours.dt)) == repr(outcome(lambda: theirs.dt))
    assert str(ours) == str(theirs)


# -- a lone event, the grouping, x-wr-timezone -----------------------------------------------

_TZINFOS = [ZoneInfo("Europe/Copenhagen"), ZoneInfo("America/New_York"), UTC]
_TZINFOS += [ZoneInfo("Pacific/Kiritimati"), timezone(timedelta(hours=-3, minutes=-30))]


@st.composite
def lone_events(draw) -> icalendar.Event:
    """A lone event: a date or a time in a zone, an end of the same kind (or none)."""
    event = icalendar.Event()
    event.add("UID", "lone@test")
    day = NOW.date() + timedelta(days=draw(st.integers(-120, 760)))
    if draw(st.booleans()):
        start = day
        end = day + timedelta(days=draw(st.integers(-2, 3)))
    else:
        zone = draw(st.sampled_from(_TZINFOS))
        start = datetime.combine(day, datetime.min.time(), zone) + timedelta(
            minutes=15 * draw(st.integers(0, 95))
        )
        end = (start + timedelta(minutes=30 * draw(st.integers(-4, 60)))).astimezone(
            draw(st.sampled_from(_TZINFOS))
        )
    event.add("DTSTART", start)
    if draw(st.booleans()):
        event.add("DTEND", end)
    if draw(st.booleans()):
        event.add("SEQUENCE", draw(st.integers(-3, 5)))
    return event


@PROPERTY
@given(lone_events(), st.integers(-200, 800), st.integers(0, 900))
def test_a_lone_event_is_read_as_its_series(event, first: int, days: int) -> None:
    span_start = NOW + timedelta(days=first, hours=first % 7)
    span_stop = span_start + timedelta(days=days)
    adapter = WrittenEvent(event)
    assert recurrence._single([adapter])
    ours = SingleEvent(adapter).between(span_start, span_stop)
    theirs = list(WrittenSeries([WrittenEvent(event)]).between(span_start, span_stop))
    assert [(repr(o.start), repr(o.end), o.sequence, o.written) for o in ours] == [
        (repr(o.start), repr(o.end), o.sequence, o.written) for o in theirs
    ]


@pytest.mark.parametrize(("name", "text"), TEXTS, ids=IDS)
def test_the_series_of_a_file_are_the_library_s(name: str, text: str) -> None:
    assert_same_series(text)


@PROPERTY
@given(s.calendars())
def test_the_series_of_a_generated_calendar_are_the_library_s(text: str) -> None:
    assert_same_series(text)


def assert_same_series(text: str) -> None:
    """series_in and to_standard against recurring-ical-events and x-wr-timezone: the same
    series of the same components (a Series expands as the library's, being one), and a
    SingleEvent's occurrence the one its Series gives."""
    icalendar.timezone.tzp.use_default()
    try:
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
    except Exception:  # noqa: BLE001  (nothing to read)
        return
    for calendar in calendars:
        assert outcome(lambda c=calendar: times(to_standard(c))) == outcome(
            lambda c=calendar: times(x_wr_timezone.to_standard(c))
        )
        ours = outcome(lambda c=calendar: recurrence.series_in(c))
        theirs = outcome(lambda c=calendar: library_series(c))
        if isinstance(ours, str) or isinstance(theirs, str):
            assert ours == theirs
            continue
        assert [named(one.uid) for one in ours] == [named(one.uid) for one in theirs]
        for mine, library in zip(ours, theirs, strict=True):
            if isinstance(mine, SingleEvent):
                assert outcome(lambda m=mine: occurrence_ids(m)) == outcome(
                    lambda t=library: occurrence_ids(t)
                )
            else:
                assert type(mine) is type(library)
                assert components(mine) == components(library)


def named(uid: object) -> str:
    """A series' UID; an event without one is named by its object's id in the library."""
    return re.sub(r"\b\d{12,}\b", "<id>", str(uid))


def library_series(calendar) -> list:
    selection = ComponentsWithName("VEVENT", adapter=WrittenEvent, series=WrittenSeries)
    return list(
        recurring_ical_events.of(calendar, components=[selection], skip_bad_series=True).series
    )


def components(series) -> list[bytes]:
    return sorted(adapter.written.to_ical() for adapter in series.components)


def occurrence_ids(series) -> list[tuple]:
    start, stop = NOW - timedelta(days=90), NOW + timedelta(days=730)
    return [
        (repr(o.start), repr(o.end), repr(o.sequence), o.written.to_ical())
        for o in series.between(start, stop)
    ]


def times(calendar) -> list[tuple]:
    """Every time of every event, as x-wr-timezone leaves it."""
    return [
        (name, repr(getattr(event.get(name), "dt", event.get(name))))
        for event in calendar.walk("VEVENT")
        for name in ("DTSTART", "DTEND", "RECURRENCE-ID")
    ]


def outcome(call) -> object:
    try:
        return call()
    except Exception as e:  # noqa: BLE001
        return type(e).__name__


# -- the whole parse ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text"), TEXTS, ids=IDS)
def test_a_file_is_parsed_as_the_libraries_read_it(name: str, text: str, monkeypatch) -> None:
    assert_parsed_as_libraries(text, monkeypatch, "Europe/Copenhagen")


@PROPERTY
@given(s.calendars(), st.sampled_from(["Europe/Copenhagen", "America/New_York"]))
def test_a_generated_calendar_is_parsed_as_the_libraries_read_it(text: str, zone: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert_parsed_as_libraries(text, monkeypatch, zone, SMALL)


def test_a_generated_member_is_parsed_as_the_libraries_read_it(monkeypatch) -> None:
    rng = random.Random(15)
    for n in rng.sample(range(1, 400), 6):
        text = member_calendar(rng.randrange(100), member(n), 200, 400, NOW.date())
        assert_parsed_as_libraries(text, monkeypatch, "Europe/Copenhagen")


def assert_parsed_as_libraries(text: str, monkeypatch, zone: str, limits: Limits = HORIZON) -> None:
    ours = outcome_of_parse(text, zone, limits)
    with monkeypatch.context() as library:
        library.setattr(ical_module, "read_calendars", _library_calendars)
        library.setattr(ical_module, "series_in", lambda c, standard=False: library_series(c))
        library.setattr(ical_module, "to_standard", x_wr_timezone.to_standard)
        theirs = outcome_of_parse(text, zone, limits)
    if too_slow(ours) or too_slow(theirs):
        return  # a series stopped by its CPU budget: the two reads are compared, not timed
    assert in_order(ours) == in_order(theirs)


def too_slow(parsed: object) -> bool:
    return any(w.code == "series-too-slow" for w in getattr(parsed, "warnings", ()))


#: a series yields its overrides from a set (recurring-ical-events' Series.modifications,
#: ordered by the objects' ids): the library reads the same calendar in another order each
#: time, and which of two occurrences with one key is kept, which are left over the cap,
#: and which were read before a series broke off differ from one read to the next
_ORDERED_BY_CHANCE = {"duplicate-occurrence", "too-many-occurrences", "series-partly-read"}


def in_order(parsed: object) -> object:
    """A parse in an order that does not depend on the library's sets."""
    if not isinstance(parsed, ParsedFeed):
        return parsed
    warnings = sorted(named(w.words) for w in parsed.warnings)
    if _ORDERED_BY_CHANCE & {w.code for w in parsed.warnings}:
        return sorted({w.code for w in parsed.warnings}), parsed.series
    return sorted(map(repr, parsed.occurrences)), warnings, parsed.series


def _library_calendars(text: str) -> list:
    return icalendar.Calendar.from_ical(text, multiple=True)


def outcome_of_parse(text: str, zone: str, limits: Limits) -> object:
    try:
        return parse_calendar(
            text,
            url="test.ics",
            source_id="src",
            floating_zone=zone,
            network_zone="Europe/Copenhagen",
            now=NOW,
            limits=limits,
        )
    except Exception as e:  # noqa: BLE001  (ParseError and its words, compared)
        return (type(e).__name__, str(e))


def test_the_fast_paths_are_taken(monkeypatch) -> None:
    """Equal results prove nothing if the library did all the reading: a member's calendar
    is read by the trimmed parser and its lone events as SingleEvents."""

    def no_library(*args, **kwargs):
        raise AssertionError("read by the library")

    monkeypatch.setattr(icalendar.Calendar, "from_ical", no_library)
    calendars = ical_module.read_calendars(MEMBERS[0])
    assert calendars
    series = recurrence.series_in(calendars[0])
    assert sum(isinstance(one, SingleEvent) for one in series) > len(series) // 2
    assert all("DTSTAMP" not in event for event in calendars[0].walk("VEVENT"))


def test_a_text_value_with_a_zone_fails_as_in_the_library() -> None:
    """A DTSTART;TZID=...;VALUE=TEXT is a text the library tries to read with a zone."""
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:a\r\n"
        "DTSTART;TZID=Europe/Copenhagen;VALUE=TEXT:00010101\r\n"
        "DTSTART;VALUE=DATE:20261125\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    assert_same_tree(text)
    assert _TrimmedParser(text).parse()[0].subcomponents[0].errors
