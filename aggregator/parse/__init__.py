"""Fetched bytes -> ParsedFeed. Library objects (icalendar, feedparser) never leave this package."""

from __future__ import annotations

import codecs
from datetime import datetime

from aggregator.model import FetchResult, Limits, ParsedFeed, Source, SourceKind
from aggregator.parse.ical import parse_calendar

__all__ = ["decode_body", "feed_kind", "parse_feed", "sniff_kind"]


def decode_body(body: bytes, charset: str | None = None) -> tuple[str, list[str]]:
    """Text from bytes: the header's charset, else a BOM, else UTF-8, else Windows-1252."""
    warnings: list[str] = []
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
            warnings.append(
                f"the server says the feed is {charset}, but it is not; read it another way"
            )
    try:
        return body.decode("utf-8"), warnings
    except UnicodeDecodeError:
        warnings.append("the feed is not UTF-8; read it as Windows-1252 (send UTF-8 to be sure)")
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

    RSS and Atom sources need their linked pages too: refresh reads them with read_feed,
    its own page fetches, and item_events (parse/feeds.py).
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
