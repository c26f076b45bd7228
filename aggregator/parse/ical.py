"""iCalendar text -> ParsedFeed, with icalendar, x-wr-timezone and recurring-ical-events.

Series are expanded inside the horizon with a hard cap per source (rule 2). A broken
component or series is skipped with a warning; the rest of the calendar is read.
Here: the text salvaged, its zones, its series and shared UIDs sorted out; the series are
built and bounded in parse/recurrence.py, their occurrences read in parse/occurrences.py.
icalendar and recurring-ical-events objects never leave the parse package.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import icalendar
from recurring_ical_events import Series

from aggregator.errors import ParseError
from aggregator.model import Limits, Occurrence, ParsedFeed
from aggregator.normalise import clean_line, windows_zone, zone
from aggregator.parse.occurrences import OccurrenceReader, one
from aggregator.parse.recurrence import series_in, to_standard
from aggregator.parse.tree import read_calendars
from aggregator.parse.warnings import Warnings, error_words
from aggregator.problems import problem

_BLOCK_EDGE = re.compile(r"(BEGIN|END):(VEVENT|VTIMEZONE)[ \t]*", re.IGNORECASE)
_HEADER = re.compile(
    r"^BEGIN:VCALENDAR[ \t]*\r?\n(.*?)^BEGIN:", re.MULTILINE | re.DOTALL | re.IGNORECASE
)


def parse_calendar(
    text: str,
    *,
    url: str,
    source_id: str,
    floating_zone: str,
    network_zone: str,
    now: datetime,
    limits: Limits,
) -> ParsedFeed:
    """Read every VEVENT occurrence inside the horizon around now.

    Raises ParseError only when the text is not an iCalendar file at all.
    """
    text = _check_is_calendar(text, url)
    # icalendar keeps the zones calendars define (a VTIMEZONE named 'Custom Zone' or a Windows
    # name) in one cache per process, first come first kept: a worker reads many members'
    # calendars, so each read starts with an empty one, or one member's zone moves another's
    icalendar.timezone.tzp.use_default()
    warnings = Warnings()
    start = now - timedelta(days=limits.past_days)
    stop = now + timedelta(days=limits.future_days)
    # a rule may yield the kept occurrences and as many again (overrides, exdates, the
    # occurrences just before the horizon), never the millions a FREQ=SECONDLY makes
    reader = OccurrenceReader(
        source_id, floating_zone, network_zone, warnings, 2 * limits.max_occurrences + 1000
    )
    occurrences: dict[str, Occurrence] = {}
    series_count = 0
    for calendar in _read_calendars(text, url, warnings):
        for series, recurring in _series_of(calendar, network_zone, warnings):
            series_count += recurring
            for occurrence in reader.occurrences(series, recurring, start, stop, calendar):
                if occurrence.key in occurrences:
                    warnings.add(
                        problem("duplicate-occurrence", title=occurrence.title, uid=occurrence.uid)
                    )
                    continue
                occurrences[occurrence.key] = occurrence
                if len(occurrences) >= limits.max_occurrences:
                    warnings.add(
                        problem("too-many-occurrences", limit=f"{limits.max_occurrences:,}")
                    )
                    return ParsedFeed(tuple(occurrences.values()), warnings.result(), series_count)
    if not occurrences:
        warnings.add(
            problem("no-events", future_days=limits.future_days, past_days=limits.past_days)
        )
    return ParsedFeed(tuple(occurrences.values()), warnings.result(), series_count)


def _check_is_calendar(text: str, url: str) -> str:
    """The text to read; bare VEVENTs without a VCALENDAR around them are wrapped."""
    head = text.lstrip()[:512]
    upper = text[:65536].upper()
    if "BEGIN:VCALENDAR" in upper:
        if "END:VCALENDAR" not in text[-65536:].upper():
            # a body cut short reads as a calendar with fewer (or no) events: never apply it
            raise ParseError(url, problem("cut-short"))
        return text
    if head.upper().startswith("BEGIN:VEVENT"):
        return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{text.strip()}\r\nEND:VCALENDAR\r\n"
    if not head:
        raise ParseError(url, problem("empty-feed"))
    if head.lower().startswith(("<!doctype html", "<html")) or "<html" in head.lower():
        raise ParseError(url, problem("html-not-calendar"))
    raise ParseError(url, problem("not-a-calendar", start=repr(head[:40])))


def _read_calendars(text: str, url: str, warnings: Warnings) -> list[icalendar.Calendar]:
    try:
        calendars = read_calendars(text)
        if not calendars:
            raise ValueError("no VCALENDAR could be read")
    except Exception as e:  # icalendar raises ValueError, KeyError, ... on a bad line
        salvaged = _salvage(text, warnings)
        if not salvaged.walk("VEVENT"):
            # nothing readable: a broken feed, not an empty calendar (rule 6)
            raise ParseError(url, problem("unreadable-calendar", error=error_words(e))) from e
        warnings.add(problem("read-event-by-event", error=error_words(e)))
        calendars = [salvaged]
    return [c for c in calendars if isinstance(c, icalendar.Calendar)]


def _salvage(text: str, warnings: Warnings) -> icalendar.Calendar:
    """Parse components one by one, skipping those that cannot be read."""
    calendar = icalendar.Calendar()
    header = _HEADER.search(text)
    if header:
        try:
            parsed = icalendar.Calendar.from_ical(
                f"BEGIN:VCALENDAR\r\n{header.group(1)}END:VCALENDAR\r\n"
            )
            for name, value in parsed.property_items(recursive=False):
                if name not in ("BEGIN", "END"):
                    calendar.add(name, value)
        except Exception as e:
            warnings.add(problem("unreadable-calendar-properties", error=error_words(e)))
    blocks = list(_blocks(text))
    zones: list[str] = []
    for kind, block in blocks:
        if kind != "VTIMEZONE":
            continue
        try:
            for component in _wrap(block).walk("VTIMEZONE"):
                calendar.add_component(component)
            zones.append(block)
        except Exception as e:
            warnings.add(problem("unreadable-timezone", error=error_words(e)))
    for kind, block in blocks:
        if kind != "VEVENT":
            continue
        try:
            for component in _wrap("\r\n".join(zones + [block])).walk("VEVENT"):
                calendar.add_component(component)
        except Exception as e:
            summary = re.search(r"^SUMMARY[^:\r\n]*+:(.*)$", block, re.MULTILINE)
            if summary:
                title = clean_line(summary.group(1))
                warnings.add(problem("unreadable-event", title=title, error=error_words(e)))
            else:
                warnings.add(problem("unreadable-untitled-event", error=error_words(e)))
    return calendar


def _blocks(text: str) -> Iterator[tuple[str, str]]:
    """The VEVENT and VTIMEZONE blocks of a calendar, in one pass over its lines.

    A block that never ends is dropped when the next one of its kind begins (a regular
    expression searching for each block's end took quadratic time on such a feed).
    """
    kind: str | None = None
    lines: list[str] = []
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        edge = _BLOCK_EDGE.fullmatch(line)
        if edge is not None and edge.group(1).upper() == "BEGIN":
            kind, lines = edge.group(2).upper(), [line]
        elif kind is not None:
            lines.append(line)
            if edge is not None and edge.group(2).upper() == kind:
                yield kind, "\r\n".join(lines)
                kind, lines = None, []


def _wrap(body: str) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{body}\r\nEND:VCALENDAR\r\n"
    )


def _series_of(
    calendar: icalendar.Calendar, network_zone: str, warnings: Warnings
) -> Iterator[tuple[Series, bool]]:
    """The calendar's series, each with whether it repeats; unreadable ones become warnings."""
    xwr = str(calendar.get("X-WR-TIMEZONE", "")).strip()
    if xwr and zone(xwr) is None:
        mapped = windows_zone(xwr, network_zone)
        if mapped:
            warnings.add(problem("windows-zone", name=xwr, zone=mapped))
            calendar["X-WR-TIMEZONE"] = mapped
        else:
            warnings.add(problem("unknown-xwr-timezone", name=xwr))
            del calendar["X-WR-TIMEZONE"]
    standard = False
    try:
        calendar = to_standard(calendar)
        standard = True
    except Exception as e:
        warnings.add(problem("xwr-timezone-failed", error=error_words(e)))
    _drop_unreadable_events(calendar, warnings)
    _separate_shared_uids(calendar, warnings)
    # A single event's key must not contain its start, or moving it would make a new event.
    repeating = {
        str(e.get("UID", ""))
        for e in calendar.walk("VEVENT")
        if "RRULE" in e or "RDATE" in e or "RECURRENCE-ID" in e
    }
    seen = set()
    for series in _all_series(calendar, warnings, standard=standard):
        seen.add(str(series.uid))
        yield series, str(series.uid) in repeating
    for event in calendar.walk("VEVENT"):
        uid = str(event.get("UID", ""))
        if uid and uid not in seen:
            title = clean_line(event.get("SUMMARY"))
            warnings.add(problem("unreadable-rule", title=title, uid=uid))
            seen.add(uid)


def _all_series(
    calendar: icalendar.Calendar, warnings: Warnings, *, standard: bool
) -> list[Series]:
    """Every series of the calendar; one the library cannot build costs only itself.

    recurring-ical-events builds all series at once and some broken values still escape
    `skip_bad_series` (a DURATION written twice, an RRULE without FREQ): then each UID's
    events are read on their own, and those that fail are skipped with a warning.
    """
    try:
        return series_in(calendar, standard=standard)
    except Exception:  # noqa: BLE001  (read one by one below, each failure in words)
        pass
    zones = list(calendar.walk("VTIMEZONE"))
    by_uid: dict[str, list] = {}
    for event in calendar.walk("VEVENT"):
        by_uid.setdefault(str(event.get("UID", "")), []).append(event)
    found: list[Series] = []
    for uid, events in by_uid.items():
        alone = icalendar.Calendar()
        for component in (*zones, *events):
            alone.add_component(component)
        try:
            found.extend(series_in(alone))
        except Exception as e:  # noqa: BLE001
            title = clean_line(one(events[0].get("SUMMARY"))) or "without a title"
            warnings.add(problem("unreadable-series", title=title, uid=uid, error=error_words(e)))
    return found


def _separate_shared_uids(calendar: icalendar.Calendar, warnings: Warnings) -> None:
    """Single events that share a UID are different events, not one to pick from.

    recurring-ical-events would keep one of them (which one depends on their order); each
    gets its own UID instead, made from its start and title so that it is the same in every
    fetch. A copy of the very same event is dropped.
    """
    by_uid: dict[str, list] = {}
    for event in calendar.walk("VEVENT"):
        by_uid.setdefault(str(event.get("UID", "")), []).append(event)
    for uid, events in by_uid.items():
        if not uid or len(events) < 2:
            continue
        if any(p in e for e in events for p in ("RRULE", "RDATE", "RECURRENCE-ID")):
            continue  # a series with its overrides
        seen: dict[str, object] = {}
        for event in events:
            sig = hashlib.sha256(
                f"{event['DTSTART'].to_ical()!r}\x1f{event.get('SUMMARY', '')}".encode()
            ).hexdigest()[:10]
            if sig in seen:
                calendar.subcomponents.remove(event)
                continue
            seen[sig] = event
            event["UID"] = f"{uid}#{sig}"
        code = "shared-uid" if len(seen) > 1 else "shared-uid-copies"
        warnings.add(problem(code, uid=uid, count=len(events)))
        if len(seen) == 1:  # only copies: the one left keeps the member's UID
            only = next(iter(seen.values()))
            only["UID"] = uid


def _drop_unreadable_events(calendar: icalendar.Calendar, warnings: Warnings) -> None:
    """Events without a readable DTSTART cannot be placed in time: skip them, say so."""
    for component in list(calendar.subcomponents):
        if component.name != "VEVENT":
            continue
        errors = getattr(component, "errors", []) or []
        try:
            readable = isinstance(component["DTSTART"].dt, date)
        except Exception:  # missing, or icalendar's BrokenCalendarProperty
            readable = False
        if readable and not errors:
            continue  # nothing to say: its title is not needed
        title = clean_line(component.get("SUMMARY")) or "without a title"
        for name, error in errors:
            words = error_words(Exception(error))
            if name:
                warnings.add(problem("unreadable-property", title=title, name=name, error=words))
            else:
                warnings.add(problem("unreadable-line", title=title, error=words))
        if not readable:
            warnings.add(problem("no-start", title=title))
            calendar.subcomponents.remove(component)
