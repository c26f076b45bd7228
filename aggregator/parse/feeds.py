"""RSS and Atom (+ the event pages they link) -> FeedItems -> ParsedFeed.

For each item the event is found in this order, and the way is recorded on the occurrence:
1. structured data in the item: the RSS event module (ev:startdate), schema.org in the content;
2. the linked page (read by refresh through the fetch stage): JSON-LD or microdata, or an .ics;
3. dates written in the item's text, then in the page's text (parse/dates.py).
An item in which no date can be found is not an event; it becomes a warning. An item is
never dated by its publication date. feedparser dicts never leave this module.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import feedparser

from aggregator.errors import ParseError
from aggregator.model import FeedItem, FoundEvent, Limits, Occurrence, PageData, ParsedFeed, Source
from aggregator.normalise import (
    NEW_DATE,
    all_day_end,
    clean_line,
    clean_url,
    combine_status,
    fingerprint,
    instant,
    occurrence_key,
    text_status,
    title_status,
    to_utc,
    with_fingerprint,
)
from aggregator.parse.dates import find_dates
from aggregator.parse.pages import event_from_schema, html_to_text, structured_events
from aggregator.parse.warnings import Warnings
from aggregator.problems import Problem, problem

MAX_DESCRIPTION = 2000


def one_line(link: object) -> str:
    """A link a CMS broke across lines, joined: feedparser keeps the CR/LF inside <link>, and
    the indentation around a break is no part of the address."""
    return "".join(part.strip() for part in str(link or "").splitlines())


def read_feed(
    body: bytes, content_type: str | None, *, url: str, zone_name: str
) -> tuple[list[FeedItem], list[Problem]]:
    """The items of an RSS or Atom feed, each with its structured event if it has one.

    Links are cleaned here (parse time): an item's link is http(s) with no control characters,
    resolved against the feed's address when relative, or None (`javascript:` and the like).
    """
    # a local file has no Content-Type: say XML, or feedparser calls the feed suspect
    headers = {"content-type": content_type or "application/xml"}
    try:
        parsed = feedparser.parse(_safe_references(body), response_headers=headers)
    except Exception as e:  # noqa: BLE001 - feedparser's own bugs on odd input end one feed
        error = f"{type(e).__name__}: {e}"
        raise ParseError(url, problem("unreadable-feed", error=error)) from e
    bozo = parsed.get("bozo_exception")
    if not parsed.get("version") and not parsed.entries:
        found = problem("not-a-feed", error=bozo) if bozo else problem("no-feed-elements")
        raise ParseError(url, found)
    warnings = Warnings()
    benign = ("CharacterEncodingOverride", "NonXMLContentType")
    if parsed.get("bozo") and parsed.entries and type(bozo).__name__ not in benign:
        warnings.add(problem("malformed-xml", error=bozo))
    if not parsed.entries:
        warnings.add(problem("no-items"))
    items: dict[str, FeedItem] = {}
    for entry in parsed.entries:
        item = _item(entry, url, zone_name, warnings)
        if item.id in items:
            warnings.add(problem("duplicate-item", title=item.title, id=item.id))
            continue
        items[item.id] = item
    return list(items.values()), list(warnings.result())


#: a numeric character reference, as feedparser's loose parser reads one (";" optional)
_REFERENCE = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+))")


def _safe_references(body: bytes) -> bytes:
    """References to what is no character (a surrogate, past U+10FFFF) as U+FFFD: feedparser's
    loose parser raises on them (UnicodeEncodeError, ValueError, OverflowError), ending the
    whole feed. ASCII-compatible bodies only; for UTF-16 the error ends the feed in words."""

    def safe(match: re.Match) -> bytes:
        hexa, decimal = match.groups()
        digits = (hexa or decimal).lstrip(b"0")
        value = int(hexa, 16) if hexa else int(decimal) if len(digits) <= 8 else -1
        if value < 0 or value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            # decimal: what follows the digits taken is no digit, so it cannot join the number
            return b"&#65533"
        return match.group(0)

    return _REFERENCE.sub(safe, body) if b"&#" in body else body


def _item(entry: Mapping, feed_url: str, zone_name: str, warnings: Warnings) -> FeedItem:
    title = clean_line(entry.get("title")) or "(untitled)"
    written = clean_line(entry.get("link"))
    link = clean_url(one_line(entry.get("link")), base=feed_url) if written else None
    if written and link is None:
        warnings.add(problem("bad-link", title=title, link=written[:80]))
    contents = [c.get("value", "") for c in entry.get("content", []) if isinstance(c, Mapping)]
    html = "\n".join(contents) or entry.get("summary", "") or entry.get("description", "")
    text = html_to_text(html)
    published = _published(entry)
    structured = _rss_event_module(entry, zone_name)
    if structured is None and html:
        found = structured_events(html, link or "", zone_name)
        if found:
            structured = replace(found[0], found_by="structured", how=f"{found[0].how} in the item")
    # the identity is the link as written (as it always was), so that cleaning links never
    # re-keys an item
    item_id = clean_line(entry.get("id")) or written
    if not item_id:
        item_id = "item-" + hashlib.sha256(f"{title}\x1f{text[:200]}".encode()).hexdigest()[:16]
        warnings.add(problem("no-guid", title=title))
    terms = (clean_line(t.get("term")) for t in entry.get("tags", []) if isinstance(t, Mapping))
    categories = tuple(dict.fromkeys(term for term in terms if term))  # "\x9d" is no category
    return FeedItem(
        id=item_id,
        title=title,
        link=link,
        published=published,
        text=text,
        structured=structured,
        fingerprint=fingerprint({"title": title, "link": link, "text": text}),
        categories=categories,
    )


def _published(entry: Mapping) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), UTC)
    return None


def _rss_event_module(entry: Mapping, zone_name: str) -> FoundEvent | None:
    """The RSS 1.0 event module (ev:startdate, ev:enddate, ev:location), which feedparser
    keeps as ev_startdate and so on."""
    start = entry.get("ev_startdate")
    if not start:
        return None
    schema = {
        "@type": "Event",
        "startDate": start,
        "endDate": entry.get("ev_enddate"),
        "location": entry.get("ev_location"),
    }
    found = event_from_schema(schema, zone_name, "RSS event module")
    return replace(found, found_by="structured") if found else None


def item_events(
    items: list[FeedItem],
    pages: Mapping[str, PageData],
    *,
    source: Source,
    zone_name: str,
    languages: tuple[str, ...],
    now: datetime,
    limits: Limits,
) -> ParsedFeed:
    """Each item's event as an Occurrence; items without a date become warnings."""
    occurrences: dict[str, Occurrence] = {}
    warnings = Warnings()
    oldest = now - timedelta(days=limits.past_days)
    newest = now + timedelta(days=limits.future_days)
    for item in items:
        page = pages.get(item.link or "")
        found = find_event(item, page, zone_name=zone_name, languages=languages)
        if found is None:
            warnings.add(problem("no-date", title=item.title))
            continue
        if found.year_guessed:
            date_read = f"{found.start:%Y-%m-%d}"
            warnings.add(problem("year-guessed", title=item.title, how=found.how, date=date_read))
        occurrence = _occurrence(item, page, found, source, zone_name)
        begins = instant(occurrence.start)
        if not oldest <= begins <= newest:
            warnings.add(
                problem(
                    "outside-horizon",
                    title=occurrence.title,
                    date=f"{begins:%Y-%m-%d}",
                    origin=occurrence.origin,
                    past_days=limits.past_days,
                    future_days=limits.future_days,
                )
            )
            continue
        occurrences.setdefault(occurrence.key, occurrence)
        if len(occurrences) >= limits.max_occurrences:
            warnings.add(problem("too-many-events", limit=f"{limits.max_occurrences:,}"))
            break
    return ParsedFeed(tuple(occurrences.values()), warnings.result())


def find_event(
    item: FeedItem, page: PageData | None, *, zone_name: str, languages: tuple[str, ...]
) -> FoundEvent | None:
    """Where the item's event is: structured data first, then the page, then the text."""
    if item.structured is not None:
        return item.structured
    if page is not None and page.events:
        return page.events[0]
    item_text = f"{item.title}\n{item.text}"
    for text, where in ((item_text, "item"), (page.text if page else "", "page")):
        dates = _new_date(text, languages, zone_name, item.published) or find_dates(
            text, languages=languages, zone_name=zone_name, published=item.published
        )
        if dates:
            first = dates[0]
            return FoundEvent(
                start=first.start,
                end=first.end,
                all_day=first.all_day,
                found_by="text",
                how=f"{where} text: '{first.text}'",
                year_guessed=first.year_guessed,
            )
    return None


def _new_date(text: str, languages, zone_name: str, published) -> list:
    """The date on a "Ny dato: ..." / "New date: ..." line: a rescheduled event's new time."""
    for marker in NEW_DATE.finditer(text):
        after = text[marker.end() : marker.end() + 120]
        found = find_dates(after, languages=languages, zone_name=zone_name, published=published)
        if found:
            return found
    return []


def _occurrence(
    item: FeedItem, page: PageData | None, found: FoundEvent, source: Source, zone_name: str
) -> Occurrence:
    marker, title = title_status(item.title)
    texts = (item.text, page.text if page else "")
    status = combine_status(marker, found.status, *(text_status(t) for t in texts))
    if found.all_day:
        start: date | datetime = found.start
        end: date | datetime = all_day_end(found.start, found.end)
        tzid = None
    else:
        start = to_utc(found.start, zone_name)
        end = max(to_utc(found.end, zone_name), start)
        tzid = getattr(found.start.tzinfo, "key", None) or zone_name
    description = item.text or (page.text if page else "")
    location = found.location or (page.location if page else None) or ""
    draft = Occurrence(
        key=occurrence_key(source.id, item.id, None),
        source_id=source.id,
        uid=item.id,
        recurrence_id=None,
        title=title,
        start=start,
        end=end,
        all_day=found.all_day,
        tzid=tzid,
        description=description[:MAX_DESCRIPTION],
        url=clean_url(item.link),
        location=location,
        status=status,
        categories=item.categories,
        origin=f"{found.found_by}: {found.how}",
    )
    return with_fingerprint(draft)
