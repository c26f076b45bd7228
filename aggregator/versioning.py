"""The versioning step of a publish: which network events get a new version, with which
SEQUENCE, since when, moved from where, and what subscribers see happen (rule 8).

Does not interact with any dependencies, only processes data: no I/O, no clock reads.

    publication = version(merged, known, render_key, now)   # what changed, and how
    publication = rendered(publication, render_event)       # + VEVENT bytes; a failure skips one
    store.write_publication(...)                             # writes what it is given
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from aggregator.model import (
    ChangeKind,
    ChangeRecord,
    EventVersion,
    MergedEvent,
    Publication,
    PublishedVersion,
    Status,
)
from aggregator.normalise import fingerprint, iso

#: renders a merged event with its version (sequence, created, last modified) into VEVENT
#: bytes; None when the event could not be rendered (it is skipped, the rest is published)
RenderEvent = Callable[[MergedEvent, int, datetime, datetime], bytes | None]

#: the fields of a network event whose change subscribers see
_WATCHED = ("title", "start", "end", "all_day", "location", "status", "description", "url")
_GONE = (Status.CANCELLED, Status.POSTPONED)


def version(
    merged: Sequence[MergedEvent],
    known: Mapping[str, PublishedVersion],
    render_key: str,
    now: datetime,
) -> Publication:
    """A new version for each event whose content (or the render key) changed; the events
    published until now and merged no more are gone.

    An event gone before and merged again is added again, its SEQUENCE going on from where
    it was (clients keep the highest they saw). The versions are not rendered yet.
    """
    versions = []
    for event in merged:
        new = next_version(event, known.get(event.id), render_key, now)
        if new is not None:
            versions.append(new)
    # an event that cannot be rendered is merged all the same: it is not gone
    published = {i for i, v in known.items() if v.unpublished_at is None}
    gone = published - {event.id for event in merged}
    identities = {identity: event.id for event in merged for identity in event.identities}
    return Publication(tuple(versions), tuple(sorted(gone)), identities, now)


def next_version(
    event: MergedEvent, last: PublishedVersion | None, render_key: str, now: datetime
) -> EventVersion | None:
    """The event's next version, or None when what subscribers get would not change."""
    print_ = fingerprint({"event": event.fingerprint, "render": render_key})
    back = last is not None and last.unpublished_at is not None
    if last is not None and not back and last.fingerprint == print_:
        return None
    old = last.event if last is not None else None
    if old is not None:
        # "moved from": where it was before its latest move
        moved = (old.start, old.end) != (event.start, event.end)
        event = replace(event, previous_start=old.start if moved else old.previous_start)
    sequence, created = (0, now) if last is None else (last.sequence + 1, last.created)
    # back in the outputs: subscribers see it added again
    kind, before, after = event_change(None if back else old, event)
    change = None
    if old is None or back or after.get("fields") or kind is not ChangeKind.UPDATED:
        change = ChangeRecord(event.id, now, kind, event.title, before, after)
    return EventVersion(event, print_, sequence, created, now, new=last is None, change=change)


def event_change(old: MergedEvent | None, new: MergedEvent) -> tuple[ChangeKind, dict | None, dict]:
    """What a subscriber sees happen when `old` becomes `new`: a kind, before and after.

    MOVED is a start or end moved; UPDATED other fields (`after["fields"]` names them).
    """
    after = _summary(new)
    if old is None:
        return ChangeKind.ADDED, None, after
    before = _summary(old)
    if new.status in _GONE and old.status not in _GONE:
        kind = ChangeKind.REMOVED if new.removed else ChangeKind(new.status.value)
    elif new.status is Status.POSTPONED and old.status is Status.CANCELLED:
        kind = ChangeKind.POSTPONED
    elif old.status in _GONE and new.status not in _GONE:
        kind = ChangeKind.RESTORED
    elif (old.start, old.end) != (new.start, new.end):
        kind = ChangeKind.MOVED
    else:
        kind = ChangeKind.UPDATED
    after["fields"] = [f for f in _WATCHED if before.get(f) != after.get(f)]
    return kind, before, after


def _summary(event: MergedEvent) -> dict:
    """The watched fields (and organisers) as the history stores them: ISO text for times."""
    values = {f: getattr(event, f) for f in _WATCHED}
    values.update(
        start=iso(event.start),
        end=iso(event.end),
        status=event.status.value,
        organisers=list(event.organisers),
    )
    return values


def rendered(publication: Publication, render_event: RenderEvent) -> Publication:
    """The publication with each version's VEVENT bytes. A version `render_event` cannot
    render (None) is left out: the event's last version stays as it was, or it waits."""
    versions = []
    for new in publication.versions:
        ics = render_event(new.event, new.sequence, new.created, new.last_modified)
        if ics is not None:
            versions.append(replace(new, ics=ics))
    return replace(publication, versions=tuple(versions))


def prepare_publication(
    merged: Sequence[MergedEvent],
    known: Mapping[str, PublishedVersion],
    render_event: RenderEvent,
    render_key: str,
    now: datetime,
) -> Publication:
    """What a publish writes: the new versions (versioned, then rendered) and the gone."""
    return rendered(version(merged, known, render_key, now), render_event)
