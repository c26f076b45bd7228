"""web.py end to end on the demo network: real SQLite, real HTTP, two independent clients."""

from __future__ import annotations

import gzip
from dataclasses import replace
from datetime import timedelta

import feedparser
import icalendar
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aggregator.fetch import Fetcher
from aggregator.refresh import refresh_all
from aggregator.responses import Body
from aggregator.store import Store
from aggregator.web import OUTPUTS, make_app
from tests.conftest import FEEDS as FEEDS_DIR
from tests.conftest import NOW, demo_sources, fetching, ical_js, make_settings, source

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

DEMO_OCCURRENCES = 34 + 9 + 10 + 3 + 3
#: the CSRD workshop is published by two members and merged into one event
DEMO_EVENTS = DEMO_OCCURRENCES - 1


@pytest.fixture
async def demo(tmp_path):
    settings = make_settings(tmp_path, demo_sources())
    store = await Store.open(settings.database_url)
    reports, _ = await refresh_all(store, Fetcher(None, settings.limits), settings, NOW)
    assert [r.outcome for r in reports] == ["updated"] * 5
    await store.close()
    return settings


async def client_for(aiohttp_client, settings):
    return await aiohttp_client(make_app(settings, clock=lambda: NOW, scheduler=False))


async def test_calendar_has_every_demo_event_for_icalendar_and_ical_js(
    aiohttp_client, demo, tmp_path
):
    client = await client_for(aiohttp_client, demo)
    response = await client.get("/calendar.ics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    body = await response.read()
    ours = icalendar.Calendar.from_ical(body).walk("VEVENT")
    assert len(ours) == DEMO_EVENTS
    path = tmp_path / "calendar.ics"
    path.write_bytes(body)
    theirs = ical_js(path)
    assert theirs["name"] == "Testnetværket"
    assert theirs["timezones"] == ["Europe/Copenhagen"]
    assert len(theirs["events"]) == DEMO_EVENTS
    # both clients read the same instants for the same events
    ical_starts = {str(e["UID"]): e["DTSTART"].dt for e in ours}
    for event in theirs["events"]:
        start = ical_starts[event["uid"]]
        if event["all_day"]:
            assert event["start"].startswith(start.isoformat())
        else:
            assert event["start"] == start.astimezone(NOW.tzinfo).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_the_copublished_event_appears_once_with_both_organisers(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    calendar = icalendar.Calendar.from_ical(await (await client.get("/calendar.ics")).read())
    csrd = [e for e in calendar.walk("VEVENT") if "CSRD" in str(e["SUMMARY"])]
    assert len(csrd) == 1
    assert "Kulturhuset Nørrebro, Grøn Omstilling" in str(csrd[0]["DESCRIPTION"])


async def test_a_matching_etag_gets_304(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    for path in ("/calendar.ics", "/feed.atom", "/events.json", "/"):
        first = await client.get(path)
        etag = first.headers["ETag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status == 304, path
        assert await again.read() == b""


async def test_gzip_when_the_client_accepts_it(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    plain = await (
        await client.get("/calendar.ics", headers={"Accept-Encoding": "identity"})
    ).read()
    response = await client.get(
        "/calendar.ics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await response.read()) == plain
    assert response.headers["Vary"] == "Accept-Encoding"


async def test_after_a_restart_the_calendar_is_byte_identical(aiohttp_client, demo):
    first = await client_for(aiohttp_client, demo)
    before = await (await first.get("/calendar.ics")).read()
    etag = (await first.get("/calendar.ics")).headers["ETag"]
    await first.close()
    second = await client_for(aiohttp_client, demo)
    response = await second.get("/calendar.ics")
    assert await response.read() == before
    assert response.headers["ETag"] == etag


async def test_a_second_refresh_with_nothing_new_keeps_the_bytes(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    before = await (await client.get("/calendar.ics")).read()
    store = await Store.open(demo.database_url)
    for days in (1, 7, 30):  # a new day reads every feed again and re-expands the series
        await refresh_all(store, Fetcher(None, demo.limits), demo, NOW + timedelta(days=days))
    await store.close()
    again = await client_for(aiohttp_client, demo)
    assert await (await again.get("/calendar.ics")).read() == before


async def test_feeds_and_json_allow_cross_origin_reads(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    for path in ("/calendar.ics", "/feed.atom", "/events.json"):
        response = await client.get(path)
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "max-age" in response.headers["Cache-Control"]


async def test_atom_feed_is_valid_with_newest_first(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    response = await client.get("/feed.atom")
    assert response.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(await response.read())
    assert not parsed.bozo and parsed.version == "atom10"
    assert len(parsed.entries) == DEMO_EVENTS
    updated = [e.updated_parsed for e in parsed.entries]
    assert updated == sorted(updated, reverse=True)


async def test_events_json_and_single_event_endpoints(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    data = await (await client.get("/events.json")).json()
    assert len(data["events"]) == DEMO_EVENTS
    concert = next(e for e in data["events"] if "Brass" in e["title"])
    assert concert["status"] == "cancelled"
    assert concert["eventStatus"] == "https://schema.org/EventCancelled"
    one = await (await client.get(f"/events/{concert['id']}.json")).json()
    assert one["title"] == concert["title"]
    ics = await client.get(f"/events/{concert['id']}.ics")
    (vevent,) = icalendar.Calendar.from_ical(await ics.read()).walk("VEVENT")
    assert vevent["STATUS"] == "CANCELLED"
    assert (await client.get("/events/nope.ics")).status == 404


async def test_healthz_and_sources(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["events"] == DEMO_EVENTS
    sources = (await (await client.get("/sources")).json())["sources"]
    assert [s["state"] for s in sources] == ["ok"] * 5
    outlook = next(s for s in sources if s["id"] == "frivilligcentret")
    assert any("Romance Standard Time" in w for w in outlook["warnings"])


async def test_a_changed_base_url_is_published_on_start(aiohttp_client, demo):
    moved = replace(demo, network=replace(demo.network, base_url="https://kalender.example"))
    client = await client_for(aiohttp_client, moved)
    body = await (await client.get("/calendar.ics")).read()
    assert b"@kalender.example" in body and b"@events.test" not in body


async def test_the_index_page_lists_events_and_escapes_them(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    page = await (await client.get("/")).text()
    assert "Julemarked" in page and "webcal://" in page
    assert "<del>" in page and "Aflyst" in page  # the cancelled concert
    english = await (await client.get("/", headers={"Accept-Language": "en-GB,en;q=0.8"})).text()
    assert '<html lang="en">' in english and "Cancelled" in english


async def test_gzip_refused_with_q_zero_is_not_sent(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    response = await client.get(
        "/calendar.ics", headers={"Accept-Encoding": "gzip;q=0, br"}, auto_decompress=False
    )
    assert "Content-Encoding" not in response.headers
    assert (await response.read()).startswith(b"BEGIN:VCALENDAR")


async def test_a_refresh_by_another_process_reaches_a_serving_app(
    aiohttp_client, feed_server, tmp_path
):
    url = feed_server.serve_file("/f.ics", FEEDS_DIR / "floating.ics")
    settings = make_settings(tmp_path, [source("f", url)])
    app = make_app(settings, clock=lambda: NOW, scheduler=False)
    client = await aiohttp_client(app)
    app[OUTPUTS].poll_every = 0.0  # look at the data version on every request
    assert (
        icalendar.Calendar.from_ical(await (await client.get("/calendar.ics")).read()).walk(
            "VEVENT"
        )
        == []
    )
    store = await Store.open(settings.database_url)
    async with fetching(settings) as fetcher:
        await refresh_all(store, fetcher, settings, NOW)
    await store.close()
    body = await (await client.get("/calendar.ics")).read()
    assert len(icalendar.Calendar.from_ical(body).walk("VEVENT")) == 3


async def test_a_source_page_gives_its_state_and_fetch_history(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    data = await (await client.get("/sources/kulturhuset")).json()
    assert data["state"] == "ok" and data["status"] == "ok"
    (fetch,) = data["fetches"]
    assert fetch["outcome"] == "updated" and fetch["message"].startswith("read 34 occurrences")
    assert (await client.get("/sources/nobody")).status == 404


async def test_a_render_that_a_publish_overtakes_is_not_kept(aiohttp_client, demo):
    app = make_app(demo, clock=lambda: NOW, scheduler=False)
    await aiohttp_client(app)
    outputs = app[OUTPUTS]

    async def render_while_publishing():
        outputs.invalidate()  # a publish lands while this render is under way
        return Body.of(b"stale", "text/plain")

    await outputs.body("x", render_while_publishing)
    assert "x" not in outputs._bodies


async def test_an_event_page_shows_the_event_and_its_history(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    data = await (await client.get("/events.json")).json()
    concert = next(e for e in data["events"] if "Brass" in e["title"])
    answered = await client.get(f"/events/{concert['id']}")
    page = await answered.text()
    assert '<span class="mark">Aflyst</span> <del>Koncert: Nørrebro Brass</del>' in page
    assert "Historik" in page and "</time>: Ny</li>" in page
    english = await (await client.get(f"/events/{concert['id']}?lang=en")).text()
    assert '<span class="mark">Cancelled</span>' in english and "History" in english
    asked = await client.get(f"/events/{concert['id']}", headers={"Accept": "application/json"})
    assert (await asked.json())["id"] == concert["id"]
    # one address, two answers by Accept: a cache between must keep them apart
    for response in (answered, asked):
        assert "Accept" in map(str.strip, response.headers["Vary"].split(","))


async def test_an_unknown_cancelled_policy_is_refused(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    response = await client.get("/calendar.ics?cancelled=maybe")
    assert response.status == 400 and "status, prefix, hide" in await response.text()


async def test_merged_copies_are_listed_on_the_event_and_the_sources(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    data = await (await client.get("/events.json")).json()
    (csrd,) = [e for e in data["events"] if len(e["sources"]) > 1]
    assert {c["source"] for c in csrd["copies"]} == {"kulturhuset", "groen-omstilling"}
    titles = {c["title"] for c in csrd["copies"]}
    assert titles == {"CSRD workshop", "Workshop: Vi skal have CSRD tilpasset"}
    source = await (await client.get("/sources/groen-omstilling")).json()
    assert source["merged"] == [
        {
            "event": csrd["id"],
            "title": csrd["title"],
            "start": csrd["start"],
            "with": ["kulturhuset"],
            "with_names": ["Kulturhuset Nørrebro"],
        }
    ]
    page = await (
        await client.get("/sources/groen-omstilling", headers={"Accept": "text/html"})
    ).text()
    assert "CSRD workshop</a>: Kulturhuset Nørrebro" in page


async def test_filtered_outputs_show_only_the_chosen_events(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    everything = icalendar.Calendar.from_ical(await (await client.get("/calendar.ics")).read())
    url = "/calendar.ics?source=groen-omstilling"
    mine = icalendar.Calendar.from_ical(await (await client.get(url)).read()).walk("VEVENT")
    assert 0 < len(mine) < len(everything.walk("VEVENT"))
    # a co-hosted event is in the filtered calendar of each of its members
    assert any("CSRD" in str(e["SUMMARY"]) for e in mine)
    data = await (await client.get("/events.json?source=groen-omstilling")).json()
    assert len(data["events"]) == len(mine)
    # categories: the source's own, case-insensitively; several values widen the choice
    klima = await (await client.get("/events.json?category=KLIMA")).json()
    assert {e["id"] for e in klima["events"]} == {e["id"] for e in data["events"]}
    two = await (await client.get("/events.json?category=klima,unge")).json()
    assert len(two["events"]) > len(klima["events"])
    cancelled = await (await client.get("/events.json?status=cancelled")).json()
    assert cancelled["events"] and all(
        e["eventStatus"].endswith("EventCancelled") for e in cancelled["events"]
    )
    atom = feedparser.parse(await (await client.get("/feed.atom?status=cancelled")).read())
    whole = feedparser.parse(await (await client.get("/feed.atom")).read())
    assert 0 < len(atom.entries) < len(whole.entries)


async def test_each_filtered_output_has_its_own_etag_and_304(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    tags = set()
    for path in (
        "/calendar.ics?source=groen-omstilling",
        "/calendar.ics?source=kulturhuset",
        "/feed.atom?category=klima",
        "/events.json?status=cancelled",
    ):
        first = await client.get(path)
        assert first.status == 200, path
        tags.add(first.headers["ETag"])
        again = await client.get(path, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status == 304, path
    assert len(tags) == 4
    # the same selection written another way is the same body
    a = await client.get("/calendar.ics?source=kulturhuset,groen-omstilling")
    b = await client.get("/calendar.ics?source=groen-omstilling&source=kulturhuset")
    assert a.headers["ETag"] == b.headers["ETag"]


async def test_a_filter_naming_an_unknown_source_or_status_is_refused(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    wrong = await client.get("/calendar.ics?source=nope")
    assert wrong.status == 400
    assert "source=nope" in await wrong.text()
    wrong = await client.get("/events.json?status=gone")
    assert wrong.status == 400
    assert "status=gone" in await wrong.text()


async def test_metrics_parse_and_count_fetches_renders_requests_and_304s(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)

    async def scrape() -> dict[str, list]:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        families = text_string_to_metric_families(await response.text())
        return {family.name: family.samples for family in families}

    def value(samples, **labels) -> float:
        return sum(s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items()))

    first = await client.get("/calendar.ics")
    # rendered on demand (the plain calendar is the published folder's file, not rendered
    # by a request): counted in this test whatever ran before it in this process
    assert (await client.get("/calendar.ics?days=30")).status == 200
    before = await scrape()
    again = await client.get("/calendar.ics", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    await client.get("/events/no-such-event")
    after = await scrape()
    route = "/calendar.ics"
    assert value(after["aggregator_not_modified"], route=route) == (
        value(before["aggregator_not_modified"], route=route) + 1
    )
    assert value(after["aggregator_requests"], route="/events/{id}", status="404") >= 1
    # the demo's refresh fetched every source once (the counter is per process)
    fetched = {s.labels["source"] for s in after["aggregator_fetches"] if s.value > 0}
    assert {s.id for s in demo.sources} <= fetched
    assert value(after["aggregator_fetch_duration_seconds"], source=demo.sources[0].id) > 0
    assert value(after["aggregator_render_duration_seconds"], output="calendar.ics") > 0
    occurrences = after["aggregator_source_occurrences"]
    assert value(occurrences, source="kulturhuset", state="ok") > 0
    assert value(after["aggregator_events"]) == DEMO_EVENTS


async def test_an_override_that_moves_one_date_of_a_series_reads_as_moved(aiohttp_client, demo):
    """The demo's series has its New Year dinner an hour later than usual (RECURRENCE-ID
    18:00, DTSTART 19:00): subscribers see it moved from the series' slot."""
    client = await client_for(aiohttp_client, demo)
    data = await (await client.get("/events.json")).json()
    (moved,) = [e for e in data["events"] if e.get("previousStartDate")]
    assert moved["title"] == "Fællesspisning (nytårsudgave)"
    assert (moved["previousStartDate"], moved["start"]) == (
        "2027-01-07T17:00:00Z",
        "2027-01-07T18:00:00Z",
    )
    calendar = icalendar.Calendar.from_ical(await (await client.get("/calendar.ics")).read())
    (event,) = [e for e in calendar.walk("VEVENT") if "nytårsudgave" in str(e["SUMMARY"])]
    assert "Flyttet fra / Moved from" in str(event["DESCRIPTION"])
    page = await (await client.get("/?lang=en")).text()
    assert "Moved from" in page
