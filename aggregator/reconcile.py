"""One source's new snapshot against its last good one -> Changes.

Does not interact with any dependencies, only processes data: no I/O, no clock reads.
"""

from __future__ import annotations

from collections.abc import Iterable

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
