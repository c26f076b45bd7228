"""A series' occurrences (recurring-ical-events) -> our Occurrences: times in UTC with the
zone they were written in, the identity (UID, RECURRENCE-ID as written), status and text.

A series expands within its budget (parse/recurrence.py); what cannot be read or was
guessed becomes a warning. icalendar objects never leave this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import icalendar
from recurring_ical_events import Series

from aggregator.model import Occurrence, Status
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
from aggregator.parse.recurrence import (
    SERIES_SECONDS,
    TooSlow,
    WrittenOccurrence,
    bound_rules,
    cpu_bound,
)
from aggregator.parse.warnings import Warnings, error_words
from aggregator.problems import problem

MAX_DESCRIPTION = 10_000


class OccurrenceReader:
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
        bound_rules(series, self.max_steps, self.warnings)
        read: list[Occurrence] = []
        try:
            # collected here, not yielded: the CPU timer must not run on in the caller
            with cpu_bound(SERIES_SECONDS):
                for occurrence in series.between(start, stop):
                    read.append(self._occurrence(occurrence, recurring, cancel_all))
        except TooSlow:
            seconds = f"{SERIES_SECONDS:g}"
            self.warnings.add(problem("series-too-slow", uid=series.uid, seconds=seconds))
        # the library's errors, of any kind: a series that breaks halfway costs only itself
        except Exception as e:  # noqa: BLE001
            error = error_words(e)
            self.warnings.add(problem("series-partly-read", uid=series.uid, error=error))
        return read

    def _occurrence(
        self, occurrence: WrittenOccurrence, recurring: bool, cancel_all: bool
    ) -> Occurrence:
        component = occurrence.as_component(False)
        # "Aflyst: Koncert" is a cancellation whatever STATUS says (rule 3)
        marker, title = title_status(clean_line(one(component.get("SUMMARY"))) or "(untitled)")
        # as_component() fills DTEND in; the warning is about what the member wrote
        written = occurrence.written
        all_day = not isinstance(occurrence.start, datetime)
        if "DTEND" not in written and "DURATION" not in written and not all_day:
            self.warnings.add(problem("no-end", title=title))
        start, end, tzid = self._times(occurrence, component.get("DTSTART"), title)
        uid = str(component.get("UID", "")).strip()
        if not uid:
            uid = "no-uid-" + hashlib.sha256(f"{title}\x1f{iso(start)}".encode()).hexdigest()[:16]
            self.warnings.add(problem("no-uid", title=title))
        recurrence_id = None
        if recurring:
            recurrence_id = self._recurrence_id(occurrence, component)
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
            description=clean_text(one(component.get("DESCRIPTION")))[:MAX_DESCRIPTION],
            # only http(s), no control characters: a bad URL costs the link, not the event
            url=clean_url(one(component.get("URL"))),
            location=clean_line(one(component.get("LOCATION"))),
            status=Status.CANCELLED
            if cancel_all
            else combine_status(_status(component.get("STATUS")), marker),
            categories=tuple(_categories(component.get("CATEGORIES"))),
            sequence=integer(component.get("SEQUENCE")),
        )
        return with_fingerprint(draft)

    def _times(
        self, occurrence: WrittenOccurrence, prop, title: str
    ) -> tuple[date | datetime, date | datetime, str | None]:
        """Start and end (aware UTC, or dates for an all-day event) and the zone's name."""
        raw_start, raw_end = occurrence.start, occurrence.end
        if not isinstance(raw_start, datetime):
            last = raw_end if not isinstance(raw_end, datetime) else raw_end.date()
            return raw_start, all_day_end(raw_start, last), None
        tzid = self._tzid(prop, raw_start, title)
        start = to_utc(raw_start, self.floating_zone)
        end_dt = raw_end if isinstance(raw_end, datetime) else raw_start
        return start, max(to_utc(end_dt, self.floating_zone), start), tzid

    def _recurrence_id(self, occurrence: WrittenOccurrence, component) -> str:
        """The slot of a series' occurrence: its RECURRENCE-ID as written (recurring-ical-
        events keeps its own in naive UTC), or its start."""
        written_rid = component.get("RECURRENCE-ID")
        rid = written_rid.dt if written_rid is not None else occurrence.start
        if written_rid is not None and _this_and_future(written_rid):
            # every later date of the series is read from this override (RFC 5545
            # 3.8.4.4): its slot is its own start less the override's move, not the
            # override's RECURRENCE-ID, or all of them would share one key
            moved_by = _moved_by(occurrence.written, written_rid)
            if moved_by is not None:
                rid = occurrence.start - moved_by
        return iso(to_utc(rid, self.floating_zone) if isinstance(rid, datetime) else rid)

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


def one(value: object) -> object:
    """A property written more than once comes as a list: the first one counts."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def integer(value: object) -> int:
    """A property's number (SEQUENCE), 0 when it is none."""
    try:
        return int(str(one(value)))
    except (TypeError, ValueError):
        return 0


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
