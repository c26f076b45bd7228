"""What a fetch brings and the parse stage reads of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from aggregator.model.kinds import FetchOutcome, Problem, Status


@dataclass(frozen=True)
class Validators:
    """What a conditional GET sends back (RFC 9110 section 13)."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class FetchResult:
    """What one fetch brought: a body, 304, or a failure in words (and as a Problem)."""

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
    """What a feed was read as: its occurrences and the problems met on the way."""

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
class SourceRead:
    """What the parse stage read of one fetched source."""

    feed: ParsedFeed
    #: linked pages read anew in this cycle (RSS), for the store to keep
    pages: tuple[CachedPage, ...] = ()
