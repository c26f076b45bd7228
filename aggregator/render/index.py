"""The view model of the embeddable page (GET /): the coming weeks or one month of events, the
filter form with its search, month navigation, the subscribe block. Pure: no I/O, no clock
read (pass `now`).

The handler gives a superset of the events (the store's window for the period, or all of
them); the view picks precisely what is shown (`shown_events`), so its rules live here once.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from urllib.parse import urlencode

from aggregator.i18n import gettext_in
from aggregator.model import MergedEvent, NetworkEvent, Settings
from aggregator.normalise import instant
from aggregator.render.dates import local_end, local_start, month_heading
from aggregator.render.views import (
    EventView,
    Page,
    event_view,
    language_links,
    link_query,
    network_zone,
)
from aggregator.search import MAX_QUERY, matches, query_words
from aggregator.selection import Selection, page_filters
from aggregator.windows import encode_cursor

#: links on the embedded page open in the embedding page's window, not inside the iframe
#: (the event page is a full page) and not in a new tab (which surprises keyboard and screen
#: reader users and needs allow-popups in a sandboxed iframe; _top keeps the back button)
EMBED_TARGET = "_top"
#: the default page shows the coming 4 weeks, or the first PAGE_EVENTS events when that is
#: more: a big network's whole horizon is a page of tens of megabytes
PAGE_DAYS = 28
PAGE_EVENTS = 50
#: but never more than this many on one page (a network of 1,000 members has tens of
#: thousands of events in 4 weeks): a "later events" link goes on after the last shown
PAGE_MAX = 100
#: the longest subscribe link the page offers: Google Calendar silently fails to add a URL of
#: 256 characters or more, so a longer selection goes by a saved key (?f=)
MAX_LINK = 255
#: ?month=YYYY-MM, ASCII digits only (\d would take any script's digits)
MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
#: the years ?month= may name: outside them a date is nobody's calendar, or overflows
YEARS = range(1970, 2201)


@dataclass(frozen=True)
class Period:
    """What the page shows: the coming weeks (month None) or one month, in the network's zone."""

    #: aware; the first instant shown (now, or local midnight of the month's first day)
    start: datetime
    #: aware, exclusive: now + PAGE_DAYS, or local midnight of the next month's first day
    end: datetime
    #: "2027-03" when a month is asked for
    month: str | None
    #: "YYYY-MM" of the months before and after (the asked month, or now's local month);
    #: None beyond YEARS (a link there would be a 400)
    previous_month: str | None
    next_month: str | None


def page_period(now: datetime, tz: tzinfo, month: str | None) -> Period:
    """The period `?month=` asks for (None or "": the coming PAGE_DAYS days from `now`).

    Raises ValueError naming the value when `month` is not YYYY-MM with a month 01-12 in a
    year of YEARS: the handler answers 400 with it."""
    if not month:
        local = now.astimezone(tz)
        year, number = local.year, local.month
        return Period(
            start=now,
            end=now + timedelta(days=PAGE_DAYS),
            month=None,
            previous_month=_month_key(*_shift(year, number, -1)),
            next_month=_month_key(*_shift(year, number, 1)),
        )
    found = MONTH.fullmatch(month)
    if found is None:
        raise ValueError(f"month={month!r}: use YYYY-MM, e.g. 2027-03")
    year, number = int(found[1]), int(found[2])
    if not 1 <= number <= 12:
        raise ValueError(f"month={month!r}: the month must be 01 to 12")
    if year not in YEARS:
        raise ValueError(f"month={month!r}: the year must be {YEARS.start} to {YEARS.stop - 1}")
    after = _shift(year, number, 1)
    return Period(
        start=datetime(year, number, 1, tzinfo=tz),
        end=datetime(*after, 1, tzinfo=tz),
        month=_month_key(year, number),
        previous_month=_month_key(*_shift(year, number, -1)),
        next_month=_month_key(*after),
    )


def _shift(year: int, month: int, by: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + by
    return index // 12, index % 12 + 1


def _month_key(year: int, month: int) -> str | None:
    """ "YYYY-MM", or None for a month of a year outside YEARS."""
    return f"{year:04d}-{month:02d}" if year in YEARS else None


def _month_date(key: str) -> date:
    return date(int(key[:4]), int(key[5:7]), 1)


def shown_events(
    events: Iterable[MergedEvent],
    period: Period,
    now: datetime,
    tz: tzinfo,
) -> list[MergedEvent]:
    """Of `events` (already filtered and searched), what the page shows, by local start.

    The coming weeks: the events not over (local end >= now) that start before period.end;
    when fewer than PAGE_EVENTS, the first PAGE_EVENTS not over instead. A month: the events
    that overlap [period.start, period.end) (one of no length that starts in it too)."""
    picked: list[tuple[datetime, str, MergedEvent]] = []
    within = 0
    for event in events:
        start, end = local_start(event, tz), local_end(event, tz)
        if period.month is None:
            if end >= now:
                picked.append((start, event.id, event))
                within += start < period.end
        elif start < period.end and (end > period.start or start >= period.start):
            picked.append((start, event.id, event))
    if period.month is None:
        if within >= PAGE_EVENTS:
            picked = [entry for entry in picked if entry[0] < period.end]
        else:
            picked = heapq.nsmallest(PAGE_EVENTS, picked, key=lambda entry: entry[:2])
    picked.sort(key=lambda entry: entry[:2])
    return [event for _start, _id, event in picked]


@dataclass(frozen=True)
class Month:
    """The events of one month, under its heading ('januar 2027'), `id` its anchor."""

    id: str
    heading: str
    events: list[EventView]


@dataclass(frozen=True)
class Option:
    """An <option> of a filter."""

    value: str
    label: str
    selected: bool


@dataclass(frozen=True)
class MonthLink:
    """A link of the month navigation: where, and the month it leads to in words."""

    href: str
    label: str


@dataclass(frozen=True, kw_only=True)
class IndexPage(Page):
    """/: what is shown, the filter as chosen, and where to subscribe to it."""

    #: where the page's links open: EMBED_TARGET when embedded, else the same window
    target: str | None
    months: tuple[Month, ...]
    #: a filter is chosen: the subscription follows it; offer to clear it
    filtered: bool
    #: a search is made: it narrows the list, not the subscription; offer to clear it
    searched: bool
    source_options: tuple[Option, ...]
    category_options: tuple[Option, ...]
    multiple_sources: bool
    multiple_categories: bool
    clear_href: str
    #: the search as typed (kept in the form); '' when none
    q: str
    #: ?month= as asked, kept by the form; None for the coming weeks
    month: str | None
    #: what the list shows in words: 'De kommende uger' or 'marts 2027'
    period_label: str
    previous: MonthLink
    next: MonthLink
    #: back to the coming weeks, from a month; None when showing them
    upcoming_href: str | None
    #: the events after the last shown, when the period holds more than PAGE_MAX
    later_href: str | None
    #: from the start of the period again, when this page goes on after an event
    first_href: str | None
    #: what to say when nothing is shown
    empty: str
    #: the subscription, with the filter: https, webcal, and Google's (cancelled as a prefix)
    calendar_url: str
    webcal_url: str
    google_url: str
    atom_href: str
    ics_href: str


def index_page(
    events: Iterable[NetworkEvent],
    settings: Settings,
    *,
    lang: str,
    now: datetime,
    filters: Mapping[str, Sequence[str]] | Selection | None = None,
    embed: bool = False,
    month: str | None = None,
    q: str = "",
    saved: str | None = None,
    after: str | None = None,
) -> IndexPage:
    """The page at /: the coming weeks (or `month`, "YYYY-MM") of the events that the filter
    admits and the search `q` finds, by month; the filter form, month links, subscribe block.

    `events`: sorted by start, a superset of what is shown (shown_events picks). `filters`:
    the Selection the feeds use (web.py reads it from the query), or plain source and category
    values. `embed` (?embed=1) leaves out the header, language switch and footer, for an
    iframe; its links open in the embedding window (EMBED_TARGET). `saved`: the key the
    handler stored this selection under (when links_too_long), which the subscribe links
    carry instead of the selection. `after`: this page goes on after an event (the cursor
    of the previous page's later_href; the handler gives only the events after it). Raises
    ValueError for a malformed `month`.
    """
    network = settings.network
    tz = network_zone(network)
    _ = gettext_in(lang, "pages")
    period = page_period(now, tz, month)
    selection, chosen = _selection(filters)
    words = query_words(q)
    q = q.strip()[:MAX_QUERY]  # as searched: the links and the form keep no more
    categories: dict[str, None] = {}
    found: list[MergedEvent] = []
    for item in events:
        event = item.event
        categories.update(dict.fromkeys(event.categories))
        if selection.admits(event) and matches(event, words):
            found.append(event)
    shown = shown_events(found, period, now, tz)
    later = None
    if len(shown) > PAGE_MAX:  # the first PAGE_MAX in the store's order, shown by local start
        first = sorted(shown, key=_stored_order)[:PAGE_MAX]
        later = encode_cursor(first[-1].start, first[-1].id)
        kept = {event.id for event in first}
        shown = [event for event in shown if event.id in kept]
    filtered = any(chosen.values())

    def here(**changed) -> str:
        """This page with the same filter and search, in this language, embedded or not."""
        keep = {"lang": lang, "embed": embed, "q": q, "month": period.month, **changed}
        return "/" + link_query(chosen, **keep)

    links = subscription(network.base_url, chosen, saved)
    return IndexPage(
        lang=lang,
        network=network,
        switch=language_links(network, lang, lambda other: here(lang=other, embed=False)),
        home_href="/" + link_query({}, lang=lang),
        embed=embed,
        target=EMBED_TARGET if embed else None,
        months=_months(shown, lang, tz),
        filtered=filtered,
        searched=bool(words),
        source_options=options(
            [(s.id, s.name) for s in settings.sources], chosen["source"], casefold=False
        ),
        category_options=options([(c, c) for c in categories], chosen["category"], casefold=True),
        multiple_sources=len(chosen["source"]) > 1,
        multiple_categories=len(chosen["category"]) > 1,
        clear_href="/" + link_query({}, lang=lang, embed=embed, month=period.month),
        q=q,
        month=period.month,
        period_label=(
            month_heading(_month_date(period.month), lang)
            if period.month
            else _("The coming weeks")
        ),
        previous=_month_link(here, period.previous_month, lang),
        next=_month_link(here, period.next_month, lang),
        upcoming_href=here(month=None) if period.month else None,
        later_href=here(after=later) if later else None,
        first_href=here() if after else None,
        empty=_empty(_, month=period.month is not None, searched=bool(words), filtered=filtered),
        **links,
    )


def _month_link(here, month: str | None, lang: str) -> MonthLink | None:
    """The link to `month` (None: none, beyond the months a page shows)."""
    if month is None:
        return None
    return MonthLink(here(month=month), month_heading(_month_date(month), lang))


def _stored_order(event: MergedEvent) -> tuple[datetime, str]:
    """The order of the store and of a cursor: the start as an instant (an all-day event's at
    midnight UTC), then the id."""
    return instant(event.start), event.id


def _empty(_, *, month: bool, searched: bool, filtered: bool) -> str:
    """Why the list is empty, in the page's language."""
    if searched:
        return (
            _("No events this month match the search.")
            if month
            else _("No upcoming events match the search.")
        )
    if filtered:
        return (
            _("No events this month match the filter.")
            if month
            else _("No upcoming events match the filter.")
        )
    return _("No events this month.") if month else _("No upcoming events.")


def feed_query(
    chosen: Mapping[str, Sequence[str]], saved: str | None, cancelled: str | None = None
) -> str:
    """The query of a subscribe link: '?f=KEY' for a saved selection, else the selection's own
    values ('?source=a&category=b'); '&cancelled=...' when given. Never lang or embed: a feed
    is the same in every language."""
    if saved:
        return "?" + urlencode([("f", saved), *([("cancelled", cancelled)] if cancelled else [])])
    return link_query(chosen, cancelled=cancelled)


def subscription(
    base_url: str, chosen: Mapping[str, Sequence[str]], saved: str | None = None
) -> dict[str, str]:
    """The subscribe links of the page: calendar_url, webcal_url, google_url (cancelled events
    kept, as a prefix: Google deletes CANCELLED ones) and the atom and ics hrefs (relative)."""
    base = base_url.rstrip("/")
    query = feed_query(chosen, saved)
    calendar = f"{base}/calendar.ics{query}"
    return {
        "calendar_url": calendar,
        "webcal_url": _webcal(calendar),
        "google_url": f"{base}/calendar.ics{feed_query(chosen, saved, 'prefix')}",
        "atom_href": f"/feed.atom{query}",
        "ics_href": f"/calendar.ics{query}",
    }


def links_too_long(base_url: str, chosen: Mapping[str, Sequence[str]] | Selection) -> bool:
    """Whether a subscribe link with the selection's own values would be longer than
    MAX_LINK (the atom and ics hrefs counted as absolute): then the handler saves the
    selection under a short key and passes it as `saved`."""
    values = chosen.parameters() if isinstance(chosen, Selection) else chosen
    base = base_url.rstrip("/")
    links = subscription(base_url, values)
    absolute = {
        key: base + value if value.startswith("/") else value for key, value in links.items()
    }
    return max(len(link) for link in absolute.values()) > MAX_LINK


def _selection(
    filters: Mapping[str, Sequence[str]] | Selection | None,
) -> tuple[Selection, dict[str, tuple[str, ...]]]:
    """The selection, and its values for links and the form: the same rule as the filtered
    feeds, so the list and its subscription agree."""
    if isinstance(filters, Selection):
        return filters, filters.parameters()
    chosen = page_filters(filters)
    selection = Selection(
        sources=frozenset(chosen.get("source", ())),
        categories=frozenset(c.casefold() for c in chosen.get("category", ())),
    )
    return selection, chosen


def _months(shown: Sequence[MergedEvent], lang: str, tz: tzinfo) -> tuple[Month, ...]:
    """The events under the heading of their (local) month; the year goes without saying."""
    months: list[Month] = []
    for event in shown:
        local = local_start(event, tz)
        anchor = f"m-{local:%Y-%m}"
        if not months or months[-1].id != anchor:
            months.append(Month(anchor, month_heading(local.date(), lang), []))
        months[-1].events.append(event_view(event, lang, tz, year=False))
    return tuple(months)


def options(
    pairs: Iterable[tuple[str, str]], selected: Sequence[str], *, casefold: bool
) -> tuple[Option, ...]:
    """<option>s: each value once (categories ignoring case), a selected value never lost."""
    fold = str.casefold if casefold else (lambda value: value)
    chosen = {fold(value) for value in selected}
    found: dict[str, tuple[str, str]] = {}
    for value, text in [*pairs, *((value, value) for value in selected)]:
        found.setdefault(fold(value), (value, text))
    values = list(found.values())
    if casefold:
        values.sort(key=lambda pair: pair[1].casefold())
    return tuple(Option(value, text, fold(value) in chosen) for value, text in values)


def _webcal(url: str) -> str:
    """The webcal:// form of an http(s) URL: calendar apps open it as a subscription."""
    scheme, sep, rest = url.partition("://")
    return f"webcal://{rest}" if sep and scheme in ("http", "https") else url
