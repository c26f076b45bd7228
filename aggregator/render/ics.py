"""Network events -> iCalendar bytes, with icalendar (folding, escaping, VTIMEZONEs).

Each event is serialised once, when it changes (render_vevent); the calendar is the stored
bytes of its events between a header and the VTIMEZONEs they use (render_calendar).
render_vevent writes icalendar's bytes without its objects (render/fast_ics.py);
render_vevent_reference is icalendar itself, the one it is proved equal to.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache

import icalendar

from aggregator import __version__
from aggregator.model import MergedEvent, Network, NetworkEvent, Status
from aggregator.normalise import zone
from aggregator.render import event_url, organised_by, uid_domain
from aggregator.render.fast_ics import write_vevent
from aggregator.render.text import label, short_when, status_prefix

PRODID = f"-//Network event aggregator//aggregator {__version__}//EN"
_STATUS = {
    Status.SCHEDULED: "CONFIRMED",
    Status.TENTATIVE: "TENTATIVE",
    Status.CANCELLED: "CANCELLED",
    Status.POSTPONED: "CANCELLED",
    Status.RESCHEDULED: "CONFIRMED",
}


def render_vevent(
    event: MergedEvent, sequence: int, created: datetime, last_modified: datetime, network: Network
) -> bytes:
    """One VEVENT, the bytes icalendar writes (render_vevent_reference), written directly:
    icalendar's objects were most of a cold publish. A value the fast path does not write
    goes to icalendar."""
    properties = vevent_properties(event, sequence, created, last_modified, network)
    fast = write_vevent(properties)
    return fast if fast is not None else _to_ical(properties)


def render_vevent_reference(
    event: MergedEvent, sequence: int, created: datetime, last_modified: datetime, network: Network
) -> bytes:
    """One VEVENT, written by icalendar: what render_vevent must equal byte for byte."""
    return _to_ical(vevent_properties(event, sequence, created, last_modified, network))


def _to_ical(properties: list[tuple[str, object]]) -> bytes:
    vevent = icalendar.Event()
    for name, value in properties:
        vevent.add(name, value)
    return vevent.to_ical()


def vevent_properties(
    event: MergedEvent, sequence: int, created: datetime, last_modified: datetime, network: Network
) -> list[tuple[str, object]]:
    """The VEVENT's (name, value) pairs, as icalendar.Event.add takes them.
    DTSTAMP is when we last saw a change, never 'now' (rule 8)."""
    properties: list[tuple[str, object]] = [
        ("UID", f"{event.id}@{uid_domain(network)}"),
        ("DTSTAMP", last_modified),
        ("CREATED", created),
        ("LAST-MODIFIED", last_modified),
        ("SEQUENCE", sequence),
        # RFC 5545 STATUS alone is not enough: Google drops CANCELLED events from
        # subscriptions and many apps show the status nowhere, so the title says it in the
        # network's words
        ("SUMMARY", status_prefix(event, network) + event.title),
    ]
    if event.all_day:
        properties += [("DTSTART", event.start), ("DTEND", event.end)]
    else:
        local = zone(event.tzid) if event.tzid else None
        properties += [
            ("DTSTART", event.start.astimezone(local) if local else event.start),
            ("DTEND", event.end.astimezone(local) if local else event.end),
        ]
    properties.append(("DESCRIPTION", _description(event, network)))
    if event.location:
        properties.append(("LOCATION", event.location))
    properties.append(("URL", event.url or event_url(network, event.id)))
    properties.append(("STATUS", _STATUS[event.status]))
    if event.categories:
        properties.append(("CATEGORIES", list(event.categories)))
    properties.append(("TRANSP", "TRANSPARENT"))
    return properties


def _description(event: MergedEvent, network: Network) -> str:
    """What happened to it (removed, cancelled by some, moved), its text, who organises it."""
    notes = []
    if event.removed:
        notes.append(f"{label(network, 'cancelled')} ({label(network, 'removed')})")
    if event.cancelled_by:
        notes.append(f"{label(network, 'cancelled_by')}: {', '.join(event.cancelled_by)}")
    if event.previous_start is not None and event.previous_start != event.start:
        notes.append(f"{label(network, 'moved_from')} {short_when(event.previous_start, network)}")
    return "\n\n".join(
        p
        for p in ("\n".join(notes), event.description, organised_by(network, event.organisers))
        if p
    )


def calendar_header(network: Network) -> icalendar.Calendar:
    calendar = icalendar.Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("METHOD", "PUBLISH")
    # RFC 7986 properties, and the X-WR- forms that Apple, Google and Outlook read
    calendar.add("NAME", network.name)
    calendar.add("X-WR-CALNAME", network.name)
    if network.description:
        calendar.add("DESCRIPTION", network.description)
        calendar.add("X-WR-CALDESC", network.description)
    calendar.add("X-WR-TIMEZONE", network.timezone)
    interval = max(network.refresh_interval, timedelta(minutes=15))
    calendar.add("REFRESH-INTERVAL", interval, parameters={"VALUE": "DURATION"})
    # an X- property has no type icalendar knows: say it is a DURATION ("PT30M")
    calendar.add("X-PUBLISHED-TTL", icalendar.vDuration(interval))
    calendar.add("URL", f"{network.base_url}/calendar.ics")
    return calendar


def render_calendar(
    events: Sequence[NetworkEvent], network: Network, cancelled: str = "status"
) -> bytes:
    """The calendar: header, one VTIMEZONE per TZID used, the events' stored bytes.

    `cancelled` picks how cancelled and postponed events reach a client:
    'status' (RFC 5545: STATUS:CANCELLED, and the title says so), 'prefix' (STATUS:CONFIRMED,
    only the title says so: Google Calendar deletes CANCELLED events from subscribed
    calendars, so its subscribers would never see the cancellation), or 'hide'.
    """
    if cancelled == "hide":
        events = [e for e in events if e.event.status not in (Status.CANCELLED, Status.POSTPONED)]
    head = calendar_header(network).to_ical()
    end = b"END:VCALENDAR\r\n"
    assert head.endswith(end)
    tzids = sorted(
        {
            e.event.tzid
            for e in events
            if not e.event.all_day and e.event.tzid and zone(e.event.tzid)
        }
    )
    parts = [head[: -len(end)]]
    parts.extend(vtimezone(tzid) for tzid in tzids)
    for e in events:
        if cancelled == "prefix":
            parts.append(e.ics.replace(b"\r\nSTATUS:CANCELLED\r\n", b"\r\nSTATUS:CONFIRMED\r\n"))
        else:
            parts.append(e.ics)
    parts.append(end)
    return b"".join(parts)


@lru_cache(maxsize=64)
def vtimezone(tzid: str) -> bytes:
    """A VTIMEZONE from the tz database, one RDATE per line; slow to build, so kept.

    icalendar writes all transitions of a rule into one RDATE line, but ical.js (and so
    Thunderbird) reads only the first value of each RDATE property
    (lib/ical/timezone.js: `rdate.getFirstValue()`) and shows later times an hour off.
    One value per RDATE line is read right by every client.
    """
    timezone = icalendar.Timezone.from_tzid(
        tzid, first_date=date(2000, 1, 1), last_date=date(2038, 1, 1)
    )
    for observance in timezone.subcomponents:
        rdates = observance.pop("RDATE", None)
        if rdates is None:
            continue
        for rdate in rdates if isinstance(rdates, list) else [rdates]:
            for value in rdate.dts:
                observance.add("RDATE", value.dt)
    return timezone.to_ical()
