"""One source's new snapshot against its last good one -> Changes.

Does not interact with any dependencies, only processes data: no I/O, no clock reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time

from aggregator.model import Change, ChangeKind, Occurrence


def reconcile(stored: Iterable[Occurrence], parsed: Iterable[Occurrence]) -> list[Change]:
    """Added, updated and removed occurrences, in key order (so the result is deterministic)."""
    before = {o.key: o for o in stored}
    after = {o.key: o for o in parsed}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is None:
            changes.append(Change(ChangeKind.ADDED, key, new.title, after=new))
        elif new is None:
            changes.append(Change(ChangeKind.REMOVED, key, old.title, before=old))
        elif old.fingerprint != new.fingerprint:
            changes.append(Change(ChangeKind.UPDATED, key, new.title, before=old, after=new))
    return changes


def _ends(occurrence: Occurrence) -> datetime:
    end = occurrence.end
    if isinstance(end, datetime):
        return end
    return datetime.combine(end, time.min, UTC)


def is_future(occurrence: Occurrence, now: datetime) -> bool:
    return _ends(occurrence) > now


def suspicious_drop(
    stored: Sequence[Occurrence], parsed: Sequence[Occurrence], now: datetime, threshold: float
) -> str | None:
    """Why applying `parsed` would be a suspicious drop (rule 6), or None when it is not.

    A feed that read fine but has no events where it had future ones, or lost more than
    `threshold` of its future events at once, is more likely broken than emptied.
    """
    future = {o.key for o in stored if is_future(o, now)}
    if not future:
        return None
    lost = future - {o.key for o in parsed}
    # which events went: a second fetch confirms a drop only when the same ones are gone
    ref = hashlib.sha256("\x1f".join(sorted(lost)).encode()).hexdigest()[:8]
    if not parsed:
        return (
            f"the feed read fine but has no events, where it had {len(future)} upcoming; "
            f"held back until the next fetch shows the same (ref {ref})"
        )
    if len(lost) / len(future) > threshold:
        return (
            f"{len(lost)} of {len(future)} upcoming events vanished at once; "
            f"held back until the next fetch shows the same (ref {ref})"
        )
    return None


def keep_past(
    stored: Sequence[Occurrence], parsed: Sequence[Occurrence], now: datetime, oldest: datetime
) -> list[Occurrence]:
    """The new snapshot, plus past occurrences the feed no longer lists.

    Feeds prune their past; an event that has happened and left the feed was not cancelled
    or removed, so it stays (archived) until it falls out of the horizon.
    """
    keys = {o.key for o in parsed}
    archived = [
        o for o in stored if o.key not in keys and not is_future(o, now) and _ends(o) >= oldest
    ]
    return list(parsed) + archived
