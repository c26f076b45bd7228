"""Plain typed values that cross stage borders. No library object lives here."""

from __future__ import annotations

import enum
from collections.abc import Callable
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
    #: scheduled, at a new date the organiser announced (schema.org EventRescheduled)
    RESCHEDULED = "rescheduled"


class FetchOutcome(enum.StrEnum):
    """How fetching a source went: a fetch gives OK, NOT_MODIFIED or FAILED; the attempt
    the cycle records gives UPDATED, UNCHANGED, NOT_MODIFIED, HELD or FAILED. The values
    are stored (fetches.outcome) and shown: never reworded."""

    #: the fetch brought a body
    OK = "ok"
    #: HTTP 304: the feed is as it was
    NOT_MODIFIED = "not modified"
    FAILED = "failed"
    #: read, and the source's occurrences changed
    UPDATED = "updated"
    #: read (or the same body as last time), nothing changed
    UNCHANGED = "unchanged"
    #: read, but a suspicious drop is held back until the next fetch shows the same
    HELD = "held"


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
    #: reverse proxies (addresses or CIDRs) whose X-Forwarded-For names the client
    trusted_proxies: tuple[str, ...] = ()


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
    #: at most this many fetches at once to one host, and in all
    per_host: int = 2
    concurrency: int = 20
    #: retries of a transient failure inside one cycle, the first after about retry_delay s
    retries: int = 2
    retry_delay: float = 1.0
    #: a Retry-After longer than this is not waited for in the cycle; the next fetch honours it
    max_retry_wait: float = 30.0
    #: a failing source is fetched again after its interval doubled per failure, up to this
    max_backoff: float = 24 * 3600.0
    #: a feed that lost more than this share of its future events at once is held back
    drop_threshold: float = 0.5
    #: linked event pages of RSS items read per source and cycle
    max_pages: int = 30
    #: cancelled and postponed events stay visible this long after their date
    retention_days: int = 30
    #: a vanished event and a new one with the same title this close are one moved event
    recreate_window_days: int = 60
    #: CPU seconds one feed's parse may take in a worker process (member content is untrusted)
    parse_seconds: float = 30.0
    #: memory one parse may use, in MB
    parse_memory: int = 512
    #: a source taken out of sources.yaml is unpublished; its data is kept this long
    removed_source_days: int = 30
    #: on SIGTERM, a refresh finishes the sources it is on within this many seconds
    stop_seconds: float = 20.0


@dataclass(frozen=True)
class MergeSettings:
    """When two members' copies are one event (rule 9)."""

    #: starts at most this far apart are the same time
    window: timedelta = timedelta(minutes=30)
    #: title similarity (rapidfuzz token set ratio, 0-100) for copies at the same time
    title_threshold: float = 80.0
    #: title similarity for all-day against timed, and for whole-hour shifts
    strict_threshold: float = 92.0
    #: starts a whole number of hours apart, up to this many, are a time-zone mistake
    max_zone_shift: int = 2
    network_zone: str = "Europe/Copenhagen"


@dataclass(frozen=True)
class Settings:
    network: Network
    sources: tuple[Source, ...]
    limits: Limits = field(default_factory=Limits)
    merging: MergeSettings = field(default_factory=MergeSettings)
    database_url: str = "sqlite+aiosqlite:///aggregator.db"
    #: the file the settings came from (relative source paths resolve against its folder)
    config_path: Path | None = None
    #: the operator said that a config unpublishing most sources at once is meant
    #: (`--allow-removals`); without it such a config is refused
    allow_removals: bool = False

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
    #: a failure worth trying again (connect error, timeout, 5xx, 429)
    transient: bool = False
    #: seconds the server asked us to wait (Retry-After on 429/503)
    retry_after: float | None = None
    #: where every redirect on the way was permanent (301/308): the feed's new address
    moved_to: str | None = None
    #: the server said 410 Gone
    gone: bool = False
    #: requests made, retries included
    attempts: int = 1
    #: what went wrong as a stable code, the words (`error`) and their detail
    problem: Problem | None = None


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
    #: how the time was found, for RSS items ("page JSON-LD", "text: '26 januar 2023 ...'")
    origin: str = ""
    #: "uid\x1frecurrence id" its network identity comes from, when not its own: an event
    #: deleted and re-created under a new UID keeps the identity of the one it replaced
    identity: str = ""
    #: the first good fetch that no longer listed it (a removal waits for a second one)
    missing_since: datetime | None = None
    #: when its removal was confirmed: shown as cancelled, "removed by the organiser"
    removed_at: datetime | None = None


@dataclass(frozen=True)
class ParsedFeed:
    occurrences: tuple[Occurrence, ...]
    #: what was skipped or guessed: a code, the words and their detail each
    warnings: tuple[Problem, ...] = ()
    #: how many series (RRULE/RDATE masters) were expanded
    series: int = 0


@dataclass(frozen=True)
class FoundEvent:
    """When and where an RSS item's event is, as one place (item, page, text) says it."""

    #: aware datetime, or a date for an all-day event
    start: datetime | date
    end: datetime | date
    all_day: bool
    #: 'structured' (in the item), 'page' (data on the linked page) or 'text'
    found_by: str
    #: how, in words: "RSS event module", "page JSON-LD", "text: 'Torsdag 26 Januar 2023'"
    how: str
    status: Status | None = None
    location: str | None = None
    year_guessed: bool = False


@dataclass(frozen=True)
class FeedItem:
    """One RSS/Atom item, before its event is found."""

    #: guid, else link, else a hash of title and text
    id: str
    title: str
    link: str | None
    published: datetime | None
    #: plain text of the item's summary and content
    text: str
    #: an event in the item itself (RSS event module, JSON-LD in the content)
    structured: FoundEvent | None
    #: hash of what the item says; a changed item has its page read again
    fingerprint: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class PageData:
    """What a linked event page says, as kept between fetches."""

    url: str
    #: from schema.org JSON-LD or microdata, or a linked .ics, first the likeliest
    events: tuple[FoundEvent, ...] = ()
    #: links to .ics files ("Download som iCal-fil")
    ics_links: tuple[str, ...] = ()
    #: the main text, plain, CMS noise removed
    text: str = ""
    #: an address line found in the text
    location: str | None = None


@dataclass(frozen=True)
class CachedPage:
    """A linked page as the store keeps it: read again only when its item changes."""

    page: PageData
    #: the fingerprint of the item that linked it when it was read
    item_fingerprint: str
    fetched_at: datetime
    validators: Validators = field(default_factory=Validators)


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
    #: what the last read found (older rows' plain words come as "text" problems)
    warnings: tuple[Problem, ...] = ()
    #: when the current run of failures began
    failing_since: datetime | None = None
    #: a suspicious drop not applied yet, in words; the next fetch confirms or clears it
    held_drop: str | None = None
    #: when the server said 410 Gone; events stay until an operator acts
    gone_at: datetime | None = None
    #: the address every redirect pointed to permanently (301/308); fetched instead of `url`
    moved_to: str | None = None
    #: occurrences that left the feed, whose removal the next good fetch confirms
    pending_removals: int = 0
    #: its UIDs change on every fetch (seen with Office 365): identity from start and title
    unstable_uids: bool = False
    #: `last_error` with its code (older rows' words come as a "text" problem)
    last_problem: Problem | None = None

    @property
    def health(self) -> str:
        """'gone', 'drop held', 'failing', 'ok' or 'never fetched'."""
        if self.gone_at is not None:
            return "gone"
        if self.held_drop:
            return "drop held"
        if self.failures_in_row:
            return "failing"
        return "ok" if self.last_fetch_at is not None else "never fetched"

    def describe(self) -> str:
        """The state in words a member organisation can act on."""
        if self.gone_at is not None:
            return (
                f"gone since {self.gone_at:%Y-%m-%d %H:%M} UTC: the server answers 410 Gone; "
                "its last events are kept until an operator removes the source"
            )
        if self.held_drop:
            return f"drop held: {self.held_drop}"
        if self.failures_in_row:
            since = f"{self.failing_since:%Y-%m-%d %H:%M} UTC" if self.failing_since else "?"
            return (
                f"failing since {since} ({self.failures_in_row} in a row): "
                f"{self.last_error}; the last good events are kept"
            )
        if self.last_fetch_at is None:
            return "never fetched"
        text = "ok"
        if self.moved_to:
            text += f"; moved permanently to {self.moved_to}: update the address in sources.yaml"
        return text


@dataclass(frozen=True)
class Attempt:
    """One fetch of one source and what came of it, as the store records it."""

    at: datetime
    outcome: FetchOutcome
    #: what happened (plain words are kept as a "text" problem)
    message: Problem | str
    next_check_at: datetime
    status: int | None = None
    duration: float = 0.0
    bytes: int = 0
    error: Problem | str | None = None
    #: validators to keep for the next conditional GET; None keeps the stored ones
    validators: Validators | None = None
    moved_to: str | None = None
    #: the remembered permanent address failed: fetch the configured one again
    forget_move: bool = False
    gone: bool = False
    #: the source's UIDs were found to change on every fetch
    unstable_uids: bool = False
    #: for 'held': why the new snapshot was not applied
    held_drop: str | None = None


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
    #: every member removed it from its feed (not just marked it cancelled)
    removed: bool = False
    #: where it was before it last moved (kept by the store, not computed by merge)
    previous_start: datetime | date | None = None
    #: the member identities ("uid\x1frecurrence id") joined in it
    identities: tuple[str, ...] = ()
    #: member organisations that list it as cancelled while it goes ahead
    cancelled_by: tuple[str, ...] = ()
    #: each member's copy: (source id, title, url)
    copies: tuple[tuple[str, str, str | None], ...] = ()


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
    """What happened: to a member's occurrence (added, updated, removed), and to a network
    event as subscribers see it (all of them). Stored in the history and shown in Atom,
    JSON and the page: the values are never reworded."""

    ADDED = "added"
    #: other fields changed (a change record names them)
    UPDATED = "updated"
    CANCELLED = "cancelled"
    #: cancelled, a new date to come
    POSTPONED = "postponed"
    #: its start or end moved (the schema.org word is stored)
    MOVED = "rescheduled"
    #: cancelled or postponed before, going ahead again
    RESTORED = "restored"
    #: every member took it out of its feed
    REMOVED = "removed"


@dataclass(frozen=True)
class ChangeRecord:
    """One change of a network event, as the history keeps it (Atom, JSON, the page)."""

    event_id: str
    at: datetime
    kind: ChangeKind
    #: the event's title at the time
    title: str
    #: the watched fields before (None when added), as stored: ISO text for times
    before: dict | None
    #: the watched fields after; for UPDATED, `fields` names those that changed
    after: dict
    #: the row's id: orders changes made at the same instant
    id: int = 0


@dataclass(frozen=True)
class FetchRecord:
    """One recorded fetch attempt of a source (its page's history and timeline)."""

    source_id: str
    at: datetime
    outcome: FetchOutcome
    status: int | None = None
    duration: float = 0.0
    bytes: int = 0
    error: str | None = None
    message: str | None = None
    #: the source's occurrences after the attempt
    occurrences: int | None = None
    id: int = 0
    #: `message` with its code (older rows' words come as a "text" problem)
    problem: Problem | None = None


@dataclass(frozen=True)
class Problem:
    """Something a member should know or fix about its feed: a stable code, the words (in
    English), and the values the words were made of, so a page can say it in its own
    language and give the code's hint however the words are phrased."""

    #: stable, never reworded ("no-end", "windows-zone"); "text" for plain words
    code: str
    #: the words, in English
    words: str
    #: the values in the words, by name, in the order given
    detail: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.words

    @classmethod
    def text(cls, words: str) -> Problem:
        """Words without a code: what older versions stored."""
        return cls("text", words)


@dataclass(frozen=True)
class Change:
    """What happened to one occurrence between two good snapshots of a source."""

    kind: ChangeKind
    key: str
    title: str
    before: Occurrence | None = None
    after: Occurrence | None = None


# -- publishing --------------------------------------------------------------------------
# publish.py merges, keeps what retention keeps, versions (versioning.py), renders, and the
# store writes the Publication it is given.


@dataclass(frozen=True)
class PublishedVersion:
    """A network event's last version, as the store keeps it: what the next is measured by."""

    id: str
    #: the event's content and the render key, hashed: a new one means a new version
    fingerprint: str
    sequence: int
    created: datetime
    #: when it left the outputs (no longer merged); None while it is published
    unpublished_at: datetime | None
    #: reads the event as it was published. A publish compares every event by fingerprint
    #: and needs the event itself only for the few that changed (decoding all of them made
    #: a publish of 37,000 events 15% slower)
    read_event: Callable[[], MergedEvent] = field(repr=False, compare=False)

    @property
    def event(self) -> MergedEvent:
        """The event as it was published."""
        return self.read_event()


@dataclass(frozen=True)
class EventVersion:
    """A new version of one network event: what subscribers will see change (rule 8)."""

    #: the event, with `previous_start` (moved from) carried over from its last version
    event: MergedEvent
    fingerprint: str
    #: 0 for a new event, else the last version's + 1 (also after it was unpublished)
    sequence: int
    created: datetime
    last_modified: datetime
    #: the store has no version of it yet
    new: bool
    #: what subscribers see happen, for the history; None when no watched field changed
    change: ChangeRecord | None = None
    #: the VEVENT bytes; None until rendered
    ics: bytes | None = None


@dataclass(frozen=True)
class Publication:
    """What one publish writes, decided before the store sees it."""

    #: the new versions, in the order of the merged events
    versions: tuple[EventVersion, ...]
    #: ids of events published until now and merged no more: they leave the outputs
    gone: tuple[str, ...]
    #: member identity -> the network id its event is published under
    identities: dict[str, str]
    #: when it is published: LAST-MODIFIED of every new version, the time of every change
    at: datetime


# -- a source's cycle ------------------------------------------------------------------------
# refresh.py: the store's SourceForUpdate -> fetch (Fetched) -> parse.read_source (SourceRead)
# -> decide.py (SourceUpdate) -> Store.apply. One read of the store, one write.


@dataclass(frozen=True)
class SourceForUpdate:
    """What one source's cycle needs from the store, read at once."""

    state: SourceState
    #: its occurrences as stored (the last good snapshot), in key order
    stored: tuple[Occurrence, ...] = ()
    #: the linked pages of its items, kept from earlier cycles, by URL (RSS)
    pages: dict[str, CachedPage] = field(default_factory=dict)


@dataclass(frozen=True)
class Fetched:
    """What fetching one source brought."""

    source: Source
    result: FetchResult
    #: the remembered permanent address went away, so the configured one was fetched
    forget_move: bool = False


@dataclass(frozen=True)
class SourceRead:
    """What the parse stage read of one fetched source."""

    feed: ParsedFeed
    #: linked pages read anew in this cycle (RSS), for the store to keep
    pages: tuple[CachedPage, ...] = ()


@dataclass(frozen=True)
class SourceUpdate:
    """The intent of one source's cycle, decided before the store sees it (decide.py): what
    Store.apply records and replaces, in one transaction."""

    source_id: str
    #: the attempt: a row of the fetch history, and the source's health
    attempt: Attempt
    #: the source's new occurrences; None keeps the stored ones
    snapshot: tuple[Occurrence, ...] | None = None
    #: the hash of the body read, stored with `warnings` and a snapshot; None keeps both
    content_hash: str | None = None
    #: what the read found (None: nothing was read)
    warnings: tuple[Problem, ...] | None = None
    #: linked pages read in this cycle, kept for the next
    pages: tuple[CachedPage, ...] = ()
    #: the changes of the source's occurrences, counted by kind ("added": 3)
    changes: dict[str, int] = field(default_factory=dict)
