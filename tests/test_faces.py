"""What member organisations and subscribers see of bad input (issue 8): a source's page
gives each problem with a hint to fix it, and text from a hostile feed is text on every page
and in every feed. Feeds come from the real local server; pages are read over real HTTP."""

from __future__ import annotations

import json

import feedparser
import icalendar
import pytest
from aiohttp import FormData

from aggregator.refresh import refresh_all
from aggregator.store import Store
from aggregator.web import make_app
from tests.conftest import FEEDS, NOW, fetching, make_settings, source

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

HTML = {"Accept": "text/html"}

#: an Outlook feed (Windows zone name) with one event whose start cannot be read
BROKEN = (
    (FEEDS / "outlook-member.ics")
    .read_text(encoding="utf-8")
    .replace(
        "END:VCALENDAR",
        "BEGIN:VEVENT\r\nUID:broken-1@outlook\r\nSUMMARY:Ødelagt møde\r\n"
        "DTSTART:2027-13-45\r\nEND:VEVENT\r\nEND:VCALENDAR",
    )
)

HOSTILE = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//hostile//EN\r
BEGIN:VEVENT\r
UID:hostile-1@evil.example\r
DTSTAMP:20261101T000000Z\r
DTSTART:20270110T180000Z\r
DTEND:20270110T200000Z\r
SUMMARY:<script>alert(1)</script>\r
DESCRIPTION:<img src=x onerror=alert(1)>\r
LOCATION:<b onmouseover=alert(1)>Salen</b>\r
URL:javascript:alert(1)\r
END:VEVENT\r
END:VCALENDAR\r
"""


async def refreshed(settings, now=NOW):
    store = await Store.open(settings.database_url)
    try:
        async with fetching(settings) as fetcher:
            await refresh_all(store, fetcher, settings, now)
    finally:
        await store.close()


async def test_a_source_page_gives_each_problem_with_a_hint(aiohttp_client, feed_server, tmp_path):
    url = feed_server.serve("/outlook.ics", BROKEN)
    settings = make_settings(tmp_path, [source("outlook", url, "Outlook-foreningen")], retries=0)
    await refreshed(settings)
    # then the server fails: the last good events stay, the page says since when
    feed_server.serve("/outlook.ics", "boom", status=500)
    await refreshed(settings)
    client = await aiohttp_client(make_app(settings, clock=lambda: NOW, scheduler=False))

    page = await (await client.get("/sources/outlook?lang=en", headers=HTML)).text()
    assert "uses the Windows zone name &#39;Romance Standard Time&#39;" in page
    assert "Nothing to do: we map it." in page
    assert "Ødelagt møde" in page and "open it in your calendar program" in page
    assert "failing since" in page and "Open the feed&#39;s address in a browser" in page
    assert "<svg" in page and "failed" in page  # the timeline has the failed fetch
    danish = await (await client.get("/sources/outlook?lang=da", headers=HTML)).text()
    assert "Sådan retter I det" in danish and "Intet at gøre: vi oversætter den." in danish
    # the same in JSON, for scripts
    data = await (await client.get("/sources/outlook.json?lang=en")).json()
    assert data["state"] == "failing"
    assert any("Romance Standard Time" in h["what"] and h["hint"] for h in data["hints"])
    assert data["problems"] and "Open the feed's address" in data["problems"][0]["hint"]
    overview = await (await client.get("/sources", headers=HTML)).text()
    assert "Outlook-foreningen" in overview and "failing" in overview


@pytest.fixture
async def hostile(aiohttp_client, feed_server, tmp_path):
    url = feed_server.serve("/hostile.ics", HOSTILE)
    settings = make_settings(tmp_path, [source("hostile", url, "Hostile")])
    await refreshed(settings)
    return await aiohttp_client(make_app(settings, clock=lambda: NOW, scheduler=False))


def assert_escaped(text: str) -> None:
    assert "<script>" not in text and "<img" not in text and "<b onmouseover" not in text
    assert 'href="javascript:' not in text


async def test_hostile_text_is_text_on_every_page(hostile):
    data = await (await hostile.get("/events.json")).json()
    (event,) = data["events"]
    for path in (
        "/",
        "/?lang=en",
        "/?embed=1",
        f"/events/{event['id']}",
        f"/events/{event['id']}?lang=en",
        "/sources",
        "/sources/hostile",
    ):
        response = await hostile.get(path, headers=HTML)
        assert response.status == 200, path
        page = await response.text()
        assert_escaped(page)
    page = await (await hostile.get(f"/events/{event['id']}", headers=HTML)).text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


async def test_hostile_text_is_text_in_every_feed(hostile):
    calendar = await (await hostile.get("/calendar.ics")).read()
    (vevent,) = icalendar.Calendar.from_ical(calendar).walk("VEVENT")
    assert str(vevent["SUMMARY"]) == "<script>alert(1)</script>"  # plain text, as iCalendar is
    assert "<img src=x onerror=alert(1)>" in str(vevent["DESCRIPTION"])
    atom = await (await hostile.get("/feed.atom")).read()
    assert b"<script>" not in atom and b"<img" not in atom  # escaped in the XML
    assert feedparser.parse(atom).entries
    response = await hostile.get("/events.json")
    assert response.content_type == "application/json"
    (event,) = json.loads(await response.read())["events"]
    assert event["title"] == "<script>alert(1)</script>"  # a JSON string, not markup


async def test_a_checked_hostile_feed_is_text_in_the_report(hostile):
    form = FormData()
    form.add_field("file", HOSTILE.encode(), filename="hostile.ics", content_type="text/calendar")
    page = await (await hostile.post("/check", data=form)).text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert_escaped(page)
