"""refresh.py and fetch.py against a real local server. Rule 6: nothing is lost to a bad fetch."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aggregator.fetch import http_url, open_session
from aggregator.model import FetchOutcome
from aggregator.refresh import publish, refresh_all, refresh_source
from tests.conftest import DATA, FEEDS, make_settings, source


@pytest.fixture
async def refreshed(store, feed_server, tmp_path, now):
    """A source whose first fetch was good: 34 occurrences stored, published."""

    url = feed_server.serve_file("/kultur.ics", FEEDS / "kulturhuset.ics")
    settings = make_settings(tmp_path, [source("kultur", url)])
    async with open_session(settings.network, settings.limits) as session:
        reports, changed = await refresh_all(store, session, settings, now)
        assert reports[0].outcome == "updated" and changed
        yield settings, session


async def snapshot(store):
    return sorted((o.key, o.fingerprint) for o in await store.load_occurrences("kultur"))


async def test_first_refresh_stores_and_publishes_every_occurrence(refreshed, store):
    assert len(await store.load_occurrences("kultur")) == 34
    assert len(await store.published_events()) == 34
    state = await store.source_state("kultur")
    assert state.last_error is None and state.failures_in_row == 0
    assert state.occurrence_count == 34


BAD_ANSWERS = {
    "http 500": {"body": b"oops", "status": 500},
    "malformed body": {"body": b"BEGIN:VCALENDAR\r\nthis is not\r\n"},
    "html error page": {
        "body": b"<!doctype html><html><body>Maintenance</body></html>",
        "headers": {"Content-Type": "text/html"},
    },
    "empty body": {"body": b""},
    "hangs": {"hang": True},
}


@pytest.mark.parametrize("answer", BAD_ANSWERS, ids=list(BAD_ANSWERS))
async def test_a_bad_fetch_keeps_the_last_good_events_and_says_why(
    refreshed, store, feed_server, now, answer
):
    settings, session = refreshed
    before = await snapshot(store)
    published_before = [e.ics for e in await store.published_events()]
    feed_server.serve("/kultur.ics", **BAD_ANSWERS[answer])
    later = now + timedelta(hours=1)
    report = await refresh_source(store, session, settings.sources[0], settings, later)
    assert report.outcome == "failed"
    assert await snapshot(store) == before
    await publish(store, settings, later)
    assert [e.ics for e in await store.published_events()] == published_before
    state = await store.source_state("kultur")
    assert state.failures_in_row == 1
    assert state.last_error
    assert state.last_success_at == now
    history = await store.fetch_history("kultur")
    assert history[0]["outcome"] == FetchOutcome.FAILED.value and history[0]["error"]


@pytest.mark.parametrize(
    "answer, words",
    [
        ("http 500", "HTTP 500"),
        ("malformed body", "could not read the feed"),
        ("html error page", "HTML page"),
        ("empty body", "empty"),
        ("hangs", "timed out"),
    ],
)
async def test_the_error_says_what_happened_in_words(
    refreshed, store, feed_server, now, answer, words
):
    settings, session = refreshed
    feed_server.serve("/kultur.ics", **BAD_ANSWERS[answer])
    await refresh_source(store, session, settings.sources[0], settings, now)
    assert words in (await store.source_state("kultur")).last_error


async def test_a_success_after_failures_resets_the_error(refreshed, store, feed_server, now):
    settings, session = refreshed
    feed_server.serve("/kultur.ics", b"", status=503)
    await refresh_source(store, session, settings.sources[0], settings, now)
    await refresh_source(store, session, settings.sources[0], settings, now)
    assert (await store.source_state("kultur")).failures_in_row == 2
    feed_server.serve_file("/kultur.ics", DATA / "series_overrides.ics")
    report = await refresh_source(store, session, settings.sources[0], settings, now)
    assert report.outcome == "updated"
    state = await store.source_state("kultur")
    assert (state.failures_in_row, state.last_error) == (0, None)
    assert state.occurrence_count == 6


async def test_not_modified_and_identical_bodies_are_not_parsed_again(
    store, feed_server, tmp_path, now
):

    from aggregator import parse

    etag_url = feed_server.serve_file(
        "/etag.ics",
        FEEDS / "kulturhuset.ics",
        headers={"ETag": '"v1"', "Content-Type": "text/calendar"},
    )
    plain_url = feed_server.serve_file("/plain.ics", FEEDS / "floating.ics")
    settings = make_settings(tmp_path, [source("etag", etag_url), source("plain", plain_url)])
    calls = []
    original = parse.parse_calendar

    def counting(*args, **kwargs):
        calls.append(kwargs["source_id"])
        return original(*args, **kwargs)

    parse.parse_calendar = counting
    try:
        async with open_session(settings.network, settings.limits) as session:
            await refresh_all(store, session, settings, now)
            assert sorted(calls) == ["etag", "plain"]
            reports, changed = await refresh_all(store, session, settings, now + timedelta(hours=1))
    finally:
        parse.parse_calendar = original
    assert sorted(calls) == ["etag", "plain"]  # no new parse
    assert {r.source_id: r.outcome for r in reports} == {
        "etag": "not modified",
        "plain": "unchanged",
    }
    assert not changed
    conditional = [r for r in feed_server.requests if r.path == "/etag.ics"][-1]
    assert conditional.headers["If-None-Match"] == '"v1"'


async def test_the_fetch_names_the_service_in_its_user_agent(refreshed, feed_server):
    agent = feed_server.requests[-1].headers["User-Agent"]
    assert agent.startswith("aggregator/") and "http://events.test" in agent


async def test_more_than_five_redirects_is_a_failure(store, feed_server, tmp_path, now):

    for hop in range(6):
        feed_server.serve(f"/hop{hop}", b"", status=302, headers={"Location": f"/hop{hop + 1}"})
    feed_server.serve_file("/hop6", FEEDS / "floating.ics")
    settings = make_settings(tmp_path, [source("hops", feed_server.url("/hop0"))])
    async with open_session(settings.network, settings.limits) as session:
        reports, _ = await refresh_all(store, session, settings, now)
    assert reports[0].outcome == "failed"
    assert "more than 5 redirects" in reports[0].error


async def test_five_redirects_are_followed(store, feed_server, tmp_path, now):

    for hop in range(5):
        feed_server.serve(f"/hop{hop}", b"", status=302, headers={"Location": f"/hop{hop + 1}"})
    feed_server.serve_file("/hop5", FEEDS / "floating.ics")
    settings = make_settings(tmp_path, [source("hops", feed_server.url("/hop0"))])
    async with open_session(settings.network, settings.limits) as session:
        reports, _ = await refresh_all(store, session, settings, now)
    assert reports[0].outcome == "updated" and reports[0].occurrences == 3


async def test_a_body_over_the_size_cap_is_refused(store, feed_server, tmp_path, now):

    feed_server.serve_file("/big.ics", FEEDS / "kulturhuset.ics")
    settings = make_settings(tmp_path, [source("big", feed_server.url("/big.ics"))], max_bytes=1000)
    async with open_session(settings.network, settings.limits) as session:
        reports, _ = await refresh_all(store, session, settings, now)
    assert reports[0].outcome == "failed" and "limit of 1,000 bytes" in reports[0].error


async def test_a_missing_local_file_is_a_failure_with_its_path(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("gone", str(tmp_path / "nowhere.ics"))])
    reports, _ = await refresh_all(store, None, settings, now)
    assert reports[0].outcome == "failed" and "nowhere.ics" in reports[0].error


def test_webcal_is_fetched_as_https():
    assert http_url("webcal://example.org/cal.ics?x=1") == "https://example.org/cal.ics?x=1"
    assert http_url("http://example.org/cal.ics") == "http://example.org/cal.ics"
