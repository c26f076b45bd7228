"""The pages (render/html.py and their view models): the embeddable bilingual page and an
event's page, rendered from plain values; the page's language and filters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

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
from aggregator.render.sources import SourceHealth
from aggregator.render.views import http_link
from aggregator.request import choose_language
from aggregator.selection import page_filters
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
    (link,) = page.xpath("//nav//a")
    assert link.get("href") == "/?category=klima&lang=en" and link.text == "English"


def test_the_full_page_has_one_h1_and_its_chrome():
    page = index()
    assert [h.text for h in page.xpath("//h1")] == ["Testnetværket"]
    assert page.xpath("//header") and page.xpath("//footer")


def test_embed_mode_has_no_chrome_and_opens_links_outside_the_iframe():
    page = index(embed=True)
    assert not page.xpath("//header | //footer | //nav")
    assert len(page.xpath("//h1")) == 1  # for screen readers, visually hidden
    assert titles(page) == ["Koncert", "Foredrag", "Loppemarked"]
    assert page.xpath("//section[@class='subscribe']//a[starts-with(@href, 'webcal://')]")
    assert all(a.get("target") == "_top" for a in page.xpath("//main//a"))
    # filtering stays inside the iframe, in embed mode
    assert page.xpath("//form//input[@name='embed' and @value='1']")
    assert page.xpath("//form")[0].get("target") is None


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
    assert "<script" not in text and "<img" not in text and "<b>" not in text
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
