"""iCalendar text -> ParsedFeed, with icalendar, x-wr-timezone and recurring-ical-events.

Series are expanded inside the horizon with a hard cap per source (rule 2). A broken
component or series is skipped with a warning; the rest of the calendar is read.
icalendar and recurring-ical-events objects never leave this module.
"""

from __future__ import annotations

import hashlib
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

import icalendar
import recurring_ical_events
import x_wr_timezone
from recurring_ical_events.series.rrule import Series

from aggregator.errors import ParseError
from aggregator.model import Limits, Occurrence, ParsedFeed, Status
from aggregator.normalise import (
    all_day_end,
    clean_line,
    clean_text,
    clean_url,
    combine_status,
    iso,
    occurrence_key,
    title_status,
    to_utc,
    windows_zone,
    with_fingerprint,
    zone,
)
from aggregator.parse.warnings import Warnings
from aggregator.problems import problem

MAX_DESCRIPTION = 10_000
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
    reader = _Reader(
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
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
        if not calendars:
            raise ValueError("no VCALENDAR could be read")
    except Exception as e:  # icalendar raises ValueError, KeyError, ... on a bad line
        salvaged = _salvage(text, warnings)
        if not salvaged.walk("VEVENT"):
            # nothing readable: a broken feed, not an empty calendar (rule 6)
            raise ParseError(url, problem("unreadable-calendar", error=_words(e))) from e
        warnings.add(problem("read-event-by-event", error=_words(e)))
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
            warnings.add(problem("unreadable-calendar-properties", error=_words(e)))
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
            warnings.add(problem("unreadable-timezone", error=_words(e)))
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
                warnings.add(problem("unreadable-event", title=title, error=_words(e)))
            else:
                warnings.add(problem("unreadable-untitled-event", error=_words(e)))
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
    try:
        calendar = x_wr_timezone.to_standard(calendar)
    except Exception as e:
        warnings.add(problem("xwr-timezone-failed", error=_words(e)))
    _drop_unreadable_events(calendar, warnings)
    _separate_shared_uids(calendar, warnings)
    # A single event's key must not contain its start, or moving it would make a new event.
    repeating = {
        str(e.get("UID", ""))
        for e in calendar.walk("VEVENT")
        if "RRULE" in e or "RDATE" in e or "RECURRENCE-ID" in e
    }
    seen = set()
    for series in _all_series(calendar, warnings):
        seen.add(str(series.uid))
        yield series, str(series.uid) in repeating
    for event in calendar.walk("VEVENT"):
        uid = str(event.get("UID", ""))
        if uid and uid not in seen:
            title = clean_line(event.get("SUMMARY"))
            warnings.add(problem("unreadable-rule", title=title, uid=uid))
            seen.add(uid)


def _all_series(calendar: icalendar.Calendar, warnings: Warnings) -> list[Series]:
    """Every series of the calendar; one the library cannot build costs only itself.

    recurring-ical-events builds all series at once and some broken values still escape
    `skip_bad_series` (a DURATION written twice, an RRULE without FREQ): then each UID's
    events are read on their own, and those that fail are skipped with a warning.
    """
    try:
        return list(recurring_ical_events.of(calendar, skip_bad_series=True).series)
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
            found.extend(recurring_ical_events.of(alone, skip_bad_series=True).series)
        except Exception as e:  # noqa: BLE001
            title = clean_line(_one(events[0].get("SUMMARY"))) or "without a title"
            warnings.add(problem("unreadable-series", title=title, uid=uid, error=_words(e)))
    return found


def _one(value: object) -> object:
    """A property written more than once comes as a list: the first one counts."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


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
        title = clean_line(component.get("SUMMARY")) or "without a title"
        for name, error in getattr(component, "errors", []) or []:
            words = _words(Exception(error))
            if name:
                warnings.add(problem("unreadable-property", title=title, name=name, error=words))
            else:
                warnings.add(problem("unreadable-line", title=title, error=words))
        try:
            readable = isinstance(component["DTSTART"].dt, date)
        except Exception:  # missing, or icalendar's BrokenCalendarProperty
            readable = False
        if not readable:
            warnings.add(problem("no-start", title=title))
            calendar.subcomponents.remove(component)


class _Reader:
    """Turns recurring-ical-events occurrences into our Occurrences."""

    def __init__(
        self,
        source_id: str,
        floating_zone: str,
        network_zone: str,
        warnings: Warnings,
        max_steps: int,
    ):
        self.source_id = source_id
        #: dateutil steps one rule may take (its instances up to the end of the horizon)
        self.max_steps = max_steps
        self.floating_zone = floating_zone
        self.network_zone = network_zone
        self.warnings = warnings

    def occurrences(
        self,
        series: Series,
        recurring: bool,
        start: datetime,
        stop: datetime,
        calendar: icalendar.Calendar,
    ) -> list[Occurrence]:
        """The series' occurrences between start and stop, within the series' budget."""
        cancel_all = str(calendar.get("METHOD", "")).upper() == "CANCEL"
        _bound_rules(series, self.max_steps, self.warnings)
        read: list[Occurrence] = []
        try:
            # collected here, not yielded: the CPU timer must not run on in the caller
            with cpu_bound(SERIES_SECONDS):
                for occurrence in series.between(start, stop):
                    read.append(self._occurrence(occurrence, recurring, cancel_all))
        except TooSlow:
            self.warnings.add(
                problem("series-too-slow", uid=series.uid, seconds=f"{SERIES_SECONDS:g}")
            )
        except Exception as e:
            self.warnings.add(problem("series-partly-read", uid=series.uid, error=_words(e)))
        return read

    def _occurrence(self, occurrence, recurring: bool, cancel_all: bool) -> Occurrence:
        component = occurrence.as_component(False)
        # "Aflyst: Koncert" is a cancellation whatever STATUS says (rule 3)
        marker, title = title_status(clean_line(_one(component.get("SUMMARY"))) or "(untitled)")
        raw_start, raw_end = occurrence.start, occurrence.end
        all_day = not isinstance(raw_start, datetime)
        # as_component() fills DTEND in; the warning is about what the member wrote
        written = getattr(getattr(occurrence, "_adapter", None), "_component", component)
        if "DTEND" not in written and "DURATION" not in written and not all_day:
            self.warnings.add(problem("no-end", title=title))
        start: date | datetime
        end: date | datetime
        if all_day:
            start = raw_start
            end = all_day_end(
                raw_start, raw_end if not isinstance(raw_end, datetime) else raw_end.date()
            )
            tzid = None
        else:
            tzid = self._tzid(component.get("DTSTART"), raw_start, title)
            start = to_utc(raw_start, self.floating_zone)
            end_dt = raw_end if isinstance(raw_end, datetime) else raw_start
            end = max(to_utc(end_dt, self.floating_zone), start)
        uid = str(component.get("UID", "")).strip()
        if not uid:
            uid = "no-uid-" + hashlib.sha256(f"{title}\x1f{iso(start)}".encode()).hexdigest()[:16]
            self.warnings.add(problem("no-uid", title=title))
        recurrence_id = None
        if recurring:
            # the RECURRENCE-ID as written (recurring-ical-events keeps its own in naive UTC)
            written_rid = component.get("RECURRENCE-ID")
            rid = written_rid.dt if written_rid is not None else raw_start
            if written_rid is not None and _this_and_future(written_rid):
                # every later date of the series is read from this override (RFC 5545
                # 3.8.4.4): its slot is its own start less the override's move, not the
                # override's RECURRENCE-ID, or all of them would share one key
                moved_by = _moved_by(written, written_rid)
                if moved_by is not None:
                    rid = raw_start - moved_by
            recurrence_id = iso(
                to_utc(rid, self.floating_zone) if isinstance(rid, datetime) else rid
            )
        draft = Occurrence(
            key=occurrence_key(self.source_id, uid, recurrence_id),
            source_id=self.source_id,
            uid=uid,
            recurrence_id=recurrence_id,
            title=title,
            start=start,
            end=end,
            all_day=all_day,
            tzid=tzid,
            description=clean_text(_one(component.get("DESCRIPTION")))[:MAX_DESCRIPTION],
            # only http(s), no control characters: a bad URL costs the link, not the event
            url=clean_url(_one(component.get("URL"))),
            location=clean_line(_one(component.get("LOCATION"))),
            status=Status.CANCELLED
            if cancel_all
            else combine_status(_status(component.get("STATUS")), marker),
            categories=tuple(_categories(component.get("CATEGORIES"))),
            sequence=_int(component.get("SEQUENCE")),
        )
        return with_fingerprint(draft)

    def _tzid(self, prop, value: datetime, title: str) -> str | None:
        """The IANA name of the zone the member wrote the time in, when we can tell."""
        if value.tzinfo is None:
            self.warnings.add(problem("floating-time", zone=self.floating_zone))
            return self.floating_zone
        key = getattr(value.tzinfo, "key", None)
        raw = str(prop.params.get("TZID", "")).strip() if prop is not None else ""
        if raw and zone(raw) is None:
            mapped = windows_zone(raw, self.network_zone)
            if mapped:
                self.warnings.add(problem("windows-zone", name=raw, zone=mapped))
                return mapped
            if key:
                return key
            self.warnings.add(problem("custom-timezone", name=raw))
            return None
        if raw:
            return raw
        if key and key != "UTC":
            return key
        return None


def _this_and_future(prop) -> bool:
    return str(getattr(prop, "params", {}).get("RANGE", "")).upper() == "THISANDFUTURE"


def _moved_by(written, recurrence_id) -> timedelta | None:
    """How far a RANGE=THISANDFUTURE override moves the dates it governs."""
    try:
        moved_to, slot = written["DTSTART"].dt, recurrence_id.dt
        if isinstance(moved_to, datetime) != isinstance(slot, datetime):
            return None
        return moved_to - slot
    except (KeyError, TypeError, AttributeError):  # naive against aware: no move we can tell
        return None


# -- bounded recurrence ----------------------------------------------------------------------

#: CPU seconds one series may take to expand; a rule that never matches (BYMONTH=2;
#: BYMONTHDAY=30) makes dateutil search day by day up to the year 9999 without yielding
SERIES_SECONDS = 2.0
_FREQUENCIES = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY")
#: the step of each frequency that may be skipped whole: a rule without COUNT gives the same
#: dates from a start moved forward by whole intervals (days keep the time of day, weeks the
#: weekday); months and years are not skipped, their lengths differ
_STEPS = {
    "WEEKLY": timedelta(weeks=1),
    "DAILY": timedelta(days=1),
    "HOURLY": timedelta(hours=1),
    "MINUTELY": timedelta(minutes=1),
    "SECONDLY": timedelta(seconds=1),
}


class TooSlow(BaseException):  # noqa: N818  (a signal, not an error)
    """The CPU time of a bounded block ran out. A BaseException: a library's own
    `except Exception` must not swallow it and expand on without a bound."""


@contextmanager
def cpu_bound(seconds: float) -> Iterator[None]:
    """Raise TooSlow inside the block once it has used `seconds` of CPU time.

    A signal timer (ITIMER_VIRTUAL), so pure-Python loops such as dateutil's are stopped
    where they are. Only in the main thread (where signals are handled); elsewhere the
    worker process's budget is the bound.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def expired(_signum, _frame):
        raise TooSlow()

    previous = signal.signal(signal.SIGVTALRM, expired)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


class BoundedRule:
    """A dateutil rule whose expansion is bounded by the work it does, not by what is kept.

    recurring-ical-events asks `between(after, before)`; dateutil would walk every instance
    from DTSTART on (a FREQ=SECONDLY from years back: hundreds of millions) and return them
    all in a list. Here a rule without COUNT starts at the last whole interval before
    `after`, and the walk stops after `max_steps` instances, with a warning.
    """

    def __init__(self, rule, rule_text: str, max_steps: int, on_cut: Callable[[BoundedRule], None]):
        self.rule = rule
        #: read by recurring-ical-events
        self.until = getattr(rule, "until", None)
        self.string = rule_text
        self.max_steps = max_steps
        self.on_cut = on_cut
        parts = _rule_parts(rule_text)
        self.frequency = parts.get("FREQ", "")
        self.has_count = "COUNT" in parts
        self.interval = max(_int(parts.get("INTERVAL", 1)), 1)

    def between(self, after: datetime, before: datetime, inc: bool = False) -> list[datetime]:
        rule, margin = self._skipped_to(after)
        found: list[datetime] = []
        for steps, when in enumerate(rule, 1):
            # the comparisons of dateutil's own between()
            if when > before if inc else when >= before:
                break
            if when >= after if inc else when > after:
                found.append(when)
            if steps >= self.max_steps + margin:
                self.on_cut(self)
                break
        return found

    def _skipped_to(self, after: datetime):
        """The rule started shortly before `after`, and how many steps that start is early."""
        step = _STEPS.get(self.frequency)
        start = getattr(self.rule, "_dtstart", None)
        if step is None or self.has_count or not isinstance(start, datetime):
            return self.rule, 0
        # whole intervals in wall-clock time, as dateutil counts them
        wall_start = start.replace(tzinfo=None)
        wall_after = (
            after.astimezone(start.tzinfo) if after.tzinfo and start.tzinfo else after
        ).replace(tzinfo=None)
        # a margin of two hours at least: wall-clock time skips an hour in spring and repeats
        # one in autumn, and a rule repeating every minute must still give every time
        # dateutil gives around them
        period = step * self.interval
        margin = max(period, timedelta(hours=2))
        whole = (wall_after - wall_start - margin) // period
        if whole <= 0:
            return self.rule, 0
        moved = (wall_start + whole * period).replace(tzinfo=start.tzinfo)
        return self.rule.replace(dtstart=moved), margin // period + 1


def _rule_parts(text: str) -> dict[str, str]:
    parts = {}
    for part in text.upper().split(";"):
        name, _, value = part.partition("=")
        parts[name.strip()] = value.strip()
    return parts


def _bound_rules(series: Series, max_steps: int, warnings: Warnings) -> None:
    """Put every rule of a series behind a BoundedRule (its warnings name the series)."""
    recurrence = getattr(series, "recurrence", None)
    rules = getattr(recurrence, "rrules", None)
    if not rules:
        return

    def cut(rule: BoundedRule) -> None:
        limit = f"{rule.max_steps:,}"
        warnings.add(problem("too-many-repetitions", uid=series.uid, limit=limit, rule=rule.string))

    for index, rule in enumerate(rules):
        text = getattr(rule, "string", None)
        if text is None or isinstance(rule, BoundedRule):
            continue  # the rruleset of RDATEs: a list the member wrote, finite
        rules[index] = BoundedRule(rule, text, max_steps, cut)


def _status(value: object) -> Status:
    if isinstance(value, list):  # written twice: the more serious one counts
        return combine_status(*(_status(v) for v in value)) if value else Status.SCHEDULED
    status = str(value or "").strip().upper()
    if status == "CANCELLED":
        return Status.CANCELLED
    if status == "TENTATIVE":
        return Status.TENTATIVE
    return Status.SCHEDULED


def _categories(value: object) -> Iterable[str]:
    values = value if isinstance(value, list) else [value] if value is not None else []
    seen: dict[str, None] = {}
    for item in values:
        for category in getattr(item, "cats", None) or [item]:
            name = clean_line(category)
            if name:
                seen.setdefault(name, None)
    return seen


def _int(value: object) -> int:
    try:
        return int(str(_one(value)))
    except (TypeError, ValueError):
        return 0


def _words(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) < 160 else text[:157] + "..."
