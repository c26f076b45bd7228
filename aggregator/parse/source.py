"""A fetched source -> what it says: an iCalendar feed, or an RSS/Atom feed and the pages its
items link. The one entry point of the parse stage for a refresh and a check alike.

    read_source(result, source, settings, now, fetch_page=..., parse=..., kept=...)
        iCalendar: parse(parse_feed)                       -> SourceRead(feed)
        RSS/Atom:  parse(read_feed) -> items
                   each item's page: kept, or fetch_page + parse(read_page) (and its .ics)
                   parse(item_events)                     -> SourceRead(feed, pages read)

Every read of member content goes through `parse` (worker.parse, or worker.parse_check for
a check): a worker process on a budget (rule 10). Every linked address goes through
`fetch_page` (the fetch stage's guard). Nothing is stored here: the pages read anew come
back as data, for the store to keep in the cycle's one write.
"""

from __future__ import annotations

import codecs
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import NamedTuple

from aggregator.errors import ParseError, Refused
from aggregator.fetch import is_local
from aggregator.model import (
    CachedPage,
    FeedItem,
    FetchOutcome,
    FetchResult,
    FoundEvent,
    Limits,
    PageData,
    ParsedFeed,
    Problem,
    Settings,
    Source,
    SourceKind,
    SourceRead,
    Validators,
)
from aggregator.parse.feeds import item_events, read_feed
from aggregator.parse.ical import parse_calendar
from aggregator.parse.pages import event_from_ics, read_page
from aggregator.problems import problem

#: reads member content on a budget: worker.parse, or worker.parse_check for a check
Parse = Callable[..., Awaitable]
#: fetches an address found in member content through the guard: (url, validators) ->
#: FetchResult; a check's fetcher raises Refused for an address inside our network
FetchPage = Callable[[str, Validators | None], Awaitable[FetchResult]]


def decode_body(body: bytes, charset: str | None = None) -> tuple[str, list[Problem]]:
    """Text from bytes: the header's charset, else a BOM, else UTF-8, else Windows-1252."""
    warnings: list[Problem] = []
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if body.startswith(bom):
            return body[len(bom) :].decode(encoding, errors="replace"), warnings
    if charset:
        try:
            return body.decode(charset), warnings
        except (LookupError, ValueError):  # an unknown name; bytes it cannot decode (a
            # UnicodeError); a name that is no text codec at all ('idna', 'undefined', a NUL)
            warnings.append(problem("wrong-charset", charset=charset))
    try:
        return body.decode("utf-8"), warnings
    except UnicodeDecodeError:
        warnings.append(problem("not-utf8"))
        return body.decode("cp1252", errors="replace"), warnings


def sniff_kind(text: str) -> SourceKind | None:
    head = text.lstrip()[:2048].lower()
    if head.startswith("begin:vcalendar"):
        return SourceKind.ICAL
    if head.startswith("<") and any(tag in head for tag in ("<rss", "<feed", "<rdf:rdf")):
        return SourceKind.RSS
    return None


def feed_kind(result: FetchResult, source: Source) -> SourceKind:
    """ICAL or RSS: as configured, or sniffed from the body for `kind: auto`."""
    if source.kind is not SourceKind.AUTO:
        return source.kind
    head = result.body[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    try:
        text = head.decode("utf-8", errors="ignore")
    except LookupError:  # pragma: no cover
        text = ""
    return sniff_kind(text) or SourceKind.ICAL


def parse_feed(
    result: FetchResult, source: Source, *, network_zone: str, now: datetime, limits: Limits
) -> ParsedFeed:
    """Read one fetched iCalendar feed. Raises ParseError when the body is not one at all.

    RSS and Atom sources need their linked pages too: read_source reads them.
    """
    text, warnings = decode_body(result.body, result.charset)
    parsed = parse_calendar(
        text,
        url=source.url,
        source_id=source.id,
        floating_zone=source.timezone or network_zone,
        network_zone=network_zone,
        now=now,
        limits=limits,
    )
    if warnings:
        parsed = ParsedFeed(parsed.occurrences, tuple(warnings) + parsed.warnings, parsed.series)
    return parsed


async def read_source(
    result: FetchResult,
    source: Source,
    settings: Settings,
    now: datetime,
    *,
    fetch_page: FetchPage,
    parse: Parse,
    kept: Mapping[str, CachedPage] | None = None,
) -> SourceRead:
    """Read a fetched source: an iCalendar feed, or an RSS/Atom feed with the pages its
    items link (`kept`: those read in earlier cycles). Raises ParseError when the feed cannot
    be read at all; a page that cannot be read is a warning."""
    if feed_kind(result, source) is SourceKind.RSS:
        return await _read_rss(result, source, settings, now, fetch_page, parse, kept or {})
    read = partial(
        parse_feed,
        result,
        source,
        network_zone=settings.network.timezone,
        now=now,
        limits=settings.limits,
    )
    # member content: read in a worker process, on a budget (rule 10)
    return SourceRead(await parse(read, url=source.url, limits=settings.limits))


class _Page(NamedTuple):
    """A linked page to use: read now (with its validators), or kept from before."""

    data: PageData
    validators: Validators


class _Unread(NamedTuple):
    """A linked page that could not be read: its problem's code, and why."""

    code: str
    reason: str


class _Pages(NamedTuple):
    """The pages an RSS feed's items link: by URL, those read anew, and what went wrong."""

    found: dict[str, PageData]
    fresh: list[CachedPage]
    warnings: list[Problem]


async def _read_rss(
    result: FetchResult,
    source: Source,
    settings: Settings,
    now: datetime,
    fetch_page: FetchPage,
    parse: Parse,
    kept: Mapping[str, CachedPage],
) -> SourceRead:
    """An RSS/Atom feed's items, with the pages they link."""
    zone_name = source.timezone or settings.network.timezone
    languages = ((source.language,) if source.language else ()) + settings.network.languages
    limits = settings.limits
    items, warnings = await parse(
        partial(read_feed, result.body, result.content_type, url=source.url, zone_name=zone_name),
        url=source.url,
        limits=limits,
    )
    pages = await _read_pages(items, kept, source, zone_name, now, limits, fetch_page, parse)
    parsed = await parse(
        partial(
            item_events,
            items,
            pages.found,
            source=source,
            zone_name=zone_name,
            languages=languages,
            now=now,
            limits=limits,
        ),
        url=source.url,
        limits=limits,
    )
    warnings = (*warnings, *pages.warnings, *parsed.warnings)
    return SourceRead(ParsedFeed(parsed.occurrences, warnings, parsed.series), tuple(pages.fresh))


async def _read_pages(
    items: list[FeedItem],
    kept: Mapping[str, CachedPage],
    source: Source,
    zone_name: str,
    now: datetime,
    limits: Limits,
    fetch_page: FetchPage,
    parse: Parse,
) -> _Pages:
    """The pages the items link. A page is read again only when its item changed (new
    title, text or link), at most `limits.max_pages` per cycle; the rest use what was kept,
    or wait for the next cycle."""
    pages = _Pages({}, [], [])
    budget = limits.max_pages
    for item in items:
        if item.structured is not None or not item.link or is_local(item.link):
            continue
        if limits.max_pages == 0:  # pages switched off
            continue
        cached = kept.get(item.link)
        if cached is not None and cached.item_fingerprint == item.fingerprint:
            pages.found[item.link] = cached.page
            continue
        if budget <= 0:
            if cached is not None:
                pages.found[item.link] = cached.page
            pages.warnings.append(problem("page-waits", title=item.title))
            continue
        budget -= 1
        page = await _read_page(fetch_page, item.link, cached, zone_name, now, limits, parse)
        if isinstance(page, _Unread):
            pages.warnings.append(problem(page.code, title=item.title, reason=page.reason))
            if cached is not None:
                pages.found[item.link] = cached.page
            continue
        pages.found[item.link] = page.data
        pages.fresh.append(CachedPage(page.data, item.fingerprint, now, page.validators))
    return pages


async def _read_page(
    fetch_page: FetchPage,
    url: str,
    cached: CachedPage | None,
    zone_name: str,
    now: datetime,
    limits: Limits,
    parse: Parse,
) -> _Page | _Unread:
    """A linked page (and the .ics it links, when it has no event data), or what went wrong.

    Both addresses come from member content: fetched only when public or on the source's
    own host (the fetcher's guard), and read in a worker process on a budget.
    """
    try:
        result = await fetch_page(url, cached.validators if cached else None)
    except Refused as refused:  # /check: a page inside our network is skipped, not fetched
        return _Unread("page-not-read", refused.message)
    if result.outcome is FetchOutcome.NOT_MODIFIED and cached is not None:
        return _Page(cached.page, cached.validators)
    if result.outcome is not FetchOutcome.OK:
        return _Unread("page-unreadable", str(result.error or "not modified"))
    where = str(result.final_url or url)
    try:
        page = await parse(
            partial(_read_page_body, result.body, result.charset, where, zone_name),
            url=url,
            limits=limits,
            what="its page",
        )
    except ParseError as e:
        return _Unread("page-unreadable", e.message)
    if not page.events and page.ics_links:
        found = await _read_linked_ics(fetch_page, page.ics_links[0], zone_name, now, limits, parse)
        if found is not None:
            page = replace(page, events=(found,))
    return _Page(page, result.validators)


async def _read_linked_ics(
    fetch_page: FetchPage, link: str, zone_name: str, now: datetime, limits: Limits, parse: Parse
) -> FoundEvent | None:
    """The first event of the .ics file a page links, or None when it cannot be had."""
    try:
        ics = await fetch_page(link, None)
    except Refused:
        return None
    if ics.outcome is not FetchOutcome.OK:
        return None
    try:
        return await parse(
            partial(_read_ics_body, ics.body, ics.charset, link, zone_name, now),
            url=link,
            limits=limits,
            what="the .ics file its page links",
        )
    except ParseError:
        return None


def _read_page_body(body: bytes, charset: str | None, url: str, zone_name: str) -> PageData:
    """In a worker: a fetched event page's bytes -> PageData."""
    html, _ = decode_body(body, charset)
    return read_page(html, url, zone_name)


def _read_ics_body(
    body: bytes, charset: str | None, url: str, zone_name: str, now: datetime
) -> FoundEvent | None:
    """In a worker: the first event of a page's linked .ics file."""
    text, _ = decode_body(body, charset)
    return event_from_ics(text, url, zone_name, now)
