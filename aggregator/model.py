"""Plain typed values that cross stage borders. No library object lives here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path


class SourceKind(enum.StrEnum):
    ICAL = "ical"
    RSS = "rss"
    AUTO = "auto"


class Status(enum.StrEnum):
    """An occurrence's status, in RFC 5545 terms plus 'postponed' (cancelled, new date to come)."""

    SCHEDULED = "scheduled"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"
    POSTPONED = "postponed"


class FetchOutcome(enum.StrEnum):
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    FAILED = "failed"


@dataclass(frozen=True)
class Source:
    """One member feed, as configured in sources.yaml."""

    #: slug, unique in the network; part of every occurrence key, so never reuse one
    id: str
    #: the member organisation's name, shown as organiser
    name: str
    #: http(s):// or webcal:// URL, or an absolute file path
    url: str
    kind: SourceKind = SourceKind.AUTO
    homepage: str | None = None
    #: IANA zone for floating times; None means the network's zone
    timezone: str | None = None
    language: str | None = None
    categories: tuple[str, ...] = ()
    #: None means the network's interval
    refresh_interval: timedelta | None = None


@dataclass(frozen=True)
class Network:
    name: str
    description: str = ""
    timezone: str = "Europe/Copenhagen"
    languages: tuple[str, ...] = ("da", "en")
    base_url: str = "http://127.0.0.1:8080"
    refresh_interval: timedelta = timedelta(minutes=30)


@dataclass(frozen=True)
class Limits:
    #: the expansion horizon, relative to now
    past_days: int = 90
    future_days: int = 730
    #: hard cap on occurrences per source, so one bad RRULE cannot eat the machine
    max_occurrences: int = 5000
    connect_timeout: float = 10.0
    total_timeout: float = 60.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5


@dataclass(frozen=True)
class Settings:
    network: Network
    sources: tuple[Source, ...]
    limits: Limits = field(default_factory=Limits)
    database_url: str = "sqlite+aiosqlite:///aggregator.db"
    #: the file the settings came from (relative source paths resolve against its folder)
    config_path: Path | None = None

    def source(self, source_id: str) -> Source:
        for source in self.sources:
            if source.id == source_id:
                return source
        raise KeyError(source_id)


@dataclass(frozen=True)
class Validators:
    """What a conditional GET sends back (RFC 9110 section 13)."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class FetchResult:
    outcome: FetchOutcome
    url: str
    #: the URL after redirects
    final_url: str | None = None
    #: HTTP status; None for files and for errors before a response
    status: int | None = None
    body: bytes = b""
    content_type: str | None = None
    charset: str | None = None
    validators: Validators = field(default_factory=Validators)
    #: what went wrong, in words a member can act on
    error: str | None = None
    duration: float = 0.0


@dataclass(frozen=True)
class Occurrence:
    """One dated instance of an event in one source."""

    #: hash of (source id, uid, recurrence id); never changes for the same instance
    key: str
    source_id: str
    uid: str
    #: ISO form of the RECURRENCE-ID (UTC instant, or a date); None for a single event
    recurrence_id: str | None
    title: str
    #: aware UTC datetime, or a date for all-day events
    start: datetime | date
    end: datetime | date
    all_day: bool
    #: the zone the source wrote the time in (IANA name when we could map it)
    tzid: str | None = None
    description: str = ""
    url: str | None = None
    location: str = ""
    status: Status = Status.SCHEDULED
    categories: tuple[str, ...] = ()
    #: the source's own SEQUENCE
    sequence: int = 0
    #: hash of the normalised content, without fields that churn (DTSTAMP)
    fingerprint: str = ""


@dataclass(frozen=True)
class ParsedFeed:
    occurrences: tuple[Occurrence, ...]
    #: what was skipped or guessed, in plain words
    warnings: tuple[str, ...] = ()
    #: how many series (RRULE/RDATE masters) were expanded
    series: int = 0


@dataclass(frozen=True)
class SourceState:
    """A source's fetch state and health, as the store keeps it."""

    id: str
    url: str
    validators: Validators = field(default_factory=Validators)
    content_hash: str | None = None
    last_fetch_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    failures_in_row: int = 0
    next_check_at: datetime | None = None
    occurrence_count: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class MergedEvent:
    """One network event as merge computes it, before it is published."""

    #: stable network id
    id: str
    uid: str
    title: str
    start: datetime | date
    end: datetime | date
    all_day: bool
    tzid: str | None
    description: str
    url: str | None
    location: str
    status: Status
    categories: tuple[str, ...]
    #: names of every member organisation that lists it
    organisers: tuple[str, ...]
    source_ids: tuple[str, ...]
    #: keys of the member occurrences
    members: tuple[str, ...]
    fingerprint: str


@dataclass(frozen=True)
class NetworkEvent:
    """A published network event: what subscribers see, with its version."""

    event: MergedEvent
    sequence: int
    created: datetime
    last_modified: datetime
    #: the VEVENT, serialised once when the event changed
    ics: bytes


class ChangeKind(enum.StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


@dataclass(frozen=True)
class Change:
    """What happened to one occurrence between two good snapshots of a source."""

    kind: ChangeKind
    key: str
    title: str
    before: Occurrence | None = None
    after: Occurrence | None = None
