"""Time zones, text, keys and content fingerprints. Pure: no I/O, no clock.

Rule 1 of DESIGN.md lives here: aware UTC inside, the original zone kept as a label,
all-day events stay dates, floating times take the source's zone, else the network's.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from urllib.parse import urljoin, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
from rapidfuzz import fuzz

from aggregator.model import Occurrence, Status

_SPACE = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def occurrence_key(source_id: str, uid: str, recurrence_id: str | None) -> str:
    """The stable key of one occurrence: it never changes while the source keeps the UID."""
    raw = "\x1f".join((source_id, uid, recurrence_id or ""))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


def event_id(uid: str, recurrence_id: str | None) -> str:
    """A network id for events matched by UID: the same whichever member publishes it."""
    raw = "\x1f".join((uid.strip().lower(), recurrence_id or ""))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


def clean_line(text: object) -> str:
    """One line of text: no control characters, single spaces, trimmed."""
    value = unicodedata.normalize("NFC", str(text or ""))
    value = "".join(ch if ch.isprintable() else " " for ch in value)
    return _SPACE.sub(" ", value).strip()


def clean_text(text: object) -> str:
    """Multi-line plain text: newlines kept, trailing spaces and runs of blank lines dropped."""
    value = unicodedata.normalize("NFC", str(text or "")).replace("\r\n", "\n").replace("\r", "\n")
    lines = [
        _SPACE.sub(" ", "".join(ch for ch in line if ch.isprintable())).rstrip()
        for line in value.split("\n")
    ]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


MAX_URL = 2048
_URL_SCHEMES = ("http", "https")


def clean_url(value: object, base: str | None = None) -> str | None:
    """A link from member content that is safe to publish and to fetch, or None.

    Only http and https: `javascript:`, `data:`, `file:` and the rest never reach an output.
    Control characters a CMS left inside (an RSS <link> across lines) are removed, spaces
    encoded, a relative link is resolved against `base`, and the host must be a valid name
    or address. Pure: nothing is fetched or resolved.
    """
    text = "".join(ch for ch in str(value or "") if ch.isprintable() or ch == " ")
    text = text.strip().replace(" ", "%20")
    if not text or len(text) > MAX_URL:
        return None
    try:
        if base:
            text = urljoin(base, text)
        parts = urlsplit(text)
        if parts.scheme.lower() not in _URL_SCHEMES or not parts.hostname:
            return None
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
        host = parts.hostname
        if not _valid_host(host):
            return None
    except ValueError:
        return None
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path, parts.query, parts.fragment))


def _valid_host(host: str) -> bool:
    if host.startswith("[") or ":" in host:
        try:
            ipaddress.IPv6Address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return False
        return True
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:  # an empty label ('a..b'), a label over 63 characters
        return False
    return len(ascii_host) <= 253 and all(
        label and len(label) <= 63 and _HOST_LABEL.match(label)
        for label in ascii_host.rstrip(".").split(".")
    )


_HOST_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$")


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a region folder like 'Europe'
        return None


def _same_rules(a: ZoneInfo, b: ZoneInfo, year: int) -> bool:
    probes = [datetime(year, month, 1, 12, tzinfo=UTC) for month in range(1, 13)]
    return all(p.astimezone(a).utcoffset() == p.astimezone(b).utcoffset() for p in probes)


def windows_zone(name: str, network_zone: str, year: int = 2026) -> str | None:
    """Map a Windows zone name ('Romance Standard Time') to an IANA name.

    icalendar's table gives one zone per Windows name (Europe/Paris for Romance); when the
    network's own zone keeps the same clock, that is the one a member in the network meant.
    """
    mapped = WINDOWS_TO_OLSON.get(name.strip().strip('"'))
    if mapped is None:
        return None
    home, there = zone(network_zone), zone(mapped)
    if home is not None and there is not None and _same_rules(home, there, year):
        return network_zone
    return mapped


def to_utc(value: datetime, floating_zone: str) -> datetime:
    """An aware UTC datetime; a floating (naive) time is read in floating_zone."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=zone(floating_zone) or UTC)
    return value.astimezone(UTC)


def iso(value: date | datetime | None) -> str | None:
    """ISO 8601 for storage and JSON; UTC datetimes end in 'Z'."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()


def instant(value: date | datetime, tz: tzinfo = UTC) -> datetime:
    """A start or end as an aware datetime: a datetime as it is, a date at midnight in `tz`.

    The one rule for comparing all-day events with instants; callers pick the midnight
    (UTC where the store compares with `now`, the network's zone where a day is local).
    """
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time(), tz)


def from_iso(value: str) -> date | datetime:
    if "T" in value:
        return datetime.fromisoformat(value).astimezone(UTC)
    return date.fromisoformat(value)


def all_day_end(start: date, end: date | None) -> date:
    """RFC 5545 section 3.6.1: an all-day event without DTEND lasts one day."""
    return end if end is not None and end > start else start + timedelta(days=1)


_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)


def fingerprint(values: dict[str, object]) -> str:
    """Hash of normalised content. Callers leave out what churns on every export (DTSTAMP)."""
    raw = _CANONICAL.encode(values)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


def with_fingerprint(occurrence: Occurrence) -> Occurrence:
    """The occurrence with its fingerprint computed from what it says now."""
    return replace(occurrence, fingerprint=occurrence_fingerprint(occurrence))


def occurrence_fingerprint(occ: Occurrence) -> str:
    return fingerprint(
        {
            "title": occ.title,
            "start": iso(occ.start),
            "end": iso(occ.end),
            "all_day": occ.all_day,
            "tzid": occ.tzid,
            "description": occ.description,
            "url": occ.url,
            "location": occ.location,
            "status": occ.status.value,
            "categories": list(occ.categories),
        }
    )


# -- status markers in titles and text (Danish and English) --------------------------------

#: a marker at the start of a title: "Aflyst/Cancelled:", "AFLYST -", "[Udsat]", "Canceled!"
#: Member text is untrusted: the quantifiers are possessive (`*+`, `++`), so a title of many
#: status words without a separator is read in one pass, never backtracked into (the plain
#: form took exponential time). The words, the separators and the closing punctuation share no
#: character, so giving nothing back matches exactly what the plain form matched.
_TITLE_MARKER = re.compile(
    r"^\W*+(?P<words>(?:(?:aflyst|cancell?ed|annulleret|udsat|postponed|flyttet|"
    r"rescheduled|nyt tidspunkt|ny dato)\s*+(?:(?:/|\||&|og|and)\s*+)?+)++)[:\-–—!\])]++\s*+",
    re.IGNORECASE,
)
_CANCELLED = ("aflyst", "cancelled", "canceled", "cancelled", "annulleret")
_POSTPONED = ("udsat", "postponed")
_RESCHEDULED = ("flyttet", "rescheduled", "nyt tidspunkt", "ny dato")
#: lines that say a new date will come: the event is postponed, not just cancelled
_NEW_DATE_COMING = (
    "ny dato følger",
    "ny dato kommer",
    "ny dato annonceres",
    "new date will be announced",
    "new date to follow",
    "new date to be announced",
    "new date tba",
)
#: words announcing the new date: "Ny dato: 15. marts", "New date: 1 June"
NEW_DATE = re.compile(r"\b(?:ny dato|new date|nyt tidspunkt|flyttet til|moved to)\s*:", re.I)
NEW_DATE_LINE = re.compile(r"^\W*" + NEW_DATE.pattern, re.I)
#: whole words that say cancelled in a line of text ("Arrangementet er aflyst")
_CANCELLED_LINE = re.compile(
    r"\b(?:er|is|has been|bliver|been)\s+(?:desværre\s+|unfortunately\s+)?"
    r"(?:aflyst|cancell?ed|annulleret)\b",
    re.IGNORECASE,
)
_POSTPONED_LINE = re.compile(
    r"\b(?:er|is|has been|been)\s+(?:desværre\s+|unfortunately\s+)?(?:udsat|postponed)\b",
    re.IGNORECASE,
)


def title_status(title: str) -> tuple[Status | None, str]:
    """The status a title's leading marker states, and the title without it.

    "Aflyst/Cancelled: Koncert" -> (CANCELLED, "Koncert"). "Registration closed", "Udsolgt"
    and the like are no marker: a full event is not a cancelled one.
    """
    match = _TITLE_MARKER.match(title)
    if not match:
        return None, title
    words = match.group("words").lower()
    rest = title[match.end() :].strip() or title
    if any(w in words for w in _POSTPONED):
        return Status.POSTPONED, rest
    if any(w in words for w in _CANCELLED):
        return Status.CANCELLED, rest
    return Status.RESCHEDULED, rest


def text_status(text: str) -> Status | None:
    """The status the lines of an event's text state, tolerant of typos ("Ny dator følger")."""
    status = None
    for line in text.lower().splitlines():
        line = line.strip()
        if not line or len(line) > 160:
            continue
        # the marker must fit in the line: partial_ratio would match "dato" to "ny dato følger"
        if any(
            len(line) >= len(marker) - 2 and fuzz.partial_ratio(marker, line) >= 88
            for marker in _NEW_DATE_COMING
        ):
            return Status.POSTPONED
        if NEW_DATE_LINE.match(line):
            status = status or Status.RESCHEDULED
        elif _POSTPONED_LINE.search(line):
            status = Status.POSTPONED
        elif _CANCELLED_LINE.search(line) and status is None:
            status = Status.CANCELLED
    return status


def combine_status(*statuses: Status | None) -> Status:
    """Postponed (cancelled, new date to come) over cancelled over rescheduled over scheduled."""
    order = (Status.POSTPONED, Status.CANCELLED, Status.RESCHEDULED, Status.TENTATIVE)
    for status in order:
        if status in statuses:
            return status
    return Status.SCHEDULED


@lru_cache(maxsize=131072)
def normalised_title(title: str) -> str:
    """A title for comparing: status marker off, lowercased, accents folded, words only."""
    _, rest = title_status(title)
    text = rest.casefold().translate(_FOLD_LATIN)
    if not text.isascii():
        text = fold_accents(text)
    return " ".join(_WORD.findall(text))


def normalised_titles(titles: Sequence[str]) -> list[str]:
    """normalised_title of each title, each step done once on all of them joined: several
    times faster for a network's worth of titles."""
    if not titles:
        return []
    joined = "\n".join(title_status(title)[1] for title in titles)
    if joined.count("\n") != max(len(titles) - 1, 0):  # a title with a line break
        return [normalised_title(title) for title in titles]
    # accents are folded where they are: runs of other than ASCII, a few per title
    text = _NOT_ASCII.sub(lambda run: _fold_run(run.group()), joined.casefold())
    lines = text.translate(_ASCII_NOT_WORD).split("\n")
    return [
        " ".join(line.split()) if line.isascii() else " ".join(_WORD.findall(line))
        for line in lines
    ]


def fold_accents(text: str) -> str:
    """Letters without their accents; ø, æ and å as o, ae and a."""
    folded = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return plain.replace("ø", "o").replace("æ", "ae").replace("å", "a")


#: fold_accents of each Latin letter as one table: str.translate does most titles at once
_FOLD_LATIN = str.maketrans(
    {chr(c): fold_accents(chr(c)) for c in range(0xC0, 0x250) if fold_accents(chr(c)) != chr(c)}
)
_WORD = re.compile(r"\w+")
_NOT_ASCII = re.compile(r"[^\x00-\x7f]+")
_fold_run = lru_cache(maxsize=4096)(fold_accents)
#: ASCII other than letters, digits, _ and line breaks: what \w+ would leave out
_ASCII_NOT_WORD = str.maketrans(
    {c: " " for c in map(chr, range(128)) if not (c.isalnum() or c in "_\n")}
)
