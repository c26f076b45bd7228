"""Fetched bytes -> what a source says. Library objects (icalendar, feedparser, lxml) never
leave this package.

    read_source(fetched, source, ...)   source.py: the entry point, for a refresh and a check
        parse_feed                      an iCalendar feed (ical.py)
        read_feed, item_events          an RSS/Atom feed's items (feeds.py) and their
        read_page, event_from_ics       linked pages (pages.py), dates in text (dates.py)
"""

from __future__ import annotations

from aggregator.parse.source import (
    FetchPage,
    Parse,
    decode_body,
    feed_kind,
    parse_feed,
    read_source,
    sniff_kind,
)

__all__ = [
    "FetchPage",
    "Parse",
    "decode_body",
    "feed_kind",
    "parse_feed",
    "read_source",
    "sniff_kind",
]
