"""/check: a member's feed read on request, nothing stored, and never a way into our network
(issue 8). The feeds come from the real local server; its address is refused like any
loopback one, except by name where a test lets 'public.test' play a public server."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp import ThreadedResolver, web
from aiohttp.abc import AbstractResolver

from aggregator.guard import Guard
from aggregator.store import Store
from aggregator.web import make_app
from tests.conftest import FEEDS, NOW, ROOT, make_settings

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

FEED = (FEEDS / "groen-omstilling.ics").read_bytes()


class PublicTest(AbstractResolver):
    """Sends the name public.test to the local test server (a public server in this test);
    other names are resolved as usual."""

    def __init__(self) -> None:
        self.usual = ThreadedResolver()

    async def resolve(self, host, port=0, family=socket.AF_INET):
        if host != "public.test":
            return await self.usual.resolve(host, port, family)
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        await self.usual.close()


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    settings = make_settings(tmp_path, [])
    store = await Store.open(settings.database_url)
    app = make_app(
        settings,
        store=store,
        clock=lambda: NOW,
        scheduler=False,
        check_guard=Guard(public_names={"public.test"}),
        check_resolver=PublicTest(),
    )
    yield await aiohttp_client(app)
    await store.close()


async def refused(client, url: str) -> str:
    response = await client.get("/check", params={"url": url, "format": "json"})
    assert response.status == 400, (url, await response.text())
    return (await response.json())["error"]


async def test_the_check_reads_a_public_feed_and_stores_nothing(client, feed_server):
    feed_server.serve("/feed.ics", FEED)
    public = feed_server.url("/feed.ics").replace("127.0.0.1", "public.test")
    response = await client.get("/check", params={"url": public, "format": "json"})
    assert response.status == 200, await response.text()
    report = await response.json()
    assert any("CSRD" in o["title"] for o in report["occurrences"])
    health = await (await client.get("/healthz")).json()
    assert health["occurrences"] == 0


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1/feed.ics", "loopback"),
        ("http://10.0.0.1/feed.ics", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/feed.ics", "loopback"),
        ("http://[::ffff:127.0.0.1]/feed.ics", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("file:///etc/passwd", "only http"),
        ("/etc/passwd", "only http"),
    ],
)
async def test_addresses_inside_are_refused_with_a_reason(client, url, says):
    assert says in await refused(client, url)


async def test_a_name_resolving_to_loopback_is_refused(client, feed_server):
    feed_server.serve("/feed.ics", FEED)
    url = feed_server.url("/feed.ics").replace("127.0.0.1", "localhost")
    message = await refused(client, url)
    assert "localhost resolves to" in message and "loopback" in message
    assert feed_server.requests == []


async def test_a_public_address_redirecting_inside_is_refused(client, feed_server):
    feed_server.serve("/feed.ics", FEED)
    inside = feed_server.url("/feed.ics")

    async def redirect(_request):
        raise web.HTTPFound(inside)

    feed_server.serve("/moved", handler=redirect)
    public = feed_server.url("/moved").replace("127.0.0.1", "public.test")
    message = await refused(client, public)
    assert "127.0.0.1" in message and "loopback" in message
    assert [r.path for r in feed_server.requests] == ["/moved"]  # the feed was never asked


async def test_the_form_and_the_html_report(client, feed_server):
    form = await client.get("/check")
    assert form.status == 200
    assert '<form method="post" action="/check?lang=da"' in await form.text()
    page = await client.post("/check", data={"url": "http://10.0.0.1/x.ics"})
    assert page.status == 400
    assert "private network address" in await page.text()


async def test_an_uploaded_file_is_read(client):
    form = aiohttp.FormData()
    form.add_field("file", FEED, filename="feed.ics", content_type="text/calendar")
    page = await client.post("/check", data=form)
    assert page.status == 200
    assert "CSRD" in await page.text()


async def test_checks_are_rate_limited_per_client(client):
    statuses = []
    for _ in range(12):
        response = await client.get("/check", params={"url": "http://10.0.0.1/", "format": "json"})
        statuses.append(response.status)
    assert statuses[:10] == [400] * 10
    assert statuses[10] == 429
    assert int(response.headers["Retry-After"]) > 0


async def test_an_rss_item_linking_inside_has_its_page_skipped_with_a_reason(client, feed_server):
    """The feed is public; one item's page is on a loopback address: that page is not
    fetched, a warning says why, and the rest of the report stands."""
    base = feed_server.url("").rstrip("/")
    folder = ROOT / "tests" / "fixtures" / "rss" / "drupal-events"
    feed = (folder / "feed.xml").read_text(encoding="utf-8")
    public = base.replace("127.0.0.1", "public.test")
    # the first item's page stays on 127.0.0.1 (inside); the others go through public.test
    first = "debatmoede-hvem-betaler-klimatilpasning-i-syd.html"
    feed = feed.replace("{{BASE}}", public).replace(
        f"{public}/drupal-events/pages/{first}", f"{base}/drupal-events/pages/{first}"
    )
    feed_server.serve(
        "/drupal-events/feed.xml", feed, headers={"Content-Type": "application/rss+xml"}
    )
    for page in (folder / "pages").iterdir():
        feed_server.serve(
            f"/drupal-events/pages/{page.name}",
            page.read_bytes(),
            headers={"Content-Type": "text/html"},
        )
    response = await client.get(
        "/check", params={"url": f"{public}/drupal-events/feed.xml", "format": "json"}
    )
    assert response.status == 200, await response.text()
    report = await response.json()
    # (the fixture's events are from 2024, outside what a check on NOW shows: each is a
    # warning saying how its date was found, so the other pages were read)
    assert any("(page: " in w for w in report["warnings"]), report
    assert any("its page was not read" in w and "loopback" in w for w in report["warnings"])
    asked = {r.path for r in feed_server.requests}
    assert f"/drupal-events/pages/{first}" not in asked
