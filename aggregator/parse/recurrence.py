"""Series of a calendar with recurring-ical-events, expanded on a bound.

The library is used through its public extension points: our own event adapter (it keeps
the VEVENT as the member wrote it) and our own `Series` (its `occurrence()` hook makes
occurrences that carry that VEVENT), grouped by UID as `ComponentsWithName` groups them.
A lone event without rules (most of a feed) is a SingleEvent: read as its Series would
read it, without building one. Every rule of a series is put behind a BoundedRule, and a
series expands inside `cpu_bound`: a rule that repeats every second for years, or one
that never matches, costs that series, never the feed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
import x_wr_timezone
from icalendar.prop import vDDDTypes
from recurring_ical_events import CalendarQuery, EventAdapter, Series
from recurring_ical_events.util import convert_to_date, convert_to_datetime, normalize_pytz
from x_wr_timezone import X_WR_TIMEZONE

from aggregator.parse.warnings import Warnings
from aggregator.problems import problem

__all__ = [
    "SERIES_SECONDS",
    "BoundedRule",
    "SingleEvent",
    "TooSlow",
    "bound_rules",
    "cpu_bound",
    "series_in",
    "to_standard",
]

#: CPU seconds one series may take to expand; a rule that never matches (BYMONTH=2;
#: BYMONTHDAY=30) makes dateutil search day by day up to the year 9999 without yielding
SERIES_SECONDS = 2.0
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


class WrittenEvent(EventAdapter):
    """recurring-ical-events' VEVENT adapter, keeping the VEVENT as the member wrote it."""

    def __init__(self, component: icalendar.Event) -> None:
        super().__init__(component)
        #: the VEVENT as written (DTEND or DURATION, or neither; the DTSTART it was given)
        self.written = component


class WrittenOccurrence(recurring_ical_events.Occurrence):
    """An occurrence with the VEVENT it was made from, as written."""

    def __init__(self, adapter: WrittenEvent, start=None, end=None, sequence: int = -1):
        super().__init__(adapter, start, end, sequence)
        self.written: icalendar.Event = adapter.written


class WrittenSeries(Series):
    """A series whose occurrences carry the VEVENT each was made from."""

    def occurrence(self, adapter: WrittenEvent, start=None, end=None) -> WrittenOccurrence:
        # as Series.occurrence: the series' highest SEQUENCE goes with every occurrence
        return WrittenOccurrence(adapter, start, end, sequence=self.sequence)


#: what a VEVENT must have none of to be read as a SingleEvent
_NOT_SINGLE = ("RRULE", "RDATE", "EXDATE", "EXRULE", "RECURRENCE-ID", "DURATION")


def series_in(calendar: icalendar.Calendar, *, standard: bool = False) -> list[Series]:
    """The calendar's series of events, those the library cannot build left out.

    What `recurring_ical_events.of(calendar, components=[ComponentsWithName("VEVENT",
    WrittenEvent, WrittenSeries)], skip_bad_series=True).series` gives, step by step as
    CalendarQuery and ComponentsWithName.collect_series_from take them, but for one thing:
    a lone event without rules is a SingleEvent, not a Series (most events of a feed;
    building a Series, its rule set and its bounds cost more than reading the event).
    `standard`: the calendar has been through x_wr_timezone.to_standard already (`of`
    would convert it again, which changes no value).
    """
    if not standard:
        calendar = to_standard(calendar)
    if calendar.get("CALSCALE", "GREGORIAN") != "GREGORIAN":
        raise icalendar.InvalidCalendar("Only Gregorian calendars are supported.")
    by_uid: dict[str, list[WrittenEvent]] = defaultdict(list)
    for component in calendar.walk("VEVENT"):
        adapter = WrittenEvent(component)
        by_uid[adapter.uid].append(adapter)
    found: list[Series] = []
    for adapters in by_uid.values():
        with contextlib.suppress(*CalendarQuery.suppressed_errors):
            found.append(SingleEvent(adapters[0]) if _single(adapters) else WrittenSeries(adapters))
    return found


def to_standard(calendar: icalendar.Calendar) -> icalendar.Calendar:
    """x_wr_timezone.to_standard(calendar), without its walk over a calendar it would
    give back as it is.

    It moves only the times in UTC or without a zone of the events' DTSTART, DTEND, RDATE,
    RECURRENCE-ID and EXDATE into the X-WR-TIMEZONE; when there are none, it gives the
    calendar itself back, after looking the zone up (which raises on a name zoneinfo does
    not know).
    """
    name = calendar.get(X_WR_TIMEZONE)
    if name is None:
        return calendar
    try:
        moves = isinstance(name, tzinfo) or any(
            _moves(event.get(key))
            for event in calendar.subcomponents
            if isinstance(event, icalendar.Event)
            for key in x_wr_timezone.CalendarWalker.VALUE_ATTRIBUTES
        )
    except Exception:  # noqa: BLE001  (the library's walk says what is wrong)
        moves = True
    if moves:
        return x_wr_timezone.to_standard(calendar)
    ZoneInfo(str(name))
    return calendar


def _moves(value: object) -> bool:
    """Whether x-wr-timezone's walker would move a value (it goes by the type's name)."""
    kind = type(value).__name__
    if kind == "list":
        return any(_moves(item) for item in value)
    if kind == "vDDDLists":
        return any(_moves(item.dt) for item in value.dts)
    if kind == "vDDDTypes":
        return _moves(value.dt)
    if kind == "datetime":
        name = value.tzname()
        return name is None or name.upper() == "UTC"
    return False


class SingleEvent:
    """A lone VEVENT without rules, read as recurring-ical-events' Series reads it.

    Only a plain one: a DTSTART that is a date or a time in a zone (zoneinfo or a fixed
    offset), a DTEND of the same kind or none, a SEQUENCE that is a number or none, no
    DURATION and nothing that repeats or overrides. `between` takes the steps
    Series.between takes for such an event (its span widened by the event's length, the
    dates made comparable, the one start of its rule set, the occurrence checked against
    the span) with the library's own helpers; tests/test_parse_fast.py compares the two.
    """

    def __init__(self, adapter: WrittenEvent) -> None:
        self.adapter = adapter
        self.uid = adapter.uid
        #: as Series.sequence: the highest SEQUENCE of its one component
        self.sequence = adapter.sequence
        # what building its Series works out, and may fail on (a date at the end of time)
        self.start, self.end, self.duration = adapter.start, adapter.end, adapter.duration
        self.tzinfo = self.start.tzinfo if isinstance(self.start, datetime) else None
        self.at = convert_to_datetime(self.start, self.tzinfo)

    def between(self, span_start: datetime, span_stop: datetime) -> list[WrittenOccurrence]:
        """Its occurrence, when it is inside the span (start inclusive, stop exclusive)."""
        at, duration = self.at, self.duration
        # Series.rrule_between: the query widened by the event's length, in its zone
        first = convert_to_datetime(normalize_pytz(span_start - duration), self.tzinfo)
        last = convert_to_datetime(normalize_pytz(span_stop), self.tzinfo)
        if not first <= at <= last:
            return []
        occurrence_end = normalize_pytz(at + duration)
        if not isinstance(self.start, datetime) and not isinstance(self.end, datetime):
            at, occurrence_end = convert_to_date(at), convert_to_date(occurrence_end)
        occurrence = WrittenOccurrence(self.adapter, at, occurrence_end, sequence=self.sequence)
        return [occurrence] if occurrence.is_in_span(span_start, span_stop) else []


def _single(adapters: list[WrittenEvent]) -> bool:
    """Whether a UID's events are a lone plain one, read as a SingleEvent."""
    if len(adapters) != 1:
        return False
    event = adapters[0].written
    if any(name in event for name in _NOT_SINGLE):
        return False
    start, end = event.get("DTSTART"), event.get("DTEND")
    if not isinstance(start, vDDDTypes) or not (end is None or isinstance(end, vDDDTypes)):
        return False
    kind = _kind(start.dt)
    if kind is None or (end is not None and _kind(end.dt) != kind):
        return False
    sequence = adapters[0].sequence
    # Series keeps the component of the highest SEQUENCE above -1e10: a number, above
    return isinstance(sequence, int) and sequence > -1e10


def _kind(value: object) -> str | None:
    """'date', 'zoned' (a time in a zoneinfo zone or at a fixed offset), or None."""
    if isinstance(value, datetime):
        return "zoned" if isinstance(value.tzinfo, (ZoneInfo, timezone)) else None
    return "date" if isinstance(value, date) else None


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
    `after` (given the rule's `start`), and the walk stops after `max_steps` instances,
    calling `on_cut`.
    """

    def __init__(
        self,
        rule,
        rule_text: str,
        max_steps: int,
        on_cut: Callable[[BoundedRule], None],
        *,
        start: datetime | None = None,
    ) -> None:
        self.rule = rule
        #: read by recurring-ical-events
        self.until = getattr(rule, "until", None)
        self.string = rule_text
        self.max_steps = max_steps
        self.on_cut = on_cut
        #: the rule's DTSTART (dateutil keeps whole seconds); None: never skipped ahead
        self.start = start.replace(microsecond=0) if isinstance(start, datetime) else None
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
        start = self.start
        if step is None or self.has_count or start is None:
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


def _int(value: object) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def bound_rules(series: Series, max_steps: int, warnings: Warnings) -> None:
    """Put every rule of a series behind a BoundedRule (its warnings name the series).

    The rules are the library's public `recurrence.rrules`, each built from the series'
    `recurrence.start`.
    """
    recurrence = getattr(series, "recurrence", None)
    rules = getattr(recurrence, "rrules", None)
    if not rules:
        return

    def cut(rule: BoundedRule) -> None:
        limit = f"{rule.max_steps:,}"
        warnings.add(problem("too-many-repetitions", uid=series.uid, limit=limit, rule=rule.string))

    start = getattr(recurrence, "start", None)
    for index, rule in enumerate(rules):
        text = getattr(rule, "string", None)
        if text is None or isinstance(rule, BoundedRule):
            continue  # the rruleset of RDATEs: a list the member wrote, finite
        rules[index] = BoundedRule(rule, text, max_steps, cut, start=start)
