"""refresh.py and fetch.py against a hostile local server. Rule 6: nothing is lost to a bad
fetch, and the source's state says what happened in words a member can act on."""

from __future__ import annotations

import asyncio
import codecs
import gzip
import re
import zlib
from dataclasses import replace
from datetime import timedelta
from functools import cache

import pytest
from aiohttp import web

from aggregator import worker
from aggregator.fetch import http_url
from aggregator.model import Status
from aggregator.publish import publish
from aggregator.refresh import refresh_all, refresh_source
from aggregator.web import make_app
from tests.conftest import DATA, FEEDS, fetching, make_settings, source

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

GOOD = (FEEDS / "kulturhuset.ics").read_bytes()


@pytest.fixture
async def good(store, feed_server, tmp_path, now):
    """A source whose first fetch was good: 34 occurrences stored and published."""
    url = feed_server.serve("/kultur.ics", GOOD)
    settings = make_settings(tmp_path, [source("kultur", url)], total_timeout=0.5)
    sleeps: list[float] = []
    async with fetching(settings, sleeps) as fetcher:
        reports, changed = await refresh_all(store, fetcher, settings, now)
        assert reports[0].outcome == "updated" and changed
        feed_server.requests.clear()
        yield settings, fetcher, sleeps


async def snapshot(store):
    return sorted((o.key, o.fingerprint) for o in await store.load_occurrences("kultur"))


# -- the hostile server's repertoire -------------------------------------------------------


async def drip(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/calendar"})
    await response.prepare(request)
    for byte in GOOD:
        await response.write(bytes([byte]))
        await asyncio.sleep(1)  # the server's misbehaviour, not the test waiting
    return response


async def fifty_megabytes(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/calendar"})
    await response.prepare(request)
    await response.write(b"BEGIN:VCALENDAR\r\n")
    chunk = b"X-FILLER:" + b"x" * 1_048_000 + b"\r\n"
    for _ in range(50):
        await response.write(chunk)
    return response


@cache
def bomb() -> bytes:
    """200 MB of zeros in ~200 KB of gzip."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join([compressor.compress(block) for _ in range(200)] + [compressor.flush()])


async def gzip_bomb(request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=bomb(), headers={"Content-Encoding": "gzip", "Content-Type": "text/calendar"}
    )


async def truncated(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/calendar", "Content-Length": str(len(GOOD))}
    )
    await response.prepare(request)
    await response.write(GOOD[:1000])
    request.transport.close()  # the connection drops mid-body
    return response


HOSTILE = {
    "hangs forever": dict(hang=True),
    "drips one byte a second": dict(handler=drip),
    "500": dict(body=b"oops", status=500),
    "503 with Retry-After": dict(body=b"", status=503, headers={"Retry-After": "120"}),
    "429": dict(body=b"", status=429),
    "redirect loop": dict(status=302, headers={"Location": "/loop-b"}),
    "redirect chain of 6": dict(status=302, headers={"Location": "/hop1"}),
    "50 MB body": dict(handler=fifty_megabytes),
    "gzip bomb": dict(handler=gzip_bomb),
    "truncated body": dict(handler=truncated),
    "HTML error page with 200": dict(
        body=b"<!DOCTYPE html><html><body>Maintenance</body></html>",
        headers={"Content-Type": "text/html"},
    ),
    "empty 200": dict(body=b""),
    "malformed iCalendar": dict(body=b"BEGIN:VCALENDAR\r\nthis is not\r\nEND:VCALENDAR\r\n"),
    "calendar cut short": dict(body=GOOD[: len(GOOD) * 95 // 100]),
    "404": dict(body=b"not here", status=404),
}

#: what the source's state must say, in words a member can act on
WORDS = {
    "hangs forever": "timed out",
    "drips one byte a second": "timed out",
    "500": "HTTP 500",
    "503 with Retry-After": "asks us to wait 120 s",
    "429": "too many requests",
    "redirect loop": "redirects in a loop",
    "redirect chain of 6": "more than 5 redirects",
    "50 MB body": "larger than the limit",
    "gzip bomb": "after decompression",
    "truncated body": "broke off in the middle",
    "HTML error page with 200": "HTML page",
    "empty 200": "empty",
    "malformed iCalendar": "could not read the feed",
    "calendar cut short": "cut short",
    "404": "check the feed's address",
}


def play(feed_server, scenario: str) -> None:
    feed_server.serve("/kultur.ics", **HOSTILE[scenario])
    feed_server.serve("/loop-b", status=302, headers={"Location": "/kultur.ics"})
    for hop in range(1, 6):
        feed_server.serve(f"/hop{hop}", status=302, headers={"Location": f"/hop{hop + 1}"})
    feed_server.serve("/hop6", GOOD)


@pytest.mark.parametrize("scenario", list(HOSTILE))
async def test_a_hostile_server_changes_no_event_and_the_state_says_why(
    good, store, feed_server, aiohttp_client, now, scenario
):
    settings, fetcher, _ = good
    client = await aiohttp_client(make_app(settings, clock=lambda: now, scheduler=False))
    served = await (await client.get("/calendar.ics")).read()
    before = await snapshot(store)
    play(feed_server, scenario)
    later = now + timedelta(hours=1)
    report = await refresh_source(store, fetcher, settings.sources[0], settings, later)
    assert report.outcome == "failed"
    assert await snapshot(store) == before
    assert not await publish(store, settings, later)
    assert await (await client.get("/calendar.ics")).read() == served  # still serving
    state = await store.source_state("kultur")
    assert state.health == "failing" and state.failing_since == later
    assert WORDS[scenario] in state.describe()
    assert "last good events are kept" in state.describe()
    assert state.last_success_at == now
    (latest, *_) = await store.fetch_history("kultur")
    assert latest.outcome == "failed" and WORDS[scenario] in latest.message


@pytest.mark.parametrize(
    "scenario, body, headers",
    [
        (
            "Windows-1252 without charset",
            GOOD.decode("utf-8").encode("cp1252"),
            {"Content-Type": "text/calendar"},
        ),
        ("BOM", codecs.BOM_UTF8 + GOOD, {"Content-Type": "text/calendar; charset=utf-8"}),
        ("wrong Content-Type", GOOD, {"Content-Type": "text/html; charset=utf-8"}),
        ("no Content-Type", GOOD, {"Content-Type": "application/octet-stream"}),
    ],
)
async def test_awkward_but_good_calendars_are_read(
    good, store, feed_server, now, scenario, body, headers
):
    settings, fetcher, _ = good
    feed_server.serve(
        "/kultur.ics", body.replace(b"CSRD workshop", b"CSRD-workshop"), headers=headers
    )
    report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome == "updated", report.error
    titles = {o.title for o in await store.load_occurrences("kultur")}
    assert "Fællesspisning" in titles and "CSRD-workshop" in titles
    state = await store.source_state("kultur")
    assert state.health == "ok"
    if scenario.startswith("Windows-1252"):
        assert any("Windows-1252" in w.words for w in state.warnings)


async def test_a_uid_with_a_nul_is_stored_on_every_database(store, feed_server, tmp_path, now):
    """PostgreSQL's text holds no NUL: such a UID is stored without it (found by copying a
    SQLite installation to PostgreSQL), and the feed reads as on SQLite."""
    url = feed_server.serve(
        "/nul.ics",
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
        b"UID:nul\x00inside@x\r\nDTSTAMP:20261101T000000Z\r\n"
        b"DTSTART:20261210T170000Z\r\nSUMMARY:Koncert\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    settings = make_settings(tmp_path, [source("nul", url)])
    await store.sync_sources(settings.sources, now=now)
    async with fetching(settings) as fetcher:
        report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome == "updated", report.error
    assert [o.uid for o in await store.load_occurrences("nul")] == ["nulinside@x"]


# -- retries and backoff ---------------------------------------------------------------------


async def test_transient_errors_are_retried_with_growing_waits(good, store, feed_server, now):
    settings, fetcher, sleeps = good
    feed_server.serve("/kultur.ics", b"", status=502)
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert len(feed_server.requests) == 1 + settings.limits.retries
    assert sleeps == [1.0, 2.0]  # retry_delay * 2**n, jitter fixed at its middle


async def test_a_retry_that_succeeds_is_a_success(good, store, feed_server, now):
    settings, fetcher, _ = good
    answers = iter([web.Response(status=503), web.Response(body=GOOD)])
    feed_server.serve("/kultur.ics", handler=lambda request: _now(next(answers)))
    report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome in ("updated", "unchanged")
    assert (await store.source_state("kultur")).health == "ok"


async def _now(response):
    return response


async def test_a_short_retry_after_is_waited_for(good, store, feed_server, now):
    settings, fetcher, sleeps = good
    feed_server.serve("/kultur.ics", b"", status=429, headers={"Retry-After": "7"})
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert sleeps and all(s >= 7 for s in sleeps)


async def test_a_long_retry_after_moves_the_next_fetch(good, store, feed_server, now):
    settings, fetcher, sleeps = good
    feed_server.serve("/kultur.ics", b"", status=503, headers={"Retry-After": "7200"})
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert sleeps == [] and len(feed_server.requests) == 1  # not hammered within the cycle
    state = await store.source_state("kultur")
    assert state.next_check_at == now + timedelta(hours=2)


async def test_failures_in_a_row_back_off_and_a_success_resets(good, store, feed_server, now):
    settings, fetcher, _ = good
    interval = settings.network.refresh_interval
    feed_server.serve("/kultur.ics", b"", status=404)
    waits = []
    for _ in range(4):
        await refresh_source(store, fetcher, settings.sources[0], settings, now)
        waits.append((await store.source_state("kultur")).next_check_at - now)
    assert waits == [interval, 2 * interval, 4 * interval, 8 * interval]
    capped = replace(settings, limits=replace(settings.limits, max_backoff=3600.0))
    await refresh_source(store, fetcher, capped.sources[0], capped, now)
    assert (await store.source_state("kultur")).next_check_at - now == timedelta(hours=1)
    feed_server.serve("/kultur.ics", GOOD)
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    state = await store.source_state("kultur")
    assert state.next_check_at - now == interval and state.failures_in_row == 0


# -- redirects and addresses -----------------------------------------------------------------


async def test_a_permanent_redirect_is_followed_remembered_and_reported(
    good, store, feed_server, now
):
    settings, fetcher, _ = good
    feed_server.serve("/kultur.ics", status=301, headers={"Location": "/new/kultur.ics"})
    feed_server.serve("/new/kultur.ics", GOOD)
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    state = await store.source_state("kultur")
    assert state.moved_to == feed_server.url("/new/kultur.ics")
    assert "moved permanently to" in state.describe() and "sources.yaml" in state.describe()
    feed_server.requests.clear()
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert [r.path for r in feed_server.requests] == ["/new/kultur.ics"]


async def test_a_temporary_redirect_is_not_remembered(good, store, feed_server, now):
    settings, fetcher, _ = good
    feed_server.serve("/kultur.ics", status=302, headers={"Location": "/today.ics"})
    feed_server.serve("/today.ics", GOOD)
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert (await store.source_state("kultur")).moved_to is None


async def test_five_redirects_are_followed(good, store, feed_server, now):
    settings, fetcher, _ = good
    feed_server.serve("/kultur.ics", status=302, headers={"Location": "/hop2"})
    for hop in range(2, 6):
        feed_server.serve(f"/hop{hop}", status=302, headers={"Location": f"/hop{hop + 1}"})
    feed_server.serve("/hop6", GOOD)
    report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome != "failed"


async def test_410_gone_marks_the_source_gone_and_keeps_its_events(good, store, feed_server, now):
    settings, fetcher, _ = good
    before = await snapshot(store)
    feed_server.serve("/kultur.ics", b"", status=410)
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    state = await store.source_state("kultur")
    assert state.health == "gone" and "410 Gone" in state.describe()
    assert await snapshot(store) == before
    assert state.next_check_at - now >= timedelta(hours=24)  # asked again, rarely


# -- suspicious drops ------------------------------------------------------------------------


def without_events(body: bytes, *titles: str) -> bytes:
    """The feed without the VEVENTs whose SUMMARY starts with one of `titles`."""
    text = body.decode("utf-8")
    for block in re.findall(r"BEGIN:VEVENT.*?END:VEVENT\r\n", text, re.S):
        if any(f"SUMMARY:{title}" in block for title in titles):
            text = text.replace(block, "")
    return text.encode("utf-8")


#: the weekly series and its override: 29 of the 34 upcoming occurrences, 85%
MOST = without_events(GOOD, "Fællesspisning")


async def test_a_drop_held_once_then_restored_cancels_nothing(good, store, feed_server, now):
    settings, fetcher, _ = good
    before = await snapshot(store)
    published = [e.ics for e in await store.published_events()]
    feed_server.serve("/kultur.ics", MOST)  # 80%+ gone
    report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome == "held"
    assert await snapshot(store) == before
    state = await store.source_state("kultur")
    assert state.health == "drop held" and "vanished at once" in state.describe()
    feed_server.serve("/kultur.ics", GOOD)
    report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome != "failed"
    assert await snapshot(store) == before
    await publish(store, settings, now)
    assert [e.ics for e in await store.published_events()] == published
    assert (await store.source_state("kultur")).health == "ok"


async def test_a_drop_seen_twice_is_applied_on_the_second(good, store, feed_server, now):
    settings, fetcher, _ = good
    feed_server.serve("/kultur.ics", MOST)
    assert (await refresh_source(store, fetcher, settings.sources[0], settings, now)).outcome == (
        "held"
    )
    report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome == "updated"
    # the second fetch confirms: what vanished is now shown cancelled, "removed"
    removed = [o for o in await store.load_occurrences("kultur") if o.removed_at]
    assert len(removed) == 29 and all(o.status is Status.CANCELLED for o in removed)
    state = await store.source_state("kultur")
    assert state.health == "ok"
    (latest, *_) = await store.fetch_history("kultur")
    assert "confirmed" in latest.message


async def test_an_emptied_feed_is_held_before_it_is_believed(good, store, feed_server, now):
    settings, fetcher, _ = good
    empty = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nEND:VCALENDAR\r\n"
    feed_server.serve("/kultur.ics", empty)
    report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome == "held" and "no events" in report.error
    assert len(await store.load_occurrences("kultur")) == 34


async def loppemarked(store):
    (event,) = [o for o in await store.load_occurrences("kultur") if "Loppemarked" in o.title]
    return event


async def test_a_vanished_event_is_removed_when_the_next_fetch_confirms_it(
    good, store, feed_server, now
):
    settings, fetcher, _ = good
    feed_server.serve("/kultur.ics", without_events(GOOD, "Loppemarked"))
    report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome != "held"  # one event of 34 is no suspicious drop
    first = await loppemarked(store)
    assert first.missing_since == now and first.status is Status.SCHEDULED
    later = now + timedelta(hours=1)
    await refresh_source(store, fetcher, settings.sources[0], settings, later)
    second = await loppemarked(store)
    assert second.removed_at == later and second.status is Status.CANCELLED


async def test_a_failed_fetch_confirms_no_removal(good, store, feed_server, now):
    settings, fetcher, _ = good
    feed_server.serve("/kultur.ics", without_events(GOOD, "Loppemarked"))
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    feed_server.serve("/kultur.ics", b"", status=500)
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert (await loppemarked(store)).removed_at is None


async def test_a_removed_event_listed_again_is_restored(good, store, feed_server, now):
    settings, fetcher, _ = good
    feed_server.serve("/kultur.ics", without_events(GOOD, "Loppemarked"))
    for hours in (1, 2):
        await refresh_source(
            store, fetcher, settings.sources[0], settings, now + timedelta(hours=hours)
        )
    assert (await loppemarked(store)).removed_at is not None
    feed_server.serve("/kultur.ics", GOOD)
    await refresh_source(store, fetcher, settings.sources[0], settings, now + timedelta(hours=3))
    back = await loppemarked(store)
    assert back.removed_at is None and back.status is Status.SCHEDULED


async def test_past_events_that_leave_the_feed_are_kept(store, feed_server, tmp_path, now):
    url = feed_server.serve_file("/s.ics", DATA / "series_overrides.ics")
    settings = make_settings(tmp_path, [source("s", url)])
    async with fetching(settings) as fetcher:
        await refresh_all(store, fetcher, settings, now)
        later = now + timedelta(days=60)  # the January occurrences have happened
        # the member prunes everything before February
        text = (
            (DATA / "series_overrides.ics")
            .read_text()
            .replace(
                "DTSTART;TZID=Europe/Copenhagen:20270105T170000",
                "DTSTART;TZID=Europe/Copenhagen:20270209T170000",
            )
        )
        feed_server.serve("/s.ics", text)
        report = await refresh_source(store, fetcher, settings.sources[0], settings, later)
    assert report.outcome == "updated"
    kept = await store.load_occurrences("s")
    assert {o.start.date().isoformat() for o in kept if o.start < later} >= {
        "2027-01-05",
        "2027-01-12",
    }


# -- politeness ------------------------------------------------------------------------------


async def test_twenty_sources_answering_304_or_the_same_body_cause_no_parse(
    store, feed_server, tmp_path, now, monkeypatch
):
    sources = []
    for n in range(20):
        headers = {"Content-Type": "text/calendar"}
        if n % 2 == 0:
            headers["ETag"] = f'"v{n}"'
        url = feed_server.serve(
            f"/s{n}.ics", GOOD.replace(b"@", f"-{n}@".encode()), headers=headers
        )
        sources.append(source(f"s{n}", url))
    settings = make_settings(tmp_path, sources)
    parses = []
    original = worker.parse

    async def counting(read, **kwargs):  # every read of member content goes to a worker
        parses.append(kwargs["url"])
        return await original(read, **kwargs)

    monkeypatch.setattr(worker, "parse", counting)
    async with fetching(settings) as fetcher:
        await refresh_all(store, fetcher, settings, now)
        assert len(parses) == 20
        parses.clear()
        reports, changed = await refresh_all(store, fetcher, settings, now + timedelta(hours=1))
    assert parses == []
    assert not changed
    outcomes = sorted(r.outcome for r in reports)
    assert outcomes == ["not modified"] * 10 + ["unchanged"] * 10
    conditional = [r for r in feed_server.requests if r.path == "/s0.ics"][-1]
    assert conditional.headers["If-None-Match"] == '"v0"'


async def test_at_most_two_fetches_at_once_to_one_host(store, feed_server, tmp_path, now):
    in_flight, peak = 0, 0
    release = asyncio.Event()

    async def slow(request):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if peak >= 2:
            release.set()
        await release.wait()
        in_flight -= 1
        return web.Response(body=GOOD)

    sources = [source(f"s{n}", feed_server.serve(f"/s{n}.ics", handler=slow)) for n in range(6)]
    settings = make_settings(tmp_path, sources)
    async with fetching(settings) as fetcher:
        await refresh_all(store, fetcher, settings, now)
    assert peak == 2


async def test_the_fetch_names_the_service_in_its_user_agent(good, feed_server):
    settings, fetcher, _ = good
    await fetcher.fetch(feed_server.url("/kultur.ics"))
    agent = feed_server.requests[-1].headers["User-Agent"]
    assert agent.startswith("aggregator/") and "http://events.test" in agent


async def test_a_missing_local_file_is_a_failure_with_its_path(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("gone", str(tmp_path / "nowhere.ics"))])
    async with fetching(settings) as fetcher:
        reports, _ = await refresh_all(store, fetcher, settings, now)
    assert reports[0].outcome == "failed" and "nowhere.ics" in reports[0].error


def test_webcal_is_fetched_as_https():
    assert http_url("webcal://example.org/cal.ics?x=1") == "https://example.org/cal.ics?x=1"
    assert http_url("http://example.org/cal.ics") == "http://example.org/cal.ics"


def test_the_gzip_bomb_is_one():
    assert len(bomb()) < 1_000_000 and len(gzip.decompress(bomb())) == 200 << 20


async def test_retry_after_as_an_http_date_is_honoured(good, store, feed_server, now):
    settings, fetcher, sleeps = good
    headers = {
        "Date": "Wed, 25 Nov 2026 12:00:00 GMT",
        "Retry-After": "Wed, 25 Nov 2026 12:00:12 GMT",
    }
    feed_server.serve("/kultur.ics", b"", status=503, headers=headers)
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert sleeps and all(s >= 12 for s in sleeps)


async def test_a_retry_after_date_without_a_zone_does_not_break_the_cycle(
    good, store, feed_server, now
):
    settings, fetcher, _ = good
    headers = {"Retry-After": "Wed, 21 Oct 2037 07:28:00 -0000"}
    feed_server.serve("/kultur.ics", b"", status=503, headers=headers)
    reports, _ = await refresh_all(store, fetcher, settings, now)
    assert reports[0].outcome == "failed"
    state = await store.source_state("kultur")
    # honoured, but no server parks a source for years: at most max_backoff
    assert state.next_check_at - now == timedelta(seconds=settings.limits.max_backoff)


async def test_a_new_day_reads_a_304_source_in_full(good, store, feed_server, now):
    settings, fetcher, _ = good
    feed_server.serve(
        "/kultur.ics", GOOD, headers={"ETag": '"v1"', "Content-Type": "text/calendar"}
    )
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    same_day = await refresh_source(
        store, fetcher, settings.sources[0], settings, now + timedelta(hours=2)
    )
    assert same_day.outcome == "not modified"
    next_day = await refresh_source(
        store, fetcher, settings.sources[0], settings, now + timedelta(days=1)
    )
    assert next_day.outcome in ("updated", "unchanged")
    assert "If-None-Match" not in feed_server.requests[-1].headers


async def test_a_moved_address_that_fails_falls_back_to_the_configured_one(
    good, store, feed_server, now
):
    settings, fetcher, _ = good
    feed_server.serve("/kultur.ics", status=301, headers={"Location": "/new.ics"})
    feed_server.serve("/new.ics", GOOD)
    await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert (await store.source_state("kultur")).moved_to
    feed_server.serve("/new.ics", b"", status=404)
    feed_server.serve("/kultur.ics", GOOD)
    report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome != "failed"
    state = await store.source_state("kultur")
    assert state.moved_to is None and state.health == "ok"


async def test_a_source_taken_out_of_the_config_is_unpublished(store, feed_server, tmp_path, now):
    a = source("a", feed_server.serve("/a.ics", GOOD))
    b = source("b", feed_server.serve("/b.ics", (FEEDS / "floating.ics").read_bytes()))
    settings = make_settings(tmp_path, [a, b])
    async with fetching(settings) as fetcher:
        await refresh_all(store, fetcher, settings, now)
        assert len(await store.published_events()) == 34 + 3
        _, changed = await refresh_all(store, fetcher, replace(settings, sources=(a,)), now)
    assert changed
    assert len(await store.published_events()) == 34
    assert await store.load_occurrences("b") == []


async def test_a_different_drop_does_not_confirm_a_held_one(good, store, feed_server, now):
    settings, fetcher, _ = good
    empty = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nEND:VCALENDAR\r\n"
    feed_server.serve("/kultur.ics", empty)
    assert (await refresh_source(store, fetcher, settings.sources[0], settings, now)).outcome == (
        "held"
    )
    feed_server.serve("/kultur.ics", MOST)  # another drop, not the same one
    report = await refresh_source(store, fetcher, settings.sources[0], settings, now)
    assert report.outcome == "held"
    assert len(await store.load_occurrences("kultur")) == 34
