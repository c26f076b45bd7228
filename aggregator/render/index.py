"""The view model of the embeddable page (GET /): upcoming events by month, the filter form,
the subscribe block. Pure: no I/O, no clock read (pass `now`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from aggregator.model import MergedEvent, NetworkEvent, Settings
from aggregator.render.dates import local_end, local_start, month_heading
from aggregator.render.views import (
    EventView,
    Page,
    event_view,
    language_links,
    link_query,
    network_zone,
)
from aggregator.selection import Selection, page_filters

#: links on the embedded page open in the embedding page's window, not inside the iframe
#: (the event page is a full page) and not in a new tab (which surprises keyboard and screen
#: reader users and needs allow-popups in a sandboxed iframe; _top keeps the back button)
EMBED_TARGET = "_top"


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


@dataclass(frozen=True, kw_only=True)
class IndexPage(Page):
    """/: what is shown, the filter as chosen, and where to subscribe to it."""

    #: where the page's links open: EMBED_TARGET when embedded, else the same window
    target: str | None
    months: tuple[Month, ...]
    #: a filter is chosen: say so when nothing matches, offer to clear it
    filtered: bool
    source_options: tuple[Option, ...]
    category_options: tuple[Option, ...]
    multiple_sources: bool
    multiple_categories: bool
    clear_href: str
    #: the subscription, with the filter: https, webcal, and Google's (cancelled as a prefix)
    calendar_url: str
    webcal_url: str
    google_url: str
    atom_href: str
    ics_href: str


def index_page(
    events: Sequence[NetworkEvent],
    settings: Settings,
    *,
    lang: str,
    now: datetime,
    filters: Mapping[str, Sequence[str]] | Selection | None = None,
    embed: bool = False,
) -> IndexPage:
    """The page at /: upcoming events (end >= now) by month, filters, subscribe block.

    `filters` is the Selection the feeds use (web.py reads it from the query), or plain
    source and category values. `embed` (?embed=1) leaves out the header, language switch and
    footer, for an iframe; its links open in the embedding window (EMBED_TARGET).
    """
    network = settings.network
    tz = network_zone(network)
    selection, chosen = _selection(filters)
    upcoming = sorted(
        (item.event for item in events if local_end(item.event, tz) >= now),
        key=lambda event: (local_start(event, tz), event.id),
    )
    shown = [event for event in upcoming if selection.admits(event)]
    base = network.base_url.rstrip("/")
    feed_query = link_query(chosen)
    calendar = f"{base}/calendar.ics{feed_query}"
    return IndexPage(
        lang=lang,
        network=network,
        switch=language_links(network, lang, lambda other: "/" + link_query(chosen, lang=other)),
        home_href="/" + link_query({}, lang=lang),
        embed=embed,
        target=EMBED_TARGET if embed else None,
        months=_months(shown, lang, tz),
        filtered=any(chosen.values()),
        source_options=options(
            [(s.id, s.name) for s in settings.sources], chosen["source"], casefold=False
        ),
        category_options=options(
            [(c, c) for event in upcoming for c in event.categories],
            chosen["category"],
            casefold=True,
        ),
        multiple_sources=len(chosen["source"]) > 1,
        multiple_categories=len(chosen["category"]) > 1,
        clear_href="/" + link_query({}, lang=lang, embed=embed),
        calendar_url=calendar,
        webcal_url=_webcal(calendar),
        google_url=f"{base}/calendar.ics{link_query(chosen, cancelled='prefix')}",
        atom_href=f"/feed.atom{feed_query}",
        ics_href=f"/calendar.ics{feed_query}",
    )


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
