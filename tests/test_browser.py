"""The page in a real browser: Debian's Chromium, driven by Playwright, on the demo network.

What the HTML tests in test_page.py cannot see is checked here, the way a visitor meets it:
the page embedded in an iframe on another origin (as on the umbrella organisation's site), in
Danish and in English; the month headings; a cancelled title that is really struck through while
its status word is not (the word, not the line, is what colour-blind and screen-reader users get);
a moved event; the subscribe link and address; the filter form, with JavaScript off too; that
nothing forbids framing; that Tab reaches the controls with a visible focus ring. Screenshots of
both languages land in test-artifacts/ (ignored by git) for a human to look at.

axe-core checks every page, in both languages, for what it can find of WCAG (contrast, names,
labels, landmarks). Each event page's schema.org JSON-LD is a data block the CSP lets be.

Chromium comes from Debian (`make test` installs it), never from `playwright install`. Without it
the tests skip locally and fail in CI, where they must run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import escape

import pytest
from aiohttp import web
from playwright.async_api import Browser, FrameLocator, Page, async_playwright, expect

from aggregator.fetch import Fetcher
from aggregator.refresh import refresh_all
from aggregator.render.html import render_event_page
from aggregator.store import Store
from aggregator.web import make_app
from tests.conftest import NOW, ROOT, demo_sources, make_settings
from tests.test_page import SETTINGS, network_event

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium")
#: axe-core, installed by `npm ci` in tests/js (`make test`)
AXE = ROOT / "tests" / "js" / "node_modules" / "axe-core" / "axe.min.js"


@dataclass(frozen=True)
class Words:
    """What a visitor reads in one language, for the demo network seen on NOW."""

    #: the coming weeks hold fewer than PAGE_EVENTS, so the page shows the first 50 events
    months: tuple[str, ...]
    cancelled: str
    postponed: str
    moved_from: str
    organised_by: str
    member: str
    show: str
    subscribe: str
    address: str
    atom: str


WORDS = {
    "da": Words(
        months=(
            "december 2026",
            "januar 2027",
            "februar 2027",
            "marts 2027",
            "april 2027",
            "maj 2027",
        ),
        cancelled="Aflyst",
        postponed="Udsat",
        moved_from="Flyttet fra",
        organised_by="Arrangeret af",
        member="Medlem",
        show="Vis",
        subscribe="Abonnér",
        address="Kalenderens adresse",
        atom="Nyheder om ændringer (Atom)",
    ),
    "en": Words(
        months=(
            "December 2026",
            "January 2027",
            "February 2027",
            "March 2027",
            "April 2027",
            "May 2027",
        ),
        cancelled="Cancelled",
        postponed="Postponed",
        moved_from="Moved from",
        organised_by="Organised by",
        member="Member",
        show="Show",
        subscribe="Subscribe",
        address="The calendar's address",
        atom="News of changes (Atom)",
    ),
}
CANCELLED = "Koncert: Nørrebro Brass"
POSTPONED = "Partnership forum on localisation"
MOVED = "Fællesspisning (nytårsudgave)"

#: text decorations are not inherited but are drawn through descendants, so a word is only
#: unstruck when neither it nor any ancestor has a line-through
STRUCK = """element => {
  for (let e = element; e; e = e.parentElement) {
    if (getComputedStyle(e).textDecorationLine.includes('line-through')) return true;
  }
  return false;
}"""
#: a focus indicator a sighted keyboard user can see: an outline or a box-shadow ring
FOCUS_RING = """element => {
  const style = getComputedStyle(element);
  const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
  return {tag: element.tagName.toLowerCase(), ring: outline || style.boxShadow !== 'none'};
}"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium not installed: CI must run the browser tests (`make test`)")
        pytest.skip("chromium not installed; `make test` installs it")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # a container has no user namespaces for the sandbox, no GPU and a small /dev/shm
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield launched
        await launched.close()


@pytest.fixture
async def calendar_url(aiohttp_server, tmp_path) -> str:
    """The demo network served for real on 127.0.0.1; its base URL, without a trailing slash."""
    settings = make_settings(tmp_path, demo_sources())
    store = await Store.open(settings.database_url)
    await refresh_all(store, Fetcher(None, settings.limits), settings, NOW)
    await store.close()
    server = await aiohttp_server(
        make_app(settings, clock=lambda: NOW, scheduler=False), host="127.0.0.1"
    )
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def host_url(aiohttp_server, calendar_url) -> str:
    """The umbrella organisation's site, on a second port so the embed is cross-origin:
    /?lang=da shows the calendar in an iframe with ?embed=1&lang=da."""

    async def host_page(request: web.Request) -> web.Response:
        src = f"{calendar_url}/?embed=1&lang={request.query['lang']}"
        html = (
            '<!doctype html><html lang="da"><head><meta charset="utf-8">'
            "<title>Paraplyorganisationen</title></head>"
            '<body style="font-family: sans-serif; margin: 2rem">'
            "<h1>Paraplyorganisationen</h1><p>Kalender for hele netværket:</p>"
            f'<iframe src="{escape(src)}" title="Netværkets kalender" '
            'style="width: 100%; height: 1600px; border: 1px solid #999"></iframe>'
            "</body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", host_page)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("/"))


async def open_embedded(browser: Browser, host_url: str, lang: str, **context) -> Page:
    # tall enough for the whole host page: a full-page screenshot of a taller one resizes the
    # viewport, which resets the iframe's scroll position
    context.setdefault("viewport", {"width": 1280, "height": 1800})
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(f"{host_url}?lang={lang}")
    return page


def calendar_frame(page: Page) -> FrameLocator:
    return page.frame_locator("iframe")


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / name, full_page=True)


async def expect_the_demo_calendar(root: Page | FrameLocator, lang: str) -> None:
    """Months, struck statuses with unstruck words, the moved event, the subscription."""
    words = WORDS[lang]
    await expect(root.locator("html")).to_have_attribute("lang", lang)
    await expect(root.locator("#events h2")).to_have_text(list(words.months))

    for title, word in ((CANCELLED, words.cancelled), (POSTPONED, words.postponed)):
        event = root.locator("li.event", has_text=title)
        struck_title = event.locator("del")
        await expect(struck_title).to_have_text(title)
        assert await struck_title.evaluate(STRUCK), f"{title} is not struck through"
        mark = event.locator(".mark")
        await expect(mark).to_have_text(word)
        await expect(mark).to_be_visible()
        assert not await mark.evaluate(STRUCK), f"the word {word!r} is struck through"

    moved = root.locator("li.event", has_text=MOVED)
    await expect(moved.locator(".note")).to_contain_text(words.moved_from)
    assert not await moved.locator("h3").evaluate(STRUCK), "a moved event is not cancelled"

    subscription = root.locator(".subscribe")
    link = subscription.get_by_role("link", name=words.subscribe, exact=True)
    await expect(link).to_have_attribute("href", re.compile(r"^webcal://"))
    address = subscription.get_by_label(words.address, exact=True)
    await expect(address).to_have_value(re.compile(r"^https?://"))
    await expect(address).not_to_be_editable()
    atom = subscription.get_by_role("link", name=words.atom, exact=True)
    await expect(atom).to_have_attribute("href", re.compile(r"/feed\.atom"))
    feed = root.locator('head link[rel="alternate"][type="application/atom+xml"]')
    await expect(feed).to_have_attribute("href", re.compile(r"/feed\.atom"))


@pytest.mark.parametrize("lang", ["da", "en"])
async def test_the_embedded_calendar_shows_months_statuses_and_subscription(
    browser, host_url, lang
):
    page = await open_embedded(browser, host_url, lang)
    frame = calendar_frame(page)
    await expect_the_demo_calendar(frame, lang)
    await screenshot(page, f"embedded-{lang}.png")
    # the iframe shows its first screenful; scrolled to January (scrollTo in the frame, as
    # scrollIntoView would scroll the host page too) the cancelled and moved events are in view
    await frame.locator("#m-2027-01").evaluate("h => scrollTo(0, h.getBoundingClientRect().top)")
    await screenshot(page, f"embedded-{lang}-january.png")


@pytest.mark.parametrize("lang", ["da", "en"])
async def test_the_page_speaks_the_browser_language(browser, calendar_url, lang):
    context = await browser.new_context(extra_http_headers={"Accept-Language": lang})
    page = await context.new_page()
    await page.goto(f"{calendar_url}/")
    await expect_the_demo_calendar(page, lang)
    await screenshot(page, f"page-{lang}.png")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
async def test_the_member_filter_narrows_the_embedded_list_and_the_subscription(
    browser, host_url, javascript
):
    words = WORDS["da"]
    page = await open_embedded(browser, host_url, "da", java_script_enabled=javascript)
    frame = calendar_frame(page)
    events = frame.locator("li.event")
    await expect(frame.locator("#events h2").first).to_be_visible()
    everything = await events.count()

    await frame.get_by_label(words.member, exact=True).select_option("groen-omstilling")
    await frame.get_by_role("button", name=words.show, exact=True).click()

    subscribe = frame.get_by_role("link", name=words.subscribe, exact=True)
    await expect(subscribe).to_have_attribute("href", re.compile(r"[?&]source=groen-omstilling"))
    await expect(frame.get_by_label(words.member, exact=True)).to_have_value("groen-omstilling")
    narrowed = await events.count()
    assert 0 < narrowed < everything
    organisers = await events.locator("p.meta", has_text=words.organised_by).all_inner_texts()
    assert len(organisers) == narrowed
    assert all("Grøn Omstilling" in line for line in organisers), organisers


async def test_another_origin_may_frame_the_page(browser, host_url, calendar_url):
    page = await (await browser.new_context()).new_page()
    async with page.expect_response(lambda r: r.url.startswith(f"{calendar_url}/?embed")) as got:
        await page.goto(f"{host_url}?lang=da")
    headers = await (await got.value).all_headers()
    assert "x-frame-options" not in headers
    assert "frame-ancestors" not in headers.get("content-security-policy", "")
    # a refused frame shows Chromium's error page instead of the calendar
    await expect(calendar_frame(page).locator("#events h2").first).to_have_text("december 2026")


async def test_tab_moves_through_the_embedded_controls_with_a_visible_focus_ring(browser, host_url):
    page = await open_embedded(browser, host_url, "da")
    frame = calendar_frame(page)
    await expect(frame.locator("#events h2").first).to_be_visible()
    # the host page has nothing focusable, so the first Tab enters the iframe
    seen = []
    for _ in range(12):
        await page.keyboard.press("Tab")
        focused = frame.locator(":focus")
        await expect(focused).to_have_count(1)
        seen.append(await focused.evaluate(FOCUS_RING))
    assert seen[0]["tag"] == "select", seen
    assert all(element["ring"] for element in seen), seen


async def test_the_skip_link_appears_when_tabbed_to(browser, calendar_url):
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{calendar_url}/?lang=da")
    skip = page.get_by_role("link", name="Gå til indholdet")
    await page.keyboard.press("Tab")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    assert (await skip.evaluate(FOCUS_RING))["ring"]
    box = await skip.bounding_box()
    assert box is not None and box["width"] > 1 and box["height"] > 1, box


# -- months and search, without JavaScript --------------------------------------------------


async def test_the_months_and_the_search_work_without_javascript_and_keep_the_filter(
    browser, calendar_url
):
    page = await (await browser.new_context(java_script_enabled=False)).new_page()
    await page.goto(f"{calendar_url}/?lang=da&source=groen-omstilling")
    months = page.get_by_role("navigation", name="Måneder")
    await expect(months.locator("[aria-current=page]")).to_have_text("De kommende uger")
    await months.get_by_role("link", name="december 2026").click()
    await expect(page).to_have_url(re.compile(r"[?&]month=2026-12(&|$)"))
    await expect(months.locator("[aria-current=page]")).to_have_text("december 2026")
    await expect(page.get_by_label("Medlem", exact=True)).to_have_value("groen-omstilling")
    await months.get_by_role("link", name="januar 2027").click()
    await expect(page.locator("#events h2")).to_have_text(["januar 2027"])
    await expect(page.get_by_label("Medlem", exact=True)).to_have_value("groen-omstilling")

    await page.get_by_label("Søg", exact=True).fill("klimacafé")
    await page.get_by_role("button", name="Vis", exact=True).click()
    titles = await page.locator("li.event h3 a").all_inner_texts()
    assert titles and all("Klimacafé" in title for title in titles), titles
    await expect(page).to_have_url(re.compile(r"month=2027-01"))
    await months.get_by_role("link", name="De kommende uger").click()
    await expect(page.get_by_label("Søg", exact=True)).to_have_value("klimacafé")
    await expect(page.get_by_label("Medlem", exact=True)).to_have_value("groen-omstilling")
    await expect(months.locator("[aria-current=page]")).to_have_text("De kommende uger")


# -- schema.org JSON-LD under the page's CSP ------------------------------------------------


async def test_the_event_page_json_ld_parses_and_breaks_no_csp(browser, calendar_url):
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{calendar_url}/?lang=en")
    links = {}
    for title in (CANCELLED, MOVED):
        event = page.locator("li.event", has_text=title).locator("h3 a")
        links[title] = await event.get_attribute("href")
    errors: list[str] = []

    def console(message) -> None:
        # Chromium asks for /favicon.ico on its own, now and then: a 404 that is not ours
        where = message.location.get("url", "")
        if message.type == "error" and not where.endswith("/favicon.ico"):
            errors.append(f"{message.text} ({where})")

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    found = {}
    for title, href in links.items():
        response = await page.goto(f"{calendar_url}{href}")
        assert response is not None and response.ok
        policy = (await response.all_headers())["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src" not in policy, policy
        text = await page.locator('script[type="application/ld+json"]').text_content()
        found[title] = json.loads(text or "")
    # a data block is never run, so the policy that allows no script says nothing about it
    assert not errors, errors
    cancelled, moved = found[CANCELLED], found[MOVED]
    assert cancelled["@type"] == "Event" and cancelled["name"] == CANCELLED
    assert cancelled["eventStatus"] == "https://schema.org/EventCancelled"
    assert cancelled["url"].endswith(links[CANCELLED].split("?")[0])
    assert "previousStartDate" in moved and moved["startDate"] != moved["previousStartDate"]


@pytest.mark.parametrize("lang", ["da", "en"])
async def test_a_member_of_a_long_name_leaves_the_phone_page_its_width(browser, calendar_url, lang):
    """At 360 px the filters stay within the page, however long a member's name (a select is
    as wide as its longest option unless told otherwise)."""
    page = await (await browser.new_context(viewport={"width": 360, "height": 700})).new_page()
    await page.goto(f"{calendar_url}/?lang={lang}")
    select = page.locator("select[name=source]")
    await select.evaluate(
        "s => s.add(new Option('Foreningen for ' + 'meget lange navne '.repeat(8), 'long'))"
    )
    width = await page.evaluate("document.documentElement.scrollWidth")
    box = await select.bounding_box()
    assert width <= 360 and box is not None and box["x"] + box["width"] <= 360, (width, box)


async def test_a_hostile_title_cannot_leave_the_json_ld(browser):
    title = '</script><script>alert("title")</script><!--'
    item = network_event("evil", title, location="<!--<script>", description="</script>")
    page = await (await browser.new_context()).new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    # set_content: no CSP here, so anything that broke out of the data block would run
    await page.set_content(render_event_page(item, SETTINGS, [], lang="da"))
    scripts = page.locator("script")
    await expect(scripts).to_have_count(1)
    data = json.loads(await scripts.text_content() or "")
    assert data["name"] == title and data["location"]["name"] == "<!--<script>"
    await expect(page.locator("h1")).to_contain_text(title)
    assert not dialogs, dialogs


# -- accessibility: axe-core on every page, in both languages -------------------------------

#: axe's impacts we fail on; moderate and minor ones are worth a look in the printed list
BLOCKING = ("serious", "critical")
AXE_RUN = """async () => {
  const result = await axe.run(document);
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary),
  }));
}"""


@pytest.mark.parametrize("lang", ["da", "en"])
async def test_axe_finds_no_serious_violations(browser, calendar_url, lang):
    if not AXE.is_file():
        pytest.fail(f"{AXE} missing: run `npm ci` in tests/js (`make test` does)")
    # the pages' CSP allows no script, axe's included: bypassed for this test only
    page = await (await browser.new_context(bypass_csp=True)).new_page()
    await page.goto(f"{calendar_url}/?lang={lang}")
    event = await page.locator("li.event h3 a").first.get_attribute("href")
    assert event is not None
    paths = [
        "/",
        event.split("?")[0],
        "/sources",
        "/sources/groen-omstilling",
        "/check",
        "/?embed=1&month=2027-01",
    ]
    found = {}
    for path in paths:
        response = await page.goto(f"{calendar_url}{path}{'&' if '?' in path else '?'}lang={lang}")
        assert response is not None and response.ok, path
        await page.add_script_tag(path=AXE)
        violations = await page.evaluate(AXE_RUN)
        blocking = [v for v in violations if v["impact"] in BLOCKING]
        if blocking:
            found[path] = blocking
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)
