"""Hostile member content (issue 13): every parser entry point gives occurrences and warnings,
or raises ParseError; never another exception, never slowly, never an unsafe link or title.

CI runs the `ci` profile (bounded, seeded: the same examples every run); `make fuzz` runs the
`fuzz` profile for as long as FUZZ_MINUTES says (tests/fuzz/README.md). Inputs that once broke
a parser live in tests/fuzz/ and are checked on every run by test_regression_case.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aggregator.errors import ParseError
from aggregator.model import (
    FeedItem,
    FetchOutcome,
    FetchResult,
    FoundEvent,
    Limits,
    Occurrence,
    PageData,
    ParsedFeed,
    Problem,
    Source,
    SourceKind,
)
from aggregator.normalise import clean_url
from aggregator.parse import decode_body, parse_feed
from aggregator.parse.feeds import item_events, read_feed
from aggregator.parse.ical import parse_calendar
from aggregator.parse.pages import event_from_ics, read_page, structured_events
from aggregator.parse.warnings import MAX_WARNINGS
from tests.fuzz import strategies as s

T = TypeVar("T")
FUZZ = Path(__file__).parent / "fuzz"
NOW = s.NOW
#: the zone a source is configured with (validated by config): never hostile itself
ZONES = st.sampled_from(["Europe/Copenhagen", "UTC", "America/New_York", "Pacific/Kiritimati"])
LIMITS = st.builds(
    Limits,
    past_days=st.sampled_from([0, 90, 36500]),
    future_days=st.sampled_from([0, 730, 36500]),
    max_occurrences=st.sampled_from([1, 50, 5000]),
)
#: wall-clock time one example may take (hypothesis `deadline`): generous, for a busy machine
#: (CI shares two cores with the browser tests); the budget a refresh gives is 30 s of CPU
DEADLINE = timedelta(seconds=15)
#: CPU seconds after which an example is stopped where it is: a hang fails, it never hangs CI
HARD_STOP = 30.0

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=DEADLINE,
    suppress_health_check=_HEALTH,
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "1000")),
    derandomize=False,
    deadline=DEADLINE,
    suppress_health_check=_HEALTH,
    print_blob=True,
)
#: applied to the tests of this file only; the other property tests keep their own settings
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
fuzz = settings(PROFILE)


class OverBudget(Exception):  # noqa: N818  (what the test reports, not an error class)
    """The parse ran past HARD_STOP CPU seconds."""


@contextmanager
def hard_stop(seconds: float = HARD_STOP) -> Iterator[None]:
    """Stop the code inside after `seconds` of CPU time (a CPU timer; Python code only)."""

    def stop(signum, frame):
        raise OverBudget(f"over {seconds} CPU seconds")

    previous = signal.signal(signal.SIGPROF, stop)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def run(read: Callable[..., T], *args, **kwargs) -> T | None:
    """read(...) on a budget: its value, or None for a ParseError; anything else propagates."""
    with hard_stop():
        try:
            return read(*args, **kwargs)
        except ParseError as e:
            assert e.message and e.url is not None
            return None


# -- the invariants downstream relies on ---------------------------------------------------


def printable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


def plain(text: str) -> bool:
    """Text as a member wrote it: no control characters, and not the repr of a Python list of
    icalendar values (a property written twice)."""
    return printable(text) and "vText(" not in text


def check_url(url: str | None) -> None:
    """None, or an http(s) URL that clean_url leaves as it is (so no controls, a valid host)."""
    if url is None:
        return
    assert url.split(":", 1)[0] in ("http", "https"), url
    assert clean_url(url) == url, url
    assert printable(url), url


def check_time(start, end, all_day: bool) -> None:
    if all_day:
        assert not isinstance(start, datetime) and not isinstance(end, datetime), (start, end)
    else:
        assert isinstance(start, datetime) and isinstance(end, datetime), (start, end)
        assert start.utcoffset() is not None and end.utcoffset() is not None
    assert start <= end, (start, end)


def check_occurrence(occurrence: Occurrence) -> None:
    assert isinstance(occurrence, Occurrence)
    check_url(occurrence.url)
    assert occurrence.title and plain(occurrence.title), occurrence.title
    assert plain(occurrence.location), occurrence.location
    assert "vText(" not in occurrence.description, occurrence.description
    assert all(c and printable(c) for c in occurrence.categories), occurrence.categories
    check_time(occurrence.start, occurrence.end, occurrence.all_day)
    if not occurrence.all_day:  # aware UTC inside (rule 1)
        assert occurrence.start.utcoffset() == timedelta(0) == occurrence.end.utcoffset()
    assert occurrence.key and occurrence.fingerprint


def check_parsed(parsed: ParsedFeed | None, limits: Limits) -> None:
    if parsed is None:
        return
    assert isinstance(parsed, ParsedFeed)
    assert len(parsed.occurrences) <= limits.max_occurrences
    assert len({o.key for o in parsed.occurrences}) == len(parsed.occurrences)
    assert all(isinstance(w, Problem | str) and str(w) for w in parsed.warnings)
    # the feed's and the items' warnings, each capped
    assert len(parsed.warnings) <= 2 * (MAX_WARNINGS + 1), len(parsed.warnings)
    for occurrence in parsed.occurrences:
        check_occurrence(occurrence)


def check_found(found: FoundEvent | None) -> None:
    if found is None:
        return
    assert isinstance(found, FoundEvent)
    check_time(found.start, found.end, found.all_day)
    assert found.location is None or printable(found.location), found.location


def check_page(page: PageData) -> None:
    assert isinstance(page, PageData)
    for link in page.ics_links:
        check_url(link)
    for found in page.events:
        check_found(found)
    assert page.location is None or printable(page.location)


def check_items(items: list[FeedItem], warnings: list[Problem]) -> None:
    assert len({item.id for item in items}) == len(items)
    assert len(warnings) <= MAX_WARNINGS + 1
    for item in items:
        assert isinstance(item, FeedItem) and item.id
        assert item.title and printable(item.title), item.title
        check_url(item.link)
        check_found(item.structured)


# -- the entry points -----------------------------------------------------------------------


def calendar_source(zone: str | None = None) -> Source:
    return Source(id="fuzz", name="Fuzz", url="https://example.org/c.ics", timezone=zone)


def read_calendar_body(body: bytes, charset: str | None, zone: str, limits: Limits) -> None:
    result = FetchResult(FetchOutcome.OK, "https://example.org/c.ics", body=body, charset=charset)
    parsed = run(parse_feed, result, calendar_source(), network_zone=zone, now=NOW, limits=limits)
    check_parsed(parsed, limits)


def read_calendar_text(text: str, zone: str, limits: Limits) -> ParsedFeed | None:
    parsed = run(
        parse_calendar,
        text,
        url="https://example.org/c.ics",
        source_id="fuzz",
        floating_zone=zone,
        network_zone=zone,
        now=NOW,
        limits=limits,
    )
    check_parsed(parsed, limits)
    return parsed


def read_ics_link(text: str, zone: str) -> None:
    check_found(run(event_from_ics, text, "https://example.org/e.ics", zone, NOW))


def read_rss(body: bytes, content_type: str | None, html: str, zone: str, limits: Limits):
    read = run(read_feed, body, content_type, url="https://example.org/f.rss", zone_name=zone)
    if read is None:
        return
    items, warnings = read
    check_items(items, warnings)
    # every linked page says the same (hostile) thing
    pages = {}
    for item in items:
        if item.link:
            pages[item.link] = run(read_page, html, item.link, zone)
            check_page(pages[item.link])
    source = Source(id="fuzz", name="Fuzz", url="https://example.org/f.rss", kind=SourceKind.RSS)
    parsed = run(
        item_events,
        items,
        pages,
        source=source,
        zone_name=zone,
        languages=("da", "en"),
        now=NOW,
        limits=limits,
    )
    check_parsed(parsed, limits)


def read_html(html: str, url: str, zone: str) -> None:
    page = run(read_page, html, url, zone)
    if page is not None:
        check_page(page)
    found = run(structured_events, html, url, zone)
    for event in found or []:
        check_found(event)


def read_bytes(body: bytes, charset: str | None) -> None:
    with hard_stop():
        text, warnings = decode_body(body, charset)
    assert isinstance(text, str) and all(isinstance(w, Problem | str) for w in warnings)


# -- property tests -------------------------------------------------------------------------


@fuzz
@given(s.ical_bodies(), ZONES, LIMITS)
def test_parse_feed_reads_any_calendar_body(body_charset, zone, limits):
    read_calendar_body(*body_charset, zone, limits)


@fuzz
@given(s.calendars(), ZONES, LIMITS)
def test_parse_calendar_reads_any_calendar_text(text, zone, limits):
    read_calendar_text(text, zone, limits)


@fuzz
@given(s.calendars(), ZONES)
def test_event_from_ics_reads_any_linked_ics(text, zone):
    read_ics_link(text, zone)


_GOOD_EVENT = [
    "BEGIN:VEVENT",
    "UID:must-survive@fuzz",
    "DTSTAMP:20261125T120000Z",
    "DTSTART:20261201T170000Z",
    "DTEND:20261201T190000Z",
    "SUMMARY:Generalforsamling",
    "END:VEVENT",
]


@fuzz
@given(s.vevent_lines(), st.booleans())
def test_one_broken_event_costs_only_itself(hostile, good_first):
    events = [*_GOOD_EVENT, *hostile] if good_first else [*hostile, *_GOOD_EVENT]
    text = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fuzz//EN", *events])
    limits = Limits()
    parsed = read_calendar_text(text + "\r\nEND:VCALENDAR\r\n", "Europe/Copenhagen", limits)
    assert parsed is not None
    # a hostile series may fill the cap before the good event is read: that is the cap's job
    assume(len(parsed.occurrences) < limits.max_occurrences)
    assert "must-survive@fuzz" in {o.uid for o in parsed.occurrences}, parsed.warnings


@fuzz
@given(s.feed_bodies(), s.pages(), ZONES, LIMITS)
def test_rss_and_atom_feeds_and_their_pages_give_safe_occurrences(body_type, html, zone, limits):
    read_rss(*body_type, html, zone, limits)


@fuzz
@given(s.pages(), s.PAGE_URLS, ZONES)
def test_event_pages_give_safe_events_and_links(html, url, zone):
    read_html(html, url, zone)


@fuzz
@given(s.any_bytes(), s.CHARSETS)
def test_any_bytes_decode_to_text(body, charset):
    read_bytes(body, charset)


# -- regression cases: inputs that once broke a parser --------------------------------------

#: cases that still fail because the bug is in a file another change owns; each names it.
#: Remove the entry when the owner's fix lands (the case then passes, and must keep passing).
KNOWN: dict[str, str] = {}


def regression_cases() -> list:
    cases = []
    for path in sorted(FUZZ.iterdir()):
        if path.suffix not in (".ics", ".xml", ".html", ".json"):
            continue
        marks = []
        if path.name in KNOWN:
            marks.append(pytest.mark.xfail(strict=False, reason=KNOWN[path.name]))
        cases.append(pytest.param(path, id=path.name, marks=marks))
    return cases


def check_case(path: Path) -> None:
    """The property the fuzz test that found it checks, on the case as stored, in time."""
    began = time.process_time()
    zone, limits = "Europe/Copenhagen", Limits()
    if path.suffix == ".ics":
        body = path.read_bytes()
        read_calendar_body(body, None, zone, limits)
        text, _ = decode_body(body)
        parsed = read_calendar_text(text, zone, limits)
        read_ics_link(text, zone)
        if "UID:must-survive@fuzz" in text:  # _GOOD_EVENT beside a hostile one
            assert parsed is not None
            assert "must-survive@fuzz" in {o.uid for o in parsed.occurrences}, parsed.warnings
    elif path.suffix == ".xml":
        page = path.with_suffix(".page.html")
        html = page.read_text(encoding="utf-8") if page.exists() else ""
        read_rss(path.read_bytes(), None, html, zone, limits)
    elif path.suffix == ".html":
        read_html(path.read_text(encoding="utf-8", errors="replace"), "https://example.org/", zone)
    else:  # .json: a decode_body case, {"body": latin-1 text of the bytes, "charset": ...}
        case = json.loads(path.read_text(encoding="utf-8"))
        read_bytes(case["body"].encode("latin-1"), case["charset"])
    assert time.process_time() - began < DEADLINE.total_seconds()


@pytest.mark.parametrize("path", regression_cases())
def test_regression_case(path):
    check_case(path)


def test_every_regression_case_is_documented():
    readme = (FUZZ / "README.md").read_text(encoding="utf-8")
    names = [p.name for p in FUZZ.iterdir() if p.suffix in (".ics", ".xml", ".html", ".json")]
    assert [n for n in names if n not in readme] == []
    assert [n for n in KNOWN if n not in names] == []


def test_an_all_day_occurrence_is_dates_not_datetimes():
    """check_time itself: a datetime is a date too, so it must be told apart on purpose."""
    with pytest.raises(AssertionError):
        check_time(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), True)
    check_time(date(2026, 1, 1), date(2026, 1, 2), True)


def _calendar_in(tzid: str, offset: str, uid: str) -> str:
    return "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//fuzz//EN",
            "BEGIN:VTIMEZONE",
            f"TZID:{tzid}",
            "BEGIN:STANDARD",
            "DTSTART:19700101T000000",
            f"TZOFFSETFROM:{offset}",
            f"TZOFFSETTO:{offset}",
            "END:STANDARD",
            "END:VTIMEZONE",
            "BEGIN:VEVENT",
            f"UID:{uid}",
            "DTSTAMP:20261125T120000Z",
            f"DTSTART;TZID={tzid}:20270112T100000",
            "SUMMARY:Møde",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    )


@pytest.mark.parametrize("tzid", ["Romance Standard Time", "Custom Zone"])
def test_a_time_zone_one_calendar_defines_never_moves_another_calendars_events(tzid):
    read = lambda text: parse_calendar(  # noqa: E731
        text,
        url="https://example.org/c.ics",
        source_id="fuzz",
        floating_zone="Europe/Copenhagen",
        network_zone="Europe/Copenhagen",
        now=NOW,
        limits=Limits(),
    )
    read(_calendar_in(tzid, "+0500", "hostile@fuzz"))  # a hostile member's feed, read first
    (victim,) = read(_calendar_in(tzid, "+0100", "victim@fuzz")).occurrences
    # 10:00 at +01:00 is 09:00 UTC; with the hostile member's zone it read 05:00
    assert victim.start == datetime(2027, 1, 12, 9, tzinfo=UTC)
