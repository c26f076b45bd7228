"""A series' occurrences (recurring-ical-events) -> our Occurrences: times in UTC with the
zone they were written in, the identity (UID, RECURRENCE-ID as written), status and text.

A series expands within its budget (parse/recurrence.py); what cannot be read or was
guessed becomes a warning. icalendar objects never leave this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date, datetime, timedelta, tzinfo
from typing import NamedTuple

import icalendar
from icalendar.parser import Parameters
from icalendar.timezone.tzid import tzid_from_tzinfo
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
    SingleEvent,
    TooSlow,
    WrittenOccurrence,
    bound_rules,
    cpu_bound,
)
from aggregator.parse.warnings import Warnings, error_words
from aggregator.problems import problem

MAX_DESCRIPTION = 10_000


class _Said(NamedTuple):
    """What one VEVENT says, the same for every occurrence of it."""

    title: str
    uid: str
    #: whether the member wrote DTEND or DURATION
    has_end: bool
    description: str
    url: str | None
    location: str
    status: Status
    categories: tuple[str, ...]


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
        #: id(VEVENT) -> (the VEVENT, what it says): each read once per parse
        self._read: dict[int, tuple[icalendar.Event, _Said]] = {}
        #: id(tzinfo) -> (the tzinfo, the TZID icalendar gives it)
        self._zone_names: dict[int, tuple[tzinfo, str]] = {}

    def occurrences(
        self,
        series: Series | SingleEvent,
        recurring: bool,
        start: datetime,
        stop: datetime,
        calendar: icalendar.Calendar,
    ) -> list[Occurrence]:
        """The series' occurrences between start and stop, within the series' budget."""
        cancel_all = str(calendar.get("METHOD", "")).upper() == "CANCEL"
        if isinstance(series, SingleEvent):  # no rule to bound, nothing to stop
            return self._single(series, recurring, start, stop, cancel_all)
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

    def _single(
        self, event: SingleEvent, recurring: bool, start: datetime, stop: datetime, cancel_all: bool
    ) -> list[Occurrence]:
        """A lone event's occurrence, when inside the horizon."""
        try:
            return [
                self._occurrence(occurrence, recurring, cancel_all)
                for occurrence in event.between(start, stop)
            ]
        except Exception as e:  # noqa: BLE001  (as a series: a broken event costs itself)
            error = error_words(e)
            self.warnings.add(problem("series-partly-read", uid=event.uid, error=error))
            return []

    def _occurrence(
        self, occurrence: WrittenOccurrence, recurring: bool, cancel_all: bool
    ) -> Occurrence:
        """One occurrence: what its VEVENT says (read once per VEVENT), its times and
        identity. The fields as_component() would give: the series' SEQUENCE, the
        RECURRENCE-ID as written or else the start, the TZID icalendar gives the start."""
        written = occurrence.written
        said = self._said(written)
        all_day = not isinstance(occurrence.start, datetime)
        # as_component() would fill DTEND in; the warning is about what the member wrote
        if not said.has_end and not all_day:
            self.warnings.add(problem("no-end", title=said.title))
        start, end, tzid = self._times(occurrence)
        uid = said.uid
        if not uid:
            uid = (
                "no-uid-"
                + hashlib.sha256(f"{said.title}\x1f{iso(start)}".encode()).hexdigest()[:16]
            )
            self.warnings.add(problem("no-uid", title=said.title))
        recurrence_id = None
        if recurring:
            recurrence_id = self._recurrence_id(occurrence)
        # the series' highest SEQUENCE goes with each occurrence, as as_component() sets it
        sequence = occurrence.sequence if occurrence.sequence >= 0 else written.get("SEQUENCE")
        draft = Occurrence(
            key=occurrence_key(self.source_id, uid, recurrence_id),
            source_id=self.source_id,
            uid=uid,
            recurrence_id=recurrence_id,
            title=said.title,
            start=start,
            end=end,
            all_day=all_day,
            tzid=tzid,
            description=said.description,
            url=said.url,
            location=said.location,
            status=Status.CANCELLED if cancel_all else said.status,
            categories=said.categories,
            sequence=integer(sequence),
        )
        return with_fingerprint(draft)

    def _said(self, written: icalendar.Event) -> _Said:
        """What a VEVENT says, read once for all the occurrences of its series."""
        found = self._read.get(id(written))
        if found is not None and found[0] is written:
            return found[1]
        # "Aflyst: Koncert" is a cancellation whatever STATUS says (rule 3)
        marker, title = title_status(clean_line(one(written.get("SUMMARY"))) or "(untitled)")
        said = _Said(
            title=title,
            # no NUL: PostgreSQL's text cannot hold one (every other character is kept: the
            # UID is the member's identity of the event)
            uid=str(written.get("UID", "")).replace("\x00", "").strip(),
            has_end="DTEND" in written or "DURATION" in written,
            description=clean_text(one(written.get("DESCRIPTION")))[:MAX_DESCRIPTION],
            # only http(s), no control characters: a bad URL costs the link, not the event
            url=clean_url(one(written.get("URL"))),
            location=clean_line(one(written.get("LOCATION"))),
            status=combine_status(_status(written.get("STATUS")), marker),
            categories=tuple(_categories(written.get("CATEGORIES"))),
        )
        # the VEVENT is kept with its reading: an id is only unique while its object lives
        self._read[id(written)] = (written, said)
        return said

    def _times(
        self, occurrence: WrittenOccurrence
    ) -> tuple[date | datetime, date | datetime, str | None]:
        """Start and end (aware UTC, or dates for an all-day event) and the zone's name."""
        raw_start, raw_end = occurrence.start, occurrence.end
        if not isinstance(raw_start, datetime):
            last = raw_end if not isinstance(raw_end, datetime) else raw_end.date()
            return raw_start, all_day_end(raw_start, last), None
        tzid = self._tzid(raw_start)
        start = to_utc(raw_start, self.floating_zone)
        end_dt = raw_end if isinstance(raw_end, datetime) else raw_start
        return start, max(to_utc(end_dt, self.floating_zone), start), tzid

    def _recurrence_id(self, occurrence: WrittenOccurrence) -> str:
        """The slot of a series' occurrence: its RECURRENCE-ID as written (recurring-ical-
        events keeps its own in naive UTC), or its start."""
        written_rid = occurrence.written.get("RECURRENCE-ID")
        rid = written_rid.dt if written_rid is not None else occurrence.start
        if written_rid is not None and _this_and_future(written_rid):
            # every later date of the series is read from this override (RFC 5545
            # 3.8.4.4): its slot is its own start less the override's move, not the
            # override's RECURRENCE-ID, or all of them would share one key
            moved_by = _moved_by(occurrence.written, written_rid)
            if moved_by is not None:
                rid = occurrence.start - moved_by
        return iso(to_utc(rid, self.floating_zone) if isinstance(rid, datetime) else rid)

    def _tzid(self, value: datetime) -> str | None:
        """The IANA name of the zone the member wrote the time in, when we can tell."""
        if value.tzinfo is None:
            self.warnings.add(problem("floating-time", zone=self.floating_zone))
            return self.floating_zone
        raw = self._zone_names.get(id(value.tzinfo))
        if raw is None or raw[0] is not value.tzinfo:
            raw = (value.tzinfo, _tzid_param(value))
            if tzid_from_tzinfo(value.tzinfo) is not None:  # else the name depends on the date
                self._zone_names[id(value.tzinfo)] = raw
        return self._zone_name(raw[1], getattr(value.tzinfo, "key", None))

    def _zone_name(self, raw: str, key: str | None) -> str | None:
        """The zone's name from the TZID icalendar gives the time and the zone's own key."""
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


def _tzid_param(value: datetime) -> str:
    """The TZID icalendar writes for a time (the DTSTART as_component() would give an
    occurrence): the zone's name, none for UTC, whatever zone the member wrote."""
    params = Parameters()
    params.update_tzid_from(value)
    return str(params.get("TZID", "")).strip()


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
