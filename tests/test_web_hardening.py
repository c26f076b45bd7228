"""Issue 13, the web side: one hostile request never spoils what others are served. The page's
cache is keyed by the normalised selection, every response carries the security headers, a
500 is counted, /check limits a client before it reads its upload and answers a malformed
address in words, and a failing publish at start never stops the service."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from dataclasses import replace

import pytest
from lxml import html
from prometheus_client.parser import text_string_to_metric_families

from aggregator.fetch import Fetcher
from aggregator.guard import Guard
from aggregator.refresh import refresh_all
from aggregator.store import Store
from aggregator.web import make_app
from tests import test_browser
from tests.conftest import NOW, demo_sources, make_settings, source
from tests.test_check import FEED, PublicTest

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

HTML = {"Accept": "text/html"}


@pytest.fixture
async def demo(tmp_path):
    settings = make_settings(tmp_path, demo_sources())
    store = await Store.open(settings.database_url)
    await refresh_all(store, Fetcher(None, settings.limits), settings, NOW)
    await store.close()
    return settings


async def client_for(aiohttp_client, settings, **kwargs):
    return await aiohttp_client(make_app(settings, clock=lambda: NOW, scheduler=False, **kwargs))


def titles(page: str) -> list[str]:
    return [" ".join(h.text_content().split()) for h in html.fromstring(page).xpath("//li/h3")]


# 1. the page's cache and its filters


async def test_a_comma_in_a_page_filter_cannot_poison_the_cached_page(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    # the first visitor writes the filter with a comma; the next one repeats the parameter
    commas = await client.get("/?lang=da&category=klima,unge")
    repeated = await client.get("/?lang=da&category=klima&category=unge")
    assert commas.status == repeated.status == 200
    shown = titles(await repeated.text())
    assert shown, "the cached page says there are no events"
    assert titles(await commas.text()) == shown
    klima = titles(await (await client.get("/?lang=da&category=klima")).text())
    assert 0 < len(klima) < len(shown)


async def test_a_value_cannot_spell_another_selections_cache_entry(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    # one category named "musik&status=cancelled" (no event has it) comes first ...
    odd = await client.get("/events.json?category=musik%26status%3Dcancelled")
    assert (await odd.json())["events"] == []
    assert (
        titles(await (await client.get("/?lang=da&category=musik%26status%3Dcancelled")).text())
        == []
    )
    # ... and the selection it spells is still its own
    real = await (await client.get("/events.json?category=musik&status=cancelled")).json()
    assert real["events"]
    page = await (await client.get("/?lang=da&category=musik&status=cancelled")).text()
    assert len(titles(page)) == len(real["events"])


async def test_the_page_filters_like_the_feeds_whatever_the_case(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    upper = await client.get("/?lang=da&category=KLIMA")
    lower = await client.get("/?lang=da&category=klima")
    assert upper.headers["ETag"] == lower.headers["ETag"]
    feed = await (await client.get("/events.json?category=klima")).json()
    upcoming = [e for e in feed["events"] if e["end"] >= "2026-11-25T12:00:00Z"]
    assert len(titles(await lower.text())) == len(upcoming)


async def test_a_status_on_the_page_narrows_the_list(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    page = await (await client.get("/?lang=da&status=cancelled")).text()
    shown = titles(page)
    assert shown and all("Aflyst" in title for title in shown), shown
    # and the subscription follows it
    assert "/calendar.ics?status=cancelled" in page


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("lang=da&source=nope", ["source=nope", "intet medlem", "kulturhuset"]),
        ("lang=en&source=nope,kulturhuset", ["source=nope", "no member", "kulturhuset"]),
        ("lang=da&status=gone", ["status=gone", "cancelled"]),
        ("lang=en&status=gone", ["status=gone", "use one of", "cancelled"]),
    ],
)
async def test_an_unknown_member_or_status_on_the_page_is_refused_in_its_language(
    aiohttp_client, demo, query, says
):
    client = await client_for(aiohttp_client, demo)
    response = await client.get(f"/?{query}")
    assert response.status == 400
    text = await response.text()
    for words in says:
        assert words in text, text


# 2. headers and limits

SECURITY = ("X-Content-Type-Options", "Referrer-Policy")


async def test_every_response_has_the_security_headers_and_a_plain_server_name(
    aiohttp_client, demo
):
    client = await client_for(aiohttp_client, demo)
    etag = (await client.get("/calendar.ics")).headers["ETag"]
    answers = [
        await client.get("/"),
        await client.get("/calendar.ics"),
        await client.get("/calendar.ics", headers={"If-None-Match": etag}),
        await client.get("/events.json"),
        await client.get("/feed.atom"),
        await client.get("/sources", headers=HTML),
        await client.get("/sources.json"),
        await client.get("/healthz"),
        await client.get("/metrics"),
        await client.get("/check"),
        await client.get("/no/such/page"),
        await client.get("/events/no-such-event"),
        await client.get("/calendar.ics?source=nope"),
        await client.post("/calendar.ics"),
    ]
    assert {r.status for r in answers} == {200, 304, 400, 404, 405}
    for response in answers:
        where = (response.url.path, response.status)
        assert response.headers["X-Content-Type-Options"] == "nosniff", where
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin", where
        server = response.headers.get("Server", "")
        assert not re.search(r"\d", server) and "aiohttp" not in server.lower(), (where, server)


def csp(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    parts = (p.strip().split(None, 1) for p in policy.split(";") if p.strip())
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


async def test_html_pages_have_a_content_security_policy_that_fits_their_style(
    aiohttp_client, demo
):
    client = await client_for(aiohttp_client, demo)
    event_id = (await (await client.get("/events.json")).json())["events"][0]["id"]
    for path in ("/", "/?embed=1", "/sources", "/sources/kulturhuset", "/check", "/events/x"):
        path = path.replace("/events/x", f"/events/{event_id}")
        response = await client.get(path, headers=HTML)
        assert response.status == 200, path
        policy = csp(response)
        assert policy["default-src"] == "'self'", path
        assert "unsafe-inline" not in policy.get("script-src", ""), path
        assert "unsafe-inline" not in policy.get("style-src", ""), path
        # the page's one <style> is allowed by its hash, so the browser applies it
        (style,) = html.fromstring(await response.text()).xpath("//style")
        digest = base64.b64encode(hashlib.sha256(style.text.encode("utf-8")).digest()).decode()
        assert f"'sha256-{digest}'" in policy["style-src"], path
        if path.startswith("/?") or path == "/":
            # the page to embed: any site may frame it
            assert "frame-ancestors" not in policy, path
        else:
            assert policy["frame-ancestors"] == "'self'", path


async def test_a_304_of_an_html_page_keeps_its_policy(aiohttp_client, demo):
    client = await client_for(aiohttp_client, demo)
    first = await client.get("/?embed=1")
    again = await client.get("/?embed=1", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    assert again.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]


class BrokenCounts(Store):
    """A store with a bug in one query: /sources/{id} raises."""

    async def fetch_history(self, *args, **kwargs):
        raise RuntimeError("a bug in the store")


async def test_a_handler_that_raises_is_counted_as_a_500(aiohttp_client, tmp_path):
    settings = make_settings(tmp_path, [source("a", "/nowhere.ics")])
    store = await BrokenCounts.open(settings.database_url)
    try:
        client = await client_for(aiohttp_client, settings, store=store)

        async def errors() -> float:
            text = await (await client.get("/metrics")).text()
            return sum(
                sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "aggregator_requests"
                for sample in family.samples
                if sample.labels.get("route") == "/sources/{id}"
                and sample.labels.get("status") == "500"
            )

        before = await errors()
        response = await client.get("/sources/a")
        assert response.status == 500
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert await errors() == before + 1
    finally:
        await store.close()


@pytest.fixture
async def checking(aiohttp_client, tmp_path):
    """An app for /check, whose settings a test may change, and its store."""
    stores = []

    async def make(**network):
        settings = make_settings(tmp_path, [])
        settings = replace(settings, network=replace(settings.network, **network))
        store = await Store.open(settings.database_url)
        stores.append(store)
        return await client_for(
            aiohttp_client,
            settings,
            store=store,
            check_guard=Guard(public_names={"public.test"}),
            check_resolver=PublicTest(),
        )

    yield make
    for store in stores:
        await store.close()


async def check(client, headers=None):
    """One check that is refused at once (a private address): counts against the limit."""
    return await client.get(
        "/check", params={"url": "http://10.0.0.1/", "format": "json"}, headers=headers
    )


async def test_a_client_over_its_limit_is_refused_before_its_upload_is_read(checking):
    client = await checking()
    for _ in range(10):
        assert (await check(client)).status == 400
    never = asyncio.Event()
    sent = []

    async def upload():
        sent.append("head")
        yield (
            b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.ics"\r\n'
            b"Content-Type: text/calendar\r\n\r\n" + b"X" * 65536
        )
        # the rest never comes: a server that reads the body before it counts waits forever
        await never.wait()
        yield b"\r\n--x--\r\n"

    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    try:
        response = await asyncio.wait_for(
            client.post("/check?format=json", data=upload(), headers=headers), timeout=10
        )
    finally:
        never.set()
    assert sent == ["head"]
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(checking):
    client = await checking(trusted_proxies=("127.0.0.1", "10.0.0.0/8"))
    one = {"X-Forwarded-For": "203.0.113.5"}
    for _ in range(10):
        assert (await check(client, one)).status == 400
    assert (await check(client, one)).status == 429
    # another client behind the same proxy is not limited by the first
    assert (await check(client, {"X-Forwarded-For": "203.0.113.6"})).status == 400
    # the right-most address that is not a trusted proxy is the client: what a client writes
    # in front of it (a forged left part) does not escape the limit
    forged = {"X-Forwarded-For": "198.51.100.7, 203.0.113.5, 10.1.2.3"}
    assert (await check(client, forged)).status == 429


async def test_from_an_untrusted_peer_x_forwarded_for_is_ignored(checking):
    client = await checking()
    for n in range(10):
        assert (await check(client, {"X-Forwarded-For": f"203.0.113.{n}"})).status == 400
    assert (await check(client, {"X-Forwarded-For": "203.0.113.99"})).status == 429


# 3. /check and a malformed address


@pytest.mark.parametrize(
    "url",
    [
        "http://a..b/",
        "http://[::1/",
        "http://x:99999/",
        "http://",
        "https://exa mple.org/",
        "http://ex\x00ample.org/",
        "http://xn--/",
        "http://" + "a" * 300 + ".org/",
        "   ",
    ],
)
async def test_a_malformed_address_is_a_400_in_words(checking, url):
    client = await checking()
    response = await client.get("/check", params={"url": url, "format": "json"})
    assert response.status == 400, (url, await response.text())
    body = await response.text()
    assert "error" in body or "address" in body, body
    page = await client.post("/check", data={"url": url})
    assert page.status in (200, 400), url  # blank: the form again
    if url.strip():
        assert page.status == 400
        assert "Afvist" in await page.text()


async def test_a_webcal_address_is_still_checked(checking, feed_server):
    client = await checking()
    feed_server.serve("/feed.ics", FEED)
    # webcal is https by convention; the local server speaks http, so the fetch fails, but
    # the address was taken
    url = feed_server.url("/feed.ics").replace("http://127.0.0.1", "webcal://public.test")
    response = await client.get("/check", params={"url": url, "format": "json"})
    assert response.status == 200, await response.text()
    assert (await response.json())["target"] == url


# 4. a failing publish at start


class FailingPublish(Store):
    """A store whose publish raises (a render bug): what is stored is still served."""

    async def write_publication(self, *args, **kwargs):
        raise RuntimeError("a render bug")


async def test_a_publish_that_raises_at_start_does_not_stop_the_service(
    aiohttp_client, demo, caplog
):
    store = await FailingPublish.open(demo.database_url)
    try:
        client = await client_for(aiohttp_client, demo, store=store)
        response = await client.get("/events.json")
        assert response.status == 200
        assert (await response.json())["events"]
        assert (await client.get("/healthz")).status == 200
    finally:
        await store.close()
    assert any("a render bug" in r.getMessage() or r.exc_info for r in caplog.records)


# the policy in a real browser (Chromium, as tests/test_browser.py runs it)

browser = test_browser.browser
calendar_url = test_browser.calendar_url


async def test_a_browser_applies_the_pages_style_under_their_policy(browser, calendar_url):
    page = await (await browser.new_context()).new_page()
    refused = []
    page.on("console", lambda message: refused.append(message.text))
    for path in ("/?lang=da", "/?embed=1&lang=en", "/sources?lang=en", "/check"):
        await page.goto(f"{calendar_url}{path}")
        # base.html's style sets the body's width: applied only when the policy allows it
        width = await page.evaluate("getComputedStyle(document.body).maxWidth")
        assert width == ("none" if "embed" in path else "768px"), path
    assert not [m for m in refused if "Content Security Policy" in m], refused
