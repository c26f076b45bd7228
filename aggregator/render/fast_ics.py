"""A VEVENT's properties -> the bytes icalendar writes for them, without its objects.

icalendar is the reference (render/ics.py). Serialising with it costs a Python object per
property, a Contentline, and a character-by-character fold: most of a cold publish. This
module writes the same bytes directly for the few value types render_vevent uses, and says
None (write it with icalendar) for anything else, so an unusual value is never guessed at.
tests/test_render_fast.py proves the bytes equal icalendar's on generated and real events.

What it copies from icalendar 7 (read there, not guessed):
- order: the VEVENT's canonical order, then the other names alphabetically (canonsort_keys);
- TEXT: `_escape_char` (parser/string.py), replacements in its order;
- a value's bytes are read back as 'utf-8-sig' (Contentline.from_parts): a leading U+FEFF
  goes;
- folding: `_foldline`, at most 74 octets a line, never inside a UTF-8 character, a
  backslash or caret that would end a line starts the next one instead;
- DATE-TIME: YYYYMMDDTHHMMSS, Z when icalendar names the zone UTC, else its TZID parameter;
  DTSTAMP, CREATED and LAST-MODIFIED converted to UTC first (Component.add).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

import icalendar
from icalendar.caselessdict import canonsort_keys

#: the octets before a fold: icalendar folds before the character that would reach 75
_WIDTH = 74
#: a backslash or caret never ends a folded line (icalendar issue #1501)
_ESCAPES = (0x5C, 0x5E)
_FOLD = b"\r\n "
#: vInt's bounds (RFC 5545 3.3.8); outside them icalendar raises
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_BEGIN = b"BEGIN:VEVENT"
_END = b"END:VEVENT"


def write_vevent(properties: Sequence[tuple[str, object]]) -> bytes | None:
    """The VEVENT icalendar writes for these (name, value) pairs, or None when one is not a
    form this module writes (then icalendar must)."""
    names = tuple(name for name, _ in properties)
    order = _order(names)
    if order is None:
        return None
    lines = [_BEGIN]
    for index in order:
        name, value = properties[index]
        try:
            text = _WRITERS[name](name, value)
            if text is None:
                return None
            line = text.encode()
        # a lone surrogate, a time beyond year 9999 in UTC: icalendar raises, let it say how
        except (UnicodeEncodeError, OverflowError):
            return None
        lines.append(line if len(line) <= _WIDTH else fold(line))
    lines.append(_END)
    lines.append(b"")
    return b"\r\n".join(lines)


@lru_cache(maxsize=64)
def _order(names: tuple[str, ...]) -> tuple[int, ...] | None:
    """The positions of the names in the order icalendar writes them; None when a name is
    not one we write or comes twice (icalendar would group it)."""
    if len(set(names)) != len(names) or not all(name in _WRITERS for name in names):
        return None
    ordered = canonsort_keys(names, icalendar.Event.canonical_order)
    return tuple(names.index(name) for name in ordered)


def escape_text(text: str) -> str:
    """A TEXT value as icalendar escapes it, replacements in its order: a literal '\\N' is
    read as a line break first, and CR LF, LF and a lone CR all become '\\n'."""
    return (
        text.replace("\\N", "\n")
        .replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def fold(line: bytes) -> bytes:
    """A content line folded as icalendar's _foldline folds it, on the encoded octets."""
    parts = []
    start, size = 0, len(line)
    while size - start > _WIDTH:
        cut = start + _WIDTH
        # back to the first octet of the character that would not fit (10xxxxxx continues)
        while line[cut] & 0xC0 == 0x80:
            cut -= 1
        if line[cut - 1] in _ESCAPES:
            cut -= 1
        parts.append(line[start:cut])
        start = cut
    parts.append(line[start:])
    return _FOLD.join(parts)


def _text(name: str, value: object) -> str | None:
    if type(value) is not str:
        return None
    return f"{name}:{_unmarked(escape_text(value))}"


def _categories(name: str, value: object) -> str | None:
    if type(value) is not list or not value or any(type(c) is not str for c in value):
        return None
    return f"{name}:{_unmarked(','.join(escape_text(c) for c in value))}"


def _integer(name: str, value: object) -> str | None:
    if type(value) is not int or not _INT_MIN <= value <= _INT_MAX:
        return None
    return f"{name}:{value}"


def _uri(name: str, value: object) -> str | None:
    # vUri refuses CR and LF: icalendar raises, and says so
    if type(value) is not str or "\r" in value or "\n" in value:
        return None
    return f"{name}:{_unmarked(value)}"


def _unmarked(value: str) -> str:
    """Without one leading byte order mark: Contentline decodes a value's bytes as
    'utf-8-sig', which drops it."""
    return value[1:] if value[:1] == "\ufeff" else value


def _utc_stamp(name: str, value: object) -> str | None:
    """DTSTAMP, CREATED, LAST-MODIFIED: Component.add converts a datetime to UTC, a naive one
    read as UTC."""
    if type(value) is not datetime:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return f"{name}:{_clock(value)}Z"


def _date_or_time(name: str, value: object) -> str | None:
    """DTSTART, DTEND: a date with VALUE=DATE, a time floating, in UTC or with its TZID."""
    if type(value) is date:
        return f"{name};VALUE=DATE:{value.year:04}{value.month:02}{value.day:02}"
    if type(value) is not datetime:
        return None
    zone = value.tzinfo
    if zone is None:
        return f"{name}:{_clock(value)}"
    if not _known_zone(zone):
        return None
    params, suffix = _zone_form(zone)
    return f"{name}{params}:{_clock(value)}{suffix}"


def _clock(value: datetime) -> str:
    """vDatetime's digits: seconds, never fractions."""
    return (
        f"{value.year:04}{value.month:02}{value.day:02}"
        f"T{value.hour:02}{value.minute:02}{value.second:02}"
    )


def _known_zone(zone: tzinfo) -> bool:
    """A zone whose TZID icalendar takes from the zone alone, never from the time: a named
    ZoneInfo or UTC. Others (dateutil, pytz) it may name by the time's tzname; fixed offsets
    compare equal across names ('CET', 'UTC+01:00'), so could not be kept by zone."""
    if type(zone) is ZoneInfo:
        return isinstance(zone.key, str)
    return zone is timezone.utc


@lru_cache(maxsize=256)
def _zone_form(zone: tzinfo) -> tuple[str, str]:
    """(';TZID=...' or '', 'Z' or '') as icalendar writes a time in this zone: asked of
    icalendar once per zone (its table of equivalent ids names some zones UTC, and it
    quotes a TZID as its parameter rules say)."""
    sample = icalendar.vDDDTypes(datetime(2000, 1, 1, tzinfo=zone))
    params = sample.params.to_ical().decode()
    suffix = "Z" if sample.to_ical().endswith(b"Z") else ""
    return (f";{params}" if params else ""), suffix


_WRITERS: dict[str, Callable[[str, object], str | None]] = {
    "UID": _text,
    "SUMMARY": _text,
    "DESCRIPTION": _text,
    "LOCATION": _text,
    "STATUS": _text,
    "TRANSP": _text,
    "CATEGORIES": _categories,
    "SEQUENCE": _integer,
    "URL": _uri,
    "DTSTAMP": _utc_stamp,
    "CREATED": _utc_stamp,
    "LAST-MODIFIED": _utc_stamp,
    "DTSTART": _date_or_time,
    "DTEND": _date_or_time,
}
