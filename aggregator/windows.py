"""Windows on the outputs: `?from=YYYY-MM-DD&to=YYYY-MM-DD` and `?days=N` on the calendar,
the Atom feed and the JSON; the plain calendar's own window (outputs.calendar_past_days and
calendar_future_days); and the cursor of a page of /events.json. Pure: pass `now`.

Days are the network's: a window from 1 March starts at midnight in its zone, and `to` is
the last day in it. An event is in a window when it overlaps it (one under way at its start
is in)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from multidict import MultiMapping

from aggregator.model import MergedEvent, OutputSettings
from aggregator.normalise import instant

#: the longest window a query may ask for, in days (ten years)
MAX_DAYS = 3660
#: the first and last day a window may hold, and the years a cursor may name: nobody's
#: calendar reaches outside them, and inside them no midnight in any zone, no `days=` added
#: and no conversion to UTC overflows Python's datetime (years 1 to 9999), so a visitor's
#: date is a 400 in words, never a 500 from an OverflowError
EARLIEST = date(1900, 1, 1)
LATEST = date(2999, 12, 31)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the window's parameters, in the order of a canonical query
PARAMETERS = ("from", "to", "days")


@dataclass(frozen=True)
class Window:
    """[start, end) in time; None on a side: open on that side."""

    start: datetime | None = None
    end: datetime | None = None

    def query(self) -> str:
        """The canonical form, for a cache key: the same window, the same text."""
        return f"from={_stamp(self.start)}&to={_stamp(self.end)}"

    def admits(self, event: MergedEvent, tz: tzinfo) -> bool:
        """Whether the event overlaps the window (an all-day one's days in `tz`)."""
        start = instant(event.start, tz)
        end = max(instant(event.end, tz), start)
        if self.end is not None and start >= self.end:
            return False
        return self.start is None or end > self.start or start >= self.start


def _stamp(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def asked_window(query: MultiMapping[str], today: date, tz: tzinfo) -> Window | None:
    """The window `?from=`, `?to=` and `?days=` ask for; None when they ask none.

    `days=N` is N days from `from` (today when not given); `to` is the last day in the
    window. Raises ValueError, naming the parameter, on a value that is not a date or a
    number, a day outside EARLIEST to LATEST (also the last day `days=` reaches), an end
    before the start, or a window longer than MAX_DAYS."""
    given = {name: query.get(name, "").strip() for name in PARAMETERS}
    if not any(given.values()):
        return None
    first = _day(given["from"], "from") if given["from"] else None
    last = _day(given["to"], "to") if given["to"] else None
    if given["days"]:
        if last is not None:
            raise ValueError("days= and to= both end the window: give one of them")
        try:
            days = int(given["days"])
        except ValueError:
            raise ValueError(f"days={given['days']!r}: give a whole number of days") from None
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"days={days}: give 1 to {MAX_DAYS} days")
        first = first or today
        last = first + timedelta(days=days - 1)  # no overflow: first <= LATEST, days small
        if last > LATEST:
            raise ValueError(
                f"days={days}: from={first} the window would end after {LATEST}, "
                "the last day a window may hold"
            )
    if first is not None and last is not None:
        if last < first:
            raise ValueError(f"to={last} is before from={first}")
        if (last - first).days >= MAX_DAYS:
            raise ValueError(f"from={first} to={last}: at most {MAX_DAYS} days at once")
    return Window(
        start=_midnight(first, tz) if first else None,
        end=_midnight(last + timedelta(days=1), tz) if last else None,
    )


def _day(text: str, name: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: give a date as YYYY-MM-DD") from None
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"{name}={text!r}: give a date from {EARLIEST} to {LATEST}")
    return day


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(), tz)


def calendar_window(outputs: OutputSettings, now: datetime, tz: tzinfo) -> Window:
    """What the plain /calendar.ics (and the published folder's outputs) hold: whole days
    from calendar_past_days back to calendar_future_days ahead, in the network's zone."""
    today = now.astimezone(tz).date()
    return Window(
        start=_midnight(today - timedelta(days=outputs.calendar_past_days), tz),
        end=_midnight(today + timedelta(days=outputs.calendar_future_days + 1), tz),
    )


def encode_cursor(start: date | datetime, event_id: str) -> str:
    """Where the next page starts: after this event (its start, as the store orders it)."""
    micros = (instant(start) - _EPOCH) // timedelta(microseconds=1)
    text = f"{micros}|{event_id}"
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (start, id) a cursor names; ValueError when it is not one of ours: one whose
    start lies outside the years EARLIEST to LATEST (far outside them, its number would
    overflow a datetime) is not."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        micros, event_id = text.split("|", 1)
        moment = _EPOCH + timedelta(microseconds=int(micros))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise ValueError(f"cursor={cursor[:80]!r}: not a cursor this server gave") from None
    if not event_id or len(event_id) > 64 or not _FIRST <= moment < _AFTER_LAST:
        raise ValueError(f"cursor={cursor[:80]!r}: not a cursor this server gave")
    return moment, event_id


_FIRST = datetime.combine(EARLIEST, time(), UTC)
_AFTER_LAST = datetime.combine(LATEST + timedelta(days=1), time(), UTC)
