"""Issue 13: one hostile feed never stops the network.

CPU bombs are bounded (the title marker, the salvage of a broken calendar, recurrence
expansion), every read of member content runs in a worker process on a budget, links are
cleaned before they reach any output, an event that cannot be rendered costs only itself,
links in content are fetched only when public, and RANGE=THISANDFUTURE keeps every date.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import icalendar
import pytest
import recurring_ical_events
from dateutil.rrule import rrulestr
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import worker
from aggregator.errors import ParseError
from aggregator.merge import merge
from aggregator.model import (
    FetchOutcome,
    FetchResult,
    Limits,
    MergeSettings,
    Occurrence,
    SourceKind,
    Status,
)
from aggregator.normalise import _TITLE_MARKER, occurrence_key, title_status, with_fingerprint
from aggregator.parse import parse_feed
from aggregator.parse.ical import parse_calendar
from aggregator.parse.recurrence import BoundedRule
from aggregator.refresh import publish, refresh_all
from aggregator.render.json import render_json
from aggregator.schedule import Scheduler
from tests.conftest import DATA, fetching, make_settings, put_snapshot, source

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

ZONE = "Europe/Copenhagen"


def read(text: str, now: datetime, **limits) -> tuple[int, tuple[str, ...]]:
    parsed = parse_calendar(
        text,
        url="https://member.example/cal.ics",
        source_id="member",
        floating_zone=ZONE,
        network_zone=ZONE,
        now=now,
        limits=replace(Limits(), **limits),
    )
    return len(parsed.occurrences), parsed.warnings


def _occurrence(source_id: str, uid: str, title: str, url: str | None) -> Occurrence:
    """An occurrence as the store holds it, written past the parsers."""
    start = datetime(2026, 12, 10, 18, tzinfo=UTC)
    return with_fingerprint(
        Occurrence(
            key=occurrence_key(source_id, uid, None),
            source_id=source_id,
            uid=uid,
            recurrence_id=None,
            title=title,
            start=start,
            end=start + timedelta(hours=2),
            all_day=False,
            tzid=ZONE,
            description="",
            url=url,
            location="",
            status=Status.SCHEDULED,
            categories=(),
            sequence=0,
        )
    )


def calendar(*events: str) -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        + "".join(
            "BEGIN:VEVENT\r\n"
            + e.strip().replace("\r\n", "\n").replace("\n", "\r\n")
            + "\r\nEND:VEVENT\r\n"
            for e in events
        )
        + "END:VCALENDAR\r\n"
    )


def cpu(call) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


# -- the title marker -------------------------------------------------------------------------

#: the expression as it was: nested quantifiers over words that overlap ("canceled" is both
#: cancell?ed and canceled), so a run of status words without a separator backtracks 2^n ways
_PLAIN_MARKER = re.compile(
    r"^\W*(?P<words>(?:(?:aflyst|cancell?ed|canceled|annulleret|udsat|postponed|flyttet|"
    r"rescheduled|nyt tidspunkt|ny dato)\s*(?:/|\||&|og|and)?\s*)+)\s*[:\-–—!\])]+\s*",
    re.IGNORECASE,
)
_PIECES = [
    "Aflyst",
    "cancelled",
    "Canceled",
    "udsat",
    "Ny dato",
    "og",
    "and",
    "/",
    "|",
    "&",
    " ",
    "  ",
    ":",
    "-",
    "!",
    "]",
    "Koncert",
    "x",
    "–",
    "[",
    "*",
]


def test_a_title_of_many_status_words_is_read_at_once():
    for title in ("canceled" * 40 + "x", "Aflyst/" * 2000 + "Koncert", "udsat " * 5000 + "?"):
        assert cpu(lambda t=title: title_status(t)) < 0.05


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=9))
def test_the_title_marker_matches_what_the_plain_expression_matched(pieces):
    title = "".join(pieces)
    plain, bounded = _PLAIN_MARKER.match(title), _TITLE_MARKER.match(title)
    assert (plain is None) == (bounded is None)
    if plain is not None:
        assert (plain.group("words"), plain.end()) == (bounded.group("words"), bounded.end())


# -- salvaging a broken calendar --------------------------------------------------------------


def test_half_a_megabyte_of_unclosed_events_is_salvaged_in_linear_time(now):
    good = "UID:good\r\nDTSTART:20261210T100000Z\r\nDTEND:20261210T110000Z\r\nSUMMARY:Good"
    bomb = "BEGIN:VEVENT\r\nSUMMARY:x\r\n" * 22_000  # ~0.5 MB, no END:VEVENT
    text = calendar(good).replace("END:VCALENDAR", bomb + "END:VCALENDAR")
    text = text.replace("PRODID:-//test//EN", "PRODID:-//test//EN\r\nX-BROKEN;=:\x00")
    assert len(text) > 500_000
    found = []
    assert cpu(lambda: found.append(read(text, now))) < 5  # 11 s before
    count, _warnings = found[0]
    assert count == 1


# -- recurrence bounded by the work it does ---------------------------------------------------


@pytest.mark.parametrize(
    "rule", ["FREQ=SECONDLY", "FREQ=MINUTELY", "FREQ=SECONDLY;INTERVAL=7;BYMINUTE=5,6,7"]
)
def test_a_rule_repeating_every_second_for_years_is_bounded_and_says_so(rule, now):
    event = f"UID:bomb\nDTSTART:20190101T100000Z\nDURATION:PT1S\nRRULE:{rule}\nSUMMARY:Bomb"
    good = "UID:good\nDTSTART:20261210T100000Z\nDTEND:20261210T110000Z\nSUMMARY:Good"
    found = []
    assert cpu(lambda: found.append(read(calendar(event, good), now))) < 5  # minutes before
    count, warnings = found[0]
    assert 0 < count <= Limits().max_occurrences
    assert any("RRULE:" + rule in str(w) and "read only the first" in str(w) for w in warnings)


def test_a_rule_with_a_huge_count_from_years_back_is_bounded(now):
    event = "UID:bomb\nDTSTART:20000101T000000Z\nRRULE:FREQ=SECONDLY;COUNT=2000000000\nSUMMARY:B"
    good = "UID:good\nDTSTART:20261210T100000Z\nDTEND:20261210T110000Z\nSUMMARY:Good"
    found = []
    assert cpu(lambda: found.append(read(calendar(event, good), now))) < 5
    count, warnings = found[0]
    assert count >= 1  # the good event is read
    assert any("COUNT=2000000000" in str(w) for w in warnings)


def test_a_rule_that_never_matches_costs_its_series_not_the_feed(now):
    # dateutil searches day by day up to the year 9999 without yielding
    event = (
        "UID:never\nDTSTART:20200101T100000Z\nRRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30\nSUMMARY:N"
    )
    good = "UID:good\nDTSTART:20261210T100000Z\nDTEND:20261210T110000Z\nSUMMARY:Good"
    found = []
    assert (
        cpu(lambda: found.append(read(calendar(event, event.replace("never", "n2"), good), now)))
        < 7
    )
    count, warnings = found[0]
    assert count == 1
    assert any("took more than" in str(w) and "UID never" in str(w) for w in warnings)


_FREQS = st.sampled_from(["WEEKLY", "DAILY", "HOURLY", "MINUTELY"])
_BY = st.sampled_from(
    [
        "",
        ";BYDAY=MO,WE",
        ";BYHOUR=9,17",
        ";BYMINUTE=0,30",
        ";BYMONTH=1,6",
        ";BYMONTHDAY=1,15",
        ";BYDAY=TU;BYHOUR=10",
        ";BYSETPOS=1;BYDAY=MO,TU",
        ";WKST=SU;BYDAY=SU,MO",
    ]
)


@settings(max_examples=80, derandomize=True, deadline=None)
@given(
    freq=_FREQS,
    interval=st.integers(1, 5),
    by=_BY,
    start=st.datetimes(datetime(2024, 1, 1), datetime(2026, 6, 1)),
    zone=st.sampled_from([None, ZONE, "America/New_York"]),
    until=st.booleans(),
)
def test_a_bounded_rule_gives_what_dateutil_gives(freq, interval, by, start, zone, until):
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone) if zone else None
    start = start.replace(microsecond=0, tzinfo=tz)
    text = f"FREQ={freq};INTERVAL={interval}{by}"
    if until:
        text += ";UNTIL=20270101T000000" + ("Z" if tz else "")
    try:
        rule = rrulestr(text, dtstart=start)
    except ValueError:
        return
    after = datetime(2026, 9, 1, 3, 30, tzinfo=tz)
    before = after + (timedelta(days=20) if freq in ("WEEKLY", "DAILY") else timedelta(hours=30))
    expected = rule.between(after, before, inc=True)
    cut = []
    limited = BoundedRule(rule, text, 10**6, cut.append, start=start)
    bounded = limited.between(after, before, inc=True)
    assert bounded == expected
    assert cut == []


# -- RANGE=THISANDFUTURE ----------------------------------------------------------------------


def test_this_and_future_overrides_keep_every_date_changed_from_the_override_on(now):
    text = (DATA / "this_and_future.ics").read_text()
    count, warnings = read(text, now)
    start, stop = now - timedelta(days=Limits().past_days), now + timedelta(days=730)
    library = recurring_ical_events.of(icalendar.Calendar.from_ical(text)).between(start, stop)
    assert count == len(library) == 200
    assert not any("more than once" in str(w) for w in warnings)
    parsed = parse_calendar(
        text,
        url="u",
        source_id="m",
        floating_zone=ZONE,
        network_zone=ZONE,
        now=now,
        limits=Limits(),
    )
    by_day = {o.start.astimezone(UTC).date().isoformat(): o for o in parsed.occurrences}
    assert by_day["2026-11-30"].title == "Daily standup"
    assert by_day["2026-12-02"].title == "Daily standup (noon)"
    assert by_day["2026-12-02"].start.astimezone(UTC).hour == 11  # 12:00 in Copenhagen
    assert by_day["2027-01-05"].title == "Daily standup (early)"
    assert len({o.key for o in parsed.occurrences}) == 200


# -- worker processes and their budget --------------------------------------------------------


def _ics_result(body: bytes) -> FetchResult:
    return FetchResult(FetchOutcome.OK, "https://member.example/cal.ics", body=body)


def _never_matching(n: int) -> bytes:
    rule = "RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"
    return calendar(
        *(f"UID:n{i}\nDTSTART:20200101T100000Z\n{rule}\nSUMMARY:N" for i in range(n))
    ).encode()


async def test_a_read_over_its_cpu_budget_fails_in_words(now):
    limits = Limits(parse_seconds=1.5)
    src = source("member", "https://member.example/cal.ics")
    read = partial(
        parse_feed,
        _ics_result(_never_matching(3)),
        src,
        network_zone=ZONE,
        now=now,
        limits=limits,
    )
    with pytest.raises(ParseError) as refused:
        await worker.parse(read, url=src.url, limits=limits)
    assert "more than 1.5 s of processor time" in refused.value.message
    # the pool goes on: the next read is answered
    good = calendar("UID:g\nDTSTART:20261210T100000Z\nDTEND:20261210T110000Z\nSUMMARY:Good")
    parsed = await worker.parse(
        partial(
            parse_feed, _ics_result(good.encode()), src, network_zone=ZONE, now=now, limits=limits
        ),
        url=src.url,
        limits=limits,
    )
    assert [o.title for o in parsed.occurrences] == ["Good"]


def _hoard(megabytes: int) -> int:
    kept = [bytearray(1024 * 1024) for _ in range(megabytes)]
    return len(kept)


async def test_a_read_over_its_memory_budget_fails_in_words():
    limits = Limits(parse_memory=64)
    with pytest.raises(ParseError) as refused:
        await worker.parse(partial(_hoard, 400), url="https://m.example/", limits=limits)
    assert "more than 64 MB of memory" in refused.value.message
    assert await worker.parse(partial(_hoard, 8), url="https://m.example/", limits=limits) == 8


async def test_a_feed_over_budget_keeps_its_last_good_events(store, feed_server, tmp_path, now):
    good = calendar("UID:g\nDTSTART:20261210T100000Z\nDTEND:20261210T110000Z\nSUMMARY:Good")
    url = feed_server.serve("/m.ics", good)
    other = feed_server.serve("/o.ics", good.replace("UID:g", "UID:o").replace("Good", "Other"))
    settings = make_settings(tmp_path, [source("m", url), source("o", other)], parse_seconds=1.5)
    async with fetching(settings) as fetcher:
        await refresh_all(store, fetcher, settings, now)
        feed_server.serve("/m.ics", _never_matching(3))
        feed_server.serve("/o.ics", good.replace("UID:g", "UID:o").replace("Good", "Other 2"))
        reports, _ = await refresh_all(store, fetcher, settings, now + timedelta(hours=1))
    report = {r.source_id: r for r in reports}
    assert report["m"].outcome == "failed"
    assert "processor time" in report["m"].error
    assert report["o"].outcome == "updated"
    titles = {e.event.title for e in await store.published_events()}
    assert titles == {"Good", "Other 2"}
    state = (await store.source_states())["m"]
    assert "processor time" in (state.last_error or "")


# -- links and rendering ----------------------------------------------------------------------

RSS_WITH_BAD_LINKS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Medlem</title><link>https://member.example/</link>
<item><title>Koncert</title><guid>k1</guid>
<link>https://member.example/koncert
X-Injected: yes</link>
<description>Torsdag 10. december 2026 kl. 19.00-21.00 i Kulturhuset</description></item>
<item><title>Foredrag</title><guid>f1</guid><link>javascript:alert(1)</link>
<description>Fredag 11. december 2026 kl. 17.00-18.00</description></item>
</channel></rss>"""


async def test_a_link_with_a_line_break_or_a_script_never_reaches_an_output(
    store, feed_server, tmp_path, now
):
    url = feed_server.serve(
        "/feed.xml", RSS_WITH_BAD_LINKS, headers={"Content-Type": "application/rss+xml"}
    )
    settings = make_settings(tmp_path, [source("m", url, kind=SourceKind.RSS)], max_pages=0)
    async with fetching(settings) as fetcher:
        reports, changed = await refresh_all(store, fetcher, settings, now)
    assert changed and reports[0].outcome == "updated"
    events = await store.published_events()
    assert {e.event.title for e in events} == {"Koncert", "Foredrag"}
    for event in events:
        vevent = icalendar.Event.from_ical(event.ics)
        url_value = str(vevent["URL"])
        assert url_value.startswith(("https://", "http://"))
        assert "\n" not in url_value and "\r" not in url_value and "javascript" not in url_value

    body = json.loads(render_json(events, settings.network))
    for item in body["events"] if isinstance(body, dict) else body:
        assert "javascript" not in json.dumps(item)


async def test_an_event_that_cannot_be_rendered_costs_only_itself(store, tmp_path, now):

    settings = make_settings(tmp_path, [source("m", "https://member.example/cal.ics")])
    await store.sync_sources(settings.sources)
    # written past the parser, as an older version may have stored it: a CR/LF in a URL
    # makes icalendar refuse to write the line
    bad = _occurrence("m", "bad", "Broken link", "https://member.example/x\r\nX-Evil: 1")
    await put_snapshot(store, "m", [_occurrence("m", "good", "Fine", None), bad], now)
    assert await publish(store, settings, now)
    assert [e.event.title for e in await store.published_events()] == ["Fine"]
    state = (await store.source_states())["m"]
    assert any("Broken link" in str(w) and "left out" in str(w) for w in state.warnings)


# -- addresses from content -------------------------------------------------------------------


async def test_an_item_linking_inside_our_network_is_not_fetched(store, feed_server, tmp_path, now):
    secret = feed_server.serve(
        "/secret", "<html><body><h1>Internal</h1><p>Torsdag 10. december 2026 kl. 19.00</p>"
    )
    # the source is configured on 127.0.0.1; its item links to localhost, another host name
    # whose address is inside
    inside = secret.replace("127.0.0.1", "localhost")
    rss = RSS_WITH_BAD_LINKS.replace("https://member.example/koncert\nX-Injected: yes", inside)
    url = feed_server.serve("/feed.xml", rss, headers={"Content-Type": "application/rss+xml"})
    settings = make_settings(tmp_path, [source("m", url, kind=SourceKind.RSS)])
    async with fetching(settings) as fetcher:
        reports, _ = await refresh_all(store, fetcher, settings, now)
    assert not any(r.path == "/secret" for r in feed_server.requests)
    assert any(
        "Koncert" in str(w) and "only public addresses" in str(w) for w in reports[0].warnings
    )
    assert not any("Internal" in e.event.description for e in await store.published_events())


def test_merge_is_unaffected_by_a_title_bomb(now):
    # the merge normalises titles with its own expressions: a title bomb is plain text there
    copies = [_occurrence(s, "u" + s, "aflyst" * 3000 + " Koncert", None) for s in ("a", "b")]
    assert cpu(lambda: merge(copies, (), MergeSettings(), {})) < 1


# -- no source vanishes silently --------------------------------------------------------------


async def test_a_malformed_address_under_the_scheduler_is_a_failure_in_words(store, tmp_path, now):

    settings = make_settings(tmp_path, [source("bad", "http://a..b/feed.ics")])
    await store.sync_sources(settings.sources)
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None)
        await scheduler.run_source("bad")
    state = (await store.source_states())["bad"]
    assert state.last_fetch_at == now
    assert state.health != "ok"
    assert "not a valid address" in (state.last_error or "")


class _BrokenFetcher:
    """A fetch stage with a bug: whatever it is asked, it raises."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def fetch(self, *args, **kwargs):
        raise RuntimeError("a bug in the fetch stage")


async def test_an_unexpected_error_under_the_scheduler_is_recorded_in_words(store, tmp_path, now):

    settings = make_settings(tmp_path, [source("m", "https://member.example/cal.ics")])
    await store.sync_sources(settings.sources)
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, _BrokenFetcher(fetcher), settings, lambda: now, lambda: None)
        await scheduler.run_source("m")
    state = (await store.source_states())["m"]
    assert state.last_fetch_at == now
    assert "unexpected error" in (state.last_error or "")
    assert "a bug in the fetch stage" in state.last_error
    history = await store.fetch_history("m")
    assert history and history[0].outcome == "failed"


async def test_a_source_keeps_at_most_a_few_hundred_warnings(store, tmp_path, now):
    # whatever step made them (the parsers cap their own; duplicates, identities, renders
    # add more), the source's row keeps at most 200, and says how many more there were
    settings = make_settings(tmp_path, [source("m", "https://member.example/cal.ics")])
    await store.sync_sources(settings.sources)
    await put_snapshot(store, "m", [], now, warnings=[f"warning {i}" for i in range(50_000)])
    warnings = (await store.source_states())["m"].warnings
    assert len(warnings) == 201
    assert str(warnings[-1]) == "... and 49800 more warnings"


# -- /check and aggregator check read in a worker too ----------------------------------------


async def test_a_check_of_a_feed_over_budget_answers_in_words(aiohttp_client, tmp_path):
    import aiohttp

    from aggregator.store import Store
    from aggregator.web import make_app
    from tests.conftest import NOW

    settings = make_settings(tmp_path, [], parse_seconds=1.5)
    store = await Store.open(settings.database_url)
    app = make_app(settings, store=store, clock=lambda: NOW, scheduler=False)
    client = await aiohttp_client(app)
    try:
        form = aiohttp.FormData()
        form.add_field("file", _never_matching(3), filename="bomb.ics")
        form.add_field("format", "json")
        started = time.monotonic()
        checking = asyncio.ensure_future(client.post("/check?format=json", data=form))
        # the server answers others while the bomb is read
        while not checking.done():
            health = await client.get("/healthz")
            assert health.status == 200
            await asyncio.sleep(0.05)
        answer = await checking
        body = await answer.json()
        assert "processor time" in body["error"]
        assert time.monotonic() - started < 30
    finally:
        await store.close()


def test_aggregator_check_of_a_feed_over_budget_says_so(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    bomb = tmp_path / "bomb.ics"
    bomb.write_bytes(_never_matching(3))
    config = tmp_path / "sources.yaml"
    config.write_text("network:\n  name: T\nlimits:\n  parse_seconds: 1.5\nsources: []\n")
    done = subprocess.run(
        [sys.executable, "-m", "aggregator", "check", str(bomb), "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "processor time" in done.stdout + done.stderr


async def test_a_reader_cannot_swallow_its_budget(now):
    # two rules that never match take 2 s each (their series' bound); the feed has 3 s: the
    # budget runs out inside a series, where the reader skips broken series with
    # `except Exception`; it must still end the read, not leave it unbounded
    limits = Limits(parse_seconds=3)
    src = source("member", "https://member.example/cal.ics")
    body = calendar(
        *(
            f"UID:n{i}\nDTSTART:20200101T100000Z\nRRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30\n"
            "SUMMARY:N"
            for i in range(2)
        ),
        "UID:g\nDTSTART:20261210T100000Z\nDTEND:20261210T110000Z\nSUMMARY:Good",
    ).encode()
    read = partial(parse_feed, _ics_result(body), src, network_zone=ZONE, now=now, limits=limits)
    with pytest.raises(ParseError) as refused:
        await worker.parse(read, url=src.url, limits=limits)
    assert "processor time" in refused.value.message


class _OddError(Exception):
    """An exception whose arguments do not round-trip through pickle (as some libraries')."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} {second}")


def _raise_odd() -> None:
    raise _OddError("broken", "value")


async def test_a_readers_odd_exception_costs_only_its_read(now):
    limits = Limits()
    good = calendar("UID:g\nDTSTART:20261210T100000Z\nDTEND:20261210T110000Z\nSUMMARY:Good")
    src = source("member", "https://member.example/cal.ics")
    read_good = partial(
        parse_feed, _ics_result(good.encode()), src, network_zone=ZONE, now=now, limits=limits
    )
    odd, fine = await asyncio.gather(
        worker.parse(_raise_odd, url="https://odd.example/", limits=limits),
        worker.parse(read_good, url=src.url, limits=limits),
        return_exceptions=True,
    )
    assert isinstance(odd, ParseError) and "_OddError: broken value" in odd.message
    assert [o.title for o in fine.occurrences] == ["Good"]
