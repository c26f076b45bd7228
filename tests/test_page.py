"""The pages (render/html.py and their view models): the embeddable bilingual page and an
event's page, rendered from plain values; the page's language and filters."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import lxml.html
import pytest

from aggregator.model import (
    ChangeKind,
    ChangeRecord,
    FetchOutcome,
    FetchRecord,
    MergedEvent,
    Network,
    NetworkEvent,
    Settings,
    Source,
    SourceState,
    Status,
)
from aggregator.problems import problem, say
from aggregator.render.html import render_event_page, render_index, render_source
from aggregator.render.index import (
    MAX_LINK,
    PAGE_DAYS,
    PAGE_EVENTS,
    Period,
    feed_query,
    links_too_long,
    page_period,
)
from aggregator.render.sources import SourceHealth
from aggregator.render.views import http_link
from aggregator.request import choose_language
from aggregator.selection import Selection, page_filters
from tests.conftest import NOW

SETTINGS = Settings(
    network=Network(
        name="Testnetværket",
        description="Test network",
        timezone="Europe/Copenhagen",
        base_url="https://events.example",
    ),
    sources=(
        Source(id="alpha", name="Alpha Forening", url="/alpha.ics"),
        Source(id="beta", name="Beta Klub", url="/beta.ics"),
    ),
)
#: 13:00 in Copenhagen (winter time)
JAN = datetime(2027, 1, 14, 12, tzinfo=UTC)
FEB = datetime(2027, 2, 4, 17, tzinfo=UTC)


def network_event(
    id: str,
    title: str,
    start: datetime | date = JAN,
    *,
    source: str = "alpha",
    status: Status = Status.SCHEDULED,
    categories: tuple[str, ...] = (),
    **fields,
) -> NetworkEvent:
    all_day = not isinstance(start, datetime)
    end = start + (timedelta(days=1) if all_day else timedelta(hours=2))
    name = SETTINGS.source(source).name
    values = {
        "id": id,
        "uid": f"{id}@example",
        "title": title,
        "start": start,
        "end": end,
        "all_day": all_day,
        "tzid": "Europe/Copenhagen",
        "description": "",
        "url": None,
        "location": "Foreningshuset",
        "status": status,
        "categories": categories,
        "organisers": (name,),
        "source_ids": (source,),
        "members": (f"{source}-{id}",),
        "fingerprint": id,
        "copies": ((source, title, f"https://{source}.example/{id}"),),
    }
    values.update(fields)
    return NetworkEvent(
        event=MergedEvent(**values), sequence=0, created=NOW, last_modified=NOW, ics=b""
    )


EVENTS = [
    network_event("concert", "Koncert", JAN, status=Status.CANCELLED, categories=("kultur",)),
    network_event("talk", "Foredrag", FEB, source="beta", categories=("klima",)),
    network_event("market", "Loppemarked", date(2027, 2, 6), categories=("Klima",)),
]


MONTHS = "//main//h2[starts-with(@id, 'm-')]"
#: XPath for class="event" among other classes (lxml's cssselect needs a package we do not use)
EVENT = "contains(concat(' ', normalize-space(@class), ' '), ' event ')"


def index(events=EVENTS, **kwargs) -> lxml.html.HtmlElement:
    kwargs.setdefault("lang", "da")
    return lxml.html.fromstring(render_index(events, SETTINGS, now=NOW, **kwargs))


def titles(page: lxml.html.HtmlElement) -> list[str]:
    """The titles as they read, without the status words kept for screen readers."""
    hidden = "contains(concat(' ', @class, ' '), ' visually-hidden ')"
    return [
        "".join(a.xpath(f".//text()[not(ancestor::span[{hidden}])]")).strip()
        for a in page.xpath(f"//li[{EVENT}]/h3/a")
    ]


def event_item(page: lxml.html.HtmlElement, title: str) -> lxml.html.HtmlElement:
    (item,) = [li for li in page.xpath(f"//li[{EVENT}]") if title in li.text_content()]
    return item


def test_danish_page_has_danish_months_and_words():
    page = index(lang="da")
    assert page.get("lang") == "da"
    assert [h.text for h in page.xpath(MONTHS)] == ["januar 2027", "februar 2027"]
    text = page.text_content()
    assert "Aflyst" in text and "Arrangeret af: Beta Klub" in text and "Abonnér" in text
    assert "tors. 14. jan. kl. 13.00–15.00" in text


def test_english_page_has_english_months_and_words():
    page = index(lang="en")
    assert page.get("lang") == "en"
    assert [h.text for h in page.xpath(MONTHS)] == ["January 2027", "February 2027"]
    text = page.text_content()
    assert "Cancelled" in text and "Organised by: Beta Klub" in text and "Subscribe" in text
    assert "Thu 14 Jan 13:00–15:00" in text
    assert "Aflyst" not in text


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [
        ("en", "da", "en"),
        ("EN", None, "en"),
        ("fr", "en-GB,en;q=0.9", "en"),
        (None, "da-DK,da;q=0.9,en;q=0.8", "da"),
        (None, "en-US;q=0.5, da;q=0.9", "da"),
        (None, "fr-FR, en;q=0.7, da;q=0.3", "en"),
        (None, "da;q=0, en;q=0.1", "en"),
        (None, "fr, *;q=0.5", "da"),
        (None, "en;q=0, *", "da"),
        (None, "de, fr", "da"),
        (None, "en;q=garbage, da;q=0.2", "da"),
        (None, "", "da"),
        (None, None, "da"),
    ],
)
def test_choose_language(query, header, expected):
    assert choose_language(query, header, ("da", "en")) == expected


def test_the_network_first_language_is_the_default():
    assert choose_language(None, None, ("en", "da")) == "en"


def test_a_cancelled_event_is_struck_through_and_says_aflyst():
    item = event_item(index(lang="da"), "Koncert")
    assert [d.text for d in item.xpath(".//h3//del")] == ["Koncert"]
    assert "Aflyst" in item.xpath(".//h3")[0].text_content()
    assert "Aflyst" not in item.xpath(".//del")[0].text_content()  # the word is not struck


def test_a_postponed_event_is_struck_through_and_says_udsat():
    events = [network_event("walk", "Vandretur", JAN, status=Status.POSTPONED)]
    item = event_item(index(events, lang="da"), "Vandretur")
    assert item.xpath(".//h3//del")[0].text == "Vandretur"
    assert "Udsat" in item.text_content()
    assert "Postponed" in event_item(index(events, lang="en"), "Vandretur").text_content()


def test_a_moved_event_says_where_it_was_moved_from():
    moved = [network_event("talk", "Foredrag", FEB, previous_start=JAN)]
    # in the list the year goes without saying, as in the event's own time
    assert "Flyttet fra tors. 14. jan. kl. 13.00" in index(moved, lang="da").text_content()
    assert "Moved from Thu 14 Jan 13:00" in index(moved, lang="en").text_content()
    assert not index(moved).xpath("//del")
    # a badge too, and the word in the link's name for screen readers
    (item,) = index(moved, lang="en").xpath(f"//li[{EVENT}]")
    assert item.xpath(".//h3/span[@class='mark']")[0].text == "Moved"
    assert item.xpath(".//h3/a")[0].text_content().startswith("Moved: ")


def test_an_all_day_event_shows_its_day_and_no_time():
    item = event_item(index(lang="da"), "Loppemarked")
    assert item.xpath(".//time")[0].text == "lør. 6. feb."
    assert item.xpath(".//time")[0].get("datetime") == "2027-02-06"


def test_past_events_are_left_out_but_a_running_one_stays():
    events = [
        network_event("old", "Sidste uge", NOW - timedelta(days=7)),
        network_event("now", "I gang nu", NOW - timedelta(hours=1)),
    ]
    assert titles(index(events)) == ["I gang nu"]


def test_each_event_links_to_its_page_and_its_ics():
    item = event_item(index(lang="en"), "Foredrag")
    hrefs = [a.get("href") for a in item.xpath(".//a")]
    assert hrefs == ["/events/talk?lang=en", "/events/talk.ics"]
    assert "Download .ics" in item.text_content()


def test_the_source_filter_narrows_the_list():
    page = index(filters={"source": ["beta"]})
    assert titles(page) == ["Foredrag"]
    (chosen,) = page.xpath("//select[@id='filter-source']/option[@selected]")
    assert chosen.get("value") == "beta" and chosen.text == "Beta Klub"


def test_the_category_filter_ignores_case():
    assert titles(index(filters={"category": ["klima"]})) == ["Foredrag", "Loppemarked"]
    assert titles(index(filters={"category": ["kultur"]})) == ["Koncert"]
    assert titles(index(filters={"source": ["alpha"], "category": ["klima"]})) == ["Loppemarked"]


def test_no_match_says_so():
    page = index(filters={"category": ["sport"]})
    assert titles(page) == []
    assert "Ingen kommende arrangementer passer til filteret." in page.text_content()


def test_the_filter_form_works_without_javascript():
    page = index(lang="en")
    (form,) = page.xpath("//form")
    assert form.get("method") == "get"
    for select in form.xpath(".//select"):
        assert form.xpath(f".//label[@for='{select.get('id')}']")
    assert form.xpath(".//button[@type='submit']")
    assert not page.xpath("//script")
    options = [o.get("value") for o in form.xpath(".//select[@id='filter-category']/option")]
    assert options == ["", "klima", "kultur"]  # each category once, whatever its case


def test_the_subscription_carries_the_filter():
    page = index(filters={"source": ["beta"], "category": ["klima"]})
    hrefs = {a.get("href") for a in page.xpath("//a")}
    assert "webcal://events.example/calendar.ics?source=beta&category=klima" in hrefs
    assert "/feed.atom?source=beta&category=klima" in hrefs
    (address,) = page.xpath("//input[@id='calendar-url']")
    assert address.get("readonly") is not None
    assert address.get("value") == "https://events.example/calendar.ics?source=beta&category=klima"


def test_the_unfiltered_subscription_has_no_query():
    page = index(lang="en")
    assert page.xpath("//a[@href='webcal://events.example/calendar.ics']")
    assert page.xpath("//a[@href='/feed.atom']")
    text = page.text_content()
    assert "Google Calendar" in text and "Apple Calendar" in text and "Outlook" in text
    assert "From URL" in text and "New Calendar Subscription" in text


def test_the_language_switch_keeps_the_filter():
    page = index(lang="da", filters={"category": ["klima"]})
    (link,) = page.xpath("//nav[@class='switch']//a")
    assert link.get("href") == "/?category=klima&lang=en" and link.text == "English"


def test_the_full_page_has_one_h1_and_its_chrome():
    page = index()
    assert [h.text for h in page.xpath("//h1")] == ["Testnetværket"]
    assert page.xpath("//header") and page.xpath("//footer")


def test_embed_mode_has_no_chrome_and_opens_links_outside_the_iframe():
    page = index(embed=True)
    assert not page.xpath("//header | //footer | //nav[@class='switch']")
    assert len(page.xpath("//h1")) == 1  # for screen readers, visually hidden
    assert titles(page) == ["Koncert", "Foredrag", "Loppemarked"]
    assert page.xpath("//section[@class='subscribe']//a[starts-with(@href, 'webcal://')]")
    months = page.xpath("//nav[@class='months']//a")
    assert all(a.get("target") == "_top" for a in page.xpath("//main//a") if a not in months)
    # filtering and the months stay inside the iframe, in embed mode
    assert page.xpath("//form//input[@name='embed' and @value='1']")
    assert page.xpath("//form")[0].get("target") is None
    assert months and all(a.get("target") is None and "embed=1" in a.get("href") for a in months)


def test_rendering_twice_gives_the_same_text():
    def render() -> str:
        return render_index(EVENTS, SETTINGS, lang="da", now=NOW, filters={"source": ["alpha"]})

    assert render() == render()


HOSTILE = network_event(
    "evil",
    "<script>alert(1)</script>",
    FEB,
    description="<img src=x onerror=alert(1)>",
    url="javascript:alert(1)",
    location='"><b>here</b>',
    copies=(("alpha", "<script>alert(2)</script>", "javascript:alert(2)"),),
)


@pytest.mark.parametrize("render", ["index", "event"])
def test_feed_text_is_escaped_and_javascript_urls_are_never_links(render):
    if render == "index":
        text = render_index([HOSTILE], SETTINGS, lang="da", now=NOW)
    else:
        text = render_event_page(HOSTILE, SETTINGS, [], lang="da")
    # the one <script> element is the event page's JSON-LD data block (never run)
    json_ld = '<script type="application/ld+json">'
    assert text.count("<script") == (0 if render == "index" else 1) == text.count(json_ld)
    assert "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "javascript:" not in text.lower()
    page = lxml.html.fromstring(text)
    assert all(not a.get("href", "").lower().startswith("javascript") for a in page.iter("a"))


def test_the_event_page_shows_details_copies_and_history():
    item = network_event(
        "talk",
        "Foredrag",
        FEB,
        source="beta",
        description="Om vand.\nOg klima.",
        url="https://beta.example/foredrag",
        organisers=("Alpha Forening", "Beta Klub"),
        source_ids=("beta", "alpha"),
        copies=(
            ("beta", "Foredrag", "https://beta.example/foredrag"),
            ("alpha", "Foredrag om vand", None),
        ),
        previous_start=JAN,
    )
    history = [
        ChangeRecord(
            event_id=item.event.id,
            at=datetime(2026, 11, 1, 9, tzinfo=UTC),
            kind=ChangeKind.ADDED,
            title="Foredrag",
            before=None,
            after={"start": "2027-01-14T12:00:00Z"},
        ),
        ChangeRecord(
            event_id=item.event.id,
            at=datetime(2026, 11, 20, 9, tzinfo=UTC),
            kind=ChangeKind.MOVED,
            title="Foredrag",
            before={"start": "2027-01-14T12:00:00Z"},
            after={"start": "2027-02-04T17:00:00Z", "fields": ["start", "end"]},
        ),
    ]
    page = lxml.html.fromstring(render_event_page(item, SETTINGS, history, lang="da"))
    assert page.get("lang") == "da"
    assert [h.text_content().strip() for h in page.xpath("//h1")] == ["Flyttet Foredrag"]
    text = page.text_content()
    assert "tors. 4. feb. 2027 kl. 18.00–20.00" in text
    assert "Flyttet fra tors. 14. jan. 2027 kl. 13.00" in text
    assert "Om vand.\nOg klima." in page.xpath("//div[@class='description']")[0].text_content()
    assert page.xpath("//a[@href='/events/talk.ics']")
    assert page.xpath("//a[@href='https://beta.example/foredrag']")
    copies = [li.text_content() for li in page.xpath("//section[h2/@id='copies-heading']/ul/li")]
    assert copies == ["Beta Klub: Foredrag", "Alpha Forening: Foredrag om vand"]
    rows = [li.text_content() for li in page.xpath("//section[h2/@id='history-heading']/ol/li")]
    assert rows == [  # newest first
        "fre. 20. nov. 2026 kl. 10.00: Flyttet: fra tors. 14. jan. 2027 kl. 13.00 "
        "til tors. 4. feb. 2027 kl. 18.00",
        "søn. 1. nov. 2026 kl. 10.00: Ny",
    ]
    assert page.xpath("//nav//a[@href='/events/talk?lang=en']")


def test_a_cancelled_event_page_strikes_its_title_and_says_cancelled():
    page = lxml.html.fromstring(render_event_page(EVENTS[0], SETTINGS, [], lang="en"))
    (h1,) = page.xpath("//h1")
    assert h1.xpath(".//del")[0].text == "Koncert" and "Cancelled" in h1.text_content()
    assert page.findtext(".//title") == "Cancelled: Koncert – Testnetværket"


def test_page_filters_keeps_known_keys_once_and_sorted():
    query = [("source", "beta"), ("source", "alpha"), ("source", "beta"), ("category", "")]
    assert page_filters(query + [("lang", "da")]) == {"source": ("alpha", "beta"), "category": ()}
    assert page_filters({"category": "klima"}) == {"source": (), "category": ("klima",)}
    assert page_filters(None) == {"source": (), "category": ()}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.example/x", "https://a.example/x"),
        (" http://a.example/x ", "http://a.example/x"),
        ("javascript:alert(1)", None),
        (" JavaScript:alert(1)", None),
        ("java\tscript:alert(1)", None),
        ("data:text/html,<b>x</b>", None),
        ("/relative", None),
        ("https:///no-host", None),
        (None, None),
    ],
)
def test_http_link_lets_only_http_links_through(url, expected):
    assert http_link(url) == expected


def source_page(lang: str) -> lxml.html.HtmlElement:
    """Alpha's page: a warning with a code, a fetch that read, one that failed with a code."""
    no_end = problem("no-end", title="Koncert")
    failed = problem("http-status", status=404, reason="Not Found")
    state = SourceState(
        id="alpha",
        url="/alpha.ics",
        last_fetch_at=NOW,
        last_success_at=NOW - timedelta(hours=1),
        occurrence_count=3,
        warnings=(no_end,),
    )
    fetches = (
        FetchRecord("alpha", NOW, FetchOutcome.FAILED, status=404, problem=failed),
        FetchRecord("alpha", NOW - timedelta(hours=1), FetchOutcome.UPDATED, message="read 3"),
    )
    report = SourceHealth(SETTINGS.source("alpha"), state, 0, 0, (), fetches)
    return lxml.html.fromstring(render_source(report, SETTINGS, lang=lang, now=NOW))


def outcomes(page: lxml.html.HtmlElement) -> list[str]:
    return [td.text_content() for td in page.xpath("//section[h2/@id='fetches-heading']//td[2]")]


def test_the_source_page_says_warnings_and_fetches_in_its_language():
    english, danish = source_page("en"), source_page("da")
    no_end = problem("no-end", title="Koncert")
    failed = problem("http-status", status=404, reason="Not Found")
    assert no_end.words in english.text_content()
    assert outcomes(english) == [f"failed: {failed.words}", "updated: read 3"]
    assert say(no_end, "da") != no_end.words
    assert say(no_end, "da") in danish.text_content()
    assert no_end.words not in danish.text_content()
    assert outcomes(danish) == [f"fejlede: {say(failed, 'da')}", "opdateret: read 3"]


# -- the coming weeks, a month, the search, and links short enough for Google ----------------

COPENHAGEN = ZoneInfo("Europe/Copenhagen")


def test_the_default_period_is_the_coming_four_weeks():
    period = page_period(NOW, COPENHAGEN, None)
    assert period == Period(
        start=NOW,
        end=NOW + timedelta(days=PAGE_DAYS),
        month=None,
        previous_month="2026-10",
        next_month="2026-12",
    )
    assert PAGE_DAYS == 28 and page_period(NOW, COPENHAGEN, "") == period


def test_a_month_runs_from_local_midnight_to_local_midnight():
    period = page_period(NOW, COPENHAGEN, "2027-03")
    # summer time begins on 28 March: the month ends at midnight +02:00
    assert period.start.isoformat() == "2027-03-01T00:00:00+01:00"
    assert period.end.isoformat() == "2027-04-01T00:00:00+02:00"
    assert (period.month, period.previous_month, period.next_month) == (
        "2027-03",
        "2027-02",
        "2027-04",
    )
    assert page_period(NOW, COPENHAGEN, "2027-01").previous_month == "2026-12"
    assert page_period(NOW, COPENHAGEN, "2027-12").next_month == "2028-01"
    assert page_period(NOW, UTC, "1970-01").start == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "month",
    ["2027-3", "2027-13", "2027-00", "1969-12", "2201-01", "march", "2027-03-01", "٢٠٢٧-٠٣"],
)
def test_a_malformed_month_is_refused_by_name(month):
    with pytest.raises(ValueError, match=re.escape(repr(month))):
        page_period(NOW, COPENHAGEN, month)
    with pytest.raises(ValueError):
        index(month=month)


def many(count: int, first: datetime, step: timedelta, prefix: str = "e") -> list[NetworkEvent]:
    return [
        network_event(f"{prefix}{i:03d}", f"Møde {prefix}{i:03d}", first + i * step)
        for i in range(count)
    ]


def test_the_coming_weeks_show_four_weeks_when_they_hold_fifty_events_or_more():
    soon = many(60, NOW + timedelta(hours=1), timedelta(hours=6))  # 15 days
    later = many(5, NOW + timedelta(days=PAGE_DAYS + 1), timedelta(days=1), prefix="l")
    assert len(titles(index(soon + later))) == 60


def test_the_coming_weeks_show_fifty_events_when_four_weeks_hold_fewer():
    assert PAGE_EVENTS == 50
    soon = many(10, NOW + timedelta(days=1), timedelta(days=1))
    later = many(60, NOW + timedelta(days=PAGE_DAYS + 1), timedelta(days=1), prefix="l")
    past = many(3, NOW - timedelta(days=10), timedelta(days=1), prefix="p")
    shown = titles(index(past + soon + later))
    assert shown == [f"Møde e{i:03d}" for i in range(10)] + [f"Møde l{i:03d}" for i in range(40)]


def test_a_month_shows_the_events_that_overlap_it_past_ones_too():
    spanning = network_event("camp", "Lejr", date(2027, 1, 30), end=date(2027, 2, 2))
    past = network_event("autumn", "Efterårsmøde", datetime(2026, 10, 8, 16, tzinfo=UTC))
    # 23:30 on 31 January in Copenhagen is January, though it is February in no zone but UTC+1
    late = network_event("late", "Sen koncert", datetime(2027, 1, 31, 22, 30, tzinfo=UTC))
    events = [past, *EVENTS, spanning, late]
    assert titles(index(events, month="2027-02")) == [
        "Lejr",
        "Sen koncert",
        "Foredrag",
        "Loppemarked",
    ]
    assert titles(index(events, month="2027-01")) == ["Koncert", "Lejr", "Sen koncert"]
    assert titles(index(events, month="2026-10")) == ["Efterårsmøde"]
    empty = index(events, month="2027-05", lang="en")
    assert titles(empty) == [] and "No events this month." in empty.text_content()


def month_links(page: lxml.html.HtmlElement) -> dict[str, str]:
    return {
        a.text_content().strip(" ←→"): a.get("href")
        for a in page.xpath("//nav[@class='months']//a")
    }


def test_the_month_links_keep_the_filter_the_search_the_language_and_embed():
    page = index(
        month="2027-02",
        q="foredrag",
        filters={"source": ["beta"], "category": ["klima"]},
        lang="en",
        embed=True,
    )
    keep = "source=beta&category=klima&q=foredrag"
    assert month_links(page) == {
        "January 2027": f"/?{keep}&month=2027-01&lang=en&embed=1",
        "March 2027": f"/?{keep}&month=2027-03&lang=en&embed=1",
        "The coming weeks": f"/?{keep}&lang=en&embed=1",
    }
    assert page.xpath("//nav[@class='months']//*[@aria-current='page']")[0].text == "February 2027"
    assert titles(page) == ["Foredrag"]
    (form,) = page.xpath("//form")
    assert form.xpath(".//input[@type='hidden' and @name='month']")[0].get("value") == "2027-02"


def test_the_coming_weeks_link_the_months_around_now():
    page = index(lang="da")
    assert month_links(page) == {
        "oktober 2026": "/?month=2026-10&lang=da",
        "december 2026": "/?month=2026-12&lang=da",
    }
    assert (
        page.xpath("//nav[@class='months']//*[@aria-current='page']")[0].text == "De kommende uger"
    )
    assert not page.xpath("//input[@name='month']")


def test_the_language_switch_keeps_the_month_and_the_search():
    page = index(lang="da", month="2027-02", q="loppe")
    (link,) = page.xpath("//nav[@class='switch']//a")
    assert link.get("href") == "/?q=loppe&month=2027-02&lang=en"


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("koncert", ["Koncert"]),
        ("  FOREDRAG ", ["Foredrag"]),
        ("beta klub", ["Foredrag"]),  # an organiser
        ("foreningshuset loppe", ["Loppemarked"]),  # the place and the title
        ("", ["Koncert", "Foredrag", "Loppemarked"]),
    ],
)
def test_the_search_finds_by_title_place_and_organiser(q, expected):
    assert titles(index(q=q)) == expected


def test_the_search_field_is_labelled_and_keeps_the_search():
    page = index(q="kon<cert", lang="en")
    (field,) = page.xpath("//form//input[@name='q']")
    assert field.get("type") == "search" and field.get("value") == "kon<cert"
    (label,) = page.xpath(f"//form//label[@for='{field.get('id')}']")
    assert label.text == "Search"
    assert "No upcoming events match the search." in page.text_content()
    danish = index(q="ingenting")
    assert "Ingen kommende arrangementer passer til søgningen." in danish.text_content()
    # the search narrows the list, not the subscription, and says so
    assert danish.xpath("//input[@id='calendar-url']")[0].get("value").endswith("/calendar.ics")
    assert "Søgningen afgrænser listen, ikke abonnementet." in danish.text_content()
    assert "Abonnementet følger dit filter." not in danish.text_content()
    assert danish.xpath("//form//a[@href='/?lang=da']")  # clear the search


def test_a_search_inside_a_filter_narrows_both():
    page = index(q="loppemarked", filters={"category": ["klima"]}, month="2027-02")
    assert titles(page) == ["Loppemarked"]
    assert titles(index(q="koncert", filters={"category": ["klima"]})) == []


def test_the_categories_offered_come_from_every_given_event():
    page = index(month="2027-01")
    assert titles(page) == ["Koncert"]
    values = [o.get("value") for o in page.xpath("//select[@id='filter-category']/option")]
    assert values == ["", "klima", "kultur"]


#: forty member ids, long as real ones are ("frivilligcenter-nordvest-...")
LONG = tuple(f"frivilligcenter-{i:02d}-nordvestjylland-og-omegn" for i in range(40))
LONG_SETTINGS = replace(
    SETTINGS, sources=tuple(Source(id=s, name=s, url=f"/{s}.ics") for s in LONG)
)


def subscribe_links(page: lxml.html.HtmlElement) -> list[str]:
    """Every subscribe link the page offers, the relative ones made absolute."""
    base = SETTINGS.network.base_url
    found = [
        *page.xpath("//section[@class='subscribe']//a/@href"),
        *page.xpath("//section[@class='subscribe']//input/@value"),
        *page.xpath("//head/link[@rel='alternate']/@href"),
        *page.xpath(
            "//footer//a[contains(@href, 'calendar.ics') or contains(@href, 'feed.atom')]/@href"
        ),
    ]
    return [base + link if link.startswith("/") else link for link in found]


def test_a_long_selection_goes_by_a_saved_key_under_256_characters():
    chosen = {"source": LONG, "category": (), "status": ()}
    assert links_too_long(SETTINGS.network.base_url, chosen)
    assert MAX_LINK == 255

    def render(saved):
        text = render_index(
            EVENTS,
            LONG_SETTINGS,
            lang="en",
            now=NOW,
            filters={"source": LONG},
            saved=saved,
            embed=True,
        )
        return lxml.html.fromstring(text)

    assert max(len(link) for link in subscribe_links(render(None))) > MAX_LINK
    links = subscribe_links(render("k7Qx2"))
    assert len(links) == 6 and all(len(link) <= MAX_LINK for link in links), links
    assert set(links) == {
        "webcal://events.example/calendar.ics?f=k7Qx2",
        "https://events.example/calendar.ics?f=k7Qx2",
        "https://events.example/calendar.ics?f=k7Qx2&cancelled=prefix",
        "https://events.example/feed.atom?f=k7Qx2",
    }
    # the page itself still lists the selection, and its form still shows it
    page = render("k7Qx2")
    assert len(page.xpath("//select[@id='filter-source']/option[@selected]")) == 40


def test_a_short_selection_keeps_its_values_in_the_links():
    base = SETTINGS.network.base_url
    assert not links_too_long(base, {"source": ("alpha", "beta"), "category": ("klima",)})
    assert not links_too_long(base, Selection(sources=frozenset({"alpha"})))
    # the longest link counts: Google's, with its cancelled=prefix
    values = {"source": ("x" * 195,)}
    assert len(f"{base}/calendar.ics{feed_query(values, None)}") == 238
    assert len(f"{base}/calendar.ics{feed_query(values, None, 'prefix')}") == 255
    assert not links_too_long(base, values)
    assert links_too_long(base, {"source": ("x" * 196,)})


def test_feed_query():
    chosen = {"source": ("alpha", "beta"), "category": ("kultur og fest",), "status": ()}
    assert feed_query(chosen, None) == "?source=alpha&source=beta&category=kultur+og+fest"
    assert feed_query(chosen, None, "prefix").endswith("&cancelled=prefix")
    assert feed_query(chosen, "k7Qx2") == "?f=k7Qx2"
    assert feed_query(chosen, "k7Qx2", "prefix") == "?f=k7Qx2&cancelled=prefix"
    assert feed_query({}, None) == ""


# -- schema.org Event JSON-LD on an event's page ----------------------------------------------


def json_ld(item: NetworkEvent) -> dict:
    page = lxml.html.fromstring(render_event_page(item, SETTINGS, [], lang="da"))
    (script,) = page.xpath("//script")
    assert script.get("type") == "application/ld+json"
    return json.loads(script.text)


def test_an_event_page_carries_schema_org_json_ld():
    item = network_event(
        "talk",
        "Foredrag",
        FEB,
        source="beta",
        description="Om vand.\nOg klima. " + "Meget mere. " * 60,
        organisers=("Beta Klub", "Alpha Forening"),
        source_ids=("beta", "alpha"),
        copies=(("beta", "Foredrag", "https://beta.example/foredrag"), ("alpha", "F", None)),
        previous_start=JAN,
        status=Status.RESCHEDULED,
    )
    data = json_ld(item)
    description = data.pop("description")
    assert data == {
        "@context": "https://schema.org",
        "@type": "Event",
        "name": "Foredrag",
        "startDate": "2027-02-04T18:00:00+01:00",
        "endDate": "2027-02-04T20:00:00+01:00",
        "eventStatus": "https://schema.org/EventRescheduled",
        "previousStartDate": "2027-01-14T13:00:00+01:00",
        "location": {"@type": "Place", "name": "Foreningshuset", "address": "Foreningshuset"},
        "organizer": [
            {"@type": "Organization", "name": "Beta Klub", "url": "https://beta.example/foredrag"},
            {"@type": "Organization", "name": "Alpha Forening"},
        ],
        "url": "https://events.example/events/talk",
    }
    assert description.startswith("Om vand. Og klima. Meget mere.")
    assert description.endswith("…") and len(description) <= 300


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.SCHEDULED, "EventScheduled"),
        (Status.TENTATIVE, "EventScheduled"),
        (Status.CANCELLED, "EventCancelled"),
        (Status.POSTPONED, "EventPostponed"),
    ],
)
def test_the_json_ld_event_status(status, expected):
    data = json_ld(network_event("x", "X", FEB, status=status))
    assert data["eventStatus"] == f"https://schema.org/{expected}"
    assert "previousStartDate" not in data and "description" not in data


def test_an_all_day_event_has_dates_in_json_ld():
    data = json_ld(network_event("market", "Loppemarked", date(2027, 2, 6), location=""))
    assert (data["startDate"], data["endDate"]) == ("2027-02-06", "2027-02-07")
    assert "location" not in data


@pytest.mark.parametrize(
    "title",
    [
        "</script><script>alert(1)</script>",
        "<!--<script>",
        "</SCRIPT ><img src=x onerror=alert(1)>",
        "a & b ' \" \u2028 \\u003c",
    ],
)
def test_a_hostile_title_stays_inside_the_json_ld(title):
    item = network_event("evil", title, FEB, location="<!-- </script>", description="</script>")
    text = render_event_page(item, SETTINGS, [], lang="da")
    block = text.split('<script type="application/ld+json">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block and ">" not in block and "&" not in block
    data = json.loads(block)
    assert data["name"] == title and data["location"]["name"] == "<!-- </script>"
    assert data["description"] == "</script>"
    assert len(lxml.html.fromstring(text).xpath("//script")) == 1
