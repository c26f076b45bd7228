"""Serving a big network (issue 16): windows and paging on every output, the published
folder (written whole, served as it is, exported as it is), /healthz from memory, a start
that answers at once, saved filters for short subscribe links, the page's search and months.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from datetime import timedelta
from pathlib import Path

import icalendar
import lxml.html
import pytest
from sqlalchemy import event as sa_event

from aggregator import published
from aggregator import web as web_module
from aggregator.cli import main
from aggregator.config import load_config
from aggregator.model import OutputSettings
from aggregator.published import Folder, FolderWriter
from aggregator.refresh import refresh_all
from aggregator.render import index as index_view
from aggregator.render.index import MAX_LINK
from aggregator.store import Store
from aggregator.web import make_app
from tests.conftest import NOW, database_url, demo_sources, fetching, make_settings, source

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

#: NOW is Wednesday 25 November 2026, 13:00 in Copenhagen
WINDOWED = {
    # uid: (DTSTART, DTEND) in Europe/Copenhagen, or dates
    "long-before": ("20261001T100000", "20261001T120000"),
    "spanning": ("VALUE=DATE:20261129", "VALUE=DATE:20261203"),  # 29 Nov - 2 Dec
    "first-day": ("20261201T000000", "20261201T010000"),
    "inside": ("20261205T190000", "20261205T210000"),
    "last-day": ("20261231T230000", "20261231T233000"),
    "after": ("20270101T003000", "20270101T013000"),
    "allday-after": ("VALUE=DATE:20270101", "VALUE=DATE:20270102"),
    "far": ("20280110T100000", "20280110T120000"),
}


def windowed_feed() -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//windows//EN"]
    for uid, (start, end) in WINDOWED.items():
        lines += ["BEGIN:VEVENT", f"UID:{uid}@test", "DTSTAMP:20261101T000000Z"]
        for name, value in (("DTSTART", start), ("DTEND", end)):
            if value.startswith("VALUE=DATE:"):
                lines.append(f"{name};{value}")
            else:
                lines.append(f"{name};TZID=Europe/Copenhagen:{value}")
        lines += [f"SUMMARY:Event {uid}", "LOCATION:Foreningshuset", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


@pytest.fixture
async def windowed(tmp_path, feed_server):
    url = feed_server.serve("/w.ics", windowed_feed())
    settings = make_settings(tmp_path, [source("w", url)])
    store = await Store.open(settings.database_url)
    async with fetching(settings) as fetcher:
        await refresh_all(store, fetcher, settings, NOW)
    await store.close()
    return settings


async def client_of(aiohttp_client, settings):
    return await aiohttp_client(make_app(settings, clock=lambda: NOW, scheduler=False))


def uids(body: bytes) -> set[str]:
    return {
        str(e["SUMMARY"]).removeprefix("Event ")
        for e in icalendar.Calendar.from_ical(body).walk("VEVENT")
    }


def json_uids(data: dict) -> set[str]:
    return {e["title"].removeprefix("Event ") for e in data["events"]}


async def test_a_window_holds_exactly_the_events_that_overlap_it(aiohttp_client, windowed):
    client = await client_of(aiohttp_client, windowed)
    december = {"spanning", "first-day", "inside", "last-day"}
    query = "from=2026-12-01&to=2026-12-31"
    assert uids(await (await client.get(f"/calendar.ics?{query}")).read()) == december
    assert json_uids(await (await client.get(f"/events.json?{query}")).json()) == december
    # days=N: N days from today (25 November), or from `from`
    assert uids(await (await client.get("/calendar.ics?days=6")).read()) == {"spanning"}
    assert uids(await (await client.get("/calendar.ics?days=7")).read()) == {
        "spanning",
        "first-day",
    }
    assert uids(await (await client.get("/calendar.ics?from=2026-12-31&days=1")).read()) == {
        "last-day"
    }
    assert uids(await (await client.get("/calendar.ics?from=2027-01-01&days=1")).read()) == {
        "after",
        "allday-after",
    }
    # an open end: from a day on
    assert uids(await (await client.get("/calendar.ics?from=2027-01-01")).read()) == {
        "after",
        "allday-after",
        "far",
    }
    # the feed: the changes of the events in the window
    feed = (await (await client.get(f"/feed.atom?{query}")).read()).decode()
    assert {t for t in re.findall(r"Event ([\w-]+)", feed)} == december


async def test_the_plain_calendar_holds_the_configured_days(aiohttp_client, windowed):
    client = await client_of(aiohttp_client, windowed)
    # 30 days back, a year ahead: not the event of October, nor that of January 2028
    assert uids(await (await client.get("/calendar.ics")).read()) == set(WINDOWED) - {
        "long-before",
        "far",
    }
    narrow = OutputSettings(calendar_past_days=0, calendar_future_days=6)
    settings = type(windowed)(**{**windowed.__dict__, "outputs": narrow})
    client = await client_of(aiohttp_client, settings)
    assert uids(await (await client.get("/calendar.ics")).read()) == {"spanning", "first-day"}
    # a window asks for others
    assert "far" in uids(await (await client.get("/calendar.ics?from=2028-01-01")).read())


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("from=2026-13-01", "from='2026-13-01'"),
        ("to=tomorrow", "to='tomorrow'"),
        ("from=2026-12-10&to=2026-12-01", "before"),
        ("days=0", "days=0"),
        ("days=many", "days='many'"),
        ("days=3&to=2026-12-01", "days= and to="),
        ("from=2000-01-01&to=2030-01-01", "at most"),
    ],
)
async def test_a_bad_window_is_refused_with_the_reason(aiohttp_client, windowed, query, says):
    client = await client_of(aiohttp_client, windowed)
    for path in ("/calendar.ics", "/feed.atom", "/events.json"):
        response = await client.get(f"{path}?{query}")
        assert response.status == 400, path
        assert says in await response.text(), path


async def test_each_variant_has_its_own_etag_and_304(aiohttp_client, windowed):
    client = await client_of(aiohttp_client, windowed)
    paths = [
        "/calendar.ics",
        "/calendar.ics?days=7",
        "/calendar.ics?from=2026-12-01&to=2026-12-31",
        "/events.json",
        "/events.json?limit=2",
        "/feed.atom?days=30",
    ]
    etags = {}
    for path in paths:
        response = await client.get(path)
        assert response.status == 200
        etags[path] = response.headers["ETag"]
    assert len(set(etags.values())) == len(paths)
    for path, etag in etags.items():
        assert (await client.get(path, headers={"If-None-Match": etag})).status == 304
        other = next(e for p, e in etags.items() if p != path)
        assert (await client.get(path, headers={"If-None-Match": other})).status == 200


async def test_the_events_pages_follow_their_next_links_through_every_event(
    aiohttp_client, windowed
):
    client = await client_of(aiohttp_client, windowed)
    whole = await (await client.get("/events.json?limit=5000&from=2026-01-01")).json()
    assert whole["next"] is None and len(whole["events"]) == len(WINDOWED)
    seen, url, pages = [], "/events.json?limit=3&from=2026-01-01", 0
    while url:
        response = await client.get(url)
        assert response.status == 200
        data = await response.json()
        assert len(data["events"]) <= 3
        seen += [e["id"] for e in data["events"]]
        link = response.headers.get("Link")
        if data["next"]:
            assert link == f'<{data["next"]}>; rel="next"'
        else:
            assert link is None
        url, pages = data["next"], pages + 1
    assert seen == [e["id"] for e in whole["events"]]  # each once, in order
    assert pages == 3
    for bad in ("limit=0", "limit=5001", "limit=x", "cursor=bm9wZQ", "cursor=%%%"):
        assert (await client.get(f"/events.json?{bad}")).status == 400, bad


async def test_the_plain_events_page_holds_the_default_number(
    aiohttp_client, windowed, monkeypatch
):
    monkeypatch.setattr(published, "PAGE_LIMIT", 2)
    client = await client_of(aiohttp_client, windowed)
    response = await client.get("/events.json")
    data = await response.json()
    assert len(data["events"]) == 2 and data["next"].startswith("/events.json?cursor=")
    assert response.headers["Link"] == f'<{data["next"]}>; rel="next"'
    following = await (await client.get(data["next"])).json()
    assert not {e["id"] for e in following["events"]} & {e["id"] for e in data["events"]}


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "sources.yaml"
    feeds = Path(__file__).parents[1] / "examples" / "feeds"
    listed = "\n".join(
        f"  - id: {s.id}\n    name: {s.name}\n    url: {feeds / Path(s.url).name}"
        for s in demo_sources()
    )
    config.write_text(
        "network:\n  name: Eksport\n  timezone: Europe/Copenhagen\n"
        "  base_url: http://export.test\n"
        f"database_url: {database_url(tmp_path, 'export', driver=False)}\n"
        f"sources:\n{listed}\n",
        encoding="utf-8",
    )
    return config


async def test_export_is_byte_identical_to_what_is_served(aiohttp_client, tmp_path):
    config = write_config(tmp_path)
    now = NOW.isoformat()
    assert await asyncio.to_thread(main, ["refresh", "--config", str(config), "--now", now]) == 0
    out = tmp_path / "static"
    command = ["export", "--config", str(config), "--out", str(out), "--events", "--now", now]
    assert await asyncio.to_thread(main, command) == 0
    settings = load_config(config, environ={})
    assert settings.outputs.folder == tmp_path / "published"
    client = await client_of(aiohttp_client, settings)
    served = {
        "calendar.ics": "/calendar.ics",
        "feed.atom": "/feed.atom",
        "events.json": "/events.json",
        "index.html": "/?lang=da",
        "index.da.html": "/?lang=da",
        "index.en.html": "/?lang=en",
    }
    for name, path in served.items():
        plain = await client.get(path, headers={"Accept-Encoding": "identity"})
        assert await plain.read() == (out / name).read_bytes(), name
        zipped = await client.get(path, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        assert await zipped.read() == (out / f"{name}.gz").read_bytes(), name
    # and the folder itself holds those bytes
    current = Folder(settings.outputs.folder).current()
    for name in served:
        assert (current / name).read_bytes() == (out / name).read_bytes()
    # --events: each event's files are those served
    data = json.loads((out / "events.json").read_bytes())
    assert data["events"]
    for item in data["events"][:5]:
        event_id = item["id"]
        ics = await (await client.get(f"/events/{event_id}.ics")).read()
        assert ics == (out / "events" / f"{event_id}.ics").read_bytes()
        page = await (await client.get(f"/events/{event_id}?lang=en")).read()
        assert page == (out / "events" / f"{event_id}.en.html").read_bytes()
        detail = await (await client.get(f"/events/{event_id}.json")).read()
        assert detail == (out / "events" / f"{event_id}.json").read_bytes()


async def test_the_folder_is_swapped_whole_and_a_failed_write_changes_nothing(
    tmp_path, windowed, monkeypatch
):
    store = await Store.open(windowed.database_url)
    folder = Folder(tmp_path / "published")
    try:
        first = await folder.write(store, windowed, NOW)
        assert folder.current() == first
        second = await folder.write(store, windowed, NOW + timedelta(hours=1))
        third = await folder.write(store, windowed, NOW + timedelta(hours=2))
        assert folder.current() == third
        # the one before the current stays (a server may be opening it), older ones go
        assert not first.exists() and second.exists()
        manifest = folder.manifest()
        for name, entry in manifest["files"].items():
            assert (third / name).stat().st_size == entry["size"]
            assert (
                gzip.decompress((third / f"{name}.gz").read_bytes()) == (third / name).read_bytes()
            )

        async def broken(*args, **kwargs):
            raise RuntimeError("a bug while writing the feed")

        monkeypatch.setattr(published, "write_feed", broken)
        with pytest.raises(RuntimeError):
            await folder.write(store, windowed, NOW + timedelta(hours=3))
        assert folder.current() == third
        assert sorted(p.name for p in folder.root.iterdir()) == sorted(
            ["current", second.name, third.name]
        )
    finally:
        await store.close()


async def test_healthz_answers_from_memory(aiohttp_client, windowed):
    app = make_app(windowed, clock=lambda: NOW, scheduler=False)
    client = await aiohttp_client(app)
    statements = []
    engine = app[web_module.STORE].engine.sync_engine

    def counted(*args) -> None:
        statements.append(args[2])

    sa_event.listen(engine, "before_cursor_execute", counted)
    try:
        for _ in range(20):
            response = await client.get("/healthz")
            assert response.status == 200
    finally:
        sa_event.remove(engine, "before_cursor_execute", counted)
    data = await response.json()
    assert data["status"] == "ok" and data["published_events"] == len(WINDOWED)
    assert data["events"] == len(WINDOWED) and data["sources"] == 1
    assert statements == []


async def test_serve_answers_from_the_folder_before_it_catches_up(
    aiohttp_client, windowed, monkeypatch
):
    # a first run wrote the folder
    client = await client_of(aiohttp_client, windowed)
    before = await (await client.get("/calendar.ics")).read()
    await client.close()
    go = asyncio.Event()

    async def slow_publish(*args, **kwargs) -> bool:
        await go.wait()  # a publish that takes minutes
        return False

    monkeypatch.setattr(web_module, "publish", slow_publish)
    app = make_app(windowed, clock=lambda: NOW, scheduler=False, catch_up=True)
    client = await aiohttp_client(app)
    response = await client.get("/calendar.ics")
    assert response.status == 200 and await response.read() == before
    assert (await client.get("/healthz")).status == 200
    assert not go.is_set()  # answered while the start was still catching up
    go.set()


async def test_a_long_filter_is_saved_for_a_short_subscribe_link(aiohttp_client, tmp_path):
    members = [source(f"member-with-a-rather-long-name-{n:02d}", f"/m{n}.ics") for n in range(40)]
    settings = make_settings(tmp_path, members)
    client = await client_of(aiohttp_client, settings)
    chosen = "&".join(f"source={m.id}" for m in members)
    page = await client.get(f"/?lang=en&{chosen}")
    assert page.status == 200
    html = lxml.html.fromstring(await page.text())
    links = html.xpath("//input[@readonly]/@value") + html.xpath("//a[@class='button']/@href")
    assert links and all(len(link) <= MAX_LINK for link in links)
    (key,) = {m for link in links for m in re.findall(r"[?&]f=([a-z0-9]+)", link)}
    saved = await client.get(f"/calendar.ics?f={key}")
    plain = await client.get(f"/calendar.ics?{chosen}")
    assert saved.status == plain.status == 200
    assert saved.headers["ETag"] == plain.headers["ETag"]
    assert (await client.get("/calendar.ics?f=nosuchkey")).status == 404
    # the same filter again: the same key
    again = lxml.html.fromstring(await (await client.get(f"/?lang=da&{chosen}")).text())
    assert f"f={key}" in " ".join(again.xpath("//input[@readonly]/@value"))


async def test_the_page_searches_and_shows_a_month(aiohttp_client, windowed):
    client = await client_of(aiohttp_client, windowed)

    def titles(html: str) -> set[str]:
        page = lxml.html.fromstring(html)
        return {t.removeprefix("Event ") for t in re.findall(r"Event [\w-]+", page.text_content())}

    month = await client.get("/?lang=en&month=2026-12")
    assert month.status == 200
    assert titles(await month.text()) == {"spanning", "first-day", "inside", "last-day"}
    found = await client.get("/?lang=en&q=inside")
    assert titles(await found.text()) == {"inside"}
    assert (await client.get("/?month=2026-13")).status == 400


async def test_a_full_period_goes_on_after_its_last_event(aiohttp_client, windowed, monkeypatch):
    monkeypatch.setattr(index_view, "PAGE_MAX", 3)
    client = await client_of(aiohttp_client, windowed)
    seen: list[str] = []
    url, pages = "/?lang=en&month=2026-12&q=event", 0
    while url:
        response = await client.get(url)
        assert response.status == 200
        page = lxml.html.fromstring(await response.text())
        shown = re.findall(r"Event ([\w-]+)", " ".join(page.xpath("//li//h3//text()")))
        assert 0 < len(shown) <= 3
        seen += shown
        (later,) = page.xpath("//nav[@class='more']//a[@rel='next']/@href") or [None]
        if later:
            assert "month=2026-12" in later and "q=event" in later  # the page as it was
        url, pages = later, pages + 1
    assert sorted(seen) == sorted({"spanning", "first-day", "inside", "last-day"})
    assert pages == 2
    assert (await client.get("/?after=nonsense")).status == 400


async def test_a_page_of_events_stays_under_its_bytes_and_briefs_the_history(
    aiohttp_client, windowed, monkeypatch
):
    monkeypatch.setattr(published, "PAGE_BYTES", 1200)  # two or three of these events
    client = await client_of(aiohttp_client, windowed)
    seen, url = [], "/events.json?limit=5000&from=2026-01-01"
    while url:
        data = await (await client.get(url)).json()
        assert 1 <= len(data["events"]) < len(WINDOWED)
        assert len(json.dumps(data["events"])) <= 1200 + 600  # the last one may straddle
        seen += [e["id"] for e in data["events"]]
        url = data["next"]
    assert len(seen) == len(set(seen)) == len(WINDOWED)
    item = data["events"][-1]
    assert [h["kind"] for h in item["history"]] == ["added"]
    assert "after" not in item["history"][0]  # the whole change is on the event's own JSON
    full = await (await client.get(f"/events/{item['id']}.json")).json()
    assert full["history"][0]["after"]["title"] == item["title"]


async def test_publishes_during_a_write_make_one_more_look_not_one_each(tmp_path, windowed):
    store = await Store.open(windowed.database_url)
    folder = Folder(tmp_path / "published")
    written, looked = [], []
    gate = asyncio.Event()
    write = folder.write

    async def slow_write(*args, **kwargs):
        written.append(args[2])
        await gate.wait()  # half a minute, for a large network
        return await write(*args, **kwargs)

    folder.write = slow_write
    writer = FolderWriter(folder, store, windowed, lambda: NOW, lambda: looked.append(1))
    try:
        task = writer.request()
        await asyncio.sleep(0)  # the write has started
        assert writer.writing is task
        for _ in range(5):  # five publishes meanwhile
            assert writer.request() is task
        gate.set()
        await task
        # one more look after the write, which finds the folder of the data: not rewritten
        assert len(looked) == 2 and len(written) == 1
        assert writer.writing is None and folder.current() is not None
    finally:
        await store.close()


async def test_a_new_hour_writes_the_pages_again_and_a_new_day_everything(tmp_path, windowed):
    store = await Store.open(windowed.database_url)
    writer = FolderWriter(Folder(tmp_path / "published"), store, windowed, lambda: now)
    folder = writer.folder
    try:
        now = NOW
        await writer.request()
        first = folder.current()
        now = NOW + timedelta(minutes=30)  # the same hour: nothing to write
        await writer.request()
        assert folder.current() == first
        now = NOW + timedelta(hours=1)
        await writer.request()
        hour = folder.current()
        assert hour != first
        # the calendar, feed and events linked as they were; the pages made anew
        assert (hour / "calendar.ics").stat().st_ino == (first / "calendar.ics").stat().st_ino
        assert (hour / "events.json.gz").stat().st_ino == (first / "events.json.gz").stat().st_ino
        assert (hour / "index.html").stat().st_ino != (first / "index.html").stat().st_ino
        assert (
            folder.manifest(hour)["files"]["calendar.ics"]
            == (folder.manifest(first)["files"]["calendar.ics"])
        )
        now = NOW + timedelta(days=1)  # the calendar's days count from today
        await writer.request()
        day = folder.current()
        assert (day / "calendar.ics").stat().st_ino != (hour / "calendar.ics").stat().st_ino
    finally:
        await store.close()
