"""RSS and Atom sources: events whose date lives in the item, on the linked page or in text."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from aggregator.cli import main
from aggregator.model import SourceKind, Status
from aggregator.normalise import combine_status, text_status, title_status
from aggregator.parse.dates import find_dates
from aggregator.parse.feeds import read_feed
from aggregator.refresh import refresh_all
from tests.conftest import CORPUS, DATA, fetching, make_settings, source

CPH = ZoneInfo("Europe/Copenhagen")
#: the seed page's feed was published in January 2023
THEN = datetime(2023, 1, 10, 12, tzinfo=UTC)
RSS = DATA / "rss"


def serve_seed(feed_server) -> str:
    base = feed_server.url("").rstrip("/")
    for name, path in (("seed_feed.xml", "/events.rss"), ("seed_event_page.html", None)):
        body = (RSS / name).read_text(encoding="utf-8").replace("{{BASE}}", base)
        if path:
            feed_server.serve(path, body, headers={"Content-Type": "application/rss+xml"})
        else:
            feed_server.serve(
                "/events/social-movement.html", body, headers={"Content-Type": "text/html"}
            )
    return feed_server.url("/events.rss")


async def read_seed(store, feed_server, tmp_path, kind=SourceKind.RSS):
    settings = make_settings(tmp_path, [source("fokus", serve_seed(feed_server), kind=kind)])
    async with fetching(settings) as fetcher:
        reports, _ = await refresh_all(store, fetcher, settings, THEN)
    return settings, reports[0], {o.uid: o for o in await store.load_occurrences("fokus")}


async def test_the_seed_page_yields_its_event(store, feed_server, tmp_path):
    _, report, events = await read_seed(store, feed_server, tmp_path)
    event = events["globaltfokus-event-4711"]
    assert event.title == "Join the new social movement support network in Denmark"
    assert event.start == datetime(2023, 1, 26, 13, tzinfo=CPH)
    assert event.end == datetime(2023, 1, 26, 14, 30, tzinfo=CPH)
    assert event.tzid == "Europe/Copenhagen"
    assert event.location == "ActionAid Denmark, Fælledvej 12, 2200 Kbh N"
    # "Aflyst/Cancelled" in the title, "Ny dator følger" (sic) on the page: postponed;
    # "Registeringer er nu lukket" is no cancellation
    assert event.status is Status.POSTPONED
    assert event.origin == "text: page text: 'Torsdag 26 Januar 2023, 13:00 - 14:30'"
    assert "Denne e-mail adresse" not in event.description


async def test_an_item_without_a_date_is_a_warning_not_an_event(store, feed_server, tmp_path):
    _, report, events = await read_seed(store, feed_server, tmp_path)
    assert "globaltfokus-news-88" not in events  # never dated by its publication date
    assert "no date in 'Nyhedsbrev december'; not an event" in map(str, report.warnings)


async def test_dates_in_the_item_text_need_no_page(store, feed_server, tmp_path):
    _, _, events = await read_seed(store, feed_server, tmp_path)
    workshop = events["globaltfokus-event-4712"]
    assert workshop.start == datetime(2023, 2, 8, 16, tzinfo=CPH)
    assert workshop.end == datetime(2023, 2, 8, 18, tzinfo=CPH)
    assert workshop.status is Status.SCHEDULED  # "Registration closed" is not cancelled
    assert workshop.origin.startswith("text: item text:")
    fetched = {r.path for r in feed_server.requests}
    assert "/events/fundraising.html" in fetched  # read, as it has no structured data


async def test_kind_auto_recognises_rss(store, feed_server, tmp_path):
    _, report, events = await read_seed(store, feed_server, tmp_path, kind=SourceKind.AUTO)
    assert report.outcome == "updated" and len(events) == 2


async def test_a_page_is_read_again_only_when_its_item_changes(store, feed_server, tmp_path):
    settings = make_settings(
        tmp_path, [source("fokus", serve_seed(feed_server), kind=SourceKind.RSS)]
    )
    async with fetching(settings) as fetcher:
        await refresh_all(store, fetcher, settings, THEN)
        page_reads = lambda: sum(  # noqa: E731
            r.path == "/events/social-movement.html" for r in feed_server.requests
        )
        assert page_reads() == 1
        # the feed changes elsewhere: a new item; the seed item is the same
        feed = feed_server.routes["/events.rss"]
        feed.body = feed.body.replace(b"<item>", b"<item><category>x</category>", 1)
        await refresh_all(store, fetcher, settings, THEN)
        assert page_reads() == 1
        feed.body = feed.body.replace(b"A time of unprecedented", b"Now: a time of", 1)
        await refresh_all(store, fetcher, settings, THEN)
        assert page_reads() == 2


async def test_json_ld_on_the_page_wins_over_text(store, feed_server, tmp_path):
    page = """<html><head><script type="application/ld+json">{"@context": "https://schema.org",
      "@type": "Event", "name": "Klimamøde", "startDate": "2023-03-02T19:00:00+01:00",
      "endDate": "2023-03-02T21:00:00+01:00", "eventStatus": "https://schema.org/EventCancelled",
      "location": {"@type": "Place", "name": "Kulturhuset",
      "address": {"@type": "PostalAddress", "streetAddress": "Nørrebrogade 1",
      "postalCode": "2200", "addressLocality": "København N"}}}</script></head>
      <body><article><p>Mødet er 1. marts 2023 kl. 10.</p></article></body></html>"""
    feed_server.serve("/p.html", page, headers={"Content-Type": "text/html"})
    feed = f"""<rss version="2.0"><channel><title>T</title><item><title>Klimamøde</title>
      <link>{feed_server.url("/p.html")}</link><guid>k1</guid></item></channel></rss>"""
    url = feed_server.serve("/f.rss", feed)
    settings = make_settings(tmp_path, [source("fokus", url, kind=SourceKind.RSS)])
    async with fetching(settings) as fetcher:
        await refresh_all(store, fetcher, settings, THEN)
    (event,) = await store.load_occurrences("fokus")
    assert event.start == datetime(2023, 3, 2, 18, tzinfo=UTC)
    assert event.status is Status.CANCELLED
    assert event.location == "Kulturhuset, Nørrebrogade 1, 2200 København N"
    assert event.origin == "page: JSON-LD"


def test_rss_event_module_is_structured_data():
    feed = """<?xml version="1.0"?>
    <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
      xmlns="http://purl.org/rss/1.0/" xmlns:ev="http://purl.org/rss/1.0/modules/event/">
      <channel rdf:about="x"><title>Events</title><link>http://x</link><description>d</description>
      </channel>
      <item rdf:about="http://x/1"><title>Loppemarked</title><link>http://x/1</link>
        <ev:startdate>2023-05-20T10:00:00+02:00</ev:startdate>
        <ev:enddate>2023-05-20T15:00:00+02:00</ev:enddate>
        <ev:location>Gården, Fælledvej 12</ev:location></item>
    </rdf:RDF>""".encode()
    (item,), _ = read_feed(feed, "application/rdf+xml", url="x", zone_name="Europe/Copenhagen")
    assert item.structured.start == datetime(2023, 5, 20, 10, tzinfo=CPH)
    assert item.structured.location == "Gården, Fælledvej 12"
    assert item.structured.how == "RSS event module"


@pytest.mark.parametrize(
    "text, start, end",
    [
        ("Torsdag 26 Januar 2023, 13:00 - 14:30", "2023-01-26 13:00", "2023-01-26 14:30"),
        (
            "Thursday the 26th of January, 2023 at 13.00-14.30",
            "2023-01-26 13:00",
            "2023-01-26 14:30",
        ),
        ("onsdag den 8. februar 2023 kl. 16.00-18.00", "2023-02-08 16:00", "2023-02-08 18:00"),
        ("d. 12/5 2023 kl. 17:00-19:00", "2023-05-12 17:00", "2023-05-12 19:00"),
        ("Saturday 4 March 2023, 10am–2pm", "2023-03-04 10:00", "2023-03-04 14:00"),
        ("March 12, 2023 from 5:30 pm to 7 pm", "2023-03-12 17:30", "2023-03-12 19:00"),
        ("kl. 13-14.30 torsdag 26. januar 2023", None, None),
        ("26. januar 2023 @ 13:00 - 14:30", "2023-01-26 13:00", "2023-01-26 14:30"),
        ("fra den 3. til den 5. juni 2023", "2023-06-03", "2023-06-06"),
        ("12–14 May 2023", "2023-05-12", "2023-05-15"),
        ("lørdag d. 4. marts kl. 10-14", "2023-03-04 10:00", "2023-03-04 14:00"),
    ],
)
def test_dates_written_in_danish_and_english(text, start, end):
    found = find_dates(text, languages=("da", "en"), zone_name="Europe/Copenhagen", published=THEN)
    if start is None:  # the time before the date is not read as the date's
        assert found and found[0].all_day
        return
    first = found[0]
    fmt = "%Y-%m-%d" if first.all_day else "%Y-%m-%d %H:%M"
    assert (first.start.strftime(fmt), first.end.strftime(fmt)) == (start, end)


def test_a_date_without_a_year_is_the_next_after_publication():
    (found,) = find_dates(
        "lørdag d. 4. marts kl. 10-14",
        languages=("da",),
        zone_name="Europe/Copenhagen",
        published=datetime(2023, 3, 10, tzinfo=UTC),
    )
    assert found.start.date() == date(2024, 3, 4) and found.year_guessed


def test_a_deadline_is_not_the_event():
    found = find_dates(
        "Register here before 24th of January 2023",
        languages=("en",),
        zone_name="Europe/Copenhagen",
        published=THEN,
    )
    assert found == []


@pytest.mark.parametrize(
    "title, status, shown",
    [
        ("Aflyst/Cancelled: Koncert", Status.CANCELLED, "Koncert"),
        ("AFLYST - Koncert", Status.CANCELLED, "Koncert"),
        ("Annulleret: Møde", Status.CANCELLED, "Møde"),
        ("Canceled - Talk", Status.CANCELLED, "Talk"),
        ("Udsat: Generalforsamling", Status.POSTPONED, "Generalforsamling"),
        ("POSTPONED: Gala", Status.POSTPONED, "Gala"),
        ("Flyttet: Foredrag", Status.RESCHEDULED, "Foredrag"),
        ("Ny dato: Foredrag", Status.RESCHEDULED, "Foredrag"),
        ("Registration closed: Workshop", None, "Registration closed: Workshop"),
        ("Udsolgt: Koncert", None, "Udsolgt: Koncert"),
        ("Fully booked - Retreat", None, "Fully booked - Retreat"),
    ],
)
def test_status_markers_in_titles(title, status, shown):
    assert title_status(title) == (status, shown)


@pytest.mark.parametrize(
    "text, status",
    [
        ("Ny dato følger", Status.POSTPONED),
        ("Ny dator følger / New date will be announced", Status.POSTPONED),
        ("New date to follow.", Status.POSTPONED),
        ("Arrangementet er desværre aflyst.", Status.CANCELLED),
        ("The event has been cancelled", Status.CANCELLED),
        ("Ny dato: 15. marts 2023", Status.RESCHEDULED),
        ("Registeringer er nu lukket", None),
        ("Registrering lukket\nUdsolgt\nSold out\nFully booked", None),
    ],
)
def test_status_markers_in_text(text, status):
    assert text_status(text) is status


def test_postponed_wins_over_cancelled():
    assert combine_status(Status.CANCELLED, Status.POSTPONED, None) is Status.POSTPONED


def test_every_corpus_feed_is_read_without_a_traceback(capsys):
    files = sorted((CORPUS / "feeds").iterdir())
    assert len(files) > 15
    for path in files:
        # --no-pages: the corpus links pages on the internet, which tests never reach
        code = main(["check", str(path), "--kind", "rss", "--json", "--no-pages"])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, path.name
        result = json.loads(out)
        assert code in (0, 1), path.name
        assert result["warnings"] or result["occurrences"] or result.get("error"), path.name


async def test_check_shows_how_each_item_was_dated(feed_server, capsys):
    url = serve_seed(feed_server)
    code = await __import__("asyncio").to_thread(main, ["check", url])
    out = capsys.readouterr().out
    assert code == 0
    # 2023 is outside today's horizon: the member still sees how each item was read
    assert "text: item text: 'Onsdag den 8. februar 2023 kl. 16.00-18.00'" in out
    assert "no date in 'Nyhedsbrev december'" in out


async def test_the_labelled_set_is_dated_right():
    """bench/rss_eval.py on tests/fixtures/rss: at least 95% exactly right, no wrong day."""
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import rss_eval
    finally:
        sys.path.remove(str(ROOT / "bench"))
    rows = await rss_eval.evaluate()
    assert len(rows) >= 60
    assert sum(r.expected["start"] is None for r in rows) >= 8
    wrong = [(r.feed, r.expected["title"]) for r in rows if not r.right]
    assert len(wrong) <= 0.05 * len(rows), wrong
    assert [r.id for r in rows if r.wrong_day] == []


# -- issue 13: one hostile feed never stops the network ---------------------------------------


def rss(items: str) -> bytes:
    return f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()


def test_a_feed_of_many_undated_items_keeps_a_capped_list_of_warnings():
    from aggregator.parse.feeds import item_events
    from aggregator.parse.warnings import MAX_WARNINGS

    # no guid, no link, no date: two warnings per item, each of its own words
    body = rss("".join(f"<item><title>Nyhed {n}</title></item>" for n in range(3000)))
    items, read_warnings = read_feed(body, None, url="https://x.org/f", zone_name="UTC")
    assert len(items) == 3000
    assert len(read_warnings) == MAX_WARNINGS + 1
    assert str(read_warnings[-1]) == f"... and {3000 - MAX_WARNINGS} more warnings"
    parsed = item_events(
        items,
        {},
        source=source("s", "https://x.org/f", kind=SourceKind.RSS),
        zone_name="UTC",
        languages=("da", "en"),
        now=THEN,
        limits=make_settings_limits(),
    )
    assert parsed.occurrences == ()
    assert str(parsed.warnings[0]) == "no date in 'Nyhed 0'; not an event"
    assert str(parsed.warnings[-1]) == f"... and {3000 - MAX_WARNINGS} more warnings"
    assert len(parsed.warnings) == MAX_WARNINGS + 1


def test_capped_warnings_from_several_steps_count_what_each_cut():
    from aggregator.parse.warnings import MAX_WARNINGS, capped

    first = capped(f"a{n}" for n in range(250))  # 200 kept, 50 cut
    second = capped(f"b{n}" for n in range(10))
    joined = capped(first + second + ("a1", "a1"))  # repeats are said once, never counted
    assert tuple(map(str, joined[:2])) == ("a0", "a1") and len(joined) == MAX_WARNINGS + 1
    assert str(joined[-1]) == "... and 60 more warnings"


def make_settings_limits():
    from aggregator.model import Limits

    return Limits()


def test_a_link_with_line_breaks_inside_is_cleaned_and_keeps_its_identity():
    # feedparser keeps the CR/LF a CMS left inside <link>
    body = rss(
        "<item><title>Møde 1. marts 2023 kl. 10</title>"
        "<link>https://x.org/events/\r\n  m%C3%B8de\r\n</link></item>"
        "<item><title>Fest 2. marts 2023 kl. 10</title><link>https://x.org/fest</link></item>"
    )
    (broken, plain), _ = read_feed(body, None, url="https://x.org/f", zone_name="UTC")
    assert broken.link == "https://x.org/events/m%C3%B8de"
    # identity as before cleaning links: the link as written (one line) for a normal one
    assert plain.id == plain.link == "https://x.org/fest"
    assert "\n" not in broken.id and "\r" not in broken.id
    from aggregator.parse.feeds import item_events

    parsed = item_events(
        [broken, plain],
        {},
        source=source("s", "https://x.org/f", kind=SourceKind.RSS),
        zone_name="UTC",
        languages=("da",),
        now=THEN,
        limits=make_settings_limits(),
    )
    assert [o.url for o in parsed.occurrences] == [broken.link, plain.link]


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(document.cookie)",
        " JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox",
        "http://exa mple..org/",
        "mailto:x@y.org",
    ],
)
def test_a_link_that_is_not_a_web_page_never_reaches_an_occurrence(href):
    from html import escape

    from aggregator.parse.feeds import item_events

    body = rss(
        f"<item><title>Møde</title><guid>g1</guid><link>{escape(href)}</link>"
        "<description>Torsdag 26 Januar 2023, 13:00 - 14:30</description></item>"
    )
    (item,), warnings = read_feed(body, None, url="https://x.org/f", zone_name="UTC")
    assert item.link is None and item.id == "g1"
    assert any("not a web page" in str(w) for w in warnings)
    (occurrence,) = item_events(
        [item],
        {},
        source=source("s", "https://x.org/f", kind=SourceKind.RSS),
        zone_name="UTC",
        languages=("da",),
        now=THEN,
        limits=make_settings_limits(),
    ).occurrences
    assert occurrence.url is None


def test_a_relative_link_is_read_against_the_feed():
    body = rss("<item><title>A</title><link>/events/a?x=1 2</link></item>")
    (item,), _ = read_feed(body, None, url="https://x.org/feeds/f.rss", zone_name="UTC")
    assert item.link == "https://x.org/events/a?x=1%202"
    assert item.id == "/events/a?x=1 2"  # the identity is what the member wrote


def test_ics_links_on_a_page_are_cleaned_and_webcal_is_read_over_https():
    from aggregator.parse.pages import read_page

    page = """<html><body><article>
      <a href="webcal://cal.x.org/e/1.ics">Tilføj til kalender</a>
      <a href="javascript:download('x.ics')">Download .ics</a>
      <a href="/e/1.ics">iCal</a>
      <a href="https://x.org/e/2
      .ics">Add to calendar</a>
      <a href="data:text/calendar,BEGIN:VCALENDAR">Add to calendar</a>
      <a href="/om-os">Om os</a></article></body></html>"""
    data = read_page(page, "https://x.org/e/1", "Europe/Copenhagen")
    assert data.ics_links == (
        "https://cal.x.org/e/1.ics",
        "https://x.org/e/1.ics",
        "https://x.org/e/2.ics",
    )


@pytest.mark.parametrize(
    "hostile",
    [
        "1" + " " * 100_000 + "x",  # two \s* in a row after a day shared the spaces
        "Mandag" + " " * 100_000 + "1",
        "1 -" + " " * 100_000 + "x",
        "januar 1" + "\n" * 100_000,
        "1 jan 2023" + " -" * 50_000 + "x 2 feb 2023",  # the gap between two dates
        "1. januar 2023 kl. 13" + " " * 100_000 + "x",
        "A.B." * 25_000,
    ],
)
def test_dates_in_hostile_text_are_found_fast(hostile):
    import time

    from aggregator.parse.pages import address, html_to_text

    began = time.process_time()
    find_dates(hostile, languages=("da", "en"), zone_name="Europe/Copenhagen", published=THEN)
    address(hostile)
    html_to_text(hostile)
    # each took minutes before (quadratic backtracking); now a fraction of a second
    assert time.process_time() - began < 1.0


def test_an_xhtml_page_with_an_xml_declaration_is_read():
    from aggregator.parse.pages import read_page

    page = (
        '<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml">'
        '<body><article><p>Koncert 2. marts 2027</p><script type="application/ld+json">'
        '{"@context": "https://schema.org", "@type": "Event", "startDate": "2027-03-02"}'
        "</script></article></body></html>"
    )
    data = read_page(page, "https://x.org/e/1", "Europe/Copenhagen")
    assert [e.start for e in data.events] == [date(2027, 3, 2)]
    assert data.text == "Koncert 2. marts 2027"


def test_a_page_of_many_ics_links_is_read_fast_and_keeps_the_first():
    import time

    from aggregator.parse.pages import MAX_ICS_LINKS, read_page

    anchors = "".join(f'<a href="/e/{n}.ics">iCal</a>' for n in range(50_000))
    began = time.process_time()
    data = read_page(f"<html><body>{anchors}</body></html>", "https://x.org/", "UTC")
    assert time.process_time() - began < 5  # a list searched per link: quadratic before
    assert len(data.ics_links) == MAX_ICS_LINKS and data.ics_links[0] == "https://x.org/e/0.ics"


def test_microdata_nested_hundreds_deep_is_skipped_not_read_for_minutes():
    import time

    from aggregator.parse.pages import structured_events

    item = '<div itemscope itemtype="https://schema.org/Event">'
    page = (
        '<html><head><script type="application/ld+json">{"@type": "Event", '
        '"startDate": "2027-03-03"}</script></head><body>'
        + item * 200
        + "<p>x</p>" * 1000
        + '<meta itemprop="startDate" content="2027-03-02"></body></html>'
    )
    began = time.process_time()
    found = structured_events(page, "https://x.org/", "UTC")
    assert time.process_time() - began < 1  # extruct took 20 s on this
    assert [(e.start, e.how) for e in found] == [(date(2027, 3, 3), "JSON-LD")]
