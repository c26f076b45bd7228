"""What the operator configured: sources.yaml as values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from aggregator.model.kinds import SourceKind


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
    """The network: its name, zone, languages, address and how often sources are read."""

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
    """The bounds on what one source may cost: horizon, sizes, times, memory, retries."""

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
class OutputSettings:
    """What the plain outputs hold and where they are written (issue 16)."""

    #: the plain /calendar.ics holds events from this many days back...
    calendar_past_days: int = 30
    #: ...to this many days ahead (a window of ?from=/?to=/?days= asks for others)
    calendar_future_days: int = 365
    #: the published folder: every plain output and its gzip twin, written at each publish
    #: (None: a temporary folder of the serving process)
    folder: Path | None = None
    #: one log line per request (off for the last bit of speed behind a proxy that logs)
    access_log: bool = True
    #: renders on demand (filters, windows, pages) running at once, in all; and waited on
    #: at once by one client (then 429), and queued in all (then 503) (issue 25)
    renders: int = 2
    client_renders: int = 4
    queued_renders: int = 64
    #: bytes of disk every temporary body file of a serving process holds at most (the kept
    #: ones, those of before the last publish, those being rendered or sent), and bytes of
    #: the small bodies kept in memory
    disk_budget: int = 2 * 1024 * 1024 * 1024
    memory_budget: int = 16 * 1024 * 1024
    #: seconds a client may take no bytes of an answer before it is let go
    send_timeout: float = 60.0


@dataclass(frozen=True)
class SchedulerSettings:
    """How the processes that may fetch elect the one that does (issue 17)."""

    #: a scheduler that died is replaced within this: the others try for the lease this
    #: often (a third of it), and the holder gives up fetching when it cannot confirm it
    lease_seconds: float = 30.0


@dataclass(frozen=True)
class Settings:
    """Everything sources.yaml and the AGGREGATOR_* variables configure."""

    network: Network
    sources: tuple[Source, ...]
    limits: Limits = field(default_factory=Limits)
    merging: MergeSettings = field(default_factory=MergeSettings)
    outputs: OutputSettings = field(default_factory=OutputSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
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
