"""One source's new snapshot against its last good one -> Changes.

Does not interact with any dependencies, only processes data: no I/O, no clock reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from aggregator.model import Change, ChangeKind, Occurrence, Problem, Status
from aggregator.normalise import (
    instant,
    iso,
    normalised_title,
    occurrence_key,
    with_fingerprint,
)
from aggregator.problems import problem


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


def is_future(occurrence: Occurrence, now: datetime) -> bool:
    """Whether it ends after `now` (an all-day event at midnight UTC of its end date)."""
    return instant(occurrence.end) > now


def suspicious_drop(
    stored: Sequence[Occurrence], parsed: Sequence[Occurrence], now: datetime, threshold: float
) -> Problem | None:
    """Why applying `parsed` would be a suspicious drop (rule 6), or None when it is not.

    A feed that read fine but has no events where it had future ones, or lost more than
    `threshold` of its future events at once, is more likely broken than emptied.
    """
    future = {o.key for o in stored if is_future(o, now)}
    if not future:
        return None
    # an event listed again under another key (a new UID, same start and title) is not lost
    keys = {o.key for o in parsed}
    listed = {(iso(o.start), normalised_title(o.title)) for o in parsed}
    lost = {
        o.key
        for o in stored
        if o.key in future
        and o.key not in keys
        and (iso(o.start), normalised_title(o.title)) not in listed
    }
    # which events went: a second fetch confirms a drop only when the same ones are gone
    ref = hashlib.sha256("\x1f".join(sorted(lost)).encode()).hexdigest()[:8]
    if not parsed:
        return problem("drop-empty", upcoming=len(future), ref=ref)
    if len(lost) / len(future) > threshold:
        return problem("drop-most", lost=len(lost), upcoming=len(future), ref=ref)
    return None


def identity_of(occurrence: Occurrence) -> str:
    """The "uid\x1frecurrence id" an occurrence's network id comes from."""
    return occurrence.identity or f"{occurrence.uid}\x1f{occurrence.recurrence_id or ''}"


def carry_over(
    stored: Sequence[Occurrence],
    parsed: Sequence[Occurrence],
    now: datetime,
    *,
    oldest: datetime,
    retention: timedelta,
    recreate_window: timedelta,
    confirmed: bool = False,
) -> list[Occurrence]:
    """The source's new snapshot: what the feed lists now, and what it no longer lists.

    - An upcoming occurrence that vanished and a new one with the same title starting within
      `recreate_window` are one moved event (rule 5): the new one keeps the old identity.
    - Other upcoming occurrences that vanished are kept: the first good fetch without them
      marks them missing, the next one confirms the removal (cancelled, "removed"), rule 3.
    - Past occurrences are archived, never removed (rule 6), until the horizon passes them.
    - Cancelled ones stay until their date has passed by `retention` (rule 7).
    - One listed again is restored.
    `confirmed`: this fetch already confirms a drop held back last time, so what vanished is
    removed at once.
    """
    before = {o.key: o for o in stored}
    listed = {o.key for o in parsed}
    fresh = [o for o in parsed if o.key not in before]
    vanished = sorted((o for o in stored if o.key not in listed), key=lambda o: instant(o.end))
    heirs = _heirs(vanished, fresh, now, recreate_window)
    moved = {old.key for old in heirs.values()}
    # an occurrence gone from a series the feed still lists was taken out of it on purpose
    # (EXDATE, a shortened RRULE, a cancelled override): cancelled at once
    series_listed = {o.uid for o in parsed if o.recurrence_id is not None}
    snapshot = []
    for occurrence in parsed:
        previous = before.get(occurrence.key) or heirs.get(occurrence.key)
        if previous is not None and (previous.identity or occurrence.key in heirs):
            occurrence = replace(occurrence, identity=identity_of(previous))
        snapshot.append(occurrence)
    for old in vanished:
        if old.key in moved:
            continue
        if not is_future(old, now):
            # archived: a past event that left the feed was not cancelled; a cancelled one
            # stays its retention time, any other until the horizon passes it
            until = instant(old.end) + retention if _cancelled(old) else instant(old.end)
            if until >= (now if _cancelled(old) else oldest):
                snapshot.append(old)
            continue
        explicit = old.recurrence_id is not None and old.uid in series_listed
        if old.removed_at is not None:
            snapshot.append(old)
        elif old.missing_since is None and not confirmed and not explicit:
            snapshot.append(replace(old, missing_since=now))
        else:
            snapshot.append(with_fingerprint(replace(old, status=Status.CANCELLED, removed_at=now)))
    return snapshot


def _heirs(
    vanished: Sequence[Occurrence],
    fresh: Sequence[Occurrence],
    now: datetime,
    recreate_window: timedelta,
) -> dict[str, Occurrence]:
    """New key -> the vanished upcoming occurrence it replaces (rule 5): the same title,
    ending within `recreate_window`, the nearest first; the earliest vanished choose first."""
    heirs: dict[str, Occurrence] = {}
    for old in vanished:
        if not is_future(old, now) or old.removed_at is not None:
            continue
        near = [
            new
            for new in fresh
            if new.key not in heirs
            and _same_title(new.title, old.title)
            and abs(instant(new.end) - instant(old.end)) <= recreate_window
        ]
        if near:
            heir = min(near, key=lambda new: abs(instant(new.end) - instant(old.end)))
            heirs[heir.key] = old
    return heirs


def _cancelled(occurrence: Occurrence) -> bool:
    return occurrence.status in (Status.CANCELLED, Status.POSTPONED)


def _same_title(a: str, b: str) -> bool:
    return normalised_title(a) == normalised_title(b)


def confirm_removals(stored: Sequence[Occurrence], now: datetime) -> list[Occurrence]:
    """The feed was fetched fine again and is the same: what was missing is now removed."""
    confirmed = []
    for occurrence in stored:
        if occurrence.missing_since is not None and occurrence.removed_at is None:
            occurrence = with_fingerprint(
                replace(occurrence, status=Status.CANCELLED, removed_at=now)
            )
        confirmed.append(occurrence)
    return confirmed


def uids_unstable(stored: Sequence[Occurrence], parsed: Sequence[Occurrence]) -> bool:
    """Whether the feed gave the same events new UIDs: most of what it lists is 'new' by key
    but has the start and title of an event we had (seen with Office 365 exports)."""
    if len(parsed) < 3 or not stored:
        return False
    keys = {o.key for o in stored}
    known = {(iso(o.start), normalised_title(o.title)) for o in stored}
    renamed = [
        o
        for o in parsed
        if o.key not in keys and (iso(o.start), normalised_title(o.title)) in known
    ]
    return len(renamed) >= 0.8 * len(parsed)


def stable_identities(parsed: Sequence[Occurrence], source_id: str) -> list[Occurrence]:
    """Occurrences keyed by their start and title instead of UIDs that cannot be trusted."""
    stable = []
    for occurrence in parsed:
        raw = f"{iso(occurrence.start)}\x1f{normalised_title(occurrence.title)}"
        uid = "start-title-" + hashlib.sha256(raw.encode()).hexdigest()[:20]
        stable.append(
            replace(
                occurrence, uid=uid, recurrence_id=None, key=occurrence_key(source_id, uid, None)
            )
        )
    return stable


def collapse_duplicates(
    occurrences: Sequence[Occurrence],
) -> tuple[list[Occurrence], list[Problem]]:
    """A feed that lists the same event twice (same start and title, other UIDs): one kept
    (the smallest key, so the choice does not depend on order), with a warning."""
    kept: dict[tuple[str | None, str], Occurrence] = {}
    warnings = []
    for occurrence in sorted(occurrences, key=lambda o: o.key):
        sig = (iso(occurrence.start), normalised_title(occurrence.title))
        if sig in kept:
            warnings.append(
                problem(
                    "listed-twice",
                    title=occurrence.title,
                    start=sig[0],
                    uid=kept[sig].uid,
                    other_uid=occurrence.uid,
                )
            )
            continue
        kept[sig] = occurrence
    return list(kept.values()), warnings
