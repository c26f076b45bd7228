"""Network events: merged, versioned, published, and their history.

publish.py merges, keeps what retention keeps, versions (versioning.py), renders, and the
store writes the Publication it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from aggregator.model.kinds import ChangeKind, Status


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
