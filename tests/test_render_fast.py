"""render/fast_ics.py: render_vevent writes the bytes icalendar writes, byte for byte.

icalendar (render_vevent_reference) is the reference. Generated events with hostile text,
every zone form and status; then every event of the shared corpus and of tests/data, parsed
and merged as a refresh does. Where icalendar raises, the fast path raises the same.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar.parser.string import _escape_char, _foldline

from aggregator.errors import ParseError
from aggregator.merge import merge
from aggregator.model import Limits, MergedEvent, Network, Source, Status
from aggregator.parse import decode_body
from aggregator.parse.ical import parse_calendar
from aggregator.render.fast_ics import escape_text, fold, write_vevent
from aggregator.render.ics import render_vevent, render_vevent_reference, vevent_properties
from tests.conftest import CORPUS, DATA, NOW

ZONES = [
    "Europe/Copenhagen",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Argentina/ComodRivadavia",
    "Etc/GMT+5",
    "UTC",
    "Etc/UTC",
    "GMT",
    "Zulu",
    "Africa/Abidjan",
]
#: tzid values as members write them: zones, their aliases, and what is not a zone at all
TZIDS = [None, "", *ZONES, "Custom Zone", "Europe", "Not/AZone", "W. Europe Standard Time"]
TZINFOS = [UTC, *(zoneinfo.ZoneInfo(z) for z in ZONES)]
#: what escaping and folding must get right, drawn often among arbitrary characters
TRICKY = [
    *"\\;,:\r\n\t^\"'\x00\x01\x0b\x0c\x1b\x7f\x85\u2028\u2029\ufeff",
    *"æøåÆØÅ€🎉👩‍👩‍👧𝄞\u0301",
    "\\N",
    "\\n",
    "\r\n",
    "\\,",
    " ",
]
NETWORKS = [
    Network(name="Netværket", languages=("da", "en")),
    Network(name="The network", languages=("en",), timezone="America/New_York"),
    Network(name="Netværket", languages=("da",), base_url="https://Kalender.Example.dk/net"),
    Network(name="Das Netz", languages=("de",), base_url="http://[::1]:8080"),
]

text = st.lists(
    st.one_of(st.text(max_size=40), st.sampled_from(TRICKY), st.just("x" * 90)), max_size=12
).map("".join)
long_text = st.one_of(
    text, st.lists(st.sampled_from([*TRICKY, "a", "ø", "word "]), max_size=400).map("".join)
)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(TZINFOS),
)
days = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 1, 1))
urls = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from(["https://alpha.example/e?a=1&b=2,3;4", "http://x.dk/ø æ", "mailto:a@b"]),
    text,
)


@st.composite
def merged_events(draw) -> MergedEvent:
    """A network event as merge makes it, with text members may write."""
    all_day = draw(st.booleans())
    start = draw(days if all_day else moments)
    end = start + draw(st.sampled_from([timedelta(0), timedelta(hours=2), timedelta(days=3)]))
    return MergedEvent(
        id=draw(st.one_of(st.text(alphabet="0123456789abcdef", min_size=1), text)),
        uid=draw(text),
        title=draw(text),
        start=start,
        end=end,
        all_day=all_day,
        tzid=draw(st.one_of(st.sampled_from(TZIDS), st.text(max_size=20))),
        description=draw(long_text),
        url=draw(urls),
        location=draw(text),
        status=draw(st.sampled_from(Status)),
        categories=tuple(draw(st.lists(text, max_size=4))),
        organisers=tuple(draw(st.lists(text, min_size=1, max_size=3))),
        source_ids=("alpha",),
        members=("alpha-1",),
        fingerprint="f",
        removed=draw(st.booleans()),
        previous_start=draw(st.one_of(st.none(), days, moments)),
        cancelled_by=tuple(draw(st.lists(text, max_size=2))),
    )


def outcome(render, event, sequence, created, modified, network) -> tuple:
    """The bytes, or the exception's type and words (publish shows them to the member)."""
    try:
        return ("bytes", render(event, sequence, created, modified, network))
    except Exception as e:  # noqa: BLE001  (whatever icalendar raises, both must raise it)
        return ("raised", type(e), str(e))


def assert_same(event, sequence=0, created=NOW, modified=NOW, network=NETWORKS[0]) -> str:
    """render_vevent == render_vevent_reference; who wrote it: 'fast', 'icalendar' (the
    fast path left it to icalendar) or 'raised' (both raised the same)."""
    args = (event, sequence, created, modified, network)
    reference = outcome(render_vevent_reference, *args)
    assert outcome(render_vevent, *args) == reference
    if reference[0] == "raised":
        return "raised"
    return "icalendar" if write_vevent(vevent_properties(*args)) is None else "fast"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=merged_events(),
    sequence=st.one_of(st.integers(0, 2**31 - 1), st.sampled_from([-1, 2**31, -(2**31) - 1])),
    created=moments,
    modified=st.one_of(moments, st.datetimes(max_value=datetime(9999, 12, 31))),
    network=st.sampled_from(NETWORKS),
)
def test_generated_events_are_the_bytes_icalendar_writes(
    event, sequence, created, modified, network
):
    # every value generated is a form the fast path writes: none is left to icalendar
    assert assert_same(event, sequence, created, modified, network) in ("fast", "raised")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(), st.sampled_from(TRICKY)), max_size=60).map("".join))
def test_escaping_is_icalendars(value):
    assert escape_text(value) == _escape_char(value)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from([*"ab\\^;\r\t", "ø", "€", "🎉", "\u0301"]), max_size=600),
    st.sampled_from(["", "X", "DESCRIPTION:", "DTSTART;TZID=Europe/Copenhagen:"]),
)
def test_folding_is_icalendars(value, head):
    line = head + value
    assert fold(line.encode()) == _foldline(line).encode()


@pytest.mark.parametrize(
    "fields",
    [
        {"title": "lone \ud800 surrogate"},
        {"url": "https://x.example/\ud83d"},
        {"url": "https://x.example/a\r\nb"},
        {"url": "https://x.example/a\nb"},
        {"id": "a\rb"},
    ],
)
def test_what_icalendar_cannot_write_raises_the_same(fields):
    assert assert_same(generated_like(**fields)) == "raised"


def test_a_stamp_beyond_year_9999_in_utc_raises_the_same():
    late = datetime(9999, 12, 31, 23, tzinfo=zoneinfo.ZoneInfo("America/New_York"))
    assert assert_same(generated_like(), modified=late) == "raised"


def test_an_all_day_event_given_times_is_written_with_the_times_as_icalendar_does():
    assert assert_same(generated_like(all_day=True)) == "fast"


@pytest.mark.parametrize(
    ("zone", "writer"),
    [
        (timezone(timedelta(hours=1)), "icalendar"),
        (timezone(timedelta(hours=1), "CET"), "icalendar"),
        (timezone.utc, "fast"),
        (None, "fast"),
    ],
)
def test_a_fixed_offset_is_left_to_icalendar_unless_it_is_utc(zone, writer):
    start = datetime(2027, 3, 1, 18, tzinfo=zone)
    event = generated_like(tzid=None, start=start, end=start + timedelta(hours=1))
    assert assert_same(event) == writer


def generated_like(**fields) -> MergedEvent:
    start = datetime(2027, 3, 1, 17, tzinfo=UTC)
    values = {
        "id": "e1",
        "uid": "u@x",
        "title": "Klimacafé",
        "start": start,
        "end": start + timedelta(hours=2),
        "all_day": False,
        "tzid": "Europe/Copenhagen",
        "description": "",
        "url": None,
        "location": "",
        "status": Status.SCHEDULED,
        "categories": (),
        "organisers": ("Alpha",),
        "source_ids": ("alpha",),
        "members": ("alpha-1",),
        "fingerprint": "f",
    }
    return MergedEvent(**{**values, **fields})


# -- every real event ----------------------------------------------------------------------

WIDE = Limits(past_days=365 * 40, future_days=365 * 12, max_occurrences=100_000)
SOURCE = Source(id="src", name="Foreningen, Aarhus; \\ og co.", url="/src.ics", categories=("x",))
FILES = sorted(CORPUS.glob("**/*.ics")) + sorted(DATA.glob("**/*.ics"))


def corpus_events(path: Path) -> list[MergedEvent]:
    """The file's network events, read and merged as a refresh does (none when the file is
    not a calendar a refresh would read)."""
    text, _ = decode_body(path.read_bytes())
    try:
        parsed = parse_calendar(
            text,
            url=str(path),
            source_id=SOURCE.id,
            floating_zone="Europe/Copenhagen",
            network_zone="Europe/Copenhagen",
            now=NOW,
            limits=WIDE,
        )
    except ParseError:
        return []
    return merge(parsed.occurrences, [SOURCE])


def test_the_corpus_is_there():
    assert len(FILES) > 50


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_event_of_the_corpus_is_the_bytes_icalendar_writes(path):
    for event in each_text(corpus_events(path)):
        moved = replace(event, previous_start=event.start - timedelta(days=1), cancelled_by=("B",))
        for network, variant in zip(NETWORKS, (event, moved, event, moved), strict=True):
            assert assert_same(variant, 7, NOW - timedelta(days=3), NOW, network) == "fast"


def each_text(events: list[MergedEvent], dates: int = 3) -> list[MergedEvent]:
    """Every event whose text, zone or status differs, and `dates` occurrences of each: a
    runaway series has 60,000 that differ only in their times, which the generated events
    cover, and rendering each both ways would take minutes."""
    seen: dict[tuple, int] = {}
    chosen = []
    for event in events:
        key = (
            replace(
                event,
                start=date.min,
                end=date.min,
                id="",
                members=(),
                fingerprint="",
                identities=(),
            ),
            type(event.start),
        )
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= dates:
            chosen.append(event)
    return chosen
