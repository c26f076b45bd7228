"""End to end: sources.yaml with http URLs -> refresh -> web, and a member feed that breaks."""

from __future__ import annotations

from datetime import timedelta

import icalendar

from aggregator.config import load_config
from aggregator.refresh import refresh_all
from aggregator.store import Store
from aggregator.web import make_app
from tests.conftest import FEEDS, NOW, fetching


def demo_over_http(feed_server, tmp_path):
    names = {
        "kulturhuset": "kulturhuset.ics",
        "groen-omstilling": "groen-omstilling.ics",
        "frivilligcentret": "outlook-member.ics",
        "ungdomsraadet": "floating.ics",
    }
    entries = []
    for source_id, file in names.items():
        url = feed_server.serve_file(f"/{file}", FEEDS / file)
        entries.append(
            f"  - id: {source_id}\n    name: {source_id.title()}\n    url: {url}\n    kind: auto\n"
        )
    path = tmp_path / "sources.yaml"
    path.write_text(
        "network:\n  name: Pipeline\n  timezone: Europe/Copenhagen\nsources:\n" + "".join(entries),
        encoding="utf-8",
    )
    return load_config(
        path, environ={"AGGREGATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'pipeline.db'}"}
    )


async def cycle(settings, when):
    store = await Store.open(settings.database_url)
    try:
        async with fetching(settings) as fetcher:
            return await refresh_all(store, fetcher, settings, when)
    finally:
        await store.close()


async def calendar_bytes(aiohttp_client, settings) -> bytes:
    client = await aiohttp_client(make_app(settings, clock=lambda: NOW, scheduler=False))
    body = await (await client.get("/calendar.ics")).read()
    await client.close()
    return body


async def test_demo_network_over_http_and_a_feed_that_breaks(aiohttp_client, feed_server, tmp_path):
    settings = demo_over_http(feed_server, tmp_path)
    reports, changed = await cycle(settings, NOW)
    assert changed and all(r.outcome == "updated" for r in reports)
    before = await calendar_bytes(aiohttp_client, settings)
    assert len(icalendar.Calendar.from_ical(before).walk("VEVENT")) == 55

    # one member's CMS goes down, another serves an HTML maintenance page
    feed_server.serve("/kulturhuset.ics", b"Internal Server Error", status=500)
    feed_server.serve(
        "/floating.ics",
        b"<html><body>Down for maintenance</body></html>",
        headers={"Content-Type": "text/html"},
    )
    reports, changed = await cycle(settings, NOW + timedelta(hours=1))
    outcomes = {r.source_id: r.outcome for r in reports}
    assert outcomes["kulturhuset"] == outcomes["ungdomsraadet"] == "failed"
    assert not changed
    assert await calendar_bytes(aiohttp_client, settings) == before

    store = await Store.open(settings.database_url)
    states = await store.source_states()
    await store.close()
    assert "HTTP 500" in states["kulturhuset"].last_error
    assert "HTML page" in states["ungdomsraadet"].last_error
    assert states["groen-omstilling"].last_error is None
